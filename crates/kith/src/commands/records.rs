//! Reading a record as a professional, and breaking the glass.

use clap::{Args, Subcommand};
use kith_app::{App, ProfessionalContext, RecordView};
use kith_core::PatientId;
use kith_core::audit::Channel;
use kith_core::text::Reason;
use serde_json::{Value, json};

use super::input::{email, org_code, patient_id, team_alias};
use super::output::{patient_json, print};

#[derive(Args, Debug)]
pub struct AsProfessional {
    #[arg(long)]
    org: String,
    /// The team the professional acts through.
    #[arg(long)]
    pub(super) team: String,
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

/// The professional's context and the patient a command names (parsed once).
pub(super) fn context(app: &App, who: &AsProfessional) -> anyhow::Result<(ProfessionalContext, PatientId)> {
    let context =
        app.professional_context(&org_code(&who.org)?, &team_alias(&who.team)?, &email(&who.as_email)?, Channel::Cli)?;
    Ok((context, patient_id(&who.patient)?))
}

/// `kith record read`: a professional reads a record, audited.
pub(super) fn record(app: &App, json: bool, command: RecordCommand) -> anyhow::Result<()> {
    match command {
        RecordCommand::Read(who) => {
            let (context, patient) = context(app, &who)?;
            let view = app.read_record(&context, patient)?;
            print(json, record_json(&view), || record_text(&view));
        }
    }
    Ok(())
}

/// `kith break-glass …`.
pub(super) fn break_glass(app: &App, json: bool, command: BreakGlassCommand) -> anyhow::Result<()> {
    match command {
        BreakGlassCommand::Open { who, reason } => {
            let (context, patient) = context(app, &who)?;
            let grant = app.open_break_glass(&context, patient, &Reason::parse(&reason)?)?;
            print(json, json!({ "id": grant.id.to_string(), "expires_at": grant.expires_at.to_string() }), || {
                format!(
                    "emergency access granted until {} (audited; the patient and the privacy officer are told)\nid: {}",
                    grant.expires_at, grant.id
                )
            });
        }
        BreakGlassCommand::End(who) => {
            let (context, patient) = context(app, &who)?;
            let ended = app.end_break_glass(&context, patient)?;
            print(json, json!({ "ended": ended }), || "emergency access ended".to_owned());
        }
    }
    Ok(())
}
