//! The audit trail: verifying the chain, listing events.

use anyhow::bail;
use clap::Subcommand;
use kith_app::{App, AuditVerification};
use kith_core::LabelSet;
use serde_json::json;

use super::input::patient_id;
use super::output::print;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the hash chain; names the first event changed, removed or reordered.
    Verify,
    /// List audit events, oldest first.
    List {
        #[arg(long)]
        patient: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
}

/// `kith audit …`: the audit trail.
pub(super) fn audit(app: &App, json: bool, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify => match app.verify_audit()? {
            AuditVerification::Intact { events } => {
                print(json, json!({ "intact": true, "events": events }), || {
                    format!("audit chain intact: {events} events verified")
                });
            }
            AuditVerification::Broken(broken) => {
                if json {
                    println!("{}", json!({ "intact": false, "problem": broken.to_string() }));
                }
                bail!("audit chain broken: {broken}");
            }
        },
        AuditCommand::List { patient, limit } => {
            let patient = patient.as_deref().map(patient_id).transpose()?;
            let events = app.audit_events(patient, limit)?;
            let value = json!({ "events": events.iter().map(|event| {
                let r = &event.record;
                json!({
                    "seq": event.seq, "at": r.at.to_string(), "actor_kind": r.actor_kind,
                    "actor_account": r.actor_account.map(|a| a.to_string()), "actor_name": r.actor_name,
                    "channel": r.channel, "organisation": r.organisation.map(|o| o.to_string()),
                    "team": r.acting_team.map(|t| t.to_string()), "patient": r.patient.map(|p| p.to_string()),
                    "action": r.action, "outcome": r.outcome, "basis": r.basis, "entry_kinds": r.entry_kinds,
                    "labels": LabelSet::from_bits(r.labels).map(|l| l.to_string()), "subject": r.subject, "reason": r.reason,
                })
            }).collect::<Vec<_>>() });
            print(json, value, || {
                events
                    .iter()
                    .map(|event| {
                        let r = &event.record;
                        format!(
                            "{:>6}  {}  {:<22} {:<10} basis={:<14} {}",
                            event.seq,
                            r.at,
                            r.action,
                            r.outcome,
                            r.basis.as_deref().unwrap_or("-"),
                            r.reason.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
}
