//! Kith's use cases.
//!
//! Each use case is one [`Store::write`] transaction: load the facts, decide with a pure
//! function from `kith-core`, write the data with its audit event (and outbox messages),
//! commit. A denied attempt is committed too — as an audit event — and then reported as
//! [`AppError::Denied`], whose message says nothing about why.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use kith_core::audit::{Actor, AuditRecord, Channel, Outcome};
use kith_core::consent::ConsentRefusal;
use kith_core::team::TeamRuleViolation;
use kith_core::text::InvalidText;
use kith_core::{AccountId, LabelSet, OrganisationId, PatientId, TeamId, Timestamp};
pub use kith_store::{Audited, TeamPatientFilter};
use kith_store::{Store, StoreError, TransactionError};

mod access;
mod account_access;
mod audit;
mod coordination;
pub mod coordinators;
mod documents;
mod hl7;
pub mod invitations;
mod lookups;
pub mod membership_invitations;
mod on_behalf;
mod organisations;
pub mod outbox;
pub mod password;
mod patients;
pub mod professionals_csv;
pub mod sealing;
pub mod secrets;
pub mod sessions;
mod tokens;
pub mod two_factor;
mod workspace;

pub use access::*;
pub use account_access::*;
pub use audit::*;
pub use documents::*;
pub use hl7::*;
pub use lookups::*;
pub use on_behalf::*;
pub use organisations::*;
pub use patients::*;
pub use secrets::token_hash;
pub use tokens::*;
pub use workspace::*;

/// The source of "now". Production uses the system clock; tests move time by hand.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp::from_micros(micros)
    }
}

/// A clock that only moves when told to.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(AtomicI64::new(start.as_micros()))
    }
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(i64::try_from(by.as_micros()).unwrap_or(i64::MAX), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.load(Ordering::SeqCst))
    }
}

/// What a use case can answer instead of success.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad input: the message says which field and what is expected.
    #[error("{0}")]
    Invalid(String),
    /// Something named does not exist (operator and administrative paths only: clinical
    /// paths answer [`AppError::Denied`] so that existence does not leak).
    #[error("{0}")]
    NotFound(String),
    /// It exists already, or conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// A team rule refused the change; the message says what to do instead.
    #[error("{0}")]
    TeamRule(#[from] TeamRuleViolation),
    /// A consent rule refused the change.
    #[error("{0}")]
    Consent(ConsentRefusal),
    /// Not permitted, or not there: deliberately the same answer. The precise reason is in
    /// the audit trail.
    #[error("not found or not permitted")]
    Denied,
    /// An action this caller may never take, whatever the record: saying so reveals nothing
    /// about any patient.
    #[error("{0}")]
    Forbidden(String),
    /// The caller has reached a limit on attempts (e.g. patient look-ups that matched no
    /// one); the message says when to try again. Says nothing about any patient.
    #[error("{0}")]
    TooManyAttempts(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

impl From<InvalidText> for AppError {
    fn from(error: InvalidText) -> Self {
        AppError::Invalid(error.to_string())
    }
}

impl From<ConsentRefusal> for AppError {
    fn from(refusal: ConsentRefusal) -> Self {
        match refusal {
            ConsentRefusal::Denied(_) => AppError::Denied,
            ConsentRefusal::OnlyDataQualityMayAdd => AppError::Forbidden(refusal.to_string()),
            other => AppError::Consent(other),
        }
    }
}

impl TransactionError for AppError {
    fn is_retryable(&self) -> bool {
        matches!(self, AppError::Store(error) if error.is_retryable())
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// The operator: someone running the `kith` CLI on the server.
#[derive(Clone, Debug)]
pub struct Operator {
    pub name: String,
}

impl Operator {
    /// The operator named by the OS user running the command.
    pub fn from_environment() -> Self {
        let name =
            std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "operator".to_owned());
        Self { name }
    }

    fn actor(&self) -> Actor {
        Actor::Operator { name: self.name.clone() }
    }
}

/// A professional acting through one of their teams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProfessionalContext {
    pub account: AccountId,
    pub team: TeamId,
    pub organisation: OrganisationId,
    pub channel: Channel,
}

/// Kith's use cases over one store.
#[derive(Clone)]
pub struct App {
    store: Store,
    clock: Arc<dyn Clock>,
    /// Seals what must be read back (TOTP keys). A random one unless
    /// [`App::with_sealing_key`] gives the server's.
    sealing: Arc<sealing::SealingKey>,
}

impl App {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock, sealing: Arc::new(sealing::SealingKey::ephemeral()) }
    }

    /// The server's sealing key (from `KITH_SECRET_KEY` or its key file), so that sealed
    /// values open after a restart.
    pub fn with_sealing_key(mut self, key: sealing::SealingKey) -> Self {
        self.sealing = Arc::new(key);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// A new identifier: UUID version 7, so keys created together sort together.
pub(crate) fn new_uuid() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

/// An audit record with the common fields filled in.
#[derive(Clone)]
pub(crate) struct AuditBuilder(AuditRecord);

impl AuditBuilder {
    pub(crate) fn new(at: Timestamp, actor: Actor, channel: Channel, action: &'static str) -> Self {
        Self(AuditRecord {
            at,
            actor,
            channel,
            organisation: None,
            acting_team: None,
            patient: None,
            action,
            outcome: Outcome::Allowed,
            basis: None,
            entry_kinds: String::new(),
            labels: LabelSet::EMPTY,
            subject: None,
            reason: None,
        })
    }
    /// An event by a professional acting through their team, about a patient.
    pub(crate) fn professional(
        at: Timestamp,
        context: &ProfessionalContext,
        action: &'static str,
        patient: PatientId,
    ) -> Self {
        Self::new(at, Actor::Account(context.account), context.channel, action)
            .organisation(context.organisation)
            .team(context.team)
            .patient(patient)
    }
    pub(crate) fn organisation(mut self, organisation: OrganisationId) -> Self {
        self.0.organisation = Some(organisation);
        self
    }
    pub(crate) fn team(mut self, team: TeamId) -> Self {
        self.0.acting_team = Some(team);
        self
    }
    pub(crate) fn patient(mut self, patient: PatientId) -> Self {
        self.0.patient = Some(patient);
        self
    }
    pub(crate) fn basis(mut self, basis: &'static str) -> Self {
        self.0.basis = Some(basis);
        self
    }
    pub(crate) fn outcome(mut self, outcome: Outcome) -> Self {
        self.0.outcome = outcome;
        self
    }
    pub(crate) fn subject(mut self, subject: impl ToString) -> Self {
        self.0.subject = Some(subject.to_string());
        self
    }
    pub(crate) fn reason(mut self, reason: impl ToString) -> Self {
        self.0.reason = Some(reason.to_string());
        self
    }
    pub(crate) fn data(mut self, kinds: String, labels: LabelSet) -> Self {
        self.0.entry_kinds = kinds;
        self.0.labels = labels;
        self
    }
    pub(crate) fn build(self) -> AuditRecord {
        self.0
    }
}
