//! The FHIR R4 JSON API at `/fhir`.
//!
//! Every request carries `Authorization: Bearer TOKEN` (an API token, `kith token create`)
//! except `GET /fhir/metadata`. The token acts for one account with its memberships as they
//! are at the request; every answer goes through the one access rule in `kith-app` and
//! every read is audited there. Errors are OperationOutcomes: 401 without a live token,
//! 403 for an action the caller may never take, 404 for what the caller may not see (the
//! same answer as for what does not exist), 400 for bad search parameters.

mod base;
mod entries;
mod openapi;
mod resources;
mod typed;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kith_app::{AccountRecordView, App, AppError, EntrySelection, PatientQuery};
use kith_core::audit::Channel;
use kith_core::patient::{EntryKind, LocalIdentifier, NhsNumber};
use kith_core::text::{OrganisationCode, Reason};
use kith_core::{AccountId, Date, EntryId, PatientId, TeamId, Timestamp};
use serde_json::{Value, json};

pub use base::ResourceType;
pub use base::{
    DEFAULT_COUNT, HIDDEN_EXTENSION, LOCAL_SYSTEM_PREFIX, MAX_COUNT, MAX_OFFSET, NHS_NUMBER_SYSTEM,
    PRIVACY_LABEL_SYSTEM,
};
pub use entries::{ENTRY_TYPES, EntryType};

use crate::{WebState, bearer_token};

/// The media type of FHIR JSON.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
/// The largest request body the API reads (a Parameters resource).
const MAX_BODY: usize = 64 * 1024;

pub fn routes() -> Router<WebState> {
    let mut router = Router::new()
        .route("/openapi.json", get(openapi_document))
        .route("/fhir/metadata", get(metadata))
        .route("/fhir/Observation", post(create_observation));
    for resource_type in ResourceType::ALL {
        router = resource_routes(router, resource_type);
    }
    for entry_type in ENTRY_TYPES {
        router = entry_routes(router, entry_type);
    }
    router
        .route("/fhir/{*rest}", axum::routing::any(unsupported))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

/// The routes of one resource type that is not an entry type.
fn resource_routes(router: Router<WebState>, resource_type: ResourceType) -> Router<WebState> {
    let path = |suffix: &str| format!("/fhir/{}{suffix}", resource_type.name());
    match resource_type {
        ResourceType::Patient => router
            .route(&path(""), get(search_patients))
            .route(&path("/{id}"), get(read_patient))
            .route(&path("/{id}/$break-glass"), post(break_glass)),
        ResourceType::Consent => {
            router.route(&path(""), get(search_consents)).route(&path("/{id}"), get(read_consent).put(put_consent))
        }
        ResourceType::AuditEvent => router.route(&path(""), get(search_audit_events)),
        ResourceType::Organization => {
            router.route(&path(""), get(search_organizations)).route(&path("/{id}"), get(read_organization))
        }
        ResourceType::CareTeam => router
            .route(&path(""), get(search_care_teams))
            .route(&path("/{id}"), get(read_care_team))
            .route(&path("/{id}/$add-patient"), post(add_patient)),
        ResourceType::Practitioner => router.route(&path("/{id}"), get(read_practitioner)),
        ResourceType::PractitionerRole => {
            router.route(&path(""), get(search_practitioner_roles)).route(&path("/{id}"), get(read_practitioner_role))
        }
    }
}

/// What went wrong, as the caller is told it.
#[derive(Debug)]
pub enum FhirError {
    Unauthorised,
    Forbidden(String),
    NotFound,
    BadRequest(String),
    Unprocessable(String),
    NotSupported(String),
    TooManyRequests(String),
    Unavailable,
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let (status, code, text) = match self {
            FhirError::Unauthorised => (
                StatusCode::UNAUTHORIZED,
                "login",
                "a live API token is required: Authorization: Bearer TOKEN".to_owned(),
            ),
            FhirError::Forbidden(text) => (StatusCode::FORBIDDEN, "forbidden", text),
            FhirError::NotFound => (StatusCode::NOT_FOUND, "not-found", "not found".to_owned()),
            FhirError::BadRequest(text) => (StatusCode::BAD_REQUEST, "invalid", text),
            FhirError::Unprocessable(text) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", text),
            FhirError::NotSupported(text) => (StatusCode::NOT_FOUND, "not-supported", text),
            FhirError::TooManyRequests(text) => (StatusCode::TOO_MANY_REQUESTS, "throttled", text),
            FhirError::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "transient", "the service is unavailable; try again".to_owned())
            }
        };
        let mut response = (status, fhir_json(base::operation_outcome("error", code, &text))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<AppError> for FhirError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::Denied | AppError::NotFound(_) => FhirError::NotFound,
            AppError::Forbidden(text) => FhirError::Forbidden(text),
            AppError::TooManyAttempts(text) => FhirError::TooManyRequests(text),
            AppError::Invalid(text) => FhirError::Unprocessable(text),
            AppError::Store(error) => {
                tracing::error!(%error, "FHIR request failed in the store");
                FhirError::Unavailable
            }
            other => {
                tracing::error!(error = %other, "FHIR request refused");
                FhirError::Unprocessable(other.to_string())
            }
        }
    }
}

type FhirResult = Result<Response, FhirError>;

fn fhir_json(value: Value) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, FHIR_JSON)], value.to_string())
}

fn ok(value: Value) -> FhirResult {
    Ok(fhir_json(value).into_response())
}

/// A response from bytes already serialised as FHIR JSON.
fn ok_bytes(body: Vec<u8>) -> FhirResult {
    Ok(([(header::CONTENT_TYPE, FHIR_JSON)], body).into_response())
}

fn ok_serialize<T: serde::Serialize>(value: &T) -> FhirResult {
    ok_bytes(serde_json::to_vec(value).map_err(|_| FhirError::Unavailable)?)
}

/// Runs a use case off the async executor.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FhirError> + Send + 'static,
) -> Result<T, FhirError> {
    tokio::task::spawn_blocking(work).await.map_err(|_| FhirError::Unavailable)?
}

/// Runs an audited read whose answer is then awaited: in place when reads cost only this
/// process's CPU (SQLite; a hand-off to a blocking thread would cost more than the read),
/// else on a blocking thread.
async fn read_then_audit<T: Send + 'static>(
    app: &App,
    work: impl FnOnce() -> Result<T, FhirError> + Send + 'static,
) -> Result<T, FhirError> {
    if app.store().reads_in_process() { work() } else { blocking(work).await }
}

/// The account behind the request's bearer token.
async fn caller(app: &App, headers: &HeaderMap) -> Result<AccountId, FhirError> {
    let token = bearer_token(headers);
    let app = app.clone();
    blocking(move || authenticate(&app, token)).await
}

/// The account of a live token (on a blocking thread).
fn authenticate(app: &App, token: Option<String>) -> Result<AccountId, FhirError> {
    let token = token.ok_or(FhirError::Unauthorised)?;
    app.authenticate_api_token(&token).map_err(FhirError::from)?.ok_or(FhirError::Unauthorised)
}

// ----- search parameters ------------------------------------------------------------------

/// A query string's parameters, each name at most once.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, FhirError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !allowed.contains(&name.as_ref()) {
                return Err(FhirError::BadRequest(format!(
                    "unknown or unsupported search parameter {:?}; supported here: {}",
                    truncate(&name, 40),
                    allowed.join(", ")
                )));
            }
            if pairs.iter().any(|(seen, _)| *seen == name) {
                return Err(FhirError::BadRequest(format!("search parameter {name} is given more than once")));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Query(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(seen, _)| seen == name).map(|(_, value)| value.as_str())
    }

    /// `_count` (1 to [`MAX_COUNT`]) and `_offset` (from a `next` link).
    fn paging(&self) -> Result<(usize, usize), FhirError> {
        let count = match self.get("_count") {
            None => DEFAULT_COUNT,
            Some(text) => match text.parse::<usize>() {
                Ok(count) if (1..=MAX_COUNT).contains(&count) => count,
                _ => return Err(FhirError::BadRequest(format!("_count must be a whole number from 1 to {MAX_COUNT}"))),
            },
        };
        let offset = match self.get("_offset") {
            None => 0,
            Some(text) => text.parse::<usize>().ok().filter(|offset| *offset <= MAX_OFFSET).ok_or_else(|| {
                FhirError::BadRequest(format!("_offset must be a whole number up to {MAX_OFFSET} (from a next link)"))
            })?,
        };
        Ok((count, offset))
    }

    /// The query string with `_offset` set, for paging links.
    fn with_offset(&self, offset: usize) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.0 {
            if name != "_offset" {
                out.append_pair(name, value);
            }
        }
        if offset > 0 {
            out.append_pair("_offset", &offset.to_string());
        }
        out.finish()
    }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// A date or instant search value with its FHIR prefix (eq, ne, gt, lt, ge, le), as the
/// half-open range of instants it names.
#[derive(Clone, Copy, Debug)]
struct DateSearch {
    prefix: Prefix,
    start: Timestamp,
    end: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

impl DateSearch {
    fn parse(name: &str, text: &str) -> Result<Self, FhirError> {
        let bad = || {
            FhirError::BadRequest(format!(
                "{name}: expected an optional prefix (eq, ne, gt, lt, ge, le) and a date (YYYY-MM-DD) or an instant in UTC (YYYY-MM-DDThh:mm:ssZ)"
            ))
        };
        let (prefix, rest) = match text.get(..2) {
            Some("eq") => (Prefix::Eq, &text[2..]),
            Some("ne") => (Prefix::Ne, &text[2..]),
            Some("gt") => (Prefix::Gt, &text[2..]),
            Some("lt") => (Prefix::Lt, &text[2..]),
            Some("ge") => (Prefix::Ge, &text[2..]),
            Some("le") => (Prefix::Le, &text[2..]),
            _ => (Prefix::Eq, text),
        };
        let date = Date::parse(rest.get(..10).ok_or_else(bad)?).map_err(|_| bad())?;
        let day_start = date.start();
        let (start, end) = match &rest[10..] {
            "" => (day_start, day_start.plus(std::time::Duration::from_secs(86_400))),
            time => {
                let time = time.strip_suffix('Z').or_else(|| time.strip_suffix("+00:00")).ok_or_else(bad)?;
                let bytes = time.as_bytes();
                if bytes.len() != 9 || bytes[0] != b'T' || bytes[3] != b':' || bytes[6] != b':' {
                    return Err(bad());
                }
                let field = |range: std::ops::Range<usize>, max: u64| {
                    time.get(range).and_then(|digits| digits.parse::<u64>().ok()).filter(|value| *value <= max)
                };
                let (Some(hours), Some(minutes), Some(seconds)) = (field(1..3, 23), field(4..6, 59), field(7..9, 59))
                else {
                    return Err(bad());
                };
                let at = day_start.plus(std::time::Duration::from_secs(hours * 3600 + minutes * 60 + seconds));
                (at, at.plus(std::time::Duration::from_secs(1)))
            }
        };
        Ok(DateSearch { prefix, start, end })
    }

    fn matches(&self, at: Timestamp) -> bool {
        match self.prefix {
            Prefix::Eq => self.start <= at && at < self.end,
            Prefix::Ne => !(self.start <= at && at < self.end),
            Prefix::Gt => at >= self.end,
            Prefix::Ge => at >= self.start,
            Prefix::Lt => at < self.start,
            Prefix::Le => at < self.end,
        }
    }
}

/// `patient=ID` or `patient=Patient/ID`.
fn patient_reference(text: &str) -> Result<PatientId, FhirError> {
    let id = text.strip_prefix("Patient/").unwrap_or(text);
    id.parse().map_err(|_| FhirError::BadRequest("patient must be a Patient id (or Patient/id)".to_owned()))
}

// ----- handlers ---------------------------------------------------------------------------

async fn unsupported() -> FhirError {
    FhirError::NotSupported("this FHIR interaction is not supported: see /fhir/metadata".to_owned())
}

async fn method_not_allowed() -> Response {
    let outcome =
        base::operation_outcome("error", "not-supported", "this method is not supported here: see /fhir/metadata");
    (StatusCode::METHOD_NOT_ALLOWED, fhir_json(outcome)).into_response()
}

async fn openapi_document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi::document().to_string()).into_response()
}

async fn metadata() -> FhirResult {
    ok(capability_statement())
}

async fn read_patient(State(state): State<WebState>, headers: HeaderMap, Path(id): Path<String>) -> FhirResult {
    let account = caller(&state.app, &headers).await?;
    let id: PatientId = id.parse().map_err(|_| FhirError::NotFound)?;
    let app = state.app.clone();
    let details = blocking(move || app.read_patient_as(account, Channel::Fhir, id).map_err(FhirError::from)).await?;
    ok(resources::patient(&details))
}

const PATIENT_SEARCH: &[&str] = &["identifier", "family", "birthdate", "_count", "_offset"];

async fn search_patients(State(state): State<WebState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> FhirResult {
    let account = caller(&state.app, &headers).await?;
    let query = Query::parse(raw.as_deref(), PATIENT_SEARCH)?;
    let (count, offset) = query.paging()?;
    let search = match (query.get("identifier"), query.get("family"), query.get("birthdate")) {
        (Some(identifier), None, None) => identifier_query(identifier)?,
        (None, Some(family), Some(birthdate)) => {
            let family = family.trim();
            if family.is_empty() || family.chars().count() > 100 {
                return Err(FhirError::BadRequest("family must be 1 to 100 characters".to_owned()));
            }
            let birth_date = Date::parse(birthdate)
                .map_err(|_| FhirError::BadRequest("birthdate must be a date, YYYY-MM-DD".to_owned()))?;
            PatientQuery::FamilyAndBirthDate { family: family.to_owned(), birth_date }
        }
        _ => {
            return Err(FhirError::BadRequest(
                "search patients by identifier (system|value), or by family and birthdate together".to_owned(),
            ));
        }
    };
    let app = state.app.clone();
    let found =
        blocking(move || app.find_patients_as(account, Channel::Fhir, &search).map_err(FhirError::from)).await?;
    let resources: Vec<Value> = found.iter().map(resources::patient).collect();
    bundle("Patient", &query, resources, count, offset, false, state.app.now())
}

fn identifier_query(text: &str) -> Result<PatientQuery, FhirError> {
    let Some((system, value)) = text.split_once('|') else {
        return Err(FhirError::BadRequest(format!(
            "identifier must be system|value, e.g. {NHS_NUMBER_SYSTEM}|9434765919"
        )));
    };
    if system == NHS_NUMBER_SYSTEM {
        let number = NhsNumber::parse(value)
            .map_err(|_| FhirError::BadRequest("identifier: not a valid NHS number".to_owned()))?;
        return Ok(PatientQuery::NhsNumber(number));
    }
    let local = system.strip_prefix(LOCAL_SYSTEM_PREFIX).and_then(|rest| rest.split_once('/'));
    let Some((organisation, authority)) = local else {
        return Err(FhirError::BadRequest(format!(
            "identifier: unknown system; use {NHS_NUMBER_SYSTEM} or {LOCAL_SYSTEM_PREFIX}{{organisation code}}/{{assigning authority}}"
        )));
    };
    let organisation = OrganisationCode::parse(organisation)
        .map_err(|_| FhirError::BadRequest("identifier: not a valid organisation code in the system".to_owned()))?;
    let authority = resources::authority_from_uri(authority);
    let identifier = LocalIdentifier::parse(&format!("{authority}:{value}"))
        .map_err(|_| FhirError::BadRequest("identifier: not a valid local identifier".to_owned()))?;
    Ok(PatientQuery::Local { organisation, identifier })
}

const ENTRY_SEARCH: &[&str] = &["patient", "_lastUpdated", "date", "_sort", "_count", "_offset"];
const ENTRY_SEARCH_WITH_CATEGORY: &[&str] =
    &["patient", "category", "_lastUpdated", "date", "_sort", "_count", "_offset"];

/// The search parameters of an entry resource type.
fn entry_search_parameters(entry_type: &EntryType) -> &'static [&'static str] {
    if entry_type.categories().is_empty() { ENTRY_SEARCH } else { ENTRY_SEARCH_WITH_CATEGORY }
}

fn entry_routes(router: Router<WebState>, entry_type: &'static EntryType) -> Router<WebState> {
    router
        .route(
            &format!("/fhir/{}", entry_type.name),
            get(move |State(state): State<WebState>, headers: HeaderMap, RawQuery(raw): RawQuery| {
                search_entries(entry_type, state, headers, raw)
            }),
        )
        .route(
            &format!("/fhir/{}/{{id}}", entry_type.name),
            get(move |State(state): State<WebState>, headers: HeaderMap, Path(id): Path<String>| {
                read_entry(entry_type, state, headers, id)
            }),
        )
}

async fn read_entry(entry_type: &'static EntryType, state: WebState, headers: HeaderMap, id: String) -> FhirResult {
    let account = caller(&state.app, &headers).await?;
    let id: EntryId = id.parse().map_err(|_| FhirError::NotFound)?;
    let app = state.app.clone();
    let view = blocking(move || app.read_entry_as(account, Channel::Fhir, id).map_err(FhirError::from)).await?;
    let visible = view.entries.first().ok_or(FhirError::NotFound)?;
    if !entry_type.serves_kind(visible.entry.kind) {
        return Err(FhirError::NotFound);
    }
    let resource = entries::entry_resource(visible, observations_of(&view, visible.entry.id), view.patient.account);
    ok_serialize(&resource.ok_or(FhirError::NotFound)?)
}

fn observations_of(view: &AccountRecordView, entry: EntryId) -> &[kith_core::model::Observation] {
    view.observations.get(&entry).map_or(&[], Vec::as_slice)
}

async fn search_entries(
    entry_type: &'static EntryType,
    state: WebState,
    headers: HeaderMap,
    raw: Option<String>,
) -> FhirResult {
    // The token check and the read run in one read transaction (in place on SQLite, else in
    // one blocking task); a missing or dead token is still answered before any complaint
    // about the parameters. The answer waits, without holding a thread, for the read's
    // audit events.
    let token = bearer_token(&headers);
    let search = parse_entry_search(entry_type, raw.as_deref());
    let app = state.app.clone();
    let (search, pending) = read_then_audit(&state.app, move || {
        let search = match search {
            Ok(search) => search,
            Err(error) => {
                authenticate(&app, token)?;
                return Err(error);
            }
        };
        let token = token.ok_or(FhirError::Unauthorised)?;
        let selection = EntrySelection::Kinds(&search.kinds);
        let pending = app.read_entries_by_token_then_audit(&token, Channel::Fhir, search.patient, selection)?;
        Ok((search, pending))
    })
    .await?;
    let view = match pending.durable().await.map_err(AppError::from)?.ok_or(FhirError::Unauthorised)? {
        Ok(view) => Some(view),
        // A patient the caller may not see reads as one with nothing of this type.
        Err(AppError::Denied) => None,
        Err(error) => return Err(FhirError::from(error)),
    };
    let EntrySearch { query, count, offset, last_updated, date, ascending, .. } = search;
    let name = entry_type.name;
    let now = state.app.now();
    let Some(view) = view else { return bundle(name, &query, Vec::new(), count, offset, false, now) };
    let mut matching: Vec<&kith_app::VisibleEntry> = view
        .entries
        .iter()
        .filter(|visible| last_updated.is_none_or(|search| search.matches(visible.entry.recorded_at)))
        .filter(|visible| date.is_none_or(|search| search.matches(visible.entry.effective_at)))
        .collect();
    if ascending {
        matching.reverse();
    }
    let total = matching.len();
    // Only kinds served as this type were read, so every entry has its resource.
    let items = matching
        .iter()
        .skip(offset)
        .take(count)
        .filter_map(|visible| {
            entries::entry_resource(visible, observations_of(&view, visible.entry.id), view.patient.account)
        })
        .map(|resource| (resource.id(), resource))
        .collect();
    let page = typed::Page { items, total, offset, count, some_hidden: view.some_hidden };
    page_bundle(name, &query, page, now)
}

/// A search of entries as asked: which patient, kinds, dates, order and page.
struct EntrySearch {
    query: Query,
    count: usize,
    offset: usize,
    patient: PatientId,
    kinds: Vec<EntryKind>,
    last_updated: Option<DateSearch>,
    date: Option<DateSearch>,
    ascending: bool,
}

fn parse_entry_search(entry_type: &'static EntryType, raw: Option<&str>) -> Result<EntrySearch, FhirError> {
    let query = Query::parse(raw, entry_search_parameters(entry_type))?;
    let (count, offset) = query.paging()?;
    let name = entry_type.name;
    let patient = patient_reference(
        query.get("patient").ok_or_else(|| FhirError::BadRequest(format!("search {name} by patient")))?,
    )?;
    let kinds = match query.get("category") {
        None => entry_type.kinds(),
        Some(category) => match entry_type.kinds_in(category) {
            kinds if !kinds.is_empty() => kinds,
            _ => {
                let codes = entry_type.categories();
                return Err(FhirError::BadRequest(format!("category must be one of {}", codes.join(", "))));
            }
        },
    };
    let last_updated = query.get("_lastUpdated").map(|text| DateSearch::parse("_lastUpdated", text)).transpose()?;
    let date = query.get("date").map(|text| DateSearch::parse("date", text)).transpose()?;
    let ascending = match query.get("_sort") {
        None | Some("-date") => false,
        Some("date") => true,
        Some(_) => return Err(FhirError::BadRequest("_sort must be date or -date".to_owned())),
    };
    Ok(EntrySearch { query, count, offset, patient, kinds, last_updated, date, ascending })
}

/// A searchset of what the caller may see: the total counts only that, and the paging links
/// repeat the query. When the record holds entries of the searched kinds that the caller may
/// not see, Kith says so once (never how many, nor their labels): an extension on
/// `Bundle.meta` (a Bundle has no extensions of its own in R4) and an OperationOutcome entry
/// with the standard issue code `suppressed`.
/// `now` is the App's clock at the search.
fn bundle(
    resource_type: &str,
    query: &Query,
    resources: Vec<Value>,
    count: usize,
    offset: usize,
    some_hidden: bool,
    now: Timestamp,
) -> FhirResult {
    let total = resources.len();
    let items = resources
        .into_iter()
        .skip(offset)
        .take(count)
        .map(|resource| (resource["id"].as_str().unwrap_or_default().to_owned(), resource))
        .collect();
    page_bundle(resource_type, query, typed::Page { items, total, offset, count, some_hidden }, now)
}

/// The searchset for one page (see [`typed::bundle`]), last updated `now` (the App's
/// clock); the paging links repeat the query.
fn page_bundle<R: serde::Serialize>(
    resource_type: &str,
    query: &Query,
    page: typed::Page<R>,
    now: Timestamp,
) -> FhirResult {
    let path = format!("/fhir/{resource_type}");
    let links = |offset: usize| {
        let query = query.with_offset(offset);
        if query.is_empty() { path.clone() } else { format!("{path}?{query}") }
    };
    ok_serialize(&typed::bundle(resource_type, page, links, base::instant(now)))
}

/// `POST /fhir/Patient/{id}/$break-glass` with a Parameters body: `reason` (required) and
/// optionally `team` (a CareTeam id) to break it through.
async fn break_glass(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> FhirResult {
    let account = caller(&state.app, &headers).await?;
    let id: PatientId = id.parse().map_err(|_| FhirError::NotFound)?;
    let parameters = parameters_body(&body)?;
    let parameter = |name: &str| {
        parameter(&parameters, name)
            .and_then(|parameter| parameter["valueString"].as_str().or_else(|| parameter["valueId"].as_str()))
    };
    let reason = parameter("reason")
        .ok_or_else(|| FhirError::Unprocessable("parameter reason (valueString) is required".to_owned()))?;
    let reason = Reason::parse(reason).map_err(|error| FhirError::Unprocessable(error.to_string()))?;
    let team = parameter("team")
        .map(|text| text.strip_prefix("CareTeam/").unwrap_or(text).parse::<TeamId>())
        .transpose()
        .map_err(|_| FhirError::Unprocessable("team must be a CareTeam id".to_owned()))?;
    let app = state.app.clone();
    let grant =
        blocking(move || app.break_glass_as(account, Channel::Fhir, id, team, &reason).map_err(FhirError::from))
            .await?;
    ok(json!({
        "resourceType": "Parameters",
        "parameter": [
            { "name": "grant", "valueString": grant.id.to_string() },
            { "name": "start", "valueInstant": base::instant(grant.started_at) },
            { "name": "expires", "valueInstant": base::instant(grant.expires_at) },
            { "name": "team", "valueReference": { "reference": format!("CareTeam/{}", grant.team) } },
        ],
    }))
}

const CONSENT_SEARCH: &[&str] = &["patient", "_count", "_offset"];

async fn search_consents(State(state): State<WebState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> FhirResult {
    let account = caller(&state.app, &headers).await?;
    let query = Query::parse(raw.as_deref(), CONSENT_SEARCH)?;
    let (count, offset) = query.paging()?;
    let patient = patient_reference(
        query.get("patient").ok_or_else(|| FhirError::BadRequest("search Consent by patient".to_owned()))?,
    )?;
    let app = state.app.clone();
    let links = blocking(move || match app.care_links_as(account, Channel::Fhir, patient) {
        Ok(links) => Ok(links),
        Err(AppError::Denied) => Ok(Vec::new()),
        Err(error) => Err(FhirError::from(error)),
    })
    .await?;
    bundle("Consent", &query, links.iter().map(resources::consent).collect(), count, offset, false, state.app.now())
}

async fn read_consent(State(state): State<WebState>, headers: HeaderMap, Path(id): Path<String>) -> FhirResult {
    let account = caller(&state.app, &headers).await?;
    let (patient, team) = resources::parse_consent_id(&id).ok_or(FhirError::NotFound)?;
    let app = state.app.clone();
    let links = blocking(move || app.care_links_as(account, Channel::Fhir, patient).map_err(FhirError::from)).await?;
    let link = links.iter().find(|link| link.team == team).ok_or(FhirError::NotFound)?;
    ok(resources::consent(link))
}

/// `PUT /fhir/Consent/{id}`: the labels in `provision.securityLabel` (Kith's privacy-label
/// codes; other systems are ignored) become the team's. The patient changes their own; a
/// professional of the team only with a reason (extension on-behalf-reason), and the
/// patient is told.
async fn put_consent(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> FhirResult {
    let account = caller(&state.app, &headers).await?;
    let (patient, team) = resources::parse_consent_id(&id).ok_or(FhirError::NotFound)?;
    let consent: Value = serde_json::from_slice(&body)
        .map_err(|_| FhirError::BadRequest("the body must be a FHIR Consent resource in JSON".to_owned()))?;
    if consent["resourceType"] != "Consent" {
        return Err(FhirError::BadRequest("the body must be a FHIR Consent resource".to_owned()));
    }
    if consent["id"] != id.as_str() {
        return Err(FhirError::BadRequest("the Consent's id must be the one in the URL".to_owned()));
    }
    if consent["status"] != "active" {
        return Err(FhirError::Unprocessable("status must be active (discharging a team is not done here)".to_owned()));
    }
    let mut labels = kith_core::LabelSet::EMPTY;
    if let Some(codings) = consent["provision"]["securityLabel"].as_array() {
        for coding in codings.iter().filter(|coding| coding["system"] == PRIVACY_LABEL_SYSTEM) {
            let code = coding["code"].as_str().unwrap_or_default();
            let label = kith_core::PrivacyLabel::parse(code).map_err(|_| {
                FhirError::Unprocessable(
                    "provision.securityLabel: codes are general, sexual_health, mental_health and social_care"
                        .to_owned(),
                )
            })?;
            labels = labels.with(label);
        }
    }
    let reason = consent["extension"]
        .as_array()
        .and_then(|list| list.iter().find(|e| e["url"] == resources::ON_BEHALF_REASON_EXTENSION))
        .and_then(|extension| extension["valueString"].as_str())
        .map(Reason::parse)
        .transpose()
        .map_err(|error| FhirError::Unprocessable(format!("on-behalf-reason: {error}")))?;
    let app = state.app.clone();
    let link = blocking(move || {
        app.change_consent_as(account, Channel::Fhir, patient, team, labels, reason.as_ref()).map_err(FhirError::from)
    })
    .await?;
    ok(resources::consent(&link))
}

const AUDIT_SEARCH: &[&str] = &["patient", "subtype", "_count", "_offset"];
/// How many audit events one search reads at most (newest first).
const MAX_AUDIT_EVENTS: i64 = 1000;

/// `GET /fhir/AuditEvent[?patient=ID][&subtype=ACTION]`: a patient reads the events about
/// their own record (their own actions left out); an organisation's privacy officer reads
/// its break-the-glass events, or with `subtype` what else they review in their
/// organisations, each with its reason — `consent.change` (consent changed, or attempted,
/// on patients' behalf), `care_link.create` (patients brought into teams, and look-ups that
/// matched no one), `patient.lookup_limit`, `patient.password_reset_request` and
/// `patient.invite`; no one else (403, whatever the patient).
async fn search_audit_events(State(state): State<WebState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> FhirResult {
    let account = caller(&state.app, &headers).await?;
    let query = Query::parse(raw.as_deref(), AUDIT_SEARCH)?;
    let (count, offset) = query.paging()?;
    let patient = query.get("patient").map(patient_reference).transpose()?;
    // A token: [system|]code, the system (when given) Kith's audit actions.
    let subtype = match query.get("subtype").map(|token| token.split_once('|').unwrap_or(("", token))) {
        None => None,
        Some((system, code)) if system.is_empty() || system == resources::AUDIT_ACTION_SYSTEM => Some(code.to_owned()),
        Some(_) => {
            return Err(FhirError::BadRequest(format!("subtype: the system is {}", resources::AUDIT_ACTION_SYSTEM)));
        }
    };
    let app = state.app.clone();
    let events = blocking(move || {
        let own = match patient {
            Some(patient) => app.is_own_record(account, patient)?,
            None => app.store().read(|tx| Ok::<_, AppError>(tx.patient_by_account(account)?.is_some()))?,
        };
        let of_subtype = |entry: &kith_app::AccessLogEntry| subtype.as_ref().is_none_or(|code| entry.action == *code);
        if own {
            let log = app.access_log(account, false, None, MAX_AUDIT_EVENTS, Channel::Fhir)?;
            return Ok(log.iter().filter(|entry| of_subtype(entry)).map(resources::audit_event).collect());
        }
        let review = subtype.as_deref().and_then(kith_app::OfficerReview::from_action);
        let reviewed = match review {
            Some(review) => app
                .officer_review(account, review, patient, MAX_AUDIT_EVENTS, Channel::Fhir)
                .map(|events| events.iter().map(resources::reviewed_audit_event).collect::<Vec<Value>>()),
            None => app
                .break_glass_log(account, patient, MAX_AUDIT_EVENTS, Channel::Fhir)
                .map(|log| log.iter().filter(|entry| of_subtype(entry)).map(resources::audit_event).collect()),
        };
        match reviewed {
            Ok(events) => Ok(events),
            Err(AppError::Forbidden(_)) => Err(FhirError::Forbidden(
                "audit events are for the patient whose record it is and for privacy officers".to_owned(),
            )),
            Err(error) => Err(error.into()),
        }
    })
    .await?;
    bundle("AuditEvent", &query, events, count, offset, false, state.app.now())
}

const NO_SEARCH: &[&str] = &["_count", "_offset"];

async fn search_organizations(
    State(state): State<WebState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> FhirResult {
    let account = caller(&state.app, &headers).await?;
    let query = Query::parse(raw.as_deref(), NO_SEARCH)?;
    let (count, offset) = query.paging()?;
    let app = state.app.clone();
    let teams = blocking(move || app.teams_as(account).map_err(FhirError::from)).await?;
    let mut organisations: Vec<&kith_core::model::Organisation> = Vec::new();
    for directory in &teams {
        if !organisations.iter().any(|o| o.id == directory.organisation.id) {
            organisations.push(&directory.organisation);
        }
    }
    let resources = organisations.into_iter().map(resources::organization).collect();
    bundle("Organization", &query, resources, count, offset, false, state.app.now())
}

async fn read_organization(State(state): State<WebState>, headers: HeaderMap, Path(id): Path<String>) -> FhirResult {
    caller(&state.app, &headers).await?;
    let id: kith_core::OrganisationId = id.parse().map_err(|_| FhirError::NotFound)?;
    let app = state.app.clone();
    let organisation = blocking(move || app.organisation_directory(id).map_err(FhirError::from)).await?;
    ok(resources::organization(&organisation))
}

async fn search_care_teams(State(state): State<WebState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> FhirResult {
    let account = caller(&state.app, &headers).await?;
    let query = Query::parse(raw.as_deref(), NO_SEARCH)?;
    let (count, offset) = query.paging()?;
    let app = state.app.clone();
    let teams = blocking(move || app.teams_as(account).map_err(FhirError::from)).await?;
    bundle("CareTeam", &query, teams.iter().map(resources::care_team).collect(), count, offset, false, state.app.now())
}

async fn read_care_team(State(state): State<WebState>, headers: HeaderMap, Path(id): Path<String>) -> FhirResult {
    let account = caller(&state.app, &headers).await?;
    let id: TeamId = id.parse().map_err(|_| FhirError::NotFound)?;
    let app = state.app.clone();
    let team = blocking(move || app.team_as(account, id).map_err(FhirError::from)).await?;
    ok(resources::care_team(&team))
}

async fn read_practitioner(State(state): State<WebState>, headers: HeaderMap, Path(id): Path<String>) -> FhirResult {
    let account = caller(&state.app, &headers).await?;
    let id: AccountId = id.parse().map_err(|_| FhirError::NotFound)?;
    let app = state.app.clone();
    let practitioner = blocking(move || app.practitioner_as(account, id).map_err(FhirError::from)).await?;
    ok(resources::practitioner(&practitioner))
}

const ROLE_SEARCH: &[&str] = &["practitioner", "_count", "_offset"];

async fn search_practitioner_roles(
    State(state): State<WebState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> FhirResult {
    let account = caller(&state.app, &headers).await?;
    let query = Query::parse(raw.as_deref(), ROLE_SEARCH)?;
    let (count, offset) = query.paging()?;
    let practitioner = query.get("practitioner").ok_or_else(|| {
        FhirError::BadRequest("search PractitionerRole by practitioner (a Practitioner id)".to_owned())
    })?;
    let practitioner: AccountId = practitioner
        .strip_prefix("Practitioner/")
        .unwrap_or(practitioner)
        .parse()
        .map_err(|_| FhirError::BadRequest("practitioner must be a Practitioner id".to_owned()))?;
    let app = state.app.clone();
    let roles = blocking(move || match app.practitioner_as(account, practitioner) {
        Ok(found) => Ok(found.roles),
        Err(AppError::Denied) => Ok(Vec::new()),
        Err(error) => Err(FhirError::from(error)),
    })
    .await?;
    let resources = roles.iter().map(|(membership, team)| resources::practitioner_role(membership, team)).collect();
    bundle("PractitionerRole", &query, resources, count, offset, false, state.app.now())
}

async fn read_practitioner_role(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> FhirResult {
    let account = caller(&state.app, &headers).await?;
    let (practitioner, team) = resources::parse_consent_id(&id).ok_or(FhirError::NotFound)?;
    let practitioner = AccountId::from_uuid(practitioner.as_uuid());
    let app = state.app.clone();
    let found = blocking(move || app.practitioner_as(account, practitioner).map_err(FhirError::from)).await?;
    let (membership, team) = found.roles.iter().find(|(_, t)| t.id == team).ok_or(FhirError::NotFound)?;
    ok(resources::practitioner_role(membership, team))
}

/// The parameter `name` of a Parameters resource.
fn parameter<'v>(parameters: &'v Value, name: &str) -> Option<&'v Value> {
    parameters["parameter"].as_array().and_then(|list| list.iter().find(|parameter| parameter["name"] == name))
}

fn parameters_body(body: &[u8]) -> Result<Value, FhirError> {
    let parameters: Value = serde_json::from_slice(body)
        .map_err(|_| FhirError::BadRequest("the body must be a FHIR Parameters resource in JSON".to_owned()))?;
    if parameters["resourceType"] != "Parameters" {
        return Err(FhirError::BadRequest("the body must be a FHIR Parameters resource".to_owned()));
    }
    Ok(parameters)
}

/// `POST /fhir/CareTeam/{id}/$add-patient` with `identifier` (valueIdentifier: the NHS
/// number or a local identifier of the team's organisation) and `birthdate` (valueDate),
/// both required and matched exactly: a professional of the team brings the patient in with
/// the team's default labels. Answers the new Consent.
async fn add_patient(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> FhirResult {
    let account = caller(&state.app, &headers).await?;
    let team: TeamId = id.parse().map_err(|_| FhirError::NotFound)?;
    let parameters = parameters_body(&body)?;
    let identifier = parameter(&parameters, "identifier")
        .map(|parameter| &parameter["valueIdentifier"])
        .and_then(|identifier| Some(format!("{}|{}", identifier["system"].as_str()?, identifier["value"].as_str()?)))
        .ok_or_else(|| {
            FhirError::Unprocessable(
                "parameter identifier (valueIdentifier with system and value) is required".to_owned(),
            )
        })?;
    let identifier = identifier_query(&identifier).map_err(|error| match error {
        FhirError::BadRequest(text) => FhirError::Unprocessable(text),
        other => other,
    })?;
    let birth_date =
        parameter(&parameters, "birthdate").and_then(|parameter| parameter["valueDate"].as_str()).ok_or_else(|| {
            FhirError::Unprocessable("parameter birthdate (valueDate, YYYY-MM-DD) is required".to_owned())
        })?;
    let birth_date = Date::parse(birth_date)
        .map_err(|_| FhirError::Unprocessable("birthdate must be a date, YYYY-MM-DD".to_owned()))?;
    let app = state.app.clone();
    let link = blocking(move || {
        app.add_patient_to_team_as(account, Channel::Fhir, team, &identifier, birth_date, &kith_app::AddBasis::Referral)
            .map_err(FhirError::from)
    })
    .await?;
    ok(resources::consent(&link))
}

/// `POST /fhir/Observation`: a professional records a measurement for a patient of one of
/// their teams (the team in `performer` when given, else the first that may write), or a
/// patient for themselves. The label comes from `meta.security` (Kith's privacy-label
/// system), general by default.
async fn create_observation(State(state): State<WebState>, headers: HeaderMap, body: Bytes) -> FhirResult {
    let account = caller(&state.app, &headers).await?;
    let observation: Value = serde_json::from_slice(&body)
        .map_err(|_| FhirError::BadRequest("the body must be a FHIR Observation resource in JSON".to_owned()))?;
    if observation["resourceType"] != "Observation" {
        return Err(FhirError::BadRequest("the body must be a FHIR Observation resource".to_owned()));
    }
    let invalid = |text: &str| FhirError::Unprocessable(text.to_owned());
    let patient = observation["subject"]["reference"]
        .as_str()
        .and_then(|reference| reference.strip_prefix("Patient/"))
        .and_then(|id| id.parse::<PatientId>().ok())
        .ok_or_else(|| invalid("subject.reference must be Patient/{id}"))?;
    let title = observation["code"]["text"]
        .as_str()
        .or_else(|| observation["code"]["coding"][0]["display"].as_str())
        .ok_or_else(|| invalid("code.text (or code.coding[0].display) names what was measured"))?;
    let title = kith_core::text::Title::parse(title)
        .map_err(|error| FhirError::Unprocessable(format!("code.text: {error}")))?;
    let value = if let Some(text) = observation["valueString"].as_str() {
        text.to_owned()
    } else if let Some(number) = observation["valueQuantity"]["value"].as_number() {
        match observation["valueQuantity"]["unit"].as_str() {
            Some(unit) => format!("{number} {unit}"),
            None => number.to_string(),
        }
    } else {
        return Err(invalid("a value is required: valueString or valueQuantity.value"));
    };
    if value.chars().count() > 10_000 {
        return Err(invalid("the value is longer than 10,000 characters"));
    }
    let mut label = kith_core::PrivacyLabel::General;
    if let Some(security) = observation["meta"]["security"].as_array() {
        let mut labels = security.iter().filter(|coding| coding["system"] == PRIVACY_LABEL_SYSTEM);
        if let Some(coding) = labels.next() {
            label = kith_core::PrivacyLabel::parse(coding["code"].as_str().unwrap_or_default()).map_err(|_| {
                invalid("meta.security: the privacy label must be general, sexual_health, mental_health or social_care")
            })?;
        }
        if labels.next().is_some() {
            return Err(invalid("meta.security: one privacy label per entry"));
        }
    }
    let effective_at = match observation["effectiveDateTime"].as_str() {
        None => None,
        Some(text) => {
            let search = DateSearch::parse("effectiveDateTime", text)
                .map_err(|_| invalid("effectiveDateTime must be a date or an instant in UTC"))?;
            if search.prefix != Prefix::Eq {
                return Err(invalid("effectiveDateTime must be a date or an instant in UTC"));
            }
            Some(search.start)
        }
    };
    let team = match observation["performer"][0]["reference"].as_str() {
        None => None,
        Some(reference) => Some(
            reference
                .strip_prefix("CareTeam/")
                .and_then(|id| id.parse::<TeamId>().ok())
                .ok_or_else(|| invalid("performer must be a CareTeam reference"))?,
        ),
    };
    let app = state.app.clone();
    let (entry, view) = blocking(move || {
        let new = kith_app::NewEntry {
            kind: EntryKind::Measurement,
            label: Some(label),
            title,
            body: value,
            effective_at: effective_at.unwrap_or_else(|| app.now()),
        };
        let entry = if app.is_own_record(account, patient)? {
            app.record_own_entry(account, Channel::Fhir, &new)
        } else {
            app.record_entry_as(account, Channel::Fhir, patient, team, &new)
        }
        .map_err(FhirError::from)?;
        let view = app.read_entry_as(account, Channel::Fhir, entry.id).map_err(FhirError::from)?;
        Ok((entry, view))
    })
    .await?;
    let visible = view.entries.first().ok_or(FhirError::NotFound)?;
    let resource = entries::entry_resource(visible, &[], view.patient.account).ok_or(FhirError::NotFound)?;
    let body = serde_json::to_vec(&resource).map_err(|_| FhirError::Unavailable)?;
    let mut response = (StatusCode::CREATED, [(header::CONTENT_TYPE, FHIR_JSON)], body).into_response();
    if let Ok(location) = header::HeaderValue::from_str(&format!("/fhir/Observation/{}/_history/1", entry.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// What this server serves, exactly.
fn capability_statement() -> Value {
    let search = |name: &str, kind: &str, documentation: &str| json!({ "name": name, "type": kind, "documentation": documentation });
    let paging = [
        search("_count", "number", "page size, 1 to 500 (default 50)"),
        search("_offset", "number", "where a page starts (from next and previous links)"),
    ];
    let mut resources: Vec<Value> = ResourceType::ALL
        .into_iter()
        .map(|resource_type| {
            let name = resource_type.name();
            match resource_type {
                ResourceType::Patient => {
                    let mut patient_params = vec![
                        search("identifier", "token", "system|value: the NHS number or a local identifier"),
                        search("family", "string", "family name (starts with, ignoring case); with birthdate"),
                        search("birthdate", "date", "date of birth, YYYY-MM-DD; with family"),
                    ];
                    patient_params.extend(paging.iter().cloned());
                    json!({
                        "type": name,
                        "interaction": [{ "code": "read" }, { "code": "search-type" }],
                        "searchParam": patient_params,
                        "operation": [{
                            "name": "break-glass",
                            "definition": "https://kith.dev/fhir/OperationDefinition/Patient-break-glass",
                            "documentation": "Emergency access to the whole record for the organisation's set time: Parameters with reason (required) and team (optional). Audited; the patient and privacy officers are told.",
                        }],
                    })
                }
                ResourceType::Consent => json!({
                    "type": name,
                    "interaction": [{ "code": "read" }, { "code": "search-type" }, { "code": "update" }],
                    "searchParam": [search("patient", "reference", "required: the patient"), paging[0].clone(), paging[1].clone()],
                    "documentation": "One per care link: the labels a team (CareTeam) may see. The patient updates their own; a professional of the team only with the on-behalf-reason extension.",
                }),
                ResourceType::AuditEvent => json!({
                    "type": name,
                    "interaction": [{ "code": "search-type" }],
                    "searchParam": [
                        search("patient", "reference", "the patient (optional)"),
                        search("subtype", "token", "the action (optional): for a privacy officer consent.change (consent on patients' behalf), care_link.create, patient.lookup_limit, patient.password_reset_request or patient.invite; else break glass"),
                        paging[0].clone(),
                        paging[1].clone(),
                    ],
                    "documentation": "A patient reads the events about their own record; an organisation's privacy officer reads its break-the-glass events, and by subtype the consent changes made on patients' behalf and the patient look-ups it reviews, each with its reason; no one else.",
                }),
                ResourceType::Organization => json!({
                    "type": name,
                    "interaction": [{ "code": "read" }, { "code": "search-type" }],
                    "searchParam": [paging[0].clone(), paging[1].clone()],
                    "documentation": "Any caller reads an organisation; a search lists the organisations of the caller's teams.",
                }),
                ResourceType::CareTeam => json!({
                    "type": name,
                    "interaction": [{ "code": "read" }, { "code": "search-type" }],
                    "searchParam": [paging[0].clone(), paging[1].clone()],
                    "documentation": "A team with its active members, for its members and for patients linked to it; a search lists the caller's teams.",
                    "operation": [{
                        "name": "add-patient",
                        "definition": "https://kith.dev/fhir/OperationDefinition/CareTeam-add-patient",
                        "documentation": "A professional of the team brings a patient in by exact identifier and birthdate (Parameters: identifier, birthdate), with the team's default labels.",
                    }],
                }),
                ResourceType::Practitioner => json!({
                    "type": name,
                    "interaction": [{ "code": "read" }],
                    "documentation": "A professional, for themselves and for those who may read one of their teams.",
                }),
                ResourceType::PractitionerRole => json!({
                    "type": name,
                    "interaction": [{ "code": "read" }, { "code": "search-type" }],
                    "searchParam": [search("practitioner", "reference", "required: the professional"), paging[0].clone(), paging[1].clone()],
                    "documentation": "A professional's membership of a team (the team in the care-team extension).",
                }),
            }
        })
        .collect();
    for entry_type in ENTRY_TYPES {
        let mut params = vec![search("patient", "reference", "required: the patient")];
        let codes = entry_type.categories();
        if !codes.is_empty() {
            params.push(search("category", "token", &format!("one of {}", codes.join(", "))));
        }
        params.extend([
            search("date", "date", "the entry's clinical time, with a prefix (eq, ne, gt, lt, ge, le)"),
            search("_lastUpdated", "date", "when Kith recorded it, with a prefix"),
            search("_sort", "string", "-date (newest first, the default) or date"),
        ]);
        params.extend(paging.iter().cloned());
        resources.push(json!({
            "type": entry_type.name,
            "interaction": [{ "code": "read" }, { "code": "search-type" }],
            "searchParam": params,
        }));
    }
    for resource in &mut resources {
        if resource["type"] == "Observation" {
            resource["interaction"].as_array_mut().expect("an array").push(json!({ "code": "create" }));
        }
    }
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "publisher": "Kith",
        "kind": "instance",
        "software": { "name": "Kith", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "Kith patient-held record: FHIR R4 API" },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "security": {
                "description": "Bearer API tokens (kith token create). Every answer obeys the patient's consent; every read is audited.",
            },
            "resource": resources,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_searches() {
        let day = DateSearch::parse("date", "2026-11-25").unwrap();
        let noon = Date::parse("2026-11-25").unwrap().start().plus(std::time::Duration::from_secs(12 * 3600));
        assert!(day.matches(noon));
        assert!(!DateSearch::parse("date", "gt2026-11-25").unwrap().matches(noon));
        assert!(DateSearch::parse("date", "ge2026-11-25").unwrap().matches(noon));
        assert!(DateSearch::parse("date", "lt2026-11-26").unwrap().matches(noon));
        assert!(!DateSearch::parse("date", "lt2026-11-25T12:00:00Z").unwrap().matches(noon));
        assert!(DateSearch::parse("date", "le2026-11-25T12:00:00Z").unwrap().matches(noon));
        assert!(DateSearch::parse("date", "ne2026-11-24").unwrap().matches(noon));
        for bad in ["", "2026-13-01", "xx2026-11-25", "2026-11-25T25:00:00Z", "2026-11-25T12:00:00+01:00", "2026"] {
            assert!(DateSearch::parse("date", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_capability_statement_and_openapi_list_every_resource_type_once() {
        let names: Vec<&str> = ResourceType::ALL
            .into_iter()
            .map(ResourceType::name)
            .chain(ENTRY_TYPES.iter().map(|entry_type| entry_type.name))
            .collect();
        let statement = capability_statement();
        let listed: Vec<&str> = statement["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .map(|resource| resource["type"].as_str().unwrap())
            .collect();
        assert_eq!(listed, names);
        let document = openapi::document();
        for name in names {
            let paths = document["paths"].as_object().unwrap();
            assert!(paths.keys().any(|path| path.starts_with(&format!("/fhir/{name}"))), "{name} has no path");
        }
    }

    #[test]
    fn queries_refuse_unknown_and_repeated_parameters() {
        assert!(Query::parse(Some("patient=1&_count=5"), ENTRY_SEARCH).is_ok());
        assert!(Query::parse(Some("patient=1&code=x"), ENTRY_SEARCH).is_err());
        assert!(Query::parse(Some("patient=1&patient=2"), ENTRY_SEARCH).is_err());
        let query = Query::parse(Some("patient=a%7Cb&_count=5&_offset=10"), ENTRY_SEARCH).unwrap();
        assert_eq!(query.with_offset(15), "patient=a%7Cb&_count=5&_offset=15");
        assert_eq!(query.paging().unwrap(), (5, 10));
        assert!(Query::parse(Some("_count=0"), ENTRY_SEARCH).unwrap().paging().is_err());
        assert!(Query::parse(Some("_count=501"), ENTRY_SEARCH).unwrap().paging().is_err());
    }
}
