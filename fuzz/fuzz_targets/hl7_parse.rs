//! Any bytes: the parser returns (never panics), and what it reads encodes and re-parses to
//! the same structure.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = kith_hl7::parse(data);
    if let Some(message) = parsed.message
        && parsed.problems.is_empty()
    {
        let again = kith_hl7::parse(kith_hl7::encode(&message).as_bytes());
        assert_eq!(again.message.as_ref(), Some(&message));
    }
});
