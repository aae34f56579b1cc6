//! Splitting a file of messages for backfill: MLLP frames when the file has them, otherwise
//! messages separated by blank lines (or each starting with its MSH), segments ended by CR,
//! LF or CRLF.

use crate::mllp::{FrameEvent, Framer};

/// One item of a batch file.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum BatchItem {
    /// A message, segments ended by `\r`.
    Message(Vec<u8>),
    /// An MLLP frame over the size limit (skipped).
    TooLarge,
}

/// Splits a batch file into messages.
pub fn split_batch(bytes: &[u8], max_frame: usize) -> Vec<BatchItem> {
    if bytes.contains(&crate::mllp::START) {
        let mut framer = Framer::new(max_frame);
        framer.push(bytes);
        return std::iter::from_fn(|| framer.next_event())
            .map(|event| match event {
                FrameEvent::Frame(frame) => BatchItem::Message(frame),
                FrameEvent::TooLarge { .. } => BatchItem::TooLarge,
            })
            .collect();
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut items = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let finish = |current: &mut Vec<u8>, items: &mut Vec<BatchItem>| {
        if !current.is_empty() {
            items.push(BatchItem::Message(std::mem::take(current)));
        }
    };
    for line in split_lines(bytes) {
        if line.iter().all(u8::is_ascii_whitespace) {
            finish(&mut current, &mut items);
            continue;
        }
        if line.starts_with(b"MSH") {
            finish(&mut current, &mut items);
        }
        current.extend_from_slice(line);
        current.push(b'\r');
    }
    finish(&mut current, &mut items);
    items
}

/// Lines ended by CR, LF or CRLF (a CRLF is one ending).
fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\r' => {
                lines.push(&bytes[start..index]);
                if bytes.get(index + 1) == Some(&b'\n') {
                    index += 1;
                }
                start = index + 1;
            }
            b'\n' => {
                lines.push(&bytes[start..index]);
                start = index + 1;
            }
            _ => {}
        }
        index += 1;
    }
    if start < bytes.len() {
        lines.push(&bytes[start..]);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(items: Vec<BatchItem>) -> Vec<String> {
        items
            .into_iter()
            .map(|item| match item {
                BatchItem::Message(bytes) => String::from_utf8(bytes).unwrap(),
                BatchItem::TooLarge => "<too large>".to_owned(),
            })
            .collect()
    }

    #[test]
    fn blank_lines_or_headers_separate_messages() {
        let file = b"MSH|^~\\&|A\nPID|1\n\n\r\nMSH|^~\\&|B\r\nPID|2\r\nMSH|^~\\&|C\rPID|3";
        assert_eq!(
            messages(split_batch(file, 1024)),
            ["MSH|^~\\&|A\rPID|1\r", "MSH|^~\\&|B\rPID|2\r", "MSH|^~\\&|C\rPID|3\r"]
        );
    }

    #[test]
    fn mllp_frames_are_used_when_present() {
        let mut file = crate::mllp::frame(b"MSH|^~\\&|A\rPID|1\r");
        file.extend(b"\n");
        file.extend(crate::mllp::frame(&[b'x'; 40]));
        assert_eq!(messages(split_batch(&file, 32)), ["MSH|^~\\&|A\rPID|1\r", "<too large>"]);
    }
}
