//! `kith integration …` and `kith hl7 …`: an organisation's feeds, their messages and the
//! data-quality staff's queue of held messages.

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use kith_app::{App, IntegrationBinding, Operator, Resolution, resolutions_for};
use kith_core::integration::AddressRange;
use kith_core::model::{Hl7MessageRecord, Hl7MessageStatus, Integration};
use kith_core::text::{Name, Reason};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use super::input::org_code;
use super::output::print;

#[derive(Subcommand, Debug)]
pub enum IntegrationCommand {
    /// Register an HL7 feed: its sending facility (MSH-4, which every message it sends must
    /// carry) and a bearer token for POST /hl7/v2 (printed once; only its hash is kept). Its
    /// MLLP connections are bound to it with `kith integration bind`.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        /// The MSH-4 sending facility the feed's messages carry.
        #[arg(long)]
        facility: String,
        /// Days until the token expires. Without it, it lives until rotated or revoked.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3660))]
        expires_days: Option<u32>,
    },
    /// Give the integration a new token (printed once); the old one stops working at once.
    #[command(name = "rotate-token")]
    RotateToken {
        #[arg(long)]
        org: String,
        #[arg(long)]
        facility: String,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3660))]
        expires_days: Option<u32>,
    },
    /// Revoke the integration: its token, its MLLP connections and its messages are refused.
    Revoke {
        #[arg(long)]
        org: String,
        #[arg(long)]
        facility: String,
    },
    /// Say how the integration's MLLP connections prove who they are: the source addresses
    /// they come from (an address names one integration), or the TLS client certificate
    /// they present (with `kith serve --mllp-tls-cert/--mllp-tls-key`).
    #[command(group(clap::ArgGroup::new("binding").required(true).multiple(true)))]
    Bind {
        #[arg(long)]
        org: String,
        #[arg(long)]
        facility: String,
        /// An address or range (10.1.2.0/24, 2001:db8::/32) the connections come from;
        /// repeat for several. Replaces the integration's list.
        #[arg(long = "allow-address", group = "binding")]
        allow_address: Vec<String>,
        /// Remove every allowed address.
        #[arg(long, group = "binding", conflicts_with = "allow_address")]
        no_addresses: bool,
        /// The client certificate (PEM) the connections present.
        #[arg(long, group = "binding")]
        client_cert: Option<std::path::PathBuf>,
        /// Remove the pinned client certificate.
        #[arg(long, group = "binding", conflicts_with = "client_cert")]
        no_client_cert: bool,
    },
    /// List an organisation's integrations and how they are bound.
    List {
        #[arg(long)]
        org: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum Hl7Command {
    /// Backfill: load messages from files (MLLP frames, or messages separated by blank
    /// lines), with the same rules and idempotency as the live feed. Every message gets its
    /// own outcome; the exit status is 0 when the files were read to the end.
    Import {
        #[arg(long)]
        org: String,
        /// Where to write the rejected and held messages with their reasons.
        #[arg(long, default_value = "hl7-import-rejects.txt")]
        rejects: std::path::PathBuf,
        /// Transactions in flight at once (1 to 32). Messages that could affect one another
        /// stay in file order whatever the number. Default: 4 on PostgreSQL (its
        /// backends then keep both cores of a small server busy), 1 on SQLite (one writer
        /// at a time).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=32))]
        workers: Option<u16>,
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Process stored rejected, failed or held messages again, e.g. after a team, label rule
    /// or patient was added, or the record a held message conflicted with was corrected.
    #[command(group(clap::ArgGroup::new("which").required(true)))]
    Reprocess {
        #[arg(long)]
        org: String,
        /// One stored message's id.
        #[arg(group = "which")]
        id: Option<String>,
        /// Every stored message with this status.
        #[arg(long, group = "which", value_parser = ["rejected", "error", "held"])]
        status: Option<String>,
    },
    /// List stored inbound messages, newest first.
    Messages {
        #[arg(long)]
        org: String,
        #[arg(long, value_parser = ["accepted", "rejected", "error", "held"])]
        status: Option<String>,
        /// Only accepted messages with something not applied (an email another record has,
        /// a registered patient's contact details, …).
        #[arg(long)]
        with_notes: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// The messages held for the data-quality staff, oldest first: why each is held, the
    /// records in question and how it can be resolved (`kith hl7 resolve`).
    Held {
        #[arg(long)]
        org: String,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Resolve a held message: apply it to one of its records, apply it without the field
    /// that conflicts, or reject it (with a reason). Audited.
    #[command(group(clap::ArgGroup::new("how").required(true)))]
    Resolve {
        #[arg(long)]
        org: String,
        /// The held message's id.
        id: String,
        /// Apply it to this record (one of those `kith hl7 held` lists for it).
        #[arg(long, group = "how")]
        apply_to: Option<String>,
        /// Apply it without the conflicting field (the NHS number, or the name and birth
        /// date changes).
        #[arg(long, group = "how")]
        apply_without_conflicting_field: bool,
        /// Do not apply it.
        #[arg(long, group = "how", requires = "reason")]
        reject: bool,
        /// Why it is rejected.
        #[arg(long)]
        reason: Option<String>,
    },
}

fn integration_json(integration: &Integration) -> Value {
    json!({
        "id": integration.id.to_string(),
        "facility": integration.facility,
        "name": integration.name.as_str(),
        "revoked_at": integration.revoked_at.map(|at| at.to_string()),
        "token_expires_at": integration.token_expires_at.map(|at| at.to_string()),
        "allowed_addresses": integration.allowed_addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "client_certificate": integration.client_certificate_sha256.is_some(),
    })
}

fn describe_binding(integration: &Integration) -> String {
    let mut parts = Vec::new();
    if let Some(at) = integration.revoked_at {
        parts.push(format!("revoked {at}"));
    }
    if let Some(at) = integration.token_expires_at {
        parts.push(format!("token expires {at}"));
    }
    if !integration.allowed_addresses.is_empty() {
        let addresses: Vec<String> = integration.allowed_addresses.iter().map(ToString::to_string).collect();
        parts.push(format!("MLLP from {}", addresses.join(", ")));
    }
    if integration.client_certificate_sha256.is_some() {
        parts.push("MLLP with its client certificate".to_owned());
    }
    if integration.allowed_addresses.is_empty() && integration.client_certificate_sha256.is_none() {
        parts.push("no MLLP binding (HTTP only)".to_owned());
    }
    parts.join("; ")
}

/// The SHA-256 of the first certificate in a PEM file.
fn certificate_hash(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    let certificate = CertificateDer::pem_file_iter(path)
        .map_err(|error| anyhow!("{error}"))
        .with_context(|| format!("reading the client certificate {}", path.display()))?
        .next()
        .ok_or_else(|| anyhow!("{} holds no PEM certificate", path.display()))?
        .map_err(|error| anyhow!("{}: {error}", path.display()))?;
    Ok(kith_app::certificate_sha256(certificate.as_ref()))
}

pub fn integration(app: &App, operator: &Operator, json: bool, command: IntegrationCommand) -> anyhow::Result<()> {
    match command {
        IntegrationCommand::Create { org, name, facility, expires_days } => {
            let created = app.create_integration(
                operator,
                &org_code(&org)?,
                &Name::parse("name", &name)?,
                &facility,
                expires_days,
            )?;
            let integration = &created.integration;
            let mut value = integration_json(integration);
            value["token"] = json!(created.token.expose());
            print(json, value, || {
                format!(
                    "created integration {} for sending facility {}\nid: {}\ntoken (shown once; keep it secret): {}\nbind its MLLP connections with: kith integration bind --org {org} --facility {} --allow-address ADDRESS (or --client-cert CERT.pem)",
                    integration.name,
                    integration.facility,
                    integration.id,
                    created.token.expose(),
                    integration.facility,
                )
            });
        }
        IntegrationCommand::RotateToken { org, facility, expires_days } => {
            let rotated = app.rotate_integration_token(operator, &org_code(&org)?, &facility, expires_days)?;
            let mut value = integration_json(&rotated.integration);
            value["token"] = json!(rotated.token.expose());
            print(json, value, || {
                format!(
                    "new token for {} (shown once; the old one no longer works): {}",
                    rotated.integration.facility,
                    rotated.token.expose()
                )
            });
        }
        IntegrationCommand::Revoke { org, facility } => {
            let integration = app.revoke_integration(operator, &org_code(&org)?, &facility)?;
            print(json, integration_json(&integration), || {
                format!("revoked integration {}: its token and connections are refused", integration.facility)
            });
        }
        IntegrationCommand::Bind { org, facility, allow_address, no_addresses, client_cert, no_client_cert } => {
            let addresses = if no_addresses {
                Some(Vec::new())
            } else if allow_address.is_empty() {
                None
            } else {
                Some(
                    allow_address
                        .iter()
                        .map(|range| AddressRange::parse(range).map_err(|error| anyhow!("--allow-address: {error}")))
                        .collect::<anyhow::Result<Vec<_>>>()?,
                )
            };
            let certificate = match (client_cert, no_client_cert) {
                (Some(path), _) => Some(Some(certificate_hash(&path)?)),
                (None, true) => Some(None),
                (None, false) => None,
            };
            let binding = IntegrationBinding { addresses, certificate };
            let integration = app.bind_integration(operator, &org_code(&org)?, &facility, &binding)?;
            print(json, integration_json(&integration), || {
                format!("integration {}: {}", integration.facility, describe_binding(&integration))
            });
        }
        IntegrationCommand::List { org } => {
            let integrations = app.integrations(&org_code(&org)?)?;
            let value = json!({ "integrations": integrations.iter().map(integration_json).collect::<Vec<_>>() });
            print(json, value, || {
                integrations
                    .iter()
                    .map(|i| format!("{:<16} {:<24} {}", i.facility, i.name, describe_binding(i)))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
}

fn message_json(m: &Hl7MessageRecord) -> Value {
    let mut value = json!({
        "id": m.id.to_string(),
        "received_at": m.received_at.to_string(),
        "sending_application": m.sending_application,
        "sending_facility": m.sending_facility,
        "control_id": m.control_id,
        "message_type": m.message_type,
        "status": m.status.code(),
        "error": m.error,
        "patient": m.patient.map(|p| p.to_string()),
    });
    if let Some(conflict) = &m.conflict {
        value["conflict"] = json!(conflict);
        value["records"] = json!(m.conflict_records.iter().map(ToString::to_string).collect::<Vec<_>>());
        value["resolutions"] = json!(resolutions_for(conflict).iter().map(|kind| kind.code()).collect::<Vec<_>>());
    }
    if let Some(resolution) = &m.resolution {
        value["resolution"] = json!(resolution);
    }
    value
}

pub fn hl7(app: &App, operator: &Operator, json: bool, command: Hl7Command) -> anyhow::Result<()> {
    match command {
        Hl7Command::Import { org, rejects, workers, files } => {
            let workers = workers
                .map_or_else(|| if app.store().dialect() == kith_store::Dialect::Sqlite { 1 } else { 4 }, usize::from);
            crate::import::run(app, operator, json, &org, &org_code(&org)?, &files, &rejects, workers)?;
        }
        Hl7Command::Reprocess { org, id, status } => {
            let code = org_code(&org)?;
            let ids: Vec<kith_core::Hl7MessageId> = match (id, status) {
                (Some(id), _) => vec![id.parse().map_err(|error| anyhow!("message id: {error}"))?],
                (None, Some(status)) => {
                    let status = Hl7MessageStatus::from_code(&status).expect("clap checked it");
                    app.hl7_messages(&code, Some(status), 10_000)?.into_iter().rev().map(|m| m.id).collect()
                }
                (None, None) => unreachable!("clap requires one"),
            };
            let mut results = Vec::new();
            for id in ids {
                let outcome = app.reprocess_hl7(operator, &code, id)?;
                results.push((id, outcome.status.unwrap_or(Hl7MessageStatus::Error)));
            }
            let accepted = results.iter().filter(|(_, status)| *status == Hl7MessageStatus::Accepted).count();
            let value = json!({
                "reprocessed": results.len(),
                "accepted": accepted,
                "messages": results.iter().map(|(id, status)| json!({ "id": id.to_string(), "status": status.code() })).collect::<Vec<_>>(),
            });
            print(json, value, || {
                format!(
                    "reprocessed {} message(s): {accepted} accepted, {} still rejected or held",
                    results.len(),
                    results.len() - accepted
                )
            });
        }
        Hl7Command::Messages { org, status, with_notes, limit } => {
            let status = status.as_deref().and_then(Hl7MessageStatus::from_code);
            let status = if with_notes { Some(Hl7MessageStatus::Accepted) } else { status };
            let mut messages = app.hl7_messages(&org_code(&org)?, status, limit)?;
            if with_notes {
                messages.retain(|m| m.error.is_some());
            }
            let value = json!({ "messages": messages.iter().map(message_json).collect::<Vec<_>>() });
            print(json, value, || {
                messages
                    .iter()
                    .map(|m| {
                        format!(
                            "{}  {}  {:<8} {:<10} {}|{} {}  {}",
                            m.received_at,
                            m.id,
                            m.status,
                            m.message_type,
                            m.sending_application,
                            m.sending_facility,
                            m.control_id.as_deref().unwrap_or("-"),
                            m.error.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Hl7Command::Held { org, limit } => {
            let held = app.held_hl7_messages(&org_code(&org)?, limit)?;
            let value = json!({ "held": held.iter().map(message_json).collect::<Vec<_>>() });
            print(json, value, || {
                if held.is_empty() {
                    return format!("no messages are held for {org}");
                }
                held.iter()
                    .map(|m| {
                        let conflict = m.conflict.as_deref().unwrap_or("not_applied");
                        let records: Vec<String> = m.conflict_records.iter().map(ToString::to_string).collect();
                        let resolutions: Vec<&str> = resolutions_for(conflict).iter().map(|kind| kind.code()).collect();
                        format!(
                            "{}  {} {}|{} {}\n  why: {}\n  records: {}\n  resolve: kith hl7 resolve --org {org} {} --{}",
                            m.id,
                            m.message_type,
                            m.sending_application,
                            m.sending_facility,
                            m.control_id.as_deref().unwrap_or("-"),
                            m.error.as_deref().unwrap_or(conflict),
                            if records.is_empty() { "-".to_owned() } else { records.join(", ") },
                            m.id,
                            resolutions
                                .iter()
                                .map(|kind| match *kind {
                                    "apply-to" => "apply-to RECORD".to_owned(),
                                    "apply-without" => "apply-without-conflicting-field".to_owned(),
                                    _ => "reject --reason \"…\"".to_owned(),
                                })
                                .collect::<Vec<_>>()
                                .join(" | --"),
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Hl7Command::Resolve { org, id, apply_to, apply_without_conflicting_field, reject, reason } => {
            let id: kith_core::Hl7MessageId = id.parse().map_err(|error| anyhow!("message id: {error}"))?;
            let resolution = match (apply_to, apply_without_conflicting_field, reject) {
                (Some(record), _, _) => {
                    Resolution::ApplyTo(record.parse().map_err(|error| anyhow!("--apply-to: {error}"))?)
                }
                (None, true, _) => Resolution::ApplyWithoutConflictingField,
                (None, false, true) => {
                    let reason = reason.as_deref().unwrap_or_default();
                    Resolution::Reject(Reason::parse(reason).map_err(|error| anyhow!("--reason: {error}"))?)
                }
                _ => bail!("say how: --apply-to RECORD, --apply-without-conflicting-field or --reject --reason \"…\""),
            };
            let record = app.resolve_held_hl7(operator, &org_code(&org)?, id, &resolution)?;
            print(json, message_json(&record), || {
                format!("message {}: {}", record.id, record.resolution.as_deref().unwrap_or(record.status.code()))
            });
        }
    }
    Ok(())
}
