//! Kith's domain: organisations, teams, accounts, patients, consent and the access rule.
//!
//! Everything here is pure: no I/O, no clock, no randomness. Callers load facts, ask a
//! function in this crate for a decision, and write the result. The access rule of
//! DESIGN.md §3 lives in [`access`] and nowhere else.

pub mod access;
pub mod audit;
pub mod consent;
pub mod coordination;
pub mod directory;
pub mod document;
pub mod identity;
pub mod ids;
pub mod integration;
pub mod label;
pub mod model;
pub mod notify;
pub mod patient;
pub mod team;
pub mod text;
pub mod time;

pub use access::{Basis, Decision, DenyReason};
pub use ids::*;
pub use label::{LabelSet, PrivacyLabel};
pub use time::{Date, Timestamp};
