//! What Kith does with each message type and trigger event a hospital sends: the events
//! table of ARCHITECTURE.md. A feed sends far more than Kith acts on; everything Kith
//! knowingly ignores is accepted (`AA`) and stored, so that no hospital has to filter its
//! feed first. Only message types and events Kith does not know are refused (`AR`).

/// What Kith does with a message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// Creates the patient's record, or updates it; ZTM adds and discharges teams. A28 and
    /// A31 may always create; A01, A04, A05 and A08 unless the organisation creates records
    /// from A28/A31 only.
    Register {
        person_information: bool,
    },
    /// Updates the demographics (and ZTM teams) of a record Kith knows; creates none. About
    /// a patient Kith does not know, it is stored without effect.
    Update,
    /// ADT^A40: merges the record of MRG-1 into the record of PID-3.
    Merge,
    /// ORU^R01: files results.
    Result,
    Document(DocumentAction),
    Appointment(AppointmentAction),
    /// Accepted and stored; changes nothing (a notification without content, bed and
    /// tracking events, resource bookings).
    StoreOnly,
    /// Accepted and stored; changes nothing, and is listed for the organisation's
    /// data-quality staff with this reason: events that would delete or re-identify data,
    /// which Kith never does from a feed unreviewed.
    StoreForReview(&'static str),
}

/// What an MDM message does to the document of TXA-12.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DocumentAction {
    /// T02, T04, T08: files the document, or a new version of it.
    File,
    /// T06: an addendum, added to the document of TXA-13 (or TXA-12) as a new version.
    Addendum,
    /// T10: a replacement of the document of TXA-13 (or TXA-12): a new version.
    Replace,
    /// T11: the document is cancelled: a new version marked cancelled, earlier ones kept.
    Cancel,
}

/// What an SIU message does to the appointment of SCH-1.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AppointmentAction {
    /// S12: booked.
    Book,
    /// S13 (rescheduled), S14 (modified): a new version, booked again if it was cancelled.
    Change,
    /// S15 (cancelled), S16 (discontinued): a new version marked cancelled.
    Cancel,
    /// S17: the sender deleted it; Kith keeps it, cancelled, with its history.
    Delete,
    /// S26: the patient did not attend.
    NoShow,
}

const DELETE_PERSON: &str = "ADT^A29 asks to delete person information; Kith never deletes a record from a feed";
const DELETE_VISIT: &str = "ADT^A23 asks to delete a visit; Kith keeps what it filed";
const OLD_MERGE: &str = "a merge or identifier change Kith does not apply from a feed: merge with ADT^A40 or by hand";

/// What Kith does with `code^trigger`; `None` for what it does not know (`AR`).
pub fn action(code: &str, trigger: &str) -> Option<Action> {
    use Action::*;
    let number = |prefix: char| -> Option<u32> {
        let rest = trigger.strip_prefix(prefix)?;
        if rest.len() == 2 { rest.parse().ok() } else { None }
    };
    Some(match code {
        "ADT" => match number('A')? {
            1 | 4 | 5 | 8 => Register { person_information: false },
            28 | 31 => Register { person_information: true },
            40 => Merge,
            // Visits: transfers, discharges, cancellations, pending events, leave of absence,
            // changes of doctor. Their PID is the patient's current demographics.
            2 | 3 | 6 | 7 | 11..=16 | 21 | 22 | 25..=27 | 32 | 33 | 38 | 52..=55 | 61 | 62 => Update,
            29 => StoreForReview(DELETE_PERSON),
            23 => StoreForReview(DELETE_VISIT),
            18 | 30 | 34..=36 | 39 | 41..=44 | 46..=51 => StoreForReview(OLD_MERGE),
            // Tracking, bed status, swaps, links, queries, visit moves, allergies.
            9 | 10 | 17 | 19 | 20 | 24 | 37 | 45 | 56..=60 => StoreOnly,
            _ => return None,
        },
        "ORU" if trigger == "R01" => Result,
        "MDM" => match number('T')? {
            2 | 4 | 8 => Document(DocumentAction::File),
            6 => Document(DocumentAction::Addendum),
            10 => Document(DocumentAction::Replace),
            11 => Document(DocumentAction::Cancel),
            1 | 3 | 5 | 7 | 9 => StoreOnly,
            _ => return None,
        },
        "SIU" => match number('S')? {
            12 => Appointment(AppointmentAction::Book),
            13 | 14 => Appointment(AppointmentAction::Change),
            15 | 16 => Appointment(AppointmentAction::Cancel),
            17 => Appointment(AppointmentAction::Delete),
            26 => Appointment(AppointmentAction::NoShow),
            // Services and resources booked, changed, cancelled or deleted.
            18..=25 => StoreOnly,
            _ => return None,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_adt_event_of_the_standard_has_an_action() {
        for n in 1..=62 {
            let trigger = format!("A{n:02}");
            assert!(action("ADT", &trigger).is_some(), "ADT^{trigger}");
        }
        assert_eq!(action("ADT", "A63"), None);
        assert_eq!(action("ADT", "Z99"), None);
        assert_eq!(action("ADT", "A1"), None);
        assert_eq!(action("ADT", ""), None);
    }

    #[test]
    fn documents_appointments_and_results() {
        assert_eq!(action("MDM", "T10"), Some(Action::Document(DocumentAction::Replace)));
        assert_eq!(action("MDM", "T01"), Some(Action::StoreOnly));
        assert_eq!(action("MDM", "T12"), None);
        assert_eq!(action("SIU", "S26"), Some(Action::Appointment(AppointmentAction::NoShow)));
        assert_eq!(action("SIU", "S20"), Some(Action::StoreOnly));
        assert_eq!(action("SIU", "S27"), None);
        assert_eq!(action("ORU", "R01"), Some(Action::Result));
        assert_eq!(action("ORU", "R30"), None);
        assert_eq!(action("ORM", "O01"), None);
    }
}
