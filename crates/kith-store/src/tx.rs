//! The query layer: every statement Kith runs, written once in the SQL both engines share.
//!
//! [`Tx`] is one transaction (`transaction.rs`); its statements are methods written in one
//! module per domain, each an `impl Tx` block. `rows.rs` turns rows into domain values and
//! back, `bulk.rs` builds the many-rows-per-statement look-ups and inserts. This module only
//! declares them and re-exports what other crates use; the modules import one another
//! (never this one), and none imports one that imports it.

mod access_facts;
mod accounts;
mod audit;
mod break_glass;
mod bulk;
mod care_links;
mod coordination;
mod documents;
mod entries;
mod feed_bulk;
mod hl7;
mod notifications;
mod on_behalf;
mod organisations;
mod outbox;
mod patients;
pub mod professionals;
mod rows;
mod sessions;
mod teams;
mod tokens;
mod transaction;

pub use access_facts::{AccountAccessFacts, RecordReadFacts};
pub use care_links::{TeamPatient, TeamPatientFilter};
pub use coordination::{KnownTies, NewMembershipInvitation, OpenInvitation};
pub use feed_bulk::{NewPatientIdentifier, RecordRef};
pub use hl7::{MergeCounts, NewHl7Message};
pub use on_behalf::OfficerEvents;
pub use outbox::{OUTBOX_STATUSES, OutboxCount, OutboxMessage, OutboxRow};
pub use sessions::{CodePurpose, CodeRow, MessageState, PendingLetter, SessionRow, TwoFactorRow};
pub use transaction::Tx;
