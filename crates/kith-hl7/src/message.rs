//! The structure of an HL7 v2 message, with decoded (unescaped) text at the leaves.
//!
//! Most fields of a message are one piece of short text, so the containers hold their first
//! element inline ([`SmallVec`]) and the leaves hold up to 24 bytes inline
//! ([`CompactString`]): reading such a field allocates nothing.

use compact_str::CompactString;
use smallvec::SmallVec;

/// The five separators of an ER7 message, from MSH-1 and MSH-2.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
    /// The truncation character of HL7 v2.7 and later (a fifth MSH-2 character), kept so that
    /// MSH-2 is written back as it came; Kith gives it no meaning.
    pub truncation: Option<char>,
}

impl Default for Delimiters {
    fn default() -> Self {
        Self { field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&', truncation: None }
    }
}

impl Delimiters {
    /// MSH-2: the component, repetition, escape and subcomponent characters (and the
    /// truncation character, when there is one).
    pub fn encoding_characters(&self) -> String {
        [self.component, self.repetition, self.escape, self.subcomponent].iter().chain(self.truncation.iter()).collect()
    }
}

/// A message: its delimiters and its segments in order.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Message {
    pub delimiters: Delimiters,
    pub segments: Vec<Segment>,
}

/// A segment: a three-character identifier and its fields. `fields[0]` is field 1; in MSH,
/// field 1 is the field separator and field 2 the encoding characters, as the standard
/// numbers them.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Segment {
    pub id: CompactString,
    pub fields: Vec<Field>,
}

/// A field: one or more repetitions (the first held inline).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Field {
    pub repetitions: SmallVec<[Repetition; 1]>,
}

/// One repetition of a field: one or more components (the first held inline).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Repetition {
    pub components: SmallVec<[Component; 1]>,
}

/// A component: one or more subcomponents, each decoded text (the first held inline).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Component {
    pub subcomponents: SmallVec<[CompactString; 1]>,
}

impl Default for Field {
    fn default() -> Self {
        Field::text("")
    }
}

impl Field {
    /// A field holding one piece of text.
    pub fn text(text: impl Into<CompactString>) -> Self {
        Field { repetitions: SmallVec::from_buf([Repetition::text(text)]) }
    }

    /// A field of components (one repetition).
    pub fn components<I: IntoIterator<Item = S>, S: Into<CompactString>>(components: I) -> Self {
        Field {
            repetitions: SmallVec::from_buf([Repetition {
                components: components.into_iter().map(Component::text).collect(),
            }]),
        }
    }

    /// Component `n` (1-based) of the first repetition, first subcomponent; "" when absent.
    pub fn component(&self, n: usize) -> &str {
        self.repetitions.first().map_or("", |repetition| repetition.component(n))
    }

    /// The first subcomponent of the first component of the first repetition.
    pub fn value(&self) -> &str {
        self.component(1)
    }

    /// True when every leaf is empty.
    pub fn is_empty(&self) -> bool {
        self.repetitions
            .iter()
            .all(|r| r.components.iter().all(|c| c.subcomponents.iter().all(CompactString::is_empty)))
    }
}

impl Repetition {
    pub fn text(text: impl Into<CompactString>) -> Self {
        Repetition { components: SmallVec::from_buf([Component::text(text)]) }
    }

    /// Component `n` (1-based), first subcomponent; "" when absent.
    pub fn component(&self, n: usize) -> &str {
        self.subcomponent(n, 1)
    }

    /// Subcomponent `s` of component `n` (both 1-based); "" when absent.
    pub fn subcomponent(&self, n: usize, s: usize) -> &str {
        n.checked_sub(1)
            .and_then(|n| self.components.get(n))
            .and_then(|component| s.checked_sub(1).and_then(|s| component.subcomponents.get(s)))
            .map_or("", CompactString::as_str)
    }
}

impl Component {
    pub fn text(text: impl Into<CompactString>) -> Self {
        Component { subcomponents: SmallVec::from_buf([text.into()]) }
    }
}

impl Segment {
    pub fn new(id: impl Into<CompactString>, fields: Vec<Field>) -> Self {
        Segment { id: id.into(), fields }
    }

    /// Field `n` (1-based), if present.
    pub fn field(&self, n: usize) -> Option<&Field> {
        n.checked_sub(1).and_then(|n| self.fields.get(n))
    }

    /// The first value of field `n`; "" when absent.
    pub fn value(&self, n: usize) -> &str {
        self.field(n).map_or("", Field::value)
    }

    /// Component `c` of field `n`'s first repetition; "" when absent.
    pub fn component(&self, n: usize, c: usize) -> &str {
        self.field(n).map_or("", |field| field.component(c))
    }

    /// The repetitions of field `n` (none when absent).
    pub fn repetitions(&self, n: usize) -> &[Repetition] {
        self.field(n).map_or(&[], |field| field.repetitions.as_slice())
    }
}

impl Message {
    /// The first segment with this identifier.
    pub fn segment(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|segment| segment.id == id)
    }

    /// Every segment with this identifier, in order.
    pub fn segments_named<'m>(&'m self, id: &'m str) -> impl Iterator<Item = &'m Segment> + 'm {
        self.segments.iter().filter(move |segment| segment.id == id)
    }

    /// The message header, when the message has one first.
    pub fn header(&self) -> Option<&Segment> {
        self.segments.first().filter(|segment| segment.id == "MSH")
    }

    /// MSH-`n`'s first value; "" when absent.
    pub fn header_value(&self, n: usize) -> &str {
        self.header().map_or("", |header| header.value(n))
    }

    /// MSH-9: message code, trigger event and structure, e.g. (`ADT`, `A28`).
    pub fn message_type(&self) -> (&str, &str) {
        self.header().map_or(("", ""), |header| (header.component(9, 1), header.component(9, 2)))
    }

    /// MSH-10, the message control id.
    pub fn control_id(&self) -> &str {
        self.header_value(10)
    }
}
