//! Coordinators' pages for the team they act for: adding professionals in bulk from a CSV
//! file — a preview row by row, then the report of what was applied.

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kith_app::AppError;
use kith_app::professionals_csv::{CsvReport, Importer, TEMPLATE_HEADER};
use kith_core::team::MembershipRole;
use serde::Deserialize;

use super::guard::{self, SignedIn};
use super::{Shell, render, signed_in_form_ok};
use crate::WebState;

/// The largest upload: 50,000 rows of a few hundred bytes, with room to spare.
const MAX_UPLOAD: usize = 32 * 1024 * 1024;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/team/professionals", get(upload_page))
        .route("/team/professionals/preview", post(preview))
        .route("/team/professionals/apply", post(apply))
        .route("/static/professionals-template.csv", get(template))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
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
) -> Result<(kith_core::model::Team, kith_core::text::OrganisationCode), Response> {
    let Some(current) = signed_in.session.current_team().filter(|team| team.role == MembershipRole::Coordinator) else {
        return Err((
            StatusCode::FORBIDDEN,
            "Only a coordinator of the team you are acting for can add professionals. Switch team at the top of the page.\n",
        )
            .into_response());
    };
    let team = current.team.clone();
    let app = state.app.clone();
    let organisation = team.organisation;
    match tokio::task::spawn_blocking(move || app.organisation_by_id(organisation)).await {
        Ok(Ok(Some(organisation))) => Ok((team, organisation.code)),
        _ => Err(guard::internal_error()),
    }
}

async fn upload_page(State(state): State<WebState>, signed_in: SignedIn) -> Response {
    let (team, _) = match coordinated_team(&state, &signed_in).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    render(&UploadPage { shell: Shell::signed_in(&signed_in, None), team: team.name.to_string(), report: None })
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
async fn run(state: &WebState, signed_in: &SignedIn, bytes: Vec<u8>, apply: bool) -> Response {
    let (team, organisation) = match coordinated_team(state, signed_in).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let app = state.app.clone();
    let account = signed_in.session.account.id;
    let alias = team.alias.clone();
    let upload = bytes.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let importer = Importer::Coordinator(account);
        if apply {
            app.import_professionals_csv(&importer, &organisation, &alias, &upload)
        } else {
            app.preview_professionals_csv(&importer, &organisation, &alias, &upload)
        }
    })
    .await;
    let report = match outcome {
        Ok(Ok(report)) => report,
        Ok(Err(AppError::Forbidden(message))) => return (StatusCode::FORBIDDEN, message).into_response(),
        Ok(Err(AppError::TeamRule(rule))) => return (StatusCode::CONFLICT, rule.to_string()).into_response(),
        Ok(Err(error)) => {
            tracing::error!(%error, "a professionals upload failed");
            return guard::internal_error();
        }
        Err(_) => return guard::internal_error(),
    };
    // The apply step gets the file back as text (a byte-order mark is dropped: the reader
    // takes the file either way).
    let text = String::from_utf8(bytes).map(|text| text.trim_start_matches('\u{feff}').to_owned()).unwrap_or_default();
    render(&UploadPage {
        shell: Shell::signed_in(signed_in, None),
        team: team.name.to_string(),
        report: Some(view(&report, text)),
    })
}

async fn preview(
    State(state): State<WebState>,
    headers: HeaderMap,
    signed_in: SignedIn,
    mut form: Multipart,
) -> Response {
    let mut csrf = String::new();
    let mut file = None;
    loop {
        match form.next_field().await {
            Ok(Some(field)) => match field.name() {
                Some("csrf") => csrf = field.text().await.unwrap_or_default(),
                Some("file") => match field.bytes().await {
                    Ok(bytes) => file = Some(bytes.to_vec()),
                    Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "The file is too large.\n").into_response(),
                },
                _ => {}
            },
            Ok(None) => break,
            Err(_) => return (StatusCode::BAD_REQUEST, "The upload could not be read. Try again.\n").into_response(),
        }
    }
    if !signed_in_form_ok(&headers, &signed_in, &csrf) {
        return guard::csrf_refused();
    }
    let Some(file) = file else {
        return (StatusCode::BAD_REQUEST, "Choose a CSV file to upload.\n").into_response();
    };
    run(&state, &signed_in, file, false).await
}

#[derive(Deserialize)]
struct ApplyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    file: String,
}

async fn apply(
    State(state): State<WebState>,
    headers: HeaderMap,
    signed_in: SignedIn,
    axum::Form(form): axum::Form<ApplyForm>,
) -> Response {
    if !signed_in_form_ok(&headers, &signed_in, &form.csrf) {
        return guard::csrf_refused();
    }
    run(&state, &signed_in, form.file.into_bytes(), true).await
}
