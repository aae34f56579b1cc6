//! Acknowledgements: `MSH`, `MSA` (AA/AE/AR, the original control id, the reason) and, for
//! errors, `ERR` (v2.4 ERR-1: segment, sequence, field and a table 0357 code).

use smallvec::smallvec;

use crate::charset::Charset;
use crate::message::{Component, Delimiters, Field, Message, Repetition, Segment};
use crate::parse::Location;

/// MSA-1.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AckCode {
    /// AA: accepted and committed.
    Accept,
    /// AE: an internal error; nothing of the message was applied; the sender may retry.
    Error,
    /// AR: rejected (invalid, or not something Kith accepts); retrying unchanged will not help.
    Reject,
}

impl AckCode {
    pub fn code(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "AA" | "CA" => Some(AckCode::Accept),
            "AE" | "CE" => Some(AckCode::Error),
            "AR" | "CR" => Some(AckCode::Reject),
            _ => None,
        }
    }
}

/// What went wrong, for the ERR segment: where, and the HL7 table 0357 code and text.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AckError {
    pub location: Option<Location>,
    pub code: &'static str,
    pub code_text: &'static str,
    /// A warning (ERR-4 severity `W`) rather than an error: the message was accepted, and
    /// this says what of it was not applied, or that it waits for a person.
    pub warning: bool,
}

/// Everything an acknowledgement says besides the original's header.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AckContent<'a> {
    pub code: AckCode,
    /// MSA-3: the reason, for the sender's interface engineers. No patient data.
    pub text: Option<&'a str>,
    pub error: Option<AckError>,
    /// MSH-10 of the acknowledgement itself.
    pub control_id: &'a str,
    /// MSH-7, `YYYYMMDDHHMMSS` (the caller reads the clock).
    pub timestamp: &'a str,
}

/// Builds the acknowledgement of `original` (or of unreadable input, when `None`): the
/// original's receiving application and facility become the sender, MSH-9 is
/// `ACK^<trigger>^ACK`, MSA-2 echoes the original MSH-10.
pub fn build_ack(original: Option<&Message>, content: &AckContent<'_>) -> Message {
    let header = |n: usize| original.map_or("", |message| message.header_value(n)).to_owned();
    let or = |value: String, default: &str| if value.is_empty() { default.to_owned() } else { value };
    let trigger = original.map_or("", |message| message.message_type().1).to_owned();
    let delimiters = Delimiters::default();
    let msh = Segment::new(
        "MSH",
        vec![
            Field::text(delimiters.field.to_string()),
            Field::text(delimiters.encoding_characters()),
            Field::text(or(header(5), "KITH")),
            Field::text(or(header(6), "KITH")),
            Field::text(header(3)),
            Field::text(header(4)),
            Field::text(content.timestamp),
            Field::text(""),
            Field::components(["ACK", trigger.as_str(), "ACK"]),
            Field::text(content.control_id),
            Field::text(or(header(11), "P")),
            Field::text(or(header(12), "2.4")),
            Field::text(""),
            Field::text(""),
            Field::text(""),
            Field::text(""),
            Field::text(""),
            Field::text(Charset::Utf8.msh18()),
        ],
    );
    let mut msa = vec![Field::text(content.code.code()), Field::text(header(10))];
    if let Some(text) = content.text {
        msa.push(Field::text(text));
    }
    let mut segments = vec![msh, Segment::new("MSA", msa)];
    if let Some(error) = &content.error {
        let location = error.location.clone().unwrap_or_default();
        let number = |n: Option<usize>| n.map(|n| n.to_string()).unwrap_or_default();
        let mut err = vec![Field {
            repetitions: smallvec![Repetition {
                components: smallvec![
                    Component::text(location.segment_id.clone()),
                    Component::text(if location.segment_index > 0 {
                        location.segment_index.to_string()
                    } else {
                        String::new()
                    }),
                    Component::text(number(location.field)),
                    Component { subcomponents: smallvec![error.code.into(), error.code_text.into(), "HL70357".into()] },
                ],
            }],
        }];
        if error.warning {
            // ERR-2 and ERR-3 (v2.5) are left empty; ERR-4 is the severity.
            err.extend([Field::text(""), Field::text(""), Field::text("W")]);
        }
        segments.push(Segment::new("ERR", err));
    }
    Message { delimiters, segments }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode, parse};

    #[test]
    fn acknowledgements() {
        let original =
            parse(b"MSH|^~\\&|PAS|RXH|KITH|KITHFAC|20261125||ADT^A28^ADT_A05|MSG7|P|2.4\rPID|1\r").message.unwrap();
        let accept = build_ack(
            Some(&original),
            &AckContent {
                code: AckCode::Accept,
                text: None,
                error: None,
                control_id: "K1",
                timestamp: "20261125120000",
            },
        );
        assert_eq!(
            encode(&accept),
            "MSH|^~\\&|KITH|KITHFAC|PAS|RXH|20261125120000||ACK^A28^ACK|K1|P|2.4||||||UNICODE UTF-8\rMSA|AA|MSG7\r"
        );
        let reject = build_ack(
            Some(&original),
            &AckContent {
                code: AckCode::Reject,
                text: Some("unknown team alias in ZTM-1: nope"),
                error: Some(AckError {
                    location: Some(Location::field(3, "ZTM", 1)),
                    code: "103",
                    code_text: "Table value not found",
                    warning: false,
                }),
                control_id: "K2",
                timestamp: "20261125120000",
            },
        );
        let text = encode(&reject);
        assert!(
            text.ends_with(
                "MSA|AR|MSG7|unknown team alias in ZTM-1: nope\rERR|ZTM^3^1^103&Table value not found&HL70357\r"
            ),
            "{text}"
        );
        let reparsed = parse(text.as_bytes()).message.unwrap();
        assert_eq!(reparsed.segment("MSA").unwrap().value(2), "MSG7");

        // Unreadable input still gets an acknowledgement, with an empty MSA-2.
        let garbage = build_ack(
            None,
            &AckContent {
                code: AckCode::Reject,
                text: Some("no MSH"),
                error: None,
                control_id: "K3",
                timestamp: "20261125120000",
            },
        );
        assert!(encode(&garbage).contains("MSA|AR||no MSH"));

        // A warning: accepted, with what was not applied, ERR-4 severity W.
        let warning = build_ack(
            Some(&original),
            &AckContent {
                code: AckCode::Accept,
                text: Some("held for review"),
                error: Some(AckError { location: None, code: "0", code_text: "Message accepted", warning: true }),
                control_id: "K4",
                timestamp: "20261125120000",
            },
        );
        assert!(
            encode(&warning).ends_with("MSA|AA|MSG7|held for review\rERR|^^^0&Message accepted&HL70357|||W\r"),
            "{}",
            encode(&warning)
        );
    }
}
