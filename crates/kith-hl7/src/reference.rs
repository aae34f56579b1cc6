//! A plain reading of ER7, for the tests only: [`parse`](crate::parse) as it was written
//! before it was made fast — decode, split on line breaks, then on each separator in turn,
//! collecting as it goes, unescaping every leaf — against which the fast reader is checked
//! to give the same `Parsed` for any bytes.

use crate::charset::Charset;
use crate::escape::unescape;
use crate::message::{Component, Delimiters, Field, Message, Repetition, Segment};
use crate::parse::{Location, Parsed, Problem, ProblemKind, Severity, escape_problem};

pub(crate) fn parse(bytes: &[u8]) -> Parsed {
    let mut problems = Vec::new();
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = bytes.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    if !bytes.starts_with(b"MSH") {
        problems.push(Problem {
            severity: Severity::Error,
            kind: ProblemKind::NoMessageHeader,
            location: None,
            detail: "the message does not start with an MSH segment".to_owned(),
        });
        return Parsed { message: None, charset: None, problems };
    }
    let Some(delimiters) = read_delimiters(bytes) else {
        problems.push(Problem {
            severity: Severity::Error,
            kind: ProblemKind::InvalidDelimiters,
            location: Some(Location::field(1, "MSH", 2)),
            detail: "MSH-1 and MSH-2 must give five different delimiter characters, such as |^~\\&".to_owned(),
        });
        return Parsed { message: None, charset: None, problems };
    };
    let header_end = bytes.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(bytes.len());
    let msh18 = raw_field(&bytes[..header_end], delimiters, 18);
    let charset = match charset_named(&msh18) {
        Some(charset) => charset,
        None => {
            problems.push(Problem {
                severity: Severity::Error,
                kind: ProblemKind::UnsupportedCharacterSet,
                location: Some(Location::field(1, "MSH", 18)),
                detail: format!(
                    "unsupported character set {:?} in MSH-18: use UNICODE UTF-8, 8859/1 or WINDOWS-1252",
                    truncate(&msh18, 40)
                ),
            });
            Charset::Latin1
        }
    };
    let (text, invalid_at) = decode(charset, bytes);
    if let Some(offset) = invalid_at {
        let segment_index = bytes[..offset.min(bytes.len())].iter().filter(|&&b| b == b'\r' || b == b'\n').count();
        problems.push(Problem {
            severity: Severity::Error,
            kind: ProblemKind::InvalidCharacters,
            location: None,
            detail: format!(
                "byte {offset} (line {}) is not valid {:?}: check MSH-18 names the character set the sender uses",
                segment_index + 1,
                charset
            ),
        });
    }
    let mut segments = Vec::new();
    for line in text.split(['\r', '\n']).filter(|line| !line.is_empty()) {
        let index = segments.len() + 1;
        segments.push(read_segment(line, index, &delimiters, charset, &mut problems));
    }
    Parsed { message: Some(Message { delimiters, segments }), charset: Some(charset), problems }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

fn charset_named(name: &str) -> Option<Charset> {
    match name.trim().to_ascii_uppercase().as_str() {
        "" | "ASCII" | "UNICODE UTF-8" | "UTF-8" | "UTF8" => Some(Charset::Utf8),
        "8859/1" | "ISO-8859-1" | "ISO 8859-1" | "ISO8859-1" | "LATIN1" | "LATIN-1" => Some(Charset::Latin1),
        "WINDOWS-1252" | "CP1252" | "WIN1252" | "WINDOWS1252" => Some(Charset::Windows1252),
        _ => None,
    }
}

fn decode(charset: Charset, bytes: &[u8]) -> (String, Option<usize>) {
    match charset {
        Charset::Utf8 => match std::str::from_utf8(bytes) {
            Ok(text) => (text.to_owned(), None),
            Err(error) => (String::from_utf8_lossy(bytes).into_owned(), Some(error.valid_up_to())),
        },
        Charset::Latin1 => (bytes.iter().map(|&b| char::from(b)).collect(), None),
        Charset::Windows1252 => {
            let mut first_invalid = None;
            let text = bytes
                .iter()
                .enumerate()
                .map(|(offset, &b)| match b {
                    0x80..=0x9F => crate::charset::WINDOWS_1252_HIGH[usize::from(b - 0x80)].unwrap_or_else(|| {
                        first_invalid.get_or_insert(offset);
                        char::REPLACEMENT_CHARACTER
                    }),
                    _ => char::from(b),
                })
                .collect();
            (text, first_invalid)
        }
    }
}

fn read_delimiters(bytes: &[u8]) -> Option<Delimiters> {
    let field = *bytes.get(3)?;
    let rest = &bytes[4..];
    let end = rest.iter().position(|&b| b == field || b == b'\r' || b == b'\n').unwrap_or(rest.len());
    let encoding = &rest[..end];
    if !(3..=5).contains(&encoding.len()) {
        return None;
    }
    let usable = |b: u8| b.is_ascii_graphic() && !b.is_ascii_alphanumeric();
    let mut candidates = vec![field, encoding[0], encoding[1], encoding[2], *encoding.get(3).unwrap_or(&b'&')];
    candidates.extend(encoding.get(4));
    if !candidates.iter().all(|&b| usable(b)) {
        return None;
    }
    for (index, b) in candidates.iter().enumerate() {
        if candidates[index + 1..].contains(b) {
            return None;
        }
    }
    Some(Delimiters {
        field: char::from(field),
        component: char::from(candidates[1]),
        repetition: char::from(candidates[2]),
        escape: char::from(candidates[3]),
        subcomponent: char::from(candidates[4]),
        truncation: candidates.get(5).copied().map(char::from),
    })
}

fn raw_field(header: &[u8], delimiters: Delimiters, n: usize) -> String {
    let field = header.split(|&b| char::from(b) == delimiters.field).nth(n - 1).unwrap_or_default();
    let first = field
        .split(|&b| char::from(b) == delimiters.repetition || char::from(b) == delimiters.component)
        .next()
        .unwrap_or_default();
    String::from_utf8_lossy(first).into_owned()
}

fn read_segment(
    line: &str,
    index: usize,
    delimiters: &Delimiters,
    charset: Charset,
    problems: &mut Vec<Problem>,
) -> Segment {
    let mut parts = line.split(delimiters.field);
    let id = parts.next().unwrap_or_default().to_owned();
    let valid_id = id.len() == 3
        && id.starts_with(|c: char| c.is_ascii_uppercase())
        && id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if !valid_id {
        problems.push(Problem {
            severity: Severity::Error,
            kind: ProblemKind::InvalidSegmentId,
            location: Some(Location::segment(index, &truncate(&id, 8))),
            detail: format!("segment {index} has no valid identifier (three upper-case letters or digits)"),
        });
    }
    let mut fields = Vec::new();
    if id == "MSH" {
        fields.push(Field::text(delimiters.field.to_string()));
        fields.push(Field::text(delimiters.encoding_characters()));
        parts.next();
    }
    let first_number = fields.len() + 1;
    for (offset, raw) in parts.enumerate() {
        let number = first_number + offset;
        let mut escape_problems = Vec::new();
        let repetitions = raw
            .split(delimiters.repetition)
            .enumerate()
            .map(|(r, repetition)| Repetition {
                components: repetition
                    .split(delimiters.component)
                    .enumerate()
                    .map(|(c, component)| Component {
                        subcomponents: component
                            .split(delimiters.subcomponent)
                            .enumerate()
                            .map(|(s, text)| {
                                let before = escape_problems.len();
                                let value = unescape(text, delimiters, charset, &mut escape_problems);
                                for problem in escape_problems.drain(before..) {
                                    problems.push(escape_problem(problem, index, &id, number, r + 1, c + 1, s + 1));
                                }
                                value
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        fields.push(Field { repetitions });
    }
    Segment { id: id.into(), fields }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// Pieces that make the reader take its every path: separators (the standard ones and
    /// those of the other headers below), escape sequences good and bad, line breaks of each
    /// kind, segment identifiers good and bad, and text — ASCII, longer than a leaf holds
    /// inline, non-ASCII, and bytes that are not UTF-8.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => prop::sample::select(vec![&b"|"[..], b"^", b"~", b"&", b"\\", b"#", b"*", b"@", b"!", b"%"])
                .prop_map(<[u8]>::to_vec),
            2 => prop::sample::select(vec![
                &b"\\F\\"[..], b"\\S\\", b"\\T\\", b"\\R\\", b"\\E\\", b"\\.br\\", b"\\H\\", b"\\N\\", b"\\X41\\",
                b"\\XC3A9\\", b"\\XE9\\", b"\\X81\\", b"\\X0D0A\\", b"\\XZZ\\", b"\\X4\\", b"\\X\\", b"\\\\", b"\\Zfoo\\",
                b"!F!", b"!X41!",
            ])
            .prop_map(<[u8]>::to_vec),
            2 => prop::sample::select(vec![&b"\r"[..], b"\n", b"\r\n", b"\r\r", b"\n\n\r"]).prop_map(<[u8]>::to_vec),
            1 => prop::sample::select(vec![&b"PID"[..], b"OBX", b"MSH", b"pid", b"ZZ", b"ZZZ9", b"9AB", b"PI\xc3\xa9"])
                .prop_map(<[u8]>::to_vec),
            3 => "[a-zA-Z0-9 ]{0,30}".prop_map(String::into_bytes),
            1 => prop::sample::select(vec!["é", "字", "🙂", "Siân"]).prop_map(|s| s.as_bytes().to_vec()),
            1 => any::<u8>().prop_map(|b| vec![b]),
        ]
    }

    fn header() -> impl Strategy<Value = Vec<u8>> {
        let charset = prop::sample::select(vec![
            &b""[..],
            b"UNICODE UTF-8",
            b"8859/1",
            b"WINDOWS-1252",
            b"latin1",
            b" utf-8 ",
            b"ISO IR87",
            b"cp1252^x",
            b"\xe9",
        ]);
        let start = prop::sample::select(vec![
            &b"MSH|^~\\&"[..],
            b"MSH|^~\\",
            b"MSH|^~\\&#",
            b"MSH#*@!%",
            b"\xEF\xBB\xBF\r\nMSH|^~\\&",
            b"MSH|^~\\&#!",
            b"MSH|^^\\&",
        ]);
        (start, 0..18usize, charset).prop_map(|(start, fields, charset)| {
            let mut header = start.to_vec();
            let field = header.iter().find(|&&b| b == b'|' || b == b'#').copied().unwrap_or(b'|');
            for n in 3..=fields {
                header.push(field);
                if n == 18 {
                    header.extend_from_slice(charset);
                }
            }
            header
        })
    }

    /// Messages as senders write them, to be cut about.
    const MESSAGES: [&str; 4] = [
        "MSH|^~\\&|PAS|RXH|KITH|KITH|20260712171605||ADT^A01^ADT_A01|ADT00019529|P|2.4|||AL|NE|GBR|UNICODE UTF-8\r\
         EVN|A01|20260712171605|||U31524^Ahmed^Mia\r\
         PID|1||9995597977^^^NHS^NH~K6030215^^^RXH-MRN^MR||Begum^Fatima^Harry^^Dr||19570922|F|||139 Kirkgate^^Harrogate^^HG2 4BD^GBR^H||07700 900539^PRN^CP\r\
         PV1|1|I|AMU^6^3^RXH||||C3278084^Jones^Zoë^^^Dr|||710||||51|||||V73616526^^^RXH-VN^VN\r\
         ZTM|cardiology~diabetes|prt\r",
        "MSH|^~\\&|WINPATH|RJ1|KITH|KITH|20261119100513||ORU^R01^ORU_R01|LAB00000001|P|2.4|||AL|NE|GBR|UNICODE UTF-8\r\
         OBR|1|03373378^ICE|569537958^WINPATH|URINE^Urine microscopy and culture^WINPATH|||20260722174207\r\
         OBX|1|ST|CULT^Culture^WINPATH||Mixed growth \\T\\ possible contamination||||||F|||20260722174207\r\
         OBX|2|TX|CP^Care plan||Safety plan reviewed\\.br\\Keep it \\XC3A9\\ locked&away~second^x&y\r\
         NTE|1|L|Analyser flags: HIL\\F\\ICT checked and released\r",
        "MSH|^~\\&|A|B|C|D|||ADT^A31|1|P|2.4||||||8859/1\nPID|||K1^^^X^MR~K2&sub^^^Y||Sian\u{e9}^A&B\n",
        "MSH#*@!%#A#B\r\nPID#1##x*y@z*w%v#!F!!S!!X41!!Q!\r\n",
    ];

    fn edited_message() -> impl Strategy<Value = Vec<u8>> {
        let edits = proptest::collection::vec((any::<prop::sample::Index>(), 0..3usize, piece()), 0..8);
        (prop::sample::select(MESSAGES.to_vec()), edits).prop_map(|(message, edits)| {
            let mut bytes = message.as_bytes().to_vec();
            for (at, removed, piece) in edits {
                let at = at.index(bytes.len() + 1);
                bytes.drain(at..(at + removed).min(bytes.len()));
                bytes.splice(at..at, piece);
            }
            bytes
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn the_reader_reads_edited_messages_as_the_plain_reading_does(bytes in edited_message()) {
            prop_assert_eq!(crate::parse(&bytes), super::parse(&bytes));
        }

        #[test]
        fn the_reader_reads_as_the_plain_reading_does(
            header in header(),
            pieces in proptest::collection::vec(piece(), 0..80),
        ) {
            let mut bytes = header;
            bytes.extend(pieces.concat());
            prop_assert_eq!(crate::parse(&bytes), super::parse(&bytes));
        }

        #[test]
        fn the_reader_reads_any_bytes_as_the_plain_reading_does(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            prop_assert_eq!(crate::parse(&bytes), super::parse(&bytes));
            let mut with_header = b"MSH|^~\\&|".to_vec();
            with_header.extend(&bytes);
            prop_assert_eq!(crate::parse(&with_header), super::parse(&with_header));
        }
    }
}
