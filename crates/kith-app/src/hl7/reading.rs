//! A message as read from its bytes, and its acknowledgements (ER7).

use kith_core::Timestamp;
use kith_hl7::ack::{AckCode, AckContent, AckError, build_ack};
use kith_hl7::adt::{self, Rejection};
use kith_hl7::{encode, parse};

use crate::{App, new_uuid};

/// Text as it can be stored and sent: a NUL (which PostgreSQL refuses in text, and which a
/// message can carry as `\X00\`) becomes U+FFFD.
pub(crate) fn storable(text: &str) -> String {
    if text.contains('\0') { text.replace('\0', "\u{FFFD}") } else { text.to_owned() }
}

/// `YYYYMMDDHHMMSS` (UTC), for MSH-7.
fn hl7_timestamp(at: Timestamp) -> String {
    let text = at.to_string(); // 2026-11-25T13:33:13Z
    text.chars().filter(char::is_ascii_digit).take(14).collect()
}

fn ack_control_id() -> String {
    format!("K{}", &new_uuid().simple().to_string()[13..])
}

/// A message as read from its bytes, with what its acknowledgement needs.
pub(crate) struct Reading {
    pub(crate) parsed: kith_hl7::Parsed,
    pub(crate) application: String,
    pub(crate) facility: String,
    pub(crate) control: String,
    pub(crate) message_type: String,
    pub(crate) parse_rejection: Option<Rejection>,
}

impl Reading {
    pub(crate) fn of(raw: &[u8]) -> Self {
        let parsed = parse(raw);
        let message = parsed.message.as_ref();
        let header = |n: usize| message.map_or("", |m| m.header().map_or("", |h| h.component(n, 1))).to_owned();
        let message_type = message.map_or(String::new(), |m| {
            let (code, trigger) = m.message_type();
            if trigger.is_empty() { code.to_owned() } else { format!("{code}^{trigger}") }
        });
        let mut parse_rejection = parsed.first_error().map(|problem| {
            let (code, code_text) = problem.kind.hl7_error_code();
            Rejection {
                text: storable(&problem.to_string()),
                location: problem.location.clone().map(Box::new),
                code,
                code_text,
            }
        });
        let (application, facility, control) = (header(3), header(4), header(10));
        if parse_rejection.is_none()
            && [&application, &facility, &control, &message_type].iter().any(|text| text.contains('\0'))
        {
            parse_rejection = Some(Rejection::new(
                adt::DATA_TYPE_ERROR,
                Some(kith_hl7::Location::field(1, "MSH", 10)),
                "MSH: a NUL character is not allowed in MSH-3, MSH-4, MSH-9 or MSH-10",
            ));
        }
        Reading {
            application: storable(&application),
            facility: storable(&facility),
            control: storable(&control),
            message_type: storable(&message_type),
            parse_rejection,
            parsed,
        }
    }

    /// The acknowledgement of this message.
    pub(crate) fn respond(&self, now: Timestamp, code: AckCode, rejection: Option<&Rejection>) -> String {
        self.respond_with(
            now,
            code,
            rejection.map(|r| r.text.as_str()),
            rejection.map(|r| AckError {
                location: r.location.as_deref().cloned(),
                code: r.code,
                code_text: r.code_text,
                warning: false,
            }),
        )
    }

    /// An `AA` that says something was not applied, or that the message is held: MSA-3 says
    /// what, and ERR carries it as a warning (ERR-4 `W`).
    pub(crate) fn respond_with_warning(&self, now: Timestamp, text: &str) -> String {
        self.respond_with(
            now,
            AckCode::Accept,
            Some(text),
            Some(AckError { location: None, code: "0", code_text: "Message accepted", warning: true }),
        )
    }

    fn respond_with(&self, now: Timestamp, code: AckCode, text: Option<&str>, error: Option<AckError>) -> String {
        let ack = build_ack(
            self.parsed.message.as_ref(),
            &AckContent { code, text, error, control_id: &ack_control_id(), timestamp: &hl7_timestamp(now) },
        );
        storable(&encode(&ack))
    }
}

impl App {
    /// An acknowledgement for bytes that were not ingested — a frame over the size limit, or
    /// a failure before anything could be stored (`AE`: the sender should send it again).
    /// MSA-2 echoes the control id when the bytes have one.
    pub fn ack_without_ingesting(&self, raw: Option<&[u8]>, code: AckCode, reason: &str) -> String {
        let parsed = raw.map(parse);
        let code_pair = if code == AckCode::Error { adt::APPLICATION_INTERNAL_ERROR } else { adt::DATA_TYPE_ERROR };
        let ack = build_ack(
            parsed.as_ref().and_then(|parsed| parsed.message.as_ref()),
            &AckContent {
                code,
                text: Some(reason),
                error: Some(AckError { location: None, code: code_pair.0, code_text: code_pair.1, warning: false }),
                control_id: &ack_control_id(),
                timestamp: &hl7_timestamp(self.now()),
            },
        );
        encode(&ack)
    }
}
