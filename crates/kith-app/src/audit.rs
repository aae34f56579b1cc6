//! Reading and verifying the audit trail.

use kith_core::audit::{Actor, ChainBreak, ChainVerifier, ChainedEvent, Channel};
use kith_core::model::BreakGlassGrant;
use kith_core::{AccountId, Basis, PatientId, Timestamp};
use kith_store::Tx;

use crate::{App, AppResult, AuditBuilder};

/// Events are read this many at a time when verifying.
const VERIFY_BATCH: i64 = 5_000;

/// The result of checking the whole chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditVerification {
    Intact { events: u64 },
    Broken(ChainBreak),
}

impl App {
    /// Checks every event of the audit chain, in order, in one consistent snapshot, and
    /// names the first that was changed, removed or reordered.
    pub fn verify_audit(&self) -> AppResult<AuditVerification> {
        self.store.read(|tx| {
            let (head_seq, head_hash) = tx.audit_head()?;
            let mut verifier = ChainVerifier::default();
            let mut after = 0;
            loop {
                let batch = tx.audit_events_after_checked(after, VERIFY_BATCH)?;
                if batch.is_empty() {
                    break;
                }
                for event in &batch {
                    let event = match event {
                        Ok(event) => event,
                        Err(seq) => return Ok(AuditVerification::Broken(ChainBreak::Unreadable { seq: *seq })),
                    };
                    after = event.seq;
                    if let Err(broken) = verifier.check(event) {
                        return Ok(AuditVerification::Broken(broken));
                    }
                }
            }
            Ok(match verifier.finish(head_seq, &head_hash) {
                Ok(events) => AuditVerification::Intact { events },
                Err(broken) => AuditVerification::Broken(broken),
            })
        })
    }

    /// Audit events, oldest first: all of them, or those about one patient.
    pub fn audit_events(&self, patient: Option<PatientId>, limit: i64) -> AppResult<Vec<ChainedEvent>> {
        self.store.read(|tx| {
            Ok(match patient {
                Some(patient) => {
                    let mut events = tx.audit_events_for_patient(patient, None, None, limit)?;
                    events.reverse();
                    events
                }
                None => tx.audit_events_after(0, limit)?,
            })
        })
    }
}

/// One line of a patient's access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLogEntry {
    /// The event's place in the audit chain: a stable identifier.
    pub seq: i64,
    pub patient: Option<PatientId>,
    /// The account that acted, if a person with an account did.
    pub actor: Option<AccountId>,
    pub team_id: Option<kith_core::TeamId>,
    pub label_set: kith_core::LabelSet,
    pub at: Timestamp,
    pub who: String,
    pub team: Option<String>,
    pub action: String,
    pub outcome: String,
    pub basis: Option<String>,
    pub entry_kinds: String,
    pub labels: String,
    pub break_glass: bool,
    /// The organisation of the team acted through.
    pub organisation: Option<String>,
    /// The reason the professional gave, for a break-the-glass grant they opened (never a
    /// denial's internal reason).
    pub stated_reason: Option<String>,
}

/// Names an audit event for the patient: who (the account's name), which team.
pub(crate) fn access_log_entry(tx: &mut Tx<'_>, event: &ChainedEvent) -> AppResult<AccessLogEntry> {
    let record = &event.record;
    let who = match (&record.actor_account, record.actor_kind.as_str()) {
        (Some(account), _) => {
            tx.account(*account)?.map_or_else(|| "a former account".to_owned(), |account| account.name.to_string())
        }
        (None, "operator") => "Kith administrator".to_owned(),
        _ => "Kith".to_owned(),
    };
    let (team, organisation) = match record.acting_team {
        Some(team) => match tx.team(team)? {
            Some(team) => {
                let organisation = tx.organisation(team.organisation)?.map(|o| o.name.to_string());
                (Some(team.name.to_string()), organisation)
            }
            None => (None, None),
        },
        None => (None, None),
    };
    let stated_reason = (record.action == "break_glass.open"
        && record.outcome == kith_core::audit::Outcome::Allowed.code())
    .then(|| record.reason.clone())
    .flatten();
    let label_set = kith_core::LabelSet::from_bits(record.labels).unwrap_or_default();
    Ok(AccessLogEntry {
        seq: event.seq,
        patient: record.patient,
        actor: record.actor_account,
        team_id: record.acting_team,
        label_set,
        at: record.at,
        who,
        team,
        action: record.action.clone(),
        outcome: record.outcome.clone(),
        basis: record.basis.clone(),
        entry_kinds: record.entry_kinds.clone(),
        labels: if label_set.is_empty() { String::new() } else { label_set.to_string() },
        break_glass: record.basis.as_deref() == Some("break_glass"),
        organisation,
        stated_reason,
    })
}

/// Audits grants ended by something other than the professional ending them (sign-out, a
/// deactivated membership, an account no longer active): one `break_glass.end` event each,
/// under the grant's team and organisation, with why it ended.
pub(crate) fn audit_grants_ended(
    tx: &mut Tx<'_>,
    grants: &[BreakGlassGrant],
    now: Timestamp,
    actor: Actor,
    channel: Channel,
    why: &str,
) -> AppResult<()> {
    for grant in grants {
        let mut event = AuditBuilder::new(now, actor.clone(), channel, "break_glass.end")
            .patient(grant.patient)
            .team(grant.team)
            .basis(Basis::BreakGlass { grant: grant.id }.code())
            .subject(grant.id)
            .reason(why);
        if let Some(team) = tx.team(grant.team)? {
            event = event.organisation(team.organisation);
        }
        tx.audit(event.build());
    }
    Ok(())
}
