//! The query layer: every statement Kith runs, written once in the SQL both engines share.

use std::time::Duration;

use kith_core::access::{
    BreakGlassFacts, CareLinkFacts, DemographicsFacts, MembershipFacts, RecordAccessFacts, RecordScope, SessionFacts,
    TeamRelationFacts,
};
use kith_core::audit::{AuditRecord, ChainedEvent, StoredAuditRecord, event_hash};
use kith_core::consent::LinkBasis;
use kith_core::model::*;
use kith_core::patient::{Demographics, EntryKind, LocalIdentifier, NhsNumber, RegistrationStatus, Sex};
use kith_core::team::{AccountStatus, MembershipRole, MembershipStatus, TeamKind, TeamStatus};
use kith_core::text::{EmailAddress, MobileNumber, Name, OrganisationCode, PostalAddress, Reason, TeamAlias, Title};
use kith_core::*;
use uuid::Uuid;

use crate::{Conn, Dialect, Param, Row, StoreError};

mod coordination;
mod hl7;
mod outbox;
pub mod professionals;
mod sessions;
mod tokens;
pub use coordination::{KnownTies, NewMembershipInvitation, OpenInvitation};
pub use hl7::{MergeCounts, NewHl7Message};
pub use outbox::{OUTBOX_STATUSES, OutboxCount};
pub use sessions::{CodePurpose, CodeRow, MessageState, PendingLetter, SessionRow, TwoFactorRow};

/// One transaction's view of the database. Created by [`crate::Store::write`] or
/// [`crate::Store::read`]; audit events recorded with [`Tx::audit`] join the chain at commit.
pub struct Tx<'c> {
    conn: &'c mut dyn Conn,
    pending_audit: Vec<AuditRecord>,
    /// A write transaction that will not be run again if it fails (see
    /// [`Tx::is_last_attempt`]).
    pub(crate) last_attempt: bool,
}

/// A message for the outbox, written in the transaction of the change that causes it and
/// delivered later by the outbox worker (`kith-app`'s `deliver_outbox`).
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: Uuid,
    /// `email`, `sms` or `letter`.
    pub channel: &'static str,
    pub template: &'static str,
    pub recipient: String,
    /// Identifiers only: never health information.
    pub payload: String,
    /// The raw one-time code the message carries (a password-reset or invitation code),
    /// kept only until the message is sent or given up.
    pub secret: Option<String>,
    pub created_at: Timestamp,
}

/// Never prints the secret or the recipient.
impl std::fmt::Debug for OutboxMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxMessage")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .field("template", &self.template)
            .field("payload", &self.payload)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A stored outbox message and its delivery state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    pub message: OutboxMessage,
    /// `pending`, `sending`, `sent`, `failed` or `dead`.
    pub status: String,
    /// Attempts that failed (or were abandoned by a worker that stopped mid-send).
    pub attempts: i64,
    /// When a `pending` or `failed` message is due; for `sending`, when its lease runs out;
    /// for `dead`, when it was given up.
    pub next_attempt_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    /// A short description of the last failure, free of recipients and content.
    pub last_error: Option<String>,
}

fn corrupt<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> StoreError {
    move |error| StoreError::corrupt(format!("stored {what} is invalid: {error}"))
}

fn coded<T>(what: &'static str, code: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, StoreError> {
    parse(code).ok_or_else(|| StoreError::corrupt(format!("stored {what} {code:?} is unknown")))
}

fn labels(bits: i64) -> Result<LabelSet, StoreError> {
    u8::try_from(bits)
        .ok()
        .and_then(LabelSet::from_bits)
        .ok_or_else(|| StoreError::corrupt(format!("stored label set {bits} is invalid")))
}

/// The bit stored for one entry label.
fn label_bit(label: PrivacyLabel) -> i64 {
    i64::from(LabelSet::EMPTY.with(label).bits())
}

fn entry_label(bits: Option<i64>) -> Result<Option<PrivacyLabel>, StoreError> {
    bits.map(|bits| {
        let set = labels(bits)?;
        let mut iter = set.iter();
        match (iter.next(), iter.next()) {
            (Some(label), None) => Ok(label),
            _ => Err(StoreError::corrupt(format!("stored entry label {bits} is not one label"))),
        }
    })
    .transpose()
}

/// What a professional's read of a record needs to know, loaded together by
/// [`Tx::record_read_facts`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordReadFacts {
    pub access: RecordAccessFacts,
    pub demographics: DemographicsFacts,
    pub patient: Patient,
}

/// The account and its membership of the acting team.
struct ProfessionalFacts {
    account_status: AccountStatus,
    membership: Option<MembershipFacts>,
    team_kind: TeamKind,
}

impl ProfessionalFacts {
    fn record_access_facts(
        &self,
        now: Timestamp,
        team: TeamId,
        care_link: Option<CareLinkFacts>,
        break_glass: Option<BreakGlassFacts>,
        sharing_disabled: bool,
    ) -> RecordAccessFacts {
        RecordAccessFacts {
            now,
            acting_team: team,
            acting_team_kind: self.team_kind,
            account_status: self.account_status,
            membership: self.membership,
            care_link,
            break_glass,
            sharing_disabled,
        }
    }
}

/// A care link's labels at `offset` and its discharge time after them (both NULL without a
/// link).
fn care_link_facts(row: &Row, offset: usize) -> Result<Option<CareLinkFacts>, StoreError> {
    match row.opt_int(offset)? {
        Some(bits) => Ok(Some(CareLinkFacts { labels: labels(bits)?, active: row.is_null(offset + 1)? })),
        None => Ok(None),
    }
}

macro_rules! organisation_columns {
    () => {
        "id, code, name, break_glass_seconds, created_at"
    };
}
macro_rules! team_columns {
    () => {
        "id, organisation_id, kind, name, alias, status, default_labels, created_at"
    };
}
macro_rules! account_columns {
    () => {
        "id, email, name, status, created_at"
    };
}
macro_rules! patient_columns {
    () => {
        "id, nhs_number, family_name, given_name, birth_date, sex, email, mobile, registration, account_id, sharing_disabled, merged_into, created_at, updated_at, address"
    };
}
macro_rules! care_link_columns {
    () => {
        "patient_id, team_id, labels, basis, changed_by, linked_at, updated_at, discharged_at"
    };
}
macro_rules! entry_columns {
    () => {
        "id, patient_id, kind, label, authored_team_id, author_account_id, effective_at, recorded_at, title, body, version, status, source_key, source_message_id, ends_at"
    };
}
macro_rules! grant_columns {
    () => {
        "id, patient_id, account_id, team_id, reason, started_at, expires_at, ended_at"
    };
}
macro_rules! audit_columns {
    () => {
        "seq, at, actor_kind, actor_account_id, actor_name, channel, organisation_id, acting_team_id, patient_id, action, outcome, basis, entry_kinds, labels, subject, reason, prev_hash, hash"
    };
}
macro_rules! outbox_columns {
    () => {
        "id, channel, template, recipient, payload, secret, created_at, status, attempts, next_attempt_at, sent_at, last_error"
    };
}
pub(crate) use outbox_columns;

mod feed_bulk;
mod on_behalf;
pub use feed_bulk::{NewPatientIdentifier, RecordRef};

/// What [`Tx::account_access_facts`] loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountAccessFacts {
    pub demographics: DemographicsFacts,
    /// The record-access facts through each of the account's teams, in team order.
    pub access: Vec<RecordAccessFacts>,
    /// Each of those teams with its organisation.
    pub organisations: Vec<(TeamId, OrganisationId)>,
}

/// A patient record's values as stored, in the order of `patient_columns!()`.
struct PatientRow<'p> {
    patient: &'p Patient,
    birth_date: String,
    address: Option<String>,
}

impl<'p> PatientRow<'p> {
    fn of(patient: &'p Patient) -> Self {
        PatientRow {
            patient,
            birth_date: patient.demographics.birth_date.to_string(),
            address: patient.demographics.address.as_ref().map(PostalAddress::joined),
        }
    }

    fn params<'r>(&'r self, params: &mut Vec<Param<'r>>) {
        let (patient, d) = (self.patient, &self.patient.demographics);
        params.extend([
            patient.id.into(),
            patient.nhs_number.as_ref().map(NhsNumber::as_str).into(),
            d.family_name.as_str().into(),
            d.given_name.as_str().into(),
            Param::Text(&self.birth_date),
            d.sex.code().into(),
            d.email.as_ref().map(EmailAddress::as_str).into(),
            d.mobile.as_ref().map(MobileNumber::as_str).into(),
            patient.registration.code().into(),
            patient.account.into(),
            patient.sharing_disabled.into(),
            patient.merged_into.into(),
            patient.created_at.into(),
            patient.updated_at.into(),
            Param::from(self.address.as_deref()),
        ]);
    }
}

/// A care link's values, in the order of `care_link_columns!()`.
fn care_link_params<'l>(link: &'l CareLink, params: &mut Vec<Param<'l>>) {
    params.extend([
        link.patient.into(),
        link.team.into(),
        Param::Int(i64::from(link.labels.bits())),
        link.basis.code().into(),
        link.changed_by.into(),
        link.linked_at.into(),
        link.updated_at.into(),
        link.discharged_at.into(),
    ]);
}

fn organisation_from(row: &Row) -> Result<Organisation, StoreError> {
    Ok(Organisation {
        id: OrganisationId::from_uuid(row.uuid(0)?),
        code: OrganisationCode::parse(row.text(1)?).map_err(corrupt("organisation code"))?,
        name: Name::parse("name", row.text(2)?).map_err(corrupt("organisation name"))?,
        break_glass_duration: Duration::from_secs(u64::try_from(row.int(3)?).map_err(corrupt("duration"))?),
        created_at: row.timestamp(4)?,
    })
}

fn team_from(row: &Row) -> Result<Team, StoreError> {
    Ok(Team {
        id: TeamId::from_uuid(row.uuid(0)?),
        organisation: OrganisationId::from_uuid(row.uuid(1)?),
        kind: coded("team kind", row.text(2)?, TeamKind::from_code)?,
        name: Name::parse("name", row.text(3)?).map_err(corrupt("team name"))?,
        alias: TeamAlias::parse(row.text(4)?).map_err(corrupt("team alias"))?,
        status: coded("team status", row.text(5)?, TeamStatus::from_code)?,
        default_labels: labels(row.int(6)?)?,
        created_at: row.timestamp(7)?,
    })
}

fn account_from(row: &Row) -> Result<Account, StoreError> {
    Ok(Account {
        id: AccountId::from_uuid(row.uuid(0)?),
        email: EmailAddress::parse(row.text(1)?).map_err(corrupt("email"))?,
        name: Name::parse("name", row.text(2)?).map_err(corrupt("account name"))?,
        status: coded("account status", row.text(3)?, AccountStatus::from_code)?,
        created_at: row.timestamp(4)?,
    })
}

fn membership_from(row: &Row, offset: usize) -> Result<Membership, StoreError> {
    Ok(Membership {
        account: AccountId::from_uuid(row.uuid(offset)?),
        team: TeamId::from_uuid(row.uuid(offset + 1)?),
        role: coded("role", row.text(offset + 2)?, MembershipRole::from_code)?,
        status: coded("membership status", row.text(offset + 3)?, MembershipStatus::from_code)?,
    })
}

fn patient_from(row: &Row) -> Result<Patient, StoreError> {
    Ok(Patient {
        id: PatientId::from_uuid(row.uuid(0)?),
        nhs_number: row.opt_text(1)?.map(NhsNumber::parse).transpose().map_err(corrupt("NHS number"))?,
        demographics: Demographics {
            family_name: Name::parse("family name", row.text(2)?).map_err(corrupt("family name"))?,
            given_name: Name::parse("given name", row.text(3)?).map_err(corrupt("given name"))?,
            birth_date: Date::parse(row.text(4)?).map_err(corrupt("birth date"))?,
            sex: coded("sex", row.text(5)?, Sex::from_code)?,
            email: row.opt_text(6)?.map(EmailAddress::parse).transpose().map_err(corrupt("email"))?,
            mobile: row.opt_text(7)?.map(MobileNumber::parse).transpose().map_err(corrupt("mobile"))?,
            address: row.opt_text(14)?.map(PostalAddress::parse).transpose().map_err(corrupt("address"))?,
        },
        registration: coded("registration", row.text(8)?, RegistrationStatus::from_code)?,
        account: row.opt_uuid(9)?.map(AccountId::from_uuid),
        sharing_disabled: row.bool(10)?,
        merged_into: row.opt_uuid(11)?.map(PatientId::from_uuid),
        created_at: row.timestamp(12)?,
        updated_at: row.timestamp(13)?,
    })
}

fn care_link_from(row: &Row) -> Result<CareLink, StoreError> {
    Ok(CareLink {
        patient: PatientId::from_uuid(row.uuid(0)?),
        team: TeamId::from_uuid(row.uuid(1)?),
        labels: labels(row.int(2)?)?,
        basis: coded("link basis", row.text(3)?, LinkBasis::from_code)?,
        changed_by: row.opt_uuid(4)?.map(AccountId::from_uuid),
        linked_at: row.timestamp(5)?,
        updated_at: row.timestamp(6)?,
        discharged_at: row.opt_timestamp(7)?,
    })
}

fn entry_from(row: &Row) -> Result<Entry, StoreError> {
    Ok(Entry {
        id: EntryId::from_uuid(row.uuid(0)?),
        patient: PatientId::from_uuid(row.uuid(1)?),
        kind: coded("entry kind", row.text(2)?, EntryKind::from_code)?,
        label: entry_label(row.opt_int(3)?)?,
        authored_by: TeamId::from_uuid(row.uuid(4)?),
        author_account: row.opt_uuid(5)?.map(AccountId::from_uuid),
        effective_at: row.timestamp(6)?,
        recorded_at: row.timestamp(7)?,
        title: Title::parse(row.text(8)?).map_err(corrupt("title"))?,
        body: row.text(9)?.to_owned(),
        version: row.int(10)?,
        status: row.opt_text(11)?.map(|code| coded("entry status", code, EntryStatus::from_code)).transpose()?,
        source_key: row.opt_text(12)?.map(str::to_owned),
        source_message: row.opt_uuid(13)?.map(Hl7MessageId::from_uuid),
        ends_at: row.opt_timestamp(14)?,
    })
}

fn grant_from(row: &Row) -> Result<BreakGlassGrant, StoreError> {
    Ok(BreakGlassGrant {
        id: BreakGlassId::from_uuid(row.uuid(0)?),
        patient: PatientId::from_uuid(row.uuid(1)?),
        account: AccountId::from_uuid(row.uuid(2)?),
        team: TeamId::from_uuid(row.uuid(3)?),
        reason: Reason::from_stored(row.text(4)?).map_err(corrupt("reason"))?,
        started_at: row.timestamp(5)?,
        expires_at: row.timestamp(6)?,
        ended_at: row.opt_timestamp(7)?,
    })
}

fn hash_from(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::corrupt(format!("stored hash has {} bytes, not 32", bytes.len())))
}

fn audit_from(row: &Row) -> Result<ChainedEvent, StoreError> {
    Ok(ChainedEvent {
        seq: row.int(0)?,
        record: StoredAuditRecord {
            at: row.timestamp(1)?,
            actor_kind: row.text(2)?.to_owned(),
            actor_account: row.opt_uuid(3)?.map(AccountId::from_uuid),
            actor_name: row.opt_text(4)?.map(str::to_owned),
            channel: row.text(5)?.to_owned(),
            organisation: row.opt_uuid(6)?.map(OrganisationId::from_uuid),
            acting_team: row.opt_uuid(7)?.map(TeamId::from_uuid),
            patient: row.opt_uuid(8)?.map(PatientId::from_uuid),
            action: row.text(9)?.to_owned(),
            outcome: row.text(10)?.to_owned(),
            basis: row.opt_text(11)?.map(str::to_owned),
            entry_kinds: row.text(12)?.to_owned(),
            labels: u8::try_from(row.int(13)?).map_err(corrupt("audit labels"))?,
            subject: row.opt_text(14)?.map(str::to_owned),
            reason: row.opt_text(15)?.map(str::to_owned),
        },
        prev_hash: hash_from(row.bytes(16)?)?,
        hash: hash_from(row.bytes(17)?)?,
    })
}

impl<'c> Tx<'c> {
    pub(crate) fn new(conn: &'c mut dyn Conn) -> Self {
        Self { conn, pending_audit: Vec::new(), last_attempt: true }
    }

    /// Whether this is the last time [`crate::Store::write`] runs this transaction: a
    /// conflict met now is returned to the caller rather than retried. A use case that can
    /// tell a race from a lasting fault (the same unique constraint on every attempt) asks.
    pub fn is_last_attempt(&self) -> bool {
        self.last_attempt
    }

    pub fn dialect(&self) -> Dialect {
        self.conn.dialect()
    }

    /// The first row, mapped.
    fn one<T>(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
        map: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut first = None;
        self.conn.query_each(sql, params, &mut |row| {
            if first.is_none() {
                first = Some(map(row)?);
            }
            Ok(())
        })?;
        Ok(first)
    }

    /// Every row, mapped as it is read.
    fn all<T>(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
        map: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.conn.query_each(sql, params, &mut |row| {
            out.push(map(row)?);
            Ok(())
        })?;
        Ok(out)
    }

    pub(crate) fn exists(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<bool, StoreError> {
        let mut found = false;
        self.conn.query_each(sql, params, &mut |_| {
            found = true;
            Ok(())
        })?;
        Ok(found)
    }

    pub fn ping(&mut self) -> Result<(), StoreError> {
        self.conn.query("SELECT 1", &[]).map(drop)
    }

    /// Runs `work` inside a savepoint: on `Err` everything it wrote — rows, outbox messages
    /// and the audit events it recorded — is undone, and the transaction goes on.
    pub fn savepoint<R, E: From<StoreError>>(
        &mut self,
        work: impl FnOnce(&mut Tx<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        self.conn.execute("SAVEPOINT kith_step", &[])?;
        let audit_mark = self.pending_audit.len();
        match work(self) {
            Ok(value) => {
                self.conn.execute("RELEASE SAVEPOINT kith_step", &[])?;
                Ok(value)
            }
            Err(error) => {
                self.conn.execute("ROLLBACK TO SAVEPOINT kith_step", &[])?;
                self.conn.execute("RELEASE SAVEPOINT kith_step", &[])?;
                self.pending_audit.truncate(audit_mark);
                Err(error)
            }
        }
    }

    // ----- audit -----------------------------------------------------------------------

    /// Records an audit event; it joins the chain when the transaction commits.
    pub fn audit(&mut self, record: AuditRecord) {
        self.pending_audit.push(record);
    }

    /// The audit events recorded so far, taken out (for [`crate::Store::read_audited`]).
    pub(crate) fn take_pending_audit(&mut self) -> Vec<AuditRecord> {
        std::mem::take(&mut self.pending_audit)
    }

    pub(crate) fn has_pending_audit(&self) -> bool {
        !self.pending_audit.is_empty()
    }

    /// Appends the pending events to the chain. Done last, so that on PostgreSQL the chain
    /// head is locked only for the end of the transaction.
    pub(crate) fn flush_audit(&mut self) -> Result<(), StoreError> {
        if self.pending_audit.is_empty() {
            return Ok(());
        }
        let head_sql = match self.dialect() {
            Dialect::Sqlite => "SELECT seq, hash FROM audit_head WHERE id = 1",
            Dialect::Postgres => "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
        };
        let (mut seq, mut hash) = self
            .one(head_sql, &[], |row| Ok((row.int(0)?, hash_from(row.bytes(1)?)?)))?
            .ok_or_else(|| StoreError::corrupt("the audit chain head is missing"))?;
        // Chain the events, then write them with multi-row inserts (one round trip per up to
        // 128 events instead of one per event).
        let mut chained = Vec::with_capacity(self.pending_audit.len());
        for record in std::mem::take(&mut self.pending_audit) {
            let stored = StoredAuditRecord::from(&record);
            seq += 1;
            let next = event_hash(&hash, seq, &stored);
            chained.push((seq, stored, hash, next));
            hash = next;
        }
        static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let statements = professionals::insert_statements(
            &SQL,
            concat!("INSERT INTO audit_events (", audit_columns!(), ") VALUES"),
            18,
        );
        self.insert_in_chunks(statements, &chained, |(seq, stored, prev, next), params| {
            params.extend([
                Param::Int(*seq),
                stored.at.into(),
                Param::Text(&stored.actor_kind),
                stored.actor_account.into(),
                stored.actor_name.as_ref().into(),
                Param::Text(&stored.channel),
                stored.organisation.into(),
                stored.acting_team.into(),
                stored.patient.into(),
                Param::Text(&stored.action),
                Param::Text(&stored.outcome),
                stored.basis.as_ref().into(),
                Param::Text(&stored.entry_kinds),
                Param::Int(i64::from(stored.labels)),
                stored.subject.as_ref().into(),
                stored.reason.as_ref().into(),
                Param::Bytes(prev),
                Param::Bytes(next),
            ]);
        })?;
        self.conn
            .execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", &[seq.into(), Param::Bytes(&hash)])?;
        Ok(())
    }

    /// The chain head: the last event's sequence number and hash.
    pub fn audit_head(&mut self) -> Result<(i64, [u8; 32]), StoreError> {
        self.one("SELECT seq, hash FROM audit_head WHERE id = 1", &[], |row| {
            Ok((row.int(0)?, hash_from(row.bytes(1)?)?))
        })?
        .ok_or_else(|| StoreError::corrupt("the audit chain head is missing"))
    }

    /// Up to `limit` events after `seq`, in order (for verification and export).
    pub fn audit_events_after(&mut self, seq: i64, limit: i64) -> Result<Vec<ChainedEvent>, StoreError> {
        self.all(
            concat!("SELECT ", audit_columns!(), " FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?"),
            &[seq.into(), limit.into()],
            audit_from,
        )
    }

    /// [`Tx::audit_events_after`] for the chain's verification: a row that cannot be read as an
    /// event (a damaged column) is `Err(seq)` instead of failing the whole read.
    pub fn audit_events_after_checked(
        &mut self,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<Result<ChainedEvent, i64>>, StoreError> {
        self.all(
            concat!("SELECT ", audit_columns!(), " FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?"),
            &[seq.into(), limit.into()],
            |row| Ok(audit_from(row).map_err(|_| row.int(0).unwrap_or(seq + 1))),
        )
    }

    /// The newest `limit` events about a patient, newest first, leaving out those by
    /// `except_actor` (the patient's own, in their access log).
    pub fn audit_events_for_patient(
        &mut self,
        patient: PatientId,
        except_actor: Option<AccountId>,
        limit: i64,
    ) -> Result<Vec<ChainedEvent>, StoreError> {
        let sql = concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_events WHERE patient_id = ? AND (? OR actor_account_id IS NULL OR actor_account_id <> ?) ORDER BY seq DESC LIMIT ?"
        );
        let except = except_actor.map(|account| account.as_uuid()).unwrap_or(Uuid::nil());
        self.all(sql, &[patient.into(), except_actor.is_none().into(), except.into(), limit.into()], audit_from)
    }

    /// Break-the-glass events (grants and accesses under them) in the organisations the
    /// account is a privacy officer of, newest first.
    pub fn break_glass_events_for_officer(
        &mut self,
        officer: AccountId,
        patient: Option<PatientId>,
        limit: i64,
    ) -> Result<Vec<ChainedEvent>, StoreError> {
        let sql = concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_events WHERE (action LIKE 'break\\_glass.%' ESCAPE '\\' OR basis = 'break_glass')
              AND organisation_id IN (SELECT organisation_id FROM privacy_officers WHERE account_id = ?)
              AND (? OR patient_id = ?) ORDER BY seq DESC LIMIT ?"
        );
        let patient_id = patient.map(|patient| patient.as_uuid()).unwrap_or(Uuid::nil());
        self.all(sql, &[officer.into(), patient.is_none().into(), patient_id.into(), limit.into()], audit_from)
    }

    /// The team a break-the-glass grant was opened through.
    pub fn break_glass_team(&mut self, grant: BreakGlassId) -> Result<Option<TeamId>, StoreError> {
        self.one("SELECT team_id FROM break_glass_grants WHERE id = ?", &[grant.into()], |row| {
            Ok(TeamId::from_uuid(row.uuid(0)?))
        })
    }

    /// Whether the account is any organisation's privacy officer.
    pub fn is_privacy_officer(&mut self, account: AccountId) -> Result<bool, StoreError> {
        self.exists("SELECT 1 FROM privacy_officers WHERE account_id = ?", &[account.into()])
    }

    // ----- organisations ---------------------------------------------------------------

    pub fn insert_organisation(&mut self, organisation: &Organisation) -> Result<(), StoreError> {
        self.conn.execute(
            concat!("INSERT INTO organisations (", organisation_columns!(), ") VALUES (?, ?, ?, ?, ?)"),
            &[
                organisation.id.into(),
                organisation.code.as_str().into(),
                organisation.name.as_str().into(),
                Param::Int(i64::try_from(organisation.break_glass_duration.as_secs()).unwrap_or(i64::MAX)),
                organisation.created_at.into(),
            ],
        )?;
        Ok(())
    }

    pub fn organisation(&mut self, id: OrganisationId) -> Result<Option<Organisation>, StoreError> {
        self.one(
            concat!("SELECT ", organisation_columns!(), " FROM organisations WHERE id = ?"),
            &[id.into()],
            organisation_from,
        )
    }

    pub fn organisation_by_code(&mut self, code: &OrganisationCode) -> Result<Option<Organisation>, StoreError> {
        self.one(
            concat!("SELECT ", organisation_columns!(), " FROM organisations WHERE code = ?"),
            &[code.as_str().into()],
            organisation_from,
        )
    }

    pub fn organisations(&mut self) -> Result<Vec<Organisation>, StoreError> {
        self.all(
            concat!("SELECT ", organisation_columns!(), " FROM organisations ORDER BY code"),
            &[],
            organisation_from,
        )
    }

    pub fn set_break_glass_duration(&mut self, id: OrganisationId, duration: Duration) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE organisations SET break_glass_seconds = ? WHERE id = ?",
            &[Param::Int(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)), id.into()],
        )?;
        Ok(())
    }

    // ----- teams -----------------------------------------------------------------------

    pub fn insert_team(&mut self, team: &Team) -> Result<(), StoreError> {
        self.conn.execute(
            concat!("INSERT INTO teams (", team_columns!(), ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
            &[
                team.id.into(),
                team.organisation.into(),
                team.kind.code().into(),
                team.name.as_str().into(),
                team.alias.as_str().into(),
                team.status.code().into(),
                Param::Int(i64::from(team.default_labels.bits())),
                team.created_at.into(),
            ],
        )?;
        Ok(())
    }

    pub fn team(&mut self, id: TeamId) -> Result<Option<Team>, StoreError> {
        self.one(concat!("SELECT ", team_columns!(), " FROM teams WHERE id = ?"), &[id.into()], team_from)
    }

    pub fn team_by_alias(
        &mut self,
        organisation: OrganisationId,
        alias: &TeamAlias,
    ) -> Result<Option<Team>, StoreError> {
        self.one(
            concat!("SELECT ", team_columns!(), " FROM teams WHERE organisation_id = ? AND alias = ?"),
            &[organisation.into(), alias.as_str().into()],
            team_from,
        )
    }

    pub fn patient_record_team(&mut self, organisation: OrganisationId) -> Result<Option<Team>, StoreError> {
        self.one(
            concat!("SELECT ", team_columns!(), " FROM teams WHERE organisation_id = ? AND kind = 'patient_record'"),
            &[organisation.into()],
            team_from,
        )
    }

    pub fn teams(&mut self, organisation: OrganisationId) -> Result<Vec<Team>, StoreError> {
        self.all(
            concat!("SELECT ", team_columns!(), " FROM teams WHERE organisation_id = ? ORDER BY kind, alias"),
            &[organisation.into()],
            team_from,
        )
    }

    pub fn set_team_status(&mut self, id: TeamId, status: TeamStatus) -> Result<(), StoreError> {
        self.conn.execute("UPDATE teams SET status = ? WHERE id = ?", &[status.code().into(), id.into()])?;
        Ok(())
    }

    /// Locks a team's row until commit, so that checks on its coordinators cannot interleave
    /// (PostgreSQL; SQLite write transactions are already serialised).
    pub fn lock_team(&mut self, id: TeamId) -> Result<(), StoreError> {
        if self.dialect() == Dialect::Postgres {
            self.conn.query("SELECT id FROM teams WHERE id = ? FOR UPDATE", &[id.into()])?;
        }
        Ok(())
    }

    // ----- accounts and memberships ----------------------------------------------------

    pub fn insert_account(&mut self, account: &Account, password_hash: Option<&str>) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO accounts (id, email, name, status, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            &[
                account.id.into(),
                account.email.as_str().into(),
                account.name.as_str().into(),
                account.status.code().into(),
                password_hash.into(),
                account.created_at.into(),
                account.created_at.into(),
            ],
        )?;
        Ok(())
    }

    pub fn account(&mut self, id: AccountId) -> Result<Option<Account>, StoreError> {
        self.one(concat!("SELECT ", account_columns!(), " FROM accounts WHERE id = ?"), &[id.into()], account_from)
    }

    pub fn account_by_email(&mut self, email: &EmailAddress) -> Result<Option<Account>, StoreError> {
        self.one(
            concat!("SELECT ", account_columns!(), " FROM accounts WHERE email = ?"),
            &[email.as_str().into()],
            account_from,
        )
    }

    /// The stored Argon2id hash (PHC string) of an account's password, if it has one.
    pub fn password_hash(&mut self, id: AccountId) -> Result<Option<String>, StoreError> {
        Ok(self
            .one("SELECT password_hash FROM accounts WHERE id = ?", &[id.into()], |row| {
                Ok(row.opt_text(0)?.map(str::to_owned))
            })?
            .flatten())
    }

    pub fn set_password(
        &mut self,
        id: AccountId,
        password_hash: &str,
        status: AccountStatus,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE accounts SET password_hash = ?, status = ?, updated_at = ? WHERE id = ?",
            &[password_hash.into(), status.code().into(), at.into(), id.into()],
        )?;
        Ok(())
    }

    /// Sets the account's status; an account no longer active also loses its open
    /// break-the-glass grants, which are returned for the caller to audit.
    pub fn set_account_status(
        &mut self,
        id: AccountId,
        status: AccountStatus,
        at: Timestamp,
    ) -> Result<Vec<BreakGlassGrant>, StoreError> {
        self.conn.execute(
            "UPDATE accounts SET status = ?, updated_at = ? WHERE id = ?",
            &[status.code().into(), at.into(), id.into()],
        )?;
        if status == AccountStatus::Active { Ok(Vec::new()) } else { self.end_break_glass_of_account(id, at) }
    }

    pub fn membership(&mut self, account: AccountId, team: TeamId) -> Result<Option<Membership>, StoreError> {
        self.one(
            "SELECT account_id, team_id, role, status FROM memberships WHERE account_id = ? AND team_id = ?",
            &[account.into(), team.into()],
            |row| membership_from(row, 0),
        )
    }

    pub fn insert_membership(&mut self, membership: &Membership, at: Timestamp) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO memberships (account_id, team_id, role, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            &[
                membership.account.into(),
                membership.team.into(),
                membership.role.code().into(),
                membership.status.code().into(),
                at.into(),
                at.into(),
            ],
        )?;
        Ok(())
    }

    pub fn update_membership(&mut self, membership: &Membership, at: Timestamp) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE memberships SET role = ?, status = ?, updated_at = ? WHERE account_id = ? AND team_id = ?",
            &[
                membership.role.code().into(),
                membership.status.code().into(),
                at.into(),
                membership.account.into(),
                membership.team.into(),
            ],
        )?;
        Ok(())
    }

    /// Coordinators of the team whose membership and account are both active.
    /// A team's coordinators with an active membership, whatever their account's state (an
    /// invited account has not set its password yet).
    pub fn count_appointed_coordinators(&mut self, team: TeamId) -> Result<usize, StoreError> {
        let count = self
            .one(
                "SELECT COUNT(*) FROM memberships WHERE team_id = ? AND role = 'coordinator' AND status = 'active'",
                &[team.into()],
                |row| row.int(0),
            )?
            .unwrap_or(0);
        Ok(usize::try_from(count).unwrap_or(0))
    }

    pub fn count_active_coordinators(&mut self, team: TeamId) -> Result<usize, StoreError> {
        let count = self
            .one(
                "SELECT COUNT(*) FROM memberships m JOIN accounts a ON a.id = m.account_id
                 WHERE m.team_id = ? AND m.role = 'coordinator' AND m.status = 'active' AND a.status = 'active'",
                &[team.into()],
                |row| row.int(0),
            )?
            .unwrap_or(0);
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// A team's members with their accounts, by name.
    pub fn team_members(&mut self, team: TeamId) -> Result<Vec<(Membership, Account)>, StoreError> {
        self.all(
            concat!(
                "SELECT m.account_id, m.team_id, m.role, m.status, ",
                "a.id, a.email, a.name, a.status, a.created_at",
                " FROM memberships m JOIN accounts a ON a.id = m.account_id WHERE m.team_id = ? ORDER BY a.name, a.email"
            ),
            &[team.into()],
            |row| {
                let membership = membership_from(row, 0)?;
                let account = account_from(&Row(row.0[4..].to_vec()))?;
                Ok((membership, account))
            },
        )
    }

    /// An account's memberships.
    pub fn memberships_of(&mut self, account: AccountId) -> Result<Vec<Membership>, StoreError> {
        self.all(
            "SELECT account_id, team_id, role, status FROM memberships WHERE account_id = ? ORDER BY team_id",
            &[account.into()],
            |row| membership_from(row, 0),
        )
    }

    pub fn add_privacy_officer(
        &mut self,
        organisation: OrganisationId,
        account: AccountId,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO privacy_officers (organisation_id, account_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            &[organisation.into(), account.into(), at.into()],
        )?;
        Ok(())
    }

    pub fn privacy_officers(&mut self, organisation: OrganisationId) -> Result<Vec<Account>, StoreError> {
        self.all(
            "SELECT a.id, a.email, a.name, a.status, a.created_at FROM privacy_officers p JOIN accounts a ON a.id = p.account_id
             WHERE p.organisation_id = ? ORDER BY a.email",
            &[organisation.into()],
            account_from,
        )
    }

    /// Whether the account is a privacy officer of an organisation the patient is in.
    pub fn is_privacy_officer_for(&mut self, account: AccountId, patient: PatientId) -> Result<bool, StoreError> {
        self.exists(
            "SELECT 1 FROM privacy_officers p
             JOIN teams t ON t.organisation_id = p.organisation_id AND t.kind = 'patient_record'
             JOIN care_links c ON c.team_id = t.id AND c.patient_id = ? AND c.discharged_at IS NULL
             WHERE p.account_id = ?",
            &[patient.into(), account.into()],
        )
    }

    // ----- patients ----------------------------------------------------------------------

    /// Writes a patient's record: inserts it, or rewrites its identifiers, demographics and
    /// status (everything but `created_at`).
    pub fn put_patient(&mut self, patient: &Patient) -> Result<(), StoreError> {
        let row = PatientRow::of(patient);
        let mut params = Vec::with_capacity(15);
        row.params(&mut params);
        self.conn.execute(
            concat!(
                "INSERT INTO patients (",
                patient_columns!(),
                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (id) DO UPDATE SET nhs_number = excluded.nhs_number, family_name = excluded.family_name,
                 given_name = excluded.given_name, birth_date = excluded.birth_date, sex = excluded.sex,
                 email = excluded.email, mobile = excluded.mobile, address = excluded.address,
                 registration = excluded.registration,
                 account_id = excluded.account_id, sharing_disabled = excluded.sharing_disabled,
                 merged_into = excluded.merged_into, updated_at = excluded.updated_at"
            ),
            &params,
        )?;
        Ok(())
    }

    pub fn patient(&mut self, id: PatientId) -> Result<Option<Patient>, StoreError> {
        self.one(concat!("SELECT ", patient_columns!(), " FROM patients WHERE id = ?"), &[id.into()], patient_from)
    }

    pub fn patient_by_nhs_number(&mut self, nhs_number: &NhsNumber) -> Result<Option<Patient>, StoreError> {
        self.one(
            concat!("SELECT ", patient_columns!(), " FROM patients WHERE nhs_number = ?"),
            &[nhs_number.as_str().into()],
            patient_from,
        )
    }

    pub fn patient_by_email(&mut self, email: &EmailAddress) -> Result<Option<Patient>, StoreError> {
        self.one(
            concat!("SELECT ", patient_columns!(), " FROM patients WHERE email = ?"),
            &[email.as_str().into()],
            patient_from,
        )
    }

    pub fn patient_by_account(&mut self, account: AccountId) -> Result<Option<Patient>, StoreError> {
        self.one(
            concat!("SELECT ", patient_columns!(), " FROM patients WHERE account_id = ?"),
            &[account.into()],
            patient_from,
        )
    }

    pub fn patient_by_local_identifier(
        &mut self,
        organisation: OrganisationId,
        identifier: &LocalIdentifier,
    ) -> Result<Option<Patient>, StoreError> {
        self.one(
            "SELECT p.id, p.nhs_number, p.family_name, p.given_name, p.birth_date, p.sex, p.email, p.mobile, p.registration,
                    p.account_id, p.sharing_disabled, p.merged_into, p.created_at, p.updated_at, p.address
             FROM patient_identifiers i JOIN patients p ON p.id = i.patient_id
             WHERE i.organisation_id = ? AND i.authority = ? AND i.value = ?",
            &[organisation.into(), identifier.authority().into(), identifier.value().into()],
            patient_from,
        )
    }

    /// Patients with this date of birth whose family name starts with `family`, ignoring
    /// case (a FHIR `family` search). Merged records are left out: they resolve to their
    /// survivor.
    pub fn patients_by_family_and_birth_date(
        &mut self,
        family: &str,
        birth_date: &str,
        after: Option<&Patient>,
        limit: i64,
    ) -> Result<Vec<Patient>, StoreError> {
        let pattern =
            format!("{}%", family.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        // Pages in (family name, given name, id) order: `after` is the last of the page before.
        let (after_family, after_given) = match after {
            Some(patient) => (patient.demographics.family_name.as_str(), patient.demographics.given_name.as_str()),
            None => ("", ""),
        };
        let after_id = after.map(|patient| patient.id);
        self.all(
            concat!(
                "SELECT ",
                patient_columns!(),
                " FROM patients WHERE birth_date = ? AND lower(family_name) LIKE ? ESCAPE '\\' AND merged_into IS NULL
                  AND (? OR family_name > ? OR (family_name = ? AND (given_name > ? OR (given_name = ? AND id > ?))))
                  ORDER BY family_name, given_name, id LIMIT ?"
            ),
            &[
                birth_date.into(),
                pattern.as_str().into(),
                after.is_none().into(),
                Param::Text(after_family),
                Param::Text(after_family),
                Param::Text(after_given),
                Param::Text(after_given),
                after_id.into(),
                Param::Int(limit),
            ],
            patient_from,
        )
    }

    /// Patients holding a local identifier under `authority` in any organisation.
    pub fn patients_by_authority_identifier(
        &mut self,
        authority: &str,
        value: &str,
    ) -> Result<Vec<Patient>, StoreError> {
        self.all(
            "SELECT DISTINCT p.id, p.nhs_number, p.family_name, p.given_name, p.birth_date, p.sex, p.email, p.mobile, p.registration,
                    p.account_id, p.sharing_disabled, p.merged_into, p.created_at, p.updated_at, p.address
             FROM patient_identifiers i JOIN patients p ON p.id = i.patient_id
             WHERE i.authority = ? AND i.value = ? ORDER BY p.id",
            &[authority.into(), value.into()],
            patient_from,
        )
    }

    pub fn insert_patient_identifier(
        &mut self,
        patient: PatientId,
        organisation: OrganisationId,
        identifier: &LocalIdentifier,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO patient_identifiers (patient_id, organisation_id, authority, value, created_at) VALUES (?, ?, ?, ?, ?)",
            &[patient.into(), organisation.into(), identifier.authority().into(), identifier.value().into(), at.into()],
        )?;
        Ok(())
    }

    pub fn patient_identifiers(&mut self, patient: PatientId) -> Result<Vec<PatientIdentifier>, StoreError> {
        self.all(
            "SELECT organisation_id, authority, value FROM patient_identifiers WHERE patient_id = ? ORDER BY authority, value",
            &[patient.into()],
            |row| {
                let text = format!("{}:{}", row.text(1)?, row.text(2)?);
                Ok(PatientIdentifier {
                    organisation: OrganisationId::from_uuid(row.uuid(0)?),
                    identifier: LocalIdentifier::parse(&text).map_err(corrupt("local identifier"))?,
                })
            },
        )
    }

    // ----- care links --------------------------------------------------------------------

    pub fn care_link(&mut self, patient: PatientId, team: TeamId) -> Result<Option<CareLink>, StoreError> {
        self.one(
            concat!("SELECT ", care_link_columns!(), " FROM care_links WHERE patient_id = ? AND team_id = ?"),
            &[patient.into(), team.into()],
            care_link_from,
        )
    }

    pub fn care_links(&mut self, patient: PatientId) -> Result<Vec<CareLink>, StoreError> {
        self.all(
            concat!(
                "SELECT ",
                care_link_columns!(),
                " FROM care_links WHERE patient_id = ? ORDER BY linked_at, team_id"
            ),
            &[patient.into()],
            care_link_from,
        )
    }

    /// Writes a care link, replacing the patient's earlier link to the same team (its
    /// history is in the audit trail).
    pub fn put_care_link(&mut self, link: &CareLink) -> Result<(), StoreError> {
        let mut params = Vec::with_capacity(8);
        care_link_params(link, &mut params);
        self.conn.execute(
            concat!(
                "INSERT INTO care_links (",
                care_link_columns!(),
                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (patient_id, team_id) DO UPDATE SET labels = excluded.labels, basis = excluded.basis,
                 changed_by = excluded.changed_by, linked_at = excluded.linked_at, updated_at = excluded.updated_at,
                 discharged_at = excluded.discharged_at"
            ),
            &params,
        )?;
        Ok(())
    }

    /// Whether the patient is in the organisation: actively linked to its Patient Record Team.
    pub fn patient_in_organisation(
        &mut self,
        patient: PatientId,
        organisation: OrganisationId,
    ) -> Result<bool, StoreError> {
        self.exists(
            "SELECT 1 FROM care_links c JOIN teams t ON t.id = c.team_id
             WHERE c.patient_id = ? AND t.organisation_id = ? AND t.kind = 'patient_record' AND c.discharged_at IS NULL",
            &[patient.into(), organisation.into()],
        )
    }

    // ----- record entries ----------------------------------------------------------------

    pub fn insert_entry(&mut self, entry: &Entry) -> Result<(), StoreError> {
        self.conn.execute(
            concat!(
                "INSERT INTO record_entries (",
                entry_columns!(),
                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            &[
                entry.id.into(),
                entry.patient.into(),
                entry.kind.code().into(),
                entry.label.map(label_bit).into(),
                entry.authored_by.into(),
                entry.author_account.into(),
                entry.effective_at.into(),
                entry.recorded_at.into(),
                entry.title.as_str().into(),
                Param::Text(&entry.body),
                entry.version.into(),
                entry.status.map(EntryStatus::code).into(),
                entry.source_key.as_ref().into(),
                entry.source_message.into(),
                entry.ends_at.into(),
            ],
        )?;
        Ok(())
    }

    /// The entry a feed filed under `source_key` for this patient, written by `team` (a
    /// feed's numbers are its organisation's: the key is looked up among the entries of that
    /// organisation's Patient Record Team only).
    pub fn entry_by_source_key(
        &mut self,
        patient: PatientId,
        team: TeamId,
        source_key: &str,
    ) -> Result<Option<Entry>, StoreError> {
        self.one(
            concat!(
                "SELECT ",
                entry_columns!(),
                " FROM record_entries WHERE patient_id = ? AND authored_team_id = ? AND source_key = ?"
            ),
            &[patient.into(), team.into(), Param::Text(source_key)],
            entry_from,
        )
    }

    /// Replaces an entry's content with a new version, keeping the current one in the
    /// entry's history first. `entry.version` must be the stored version plus one.
    pub fn replace_entry(&mut self, entry: &Entry) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO record_entry_versions (patient_id, entry_id, version, kind, label, title, body, status, effective_at, recorded_at, source_message_id, ends_at)
             SELECT patient_id, id, version, kind, label, title, body, status, effective_at, recorded_at, source_message_id, ends_at
             FROM record_entries WHERE patient_id = ? AND id = ? AND version = ?",
            &[entry.patient.into(), entry.id.into(), (entry.version - 1).into()],
        )?;
        let changed = self.conn.execute(
            "UPDATE record_entries SET kind = ?, label = ?, title = ?, body = ?, status = ?, effective_at = ?, recorded_at = ?,
             source_message_id = ?, ends_at = ?, source_key = ?, version = ? WHERE patient_id = ? AND id = ? AND version = ?",
            &[
                entry.kind.code().into(),
                entry.label.map(label_bit).into(),
                entry.title.as_str().into(),
                Param::Text(&entry.body),
                entry.status.map(EntryStatus::code).into(),
                entry.effective_at.into(),
                entry.recorded_at.into(),
                entry.source_message.into(),
                entry.ends_at.into(),
                entry.source_key.as_ref().into(),
                entry.version.into(),
                entry.patient.into(),
                entry.id.into(),
                (entry.version - 1).into(),
            ],
        )?;
        if changed != 1 {
            return Err(StoreError::new(
                crate::StoreErrorKind::Conflict,
                "the entry changed while it was being replaced",
            ));
        }
        Ok(())
    }

    /// An entry's earlier versions, oldest first (the current one is the entry itself).
    pub fn entry_history(&mut self, patient: PatientId, entry: EntryId) -> Result<Vec<Entry>, StoreError> {
        self.all(
            "SELECT v.entry_id, v.patient_id, v.kind, v.label, e.authored_team_id, e.author_account_id, v.effective_at,
                    v.recorded_at, v.title, v.body, v.version, v.status, e.source_key, v.source_message_id, v.ends_at
             FROM record_entry_versions v JOIN record_entries e ON e.patient_id = v.patient_id AND e.id = v.entry_id
             WHERE v.patient_id = ? AND v.entry_id = ? ORDER BY v.version",
            &[patient.into(), entry.into()],
            entry_from,
        )
    }

    /// Writes the observations of one version of a result.
    pub fn insert_observations(
        &mut self,
        patient: PatientId,
        entry: EntryId,
        version: i64,
        observations: &[Observation],
    ) -> Result<(), StoreError> {
        for (seq, observation) in observations.iter().enumerate() {
            self.conn.execute(
                "INSERT INTO observations (patient_id, entry_id, version, seq, code, code_system, name, value_type, value, units,
                 reference_range, flags, status, observed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                &[
                    patient.into(),
                    entry.into(),
                    version.into(),
                    Param::Int(seq as i64 + 1),
                    Param::Text(&observation.code),
                    Param::Text(&observation.code_system),
                    Param::Text(&observation.name),
                    Param::Text(&observation.value_type),
                    Param::Text(&observation.value),
                    Param::Text(&observation.units),
                    Param::Text(&observation.reference_range),
                    Param::Text(&observation.flags),
                    Param::Text(&observation.status),
                    observation.observed_at.into(),
                ],
            )?;
        }
        Ok(())
    }

    /// The observations of one version of a result, in order.
    pub fn observations(
        &mut self,
        patient: PatientId,
        entry: EntryId,
        version: i64,
    ) -> Result<Vec<Observation>, StoreError> {
        self.all(
            "SELECT code, code_system, name, value_type, value, units, reference_range, flags, status, observed_at
             FROM observations WHERE patient_id = ? AND entry_id = ? AND version = ? ORDER BY seq",
            &[patient.into(), entry.into(), version.into()],
            |row| {
                Ok(Observation {
                    code: row.text(0)?.to_owned(),
                    code_system: row.text(1)?.to_owned(),
                    name: row.text(2)?.to_owned(),
                    value_type: row.text(3)?.to_owned(),
                    value: row.text(4)?.to_owned(),
                    units: row.text(5)?.to_owned(),
                    reference_range: row.text(6)?.to_owned(),
                    flags: row.text(7)?.to_owned(),
                    status: row.text(8)?.to_owned(),
                    observed_at: row.opt_timestamp(9)?,
                })
            },
        )
    }

    /// The observations of all the patient's results, each with its entry and version, in
    /// order: one query for a whole record (callers keep those of the versions they show).
    pub fn patient_observations(&mut self, patient: PatientId) -> Result<Vec<(EntryId, i64, Observation)>, StoreError> {
        self.all(
            "SELECT entry_id, version, code, code_system, name, value_type, value, units, reference_range, flags, status, observed_at
             FROM observations WHERE patient_id = ? ORDER BY entry_id, version, seq",
            &[patient.into()],
            |row| {
                Ok((
                    EntryId::from_uuid(row.uuid(0)?),
                    row.int(1)?,
                    Observation {
                        code: row.text(2)?.to_owned(),
                        code_system: row.text(3)?.to_owned(),
                        name: row.text(4)?.to_owned(),
                        value_type: row.text(5)?.to_owned(),
                        value: row.text(6)?.to_owned(),
                        units: row.text(7)?.to_owned(),
                        reference_range: row.text(8)?.to_owned(),
                        flags: row.text(9)?.to_owned(),
                        status: row.text(10)?.to_owned(),
                        observed_at: row.opt_timestamp(11)?,
                    },
                ))
            },
        )
    }

    /// How many of the patient's entries are of these kinds.
    pub fn count_entries_of_kinds(&mut self, patient: PatientId, kinds: &[EntryKind]) -> Result<i64, StoreError> {
        if let [kind] = kinds {
            return Ok(self
                .one(
                    "SELECT COUNT(*) FROM record_entries WHERE patient_id = ? AND kind = ?",
                    &[patient.into(), kind.code().into()],
                    |row| row.int(0),
                )?
                .unwrap_or(0));
        }
        // Several kinds: one pass over the patient's entries rather than one per kind.
        let counts = self.all(
            "SELECT kind, COUNT(*) FROM record_entries WHERE patient_id = ? GROUP BY kind",
            &[patient.into()],
            |row| Ok((row.text(0)?.to_owned(), row.int(1)?)),
        )?;
        Ok(counts.iter().filter(|(code, _)| kinds.iter().any(|kind| kind.code() == code)).map(|(_, count)| count).sum())
    }

    /// The patient's entries that `scope` admits, newest first: the access rule compiled
    /// into the `WHERE` clause.
    pub fn entries_in_scope(&mut self, patient: PatientId, scope: &RecordScope) -> Result<Vec<Entry>, StoreError> {
        let RecordScope::Visible { team, consented, own_team_data, break_glass, .. } = *scope else {
            return Ok(Vec::new());
        };
        self.all(
            concat!(
                "SELECT ",
                entry_columns!(),
                " FROM record_entries WHERE patient_id = ?
                  AND (? OR (label & ?) <> 0 OR (label IS NULL AND ?) OR (? AND authored_team_id = ?))
                  ORDER BY effective_at DESC, id"
            ),
            &[
                patient.into(),
                break_glass.is_some().into(),
                Param::Int(i64::from(consented.bits())),
                consented.is_all().into(),
                own_team_data.into(),
                team.into(),
            ],
            entry_from,
        )
    }

    /// All of a patient's entries, newest first (the patient's own view).
    pub fn entries(&mut self, patient: PatientId) -> Result<Vec<Entry>, StoreError> {
        self.all(
            concat!(
                "SELECT ",
                entry_columns!(),
                " FROM record_entries WHERE patient_id = ? ORDER BY effective_at DESC, id"
            ),
            &[patient.into()],
            entry_from,
        )
    }

    /// Whether the patient's record holds this entry.
    pub fn entry_exists(&mut self, patient: PatientId, entry: EntryId) -> Result<bool, StoreError> {
        self.exists("SELECT 1 FROM record_entries WHERE patient_id = ? AND id = ?", &[patient.into(), entry.into()])
    }

    /// Whose record holds this entry.
    pub fn entry_patient(&mut self, entry: EntryId) -> Result<Option<PatientId>, StoreError> {
        self.one("SELECT patient_id FROM record_entries WHERE id = ?", &[entry.into()], |row| {
            Ok(PatientId::from_uuid(row.uuid(0)?))
        })
    }

    /// How many entries the patient's record holds.
    pub fn count_entries(&mut self, patient: PatientId) -> Result<i64, StoreError> {
        Ok(self
            .one("SELECT COUNT(*) FROM record_entries WHERE patient_id = ?", &[patient.into()], |row| row.int(0))?
            .unwrap_or(0))
    }

    // ----- break glass -------------------------------------------------------------------

    /// Stores a grant; `session` is the SHA-256 of the web session it was opened in, if
    /// any: the grant ends with that session.
    pub fn insert_break_glass(
        &mut self,
        grant: &BreakGlassGrant,
        session: Option<&[u8; 32]>,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            concat!(
                "INSERT INTO break_glass_grants (",
                grant_columns!(),
                ", session_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            &[
                grant.id.into(),
                grant.patient.into(),
                grant.account.into(),
                grant.team.into(),
                grant.reason.as_str().into(),
                grant.started_at.into(),
                grant.expires_at.into(),
                grant.ended_at.into(),
                session.map(|hash| hash.as_slice()).into(),
            ],
        )?;
        Ok(())
    }

    /// Ends the account's open grants (its account is no longer active); returns them.
    pub fn end_break_glass_of_account(
        &mut self,
        account: AccountId,
        at: Timestamp,
    ) -> Result<Vec<BreakGlassGrant>, StoreError> {
        let open = self.all(
            concat!(
                "SELECT ",
                grant_columns!(),
                " FROM break_glass_grants WHERE account_id = ? AND ended_at IS NULL AND expires_at > ? ORDER BY started_at, id"
            ),
            &[account.into(), at.into()],
            grant_from,
        )?;
        self.conn.execute(
            "UPDATE break_glass_grants SET ended_at = ? WHERE account_id = ? AND ended_at IS NULL AND expires_at > ?",
            &[at.into(), account.into(), at.into()],
        )?;
        Ok(open)
    }

    /// Ends the open grants opened through the account's membership of the team (the
    /// membership was deactivated); returns them.
    pub fn end_break_glass_of_membership(
        &mut self,
        account: AccountId,
        team: TeamId,
        at: Timestamp,
    ) -> Result<Vec<BreakGlassGrant>, StoreError> {
        let open = self.all(
            concat!(
                "SELECT ",
                grant_columns!(),
                " FROM break_glass_grants WHERE account_id = ? AND team_id = ? AND ended_at IS NULL AND expires_at > ?
                  ORDER BY started_at, id"
            ),
            &[account.into(), team.into(), at.into()],
            grant_from,
        )?;
        self.conn.execute(
            "UPDATE break_glass_grants SET ended_at = ?
             WHERE account_id = ? AND team_id = ? AND ended_at IS NULL AND expires_at > ?",
            &[at.into(), account.into(), team.into(), at.into()],
        )?;
        Ok(open)
    }

    /// Ends the open grants opened in the web session with this SHA-256 (sign-out);
    /// returns them.
    pub fn end_break_glass_of_session(
        &mut self,
        session: &[u8; 32],
        at: Timestamp,
    ) -> Result<Vec<BreakGlassGrant>, StoreError> {
        let open = self.all(
            concat!(
                "SELECT ",
                grant_columns!(),
                " FROM break_glass_grants WHERE session_hash = ? AND ended_at IS NULL AND expires_at > ? ORDER BY started_at, id"
            ),
            &[session.as_slice().into(), at.into()],
            grant_from,
        )?;
        self.conn.execute(
            "UPDATE break_glass_grants SET ended_at = ? WHERE session_hash = ? AND ended_at IS NULL AND expires_at > ?",
            &[at.into(), session.as_slice().into(), at.into()],
        )?;
        Ok(open)
    }

    /// The most recent grant of (account, patient).
    pub fn latest_break_glass(
        &mut self,
        account: AccountId,
        patient: PatientId,
    ) -> Result<Option<BreakGlassGrant>, StoreError> {
        self.one(
            concat!(
                "SELECT ",
                grant_columns!(),
                " FROM break_glass_grants WHERE patient_id = ? AND account_id = ? ORDER BY started_at DESC, id DESC LIMIT 1"
            ),
            &[patient.into(), account.into()],
            grant_from,
        )
    }

    /// Ends every open grant of (account, patient); returns how many were open.
    pub fn end_break_glass(
        &mut self,
        account: AccountId,
        patient: PatientId,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        self.conn.execute(
            "UPDATE break_glass_grants SET ended_at = ? WHERE patient_id = ? AND account_id = ? AND ended_at IS NULL AND expires_at > ?",
            &[at.into(), patient.into(), account.into(), at.into()],
        )
    }

    /// Ends every open grant on the patient (sharing disabled).
    pub fn end_all_break_glass(&mut self, patient: PatientId, at: Timestamp) -> Result<u64, StoreError> {
        self.conn.execute(
            "UPDATE break_glass_grants SET ended_at = ? WHERE patient_id = ? AND ended_at IS NULL AND expires_at > ?",
            &[at.into(), patient.into(), at.into()],
        )
    }

    // ----- facts for the access rule -----------------------------------------------------

    /// The facts about (account, acting team, patient); `None` when the account or the
    /// patient does not exist.
    pub fn record_access_facts(
        &mut self,
        account: AccountId,
        team: TeamId,
        patient: PatientId,
        now: Timestamp,
    ) -> Result<Option<RecordAccessFacts>, StoreError> {
        let Some(professional) = self.professional_facts(account, team)? else {
            return Ok(None);
        };
        let Some((sharing_disabled, care_link)) = self.one(
            "SELECT p.sharing_disabled, c.labels, c.discharged_at FROM patients p
             LEFT JOIN care_links c ON c.patient_id = p.id AND c.team_id = ? WHERE p.id = ?",
            &[team.into(), patient.into()],
            |row| Ok((row.bool(0)?, care_link_facts(row, 1)?)),
        )?
        else {
            return Ok(None);
        };
        let break_glass = self.latest_break_glass_facts(account, patient)?;
        Ok(Some(professional.record_access_facts(now, team, care_link, break_glass, sharing_disabled)))
    }

    /// What a professional's read of a record needs, in four statements: the facts for the
    /// access rule ([`Tx::record_access_facts`]), those for demographics
    /// ([`Tx::demographics_facts`]) and the patient. `None` when the account, the acting
    /// team or the patient does not exist.
    pub fn record_read_facts(
        &mut self,
        account: AccountId,
        team: TeamId,
        patient: PatientId,
        now: Timestamp,
    ) -> Result<Option<RecordReadFacts>, StoreError> {
        let Some(professional) = self.professional_facts(account, team)? else {
            return Ok(None);
        };
        let Some((record, care_link)) = self.one(
            "SELECT p.id, p.nhs_number, p.family_name, p.given_name, p.birth_date, p.sex, p.email, p.mobile,
                    p.registration, p.account_id, p.sharing_disabled, p.merged_into, p.created_at, p.updated_at, p.address,
                    c.labels, c.discharged_at
             FROM patients p LEFT JOIN care_links c ON c.patient_id = p.id AND c.team_id = ? WHERE p.id = ?",
            &[team.into(), patient.into()],
            |row| Ok((patient_from(row)?, care_link_facts(row, 15)?)),
        )?
        else {
            return Ok(None);
        };
        let break_glass = self.latest_break_glass_facts(account, patient)?;
        let teams = self.team_relation_facts(account, patient)?;
        let sharing_disabled = record.sharing_disabled;
        Ok(Some(RecordReadFacts {
            access: professional.record_access_facts(now, team, care_link, break_glass, sharing_disabled),
            demographics: DemographicsFacts {
                now,
                account_status: professional.account_status,
                teams,
                break_glass,
                sharing_disabled,
            },
            patient: record,
        }))
    }

    /// The account's status, its membership of the team and the team's kind; `None` when
    /// the account or the team does not exist.
    fn professional_facts(
        &mut self,
        account: AccountId,
        team: TeamId,
    ) -> Result<Option<ProfessionalFacts>, StoreError> {
        self.one(
            "SELECT a.status, m.role, m.status, t.kind FROM accounts a
             JOIN teams t ON t.id = ?
             LEFT JOIN memberships m ON m.account_id = a.id AND m.team_id = t.id WHERE a.id = ?",
            &[team.into(), account.into()],
            |row| {
                let account_status = coded("account status", row.text(0)?, AccountStatus::from_code)?;
                let membership = match (row.opt_text(1)?, row.opt_text(2)?) {
                    (Some(role), Some(status)) => Some(MembershipFacts {
                        role: coded("role", role, MembershipRole::from_code)?,
                        status: coded("membership status", status, MembershipStatus::from_code)?,
                    }),
                    _ => None,
                };
                let team_kind = coded("team kind", row.text(3)?, TeamKind::from_code)?;
                Ok(ProfessionalFacts { account_status, membership, team_kind })
            },
        )
    }

    fn latest_break_glass_facts(
        &mut self,
        account: AccountId,
        patient: PatientId,
    ) -> Result<Option<BreakGlassFacts>, StoreError> {
        self.one(
            "SELECT g.id, g.team_id, g.expires_at, g.ended_at, g.session_hash IS NOT NULL,
                    s.created_at, s.last_seen_at, s.expires_at, s.ended_at, s.id_hash IS NOT NULL
             FROM break_glass_grants g LEFT JOIN sessions s ON s.id_hash = g.session_hash
             WHERE g.patient_id = ? AND g.account_id = ?
             ORDER BY g.started_at DESC, g.id DESC LIMIT 1",
            &[patient.into(), account.into()],
            |row| {
                let expires_at = row.timestamp(2)?;
                let session = match (row.bool(4)?, row.bool(9)?) {
                    (false, _) => None,
                    (true, true) => Some(SessionFacts {
                        created_at: row.timestamp(5)?,
                        last_seen_at: row.timestamp(6)?,
                        expires_at: row.timestamp(7)?,
                        ended: !row.is_null(8)?,
                    }),
                    // The session it was opened in is gone (cleaned up): it has ended.
                    (true, false) => {
                        Some(SessionFacts { created_at: expires_at, last_seen_at: expires_at, expires_at, ended: true })
                    }
                };
                Ok(BreakGlassFacts {
                    grant: BreakGlassId::from_uuid(row.uuid(0)?),
                    team: TeamId::from_uuid(row.uuid(1)?),
                    expires_at,
                    ended: !row.is_null(3)?,
                    session,
                })
            },
        )
    }

    /// Each of the account's memberships and how its team relates to the patient.
    fn team_relation_facts(
        &mut self,
        account: AccountId,
        patient: PatientId,
    ) -> Result<Vec<TeamRelationFacts>, StoreError> {
        self.all(
            "SELECT m.team_id, m.role, m.status,
                    EXISTS (SELECT 1 FROM care_links c WHERE c.patient_id = ? AND c.team_id = m.team_id AND c.discharged_at IS NULL),
                    EXISTS (SELECT 1 FROM record_entries e WHERE e.patient_id = ? AND e.authored_team_id = m.team_id),
                    t.kind
             FROM memberships m JOIN teams t ON t.id = m.team_id WHERE m.account_id = ? ORDER BY m.team_id",
            &[patient.into(), patient.into(), account.into()],
            |row| {
                Ok(TeamRelationFacts {
                    team: TeamId::from_uuid(row.uuid(0)?),
                    membership: MembershipFacts {
                        role: coded("role", row.text(1)?, MembershipRole::from_code)?,
                        status: coded("membership status", row.text(2)?, MembershipStatus::from_code)?,
                    },
                    care_link_active: row.bool(3)?,
                    authored_entries: row.bool(4)?,
                    kind: coded("team kind", row.text(5)?, TeamKind::from_code)?,
                })
            },
        )
    }

    /// Everything the rule needs about an account (with this status) and a patient (with this
    /// sharing flag), for every team the account is a member of, in two statements: the
    /// demographics facts, and the record-access facts of each membership (in team order),
    /// with each team's organisation (for the audit events). The same facts as
    /// [`Tx::demographics_facts`] and [`Tx::record_access_facts`] per team.
    pub fn account_access_facts(
        &mut self,
        account: AccountId,
        account_status: AccountStatus,
        patient: PatientId,
        sharing_disabled: bool,
        now: Timestamp,
    ) -> Result<AccountAccessFacts, StoreError> {
        // Each membership with its team's care link to the patient, if any (one at most:
        // the link's key is the patient and the team).
        let relations = self.all(
            "SELECT m.team_id, m.role, m.status, c.labels, c.discharged_at,
                    EXISTS (SELECT 1 FROM record_entries e WHERE e.patient_id = ? AND e.authored_team_id = m.team_id),
                    t.kind, t.organisation_id
             FROM memberships m JOIN teams t ON t.id = m.team_id
             LEFT JOIN care_links c ON c.patient_id = ? AND c.team_id = m.team_id
             WHERE m.account_id = ? ORDER BY m.team_id",
            &[patient.into(), patient.into(), account.into()],
            |row| {
                let care_link = care_link_facts(row, 3)?;
                let relation = TeamRelationFacts {
                    team: TeamId::from_uuid(row.uuid(0)?),
                    membership: MembershipFacts {
                        role: coded("role", row.text(1)?, MembershipRole::from_code)?,
                        status: coded("membership status", row.text(2)?, MembershipStatus::from_code)?,
                    },
                    care_link_active: care_link.is_some_and(|link| link.active),
                    authored_entries: row.bool(5)?,
                    kind: coded("team kind", row.text(6)?, TeamKind::from_code)?,
                };
                Ok((relation, care_link, OrganisationId::from_uuid(row.uuid(7)?)))
            },
        )?;
        let break_glass = self.latest_break_glass_facts(account, patient)?;
        let access = relations
            .iter()
            .map(|(relation, care_link, _)| {
                ProfessionalFacts { account_status, membership: Some(relation.membership), team_kind: relation.kind }
                    .record_access_facts(now, relation.team, *care_link, break_glass, sharing_disabled)
            })
            .collect();
        let organisations =
            relations.iter().map(|(relation, _, organisation)| (relation.team, *organisation)).collect();
        let teams = relations.into_iter().map(|(relation, ..)| relation).collect();
        Ok(AccountAccessFacts {
            demographics: DemographicsFacts { now, account_status, teams, break_glass, sharing_disabled },
            access,
            organisations,
        })
    }

    /// The facts about whether the account may see who the patient is; `None` when either
    /// does not exist.
    pub fn demographics_facts(
        &mut self,
        account: AccountId,
        patient: PatientId,
        now: Timestamp,
    ) -> Result<Option<DemographicsFacts>, StoreError> {
        let Some(account_status) = self.one("SELECT status FROM accounts WHERE id = ?", &[account.into()], |row| {
            coded("account status", row.text(0)?, AccountStatus::from_code)
        })?
        else {
            return Ok(None);
        };
        let Some(sharing_disabled) =
            self.one("SELECT sharing_disabled FROM patients WHERE id = ?", &[patient.into()], |row| row.bool(0))?
        else {
            return Ok(None);
        };
        let teams = self.team_relation_facts(account, patient)?;
        let break_glass = self.latest_break_glass_facts(account, patient)?;
        Ok(Some(DemographicsFacts { now, account_status, teams, break_glass, sharing_disabled }))
    }

    // ----- outbox ------------------------------------------------------------------------

    pub fn enqueue(&mut self, message: &OutboxMessage) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO outbox (id, channel, template, recipient, payload, secret, status, attempts, next_attempt_at, created_at)
             VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
            &[
                message.id.into(),
                message.channel.into(),
                message.template.into(),
                Param::Text(&message.recipient),
                Param::Text(&message.payload),
                message.secret.as_deref().into(),
                message.created_at.into(),
                message.created_at.into(),
            ],
        )?;
        Ok(())
    }

    /// Outbox messages, oldest first.
    pub fn outbox(&mut self, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        self.all(
            concat!("SELECT ", outbox_columns!(), " FROM outbox ORDER BY created_at, id LIMIT ?"),
            &[limit.into()],
            outbox_row_from,
        )
    }
}

/// The outbox templates Kith writes.
pub const OUTBOX_TEMPLATES: &[&str] = &[
    "break_glass_patient",
    "break_glass_privacy_officer",
    "patient_lookup_limit_privacy_officer",
    "team_added_patient",
    "consent_changed_patient",
    "sharing_disabled_patient",
    "password_reset",
    "patient_invitation",
    "professional_activation",
    "professional_added",
    "membership_invitation",
    "professional_address_unusable",
    "two_factor_reset",
];

pub(crate) fn outbox_row_from(row: &Row) -> Result<OutboxRow, StoreError> {
    let channel = row.text(1)?;
    Ok(OutboxRow {
        message: OutboxMessage {
            id: row.uuid(0)?,
            channel: ["email", "sms", "letter"]
                .into_iter()
                .find(|known| *known == channel)
                .ok_or_else(|| StoreError::corrupt(format!("stored outbox channel {channel:?} is unknown")))?,
            template: known_template(row.text(2)?)?,
            recipient: row.text(3)?.to_owned(),
            payload: row.text(4)?.to_owned(),
            secret: row.opt_text(5)?.map(str::to_owned),
            created_at: row.timestamp(6)?,
        },
        status: row.text(7)?.to_owned(),
        attempts: row.int(8)?,
        next_attempt_at: row.timestamp(9)?,
        sent_at: row.opt_timestamp(10)?,
        last_error: row.opt_text(11)?.map(str::to_owned),
    })
}

fn known_template(template: &str) -> Result<&'static str, StoreError> {
    OUTBOX_TEMPLATES
        .iter()
        .copied()
        .find(|known| *known == template)
        .ok_or_else(|| StoreError::corrupt(format!("unknown outbox template {template:?}")))
}
