//! MLLP framing: each message travels as `0x0B` (start block), the message, `0x1C 0x0D`
//! (end block, carriage return).
//!
//! [`Framer`] reassembles frames from whatever pieces a connection delivers: several frames
//! in one read, a frame split over many, bytes between frames (ignored). It never holds more
//! than the cap plus one read: a frame that grows past the cap is reported and skipped.

/// The start-of-block byte.
pub const START: u8 = 0x0B;
/// The end-of-block byte, followed by a carriage return.
pub const END: u8 = 0x1C;
/// The default largest frame Kith accepts: 4 MiB.
pub const DEFAULT_MAX_FRAME: usize = 4 * 1024 * 1024;

/// Wraps a payload in an MLLP frame.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(payload.len() + 3);
    framed.push(START);
    framed.extend_from_slice(payload);
    framed.extend_from_slice(&[END, b'\r']);
    framed
}

/// What the framer yields.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FrameEvent {
    /// A complete message (without the framing bytes).
    Frame(Vec<u8>),
    /// A frame grew past the cap; its bytes were dropped up to its end (or the next start).
    TooLarge { limit: usize },
}

/// Reassembles MLLP frames from a byte stream.
#[derive(Debug)]
pub struct Framer {
    max_frame: usize,
    /// Bytes of the frame being read (after its start byte).
    buffer: Vec<u8>,
    state: State,
    ready: std::collections::VecDeque<FrameEvent>,
    /// Bytes seen outside frames (for diagnostics).
    pub ignored_bytes: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Waiting for a start byte.
    Between,
    /// Inside a frame.
    InFrame,
    /// Inside a frame, just after an end byte: a carriage return completes the frame.
    AfterEnd,
    /// Inside a frame that is too large: skipping to its end.
    Skipping,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl Framer {
    pub fn new(max_frame: usize) -> Self {
        Framer { max_frame, buffer: Vec::new(), state: State::Between, ready: Default::default(), ignored_bytes: 0 }
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.step(byte);
        }
    }

    fn step(&mut self, byte: u8) {
        match self.state {
            State::Between => {
                if byte == START {
                    self.buffer.clear();
                    self.state = State::InFrame;
                } else {
                    self.ignored_bytes += 1;
                }
            }
            State::InFrame => match byte {
                END => self.state = State::AfterEnd,
                // A start byte inside a frame: the sender gave up on the last one.
                START => {
                    self.ignored_bytes += self.buffer.len() as u64;
                    self.buffer.clear();
                }
                _ => self.push_byte(byte),
            },
            State::AfterEnd => match byte {
                b'\r' => {
                    self.ready.push_back(FrameEvent::Frame(std::mem::take(&mut self.buffer)));
                    self.state = State::Between;
                }
                // Tolerate a missing carriage return when the next frame starts at once.
                START => {
                    self.ready.push_back(FrameEvent::Frame(std::mem::take(&mut self.buffer)));
                    self.state = State::InFrame;
                }
                // An end byte inside the message (not MLLP, but keep it) and then this byte.
                _ => {
                    self.push_byte(END);
                    self.step(byte);
                }
            },
            State::Skipping => match byte {
                END => {
                    self.ready.push_back(FrameEvent::TooLarge { limit: self.max_frame });
                    self.state = State::Between;
                }
                START => {
                    self.ready.push_back(FrameEvent::TooLarge { limit: self.max_frame });
                    self.buffer.clear();
                    self.state = State::InFrame;
                }
                _ => self.ignored_bytes += 1,
            },
        }
    }

    fn push_byte(&mut self, byte: u8) {
        if self.buffer.len() >= self.max_frame {
            self.ignored_bytes += self.buffer.len() as u64 + 1;
            self.buffer = Vec::new();
            self.state = State::Skipping;
        } else {
            self.buffer.push(byte);
            self.state = State::InFrame;
        }
    }

    /// The next complete frame (or oversize report), if any.
    pub fn next_event(&mut self) -> Option<FrameEvent> {
        self.ready.pop_front()
    }

    /// Bytes held for the frame being read.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Whether a frame has started and not finished (e.g. when the connection closes).
    pub fn in_frame(&self) -> bool {
        self.state != State::Between
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(framer: &mut Framer) -> Vec<FrameEvent> {
        std::iter::from_fn(|| framer.next_event()).collect()
    }

    #[test]
    fn frames_with_junk_between_and_several_per_read() {
        let mut framer = Framer::default();
        let mut stream = b"junk\r\n".to_vec();
        stream.extend(frame(b"MSH|one"));
        stream.extend(b"\n");
        stream.extend(frame(b"MSH|two"));
        framer.push(&stream);
        assert_eq!(
            events(&mut framer),
            [FrameEvent::Frame(b"MSH|one".to_vec()), FrameEvent::Frame(b"MSH|two".to_vec())]
        );
        assert_eq!(framer.ignored_bytes, 7);
        assert!(!framer.in_frame());
    }

    #[test]
    fn a_frame_split_over_reads() {
        let mut framer = Framer::default();
        let framed = frame(b"MSH|split");
        for byte in &framed {
            framer.push(std::slice::from_ref(byte));
        }
        assert_eq!(events(&mut framer), [FrameEvent::Frame(b"MSH|split".to_vec())]);
    }

    #[test]
    fn oversized_frames_are_reported_and_skipped() {
        let mut framer = Framer::new(8);
        framer.push(&frame(b"0123456789abcdef"));
        framer.push(&frame(b"MSH|ok"));
        assert_eq!(events(&mut framer), [FrameEvent::TooLarge { limit: 8 }, FrameEvent::Frame(b"MSH|ok".to_vec())]);
        assert!(framer.buffered() <= 8);
    }

    #[test]
    fn a_missing_carriage_return_before_the_next_frame() {
        let mut framer = Framer::default();
        framer.push(&[START, b'a', END, START, b'b', END, b'\r']);
        assert_eq!(events(&mut framer), [FrameEvent::Frame(b"a".to_vec()), FrameEvent::Frame(b"b".to_vec())]);
    }
}
