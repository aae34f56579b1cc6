//! SQLite's errors as store errors: which ones a retry may cure, which mean the database
//! cannot be reached or is not what Kith wrote.

use rusqlite::ErrorCode;

use crate::error::{StoreError, StoreErrorKind};

pub(super) fn map_error(error: rusqlite::Error) -> StoreError {
    let kind = match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreErrorKind::Conflict,
        Some(ErrorCode::ConstraintViolation) => {
            let message = error.to_string();
            if message.contains("UNIQUE") || message.contains("PRIMARY KEY") {
                StoreErrorKind::Duplicate
            } else {
                StoreErrorKind::Database
            }
        }
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::DiskFull | ErrorCode::SystemIoFailure) => {
            StoreErrorKind::Unavailable
        }
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreErrorKind::Corrupt,
        _ => StoreErrorKind::Database,
    };
    StoreError::new(kind, error.to_string())
}
