//! HL7 v2 feeds: ingesting one message — attributed to the integration its credentials
//! name, checked for a repeat, applied, stored with its acknowledgement, all in one
//! transaction, so that the ACK the sender receives is only ever sent after everything it
//! acknowledges is committed — and the data-quality staff's queue of held messages.
//!
//! What a message does is decided by the events table (`kith_hl7::events`) and the
//! matching rule (`kith_core::identity`), applied in [`apply`]. An answer is
//! never `AE` for a message Kith could store: a message the rule cannot apply safely, or
//! that fails inside Kith for a reason a resend would not cure, is held (`AA` with a
//! warning) for a person. Only a transaction that cannot commit (the database unavailable)
//! is answered `AE`, and nothing of it is stored; ingestion returns that answer too, so
//! that MLLP, `POST /hl7/v2` and `kith hl7 import` never write their own.
//!
//! The modules, each depending only on those listed before it:
//!
//! - [`reading`]: a message as read from its bytes, and its acknowledgements;
//! - [`stop`]: why applying a message stopped (rejected, held, retried) and what it came to;
//! - [`feed`]: what ingestion knows of an organisation, and what one message's changes share;
//! - [`matching`]: which record a message is about (the matching rule asked);
//! - [`adt`], [`merges`], [`filing`]: ADT, ADT^A40 merges, and results, documents and
//!   appointments;
//! - [`apply`]: one readable message applied, by the events table;
//! - [`ingest`]: one message or a batch ingested in one transaction, stored with its ACK;
//! - [`held`]: the data-quality staff's queue: held messages reprocessed and resolved;
//! - [`ordering`], [`bulk`], [`import`]: `kith hl7 import`, in parallel and in bulk;
//! - [`integrations`], [`settings`], [`label_rules`]: an organisation's feed set-up.

mod adt;
mod apply;
mod bulk;
mod feed;
mod filing;
mod held;
mod import;
mod ingest;
mod integrations;
mod label_rules;
mod matching;
mod merges;
mod ordering;
mod reading;
mod settings;
mod stop;

pub use held::{Resolution, resolutions_for};
pub use import::MAX_IMPORT_WORKERS;
pub use ingest::{Hl7Sender, Ingested};
pub use integrations::{IntegrationBinding, NewIntegration, certificate_sha256};
pub use settings::normalise_authority;
