//! Patients and the entries of their records.

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use kith_app::{App, ConsentActor, EntryAuthor, LinkActor, NewEntry, NewPatient, Operator, PatientChanges};
use kith_core::audit::Channel;
use kith_core::patient::{Demographics, EntryKind, LocalIdentifier, NhsNumber, Sex};
use kith_core::text::{MobileNumber, Name, Reason, Title};
use kith_core::{Date, LabelSet, PrivacyLabel};
use serde_json::json;

use super::input::{email, org_code, patient_id, postal_address, team_alias};
use super::output::{patient_json, print};
use super::records::{AsProfessional, context};
use crate::read_password_from_stdin;

#[derive(Subcommand, Debug)]
pub enum PatientCommand {
    /// Create a patient record in an organisation (linked to its Patient Record Team).
    Add {
        #[arg(long)]
        org: String,
        #[arg(long)]
        family: String,
        #[arg(long)]
        given: String,
        /// YYYY-MM-DD.
        #[arg(long)]
        birth_date: String,
        /// female, male, other or unknown.
        #[arg(long, default_value = "unknown")]
        sex: String,
        #[command(flatten)]
        contact: ContactFields,
        /// Link to this speciality team with its default labels (repeatable).
        #[arg(long = "team")]
        teams: Vec<String>,
    },
    /// Change a patient's record: the fields given replace the stored ones; --local-id adds.
    Update {
        #[arg(long)]
        org: String,
        #[arg(long)]
        patient: String,
        #[arg(long)]
        family: Option<String>,
        #[arg(long)]
        given: Option<String>,
        /// YYYY-MM-DD.
        #[arg(long)]
        birth_date: Option<String>,
        #[arg(long)]
        sex: Option<String>,
        #[command(flatten)]
        contact: ContactFields,
    },
    /// Invite the patient to register (again: older codes stop working), by email, SMS or
    /// letter (default: email, else SMS, else letter, by what the record has).
    Invite {
        #[arg(long)]
        org: String,
        #[arg(long)]
        nhs_number: String,
        #[arg(long, value_parser = ["email", "sms", "letter"])]
        channel: Option<String>,
    },
    /// Bring a patient into a team with the team's default labels.
    Link {
        #[command(flatten)]
        place: TeamPatient,
    },
    /// Discharge a patient from a team (the team keeps what it wrote).
    Discharge {
        #[command(flatten)]
        place: TeamPatient,
    },
    /// Assisted registration: give a patient an active account (after checking identity).
    Register {
        #[arg(long)]
        org: String,
        #[arg(long)]
        nhs_number: String,
        #[arg(long)]
        email: String,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a team's labels on the patient's behalf (a professional of the team, with a reason).
    Consent {
        #[command(flatten)]
        who: AsProfessional,
        /// The labels the team may see, e.g. general,mental_health (empty for none).
        #[arg(long)]
        labels: String,
        #[arg(long)]
        reason: String,
    },
    /// Disable (or with --enable, re-enable) sharing on a record, as a privacy officer.
    #[command(name = "disable-sharing")]
    DisableSharing {
        #[arg(long = "as")]
        as_email: String,
        #[arg(long)]
        patient: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        enable: bool,
    },
}

/// The identifiers and contact details of a record; on `patient update` the fields given
/// replace the stored ones, except --local-id, which adds.
#[derive(Args, Debug)]
pub struct ContactFields {
    #[arg(long)]
    nhs_number: Option<String>,
    /// AUTHORITY:VALUE, e.g. RXH-MRN:K1234567 (repeatable).
    #[arg(long = "local-id")]
    local_ids: Vec<String>,
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    mobile: Option<String>,
    /// A line of the postal address, for letters (repeat for each line, postcode last).
    #[arg(long = "address")]
    address: Vec<String>,
}

/// The parsed [`ContactFields`].
struct Contact {
    nhs_number: Option<NhsNumber>,
    local_identifiers: Vec<LocalIdentifier>,
    email: Option<kith_core::text::EmailAddress>,
    mobile: Option<MobileNumber>,
    address: Option<kith_core::text::PostalAddress>,
}

impl ContactFields {
    fn parse(&self) -> anyhow::Result<Contact> {
        Ok(Contact {
            nhs_number: self
                .nhs_number
                .as_deref()
                .map(NhsNumber::parse)
                .transpose()
                .map_err(|error| anyhow!("--nhs-number: {error}"))?,
            local_identifiers: self.local_ids.iter().map(|id| LocalIdentifier::parse(id)).collect::<Result<_, _>>()?,
            email: self.email.as_deref().map(email).transpose()?,
            mobile: self.mobile.as_deref().map(MobileNumber::parse).transpose()?,
            address: postal_address(&self.address)?,
        })
    }
}

/// A patient in one team of an organisation.
#[derive(Args, Debug)]
pub struct TeamPatient {
    #[arg(long)]
    org: String,
    #[arg(long)]
    team: String,
    #[arg(long)]
    patient: String,
}

#[derive(Subcommand, Debug)]
pub enum EntryCommand {
    /// Add an entry to a patient's record on behalf of one of the organisation's teams.
    Add {
        #[arg(long)]
        org: String,
        /// The authoring team (default: the Patient Record Team, as for hospital feeds).
        #[arg(long, default_value = "prt")]
        team: String,
        #[arg(long)]
        patient: String,
        /// result, document, appointment, care_plan, note, measurement, diagnosis, medication, allergy.
        #[arg(long)]
        kind: String,
        /// general, sexual_health, mental_health or social_care; omit with --unlabelled.
        #[arg(long, required_unless_present = "unlabelled")]
        label: Option<String>,
        /// An entry with no label: visible only to teams holding all four labels.
        #[arg(long, conflicts_with = "label")]
        unlabelled: bool,
        #[arg(long)]
        title: String,
        #[arg(long, default_value = "")]
        body: String,
        /// When it happened (YYYY-MM-DD); default now.
        #[arg(long)]
        effective: Option<String>,
        /// Write as this professional of the team instead of as the operator.
        #[arg(long = "as")]
        as_email: Option<String>,
    },
}

pub(super) fn patient(app: &App, operator: &Operator, json: bool, command: PatientCommand) -> anyhow::Result<()> {
    match command {
        PatientCommand::Add { org, family, given, birth_date, sex, contact, teams } => {
            let contact = contact.parse()?;
            let new = NewPatient {
                organisation: org_code(&org)?,
                demographics: Demographics {
                    family_name: Name::parse("family name", &family)?,
                    given_name: Name::parse("given name", &given)?,
                    birth_date: Date::parse(&birth_date).map_err(|error| anyhow!("--birth-date: {error}"))?,
                    sex: Sex::from_code(sex.trim())
                        .ok_or_else(|| anyhow!("--sex must be female, male, other or unknown"))?,
                    email: contact.email,
                    mobile: contact.mobile,
                    address: contact.address,
                },
                nhs_number: contact.nhs_number,
                local_identifiers: contact.local_identifiers,
                teams: teams.iter().map(|alias| team_alias(alias)).collect::<anyhow::Result<_>>()?,
            };
            let patient = app.create_patient(operator, &new)?;
            print(json, patient_json(&patient), || {
                format!(
                    "created the record of {} {} in {}\nid: {}",
                    patient.demographics.given_name, patient.demographics.family_name, new.organisation, patient.id
                )
            });
        }
        PatientCommand::Update { org, patient, family, given, birth_date, sex, contact } => {
            let contact = contact.parse()?;
            let changes = PatientChanges {
                family_name: family.as_deref().map(|family| Name::parse("family name", family)).transpose()?,
                given_name: given.as_deref().map(|given| Name::parse("given name", given)).transpose()?,
                birth_date: birth_date
                    .as_deref()
                    .map(Date::parse)
                    .transpose()
                    .map_err(|error| anyhow!("--birth-date: {error}"))?,
                sex: sex
                    .as_deref()
                    .map(|sex| {
                        Sex::from_code(sex.trim())
                            .ok_or_else(|| anyhow!("--sex must be female, male, other or unknown"))
                    })
                    .transpose()?,
                email: contact.email,
                mobile: contact.mobile,
                address: contact.address,
                nhs_number: contact.nhs_number,
                add_local_identifiers: contact.local_identifiers,
            };
            let record = app.update_patient(operator, &org_code(&org)?, patient_id(&patient)?, &changes)?;
            print(json, patient_json(&record), || {
                format!("updated the record of {} {}", record.demographics.given_name, record.demographics.family_name)
            });
        }
        PatientCommand::Link { place: TeamPatient { org, team, patient } } => {
            let link = app.link_patient(
                &LinkActor::Operator(operator),
                patient_id(&patient)?,
                &org_code(&org)?,
                &team_alias(&team)?,
                None,
            )?;
            print(
                json,
                json!({ "patient": link.patient.to_string(), "team": team, "labels": link.labels.to_string(), "basis": link.basis.code() }),
                || {
                    format!(
                        "linked to team {team} with labels: {}",
                        if link.labels.is_empty() { "none".to_owned() } else { link.labels.to_string() }
                    )
                },
            );
        }
        PatientCommand::Discharge { place: TeamPatient { org, team, patient } } => {
            app.discharge_patient(
                &LinkActor::Operator(operator),
                patient_id(&patient)?,
                &org_code(&org)?,
                &team_alias(&team)?,
            )?;
            print(json, json!({ "patient": patient, "team": team, "discharged": true }), || {
                format!("discharged from team {team}")
            });
        }
        PatientCommand::Register { org, nhs_number, email: address, password_stdin } => {
            if !password_stdin {
                bail!("give the patient's initial password with --password-stdin");
            }
            let password_hash = kith_app::password::hash_password(&read_password_from_stdin()?)?;
            let nhs_number = NhsNumber::parse(&nhs_number).map_err(|error| anyhow!("--nhs-number: {error}"))?;
            let patient = app.patient_by_nhs_number(&nhs_number)?;
            let account = app.register_patient_account(
                operator,
                &org_code(&org)?,
                patient.id,
                &email(&address)?,
                &password_hash,
            )?;
            print(
                json,
                json!({ "id": account.id.to_string(), "patient": patient.id.to_string(), "email": account.email.as_str() }),
                || format!("registered {} for the patient's record\naccount id: {}", account.email, account.id),
            );
        }
        PatientCommand::Invite { org, nhs_number, channel } => {
            let nhs_number = NhsNumber::parse(&nhs_number).map_err(|error| anyhow!("--nhs-number: {error}"))?;
            let how = channel.as_deref().and_then(kith_app::invitations::InviteChannel::from_code);
            let invitation = app.invite_patient(operator, &org_code(&org)?, &nhs_number, how)?;
            print(
                json,
                json!({
                    "patient": invitation.patient.to_string(),
                    "channel": invitation.channel.code(),
                    "expires": invitation.expires_at.date().to_string(),
                }),
                || {
                    let delivery = match invitation.channel {
                        kith_app::invitations::InviteChannel::Letter => {
                            "it will be printed by `kith letters export`".to_owned()
                        }
                        other => format!("it is queued for delivery by {}", other.code()),
                    };
                    format!(
                        "invited the patient to register; the codes work until {}; {delivery}",
                        invitation.expires_at.date()
                    )
                },
            );
        }
        PatientCommand::Consent { who, labels, reason } => {
            let (context, patient) = context(app, &who)?;
            let reason = Reason::parse(&reason)?;
            let labels = LabelSet::parse_list(&labels)?;
            let link = app.change_consent(
                &ConsentActor::Professional { context: &context, reason: Some(&reason) },
                patient,
                context.team,
                labels,
            )?;
            let team = who.team;
            print(
                json,
                json!({ "patient": patient.to_string(), "team": team, "labels": link.labels.to_string() }),
                || {
                    format!(
                        "team {team} may now see: {}",
                        if link.labels.is_empty() {
                            "nothing but its own data".to_owned()
                        } else {
                            link.labels.to_string()
                        }
                    )
                },
            );
        }
        PatientCommand::DisableSharing { as_email, patient, reason, enable } => {
            let officer = app.account_by_email(&email(&as_email)?)?;
            let record =
                app.set_sharing_disabled(officer.id, patient_id(&patient)?, !enable, &Reason::parse(&reason)?)?;
            print(json, patient_json(&record), || {
                if record.sharing_disabled {
                    "sharing disabled: teams keep only their own data; break glass is refused".to_owned()
                } else {
                    "sharing enabled again".to_owned()
                }
            });
        }
    }
    Ok(())
}

/// `kith entry …`.
pub(super) fn entry(app: &App, operator: &Operator, json: bool, command: EntryCommand) -> anyhow::Result<()> {
    match command {
        EntryCommand::Add { org, team, patient, kind, label, unlabelled, title, body, effective, as_email } => {
            let organisation = org_code(&org)?;
            let alias = team_alias(&team)?;
            let label =
                if unlabelled { None } else { Some(PrivacyLabel::parse(label.as_deref().unwrap_or_default())?) };
            let effective_at = match effective {
                Some(date) => Date::parse(&date).map_err(|error| anyhow!("--effective: {error}"))?.start(),
                None => app.now(),
            };
            let new =
                NewEntry { kind: EntryKind::parse(&kind)?, label, title: Title::parse(&title)?, body, effective_at };
            let patient = patient_id(&patient)?;
            let entry = match as_email {
                Some(address) => {
                    let context = app.professional_context(&organisation, &alias, &email(&address)?, Channel::Cli)?;
                    app.add_entry(&EntryAuthor::Professional(&context), patient, &new)?
                }
                None => app.add_entry(
                    &EntryAuthor::Operator { operator, organisation: &organisation, team: &alias },
                    patient,
                    &new,
                )?,
            };
            print(
                json,
                json!({ "id": entry.id.to_string(), "kind": entry.kind.code(), "label": entry.label.map(|l| l.code()), "team": alias.as_str() }),
                || {
                    format!(
                        "added {} entry {:?} ({}) by team {}\nid: {}",
                        entry.kind,
                        entry.title.as_str(),
                        entry.label.map_or("no label", |l| l.code()),
                        alias,
                        entry.id
                    )
                },
            );
        }
    }
    Ok(())
}
