//! What orders a message against others in an import: its control id, its identifier
//! values, its emails and the records they lead to (see [`super::import`]).

use kith_core::PatientId;
use kith_hl7::Message;

use super::reading::Reading;

/// Email-like values of PID-13 (any component holding an `@`).
pub(crate) fn pid13_emails(message: &Message) -> Vec<String> {
    let mut emails = Vec::new();
    for segment in message.segments_named("PID") {
        for telecom in segment.repetitions(13) {
            for component in 1..=4 {
                let value = telecom.component(component).trim();
                if value.contains('@') {
                    emails.push(value.to_lowercase());
                }
            }
        }
    }
    emails
}

/// What orders a message against others: its control id, its identifier values, its
/// emails and the records they lead to.
pub(crate) fn ordering_keys(reading: &Reading, records: &[PatientId]) -> Vec<String> {
    let mut keys = Vec::new();
    if !reading.control.is_empty() {
        keys.push(format!("control\u{1f}{}\u{1f}{}\u{1f}{}", reading.application, reading.facility, reading.control));
    }
    if let Some(message) = reading.parsed.message.as_ref() {
        for (segment, field) in [("PID", 3), ("MRG", 1)] {
            for segment in message.segments_named(segment) {
                for identifier in segment.repetitions(field) {
                    let value: String = identifier
                        .component(1)
                        .chars()
                        .filter(|c| !c.is_whitespace() && *c != '-')
                        .flat_map(char::to_uppercase)
                        .collect();
                    if !value.is_empty() {
                        keys.push(format!("identifier\u{1f}{value}"));
                    }
                }
            }
        }
        keys.extend(pid13_emails(message).into_iter().map(|email| format!("identifier\u{1f}{}", email.to_uppercase())));
    }
    keys.extend(records.iter().map(|id| format!("record\u{1f}{id}")));
    keys
}
