//! The audit trail: what each event says, and the hash chain that makes tampering visible.
//!
//! Each event's hash is SHA-256 over a domain tag, the previous event's hash, its sequence
//! number and its fields, each length-prefixed. Changing, removing or reordering an event
//! breaks the chain at that event, and [`ChainVerifier`] names it.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::ids::{AccountId, IntegrationId, OrganisationId, PatientId, TeamId};
use crate::label::LabelSet;
use crate::time::Timestamp;

/// Who did it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Actor {
    /// Someone with shell access running the `kith` CLI (named by the OS user).
    Operator { name: String },
    /// A signed-in account (professional, coordinator, privacy officer or patient).
    Account(AccountId),
    /// An organisation's HL7 feed.
    Integration(IntegrationId),
    /// Kith itself (workers, expiry).
    System,
}

/// Through which door.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Channel {
    Cli,
    Web,
    Fhir,
    Hl7,
    System,
}

impl Channel {
    pub const fn code(self) -> &'static str {
        match self {
            Channel::Cli => "cli",
            Channel::Web => "web",
            Channel::Fhir => "fhir",
            Channel::Hl7 => "hl7",
            Channel::System => "system",
        }
    }
    pub fn from_code(code: &str) -> Option<Self> {
        [Channel::Cli, Channel::Web, Channel::Fhir, Channel::Hl7, Channel::System]
            .into_iter()
            .find(|channel| channel.code() == code)
    }
}

/// Allowed (and done), denied, or allowed only because an operator forced it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    Allowed,
    Denied,
    Overridden,
}

impl Outcome {
    pub const fn code(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Overridden => "overridden",
        }
    }
    pub fn from_code(code: &str) -> Option<Self> {
        [Outcome::Allowed, Outcome::Denied, Outcome::Overridden].into_iter().find(|o| o.code() == code)
    }
}

/// One audit event, before it joins the chain.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AuditRecord {
    pub at: Timestamp,
    pub actor: Actor,
    pub channel: Channel,
    pub organisation: Option<OrganisationId>,
    pub acting_team: Option<TeamId>,
    pub patient: Option<PatientId>,
    /// What happened, e.g. `record.read`, `break_glass.open`, `membership.deactivate`.
    pub action: &'static str,
    pub outcome: Outcome,
    /// The basis of access (`consent`, `own_team_data`, `break_glass`, `self`,
    /// `administration`), for events about patient data.
    pub basis: Option<&'static str>,
    /// The kinds of entry involved, comma-separated codes.
    pub entry_kinds: String,
    /// The privacy labels of the entries involved.
    pub labels: LabelSet,
    /// The object acted on when it is not the patient: a team, an account, an entry, a grant.
    pub subject: Option<String>,
    /// The precise reason: why access was denied, why the glass was broken, what was forced.
    pub reason: Option<String>,
}

/// An event in the chain: its position, its predecessor's hash and its own.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ChainedEvent {
    pub seq: i64,
    pub record: StoredAuditRecord,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// An audit record as read back from storage: the same fields with owned strings, so that a
/// changed action or basis is seen as changed rather than rejected on the way in.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredAuditRecord {
    pub at: Timestamp,
    pub actor_kind: String,
    pub actor_account: Option<AccountId>,
    pub actor_name: Option<String>,
    pub channel: String,
    pub organisation: Option<OrganisationId>,
    pub acting_team: Option<TeamId>,
    pub patient: Option<PatientId>,
    pub action: String,
    pub outcome: String,
    pub basis: Option<String>,
    pub entry_kinds: String,
    pub labels: u8,
    pub subject: Option<String>,
    pub reason: Option<String>,
}

impl From<&AuditRecord> for StoredAuditRecord {
    fn from(record: &AuditRecord) -> Self {
        let (actor_kind, actor_account, actor_name) = match &record.actor {
            Actor::Operator { name } => ("operator", None, Some(name.clone())),
            Actor::Account(id) => ("account", Some(*id), None),
            Actor::Integration(id) => ("integration", None, Some(id.to_string())),
            Actor::System => ("system", None, None),
        };
        StoredAuditRecord {
            at: record.at,
            actor_kind: actor_kind.to_owned(),
            actor_account,
            actor_name,
            channel: record.channel.code().to_owned(),
            organisation: record.organisation,
            acting_team: record.acting_team,
            patient: record.patient,
            action: record.action.to_owned(),
            outcome: record.outcome.code().to_owned(),
            basis: record.basis.map(str::to_owned),
            entry_kinds: record.entry_kinds.clone(),
            labels: record.labels.bits(),
            subject: record.subject.clone(),
            reason: record.reason.clone(),
        }
    }
}

/// The hash before the first event.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// The hash of the event at `seq` with `record`, following `prev_hash`.
pub fn event_hash(prev_hash: &[u8; 32], seq: i64, record: &StoredAuditRecord) -> [u8; 32] {
    fn field(hasher: &mut Sha256, bytes: &[u8]) {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    }
    fn optional(hasher: &mut Sha256, text: Option<&str>) {
        match text {
            None => hasher.update([0u8]),
            Some(text) => {
                hasher.update([1u8]);
                field(hasher, text.as_bytes());
            }
        }
    }
    let id = |uuid: Option<uuid::Uuid>| uuid.map(|uuid| uuid.hyphenated().to_string());
    let mut hasher = Sha256::new();
    hasher.update(b"kith-audit-v1");
    hasher.update(prev_hash);
    hasher.update(seq.to_be_bytes());
    hasher.update(record.at.as_micros().to_be_bytes());
    field(&mut hasher, record.actor_kind.as_bytes());
    optional(&mut hasher, id(record.actor_account.map(|a| a.as_uuid())).as_deref());
    optional(&mut hasher, record.actor_name.as_deref());
    field(&mut hasher, record.channel.as_bytes());
    optional(&mut hasher, id(record.organisation.map(|o| o.as_uuid())).as_deref());
    optional(&mut hasher, id(record.acting_team.map(|t| t.as_uuid())).as_deref());
    optional(&mut hasher, id(record.patient.map(|p| p.as_uuid())).as_deref());
    field(&mut hasher, record.action.as_bytes());
    field(&mut hasher, record.outcome.as_bytes());
    optional(&mut hasher, record.basis.as_deref());
    field(&mut hasher, record.entry_kinds.as_bytes());
    hasher.update([record.labels]);
    optional(&mut hasher, record.subject.as_deref());
    optional(&mut hasher, record.reason.as_deref());
    hasher.finalize().into()
}

/// Where and how the chain is broken.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ChainBreak {
    /// The event's contents no longer match its hash.
    Changed { seq: i64 },
    /// Events are missing: the chain jumps from `after` to `found`.
    Removed { after: i64, found: i64 },
    /// The event does not follow its predecessor (moved, or its predecessor replaced).
    Reordered { seq: i64 },
    /// The last event is not the one the chain head records (events removed from the end,
    /// or the head was changed).
    HeadMismatch { head_seq: i64, last_seq: i64 },
    /// The event cannot be read: a column holds a value Kith never writes (damaged).
    Unreadable { seq: i64 },
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainBreak::Changed { seq } => {
                write!(f, "audit event {seq} was changed: its contents do not match its hash")
            }
            ChainBreak::Unreadable { seq } => {
                write!(f, "audit event {seq} was changed: it cannot be read (a column holds a value Kith never writes)")
            }
            ChainBreak::Removed { after, found } if found - after == 2 => {
                write!(f, "audit event {} was removed: event {found} follows event {after}", after + 1)
            }
            ChainBreak::Removed { after, found } => {
                write!(
                    f,
                    "audit events {} to {} were removed: event {found} follows event {after}",
                    after + 1,
                    found - 1
                )
            }
            ChainBreak::Reordered { seq } => {
                write!(f, "audit event {seq} does not follow event {}: events were reordered or replaced", seq - 1)
            }
            ChainBreak::HeadMismatch { head_seq, last_seq } => write!(
                f,
                "the chain head records event {head_seq} as the last, but the last event is {last_seq}: events were removed from the end"
            ),
        }
    }
}

/// Checks events fed in sequence order.
#[derive(Debug)]
pub struct ChainVerifier {
    last_seq: i64,
    last_hash: [u8; 32],
    checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self { last_seq: 0, last_hash: GENESIS_HASH, checked: 0 }
    }
}

impl ChainVerifier {
    /// Checks the next event; the first break found is returned and verification should stop.
    pub fn check(&mut self, event: &ChainedEvent) -> Result<(), ChainBreak> {
        if event_hash(&event.prev_hash, event.seq, &event.record) != event.hash {
            return Err(ChainBreak::Changed { seq: event.seq });
        }
        if event.seq > self.last_seq + 1 {
            return Err(ChainBreak::Removed { after: self.last_seq, found: event.seq });
        }
        if event.seq != self.last_seq + 1 || event.prev_hash != self.last_hash {
            return Err(ChainBreak::Reordered { seq: event.seq });
        }
        self.last_seq = event.seq;
        self.last_hash = event.hash;
        self.checked += 1;
        Ok(())
    }

    /// Checks that the chain ends where its head says it does.
    pub fn finish(&self, head_seq: i64, head_hash: &[u8; 32]) -> Result<u64, ChainBreak> {
        if head_seq != self.last_seq || *head_hash != self.last_hash {
            return Err(ChainBreak::HeadMismatch { head_seq, last_seq: self.last_seq });
        }
        Ok(self.checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: &'static str) -> AuditRecord {
        AuditRecord {
            at: Timestamp::from_micros(1_000),
            actor: Actor::Operator { name: "ops".into() },
            channel: Channel::Cli,
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
        }
    }

    fn chain(actions: &[&'static str]) -> Vec<ChainedEvent> {
        let mut prev = GENESIS_HASH;
        actions
            .iter()
            .enumerate()
            .map(|(index, action)| {
                let stored = StoredAuditRecord::from(&record(action));
                let seq = index as i64 + 1;
                let hash = event_hash(&prev, seq, &stored);
                let event = ChainedEvent { seq, record: stored, prev_hash: prev, hash };
                prev = hash;
                event
            })
            .collect()
    }

    fn verify(events: &[ChainedEvent], head: (i64, [u8; 32])) -> Result<u64, ChainBreak> {
        let mut verifier = ChainVerifier::default();
        for event in events {
            verifier.check(event)?;
        }
        verifier.finish(head.0, &head.1)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let events = chain(&["a", "b", "c"]);
        assert_eq!(verify(&events, (3, events[2].hash)), Ok(3));
    }

    #[test]
    fn tampering_is_named() {
        let events = chain(&["a", "b", "c", "d"]);
        let head = (4, events[3].hash);

        let mut changed = events.clone();
        changed[1].record.reason = Some("edited".into());
        assert_eq!(verify(&changed, head), Err(ChainBreak::Changed { seq: 2 }));

        let mut removed = events.clone();
        removed.remove(1);
        assert_eq!(verify(&removed, head), Err(ChainBreak::Removed { after: 1, found: 3 }));
        assert_eq!(
            ChainBreak::Removed { after: 1, found: 3 }.to_string(),
            "audit event 2 was removed: event 3 follows event 1"
        );

        let mut reordered = events.clone();
        reordered.swap(1, 2);
        assert!(verify(&reordered, head).is_err());

        let mut truncated = events.clone();
        truncated.pop();
        assert_eq!(verify(&truncated, head), Err(ChainBreak::HeadMismatch { head_seq: 4, last_seq: 3 }));

        // Rewriting an event and recomputing its hash still breaks the link to the next one.
        let mut rehashed = events.clone();
        rehashed[1].record.action = "forged".into();
        rehashed[1].hash = event_hash(&rehashed[1].prev_hash, 2, &rehashed[1].record);
        assert_eq!(verify(&rehashed, head), Err(ChainBreak::Reordered { seq: 3 }));
    }
}
