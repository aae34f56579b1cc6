//! HL7 escape sequences: `\F\ \S\ \T\ \R\ \E\` for the delimiters, `\.br\` for a line
//! break, `\Xhh…\` for bytes in hexadecimal. `\H\` and `\N\` (highlighting) are dropped.

use compact_str::CompactString;

use crate::charset::Charset;
use crate::message::Delimiters;

/// What unescaping found wrong, for the caller to report with a location.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum EscapeProblem {
    /// An escape character with no closing one: kept as written.
    Unterminated,
    /// A sequence Kith does not interpret: kept as written.
    Unsupported(String),
    /// `\X…\` with something other than pairs of hexadecimal digits: kept as written.
    BadHex(String),
}

/// Decodes the escape sequences in `text`.
pub(crate) fn unescape(
    text: &str,
    delimiters: &Delimiters,
    charset: Charset,
    problems: &mut Vec<EscapeProblem>,
) -> CompactString {
    let escape = delimiters.escape;
    if !text.contains(escape) {
        return CompactString::from(text);
    }
    let mut out = CompactString::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(escape) {
        out.push_str(&rest[..start]);
        let after = &rest[start + escape.len_utf8()..];
        let Some(end) = after.find(escape) else {
            problems.push(EscapeProblem::Unterminated);
            out.push_str(&rest[start..]);
            return out;
        };
        let sequence = &after[..end];
        match sequence {
            "F" => out.push(delimiters.field),
            "S" => out.push(delimiters.component),
            "T" => out.push(delimiters.subcomponent),
            "R" => out.push(delimiters.repetition),
            "E" => out.push(escape),
            ".br" => out.push('\n'),
            "H" | "N" => {}
            _ if sequence.starts_with('X') => match hex_bytes(&sequence[1..]) {
                Some(bytes) => out.push_str(&charset.decode_text(&bytes).0),
                None => {
                    problems.push(EscapeProblem::BadHex(sequence.to_owned()));
                    out.push(escape);
                    out.push_str(sequence);
                    out.push(escape);
                }
            },
            _ => {
                problems.push(EscapeProblem::Unsupported(sequence.to_owned()));
                out.push(escape);
                out.push_str(sequence);
                out.push(escape);
            }
        }
        rest = &after[end + escape.len_utf8()..];
    }
    out.push_str(rest);
    out
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|index| u8::from_str_radix(&hex[index..index + 2], 16).ok()).collect()
}

/// Escapes `text` so that it can stand as one subcomponent.
pub(crate) fn escape(text: &str, delimiters: &Delimiters, out: &mut String) {
    let escape = delimiters.escape;
    for c in text.chars() {
        let sequence = if c == escape {
            "E"
        } else if c == delimiters.field {
            "F"
        } else if c == delimiters.component {
            "S"
        } else if c == delimiters.subcomponent {
            "T"
        } else if c == delimiters.repetition {
            "R"
        } else if c == '\n' {
            ".br"
        } else if c == '\r' {
            "X0D"
        } else {
            out.push(c);
            continue;
        };
        out.push(escape);
        out.push_str(sequence);
        out.push(escape);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn un(text: &str) -> (String, Vec<EscapeProblem>) {
        let mut problems = Vec::new();
        (unescape(text, &Delimiters::default(), Charset::Utf8, &mut problems).into(), problems)
    }

    #[test]
    fn standard_sequences() {
        assert_eq!(un(r"a\F\b\S\c\T\d\R\e\E\f"), ("a|b^c&d~e\\f".to_owned(), vec![]));
        assert_eq!(un(r"line one\.br\line two"), ("line one\nline two".to_owned(), vec![]));
        assert_eq!(un(r"\X0D0A\"), ("\r\n".to_owned(), vec![]));
        assert_eq!(un(r"\XC3A9\"), ("é".to_owned(), vec![]));
        assert_eq!(un(r"\H\bold\N\"), ("bold".to_owned(), vec![]));
    }

    #[test]
    fn problems_keep_the_text() {
        assert_eq!(un(r"50\% off"), (r"50\% off".to_owned(), vec![EscapeProblem::Unterminated]));
        assert_eq!(un(r"\Z99\"), (r"\Z99\".to_owned(), vec![EscapeProblem::Unsupported("Z99".into())]));
        assert_eq!(un(r"\XZZ\"), (r"\XZZ\".to_owned(), vec![EscapeProblem::BadHex("XZZ".into())]));
    }

    #[test]
    fn escaping_round_trips() {
        let text = "a|b^c&d~e\\f\ng\rh";
        let mut out = String::new();
        escape(text, &Delimiters::default(), &mut out);
        assert_eq!(out, r"a\F\b\S\c\T\d\R\e\E\f\.br\g\X0D\h");
        assert_eq!(un(&out).0, text);
    }
}
