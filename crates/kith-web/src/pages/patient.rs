//! A patient's own pages: their whole record (and adding their own notes and
//! measurements), who sees what (sharing), and who has looked (the access log, also as
//! CSV). Every page reads through the use cases, which decide on the patient's own access
//! (`decide_self_access`) and audit the read.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use kith_app::{AccessLogEntry, AppError};
use kith_core::audit::Channel;
use kith_core::consent::LinkBasis;
use kith_core::notify::{NotificationSettings, NotifyBy};
use kith_core::team::TeamKind;
use kith_core::{PatientId, PrivacyLabel, TeamId};
use serde::Deserialize;

use super::csrf::{CsrfForm, CsrfMultipart};
use super::error::{PageError, PageResult, blocking};
use super::guard::SignedIn;
use super::workspace::{Choice, EntryForm, Paged, RecordQuery, entry_views, kind_choices, label_choices, paged};
use super::{PageRoute, Shell, render, see_other, time_words};
use crate::WebState;

pub(crate) fn routes() -> Vec<PageRoute> {
    vec![
        PageRoute::get("/my/record", record_page),
        PageRoute::post("/my/entries", add_entry),
        PageRoute::post("/my/entries/{entry}/label", relabel),
        PageRoute::upload("/my/documents", upload_own_document).body_limit(super::workspace::UPLOAD_LIMIT),
        PageRoute::get("/my/sharing", sharing_page),
        PageRoute::post("/my/sharing/{team}", change_sharing),
        PageRoute::get("/my/notifications", notifications_page),
        PageRoute::post("/my/notifications", change_notifications),
        PageRoute::get("/my/access-log", access_log_page),
        PageRoute::get("/my/access-log.csv", access_log_csv),
    ]
}

/// What a patient's page says after an action (`?done=`).
fn notice(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "entry" => Some("Your entry has been added to your record."),
        "document" => Some("Your document has been added to your record."),
        "label" => Some("The entry's label is changed. Teams see it, or not, by its new label at once."),
        "changed" => Some("Your choice is saved. It applies at once, and the team's coordinators have been told."),
        "saved" => Some("Your choices are saved."),
        _ => None,
    }
}

/// The patient's own record id, or a refusal for an account that has none.
fn own_record(signed_in: &SignedIn) -> Result<PatientId, PageError> {
    signed_in.session.patient.ok_or_else(|| {
        PageError::refused(StatusCode::FORBIDDEN, "These pages are for patients, about their own record.\n")
    })
}

// ----- the record -----------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "my_record.html")]
struct MyRecordPage {
    shell: Shell,
    paged: Paged,
    kinds: Vec<Choice>,
    labels: Vec<Choice>,
    teams: Vec<Choice>,
    filter_query: String,
    entry_error: Option<String>,
    upload_error: Option<String>,
    label_choices: Vec<Choice>,
    entry_action: String,
    entry_button: &'static str,
    upload_action: String,
    /// The patient may give each entry another label.
    can_relabel: bool,
}

async fn record_page(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Query(query): Query<RecordQuery>,
) -> PageResult {
    render_record(&state, &signed_in, &query, None, None).await
}

async fn render_record(
    state: &WebState,
    signed_in: &SignedIn,
    query: &RecordQuery,
    entry_error: Option<String>,
    upload_error: Option<String>,
) -> PageResult {
    own_record(signed_in)?;
    let account = signed_in.session.account.id;
    let view = blocking(&state.app, move |app| app.read_own_record(account, Channel::Web)).await??;
    let ids: Vec<TeamId> = view.entries.iter().map(|visible| visible.entry.authored_by).collect();
    let names = blocking(&state.app, move |app| app.team_names(&ids)).await??;
    let filter = query.filter();
    let mut teams: Vec<Choice> = names
        .iter()
        .map(|(id, name)| Choice {
            value: id.to_string(),
            words: format!("{} ({})", name.team, name.organisation),
            selected: filter.team == Some(*id),
        })
        .collect();
    teams.sort_by(|a, b| a.words.cmp(&b.words));
    let all = entry_views(&view, &names, &filter);
    let filter_query = format!(
        "kind={}&label={}&team={}",
        filter.kind.map(|kind| kind.code()).unwrap_or_default(),
        filter.label.map(|label| label.code()).unwrap_or_default(),
        filter.team.map(|team| team.to_string()).unwrap_or_default()
    );
    Ok(render(&MyRecordPage {
        shell: Shell::signed_in(signed_in, notice(query.done.as_deref())),
        paged: paged(all, query.page),
        kinds: kind_choices(filter.kind),
        labels: label_choices(filter.label),
        teams,
        filter_query,
        entry_error,
        upload_error,
        label_choices: label_choices(Some(PrivacyLabel::General)),
        entry_action: "/my/entries".to_owned(),
        entry_button: "Add to my record",
        upload_action: "/my/documents".to_owned(),
        can_relabel: true,
    }))
}

async fn add_entry(
    State(state): State<WebState>,
    signed_in: SignedIn,
    CsrfForm(form): CsrfForm<EntryForm>,
) -> PageResult {
    own_record(&signed_in)?;
    let new = match form.entry(state.app.now()) {
        Ok(new) => new,
        Err(error) => return render_record(&state, &signed_in, &RecordQuery::default(), Some(error), None).await,
    };
    let account = signed_in.session.account.id;
    blocking(&state.app, move |app| app.record_own_entry(account, Channel::Web, &new)).await??;
    Ok(see_other("/my/record?done=entry"))
}

#[derive(Deserialize)]
struct LabelForm {
    #[serde(default)]
    label: String,
}

async fn relabel(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Path(entry): Path<String>,
    CsrfForm(form): CsrfForm<LabelForm>,
) -> PageResult {
    own_record(&signed_in)?;
    let entry: kith_core::EntryId = entry.parse().map_err(|_| PageError::from(AppError::Denied))?;
    let Ok(label) = PrivacyLabel::parse(&form.label) else {
        return render_record(
            &state,
            &signed_in,
            &RecordQuery::default(),
            Some("Choose a label from the list".to_owned()),
            None,
        )
        .await;
    };
    let account = signed_in.session.account.id;
    blocking(&state.app, move |app| app.relabel_own_entry(account, Channel::Web, entry, label)).await??;
    Ok(see_other(&format!("/my/record?done=label#entry-{entry}")))
}

async fn upload_own_document(State(state): State<WebState>, signed_in: SignedIn, upload: CsrfMultipart) -> PageResult {
    own_record(&signed_in)?;
    let (title, label, file_name, bytes) = match super::workspace::upload_fields(&upload) {
        Ok(fields) => fields,
        Err(error) => return render_record(&state, &signed_in, &RecordQuery::default(), None, Some(error)).await,
    };
    let (account, bytes) = (signed_in.session.account.id, bytes.to_vec());
    let added = blocking(&state.app, move |app| {
        app.add_own_document(account, Channel::Web, Some(label), title, &file_name, &bytes)
    })
    .await?;
    match added {
        Ok(_) => Ok(see_other("/my/record?done=document")),
        Err(AppError::Invalid(words)) => {
            render_record(&state, &signed_in, &RecordQuery::default(), None, Some(words)).await
        }
        Err(other) => Err(other.into()),
    }
}

// ----- sharing --------------------------------------------------------------------------------

pub struct LabelSwitch {
    code: &'static str,
    words: &'static str,
    on: bool,
}

pub struct SharingRow {
    team_id: String,
    /// What the team is to the patient, in words.
    explanation: String,
    team: String,
    organisation: String,
    since: String,
    basis: &'static str,
    switches: Vec<LabelSwitch>,
    summary: String,
}

#[derive(Template)]
#[template(path = "sharing.html")]
struct SharingPage {
    shell: Shell,
    rows: Vec<SharingRow>,
    error: Option<String>,
    /// The page as the walkthrough's second step (after registering).
    walkthrough: bool,
    steps: usize,
}

fn basis_words(basis: LinkBasis) -> &'static str {
    match basis {
        LinkBasis::OrganisationRecord => "your record was created by the organisation",
        LinkBasis::Hl7ImpliedConsent => "the hospital's system added you (your care there)",
        LinkBasis::ProfessionalExplicitConsent => "a professional added you with your agreement",
        LinkBasis::ProfessionalImpliedConsent => "a professional added you (a referral)",
        LinkBasis::PatientChoice => "your choice",
        LinkBasis::OnBehalfOfPatient => "a professional recorded your wishes on your behalf",
        LinkBasis::AddedByOperator => "added by Kith's administrators",
    }
}

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
    /// `1`: the page as a step of the walkthrough.
    #[serde(default)]
    walkthrough: String,
}

async fn sharing_page(State(state): State<WebState>, signed_in: SignedIn, Query(done): Query<Done>) -> PageResult {
    render_sharing(&state, &signed_in, notice(done.done.as_deref()), None, done.walkthrough == "1").await
}

async fn render_sharing(
    state: &WebState,
    signed_in: &SignedIn,
    notice: Option<&'static str>,
    error: Option<String>,
    walkthrough: bool,
) -> PageResult {
    let patient = own_record(signed_in)?;
    let account = signed_in.session.account.id;
    let links = blocking(&state.app, move |app| app.care_links_as(account, Channel::Web, patient)).await??;
    let ids: Vec<TeamId> = links.iter().map(|link| link.team).collect();
    let names = blocking(&state.app, move |app| app.team_names(&ids)).await??;
    let rows = links
        .iter()
        .filter(|link| link.discharged_at.is_none())
        .map(|link| {
            let name = names.get(&link.team);
            let team_name = name.map(|n| n.team.clone()).unwrap_or_else(|| "a team".to_owned());
            let explanation = match name.map(|n| n.kind) {
                Some(TeamKind::PatientRecord) => format!(
                    "This team keeps your record for {}: your name and details. It sees none of your health \
                     information unless you tick it below.",
                    name.map(|n| n.organisation.as_str()).unwrap_or_default()
                ),
                _ => format!(
                    "{team_name} is caring for you. It can now see {}. It always sees what it wrote itself.",
                    super::registration::labels_in_words(link.labels)
                ),
            };
            SharingRow {
                explanation,
                team_id: link.team.to_string(),
                team: name.map(|n| n.team.clone()).unwrap_or_else(|| "a team".to_owned()),
                organisation: name.map(|n| n.organisation.clone()).unwrap_or_default(),
                since: time_words(link.linked_at),
                basis: basis_words(link.basis),
                switches: PrivacyLabel::ALL
                    .into_iter()
                    .map(|label| LabelSwitch {
                        code: label.code(),
                        words: label.plain_words(),
                        on: link.labels.contains(label),
                    })
                    .collect(),
                summary: super::registration::labels_in_words(link.labels),
            }
        })
        .collect();
    Ok(render(&SharingPage {
        shell: Shell::signed_in(signed_in, notice),
        rows,
        error,
        walkthrough,
        steps: super::registration::WALKTHROUGH_STEPS,
    }))
}

async fn change_sharing(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Path(team): Path<String>,
    CsrfForm(form): CsrfForm<HashMap<String, String>>,
) -> PageResult {
    let patient = own_record(&signed_in)?;
    let team: TeamId = team.parse().map_err(|_| PageError::from(AppError::Denied))?;
    let labels = super::workspace::ticked_labels(&form);
    let account = signed_in.session.account.id;
    let changed =
        blocking(&state.app, move |app| app.change_consent_as(account, Channel::Web, patient, team, labels, None))
            .await?;
    let walkthrough = form.get("walkthrough").is_some_and(|value| value == "1");
    match changed {
        Ok(_) if walkthrough => Ok(see_other("/my/sharing?walkthrough=1&done=changed")),
        Ok(_) => Ok(see_other("/my/sharing?done=changed")),
        Err(AppError::Consent(refusal)) => {
            render_sharing(&state, &signed_in, None, Some(refusal.to_string()), walkthrough).await
        }
        Err(other) => Err(other.into()),
    }
}

// ----- notifications --------------------------------------------------------------------------

/// One event's choice on the notifications page.
pub struct NotifyRow {
    field: &'static str,
    question: &'static str,
    hint: &'static str,
    choices: Vec<Choice>,
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    shell: Shell,
    rows: Vec<NotifyRow>,
    has_email: bool,
    has_mobile: bool,
    error: Option<String>,
}

fn notify_choices(current: NotifyBy, may_turn_off: bool) -> Vec<Choice> {
    [
        (NotifyBy::Email, "By email"),
        (NotifyBy::Sms, "By text message"),
        (NotifyBy::Both, "By email and text message"),
        (NotifyBy::Off, "Do not tell me"),
    ]
    .into_iter()
    .filter(|(choice, _)| may_turn_off || *choice != NotifyBy::Off)
    .map(|(choice, words)| Choice {
        value: choice.code().to_owned(),
        words: words.to_owned(),
        selected: choice == current,
    })
    .collect()
}

fn notification_rows(settings: &NotificationSettings) -> Vec<NotifyRow> {
    vec![
        NotifyRow {
            field: "team_added",
            question: "When a care team is added to your record",
            hint: "You can then choose what the team sees.",
            choices: notify_choices(settings.team_added, true),
        },
        NotifyRow {
            field: "new_entries",
            question: "When there is new information in your record",
            hint: "New results, letters, notes and appointments: at most one message an hour.",
            choices: notify_choices(settings.new_entries, true),
        },
        NotifyRow {
            field: "break_glass",
            question: "When someone uses emergency access to your record",
            hint: "You are always told of this. Choose how.",
            choices: notify_choices(settings.break_glass, false),
        },
    ]
}

async fn notifications_page(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Query(done): Query<Done>,
) -> PageResult {
    render_notifications(&state, &signed_in, notice(done.done.as_deref()), None).await
}

async fn render_notifications(
    state: &WebState,
    signed_in: &SignedIn,
    notice: Option<&'static str>,
    error: Option<String>,
) -> PageResult {
    own_record(signed_in)?;
    let account = signed_in.session.account.id;
    let own = blocking(&state.app, move |app| app.own_notifications(account)).await??;
    Ok(render(&NotificationsPage {
        shell: Shell::signed_in(signed_in, notice),
        rows: notification_rows(&own.settings),
        has_email: own.has_email,
        has_mobile: own.has_mobile,
        error,
    }))
}

async fn change_notifications(
    State(state): State<WebState>,
    signed_in: SignedIn,
    CsrfForm(form): CsrfForm<HashMap<String, String>>,
) -> PageResult {
    own_record(&signed_in)?;
    let account = signed_in.session.account.id;
    let choice = |field: &str| form.get(field).and_then(|code| NotifyBy::from_code(code));
    let (Some(team_added), Some(new_entries), Some(break_glass)) =
        (choice("team_added"), choice("new_entries"), choice("break_glass"))
    else {
        return render_notifications(&state, &signed_in, None, Some("Choose one answer for each question.".to_owned()))
            .await;
    };
    let settings = NotificationSettings { team_added, new_entries, break_glass };
    match blocking(&state.app, move |app| app.set_own_notifications(account, Channel::Web, &settings)).await? {
        Ok(()) => Ok(see_other("/my/notifications?done=saved")),
        Err(AppError::Invalid(words)) => render_notifications(&state, &signed_in, None, Some(words)).await,
        Err(other) => Err(other.into()),
    }
}

// ----- the access log -------------------------------------------------------------------------

/// The events one page shows, newest first (the CSV has up to [`CSV_EVENTS`]).
const PAGE_EVENTS: i64 = 100;
const CSV_EVENTS: i64 = 1000;

pub struct LogRow {
    when: String,
    who: String,
    team: String,
    organisation: String,
    what: String,
    data: String,
    basis: &'static str,
    break_glass: bool,
    reason: String,
}

#[derive(Template)]
#[template(path = "access_log.html")]
struct AccessLogPage {
    shell: Shell,
    rows: Vec<LogRow>,
    include_own: bool,
    /// The link to the older events, when there may be more.
    older: Option<String>,
    first_page: bool,
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    own: String,
    before: Option<i64>,
}

fn action_words(action: &str, outcome: &str) -> String {
    let words = match action {
        "record.read" => "looked at your record",
        "entry.read" => "looked at an entry",
        "patient.read" | "patient.search" | "patient.list" => "saw your name and details",
        "break_glass.open" => "opened emergency access",
        "break_glass.end" => "emergency access ended",
        "entry.create" | "entry.add" => "added to your record",
        "care_link.create" => "added you to a team",
        "care_link.discharge" => "discharged you from a team",
        "consent.change" => "changed what a team sees",
        "access_log.read" => "looked at your access log",
        other => other,
    };
    if outcome == kith_core::audit::Outcome::Denied.code() {
        format!("tried but was refused: {words}")
    } else {
        words.to_owned()
    }
}

fn basis_code_words(basis: Option<&str>) -> &'static str {
    match basis {
        Some("consent") => "your consent",
        Some("own_team_data") => "their team's own entries",
        Some("break_glass") => "emergency access",
        Some("self") => "you",
        Some("administration") => "administration",
        Some(_) => "other",
        None => "",
    }
}

fn log_rows(log: &[AccessLogEntry]) -> Vec<LogRow> {
    log.iter()
        .map(|event| LogRow {
            when: time_words(event.at),
            who: event.who.clone(),
            team: event.team.clone().unwrap_or_default(),
            organisation: event.organisation.clone().unwrap_or_default(),
            what: action_words(&event.action, &event.outcome),
            data: [event.entry_kinds.as_str(), event.labels.as_str()]
                .into_iter()
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
            basis: basis_code_words(event.basis.as_deref()),
            break_glass: event.break_glass || event.action.starts_with("break_glass."),
            reason: event.stated_reason.clone().unwrap_or_default(),
        })
        .collect()
}

async fn access_log_page(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Query(query): Query<LogQuery>,
) -> PageResult {
    own_record(&signed_in)?;
    let account = signed_in.session.account.id;
    let include_own = query.own == "1";
    let before = query.before;
    let log = blocking(&state.app, move |app| app.access_log(account, include_own, before, PAGE_EVENTS, Channel::Web))
        .await??;
    let older = (log.len() as i64 == PAGE_EVENTS)
        .then(|| log.last().map(|event| format!("/my/access-log?own={}&before={}", u8::from(include_own), event.seq)))
        .flatten();
    Ok(render(&AccessLogPage {
        shell: Shell::signed_in(&signed_in, None),
        rows: log_rows(&log),
        include_own,
        older,
        first_page: before.is_none(),
    }))
}

/// A CSV field, quoted when it holds a comma, quote or line break; a leading `=`, `+`, `-`, tab, CR
/// or `@` is prefixed with `'` so that a spreadsheet never runs it as a formula.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

async fn access_log_csv(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Query(query): Query<LogQuery>,
) -> PageResult {
    own_record(&signed_in)?;
    let account = signed_in.session.account.id;
    let include_own = query.own == "1";
    let log =
        blocking(&state.app, move |app| app.access_log(account, include_own, None, CSV_EVENTS, Channel::Web)).await??;
    let mut body = String::from("when,who,team,organisation,what,data,basis,emergency access,reason given\r\n");
    for row in log_rows(&log) {
        let fields = [
            row.when.as_str(),
            &row.who,
            &row.team,
            &row.organisation,
            &row.what,
            &row.data,
            row.basis,
            if row.break_glass { "yes" } else { "no" },
            &row.reason,
        ];
        body.push_str(&fields.map(csv_field).join(","));
        body.push_str("\r\n");
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"kith-access-log.csv\""),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}
