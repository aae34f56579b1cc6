//! Any bytes, in any split: the framer never panics and never holds more than its cap.
#![no_main]

use kith_hl7::mllp::{FrameEvent, Framer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cap = 64;
    let mut framer = Framer::new(cap);
    let split = data.first().map_or(1, |&b| usize::from(b).max(1));
    for chunk in data.chunks(split) {
        framer.push(chunk);
        assert!(framer.buffered() <= cap);
        while let Some(event) = framer.next_event() {
            if let FrameEvent::Frame(frame) = event {
                assert!(frame.len() <= cap);
            }
        }
    }
});
