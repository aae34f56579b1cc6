//! Kith's storage.
//!
//! One query layer ([`Tx`]) is written once, in the SQL both engines share, over a small
//! connection trait ([`Conn`]). Each backend ([`sqlite`], [`postgres`]) implements the trait
//! and the transaction discipline ([`Backend`]) and owns its migrations. Every use case runs
//! as one closure in one transaction ([`Store::write`]); its audit events are appended to
//! the hash chain just before commit, so data and audit commit together or not at all.

//!
//! The crate root only declares the modules and re-exports what other crates use; each
//! module imports from the module that defines what it needs, never back through the root,
//! so that no module depends, directly or around a circle, on one that depends on it.

mod audit_writer;
mod conn;
mod error;
mod migrations;
mod pool;
pub mod postgres;
pub mod sqlite;
mod store;
mod tx;
mod url;
mod value;

pub use conn::{Backend, Conn, Dialect, Finish, MigrationReport};
pub use error::{StoreError, StoreErrorKind, TransactionError};
pub use store::{Audited, Store};
pub use tx::*;
pub use url::DatabaseUrl;
pub use value::{Param, Row, Value};
