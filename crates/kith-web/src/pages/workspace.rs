//! The professional's clinical workspace, for the team they act for: its patient list,
//! finding a patient in the organisation (to bring them into the team, or to break the
//! glass), a patient's record, adding entries, and discharging.
//!
//! Nothing here decides access: every page asks the use case, which asks the rule in
//! `kith-core` and audits the answer. A page the rule refuses — and a patient, team or
//! entry that does not exist — gets the one "not available" answer.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use kith_app::sessions::SessionTeam;
use kith_app::{
    AddBasis, AppError, LinkActor, NewEntry, PatientQuery, ProfessionalContext, RecordView, TeamName, TeamPatientFilter,
};
use kith_core::audit::Channel;
use kith_core::model::{Entry, Observation};
use kith_core::patient::{EntryKind, LocalIdentifier, NhsNumber, RegistrationStatus};
use kith_core::text::{Reason, Title};
use kith_core::{Date, EntryId, PatientId, PrivacyLabel, TeamId};
use serde::Deserialize;

use super::csrf::{CsrfForm, CsrfMultipart};
use super::error::{PageError, PageResult, blocking};
use super::guard::SignedIn;
use super::{NoFields, PageRoute, Shell, render, see_other, time_words};
use crate::WebState;

pub(crate) fn routes() -> Vec<PageRoute> {
    vec![
        PageRoute::get("/patients", patient_list),
        PageRoute::get("/patients/find", find_page),
        PageRoute::post("/patients/find", find),
        PageRoute::get("/patients/{patient}", record_page),
        PageRoute::post("/patients/{patient}/entries", add_entry),
        PageRoute::post("/patients/{patient}/consent", change_consent),
        PageRoute::upload("/patients/{patient}/documents", upload_document).body_limit(UPLOAD_LIMIT),
        PageRoute::get("/documents/{entry}", document),
        PageRoute::get("/patients/{patient}/discharge", discharge_page),
        PageRoute::post("/patients/{patient}/discharge", discharge),
    ]
}

/// The largest body an upload form reads: a document at its limit, the form's other
/// fields and the multipart framing. Larger is refused before it is read.
pub(crate) const UPLOAD_LIMIT: usize = kith_core::document::MAX_DOCUMENT_BYTES + 256 * 1024;

/// The one answer to a find that matched no one the caller may add or open: the same for
/// an unknown identifier, another date of birth, a patient of another organisation and a
/// record whose sharing is disabled. It says whom to contact.
pub const NO_MATCH: &str = "No patient in your organisation matches that identifier and date of birth, or their \
     record cannot be opened this way. Check both and try again. If they are right, contact your organisation's \
     privacy officer.";

/// The team the professional acts for, or a refusal that says how to choose one.
fn acting(signed_in: &SignedIn) -> Result<&SessionTeam, PageError> {
    signed_in.session.current_team().ok_or_else(|| {
        PageError::refused(
            StatusCode::FORBIDDEN,
            "Choose the team you are acting for at the top of the page, then try again.\n",
        )
    })
}

fn context(signed_in: &SignedIn, team: &SessionTeam) -> ProfessionalContext {
    ProfessionalContext {
        account: signed_in.session.account.id,
        team: team.team.id,
        organisation: team.team.organisation,
        channel: Channel::Web,
    }
}

/// A patient id from a URL: one that does not parse is not available, like one that does
/// not exist.
fn patient_id(text: &str) -> Result<PatientId, PageError> {
    text.parse().map_err(|_| PageError::from(AppError::Denied))
}

pub(crate) fn registration_words(status: RegistrationStatus) -> &'static str {
    match status {
        RegistrationStatus::Unregistered => "not registered",
        RegistrationStatus::Invited => "invited",
        RegistrationStatus::Registered => "registered",
    }
}

fn nhs_words(number: Option<&NhsNumber>) -> String {
    number
        .map(|number| {
            let digits = number.as_str();
            format!("{} {} {}", &digits[..3], &digits[3..6], &digits[6..])
        })
        .unwrap_or_else(|| "none".to_owned())
}

// ----- the patient list -----------------------------------------------------------------------

pub struct ListRow {
    id: String,
    name: String,
    birth_date: String,
    nhs_number: String,
    registration: &'static str,
    added: String,
}

#[derive(Template)]
#[template(path = "patients.html")]
struct PatientListPage {
    shell: Shell,
    team: String,
    query: String,
    /// `query`, percent-encoded for the pager's links.
    query_encoded: String,
    rows: Vec<ListRow>,
    next: Option<String>,
    first_page: bool,
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    q: String,
    after: Option<String>,
}

/// What a search box's text is: an NHS number (ten digits, spaces allowed), a date of
/// birth (YYYY-MM-DD or DD/MM/YYYY), a local identifier (letters and digits, or
/// AUTHORITY:VALUE), or the start of a name.
pub(crate) fn list_filter(typed: &str) -> TeamPatientFilter {
    let text = typed.trim();
    let mut filter = TeamPatientFilter::default();
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if text.is_empty() {
    } else if digits.len() == 10 && digits.chars().all(|c| c.is_ascii_digit()) {
        filter.nhs_number = digits;
    } else if let Some(date) = typed_date(text) {
        filter.birth_date = date.to_string();
    } else if let Some((_, value)) = text.split_once(':') {
        filter.local_identifier = value.trim().to_owned();
    } else if text.chars().any(|c| c.is_ascii_digit()) {
        filter.local_identifier = text.to_owned();
    } else {
        filter.name = text.to_owned();
    }
    filter
}

fn typed_date(text: &str) -> Option<Date> {
    if let Ok(date) = Date::parse(text) {
        return Some(date);
    }
    let mut parts = text.split('/');
    let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Date::new(year.trim().parse().ok()?, month.trim().parse().ok()?, day.trim().parse().ok()?).ok()
}

async fn patient_list(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let team = acting(&signed_in)?;
    let (account, team_id, team_name) = (signed_in.session.account.id, team.team.id, team.team.name.to_string());
    let filter = list_filter(&query.q);
    let after = query.after.as_deref().and_then(|id| id.parse().ok());
    let page =
        blocking(&state.app, move |app| app.team_patients_as(account, Channel::Web, team_id, &filter, after)).await??;
    let rows = page
        .patients
        .iter()
        .map(|row| ListRow {
            id: row.patient.id.to_string(),
            name: format!(
                "{}, {}",
                row.patient.demographics.family_name.as_str().to_uppercase(),
                row.patient.demographics.given_name
            ),
            birth_date: row.patient.demographics.birth_date.to_string(),
            nhs_number: nhs_words(row.patient.nhs_number.as_ref()),
            registration: registration_words(row.patient.registration),
            added: time_words(row.linked_at),
        })
        .collect();
    Ok(render(&PatientListPage {
        shell: Shell::signed_in(&signed_in, None),
        team: team_name,
        query: query.q.clone(),
        query_encoded: super::percent_encoded(&query.q),
        rows,
        next: page.next.map(|id| id.to_string()),
        first_page: query.after.is_none(),
    }))
}

// ----- finding a patient ----------------------------------------------------------------------

#[derive(Template)]
#[template(path = "find_patient.html")]
struct FindPage {
    shell: Shell,
    team: String,
    form: FindForm,
    error_field: &'static str,
    error: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
struct FindForm {
    #[serde(default)]
    identifier: String,
    #[serde(default)]
    day: String,
    #[serde(default)]
    month: String,
    #[serde(default)]
    year: String,
    /// `add` or `emergency`.
    #[serde(default)]
    action: String,
    /// `consent`, `referral` or `other`.
    #[serde(default)]
    basis: String,
    #[serde(default)]
    other_reason: String,
    #[serde(default)]
    emergency_reason: String,
}

async fn find_page(State(_state): State<WebState>, signed_in: SignedIn) -> PageResult {
    let team = acting(&signed_in)?;
    let form = FindForm { action: "add".into(), basis: "referral".into(), ..FindForm::default() };
    Ok(render(&FindPage {
        shell: Shell::signed_in(&signed_in, None),
        team: team.team.name.to_string(),
        form,
        error_field: "",
        error: None,
    }))
}

/// An NHS number, or AUTHORITY:VALUE of the organisation the professional acts in.
fn typed_identifier(text: &str, organisation: &kith_core::text::OrganisationCode) -> Result<PatientQuery, String> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        return NhsNumber::parse(&digits)
            .map(PatientQuery::NhsNumber)
            .map_err(|_| "Enter a valid NHS number (10 digits), or a hospital number as AUTHORITY:NUMBER".to_owned());
    }
    LocalIdentifier::parse(text.trim())
        .map(|identifier| PatientQuery::Local { organisation: organisation.clone(), identifier })
        .map_err(|_| {
            "Enter an NHS number (10 digits), or a hospital number as AUTHORITY:NUMBER, e.g. RXH-MRN:K1234567"
                .to_owned()
        })
}

async fn find(State(state): State<WebState>, signed_in: SignedIn, CsrfForm(form): CsrfForm<FindForm>) -> PageResult {
    let team = acting(&signed_in)?.clone();
    let again = |field: &'static str, error: String| {
        Ok(render(&FindPage {
            shell: Shell::signed_in(&signed_in, None),
            team: team.team.name.to_string(),
            form: form.clone(),
            error_field: field,
            error: Some(error),
        }))
    };
    let organisation = team.team.organisation;
    let organisation = blocking(&state.app, move |app| app.organisation_by_id(organisation))
        .await??
        .ok_or_else(|| PageError::internal("the team's organisation is missing"))?;
    let identifier = match typed_identifier(&form.identifier, &organisation.code) {
        Ok(identifier) => identifier,
        Err(error) => return again("identifier", error),
    };
    let Some(birth_date) = super::registration::date_from(&form.day, &form.month, &form.year) else {
        return again("day", "Enter the date of birth as day, month and year, e.g. 27 3 1985".to_owned());
    };
    let account = signed_in.session.account.id;
    let team_id = team.team.id;
    let outcome = match form.action.as_str() {
        "emergency" => {
            let reason = match Reason::parse(&form.emergency_reason) {
                Ok(reason) => reason,
                Err(error) => {
                    return again("emergency_reason", format!("Say why you need emergency access: {error}"));
                }
            };
            let secret = signed_in.secret.clone();
            blocking(&state.app, move |app| {
                app.break_glass_by_lookup_in_session(&secret, &identifier, birth_date, &reason)
                    .map(|grant| grant.patient)
            })
            .await?
        }
        "add" => {
            let basis = match form.basis.as_str() {
                "consent" => AddBasis::ExplicitConsent,
                "referral" => AddBasis::Referral,
                "other" => match Reason::parse(&form.other_reason) {
                    Ok(reason) => AddBasis::Other(reason),
                    Err(error) => return again("other_reason", format!("Say on what basis: {error}")),
                },
                _ => return again("basis", "Choose the basis on which you add the patient".to_owned()),
            };
            blocking(&state.app, move |app| {
                app.add_patient_to_team_as(account, Channel::Web, team_id, &identifier, birth_date, &basis)
                    .map(|link| link.patient)
            })
            .await?
        }
        _ => {
            return again(
                "action",
                "Choose whether to add the patient to your team or to open emergency access".to_owned(),
            );
        }
    };
    match outcome {
        Ok(patient) => Ok(see_other(&format!(
            "/patients/{patient}?done={}",
            if form.action == "emergency" { "emergency" } else { "added" }
        ))),
        Err(AppError::Denied) => again("identifier", NO_MATCH.to_owned()),
        Err(AppError::TooManyAttempts(words)) => again("identifier", words),
        Err(AppError::Conflict(_)) => again("identifier", "The patient is already in your team.".to_owned()),
        Err(AppError::Consent(refusal)) => again("identifier", refusal.to_string()),
        Err(AppError::Forbidden(words)) => again("identifier", words),
        Err(other) => Err(other.into()),
    }
}

// ----- a patient's record ---------------------------------------------------------------------

/// One entry as the record pages show it.
pub struct EntryView {
    pub id: String,
    pub kind: &'static str,
    pub label: &'static str,
    /// The label's code (`none` for no label).
    pub label_code: &'static str,
    pub title: String,
    pub body: String,
    pub when: String,
    pub ends: Option<String>,
    pub team: String,
    pub source: &'static str,
    pub status: Option<String>,
    pub version: i64,
    pub observations: Vec<ObservationView>,
    /// The uploaded file of a document: its address and what it is, in words.
    pub file: Option<(String, String)>,
    /// A corrected entry's earlier versions, oldest first.
    pub earlier: Vec<EarlierView>,
}

/// An earlier version of a corrected entry.
pub struct EarlierView {
    pub version: i64,
    pub recorded: String,
    pub status: Option<String>,
    pub title: String,
    pub body: String,
    pub observations: Vec<ObservationView>,
}

fn observation_views(list: &[Observation]) -> Vec<ObservationView> {
    list.iter()
        .map(|o| ObservationView {
            name: if o.name.is_empty() { o.code.clone() } else { o.name.clone() },
            value: o.value.clone(),
            units: o.units.clone(),
            range: o.reference_range.clone(),
            flags: o.flags.replace('~', ", "),
            abnormal: !o.flags.is_empty() && o.flags != "N",
        })
        .collect()
}

pub struct ObservationView {
    pub name: String,
    pub value: String,
    pub units: String,
    pub range: String,
    pub flags: String,
    pub abnormal: bool,
}

pub(crate) fn kind_words(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Result => "Result",
        EntryKind::Document => "Document",
        EntryKind::Appointment => "Appointment",
        EntryKind::CarePlan => "Care plan",
        EntryKind::Note => "Note",
        EntryKind::Measurement => "Measurement",
        EntryKind::Diagnosis => "Diagnosis",
        EntryKind::Medication => "Medication",
        EntryKind::Allergy => "Allergy",
    }
}

pub(crate) fn label_words(label: Option<PrivacyLabel>) -> &'static str {
    match label {
        Some(PrivacyLabel::General) => "General health",
        Some(PrivacyLabel::SexualHealth) => "Sexual health",
        Some(PrivacyLabel::MentalHealth) => "Mental health",
        Some(PrivacyLabel::SocialCare) => "Social care",
        None => "No label",
    }
}

/// The entries of a read as pages show them: filtered by kind, label and team, newest
/// first, with their authors' names and their results' values.
pub(crate) fn entry_views(
    view: &RecordView,
    names: &HashMap<TeamId, TeamName>,
    filter: &RecordFilter,
) -> Vec<EntryView> {
    let (observations, documents, history) = (&view.observations, &view.documents, &view.history);
    let patient_account = view.patient.account;
    let mut entries: Vec<Entry> = view
        .entries
        .iter()
        .map(|visible| visible.entry.clone())
        .filter(|entry| filter.kind.is_none_or(|kind| kind == entry.kind))
        .filter(|entry| filter.label.is_none_or(|label| Some(label) == entry.label))
        .filter(|entry| filter.team.is_none_or(|team| team == entry.authored_by))
        .collect();
    entries.sort_by(|a, b| b.effective_at.cmp(&a.effective_at).then(b.recorded_at.cmp(&a.recorded_at)));
    entries
        .into_iter()
        .map(|entry| EntryView {
            id: entry.id.to_string(),
            kind: kind_words(entry.kind),
            label: label_words(entry.label),
            label_code: entry.label.map_or("none", |label| label.code()),
            when: time_words(entry.effective_at),
            ends: entry.ends_at.map(time_words),
            team: names
                .get(&entry.authored_by)
                .map(|name| format!("{} ({})", name.team, name.organisation))
                .unwrap_or_else(|| "a team".to_owned()),
            source: if entry.source_message.is_some() || entry.source_key.is_some() {
                "hospital system"
            } else if entry.author_account.is_some() && entry.author_account == patient_account {
                "entered by the patient"
            } else {
                "entered in Kith"
            },
            status: entry.status.map(|status| status.to_string()),
            version: entry.version,
            observations: observations.get(&entry.id).map(|list| observation_views(list)).unwrap_or_default(),
            earlier: history
                .get(&entry.id)
                .map(|versions| {
                    versions
                        .iter()
                        .map(|(version, observations)| EarlierView {
                            version: version.version,
                            recorded: time_words(version.recorded_at),
                            status: version.status.map(|status| status.to_string()),
                            title: version.title.to_string(),
                            body: version.body.clone(),
                            observations: observation_views(observations),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            file: documents.get(&entry.id).map(|file| {
                let kind = match file.media_type {
                    "application/pdf" => "PDF",
                    "image/png" => "PNG image",
                    _ => "JPEG image",
                };
                (format!("/documents/{}", entry.id), format!("{}, {kind}, {}", file.file_name, size_words(file.size)))
            }),
            title: entry.title.to_string(),
            body: entry.body,
        })
        .collect()
}

/// A file's size in words: `840 bytes`, `12 KB`, `3.4 MB`.
fn size_words(bytes: i64) -> String {
    if bytes < 1_024 {
        format!("{bytes} bytes")
    } else if bytes < 1_048_576 {
        format!("{} KB", bytes / 1_024)
    } else {
        format!("{:.1} MB", bytes as f64 / 1_048_576.0)
    }
}

/// What a record page is narrowed to.
#[derive(Default)]
pub(crate) struct RecordFilter {
    pub kind: Option<EntryKind>,
    pub label: Option<PrivacyLabel>,
    pub team: Option<TeamId>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RecordQuery {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub team: String,
    #[serde(default)]
    pub page: usize,
    pub done: Option<String>,
}

impl RecordQuery {
    pub(crate) fn filter(&self) -> RecordFilter {
        RecordFilter {
            kind: EntryKind::from_code(self.kind.trim()),
            label: PrivacyLabel::parse(&self.label).ok(),
            team: self.team.parse().ok(),
        }
    }
}

/// Entries one page of a record shows.
pub const ENTRIES_PER_PAGE: usize = 50;

/// A choice in a filter's list.
pub struct Choice {
    pub value: String,
    pub words: String,
    pub selected: bool,
}

pub(crate) fn kind_choices(selected: Option<EntryKind>) -> Vec<Choice> {
    EntryKind::ALL
        .into_iter()
        .map(|kind| Choice {
            value: kind.code().to_owned(),
            words: kind_words(kind).to_owned(),
            selected: selected == Some(kind),
        })
        .collect()
}

pub(crate) fn label_choices(selected: Option<PrivacyLabel>) -> Vec<Choice> {
    PrivacyLabel::ALL
        .into_iter()
        .map(|label| Choice {
            value: label.code().to_owned(),
            words: label_words(Some(label)).to_owned(),
            selected: selected == Some(label),
        })
        .collect()
}

/// One page of entries, and the pages around it.
pub(crate) struct Paged {
    pub entries: Vec<EntryView>,
    pub page: usize,
    pub pages: usize,
    pub total: usize,
}

pub(crate) fn paged(all: Vec<EntryView>, page: usize) -> Paged {
    let total = all.len();
    let pages = total.div_ceil(ENTRIES_PER_PAGE).max(1);
    let page = page.min(pages - 1);
    let entries = all.into_iter().skip(page * ENTRIES_PER_PAGE).take(ENTRIES_PER_PAGE).collect();
    Paged { entries, page, pages, total }
}

#[derive(Template)]
#[template(path = "record.html")]
struct RecordPage {
    shell: Shell,
    id: String,
    team: String,
    name: String,
    birth_date: String,
    nhs_number: String,
    sex: String,
    registration: &'static str,
    under_break_glass: bool,
    some_hidden: bool,
    paged: Paged,
    kinds: Vec<Choice>,
    labels: Vec<Choice>,
    filter_query: String,
    entry_error: Option<String>,
    label_choices: Vec<Choice>,
    entry_action: String,
    entry_button: &'static str,
    upload_action: String,
    /// Entries' labels are the patient's to change, not the professional's.
    can_relabel: bool,
    /// What the acting team sees of the record, as switches (none when not in the team).
    team_view: Vec<Choice>,
    consent_error: Option<String>,
    upload_error: Option<String>,
}

fn record_notice(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "added" => Some("The patient is now in your team. They have been told."),
        "emergency" => Some("Emergency access is open. It is audited; the patient and the privacy officer are told."),
        "entry" => Some("The entry has been added to the record."),
        "consent" => Some("The team's view has been changed, on the patient's behalf. The patient is told."),
        "document" => Some("The document has been added to the record."),
        _ => None,
    }
}

async fn read(state: &WebState, context: ProfessionalContext, patient: PatientId) -> Result<RecordView, PageError> {
    Ok(blocking(&state.app, move |app| app.read_record(&context, patient)).await??)
}

async fn names_of(state: &WebState, view: &RecordView) -> Result<HashMap<TeamId, TeamName>, PageError> {
    let ids: Vec<TeamId> = view.entries.iter().map(|visible| visible.entry.authored_by).collect();
    Ok(blocking(&state.app, move |app| app.team_names(&ids)).await??)
}

async fn record_page(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Path(patient): Path<String>,
    Query(query): Query<RecordQuery>,
) -> PageResult {
    render_record(&state, &signed_in, &patient, &query, FormError::None).await
}

/// A form of the record page that was refused, and why.
enum FormError {
    None,
    Entry(String),
    Consent(String),
    Upload(String),
}

async fn render_record(
    state: &WebState,
    signed_in: &SignedIn,
    patient: &str,
    query: &RecordQuery,
    error: FormError,
) -> PageResult {
    let team = acting(signed_in)?;
    let patient = patient_id(patient)?;
    let view = read(state, context(signed_in, team), patient).await?;
    let (account, team_id) = (signed_in.session.account.id, team.team.id);
    let links = blocking(&state.app, move |app| app.care_links_as(account, Channel::Web, patient)).await??;
    let team_view = links
        .iter()
        .find(|link| link.team == team_id && link.discharged_at.is_none())
        .map(|link| {
            PrivacyLabel::ALL
                .into_iter()
                .map(|label| Choice {
                    value: label.code().to_owned(),
                    words: label.plain_words().to_owned(),
                    selected: link.labels.contains(label),
                })
                .collect()
        })
        .unwrap_or_default();
    let (mut entry_error, mut consent_error, mut upload_error) = (None, None, None);
    match error {
        FormError::None => {}
        FormError::Entry(error) => entry_error = Some(error),
        FormError::Consent(error) => consent_error = Some(error),
        FormError::Upload(error) => upload_error = Some(error),
    }
    let names = names_of(state, &view).await?;
    let filter = query.filter();
    let under_break_glass = matches!(view.basis, kith_core::Basis::BreakGlass { .. });
    let all = entry_views(&view, &names, &filter);
    let record = &view.patient;
    let filter_query = format!(
        "kind={}&label={}",
        filter.kind.map(|kind| kind.code()).unwrap_or_default(),
        filter.label.map(|label| label.code()).unwrap_or_default()
    );
    Ok(render(&RecordPage {
        shell: Shell::signed_in(signed_in, record_notice(query.done.as_deref())),
        id: record.id.to_string(),
        team: team.team.name.to_string(),
        name: format!("{} {}", record.demographics.given_name, record.demographics.family_name),
        birth_date: record.demographics.birth_date.to_string(),
        nhs_number: nhs_words(record.nhs_number.as_ref()),
        sex: record.demographics.sex.code().to_owned(),
        registration: registration_words(record.registration),
        under_break_glass,
        some_hidden: view.some_hidden,
        paged: paged(all, query.page),
        kinds: kind_choices(filter.kind),
        labels: label_choices(filter.label),
        filter_query,
        entry_error,
        label_choices: label_choices(Some(PrivacyLabel::General)),
        entry_action: format!("/patients/{}/entries", record.id),
        entry_button: "Add the entry",
        upload_action: format!("/patients/{}/documents", record.id),
        can_relabel: false,
        team_view,
        consent_error,
        upload_error,
    }))
}

/// The form that adds a note or a measurement (a professional's, or a patient's own).
#[derive(Deserialize)]
pub(crate) struct EntryForm {
    /// `note` or `measurement`.
    #[serde(default)]
    kind: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    label: String,
}

impl EntryForm {
    /// The entry the form describes, or what is wrong with it.
    pub(crate) fn entry(&self, now: kith_core::Timestamp) -> Result<NewEntry, String> {
        new_entry(&self.kind, &self.title, &self.body, &self.value, &self.unit, &self.label, now)
    }
}

/// A note or a measurement as the form gives it, or what is wrong with it.
fn new_entry(
    kind: &str,
    title: &str,
    body: &str,
    value: &str,
    unit: &str,
    label: &str,
    now: kith_core::Timestamp,
) -> Result<NewEntry, String> {
    let label = PrivacyLabel::parse(if label.trim().is_empty() { "general" } else { label })
        .map_err(|_| "Choose a label from the list".to_owned())?;
    let title = Title::parse(title).map_err(|_| "Enter a title (up to 200 characters)".to_owned())?;
    let (kind, body) = match kind {
        "note" => {
            if body.trim().is_empty() {
                return Err("Enter the note".to_owned());
            }
            (EntryKind::Note, body.trim().to_owned())
        }
        "measurement" => {
            let value = value.trim();
            if value.is_empty() || value.len() > 50 {
                return Err("Enter the measured value, e.g. 72".to_owned());
            }
            let unit = unit.trim();
            if unit.len() > 30 {
                return Err("Enter a unit of up to 30 characters, e.g. kg".to_owned());
            }
            (EntryKind::Measurement, if unit.is_empty() { value.to_owned() } else { format!("{value} {unit}") })
        }
        _ => return Err("Choose a note or a measurement".to_owned()),
    };
    if body.len() > 20_000 {
        return Err("The text is too long: at most 20,000 characters".to_owned());
    }
    Ok(NewEntry { kind, label: Some(label), title, body, effective_at: now })
}

async fn add_entry(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Path(patient): Path<String>,
    CsrfForm(form): CsrfForm<EntryForm>,
) -> PageResult {
    let team = acting(&signed_in)?;
    let patient_id = patient_id(&patient)?;
    let new = match form.entry(state.app.now()) {
        Ok(new) => new,
        Err(error) => {
            return render_record(&state, &signed_in, &patient, &RecordQuery::default(), FormError::Entry(error)).await;
        }
    };
    let (account, team_id) = (signed_in.session.account.id, team.team.id);
    blocking(&state.app, move |app| app.record_entry_as(account, Channel::Web, patient_id, Some(team_id), &new))
        .await??;
    Ok(see_other(&format!("/patients/{patient_id}?done=entry")))
}

/// The labels ticked in a form: a field named by each label's code, `on` when ticked.
pub(crate) fn ticked_labels(form: &HashMap<String, String>) -> kith_core::LabelSet {
    PrivacyLabel::ALL
        .into_iter()
        .filter(|label| form.get(label.code()).is_some_and(|value| value == "on"))
        .fold(kith_core::LabelSet::EMPTY, kith_core::LabelSet::with)
}

/// A professional changes what their team sees of the record on the patient's behalf, with
/// a reason (a Patient Record Team's data-quality staff add what their organisation allows;
/// a speciality team only narrows its own view): the rule in `kith-core` decides.
async fn change_consent(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Path(patient): Path<String>,
    CsrfForm(form): CsrfForm<HashMap<String, String>>,
) -> PageResult {
    let team = acting(&signed_in)?;
    let patient_id = patient_id(&patient)?;
    let query = RecordQuery::default();
    let refused = |error: String| render_record(&state, &signed_in, &patient, &query, FormError::Consent(error));
    let reason = match Reason::parse(form.get("reason").map_or("", String::as_str)) {
        Ok(reason) => reason,
        Err(error) => return refused(format!("Say on what basis you record this for the patient: {error}")).await,
    };
    let labels = ticked_labels(&form);
    let context = context(&signed_in, team);
    let changed = blocking(&state.app, move |app| {
        app.change_consent(
            &kith_app::ConsentActor::Professional { context: &context, reason: Some(&reason) },
            patient_id,
            context.team,
            labels,
        )
    })
    .await?;
    match changed {
        Ok(_) => Ok(see_other(&format!("/patients/{patient_id}?done=consent"))),
        Err(AppError::Consent(refusal)) => refused(refusal.to_string()).await,
        Err(AppError::Forbidden(words) | AppError::Invalid(words)) => refused(words).await,
        Err(other) => Err(other.into()),
    }
}

/// An upload's title, label and file, or what is wrong with them (the file's content is
/// judged by the use case).
pub(crate) fn upload_fields(upload: &CsrfMultipart) -> Result<(Title, PrivacyLabel, String, &[u8]), String> {
    let title = Title::parse(upload.text("title")).map_err(|_| "Enter a title (up to 200 characters)".to_owned())?;
    let label = upload.text("label");
    let label = PrivacyLabel::parse(if label.trim().is_empty() { "general" } else { label })
        .map_err(|_| "Choose a label from the list".to_owned())?;
    let file =
        upload.field("file").filter(|file| !file.is_empty()).ok_or("Choose a file to upload: a PDF, PNG or JPEG")?;
    Ok((title, label, upload.file_name("file").unwrap_or_default().to_owned(), file))
}

async fn upload_document(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Path(patient): Path<String>,
    upload: CsrfMultipart,
) -> PageResult {
    let team = acting(&signed_in)?;
    let patient_id = patient_id(&patient)?;
    let query = RecordQuery::default();
    let (title, label, file_name, bytes) = match upload_fields(&upload) {
        Ok(fields) => fields,
        Err(error) => return render_record(&state, &signed_in, &patient, &query, FormError::Upload(error)).await,
    };
    let (account, team_id, bytes) = (signed_in.session.account.id, team.team.id, bytes.to_vec());
    let added = blocking(&state.app, move |app| {
        app.add_document_as(account, Channel::Web, patient_id, team_id, Some(label), title, &file_name, &bytes)
    })
    .await?;
    match added {
        Ok(_) => Ok(see_other(&format!("/patients/{patient_id}?done=document"))),
        Err(AppError::Invalid(words)) => {
            render_record(&state, &signed_in, &patient, &query, FormError::Upload(words)).await
        }
        Err(other) => Err(other.into()),
    }
}

/// An uploaded document, to whoever may see its entry (the rule decides; anyone else, and
/// any id that is not a document's, gets the one "not available" answer). It is sent as
/// what its content is, never to be run: `nosniff`, a sandboxing policy, not cached, and a
/// PDF as a download.
async fn document(State(state): State<WebState>, signed_in: SignedIn, Path(entry): Path<String>) -> PageResult {
    let entry: EntryId = entry.parse().map_err(|_| PageError::from(AppError::Denied))?;
    let account = signed_in.session.account.id;
    let document = blocking(&state.app, move |app| app.read_document_as(account, Channel::Web, entry)).await??;
    let disposition = if document.media_type == "application/pdf" { "attachment" } else { "inline" };
    let ascii: String = document
        .file_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || " ._-".contains(c) { c } else { '_' })
        .collect();
    let encoded = super::percent_encoded(&document.file_name);
    let headers = [
        (header::CONTENT_TYPE, document.media_type.to_owned()),
        (header::CONTENT_DISPOSITION, format!("{disposition}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'; sandbox".to_owned()),
        (header::CACHE_CONTROL, "no-store".to_owned()),
    ];
    Ok((headers, document.bytes).into_response())
}

// ----- discharge ------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "discharge.html")]
struct DischargePage {
    shell: Shell,
    id: String,
    name: String,
    team: String,
}

async fn discharge_page(State(state): State<WebState>, signed_in: SignedIn, Path(patient): Path<String>) -> PageResult {
    let team = acting(&signed_in)?;
    let view = read(&state, context(&signed_in, team), patient_id(&patient)?).await?;
    Ok(render(&DischargePage {
        shell: Shell::signed_in(&signed_in, None),
        id: view.patient.id.to_string(),
        name: format!("{} {}", view.patient.demographics.given_name, view.patient.demographics.family_name),
        team: team.team.name.to_string(),
    }))
}

async fn discharge(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Path(patient): Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> PageResult {
    let team = acting(&signed_in)?.clone();
    let patient = patient_id(&patient)?;
    let context = context(&signed_in, &team);
    let organisation = team.team.organisation;
    let code = blocking(&state.app, move |app| app.organisation_by_id(organisation))
        .await??
        .ok_or_else(|| PageError::internal("the team's organisation is missing"))?
        .code;
    let alias = team.team.alias.clone();
    blocking(&state.app, move |app| {
        app.discharge_patient(
            &LinkActor::Professional { context: &context, explicit_consent: false },
            patient,
            &code,
            &alias,
        )
    })
    .await??;
    Ok(see_other("/patients?done=discharged"))
}
