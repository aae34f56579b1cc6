//! Reading ER7: total, reporting every problem with its location.

use std::fmt;

use crate::charset::Charset;
use crate::escape::{EscapeProblem, unescape};
use crate::message::{Component, Delimiters, Field, Message, Repetition, Segment};

/// Where in a message something is: the segment (by position and identifier) and, as far as
/// known, the field, repetition, component and subcomponent (all 1-based).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Location {
    /// The segment's position in the message (1 for MSH).
    pub segment_index: usize,
    pub segment_id: String,
    pub field: Option<usize>,
    pub repetition: Option<usize>,
    pub component: Option<usize>,
    pub subcomponent: Option<usize>,
}

impl Location {
    pub fn segment(segment_index: usize, segment_id: &str) -> Self {
        Location { segment_index, segment_id: segment_id.to_owned(), ..Location::default() }
    }

    pub fn field(segment_index: usize, segment_id: &str, field: usize) -> Self {
        Location { field: Some(field), ..Location::segment(segment_index, segment_id) }
    }
}

/// `PID[2]-3(1).4.2`: segment PID, the second segment of the message, field 3, first
/// repetition, component 4, subcomponent 2 — as far as known.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.segment_id, self.segment_index)?;
        if let Some(field) = self.field {
            write!(f, "-{field}")?;
            if let Some(repetition) = self.repetition {
                write!(f, "({repetition})")?;
            }
            if let Some(component) = self.component {
                write!(f, ".{component}")?;
                if let Some(subcomponent) = self.subcomponent {
                    write!(f, ".{subcomponent}")?;
                }
            }
        }
        Ok(())
    }
}

/// Whether a problem makes the message unusable (an error) or was worked around (a warning).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Severity {
    Error,
    Warning,
}

/// What kind of problem, with the HL7 error code (table 0357) it maps to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProblemKind {
    /// The message does not start with an MSH segment.
    NoMessageHeader,
    /// MSH-1 / MSH-2 do not give five distinct, usable delimiters.
    InvalidDelimiters,
    /// MSH-18 names a character set Kith does not read.
    UnsupportedCharacterSet,
    /// Bytes that are not valid in the message's character set.
    InvalidCharacters,
    /// A segment identifier that is not three upper-case letters or digits.
    InvalidSegmentId,
    /// An escape sequence that is malformed or not supported; kept as written.
    Escape,
}

impl ProblemKind {
    /// HL7 table 0357 (message error condition codes).
    pub fn hl7_error_code(self) -> (&'static str, &'static str) {
        match self {
            ProblemKind::NoMessageHeader | ProblemKind::InvalidSegmentId => ("100", "Segment sequence error"),
            // Table 0357 has no code for character sets: the data cannot be read as typed.
            ProblemKind::InvalidDelimiters
            | ProblemKind::InvalidCharacters
            | ProblemKind::Escape
            | ProblemKind::UnsupportedCharacterSet => ("102", "Data type error"),
        }
    }
}

/// One problem found while reading.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Problem {
    pub severity: Severity,
    pub kind: ProblemKind,
    pub location: Option<Location>,
    /// What is wrong, in words an interface engineer can act on. Never the data itself.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.detail),
            None => f.write_str(&self.detail),
        }
    }
}

/// What [`parse`] read: the message when it could find one, and every problem.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Parsed {
    pub message: Option<Message>,
    pub charset: Option<Charset>,
    pub problems: Vec<Problem>,
}

impl Parsed {
    /// The first error, if any: what an AR acknowledgement reports.
    pub fn first_error(&self) -> Option<&Problem> {
        self.problems.iter().find(|problem| problem.severity == Severity::Error)
    }
}

/// Reads one ER7 message. Total: any bytes give a result, never a panic.
pub fn parse(bytes: &[u8]) -> Parsed {
    let mut problems = Vec::new();
    // Tolerate a byte-order mark and blank lines before the header.
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

    // MSH-18 is read from the raw header, which is ASCII wherever it matters.
    let header_end = bytes.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(bytes.len());
    let msh18 = raw_field(&bytes[..header_end], delimiters, 18);
    let charset = match Charset::from_msh18(&msh18) {
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
            // Read on as ISO-8859-1 (every byte is a character) so that the header — and
            // its control id, for the acknowledgement — can still be read.
            Charset::Latin1
        }
    };
    let (text, invalid_at) = charset.decode(bytes);
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

/// MSH-1 is the byte after `MSH`; MSH-2 runs to the next field separator (three to five
/// characters: component, repetition, escape, subcomponent and, from v2.7, truncation).
fn read_delimiters(bytes: &[u8]) -> Option<Delimiters> {
    let field = *bytes.get(3)?;
    let rest = &bytes[4..];
    let end = rest.iter().position(|&b| b == field || b == b'\r' || b == b'\n').unwrap_or(rest.len());
    let encoding = &rest[..end];
    if !(3..=5).contains(&encoding.len()) {
        return None;
    }
    let usable = |b: u8| b.is_ascii_graphic() && !b.is_ascii_alphanumeric();
    // Without a fourth character the subcomponent separator is the standard `&`.
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

/// MSH field `n` (n ≥ 3) of the raw header, first repetition and component, as text.
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
        // MSH-1 is the field separator itself; MSH-2 the encoding characters, as read by
        // `read_delimiters` (a missing subcomponent separator written out).
        fields.push(Field::text(delimiters.field.to_string()));
        fields.push(Field::text(delimiters.encoding_characters()));
        parts.next();
    }
    let first_number = fields.len() + 1;
    for (offset, raw) in parts.enumerate() {
        fields.push(read_field(raw, index, &id, first_number + offset, delimiters, charset, problems));
    }
    Segment { id, fields }
}

fn read_field(
    raw: &str,
    index: usize,
    id: &str,
    number: usize,
    delimiters: &Delimiters,
    charset: Charset,
    problems: &mut Vec<Problem>,
) -> Field {
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
                                problems.push(escape_problem(problem, index, id, number, r + 1, c + 1, s + 1));
                            }
                            value
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    Field { repetitions }
}

fn escape_problem(
    problem: EscapeProblem,
    index: usize,
    id: &str,
    field: usize,
    repetition: usize,
    component: usize,
    subcomponent: usize,
) -> Problem {
    let detail = match problem {
        EscapeProblem::Unterminated => {
            "an escape character with no closing escape character (kept as written)".to_owned()
        }
        EscapeProblem::Unsupported(sequence) => {
            format!("escape sequence \\{} is not supported (kept as written)", truncate(&sequence, 12))
        }
        EscapeProblem::BadHex(sequence) => {
            format!(
                "escape sequence \\{} is not pairs of hexadecimal digits (kept as written)",
                truncate(&sequence, 12)
            )
        }
    };
    Problem {
        severity: Severity::Warning,
        kind: ProblemKind::Escape,
        location: Some(Location {
            segment_index: index,
            segment_id: id.to_owned(),
            field: Some(field),
            repetition: Some(repetition),
            component: Some(component),
            subcomponent: Some(subcomponent),
        }),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &str = "MSH|^~\\&|PAS|RXH|KITH|KITH|20261125101500||ADT^A28^ADT_A05|MSG00001|P|2.4|||AL|NE||UNICODE UTF-8\r\
EVN|A28|20261125101500\r\
PID|1||9434765919^^^NHS^NH~K1234567^^^RXH-MRN^MR||O'Brien^Siân^^^Ms||19840307|F|||1 High St^^Leeds^^LS1 1AA||07700900123\r\
ZTM|mh~gum|cardiology\r";

    #[test]
    fn reads_a_message() {
        let parsed = parse(ADT.as_bytes());
        assert_eq!(parsed.problems, vec![]);
        let message = parsed.message.unwrap();
        assert_eq!(message.segments.len(), 4);
        assert_eq!(message.message_type(), ("ADT", "A28"));
        assert_eq!(message.control_id(), "MSG00001");
        assert_eq!(message.header_value(1), "|");
        assert_eq!(message.header_value(2), "^~\\&");
        assert_eq!(message.header_value(3), "PAS");
        assert_eq!(message.header_value(12), "2.4");
        let pid = message.segment("PID").unwrap();
        let identifiers = pid.repetitions(3);
        assert_eq!(identifiers.len(), 2);
        assert_eq!(
            (identifiers[0].component(1), identifiers[0].component(4), identifiers[0].component(5)),
            ("9434765919", "NHS", "NH")
        );
        assert_eq!(identifiers[1].component(4), "RXH-MRN");
        assert_eq!(pid.component(5, 2), "Siân");
        assert_eq!(pid.value(7), "19840307");
        assert_eq!(pid.component(11, 5), "LS1 1AA");
        assert_eq!(pid.value(99), "");
        let ztm = message.segment("ZTM").unwrap();
        assert_eq!(ztm.repetitions(1).iter().map(|r| r.component(1)).collect::<Vec<_>>(), ["mh", "gum"]);
    }

    #[test]
    fn segment_endings_and_other_delimiters() {
        for ending in ["\n", "\r\n", "\r"] {
            let text = ADT.replace('\r', ending);
            let parsed = parse(text.as_bytes());
            assert!(parsed.problems.is_empty(), "{ending:?}");
            assert_eq!(parsed.message.unwrap().segments.len(), 4);
        }
        let parsed = parse(b"MSH#*@!%#A#B\rPID#1##x*y@z*w%v");
        let message = parsed.message.unwrap();
        assert_eq!(
            message.delimiters,
            Delimiters {
                field: '#',
                component: '*',
                repetition: '@',
                escape: '!',
                subcomponent: '%',
                truncation: None
            }
        );
        let pid = message.segment("PID").unwrap();
        assert_eq!(pid.repetitions(3).len(), 2);
        assert_eq!(pid.field(3).unwrap().repetitions[1].subcomponent(2, 2), "v");
    }

    #[test]
    fn character_sets() {
        let latin1 = b"MSH|^~\\&|A|B|C|D|||ADT^A31|1|P|2.4||||||8859/1\rPID|||||Sian\xe9\r";
        let parsed = parse(latin1);
        assert!(parsed.problems.is_empty());
        assert_eq!(parsed.message.unwrap().segment("PID").unwrap().value(5), "Siané");
        let cp1252 = b"MSH|^~\\&|A|B|C|D|||ADT^A31|1|P|2.4||||||WINDOWS-1252\rNTE|||\x93quoted\x94\r";
        assert_eq!(parse(cp1252).message.unwrap().segment("NTE").unwrap().value(3), "“quoted”");
        let bad_utf8 = b"MSH|^~\\&|A|B|C|D|||ADT^A31|1|P|2.4\rPID|||||Sian\xe9\r";
        let parsed = parse(bad_utf8);
        assert_eq!(parsed.first_error().unwrap().kind, ProblemKind::InvalidCharacters);
        let unknown = b"MSH|^~\\&|A|B|C|D|||ADT^A31|CTRL9|P|2.4||||||ISO IR87\rPID|1\r";
        let parsed = parse(unknown);
        let error = parsed.first_error().unwrap();
        assert_eq!(error.kind, ProblemKind::UnsupportedCharacterSet);
        assert_eq!(error.location.as_ref().unwrap().to_string(), "MSH[1]-18");
        assert_eq!(parsed.message.unwrap().control_id(), "CTRL9", "the control id is still read for the ACK");
    }

    #[test]
    fn problems_are_located() {
        assert_eq!(parse(b"").problems[0].kind, ProblemKind::NoMessageHeader);
        assert_eq!(parse(b"PID|1").problems[0].kind, ProblemKind::NoMessageHeader);
        assert_eq!(parse(b"MSH|^^\\&|").problems[0].kind, ProblemKind::InvalidDelimiters);
        assert_eq!(parse(b"MSH").problems[0].kind, ProblemKind::InvalidDelimiters);
        // A fifth MSH-2 character (the v2.7 truncation character) must be usable too.
        assert_eq!(parse(b"MSH#&=,$\x02#A").problems[0].kind, ProblemKind::InvalidDelimiters);
        let with_truncation = parse(b"MSH|^~\\&#|A\r").message.unwrap();
        assert_eq!(with_truncation.delimiters.truncation, Some('#'));
        assert_eq!(crate::encode(&with_truncation), "MSH|^~\\&#|A\r");
        // Three encoding characters: the subcomponent separator is written out.
        assert_eq!(parse(b"MSH|^~\\|A").message.unwrap().header_value(2), "^~\\&");
        let parsed = parse(b"MSH|^~\\&|A\rpid|1\rOBX|1|TX|||50\\% done\r");
        let problems: Vec<String> = parsed.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "pid[2]: segment 2 has no valid identifier (three upper-case letters or digits)",
                "OBX[3]-5(1).1.1: an escape character with no closing escape character (kept as written)",
            ]
        );
        assert_eq!(parsed.problems[1].severity, Severity::Warning);
    }
}
