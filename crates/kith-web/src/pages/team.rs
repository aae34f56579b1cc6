//! Coordinators' pages for the team they act for: adding professionals in bulk from a CSV
//! file — a preview row by row, then the report of what was applied.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kith_app::AppError;
use kith_app::coordinators::IdentityCheck;
use kith_app::professionals_csv::{CsvReport, Importer, TEMPLATE_HEADER};
use kith_core::team::{AccountStatus, MembershipRole, MembershipStatus, TeamKind};
use serde::Deserialize;

use super::csrf::{CsrfForm, CsrfMultipart};
use super::error::{PageError, PageResult, blocking};
use super::guard::SignedIn;
use super::{NoFields, PageRoute, Shell, render};
use crate::WebState;

/// The largest upload: 50,000 rows of a few hundred bytes, with room to spare.
const MAX_UPLOAD: usize = 32 * 1024 * 1024;

pub(crate) fn routes() -> Vec<PageRoute> {
    [
        PageRoute::get("/team/professionals", upload_page),
        PageRoute::upload("/team/professionals/preview", preview),
        PageRoute::post("/team/professionals/apply", apply),
        PageRoute::get("/static/professionals-template.csv", template),
        PageRoute::get("/team/members", members_page),
        PageRoute::post("/team/members/invite", invite),
        PageRoute::post("/team/members/{member}/status", member_status),
        PageRoute::post("/team/members/{member}/reset", member_reset),
        PageRoute::post("/team/members/{member}/two-factor", member_two_factor),
        PageRoute::post("/team/invitations/{invitation}/withdraw", withdraw_invitation),
        PageRoute::post("/team/patient-reset", patient_reset),
        PageRoute::post("/team/welcome", set_welcome),
        PageRoute::post("/team/patient-remind", patient_remind),
    ]
    .into_iter()
    .map(|route| route.body_limit(MAX_UPLOAD))
    .collect()
}

async fn template() -> Response {
    let body = format!(
        "{TEMPLATE_HEADER}\r\nada.okafor@example.org,Ada,Okafor,Consultant cardiologist,GMC 1234567,coordinator\r\n\
         sam.li@example.org,Sam,Li,Staff nurse,NMC 12A3456B,professional\r\n"
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"professionals-template.csv\""),
        ],
        body,
    )
        .into_response()
}

pub struct ReportRow {
    line: usize,
    email: String,
    outcome: &'static str,
    detail: String,
    error: bool,
}

pub struct ReportView {
    applied: bool,
    problems: Vec<String>,
    summary: String,
    errors: usize,
    rows: Vec<ReportRow>,
    /// The file, carried to the apply step (a preview writes nothing and keeps nothing).
    file: String,
}

#[derive(Template)]
#[template(path = "upload.html")]
struct UploadPage {
    shell: Shell,
    team: String,
    report: Option<ReportView>,
}

/// The team the coordinator acts for, with its organisation's code, or a refusal.
async fn coordinated_team(
    state: &WebState,
    signed_in: &SignedIn,
) -> Result<(kith_core::model::Team, kith_core::text::OrganisationCode), PageError> {
    let Some(current) = signed_in.session.current_team().filter(|team| team.role == MembershipRole::Coordinator) else {
        return Err(PageError::refused(
            StatusCode::FORBIDDEN,
            "Only a coordinator of the team you are acting for can add professionals. Switch team at the top of the page.\n",
        ));
    };
    let team = current.team.clone();
    let organisation = team.organisation;
    let organisation = blocking(&state.app, move |app| app.organisation_by_id(organisation))
        .await??
        .ok_or_else(|| PageError::internal("the team's organisation is missing"))?;
    Ok((team, organisation.code))
}

async fn upload_page(State(state): State<WebState>, signed_in: SignedIn) -> PageResult {
    let (team, _) = coordinated_team(&state, &signed_in).await?;
    Ok(render(&UploadPage { shell: Shell::signed_in(&signed_in, None), team: team.name.to_string(), report: None }))
}

fn view(report: &CsvReport, file: String) -> ReportView {
    ReportView {
        applied: report.applied,
        problems: report.file_problems.iter().map(ToString::to_string).collect(),
        summary: capitalised(&report.summary()),
        errors: report.counts.errors,
        rows: report
            .rows
            .iter()
            .map(|row| ReportRow {
                line: row.line,
                email: row.email.clone(),
                outcome: row.outcome.label(report.applied),
                detail: row.outcome.detail().unwrap_or_default(),
                error: row.outcome.is_error(),
            })
            .collect(),
        file,
    }
}

fn capitalised(text: &str) -> String {
    let mut characters = text.chars();
    characters.next().map(|first| first.to_uppercase().chain(characters).collect()).unwrap_or_default()
}

/// Runs the preview or the import for the coordinator's team and renders the report.
async fn run(state: &WebState, signed_in: &SignedIn, bytes: Vec<u8>, apply: bool) -> PageResult {
    let (team, organisation) = coordinated_team(state, signed_in).await?;
    let account = signed_in.session.account.id;
    let alias = team.alias.clone();
    let upload = bytes.clone();
    let outcome = blocking(&state.app, move |app| {
        let importer = Importer::Coordinator(account);
        if apply {
            app.import_professionals_csv(&importer, &organisation, &alias, &upload)
        } else {
            app.preview_professionals_csv(&importer, &organisation, &alias, &upload)
        }
    })
    .await?;
    let report = match outcome {
        Ok(report) => report,
        Err(AppError::Forbidden(message)) => return Err(PageError::refused(StatusCode::FORBIDDEN, message)),
        Err(AppError::TeamRule(rule)) => return Err(PageError::refused(StatusCode::CONFLICT, rule.to_string())),
        Err(error) => return Err(PageError::from(error)),
    };
    // The apply step gets the file back as text (a byte-order mark is dropped: the reader
    // takes the file either way).
    let text = String::from_utf8(bytes).map(|text| text.trim_start_matches('\u{feff}').to_owned()).unwrap_or_default();
    Ok(render(&UploadPage {
        shell: Shell::signed_in(signed_in, None),
        team: team.name.to_string(),
        report: Some(view(&report, text)),
    }))
}

async fn preview(State(state): State<WebState>, signed_in: SignedIn, upload: CsrfMultipart) -> PageResult {
    let Some(file) = upload.field("file") else {
        return Err(PageError::refused(StatusCode::BAD_REQUEST, "Choose a CSV file to upload.\n"));
    };
    run(&state, &signed_in, file.to_vec(), false).await
}

#[derive(Deserialize)]
struct ApplyForm {
    #[serde(default)]
    file: String,
}

async fn apply(State(state): State<WebState>, signed_in: SignedIn, CsrfForm(form): CsrfForm<ApplyForm>) -> PageResult {
    run(&state, &signed_in, form.file.into_bytes(), true).await
}

// ----- the members page ---------------------------------------------------------------------

pub struct MemberRow {
    id: String,
    name: String,
    job: String,
    email: String,
    role: String,
    status: String,
    last_email: String,
    active: bool,
    can_reset: bool,
    two_factor: bool,
    /// Why the coordinator may not reset this account (then no reset buttons are shown).
    account_note: Option<&'static str>,
}

/// An invitation waiting for an answer: the row looks the same whoever holds the address.
pub struct InvitationRow {
    id: String,
    name: String,
    job: String,
    email: String,
    role: String,
    last_email: String,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    shell: Shell,
    team: String,
    members: Vec<MemberRow>,
    invitations: Vec<InvitationRow>,
    patient_record_team: bool,
    message: Option<String>,
    error: Option<String>,
    /// The team's welcome message for its professionals, shown on their home page.
    welcome: String,
}

/// What each outbox template is, in words for coordinators.
fn template_words(template: &str) -> &str {
    match template {
        // Every email an invitation goes by reads the same, whoever holds the address.
        "professional_activation" | "membership_invitation" | "professional_address_unusable" => "invitation",
        "professional_added" => "added to the team",
        "two_factor_reset" => "two-step verification turned off",
        "password_reset" => "password reset link",
        "patient_invitation" => "invitation",
        _ => "notification",
    }
}

async fn members_view(
    state: &WebState,
    signed_in: &SignedIn,
    message: Option<String>,
    error: Option<String>,
) -> PageResult {
    let (team, _) = coordinated_team(state, signed_in).await?;
    let (account, team_id) = (signed_in.session.account.id, team.id);
    let listed = blocking(&state.app, move |app| {
        Ok::<_, AppError>((app.team_members_as(account, team_id)?, app.team_invitations_as(account, team_id)?))
    })
    .await?;
    let welcome = blocking(&state.app, move |app| app.professional_welcome(team_id)).await??.unwrap_or_default();
    let (members, invitations) = match listed {
        Ok(listed) => listed,
        Err(AppError::Forbidden(message)) => return Err(PageError::refused(StatusCode::FORBIDDEN, message)),
        Err(error) => return Err(PageError::from(error)),
    };
    let invitations = invitations
        .into_iter()
        .map(|open| {
            let invitation = open.invitation;
            InvitationRow {
                id: invitation.id.to_string(),
                name: invitation.name.to_string(),
                job: job_words(invitation.job_title.as_ref(), invitation.registration_number.as_ref()),
                email: invitation.email.to_string(),
                role: invitation.role.to_string(),
                last_email: open
                    .message
                    .map(|message| format!("{}: {}", template_words(&message.template), message.status))
                    .unwrap_or_else(|| "none".to_owned()),
            }
        })
        .collect();
    let members = members
        .into_iter()
        .map(|member| MemberRow {
            id: member.account.id.to_string(),
            name: member.account.name.to_string(),
            job: job_words(member.job_title.as_ref(), member.registration_number.as_ref()),
            email: member.account.email.to_string(),
            role: member.role.to_string(),
            status: match (member.status, member.account.status) {
                (MembershipStatus::Deactivated, _) => "deactivated".to_owned(),
                (_, AccountStatus::Invited) => "invited (no password yet)".to_owned(),
                (_, status) => status.code().to_owned(),
            },
            last_email: member
                .last_message
                .map(|last| format!("{}: {}", template_words(&last.template), last.status))
                .unwrap_or_else(|| "none".to_owned()),
            active: member.status == MembershipStatus::Active,
            can_reset: member.account.status == AccountStatus::Active,
            two_factor: member.two_factor,
            account_note: match member.account_actions {
                Ok(()) => None,
                Err(refusal) if refusal.ask_holder_or_operator() => Some(
                    "Not only your organisation's account: for a password or two-step reset, ask them or the Kith \
                     operator.",
                ),
                Err(_) => Some("Reactivate the membership before resetting their password or two-step verification."),
            },
        })
        .collect();
    Ok(render(&MembersPage {
        shell: Shell::signed_in(signed_in, None),
        team: team.name.to_string(),
        patient_record_team: team.kind == TeamKind::PatientRecord,
        members,
        invitations,
        message,
        error,
        welcome,
    }))
}

#[derive(Deserialize)]
struct WelcomeForm {
    #[serde(default)]
    welcome: String,
}

/// A coordinator sets the team's welcome message for its professionals.
async fn set_welcome(
    State(state): State<WebState>,
    signed_in: SignedIn,
    CsrfForm(form): CsrfForm<WelcomeForm>,
) -> PageResult {
    let (team, _) = coordinated_team(&state, &signed_in).await?;
    let (account, team_id) = (signed_in.session.account.id, team.id);
    match blocking(&state.app, move |app| app.set_professional_welcome_as(account, team_id, &form.welcome)).await? {
        Ok(()) => members_view(&state, &signed_in, Some("The welcome message is saved.".to_owned()), None).await,
        Err(AppError::Invalid(words)) => members_view(&state, &signed_in, None, Some(words)).await,
        Err(AppError::Forbidden(words)) => Err(PageError::refused(StatusCode::FORBIDDEN, words)),
        Err(other) => Err(other.into()),
    }
}

/// A job title and registration number, as one cell.
fn job_words(title: Option<&String>, number: Option<&String>) -> String {
    match (title, number) {
        (Some(title), Some(number)) => format!("{title} ({number})"),
        (Some(text), None) | (None, Some(text)) => text.clone(),
        (None, None) => String::new(),
    }
}

async fn members_page(State(state): State<WebState>, signed_in: SignedIn) -> PageResult {
    members_view(&state, &signed_in, None, None).await
}

#[derive(Deserialize)]
struct StatusForm {
    #[serde(default)]
    status: String,
}

/// The answer to an action on a member who is not one (or not the caller's to act on).
fn no_such_member() -> PageError {
    PageError::refused(StatusCode::NOT_FOUND, "No such member.\n")
}

fn member_id(text: &str) -> Option<kith_core::AccountId> {
    text.parse::<uuid::Uuid>().ok().map(kith_core::AccountId::from_uuid)
}

async fn member_status(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Path(member): Path<String>,
    CsrfForm(form): CsrfForm<StatusForm>,
) -> PageResult {
    let (Some(member), Some(team)) = (member_id(&member), signed_in.session.team) else {
        return Err(no_such_member());
    };
    let status = if form.status == "active" { MembershipStatus::Active } else { MembershipStatus::Deactivated };
    let account = signed_in.session.account.id;
    match blocking(&state.app, move |app| app.set_member_status_as(account, team, member, status)).await? {
        Ok(change) => {
            let words =
                if change.membership.status == MembershipStatus::Active { "reactivated" } else { "deactivated" };
            members_view(&state, &signed_in, Some(format!("The membership was {words}.")), None).await
        }
        Err(AppError::TeamRule(rule)) => members_view(&state, &signed_in, None, Some(rule.to_string())).await,
        Err(AppError::Conflict(message)) => members_view(&state, &signed_in, None, Some(message)).await,
        Err(AppError::Forbidden(message)) => Err(PageError::refused(StatusCode::FORBIDDEN, message)),
        Err(AppError::Denied) => Err(no_such_member()),
        Err(error) => Err(PageError::from(error)),
    }
}

/// One action on one member of the coordinator's team (its form's token already checked):
/// the use case runs, and the members page says how it went.
async fn member_action(
    state: &WebState,
    signed_in: &SignedIn,
    member: &str,
    action: fn(
        &kith_app::App,
        kith_core::AccountId,
        kith_core::TeamId,
        kith_core::AccountId,
    ) -> kith_app::AppResult<()>,
    done: &'static str,
) -> PageResult {
    let (Some(member), Some(team)) = (member_id(member), signed_in.session.team) else {
        return Err(no_such_member());
    };
    let account = signed_in.session.account.id;
    match blocking(&state.app, move |app| action(app, account, team, member)).await? {
        Ok(()) => members_view(state, signed_in, Some(done.to_owned()), None).await,
        Err(AppError::Conflict(message)) => members_view(state, signed_in, None, Some(message)).await,
        Err(AppError::Forbidden(message)) => Err(PageError::refused(StatusCode::FORBIDDEN, message)),
        Err(AppError::Denied) => Err(no_such_member()),
        Err(error) => Err(PageError::from(error)),
    }
}

async fn member_reset(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Path(member): Path<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> PageResult {
    let done = "A password reset link is on its way to them; it works once, within an hour.";
    member_action(&state, &signed_in, &member, kith_app::App::reset_member_password_as, done).await
}

#[derive(Deserialize)]
struct InviteForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    given: String,
    #[serde(default)]
    family: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    role: String,
}

/// A CSV field, quoted.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.trim().replace('"', "\"\""))
}

/// Inviting one professional is a one-row upload: the same checks, outcomes, emails and
/// audit events as the CSV import.
async fn invite(
    State(state): State<WebState>,
    signed_in: SignedIn,
    CsrfForm(form): CsrfForm<InviteForm>,
) -> PageResult {
    let (team, organisation) = coordinated_team(&state, &signed_in).await?;
    let role = if form.role == "coordinator" { "coordinator" } else { "professional" };
    let file = format!(
        "{TEMPLATE_HEADER}\r\n{},{},{},{},,{role}\r\n",
        quoted(&form.email),
        quoted(&form.given),
        quoted(&form.family),
        quoted(&form.title)
    );
    let account = signed_in.session.account.id;
    let alias = team.alias.clone();
    let outcome = blocking(&state.app, move |app| {
        app.import_professionals_csv(&Importer::Coordinator(account), &organisation, &alias, file.as_bytes())
    })
    .await?;
    let report = match outcome {
        Ok(report) => report,
        Err(AppError::Forbidden(message)) => return Err(PageError::refused(StatusCode::FORBIDDEN, message)),
        Err(AppError::TeamRule(rule)) => {
            return members_view(&state, &signed_in, None, Some(rule.to_string())).await;
        }
        Err(error) => return Err(PageError::from(error)),
    };
    let Some(row) = report.rows.first() else {
        let problems: Vec<String> = report.file_problems.iter().map(ToString::to_string).collect();
        return members_view(&state, &signed_in, None, Some(problems.join("; "))).await;
    };
    match row.outcome.detail().filter(|_| row.outcome.is_error()) {
        Some(reasons) => members_view(&state, &signed_in, None, Some(reasons)).await,
        None => {
            let message = format!("{}: {}.", row.email, row.outcome.label(true));
            members_view(&state, &signed_in, Some(message), None).await
        }
    }
}

#[derive(Deserialize)]
struct PatientResetForm {
    #[serde(default)]
    nhs_number: String,
    #[serde(default)]
    family: String,
    #[serde(default)]
    birth_date: String,
}

/// The patient reset and remind forms answer no sooner than this after the use case
/// starts: a match does more work (a code, a message) than a mismatch, and the answer must
/// not show which it was (no existence oracle) — not by its words, nor by its time.
const IDENTITY_CHECK_FLOOR: std::time::Duration = std::time::Duration::from_millis(25);

/// A patient action of a Patient Record Team's coordinator, after an identity check (NHS
/// number, family name, date of birth): the use case runs and the members page says how it
/// went, in the same words whether or not a patient matched.
async fn patient_action(
    state: &WebState,
    signed_in: &SignedIn,
    form: PatientResetForm,
    action: fn(
        &kith_app::App,
        kith_core::AccountId,
        kith_core::TeamId,
        &IdentityCheck<'_>,
    ) -> kith_app::AppResult<String>,
) -> PageResult {
    let Some(team) = signed_in.session.team else {
        return Err(PageError::refused(StatusCode::FORBIDDEN, "Choose a team.\n"));
    };
    let nhs_number = kith_core::patient::NhsNumber::parse(&form.nhs_number);
    let birth_date = kith_core::Date::parse(form.birth_date.trim());
    let (Ok(nhs_number), Ok(birth_date)) = (nhs_number, birth_date) else {
        let error = "Enter a 10-digit NHS number and the date of birth.".to_owned();
        return members_view(state, signed_in, None, Some(error)).await;
    };
    let account = signed_in.session.account.id;
    let family = form.family;
    let started = tokio::time::Instant::now();
    let outcome = blocking(&state.app, move |app| {
        action(app, account, team, &IdentityCheck { nhs_number: &nhs_number, family_name: &family, birth_date })
    })
    .await;
    // Every answer waits for the floor, a failure too.
    tokio::time::sleep_until(started + IDENTITY_CHECK_FLOOR).await;
    match outcome? {
        Ok(message) => members_view(state, signed_in, Some(message), None).await,
        Err(AppError::Invalid(message) | AppError::Conflict(message) | AppError::TooManyAttempts(message)) => {
            members_view(state, signed_in, None, Some(message)).await
        }
        Err(AppError::Forbidden(message)) => Err(PageError::refused(StatusCode::FORBIDDEN, message)),
        Err(error) => Err(PageError::from(error)),
    }
}

async fn patient_reset(
    State(state): State<WebState>,
    signed_in: SignedIn,
    CsrfForm(form): CsrfForm<PatientResetForm>,
) -> PageResult {
    patient_action(&state, &signed_in, form, |app, account, team, identity| {
        // One answer whether or not a patient matched (no existence oracle).
        app.reset_patient_password_as(account, team, identity)
            .map(|()| kith_app::coordinators::PATIENT_RESET_ANSWER.to_owned())
    })
    .await
}

async fn patient_remind(
    State(state): State<WebState>,
    signed_in: SignedIn,
    CsrfForm(form): CsrfForm<PatientResetForm>,
) -> PageResult {
    patient_action(&state, &signed_in, form, |app, account, team, identity| {
        app.remind_patient_as(account, team, identity)
            .map(|()| kith_app::coordinators::PATIENT_REMIND_ANSWER.to_owned())
    })
    .await
}

async fn member_two_factor(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Path(member): Path<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> PageResult {
    let done = "Their two-step verification is off and they are signed out: they sign in with their password and \
                set it up again.";
    member_action(&state, &signed_in, &member, kith_app::App::reset_member_two_factor_as, done).await
}

async fn withdraw_invitation(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Path(invitation): Path<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> PageResult {
    let no_such_invitation = || PageError::refused(StatusCode::NOT_FOUND, "No such invitation.\n");
    let (Ok(invitation), Some(team)) =
        (invitation.parse::<kith_core::MembershipInvitationId>(), signed_in.session.team)
    else {
        return Err(no_such_invitation());
    };
    let account = signed_in.session.account.id;
    match blocking(&state.app, move |app| app.withdraw_membership_invitation_as(account, team, invitation)).await? {
        Ok(()) => members_view(&state, &signed_in, Some("The invitation was withdrawn.".to_owned()), None).await,
        Err(AppError::Forbidden(message)) => Err(PageError::refused(StatusCode::FORBIDDEN, message)),
        Err(AppError::Denied) => Err(no_such_invitation()),
        Err(error) => Err(PageError::from(error)),
    }
}
