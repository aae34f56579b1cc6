//! What can go wrong in storage, and whether running a transaction again may help.

use std::fmt;

/// What went wrong in storage. The message is for logs and operators, never for patients.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct StoreError {
    pub kind: StoreErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Another transaction got in the way (SQLite busy, PostgreSQL serialization failure or
    /// deadlock): running the transaction again may succeed.
    Conflict,
    /// A unique constraint: usually a concurrent insert of the same thing; running the
    /// transaction again lets it see the other row and say so properly.
    Duplicate,
    /// The database cannot be reached or is out of connections.
    Unavailable,
    /// The stored data is not what Kith wrote (or a newer Kith wrote it).
    Corrupt,
    /// Anything else the database reported.
    Database,
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreErrorKind::Conflict => "transaction conflict",
            StoreErrorKind::Duplicate => "duplicate",
            StoreErrorKind::Unavailable => "database unavailable",
            StoreErrorKind::Corrupt => "unexpected stored data",
            StoreErrorKind::Database => "database error",
        })
    }
}

impl StoreError {
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Corrupt, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Unavailable, message)
    }
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, StoreErrorKind::Conflict | StoreErrorKind::Duplicate)
    }
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

/// An error type that use cases return from inside a transaction: it can carry a store
/// error, and says whether the transaction is worth running again.
pub trait TransactionError: From<StoreError> {
    fn is_retryable(&self) -> bool;
}

impl TransactionError for StoreError {
    fn is_retryable(&self) -> bool {
        StoreError::is_retryable(self)
    }
}
