//! Organisations, their settings and label rules, and their privacy officers.

use clap::Subcommand;
use kith_app::{App, NewOrganisation, Operator};
use kith_core::team::parse_duration;
use kith_core::text::Name;
use kith_core::{LabelSet, PrivacyLabel};
use serde_json::json;

use super::input::{email, org_code};
use super::output::{organisation_json, print};

#[derive(Subcommand, Debug)]
pub enum OrgCommand {
    /// Create an organisation with its Patient Record Team (alias prt).
    Create {
        #[arg(long)]
        name: String,
        /// ODS-style code, e.g. RXH.
        #[arg(long)]
        code: String,
        /// How long break-the-glass access lasts (e.g. 4h, 30m). Default 4h.
        #[arg(long)]
        break_glass_duration: Option<String>,
    },
    /// Change an organisation's settings.
    #[command(group(clap::ArgGroup::new("setting").required(true).multiple(true)))]
    Set {
        #[arg(long)]
        org: String,
        /// How long break-the-glass access lasts (e.g. 4h, 30m, 90s; at most 24h).
        #[arg(long, group = "setting")]
        break_glass_duration: Option<String>,
        /// Which HL7 ADT events may create a record: a28-a31 (person information only) or
        /// any-adt (also A01, A04, A05, A08).
        #[arg(long, group = "setting", value_parser = ["a28-a31", "any-adt"])]
        hl7_create_on: Option<String>,
        /// Whether the organisation's professionals must use two-step verification to sign
        /// in to the web application (those without it are sent to set it up).
        #[arg(long, group = "setting")]
        require_two_factor: Option<bool>,
        /// The labels the Patient Record Team's data-quality staff may add to that team's
        /// care links on a patient's behalf, e.g. general (the default) or
        /// general,social_care; empty for none.
        #[arg(long, group = "setting", value_name = "LABELS")]
        on_behalf_labels: Option<String>,
    },
    /// Add an assigning authority whose PID-3 identifiers are the organisation's local ones.
    #[command(name = "add-authority")]
    AddAuthority {
        #[arg(long)]
        org: String,
        /// As sent in PID-3.4, e.g. RXH-MRN.
        #[arg(long)]
        authority: String,
    },
    /// List organisations.
    List,
}

#[derive(Subcommand, Debug)]
pub enum LabelRuleCommand {
    /// Give incoming HL7 data a privacy label by a field's value, e.g. --field PV1-3
    /// --value SEXHLTH --label sexual_health. Without a matching rule, data is general.
    Add {
        #[arg(long)]
        org: String,
        /// PV1-3, PV1-10, OBR-4, OBX-3, TXA-2 or MSH-3.
        #[arg(long)]
        field: String,
        /// The code as sent in that field (its first component).
        #[arg(long)]
        value: String,
        /// general, sexual_health, mental_health or social_care.
        #[arg(long)]
        label: String,
    },
    /// List an organisation's label rules.
    List {
        #[arg(long)]
        org: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum PrivacyOfficerCommand {
    /// Appoint an existing account as a privacy officer of an organisation.
    Appoint {
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
    },
}

/// `kith org …`: organisations and their settings.
pub(super) fn org(app: &App, operator: &Operator, json: bool, command: OrgCommand) -> anyhow::Result<()> {
    match command {
        OrgCommand::Create { name, code, break_glass_duration } => {
            let new = NewOrganisation {
                code: org_code(&code)?,
                name: Name::parse("name", &name)?,
                break_glass_duration: break_glass_duration
                    .as_deref()
                    .map(parse_duration)
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
            };
            let (organisation, prt) = app.create_organisation(operator, &new)?;
            print(json, organisation_json(&organisation, Some(&prt)), || {
                format!(
                    "created organisation {} ({}) with its Patient Record Team (alias prt)\nid: {}",
                    organisation.name, organisation.code, organisation.id
                )
            });
        }
        OrgCommand::Set { org, break_glass_duration, hl7_create_on, require_two_factor, on_behalf_labels } => {
            let code = org_code(&org)?;
            let mut said = Vec::new();
            if let Some(duration) = break_glass_duration {
                let duration = parse_duration(&duration).map_err(anyhow::Error::msg)?;
                let organisation = app.set_break_glass_duration(operator, &code, duration)?;
                said.push(format!("break-the-glass access now lasts {}s", organisation.break_glass_duration.as_secs()));
            }
            if let Some(create_on) = hl7_create_on {
                app.set_hl7_create_on_any_adt(operator, &code, create_on == "any-adt")?;
                said.push(format!("HL7 ADT messages create records on: {create_on}"));
            }
            if let Some(required) = require_two_factor {
                app.set_two_factor_requirement(operator, &code, required)?;
                said.push(format!(
                    "two-step verification is {} for its professionals",
                    if required { "required" } else { "optional" }
                ));
            }
            if let Some(labels) = on_behalf_labels {
                let allowed = LabelSet::parse_list(&labels)?;
                app.set_on_behalf_labels(operator, &code, allowed)?;
                said.push(format!(
                    "data-quality staff may add on a patient's behalf: {}",
                    if allowed.is_empty() { "nothing".to_owned() } else { allowed.to_string() }
                ));
            }
            let organisation = app.organisations()?.into_iter().find(|o| o.code == code);
            print(json, organisation.as_ref().map_or(json!({}), |o| organisation_json(o, None)), || {
                format!("{code}: {}", said.join("; "))
            });
        }
        OrgCommand::AddAuthority { org, authority } => {
            app.add_assigning_authority(operator, &org_code(&org)?, &authority)?;
            print(json, json!({ "organisation": org, "authority": authority.trim().to_uppercase() }), || {
                format!(
                    "PID-3 identifiers under {} are now {}'s local identifiers",
                    authority.trim().to_uppercase(),
                    org.to_uppercase()
                )
            });
        }
        OrgCommand::List => {
            let organisations = app.organisations()?;
            print(
                json,
                json!({ "organisations": organisations.iter().map(|o| organisation_json(o, None)).collect::<Vec<_>>() }),
                || organisations.iter().map(|o| format!("{}  {}", o.code, o.name)).collect::<Vec<_>>().join("\n"),
            );
        }
    }
    Ok(())
}

/// `kith label-rule …`: how HL7 data is labelled.
pub(super) fn label_rule(app: &App, operator: &Operator, json: bool, command: LabelRuleCommand) -> anyhow::Result<()> {
    match command {
        LabelRuleCommand::Add { org, field, value, label } => {
            let label = PrivacyLabel::parse(&label)?;
            app.add_label_rule(operator, &org_code(&org)?, &field, &value, label)?;
            print(
                json,
                json!({ "organisation": org, "field": field.trim().to_uppercase(), "value": value.trim(), "label": label.code() }),
                || format!("HL7 data with {} = {} is now labelled {label}", field.trim().to_uppercase(), value.trim()),
            );
        }
        LabelRuleCommand::List { org } => {
            let rules = app.label_rules(&org_code(&org)?)?;
            let value = json!({ "rules": rules.iter().map(|(field, value, label)| json!({ "field": field, "value": value, "label": label.code() })).collect::<Vec<_>>() });
            print(json, value, || {
                if rules.is_empty() {
                    "no label rules: all incoming data is general".to_owned()
                } else {
                    rules
                        .iter()
                        .map(|(field, value, label)| format!("{field} = {value} -> {label}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            });
        }
    }
    Ok(())
}

/// `kith privacy-officer …`.
pub(super) fn privacy_officer(
    app: &App,
    operator: &Operator,
    json: bool,
    command: PrivacyOfficerCommand,
) -> anyhow::Result<()> {
    match command {
        PrivacyOfficerCommand::Appoint { org, email: address } => {
            let account = app.appoint_privacy_officer(operator, &org_code(&org)?, &email(&address)?)?;
            print(
                json,
                json!({ "id": account.id.to_string(), "email": account.email.as_str(), "organisation": org }),
                || format!("{} is a privacy officer of {}", account.email, org.to_uppercase()),
            );
        }
    }
    Ok(())
}
