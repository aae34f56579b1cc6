//! Reading and verifying the audit trail.

use kith_core::PatientId;
use kith_core::audit::{ChainBreak, ChainVerifier, ChainedEvent};

use crate::{App, AppResult};

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
                    let mut events = tx.audit_events_for_patient(patient, None, limit)?;
                    events.reverse();
                    events
                }
                None => tx.audit_events_after(0, limit)?,
            })
        })
    }
}
