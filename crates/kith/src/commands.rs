//! The operator commands: parse flags into domain types once, call a use case, print.

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use kith_app::{
    App, AuditVerification, ConsentActor, EntryAuthor, LinkActor, NewEntry, NewMember, NewOrganisation, NewPatient,
    Operator, PatientChanges, ProfessionalContext, RecordView,
};
use kith_core::audit::Channel;
use kith_core::model::{Organisation, Patient, Team};
use kith_core::patient::{Demographics, EntryKind, LocalIdentifier, NhsNumber, Sex};
use kith_core::team::{MembershipRole, MembershipStatus, parse_duration};
use kith_core::text::{EmailAddress, MobileNumber, Name, OrganisationCode, Reason, TeamAlias, Title};
use kith_core::{Date, LabelSet, PatientId, PrivacyLabel};
use serde_json::{Value, json};

use crate::{Cli, Command, open_app, read_password_from_stdin};

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
pub enum LettersCommand {
    /// Write the organisation's pending letter invitations to a PDF, one page each (name,
    /// address, the two codes and their expiry; never the date of birth), and mark them
    /// printed. Nothing is marked when the file cannot be written.
    Export {
        #[arg(long)]
        org: String,
        #[arg(long)]
        out: std::path::PathBuf,
        /// The address printed for registering (default KITH_PUBLIC_URL, else http://127.0.0.1:8080).
        #[arg(long, env = "KITH_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
        public_url: String,
        /// Replace the file if it exists (by default an existing file is refused, so that a
        /// second export can never overwrite letters not yet printed).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a bearer token for the FHIR API acting for this account (printed once; only
    /// its hash is kept). It acts with the account's memberships as they are at each request.
    Create {
        #[arg(long)]
        email: String,
        /// A name to tell the account's tokens apart (and to revoke this one by).
        #[arg(long, default_value = "api")]
        name: String,
        /// Days until it expires (1 to 366). Without it, the token lives until revoked.
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// Revoke the account's live token of this name; it stops working at once.
    Revoke {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "api")]
        name: String,
    },
    /// List the account's tokens (never the secrets).
    List {
        #[arg(long)]
        email: String,
    },
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
pub enum TeamCommand {
    /// Create a speciality team (it starts in set-up).
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        /// Unique within the organisation; HL7 ZTM uses it.
        #[arg(long)]
        alias: String,
        /// Default privacy labels: general,sexual_health,mental_health,social_care.
        #[arg(long, default_value = "")]
        labels: String,
    },
    /// Take a team live (it needs two active coordinators).
    #[command(name = "go-live")]
    GoLive {
        #[arg(long)]
        org: String,
        #[arg(long)]
        team: String,
    },
    /// List an organisation's teams and their members.
    List {
        #[arg(long)]
        org: String,
    },
}

#[derive(Args, Debug)]
pub struct MembershipTarget {
    #[arg(long)]
    org: String,
    #[arg(long)]
    team: String,
    #[arg(long)]
    email: String,
    /// Override the two-coordinator rule (audited).
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand, Debug)]
pub enum ProfessionalCommand {
    /// Add a professional (or coordinator) to a team: a new account when the email is new,
    /// otherwise a new membership of the existing account.
    Add {
        #[arg(long)]
        org: String,
        #[arg(long)]
        team: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Add as a coordinator (runs the team; no clinical access).
        #[arg(long)]
        coordinator: bool,
        /// Read the new account's password from standard input (the account is then
        /// active; without it, the account is invited).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Deactivate a membership (this team only).
    Deactivate(MembershipTarget),
    /// Reactivate a membership.
    Reactivate(MembershipTarget),
    /// Make a member a coordinator or a professional.
    #[command(name = "set-role")]
    SetRole {
        #[command(flatten)]
        target: MembershipTarget,
        /// professional or coordinator.
        #[arg(long)]
        role: String,
    },
    /// Add many professionals to a team from a CSV file (format: docs/professionals-csv.md):
    /// new addresses get an invited account and an activation email, existing accounts a
    /// membership and a notice. Rows with problems are reported by line and not applied.
    Import {
        #[arg(long)]
        org: String,
        #[arg(long)]
        team: String,
        /// The CSV file (UTF-8, header row: email, given name, family name, job title,
        /// professional registration number, role).
        file: std::path::PathBuf,
        /// Check the file and say what each row would do, writing nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also write every row's outcome to this CSV file (line, email, outcome, detail).
        #[arg(long, value_name = "FILE.csv")]
        report: Option<std::path::PathBuf>,
    },
    /// Turn off an account's two-step verification (a lost phone and lost recovery codes),
    /// for an account no coordinator may change alone (it is active in more than one
    /// organisation): its sessions end and its holder is emailed. Audited.
    #[command(name = "reset-two-factor")]
    ResetTwoFactor {
        #[arg(long)]
        email: String,
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
        #[arg(long)]
        nhs_number: Option<String>,
        /// AUTHORITY:VALUE (repeatable; added to the record).
        #[arg(long = "local-id")]
        local_ids: Vec<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        mobile: Option<String>,
        /// A line of the postal address (repeat for each line, postcode last; replaces it).
        #[arg(long = "address")]
        address: Vec<String>,
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
        #[arg(long)]
        org: String,
        #[arg(long)]
        team: String,
        #[arg(long)]
        patient: String,
    },
    /// Discharge a patient from a team (the team keeps what it wrote).
    Discharge {
        #[arg(long)]
        org: String,
        #[arg(long)]
        team: String,
        #[arg(long)]
        patient: String,
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
        #[arg(long)]
        org: String,
        #[arg(long)]
        team: String,
        #[arg(long = "as")]
        as_email: String,
        #[arg(long)]
        patient: String,
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

#[derive(Args, Debug)]
pub struct AsProfessional {
    #[arg(long)]
    org: String,
    /// The team the professional acts through.
    #[arg(long)]
    team: String,
    /// The professional's email.
    #[arg(long = "as")]
    as_email: String,
    #[arg(long)]
    patient: String,
}

#[derive(Subcommand, Debug)]
pub enum RecordCommand {
    /// Read a patient's record as a professional acting through a team.
    Read(AsProfessional),
}

#[derive(Subcommand, Debug)]
pub enum BreakGlassCommand {
    /// Open emergency access to a patient's whole record.
    Open {
        #[command(flatten)]
        who: AsProfessional,
        /// Why (required; recorded and reviewed by the privacy officer).
        #[arg(long)]
        reason: String,
    },
    /// End emergency access early.
    End(AsProfessional),
}

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

pub(crate) fn org_code(text: &str) -> anyhow::Result<OrganisationCode> {
    Ok(OrganisationCode::parse(text)?)
}

fn team_alias(text: &str) -> anyhow::Result<TeamAlias> {
    Ok(TeamAlias::parse(text)?)
}

/// `--address` lines, when any were given.
fn postal_address(lines: &[String]) -> anyhow::Result<Option<kith_core::text::PostalAddress>> {
    if lines.is_empty() {
        return Ok(None);
    }
    Ok(Some(kith_core::text::PostalAddress::from_lines(lines.iter().map(String::as_str))?))
}

fn email(text: &str) -> anyhow::Result<EmailAddress> {
    Ok(EmailAddress::parse(text)?)
}

fn patient_id(text: &str) -> anyhow::Result<PatientId> {
    text.parse().map_err(|error| anyhow!("--patient: {error}"))
}

pub(crate) fn print(json: bool, value: Value, human: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", human());
    }
}

fn organisation_json(organisation: &Organisation, prt: Option<&Team>) -> Value {
    let mut value = json!({
        "id": organisation.id.to_string(),
        "code": organisation.code.as_str(),
        "name": organisation.name.as_str(),
        "break_glass_duration_seconds": organisation.break_glass_duration.as_secs(),
    });
    if let Some(prt) = prt {
        value["patient_record_team"] = team_json(prt);
    }
    value
}

fn team_json(team: &Team) -> Value {
    json!({
        "id": team.id.to_string(),
        "alias": team.alias.as_str(),
        "name": team.name.as_str(),
        "kind": team.kind.code(),
        "status": team.status.code(),
        "labels": team.default_labels.iter().map(|label| label.code()).collect::<Vec<_>>(),
    })
}

fn patient_json(patient: &Patient) -> Value {
    let d = &patient.demographics;
    json!({
        "id": patient.id.to_string(),
        "nhs_number": patient.nhs_number.as_ref().map(|n| n.as_str()),
        "family": d.family_name.as_str(),
        "given": d.given_name.as_str(),
        "birth_date": d.birth_date.to_string(),
        "sex": d.sex.code(),
        "registration": patient.registration.code(),
        "sharing_disabled": patient.sharing_disabled,
    })
}

fn record_json(view: &RecordView) -> Value {
    json!({
        "patient": patient_json(&view.patient),
        "basis": view.basis.code(),
        "some_hidden": view.some_hidden,
        "entries": view.entries.iter().map(|visible| json!({
            "id": visible.entry.id.to_string(),
            "kind": visible.entry.kind.code(),
            "label": visible.entry.label.map(|label| label.code()),
            "title": visible.entry.title.as_str(),
            "body": visible.entry.body,
            "effective_at": visible.entry.effective_at.to_string(),
            "ends_at": visible.entry.ends_at.map(|end| end.to_string()),
            "basis": visible.basis.code(),
        })).collect::<Vec<_>>(),
    })
}

fn record_text(view: &RecordView) -> String {
    let d = &view.patient.demographics;
    let mut out = format!(
        "{} {} (born {}){}\nseen on the basis of: {}\n",
        d.given_name,
        d.family_name,
        d.birth_date,
        view.patient.nhs_number.as_ref().map(|n| format!(", NHS number {}", n.formatted())).unwrap_or_default(),
        view.basis.code()
    );
    if view.entries.is_empty() {
        out.push_str("no entries you may see\n");
    }
    for visible in &view.entries {
        let entry = &visible.entry;
        out.push_str(&format!(
            "{}  {:<13}  {:<12}  {}  [{}]\n",
            entry.effective_at.date(),
            entry.label.map_or("(no label)", |label| label.code()),
            entry.kind.code(),
            entry.title,
            visible.basis.code()
        ));
    }
    if view.some_hidden {
        out.push_str("some entries are hidden by the patient's consent\n");
    }
    out.trim_end().to_owned()
}

fn context(app: &App, who: &AsProfessional) -> anyhow::Result<(ProfessionalContext, PatientId)> {
    let context =
        app.professional_context(&org_code(&who.org)?, &team_alias(&who.team)?, &email(&who.as_email)?, Channel::Cli)?;
    Ok((context, patient_id(&who.patient)?))
}

pub fn run(cli: Cli, operator: &Operator) -> anyhow::Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Serve(args) => return crate::serve::run(&cli.config, args),
        Command::Demo(args) => return crate::demo::run(&cli.config, args),
        Command::Worker => return crate::delivery::run_worker(&cli.config),
        _ => {}
    }
    let app = open_app(&cli.config)?;
    match cli.command {
        Command::Serve(_) | Command::Demo(_) | Command::Worker => unreachable!("handled above"),
        Command::Outbox(command) => crate::delivery::outbox_command(&app, json, command)?,
        Command::Letters(LettersCommand::Export { org, out, public_url, force }) => {
            let public_url = public_url.trim_end_matches('/').to_owned();
            let existing =
                if force { crate::private_file::Existing::Replace } else { crate::private_file::Existing::Refuse };
            // Written (owner-only, synced) inside the transaction that marks the letters
            // printed: if the file cannot be written, none is marked.
            let count = app.export_letters(operator, &org_code(&org)?, &mut |letters| {
                crate::private_file::write(&out, &crate::letters::letters_pdf(letters, &public_url), existing)
                    .map_err(|error| format!("{}: {error}", out.display()))
            })?;
            print(json, json!({ "letters": count, "file": out.display().to_string() }), || {
                format!("wrote {count} letter{} to {}", if count == 1 { "" } else { "s" }, out.display())
            });
        }
        Command::Migrate => {
            // open_app has applied them; report where things stand.
            let report = app.store().migrate()?;
            print(json, json!({ "schema_version": report.current_version }), || {
                format!("database is at schema version {}", report.current_version)
            });
        }
        Command::Org(command) => match command {
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
                    said.push(format!(
                        "break-the-glass access now lasts {}s",
                        organisation.break_glass_duration.as_secs()
                    ));
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
        },
        Command::Team(command) => match command {
            TeamCommand::Create { org, name, alias, labels } => {
                let labels = LabelSet::parse_list(&labels)?;
                let team = app.create_team(
                    operator,
                    &org_code(&org)?,
                    &Name::parse("name", &name)?,
                    &team_alias(&alias)?,
                    labels,
                )?;
                print(json, team_json(&team), || {
                    format!(
                        "created team {} ({}) in set-up, default labels: {}\nid: {}",
                        team.name,
                        team.alias,
                        if labels.is_empty() { "none".to_owned() } else { labels.to_string() },
                        team.id
                    )
                });
            }
            TeamCommand::GoLive { org, team } => {
                let team = app.go_live(operator, &org_code(&org)?, &team_alias(&team)?)?;
                print(json, team_json(&team), || format!("team {} is live", team.alias));
            }
            TeamCommand::List { org } => {
                let teams = app.teams_with_members(&org_code(&org)?)?;
                let value = json!({ "teams": teams.iter().map(|(team, members)| {
                    let mut value = team_json(team);
                    value["members"] = members.iter().map(|(membership, account)| json!({
                        "email": account.email.as_str(), "name": account.name.as_str(),
                        "role": membership.role.code(), "status": membership.status.code(), "account_status": account.status.code(),
                    })).collect();
                    value
                }).collect::<Vec<_>>() });
                print(json, value, || {
                    let mut out = String::new();
                    for (team, members) in &teams {
                        out.push_str(&format!(
                            "{} ({}, {}, labels: {})\n",
                            team.name, team.alias, team.status, team.default_labels
                        ));
                        for (membership, account) in members {
                            out.push_str(&format!(
                                "  {} <{}> {} {}\n",
                                account.name, account.email, membership.role, membership.status
                            ));
                        }
                    }
                    out.trim_end().to_owned()
                });
            }
        },
        Command::Professional(command) => match command {
            ProfessionalCommand::Add { org, team, email: address, name, coordinator, password_stdin } => {
                let password_hash = if password_stdin {
                    Some(kith_app::password::hash_password(&read_password_from_stdin()?)?)
                } else {
                    None
                };
                let new = NewMember {
                    organisation: org_code(&org)?,
                    team: team_alias(&team)?,
                    email: email(&address)?,
                    name: Name::parse("name", &name)?,
                    role: if coordinator { MembershipRole::Coordinator } else { MembershipRole::Professional },
                    password_hash,
                };
                let added = app.add_member(operator, &new)?;
                let value = json!({
                    "id": added.account.id.to_string(),
                    "email": added.account.email.as_str(),
                    "account_created": added.account_created,
                    "account_status": added.account.status.code(),
                    "team": new.team.as_str(),
                    "role": added.membership.role.code(),
                });
                print(json, value, || {
                    format!(
                        "{} {} as {} of team {}{}",
                        if added.account_created { "created account" } else { "added existing account" },
                        added.account.email,
                        added.membership.role,
                        new.team,
                        if added.account.status == kith_core::team::AccountStatus::Invited {
                            " (invited: no password yet)"
                        } else {
                            ""
                        }
                    )
                });
            }
            ProfessionalCommand::Deactivate(target) => {
                membership_status(&app, operator, json, &target, MembershipStatus::Deactivated)?
            }
            ProfessionalCommand::Reactivate(target) => {
                membership_status(&app, operator, json, &target, MembershipStatus::Active)?
            }
            ProfessionalCommand::SetRole { target, role } => {
                let role = MembershipRole::from_code(role.trim())
                    .ok_or_else(|| anyhow!("--role must be professional or coordinator"))?;
                let change = app.set_membership_role(
                    operator,
                    &org_code(&target.org)?,
                    &team_alias(&target.team)?,
                    &email(&target.email)?,
                    role,
                    target.force,
                )?;
                print(
                    json,
                    json!({ "email": target.email, "team": target.team, "role": change.membership.role.code(), "overridden": change.overridden }),
                    || {
                        format!(
                            "{} is now {} of team {}{}",
                            target.email,
                            change.membership.role,
                            target.team,
                            overridden_note(&change.overridden)
                        )
                    },
                );
            }
            ProfessionalCommand::Import { org, team, file, dry_run, report } => {
                professional_import(&app, operator, json, &org, &team, &file, dry_run, report.as_deref())?
            }
            ProfessionalCommand::ResetTwoFactor { email: address } => {
                let account = app.reset_two_factor(operator, &email(&address)?)?;
                print(json, json!({ "email": account.email.as_str(), "two_factor": false }), || {
                    format!(
                        "two-step verification is off for {}: their sessions ended and they were emailed; they \
                         sign in with their password and set it up again",
                        account.email
                    )
                });
            }
        },
        Command::PrivacyOfficer(PrivacyOfficerCommand::Appoint { org, email: address }) => {
            let account = app.appoint_privacy_officer(operator, &org_code(&org)?, &email(&address)?)?;
            print(
                json,
                json!({ "id": account.id.to_string(), "email": account.email.as_str(), "organisation": org }),
                || format!("{} is a privacy officer of {}", account.email, org.to_uppercase()),
            );
        }
        Command::Patient(command) => patient_command(&app, operator, json, command)?,
        Command::Entry(EntryCommand::Add {
            org,
            team,
            patient,
            kind,
            label,
            unlabelled,
            title,
            body,
            effective,
            as_email,
        }) => {
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
        Command::Integration(command) => crate::hl7_commands::integration(&app, operator, json, command)?,
        Command::Token(TokenCommand::Create { email: address, name, expires_days }) => {
            let created =
                app.create_api_token(operator, &email(&address)?, &Name::parse("name", &name)?, expires_days)?;
            let token = &created.token;
            print(
                json,
                json!({ "id": token.id.to_string(), "name": token.name.as_str(), "expires_at": token.expires_at.map(|at| at.to_string()), "token": created.secret.expose() }),
                || {
                    format!(
                        "created token {} for {address}{}\ntoken (shown once; keep it secret): {}",
                        token.name,
                        token.expires_at.map_or(String::from(", no expiry"), |at| format!(", expires {at}")),
                        created.secret.expose()
                    )
                },
            );
        }
        Command::Token(TokenCommand::Revoke { email: address, name }) => {
            let token = app.revoke_api_token(operator, &email(&address)?, &Name::parse("name", &name)?)?;
            print(json, json!({ "id": token.id.to_string(), "name": token.name.as_str(), "revoked": true }), || {
                format!("revoked token {} of {address}", token.name)
            });
        }
        Command::Token(TokenCommand::List { email: address }) => {
            let tokens = app.api_tokens(&email(&address)?)?;
            let now = app.now();
            print(
                json,
                Value::Array(
                    tokens
                        .iter()
                        .map(|token| {
                            json!({
                                "id": token.id.to_string(),
                                "name": token.name.as_str(),
                                "created_at": token.created_at.to_string(),
                                "expires_at": token.expires_at.map(|at| at.to_string()),
                                "revoked_at": token.revoked_at.map(|at| at.to_string()),
                                "live": token.is_live(now),
                            })
                        })
                        .collect(),
                ),
                || {
                    tokens
                        .iter()
                        .map(|token| {
                            format!(
                                "{}\tcreated {}\t{}",
                                token.name,
                                token.created_at,
                                if token.is_live(now) {
                                    "live"
                                } else if token.revoked_at.is_some() {
                                    "revoked"
                                } else {
                                    "expired"
                                }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        Command::LabelRule(LabelRuleCommand::Add { org, field, value, label }) => {
            let label = PrivacyLabel::parse(&label)?;
            app.add_label_rule(operator, &org_code(&org)?, &field, &value, label)?;
            print(
                json,
                json!({ "organisation": org, "field": field.trim().to_uppercase(), "value": value.trim(), "label": label.code() }),
                || format!("HL7 data with {} = {} is now labelled {label}", field.trim().to_uppercase(), value.trim()),
            );
        }
        Command::LabelRule(LabelRuleCommand::List { org }) => {
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
        Command::Hl7(command) => crate::hl7_commands::hl7(&app, operator, json, command)?,
        Command::Record(RecordCommand::Read(who)) => {
            let (context, patient) = context(&app, &who)?;
            let view = app.read_record(&context, patient)?;
            print(json, record_json(&view), || record_text(&view));
        }
        Command::BreakGlass(command) => match command {
            BreakGlassCommand::Open { who, reason } => {
                let (context, patient) = context(&app, &who)?;
                let grant = app.open_break_glass(&context, patient, &Reason::parse(&reason)?)?;
                print(json, json!({ "id": grant.id.to_string(), "expires_at": grant.expires_at.to_string() }), || {
                    format!(
                        "emergency access granted until {} (audited; the patient and the privacy officer are told)\nid: {}",
                        grant.expires_at, grant.id
                    )
                });
            }
            BreakGlassCommand::End(who) => {
                let (context, patient) = context(&app, &who)?;
                let ended = app.end_break_glass(&context, patient)?;
                print(json, json!({ "ended": ended }), || "emergency access ended".to_owned());
            }
        },
        Command::Audit(AuditCommand::Verify) => match app.verify_audit()? {
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
        Command::Audit(AuditCommand::List { patient, limit }) => {
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

fn overridden_note(overridden: &Option<String>) -> String {
    overridden.as_ref().map(|rule| format!(" (forced, audited: {rule})")).unwrap_or_default()
}

/// `kith professional import`: previews (`--dry-run`) or applies a professionals CSV file,
/// prints the summary and the rows in error, and optionally writes every row's outcome.
/// A file that cannot be used at all is an error (exit status 1); rows in error are not.
#[allow(clippy::too_many_arguments)]
fn professional_import(
    app: &App,
    operator: &Operator,
    json: bool,
    org: &str,
    team: &str,
    file: &std::path::Path,
    dry_run: bool,
    report_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use kith_app::professionals_csv::Importer;

    let (code, alias) = (org_code(org)?, team_alias(team)?);
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let importer = Importer::Operator(operator);
    let report = if dry_run {
        app.preview_professionals_csv(&importer, &code, &alias, &bytes)?
    } else {
        app.import_professionals_csv(&importer, &code, &alias, &bytes)?
    };
    if let Some(path) = report_file {
        crate::private_file::write(path, report.to_csv().as_bytes(), crate::private_file::Existing::Replace)
            .with_context(|| format!("writing the report {}", path.display()))?;
    }
    let summary = report.is_usable().then(|| report.summary());
    let value = json!({
        "applied": report.applied,
        "summary": summary,
        "counts": {
            "created": report.counts.created,
            "added_to_team": report.counts.added_to_team,
            "already_in_team": report.counts.already_in_team,
            "errors": report.counts.errors,
        },
        "file_problems": report.file_problems.iter().map(|problem| json!({
            "line": problem.line, "message": problem.message,
        })).collect::<Vec<_>>(),
        "rows": report.rows.iter().map(|row| json!({
            "line": row.line,
            "email": row.email,
            "role": row.role.map(MembershipRole::code),
            "outcome": row.outcome.code(),
            "detail": row.outcome.detail(),
        })).collect::<Vec<_>>(),
    });
    if !report.is_usable() {
        if json {
            println!("{value}");
        }
        let problems: Vec<String> = report.file_problems.iter().map(|problem| format!("  {problem}")).collect();
        bail!("{}: nothing was imported, the file cannot be used:\n{}", file.display(), problems.join("\n"));
    }
    print(json, value, || {
        let mut out = String::new();
        if dry_run {
            out.push_str("dry run, nothing was written: ");
        }
        out.push_str(&report.summary());
        let errors: Vec<String> = report
            .error_rows()
            .map(|row| format!("  line {}: {}: {}", row.line, row.email, row.outcome.detail().unwrap_or_default()))
            .collect();
        if !errors.is_empty() {
            out.push_str(&format!("\nrows not {}:\n{}", if dry_run { "valid" } else { "applied" }, errors.join("\n")));
        }
        let deactivated: Vec<String> = report
            .rows
            .iter()
            .filter(|row| row.outcome.code() == "already_in_team_deactivated")
            .map(|row| format!("  line {}: {}", row.line, row.email))
            .collect();
        if !deactivated.is_empty() {
            out.push_str(&format!(
                "\nalready in the team but deactivated (unchanged; `kith professional reactivate` restores them):\n{}",
                deactivated.join("\n")
            ));
        }
        if let Some(path) = report_file {
            out.push_str(&format!("\nevery row's outcome: {}", path.display()));
        }
        out
    });
    Ok(())
}

fn membership_status(
    app: &App,
    operator: &Operator,
    json: bool,
    target: &MembershipTarget,
    status: MembershipStatus,
) -> anyhow::Result<()> {
    let change = app.set_membership_status(
        operator,
        &org_code(&target.org)?,
        &team_alias(&target.team)?,
        &email(&target.email)?,
        status,
        target.force,
    );
    let change = match change {
        Err(kith_app::AppError::TeamRule(rule)) => bail!("{rule} (or override with --force, which is audited)"),
        other => other?,
    };
    print(
        json,
        json!({ "email": target.email, "team": target.team, "status": change.membership.status.code(), "overridden": change.overridden }),
        || {
            format!(
                "{}'s membership of team {} is {}{}",
                target.email,
                target.team,
                change.membership.status,
                overridden_note(&change.overridden)
            )
        },
    );
    Ok(())
}

fn patient_command(app: &App, operator: &Operator, json: bool, command: PatientCommand) -> anyhow::Result<()> {
    match command {
        PatientCommand::Add {
            org,
            family,
            given,
            birth_date,
            sex,
            nhs_number,
            local_ids,
            email: address,
            mobile,
            address: postal,
            teams,
        } => {
            let new = NewPatient {
                organisation: org_code(&org)?,
                demographics: Demographics {
                    family_name: Name::parse("family name", &family)?,
                    given_name: Name::parse("given name", &given)?,
                    birth_date: Date::parse(&birth_date).map_err(|error| anyhow!("--birth-date: {error}"))?,
                    sex: Sex::from_code(sex.trim())
                        .ok_or_else(|| anyhow!("--sex must be female, male, other or unknown"))?,
                    email: address.as_deref().map(email).transpose()?,
                    mobile: mobile.as_deref().map(MobileNumber::parse).transpose()?,
                    address: postal_address(&postal)?,
                },
                nhs_number: nhs_number
                    .as_deref()
                    .map(NhsNumber::parse)
                    .transpose()
                    .map_err(|error| anyhow!("--nhs-number: {error}"))?,
                local_identifiers: local_ids.iter().map(|id| LocalIdentifier::parse(id)).collect::<Result<_, _>>()?,
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
        PatientCommand::Update {
            org,
            patient,
            family,
            given,
            birth_date,
            sex,
            nhs_number,
            local_ids,
            email: address,
            mobile,
            address: postal,
        } => {
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
                email: address.as_deref().map(email).transpose()?,
                mobile: mobile.as_deref().map(MobileNumber::parse).transpose()?,
                address: postal_address(&postal)?,
                nhs_number: nhs_number
                    .as_deref()
                    .map(NhsNumber::parse)
                    .transpose()
                    .map_err(|error| anyhow!("--nhs-number: {error}"))?,
                add_local_identifiers: local_ids
                    .iter()
                    .map(|id| LocalIdentifier::parse(id))
                    .collect::<Result<_, _>>()?,
            };
            let record = app.update_patient(operator, &org_code(&org)?, patient_id(&patient)?, &changes)?;
            print(json, patient_json(&record), || {
                format!("updated the record of {} {}", record.demographics.given_name, record.demographics.family_name)
            });
        }
        PatientCommand::Link { org, team, patient } => {
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
        PatientCommand::Discharge { org, team, patient } => {
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
        PatientCommand::Consent { org, team, as_email, patient, labels, reason } => {
            let context =
                app.professional_context(&org_code(&org)?, &team_alias(&team)?, &email(&as_email)?, Channel::Cli)?;
            let reason = Reason::parse(&reason)?;
            let labels = LabelSet::parse_list(&labels)?;
            let link = app.change_consent(
                &ConsentActor::Professional { context: &context, reason: Some(&reason) },
                patient_id(&patient)?,
                context.team,
                labels,
            )?;
            print(json, json!({ "patient": patient, "team": team, "labels": link.labels.to_string() }), || {
                format!(
                    "team {team} may now see: {}",
                    if link.labels.is_empty() {
                        "nothing but its own data".to_owned()
                    } else {
                        link.labels.to_string()
                    }
                )
            });
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
