//! Reading ER7: total, reporting every problem with its location.

use std::borrow::Cow;
use std::fmt;

use compact_str::CompactString;
use smallvec::SmallVec;

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
///
/// The text is decoded once, then read in one pass: a table classes each byte (a separator,
/// the escape character, a line break or text), so that a field with no repetition,
/// component or subcomponent separator — most of them — is taken whole, and only text that
/// holds the escape character is unescaped.
pub fn parse(bytes: &[u8]) -> Parsed {
    let mut problems = Vec::new();
    // Tolerate a byte-order mark and blank lines before the header.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = bytes.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(bytes.len());
    let bytes = bytes.get(start..).unwrap_or_default();
    if !bytes.starts_with(b"MSH") {
        problems.push(Problem {
            severity: Severity::Error,
            kind: ProblemKind::NoMessageHeader,
            location: None,
            detail: "the message does not start with an MSH segment".to_owned(),
        });
        return Parsed { message: None, charset: None, problems };
    }
    let Some(separators) = read_delimiters(bytes) else {
        problems.push(Problem {
            severity: Severity::Error,
            kind: ProblemKind::InvalidDelimiters,
            location: Some(Location::field(1, "MSH", 2)),
            detail: "MSH-1 and MSH-2 must give five different delimiter characters, such as |^~\\&".to_owned(),
        });
        return Parsed { message: None, charset: None, problems };
    };
    let delimiters = separators.delimiters();

    // MSH-18 is read from the raw header, which is ASCII wherever it matters.
    let header_end = bytes.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(bytes.len());
    let msh18 = raw_field(bytes.get(..header_end).unwrap_or_default(), separators, 18);
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
    let (text, invalid_at) = charset.decode_text(bytes);
    if let Some(offset) = invalid_at {
        let before = bytes.get(..offset.min(bytes.len())).unwrap_or_default();
        let segment_index = before.iter().filter(|&&b| b == b'\r' || b == b'\n').count();
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

    let segments = Reader::new(separators, &delimiters, charset, &mut problems).read_segments(&text);
    Parsed { message: Some(Message { delimiters, segments }), charset: Some(charset), problems }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The separators as bytes: [`read_delimiters`] only accepts ASCII punctuation.
#[derive(Clone, Copy, Debug)]
struct Separators {
    field: u8,
    component: u8,
    repetition: u8,
    escape: u8,
    subcomponent: u8,
    truncation: Option<u8>,
}

impl Separators {
    fn delimiters(self) -> Delimiters {
        Delimiters {
            field: char::from(self.field),
            component: char::from(self.component),
            repetition: char::from(self.repetition),
            escape: char::from(self.escape),
            subcomponent: char::from(self.subcomponent),
            truncation: self.truncation.map(char::from),
        }
    }
}

/// MSH-1 is the byte after `MSH`; MSH-2 runs to the next field separator (three to five
/// characters: component, repetition, escape, subcomponent and, from v2.7, truncation).
fn read_delimiters(bytes: &[u8]) -> Option<Separators> {
    let field = *bytes.get(3)?;
    let rest = bytes.get(4..)?;
    let end = rest.iter().position(|&b| b == field || b == b'\r' || b == b'\n').unwrap_or(rest.len());
    let encoding = rest.get(..end)?;
    let (&component, &repetition, &escape) = match encoding {
        [component, repetition, escape, ..] if encoding.len() <= 5 => (component, repetition, escape),
        _ => return None,
    };
    // Without a fourth character the subcomponent separator is the standard `&`.
    let subcomponent = encoding.get(3).copied().unwrap_or(b'&');
    let truncation = encoding.get(4).copied();
    let all = [field, component, repetition, escape, subcomponent, truncation.unwrap_or(field)];
    let candidates = if truncation.is_some() { &all[..] } else { &all[..5] };
    let usable = |b: u8| b.is_ascii_graphic() && !b.is_ascii_alphanumeric();
    if !candidates.iter().all(|&b| usable(b)) {
        return None;
    }
    for (index, b) in candidates.iter().enumerate() {
        if candidates.get(index + 1..).unwrap_or_default().contains(b) {
            return None;
        }
    }
    Some(Separators { field, component, repetition, escape, subcomponent, truncation })
}

/// MSH field `n` (n ≥ 3) of the raw header, first repetition and component, as text.
fn raw_field(header: &[u8], separators: Separators, n: usize) -> Cow<'_, str> {
    let field = header.split(|&b| b == separators.field).nth(n - 1).unwrap_or_default();
    let first = field.split(|&b| b == separators.repetition || b == separators.component).next().unwrap_or_default();
    String::from_utf8_lossy(first)
}

// What a byte is to the reader: bits, so that the classes of a field's bytes sum up in one
// mask that says whether it needs splitting or unescaping. Other bytes are 0.
const FIELD: u8 = 1;
const REPETITION: u8 = 2;
const COMPONENT: u8 = 4;
const SUBCOMPONENT: u8 = 8;
const ESCAPE: u8 = 16;
/// Not a byte's class: where [`Reader::scan`] stops at the end of a line.
const END: u8 = 32;

/// Where a leaf is, for the problems found in it (all 1-based).
#[derive(Clone, Copy)]
struct Place<'t> {
    index: usize,
    id: &'t str,
    field: usize,
    repetition: usize,
    component: usize,
}

/// Reads the segments of one message.
struct Reader<'a> {
    separators: Separators,
    delimiters: &'a Delimiters,
    charset: Charset,
    classes: [u8; 256],
    problems: &'a mut Vec<Problem>,
    escape_problems: Vec<EscapeProblem>,
}

impl<'a> Reader<'a> {
    fn new(
        separators: Separators,
        delimiters: &'a Delimiters,
        charset: Charset,
        problems: &'a mut Vec<Problem>,
    ) -> Self {
        let mut classes = [0u8; 256];
        for (byte, class) in [
            (separators.field, FIELD),
            (separators.repetition, REPETITION),
            (separators.component, COMPONENT),
            (separators.subcomponent, SUBCOMPONENT),
            (separators.escape, ESCAPE),
        ] {
            classes[usize::from(byte)] = class;
        }
        Reader { separators, delimiters, charset, classes, problems, escape_problems: Vec::new() }
    }

    /// Every non-empty line is a segment, whether it ends with CR, LF or CR LF.
    fn read_segments(&mut self, text: &str) -> Vec<Segment> {
        let bytes = text.as_bytes();
        // At most one segment per line break, and one after the last.
        let breaks = bytes.iter().filter(|&&b| is_break(b)).count();
        let mut segments = Vec::with_capacity(breaks + 1);
        let mut position = 0;
        loop {
            while bytes.get(position).is_some_and(|&b| is_break(b)) {
                position += 1;
            }
            if position >= bytes.len() {
                return segments;
            }
            let end = line_end(bytes, position);
            let line = text.get(position..end).unwrap_or_default();
            segments.push(self.read_segment(line, segments.len() + 1));
            position = end;
        }
    }

    /// From `from` in a line up to the next field separator: where it stops, `FIELD` or `END`
    /// (at the end of the line) and the classes of the bytes before.
    #[inline]
    fn scan(&self, line: &[u8], from: usize) -> (usize, u8, u8) {
        let mut mask = 0;
        for (offset, &b) in line.get(from..).unwrap_or_default().iter().enumerate() {
            let class = self.classes[usize::from(b)];
            if class == FIELD {
                return (from + offset, FIELD, mask);
            }
            mask |= class;
        }
        (line.len(), END, mask)
    }

    /// The segment on `line` (not empty, no line break), the `index`th of the message.
    fn read_segment(&mut self, line: &str, index: usize) -> Segment {
        let bytes = line.as_bytes();
        let (mut end, mut stop, _) = self.scan(bytes, 0);
        let id = line.get(..end).unwrap_or_default();
        let valid_id = id.len() == 3
            && id.starts_with(|c: char| c.is_ascii_uppercase())
            && id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !valid_id {
            self.problems.push(Problem {
                severity: Severity::Error,
                kind: ProblemKind::InvalidSegmentId,
                location: Some(Location::segment(index, &truncate(id, 8))),
                detail: format!("segment {index} has no valid identifier (three upper-case letters or digits)"),
            });
        }
        let mut skip = id == "MSH";
        // One field after each field separator; in MSH, MSH-1 and MSH-2 in place of the first.
        let separators = bytes.iter().filter(|&&b| b == self.separators.field).count();
        let mut fields = Vec::with_capacity(if skip { separators.max(1) + 1 } else { separators });
        if skip {
            // MSH-1 is the field separator itself; MSH-2 the encoding characters, as read by
            // `read_delimiters` (a missing subcomponent separator written out), in place of
            // the field as written.
            let delimiters = self.delimiters;
            fields.push(Field::text(CompactString::from(&*delimiters.field.encode_utf8(&mut [0; 4]))));
            let encoding = [delimiters.component, delimiters.repetition, delimiters.escape, delimiters.subcomponent];
            fields.push(Field::text(encoding.iter().chain(&delimiters.truncation).collect::<CompactString>()));
        }
        let mut number = fields.len() + 1;
        while stop == FIELD {
            let from = end + 1;
            let mask;
            (end, stop, mask) = self.scan(bytes, from);
            if skip {
                skip = false;
                continue;
            }
            let raw = line.get(from..end).unwrap_or_default();
            let place = Place { index, id, field: number, repetition: 1, component: 1 };
            fields.push(self.read_field(raw, mask, place));
            number += 1;
        }
        Segment { id: CompactString::from(id), fields }
    }

    /// A field from its text as written (no field separator nor line break in it); `mask`
    /// holds the classes of its bytes, which say which separators it may hold.
    #[inline]
    fn read_field(&mut self, raw: &str, mask: u8, place: Place<'_>) -> Field {
        if mask == 0 {
            // Most fields: one leaf, with nothing to split nor unescape.
            return Field::text(CompactString::from(raw));
        }
        if mask & REPETITION == 0 {
            return Field { repetitions: SmallVec::from_buf([self.read_repetition(raw, mask, place)]) };
        }
        let separator = self.separators.repetition;
        let mut repetitions = SmallVec::with_capacity(pieces(raw, separator));
        for (r, text) in Pieces::new(raw, separator).enumerate() {
            repetitions.push(self.read_repetition(text, mask, Place { repetition: r + 1, ..place }));
        }
        Field { repetitions }
    }

    fn read_repetition(&mut self, raw: &str, mask: u8, place: Place<'_>) -> Repetition {
        if mask & COMPONENT == 0 {
            return Repetition { components: SmallVec::from_buf([self.read_component(raw, mask, place)]) };
        }
        let separator = self.separators.component;
        let mut components = SmallVec::with_capacity(pieces(raw, separator));
        if mask & (SUBCOMPONENT | ESCAPE) == 0 {
            // Components of one leaf each, with nothing to split nor unescape.
            for text in Pieces::new(raw, separator) {
                components.push(Component::text(CompactString::from(text)));
            }
            return Repetition { components };
        }
        for (c, text) in Pieces::new(raw, separator).enumerate() {
            components.push(self.read_component(text, mask, Place { component: c + 1, ..place }));
        }
        Repetition { components }
    }

    fn read_component(&mut self, raw: &str, mask: u8, place: Place<'_>) -> Component {
        if mask & SUBCOMPONENT == 0 {
            return Component { subcomponents: SmallVec::from_buf([self.leaf(raw, mask, place, 1)]) };
        }
        let separator = self.separators.subcomponent;
        let mut subcomponents = SmallVec::with_capacity(pieces(raw, separator));
        for (s, text) in Pieces::new(raw, separator).enumerate() {
            subcomponents.push(self.leaf(text, mask, place, s + 1));
        }
        Component { subcomponents }
    }

    /// A subcomponent's text, unescaped when its field holds the escape character.
    fn leaf(&mut self, text: &str, mask: u8, place: Place<'_>, subcomponent: usize) -> CompactString {
        if mask & ESCAPE == 0 {
            return CompactString::from(text);
        }
        let value = unescape(text, self.delimiters, self.charset, &mut self.escape_problems);
        for problem in self.escape_problems.drain(..) {
            self.problems.push(escape_problem(
                problem,
                place.index,
                place.id,
                place.field,
                place.repetition,
                place.component,
                subcomponent,
            ));
        }
        value
    }
}

fn is_break(b: u8) -> bool {
    b == b'\r' || b == b'\n'
}

/// Where the line from `start` ends: at the next CR or LF, or the end of the text.
fn line_end(bytes: &[u8], start: usize) -> usize {
    const CHUNK: usize = 16;
    let rest = bytes.get(start..).unwrap_or_default();
    // Whole chunks first, tested without a branch per byte (the compiler vectorises it).
    let mut offset = 0;
    for chunk in rest.chunks_exact(CHUNK) {
        if chunk.iter().fold(false, |found, &b| found | is_break(b)) {
            break;
        }
        offset += CHUNK;
    }
    let tail = rest.get(offset..).unwrap_or_default();
    start + offset + tail.iter().position(|&b| is_break(b)).unwrap_or(tail.len())
}

/// How many pieces `separator` cuts `text` into.
fn pieces(text: &str, separator: u8) -> usize {
    1 + text.bytes().filter(|&b| b == separator).count()
}

/// The pieces of `text` between occurrences of `separator` (an ASCII byte, so that every
/// cut falls between characters): as `str::split`, without its searcher's setup cost.
struct Pieces<'t> {
    rest: Option<&'t str>,
    separator: u8,
}

impl<'t> Pieces<'t> {
    fn new(text: &'t str, separator: u8) -> Self {
        Pieces { rest: Some(text), separator }
    }
}

impl<'t> Iterator for Pieces<'t> {
    type Item = &'t str;

    fn next(&mut self) -> Option<&'t str> {
        let rest = self.rest?;
        match rest.bytes().position(|b| b == self.separator) {
            Some(end) => {
                self.rest = rest.get(end + 1..);
                rest.get(..end)
            }
            None => self.rest.take(),
        }
    }
}

pub(crate) fn escape_problem(
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

    /// [`super::parse`], checked against the plain reading it replaced.
    fn parse(bytes: &[u8]) -> Parsed {
        let parsed = super::parse(bytes);
        assert_eq!(parsed, crate::reference::parse(bytes), "{:?}", String::from_utf8_lossy(bytes));
        parsed
    }

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

    /// The leaves of field `n` of a segment, as nested lists of text.
    fn leaves(segment: &Segment, n: usize) -> Vec<Vec<Vec<&str>>> {
        segment
            .repetitions(n)
            .iter()
            .map(|r| r.components.iter().map(|c| c.subcomponents.iter().map(CompactString::as_str).collect()).collect())
            .collect()
    }

    fn located(parsed: &Parsed) -> Vec<String> {
        parsed.problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn empty_pieces_and_trailing_separators() {
        let parsed = parse(b"MSH|^~\\&|A\rPID|1||^^|~|&|a^~^b&|\rNTE\rZZ1|\r");
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        let message = parsed.message.unwrap();
        let pid = message.segment("PID").unwrap();
        assert_eq!(pid.fields.len(), 7, "a field after each separator, the last one empty");
        assert_eq!(leaves(pid, 1), [[["1"]]]);
        assert_eq!(leaves(pid, 2), [[[""]]]);
        assert_eq!(leaves(pid, 3), [[[""], [""], [""]]]);
        assert_eq!(leaves(pid, 4), [[[""]], [[""]]]);
        assert_eq!(leaves(pid, 5), [[["", ""]]]);
        assert_eq!(leaves(pid, 6), vec![vec![vec!["a"], vec![""]], vec![vec![""], vec!["b", ""]]]);
        assert_eq!(leaves(pid, 7), [[[""]]]);
        assert!(pid.field(7).unwrap().is_empty());
        assert!(message.segment("NTE").unwrap().fields.is_empty(), "no separator, no field");
        assert_eq!(message.segment("ZZ1").unwrap().fields.len(), 1);
    }

    #[test]
    fn escapes_at_the_edges_of_pieces() {
        let parsed = parse(b"MSH|^~\\&|A\rOBX|\\F\\|\\S\\^a\\T\\~\\R\\&\\E\\b|x~y^z&\\Q\\|\\X41\\\\XC3A9\\|\\\r");
        let message = parsed.message.as_ref().unwrap();
        let obx = message.segment("OBX").unwrap();
        assert_eq!(leaves(obx, 1), [[["|"]]]);
        assert_eq!(leaves(obx, 2), vec![vec![vec!["^"], vec!["a&"]], vec![vec!["~", "\\b"]]]);
        assert_eq!(leaves(obx, 3), vec![vec![vec!["x"]], vec![vec!["y"], vec!["z", "\\Q\\"]]]);
        assert_eq!(leaves(obx, 4), [[["Aé"]]]);
        assert_eq!(leaves(obx, 5), [[["\\"]]]);
        assert_eq!(
            located(&parsed),
            [
                "OBX[2]-3(2).2.2: escape sequence \\Q is not supported (kept as written)",
                "OBX[2]-5(1).1.1: an escape character with no closing escape character (kept as written)",
            ]
        );
        // A long leaf (past what is held inline), escaped or not.
        let long = "x".repeat(40);
        let text = format!("MSH|^~\\&|A\rNTE|{long}|{long}\\F\\{long}|{long}^{long}\r");
        let message = parse(text.as_bytes()).message.unwrap();
        let nte = message.segment("NTE").unwrap();
        assert_eq!(nte.value(1), long);
        assert_eq!(nte.value(2), format!("{long}|{long}"));
        assert_eq!((nte.component(3, 1), nte.component(3, 2)), (long.as_str(), long.as_str()));
    }

    #[test]
    fn line_breaks_of_every_kind() {
        // Lines longer than the chunks `line_end` tests at once, with breaks on either side
        // of a chunk's edge, blank lines, and no break after the last segment.
        for ending in ["\r", "\n", "\r\n", "\n\r", "\r\r\n\n"] {
            for length in [0, 1, 14, 15, 16, 17, 31, 32, 33] {
                let text = "t".repeat(length);
                let raw = format!("\r\nMSH|^~\\&|A{ending}NTE|{text}{ending}{ending}NTE|2|{text}{ending}ZZZ|z");
                let message = parse(raw.as_bytes()).message.unwrap();
                let ids: Vec<&str> = message.segments.iter().map(|s| s.id.as_str()).collect();
                assert_eq!(ids, ["MSH", "NTE", "NTE", "ZZZ"], "{raw:?}");
                assert_eq!(message.segments[1].value(1), text);
                assert_eq!(message.segments[2].value(2), text);
                assert_eq!(message.segments[3].value(1), "z");
            }
        }
        assert_eq!(line_end(b"ab\rcd", 0), 2);
        assert_eq!(line_end(b"ab\rcd", 3), 5);
        assert_eq!(line_end(b"ab", 5), 5, "past the end: nothing to read");
        let long = [b"x".repeat(16), b"\n".to_vec(), b"x".repeat(40)].concat();
        assert_eq!((line_end(&long, 0), line_end(&long, 17)), (16, 57));
    }

    #[test]
    fn header_segments() {
        // MSH-1 and MSH-2 come from the delimiters, in every MSH segment, with or without
        // fields after them.
        for (raw, fields) in [("MSH|^~\\&", 2), ("MSH|^~\\&|", 3), ("MSH|^~\\&||", 4), ("MSH|^~\\&#|A", 3)] {
            let message = parse(raw.as_bytes()).message.unwrap();
            assert_eq!(message.segments[0].fields.len(), fields, "{raw:?}");
            assert_eq!(message.header_value(1), "|");
        }
        let message = parse(b"MSH|^~\\&|A\rMSH|x|B\rMSH\r").message.unwrap();
        assert_eq!(leaves(&message.segments[1], 2), [[["^~\\&"]]]);
        assert_eq!(message.segments[1].value(3), "B");
        assert_eq!(message.segments[2].fields.len(), 2);
    }

    #[test]
    fn character_sets_beyond_utf8() {
        // ASCII in a single-byte character set; bytes from 0x80 in one; `\X…\` decoded in
        // the message's character set; an undefined Windows-1252 byte reported with its line.
        let latin1 = b"MSH|^~\\&|A|B|C|D|||ADT^A31|1|P|2.4||||||8859/1\rPID|||||Sian\\XE9\\\r";
        assert_eq!(parse(latin1).message.unwrap().segment("PID").unwrap().value(5), "Siané");
        let latin1 = b"MSH|^~\\&|A|B|C|D|||ADT^A31|1|P|2.4||||||latin1\rPID|||||\xc9mile^Z\xfcrich\xff\r";
        let parsed = parse(latin1);
        assert!(parsed.problems.is_empty());
        assert_eq!(parsed.message.unwrap().segment("PID").unwrap().component(5, 2), "Zürichÿ");
        let cp1252 = b"MSH|^~\\&|A|B|C|D|||ADT^A31|1|P|2.4||||||cp1252\rNTE|1\rNTE|\x80\x81|\x9f\r";
        let parsed = parse(cp1252);
        assert_eq!(
            located(&parsed),
            ["byte 58 (line 3) is not valid Windows1252: check MSH-18 names the character set the sender uses"]
        );
        let nte = parsed.message.as_ref().unwrap().segments_named("NTE").nth(1).unwrap();
        assert_eq!((nte.value(1), nte.value(2)), ("€\u{fffd}", "Ÿ"));
        let utf8 = b"MSH|^~\\&|A\rNTE|ok\rNTE|\xff|\xc3\xa9\r";
        let parsed = parse(utf8);
        assert_eq!(
            located(&parsed),
            ["byte 22 (line 3) is not valid Utf8: check MSH-18 names the character set the sender uses"]
        );
        assert_eq!(parsed.message.unwrap().segments[2].value(1), "\u{fffd}");
    }

    #[test]
    fn pieces_split_as_str_split_does() {
        for text in ["", "a", "^", "a^", "^a", "a^^b", "^^", "é^字^"] {
            assert_eq!(Pieces::new(text, b'^').collect::<Vec<_>>(), text.split('^').collect::<Vec<_>>(), "{text:?}");
            assert_eq!(pieces(text, b'^'), text.split('^').count(), "{text:?}");
        }
    }
}
