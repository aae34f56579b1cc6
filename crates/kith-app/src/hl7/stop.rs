//! Why applying a message stopped (rejected, held, to be retried), and what it came to.

use kith_core::PatientId;
use kith_core::identity::Conflict;
use kith_hl7::adt::{self, Rejection};
use kith_store::{StoreError, StoreErrorKind};

use crate::AppError;

/// Why applying a message stopped.
pub(crate) enum Stop {
    /// The message is wrong (`AR`); nothing of it is applied.
    Reject(Rejection),
    /// `AR` as the rejection says, with the precise reason kept for the data-quality staff
    /// only (the sender must not learn it: it concerns another organisation's record).
    RejectWithDetail(Rejection, String),
    /// The matching rule found a conflict, or the event is one a person reviews: the message
    /// is held.
    Hold(Held),
    /// A conflict with another transaction: the whole ingestion runs again.
    Retry(StoreError),
    /// The database cannot be reached: the transaction fails, and the sender may resend.
    Unavailable(StoreError),
    /// Kith could not apply it, for a reason a resend would not cure: held for a person.
    Internal(String),
}

/// Why a message is held, for the data-quality staff.
pub(crate) struct Held {
    /// The matching rule's conflict code, or `review` for an event a person reviews.
    pub(crate) code: &'static str,
    /// For the data-quality staff, with Kith's record ids.
    pub(crate) text: String,
    /// For the sender (the ACK's warning): without Kith's record ids. `None`: the conflict
    /// concerns another organisation's record or share of it, so the sender gets a plain
    /// `AA`, the answer it would have had were there no such record.
    pub(crate) summary: Option<String>,
    /// The records in question.
    pub(crate) records: Vec<PatientId>,
}

impl From<Conflict> for Held {
    fn from(conflict: Conflict) -> Self {
        Held {
            code: conflict.code(),
            text: conflict.to_string(),
            summary: Some(conflict.summary().to_owned()),
            records: conflict.records(),
        }
    }
}

impl Held {
    /// Held, with nothing said to the sender (see [`Held::summary`]).
    pub(crate) fn silent(conflict: Conflict) -> Self {
        Held { summary: None, ..conflict.into() }
    }
}

impl From<StoreError> for Stop {
    fn from(error: StoreError) -> Self {
        match error.kind() {
            StoreErrorKind::Conflict | StoreErrorKind::Duplicate => Stop::Retry(error),
            StoreErrorKind::Unavailable => Stop::Unavailable(error),
            StoreErrorKind::Corrupt | StoreErrorKind::Database => Stop::Internal(error.to_string()),
        }
    }
}

impl From<AppError> for Stop {
    fn from(error: AppError) -> Self {
        match error {
            AppError::Store(error) => error.into(),
            // A use case's refusal (a conflict, an invalid value) is the sender's to fix.
            AppError::Invalid(text) | AppError::Conflict(text) | AppError::NotFound(text) => {
                Stop::Reject(Rejection::new(adt::DATA_TYPE_ERROR, None, text))
            }
            AppError::Consent(refusal) => {
                Stop::Reject(Rejection::new(adt::TABLE_VALUE_NOT_FOUND, None, refusal.to_string()))
            }
            other => Stop::Internal(other.to_string()),
        }
    }
}

/// Whether a failure is the database being unreachable: the only one a resend can cure.
pub(crate) fn is_unavailable(error: &AppError) -> bool {
    matches!(error, AppError::Store(error) if error.kind() == StoreErrorKind::Unavailable)
}

/// What applying a message came to.
pub(crate) struct Applied {
    pub(crate) patient: Option<PatientId>,
    /// What the message gave that was not applied, and why (told to the sender in the ACK
    /// and kept with the message for the data-quality staff).
    pub(crate) notices: Vec<String>,
}

impl Applied {
    pub(crate) fn about(patient: PatientId, notices: Vec<String>) -> Self {
        Applied { patient: Some(patient), notices }
    }
}

pub(crate) fn reject<T>(
    code: (&'static str, &'static str),
    location: Option<kith_hl7::Location>,
    text: impl Into<String>,
) -> Result<T, Stop> {
    Err(Stop::Reject(Rejection::new(code, location, text)))
}

pub(crate) fn pid3(pid_segment: usize) -> Option<kith_hl7::Location> {
    Some(kith_hl7::Location::field(pid_segment, "PID", 3))
}
