//! HL7 version 2 for Kith, pure and total.
//!
//! - [`parse`] reads an ER7 message (the `|^~\&` encoding) from bytes: segments, fields,
//!   repetitions, components and subcomponents; delimiters from MSH-1 and MSH-2; the escape
//!   sequences `\F\ \S\ \T\ \R\ \E\ \.br\ \Xhh…\`; CR, LF or CRLF between segments; the
//!   character sets of MSH-18 (UTF-8, ISO-8859-1, Windows-1252). It never panics and never
//!   gives up early: it returns what it could read and every problem it found, with where.
//! - [`encode`] writes a [`Message`] back as ER7 (UTF-8), escaping what needs it.
//! - [`ack`] builds acknowledgements: MSA-1 `AA`/`AE`/`AR`, MSA-2 echoing MSH-10, MSA-3 the
//!   reason, and an ERR segment naming the location and the HL7 error code.
//! - [`mllp`] frames and unframes MLLP (`0x0B … 0x1C 0x0D`) with a size cap, tolerating
//!   bytes between frames and several frames per read.
//!
//! - [`adt`] reads ADT messages (PID and the `ZTM` team segment) into Kith's domain types;
//!   [`clinical`] reads results (ORU), documents (MDM) and appointments (SIU), and chooses
//!   their privacy label from an organisation's rules.
//!
//! Nothing here does I/O, reads a clock or allocates without bound.

pub mod ack;
pub mod adt;
pub mod batch;
mod charset;
pub mod clinical;
mod encode;
mod escape;
pub mod events;
mod message;
pub mod mllp;
mod parse;
#[cfg(test)]
mod reference;

pub use charset::Charset;
// The types of a message's leaves (text inline up to 24 bytes) and containers, for users of
// `Message` that build or take one apart without depending on them.
pub use compact_str::CompactString;
pub use encode::encode;
pub use message::{Component, Delimiters, Field, Message, Repetition, Segment};
pub use parse::{Location, Parsed, Problem, ProblemKind, Severity, parse};
pub use smallvec::{SmallVec, smallvec};
