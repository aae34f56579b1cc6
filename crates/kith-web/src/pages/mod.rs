//! The web application's pages: server-rendered HTML from compile-time-checked, escaping
//! templates (`templates/`), plain forms that work without JavaScript, one layout with the
//! signed-in person's name, their teams and roles and a team switcher.
//!
//! Every route is a row of one table ([`route_table`]); the router is built from it, and
//! `tests/csrf.rs` posts to every POST row. Every state-changing form carries a CSRF token
//! and is refused when the browser says it comes from another site: handlers take their
//! fields only through the extractors of [`csrf`] (signed-in forms use a token derived from
//! the session; the sign-in and reset forms, before any session exists, a double-submit
//! cookie). Handlers answer [`error::PageResult`]: failures on our side are logged once, by
//! [`error::PageError`], and shown as the same plain page; blocking work runs through
//! [`error::blocking`]. Sign-in and reset attempts are throttled per address, and password
//! hashing runs on blocking threads under a concurrency cap.

pub mod csrf;
pub mod error;
pub mod guard;
mod invitations;
mod patient;
mod registration;
mod team;
mod workspace;

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::MethodRouter;
use kith_app::AppError;
use kith_app::password::MINIMUM_PASSWORD_LENGTH;
use kith_app::sessions::{SignIn, UNUSABLE_LINK, WRONG_CODE, WebSession};
use kith_core::TeamId;
use kith_core::audit::Channel;
use kith_core::team::{MembershipRole, TeamKind};
use kith_core::text::Secret;
use serde::Deserialize;

use crate::WebState;
use csrf::{AnonymousCsrfForm, CsrfForm};
use error::{PageError, PageResult, blocking, or_logged};
use guard::{ClientAddress, FORM_COOKIE, MaybeSignedIn, SignedIn};

// ----- the route table ------------------------------------------------------------------------

/// How a page route's form is posted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormEncoding {
    /// `application/x-www-form-urlencoded`: [`CsrfForm`] or [`AnonymousCsrfForm`].
    UrlEncoded,
    /// `multipart/form-data` (an upload): [`csrf::CsrfMultipart`].
    Multipart,
}

/// One row of the pages' route table: a path, how it is reached (a page to GET, or a form
/// to POST and its encoding) and its handler. The router is built from the table alone.
pub(crate) struct PageRoute {
    path: &'static str,
    form: Option<FormEncoding>,
    handler: MethodRouter<WebState>,
}

impl PageRoute {
    pub(crate) fn get<H: Handler<T, WebState>, T: 'static>(path: &'static str, handler: H) -> Self {
        PageRoute { path, form: None, handler: axum::routing::get(handler) }
    }

    /// A urlencoded form; its handler takes its fields through [`CsrfForm`] or
    /// [`AnonymousCsrfForm`].
    pub(crate) fn post<H: Handler<T, WebState>, T: 'static>(path: &'static str, handler: H) -> Self {
        PageRoute { path, form: Some(FormEncoding::UrlEncoded), handler: axum::routing::post(handler) }
    }

    /// An upload; its handler takes its fields through [`csrf::CsrfMultipart`].
    pub(crate) fn upload<H: Handler<T, WebState>, T: 'static>(path: &'static str, handler: H) -> Self {
        PageRoute { path, form: Some(FormEncoding::Multipart), handler: axum::routing::post(handler) }
    }

    /// The largest body the route reads.
    pub(crate) fn body_limit(self, bytes: usize) -> Self {
        PageRoute { handler: self.handler.layer(DefaultBodyLimit::max(bytes)), ..self }
    }
}

/// Every page route: this module's, then registration's, invitations' and the team pages'.
fn route_table() -> Vec<PageRoute> {
    let mut table = vec![
        PageRoute::get("/", home),
        PageRoute::get("/sign-in", sign_in_page),
        PageRoute::post("/sign-in", sign_in),
        PageRoute::post("/sign-out", sign_out),
        PageRoute::post("/team", switch_team),
        PageRoute::get("/password-reset", reset_request_page),
        PageRoute::post("/password-reset", reset_request),
        PageRoute::get("/password-reset/{code}", reset_form_page),
        PageRoute::post("/password-reset/{code}", reset_password),
        PageRoute::get("/sign-in/two-factor", second_step_page),
        PageRoute::post("/sign-in/two-factor", second_step),
        PageRoute::get("/account/two-factor", two_factor_page),
        PageRoute::post("/account/two-factor", two_factor_confirm),
        PageRoute::get("/account/two-factor/qr.svg", two_factor_qr),
        PageRoute::post("/account/two-factor/disable", two_factor_disable),
        PageRoute::get("/activate/{code}", activate_page),
        PageRoute::post("/activate/{code}", activate),
        PageRoute::get("/account/password", password_page),
        PageRoute::post("/account/password", change_password),
    ];
    table.extend(registration::routes());
    table.extend(invitations::routes());
    table.extend(team::routes());
    table.extend(workspace::routes());
    table.extend(patient::routes());
    table
}

/// The pages' router, built from [`route_table`].
pub fn routes() -> Router<WebState> {
    route_table().into_iter().fold(Router::new(), |router, route| router.route(route.path, route.handler))
}

/// Every page route that accepts a POST, read from the table the router is built from: its
/// path pattern (`{name}` for a parameter) and how its form is encoded. Each must refuse a
/// request without the token its form carries (`tests/csrf.rs` posts to every one).
pub fn post_routes() -> Vec<(&'static str, FormEncoding)> {
    route_table().into_iter().filter_map(|route| Some((route.path, route.form?))).collect()
}

// ----- the layout ------------------------------------------------------------------------------

/// What the layout shows around every page.
pub struct Shell {
    pub nav: Option<Nav>,
    /// The token the page's forms carry.
    pub csrf: String,
    pub notice: Option<&'static str>,
}

pub struct Nav {
    pub name: String,
    pub teams: Vec<NavTeam>,
    /// Whether they coordinate the team they act for (its coordinator pages are linked).
    pub coordinates_current: bool,
    /// Whether they act for a team (its patient pages are linked).
    pub acts_for_team: bool,
    /// Whether the account is a patient's (their record's pages are linked).
    pub is_patient: bool,
    /// Emergency access opened in this session and still open: until when (the banner).
    pub break_glass_until: Option<String>,
}

pub struct NavTeam {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub role: &'static str,
    pub current: bool,
}

fn role_name(role: MembershipRole) -> &'static str {
    match role {
        MembershipRole::Professional => "professional",
        MembershipRole::Coordinator => "coordinator",
    }
}

fn kind_name(kind: TeamKind) -> &'static str {
    match kind {
        TeamKind::PatientRecord => "Patient Record Team",
        TeamKind::Speciality => "speciality team",
    }
}

impl Shell {
    pub(crate) fn signed_in(signed_in: &SignedIn, notice: Option<&'static str>) -> Self {
        Shell { nav: Some(nav(&signed_in.session)), csrf: signed_in.csrf(), notice }
    }
}

pub(crate) fn nav(session: &WebSession) -> Nav {
    Nav {
        acts_for_team: session.current_team().is_some(),
        is_patient: session.patient.is_some(),
        break_glass_until: session.break_glass.iter().map(|grant| grant.expires_at).max().map(time_words),
        coordinates_current: session.current_team().is_some_and(|team| team.role == MembershipRole::Coordinator),
        name: session.account.name.to_string(),
        teams: session
            .teams
            .iter()
            .map(|member| NavTeam {
                id: member.team.id.to_string(),
                name: member.team.name.to_string(),
                kind: kind_name(member.team.kind),
                role: role_name(member.role),
                current: session.team == Some(member.team.id),
            })
            .collect(),
    }
}

/// A moment as pages show it: `4 Dec 2026, 14:05 UTC`.
pub(crate) fn time_words(at: kith_core::Timestamp) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let date = at.date();
    let minutes = at.as_micros().div_euclid(60_000_000).rem_euclid(24 * 60);
    format!(
        "{} {} {}, {:02}:{:02} UTC",
        date.day(),
        MONTHS[usize::from(date.month().clamp(1, 12)) - 1],
        date.year(),
        minutes / 60,
        minutes % 60
    )
}

/// Renders a template as an HTML response (a template that fails is logged: a 500).
pub(crate) fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(_) => PageError::internal("a template could not be rendered").into_response(),
    }
}

/// A page for someone not signed in, with the form token cookie set when it is new.
pub(crate) fn anonymous_page(headers: &HeaderMap, state: &WebState, page: impl FnOnce(Shell) -> Response) -> Response {
    let (token, fresh) = match guard::cookie(headers, FORM_COOKIE) {
        Some(token) if token.len() == 64 => (token.to_owned(), false),
        _ => (kith_app::secrets::new_secret(), true),
    };
    let mut response = page(Shell { nav: None, csrf: token.clone(), notice: None });
    if fresh {
        let cookie = guard::set_cookie(&state.guards.config, FORM_COOKIE, &token, "Strict", None);
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

pub(crate) fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

/// A redirect that also sets the session cookie.
fn see_other_signed_in(state: &WebState, location: &str, secret: &str) -> Response {
    let mut response = see_other(location);
    response.headers_mut().append(header::SET_COOKIE, guard::session_cookie(&state.guards.config, secret));
    response
}

/// A form with no fields but its token.
#[derive(Deserialize)]
pub(crate) struct NoFields {}

// ----- home -------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "landing.html")]
struct LandingPage {
    shell: Shell,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    shell: Shell,
    /// A patient's teams and what each sees, in words.
    patient_teams: Vec<(String, String)>,
    name: String,
    is_patient: bool,
    current_team: Option<String>,
    teams: Vec<NavTeam>,
    /// Invitations to join a team, waiting for their answer.
    invitations: Vec<invitations::InvitationView>,
    /// Their previous visit, in words ("since" for what is new).
    since: Option<String>,
    /// A professional's teams: welcome messages and what is new.
    team_news: Vec<TeamNewsView>,
    /// A patient's: what is new in their record, their teams' welcome messages.
    own_news: Option<kith_app::OwnNews>,
}

/// One team on a professional's home page.
pub struct TeamNewsView {
    name: String,
    organisation: String,
    welcome: Option<String>,
    clinical: bool,
    /// The team they act for: its patients are linked.
    current: bool,
    added: Vec<(String, String)>,
    with_new_entries: Vec<(String, String, usize)>,
}

async fn home(
    State(state): State<WebState>,
    Query(done): Query<Done>,
    MaybeSignedIn(signed_in): MaybeSignedIn,
) -> PageResult {
    let Some(signed_in) = signed_in else {
        // No form here, so no cookie either.
        return Ok(render(&LandingPage { shell: Shell { nav: None, csrf: String::new(), notice: None } }));
    };
    let session = &signed_in.session;
    if session.must_enrol_two_factor {
        return Ok(see_other("/account/two-factor"));
    }
    if session.walkthrough_pending {
        return Ok(see_other("/welcome"));
    }
    let patient_teams = match session.patient {
        Some(_) => {
            let account = session.account.id;
            let walkthrough = blocking(&state.app, move |app| app.walkthrough(account)).await??;
            walkthrough
                .teams
                .iter()
                .map(|step| (step.team.name.to_string(), registration::labels_in_words(step.labels)))
                .collect()
        }
        None => Vec::new(),
    };
    let invitations = invitations::waiting(&state, session.account.id).await?;
    let account = session.account.id;
    let previous = blocking(&state.app, move |app| app.previous_visit(account)).await??;
    let own_news = match session.patient {
        Some(_) => Some(blocking(&state.app, move |app| app.own_news(account, Channel::Web, previous)).await??),
        None => None,
    };
    let team_news = match (previous, session.teams.is_empty()) {
        (_, true) => Vec::new(),
        (since, false) => {
            // A first visit: the teams and their welcomes, nothing "new" yet.
            let since = since.unwrap_or_else(|| state.app.now());
            blocking(&state.app, move |app| app.team_news_as(account, Channel::Web, since)).await??
        }
    };
    let current = session.team;
    let team_news = team_news
        .into_iter()
        .map(|news| TeamNewsView {
            current: current == Some(news.team),
            name: news.team_name,
            organisation: news.organisation,
            welcome: news.welcome,
            clinical: news.clinical,
            added: news.added.into_iter().map(|p| (p.patient.to_string(), p.name)).collect(),
            with_new_entries: news
                .with_new_entries
                .into_iter()
                .map(|p| (p.patient.to_string(), p.name, p.new_entries))
                .collect(),
        })
        .collect();
    Ok(render(&HomePage {
        since: previous.map(time_words),
        team_news,
        own_news,
        invitations,
        patient_teams,
        name: session.account.name.to_string(),
        is_patient: session.patient.is_some(),
        current_team: session.current_team().map(|team| team.team.name.to_string()),
        teams: nav(session).teams,
        shell: Shell::signed_in(&signed_in, done_notice(done.done.as_deref())),
    }))
}

// ----- sign-in and sign-out ----------------------------------------------------------------

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    shell: Shell,
    email: String,
    error: Option<&'static str>,
    /// Where to go once signed in (a page of Kith a link led to).
    next: String,
}

/// `next` when it is a path of this site (`/…`, never `//host` or a scheme): where a
/// sign-in may send the browser on. No backslash and no control character: browsers read
/// `\` as `/` and drop tabs and newlines, so `/\evil` and `/<TAB>/evil` are `//evil`.
pub(crate) fn local_path(next: &str) -> Option<&str> {
    (next.starts_with('/') && !next.starts_with("//") && !next.contains(|c: char| c == '\\' || c.is_control()))
        .then_some(next)
}

/// Text for a URL's query: unreserved characters as they are, every other byte `%XX`.
pub(crate) fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(byte).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The one answer to every refused sign-in.
pub const SIGN_IN_REFUSED: &str =
    "The email address or password is not right. Check them and try again, or reset your password.";

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
    #[serde(default)]
    next: String,
}

fn done_notice(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "reset" => Some("Your password has been changed. Sign in with the new one."),
        "signed-out" => Some("You have signed out."),
        "password" => Some("Your password has been changed. You are signed out everywhere else."),
        "two-factor-off" => Some("Two-step verification is off. You are signed out everywhere else."),
        "invitation-accepted" => Some("You joined the team. Choose it at the top of the page to act for it."),
        "invitation-declined" => Some("You declined the invitation."),
        _ => None,
    }
}

async fn sign_in_page(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(done): Query<Done>,
    MaybeSignedIn(signed_in): MaybeSignedIn,
) -> Response {
    if signed_in.is_some() {
        return see_other("/");
    }
    let notice = done_notice(done.done.as_deref());
    let next = local_path(&done.next).unwrap_or_default().to_owned();
    anonymous_page(&headers, &state, |mut shell| {
        shell.notice = notice;
        render(&SignInPage { shell, email: String::new(), error: None, next })
    })
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

async fn sign_in(
    State(state): State<WebState>,
    headers: HeaderMap,
    ClientAddress(address): ClientAddress,
    AnonymousCsrfForm(form): AnonymousCsrfForm<SignInForm>,
) -> PageResult {
    state.guards.attempt(address)?;
    let email = form.email.clone();
    let password = Secret::new(form.password);
    let outcome = state.guards.hash(&state.app, move |app| app.sign_in(&email, &password)).await??;
    Ok(match outcome {
        SignIn::SecondStep(pending) => {
            let next = match local_path(&form.next) {
                Some(next) => format!("/sign-in/two-factor?next={}", percent_encoded(next)),
                None => "/sign-in/two-factor".to_owned(),
            };
            see_other_signed_in(&state, &next, pending.secret.expose())
        }
        SignIn::SignedIn(new) => {
            // A session cookie the browser already had is ended: a new id at every sign-in.
            if let Some(old) = guard::cookie(&headers, guard::SESSION_COOKIE).map(str::to_owned) {
                // Best effort: the new session does not depend on it.
                if let Ok(ended) = blocking(&state.app, move |app| app.sign_out(&old)).await {
                    or_logged(ended, ());
                }
            }
            see_other_signed_in(&state, local_path(&form.next).unwrap_or("/"), new.secret.expose())
        }
        SignIn::Refused => anonymous_page(&headers, &state, |shell| {
            let next = local_path(&form.next).unwrap_or_default().to_owned();
            render(&SignInPage { shell, email: form.email.trim().to_owned(), error: Some(SIGN_IN_REFUSED), next })
        }),
    })
}

async fn sign_out(
    State(state): State<WebState>,
    signed_in: SignedIn,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> PageResult {
    let secret = signed_in.secret.clone();
    blocking(&state.app, move |app| app.sign_out(&secret)).await??;
    let mut response = see_other("/sign-in?done=signed-out");
    response.headers_mut().append(header::SET_COOKIE, guard::clear_session_cookie(&state.guards.config));
    Ok(response)
}

#[derive(Deserialize)]
struct TeamForm {
    #[serde(default)]
    team: String,
}

async fn switch_team(
    State(state): State<WebState>,
    signed_in: SignedIn,
    CsrfForm(form): CsrfForm<TeamForm>,
) -> PageResult {
    let Ok(team) = form.team.parse::<uuid::Uuid>().map(TeamId::from_uuid) else {
        return Err(PageError::refused(StatusCode::BAD_REQUEST, "Choose one of your teams.\n"));
    };
    let secret = signed_in.secret.clone();
    match blocking(&state.app, move |app| app.switch_team(&secret, team)).await? {
        Ok(()) => Ok(see_other("/")),
        Err(AppError::Denied) => {
            Err(PageError::refused(StatusCode::FORBIDDEN, "You are not an active member of that team.\n"))
        }
        Err(error) => Err(PageError::from(error)),
    }
}

// ----- password reset -----------------------------------------------------------------------

#[derive(Template)]
#[template(path = "reset_request.html")]
struct ResetRequestPage {
    shell: Shell,
    sent: bool,
    error: Option<&'static str>,
}

async fn reset_request_page(State(state): State<WebState>, headers: HeaderMap) -> Response {
    anonymous_page(&headers, &state, |shell| render(&ResetRequestPage { shell, sent: false, error: None }))
}

#[derive(Deserialize)]
struct ResetRequestForm {
    #[serde(default)]
    email: String,
}

/// Answers at once and the same way whether or not the address has an account: the lookup,
/// the code and the email happen after the answer, off the request.
async fn reset_request(
    State(state): State<WebState>,
    headers: HeaderMap,
    ClientAddress(address): ClientAddress,
    AnonymousCsrfForm(form): AnonymousCsrfForm<ResetRequestForm>,
) -> PageResult {
    if form.email.trim().is_empty() {
        return Ok(anonymous_page(&headers, &state, |shell| {
            render(&ResetRequestPage { shell, sent: false, error: Some("Enter the email address you sign in with.") })
        }));
    }
    state.guards.attempt(address)?;
    // Not awaited: the answer must not wait for (nor show) what the request finds.
    let app = state.app.clone();
    tokio::task::spawn_blocking(move || or_logged(app.request_password_reset(&form.email), ()));
    Ok(anonymous_page(&headers, &state, |shell| render(&ResetRequestPage { shell, sent: true, error: None })))
}

#[derive(Template)]
#[template(path = "reset_form.html")]
struct ResetFormPage {
    shell: Shell,
    /// The field the error is about (its id), or "".
    error_field: &'static str,
    usable: bool,
    unusable: &'static str,
    minimum: usize,
    error: Option<String>,
}

fn reset_form(shell: Shell, usable: bool, error: Option<(&'static str, String)>) -> Response {
    let (error_field, error) = split_error(error);
    let mut response = render(&ResetFormPage {
        shell,
        error_field,
        usable,
        unusable: UNUSABLE_LINK,
        minimum: MINIMUM_PASSWORD_LENGTH,
        error,
    });
    // The code is in the address: the page is never cached, and the referrer policy
    // (same-origin) never sends the address to another site.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn plausible_code(code: &str) -> bool {
    code.len() == 64 && code.bytes().all(|byte| byte.is_ascii_hexdigit())
}

async fn reset_form_page(State(state): State<WebState>, headers: HeaderMap, Path(code): Path<String>) -> PageResult {
    // A link that cannot be checked is shown as one that cannot be used (the cause logged).
    let usable = plausible_code(&code)
        && or_logged(blocking(&state.app, move |app| app.password_reset_usable(&code)).await?, false);
    Ok(anonymous_page(&headers, &state, |shell| reset_form(shell, usable, None)))
}

#[derive(Deserialize)]
struct ResetForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

async fn reset_password(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(code): Path<String>,
    ClientAddress(address): ClientAddress,
    AnonymousCsrfForm(form): AnonymousCsrfForm<ResetForm>,
) -> PageResult {
    let form_kind = LinkPasswordForm {
        page: reset_form,
        set: |app, code, password| app.reset_password(code, password).map(|_| None),
        done: "/sign-in?done=reset",
    };
    password_with_code(&state, &headers, code, address, form, &form_kind).await
}

/// A page where a link's code sets a password: a reset link or a professional's
/// activation link.
struct LinkPasswordForm {
    /// The page: whether the code can still be used, and an error at a field.
    page: fn(Shell, bool, Option<(&'static str, String)>) -> Response,
    /// Sets the password; a session when it signs the browser in.
    set: fn(&kith_app::App, &str, &Secret) -> kith_app::AppResult<Option<kith_app::sessions::NewSession>>,
    /// Where the browser goes next.
    done: &'static str,
}

/// Sets a password from a link's code, once the form (its token checked) is in: the attempt
/// counts against the caller's address.
async fn password_with_code(
    state: &WebState,
    headers: &HeaderMap,
    code: String,
    address: Option<std::net::IpAddr>,
    form: ResetForm,
    form_kind: &LinkPasswordForm,
) -> PageResult {
    state.guards.attempt(address)?;
    let page = form_kind.page;
    if !plausible_code(&code) {
        return Ok(anonymous_page(headers, state, |shell| page(shell, false, None)));
    }
    if form.password != form.confirm {
        let error = "The two passwords are different. Type the same password twice.".to_owned();
        return Ok(anonymous_page(headers, state, |shell| page(shell, true, Some(("confirm", error)))));
    }
    let password = Secret::new(form.password);
    let set = form_kind.set;
    match state.guards.hash(&state.app, move |app| set(app, &code, &password)).await? {
        Ok(session) => {
            let mut response = see_other(form_kind.done);
            let cookie = match session {
                Some(session) => guard::session_cookie(&state.guards.config, session.secret.expose()),
                None => guard::clear_session_cookie(&state.guards.config),
            };
            response.headers_mut().append(header::SET_COOKIE, cookie);
            Ok(response)
        }
        Err(AppError::Invalid(message)) if message == UNUSABLE_LINK => {
            Ok(anonymous_page(headers, state, |shell| page(shell, false, None)))
        }
        Err(AppError::Invalid(message)) => {
            let error = password_problem(&message);
            Ok(anonymous_page(headers, state, |shell| page(shell, true, Some(("password", error)))))
        }
        Err(error) => Err(PageError::from(error)),
    }
}

/// An error about one field, for a page's template: the field's id ("" for none) and the
/// words.
fn split_error(error: Option<(&'static str, String)>) -> (&'static str, Option<String>) {
    match error {
        Some((field, message)) => (field, Some(message)),
        None => ("", None),
    }
}

/// A password rule's message in the words of the form ("password: must be …" → "Your new
/// password must be …").
fn password_problem(message: &str) -> String {
    match message.strip_prefix("password: ") {
        Some(rest) => format!("Your new password {rest}."),
        None => message.to_owned(),
    }
}

// ----- two-step verification ------------------------------------------------------------------

#[derive(Template)]
#[template(path = "second_step.html")]
struct SecondStepPage {
    shell: Shell,
    error: Option<&'static str>,
    /// Where to go once signed in.
    next: String,
}

/// The cookie secret of the password-only session waiting for its second step, if there is
/// one (a look-up that fails is logged and answered as none: sign in again).
async fn pending_second_step(state: &WebState, headers: &HeaderMap) -> Result<Option<String>, PageError> {
    let Some(secret) = guard::cookie(headers, guard::SESSION_COOKIE).map(str::to_owned) else { return Ok(None) };
    let lookup = secret.clone();
    let account = or_logged(blocking(&state.app, move |app| app.pending_second_step(&lookup)).await?, None);
    Ok(account.map(|_| secret))
}

async fn second_step_page(State(state): State<WebState>, headers: HeaderMap, Query(done): Query<Done>) -> PageResult {
    let Some(secret) = pending_second_step(&state, &headers).await? else { return Ok(see_other("/sign-in")) };
    Ok(render(&SecondStepPage {
        shell: Shell { nav: None, csrf: guard::session_csrf(&secret), notice: None },
        error: None,
        next: local_path(&done.next).unwrap_or_default().to_owned(),
    }))
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
    /// Where to go once signed in (carried from the sign-in form).
    #[serde(default)]
    next: String,
}

/// The form's token is the pending session's (checked by [`CsrfForm`]).
async fn second_step(
    State(state): State<WebState>,
    headers: HeaderMap,
    ClientAddress(address): ClientAddress,
    CsrfForm(form): CsrfForm<CodeForm>,
) -> PageResult {
    let Some(secret) = pending_second_step(&state, &headers).await? else { return Ok(see_other("/sign-in")) };
    state.guards.attempt(address)?;
    let pending = secret.clone();
    let next = local_path(&form.next).unwrap_or_default().to_owned();
    let code = form.code;
    Ok(match blocking(&state.app, move |app| app.complete_second_step(&pending, &code)).await?? {
        Some(new) => see_other_signed_in(&state, if next.is_empty() { "/" } else { &next }, new.secret.expose()),
        None => render(&SecondStepPage {
            shell: Shell { nav: None, csrf: guard::session_csrf(&secret), notice: None },
            error: Some(WRONG_CODE),
            next,
        }),
    })
}

#[derive(Template)]
#[template(path = "two_factor.html")]
struct TwoFactorPage {
    shell: Shell,
    enabled: bool,
    required: bool,
    key: String,
    error: Option<String>,
    recovery_codes: Option<Vec<String>>,
}

/// The key grouped in fours, as authenticator apps show keys.
fn grouped(key: &str) -> String {
    key.as_bytes().chunks(4).map(|chunk| String::from_utf8_lossy(chunk).into_owned()).collect::<Vec<_>>().join(" ")
}

async fn two_factor_setup(state: &WebState, signed_in: &SignedIn, error: Option<String>) -> PageResult {
    let session = &signed_in.session;
    if session.two_factor_enabled {
        return Ok(render(&TwoFactorPage {
            shell: Shell::signed_in(signed_in, None),
            enabled: true,
            required: false,
            key: String::new(),
            error,
            recovery_codes: None,
        }));
    }
    let account = session.account.id;
    let key = blocking(&state.app, move |app| app.begin_two_factor(account)).await??;
    Ok(render(&TwoFactorPage {
        shell: Shell::signed_in(signed_in, None),
        enabled: false,
        required: session.must_enrol_two_factor,
        key: grouped(&key),
        error,
        recovery_codes: None,
    }))
}

async fn two_factor_page(State(state): State<WebState>, signed_in: SignedIn) -> PageResult {
    two_factor_setup(&state, &signed_in, None).await
}

async fn two_factor_confirm(
    State(state): State<WebState>,
    signed_in: SignedIn,
    CsrfForm(form): CsrfForm<CodeForm>,
) -> PageResult {
    let account = signed_in.session.account.id;
    match blocking(&state.app, move |app| app.confirm_two_factor(account, &form.code)).await? {
        Ok(codes) => Ok(render(&TwoFactorPage {
            shell: Shell::signed_in(&signed_in, None),
            enabled: true,
            required: false,
            key: String::new(),
            error: None,
            recovery_codes: Some(codes),
        })),
        Err(AppError::Invalid(message)) => two_factor_setup(&state, &signed_in, Some(message)).await,
        Err(error) => Err(PageError::from(error)),
    }
}

/// The enrolment key as a QR code (SVG), for the signed-in person only.
async fn two_factor_qr(State(state): State<WebState>, signed_in: SignedIn) -> PageResult {
    if signed_in.session.two_factor_enabled {
        return Ok(StatusCode::NOT_FOUND.into_response());
    }
    let account = signed_in.session.account.id;
    let key = blocking(&state.app, move |app| app.begin_two_factor(account)).await??;
    let bytes =
        kith_app::two_factor::from_base32(&key).ok_or_else(|| PageError::internal("an enrolment key is not base32"))?;
    let uri = kith_app::two_factor::otpauth_uri(&bytes, "Kith", signed_in.session.account.email.as_str());
    let code = qrcodegen::QrCode::encode_text(&uri, qrcodegen::QrCodeEcc::Medium)
        .map_err(|_| PageError::internal("an enrolment key does not fit a QR code"))?;
    let border = 4;
    let size = code.size() + border * 2;
    let mut path = String::new();
    for y in 0..code.size() {
        for x in 0..code.size() {
            if code.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\">\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    );
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

// ----- a professional's activation ---------------------------------------------------------------

#[derive(Template)]
#[template(path = "activate.html")]
struct ActivatePage {
    shell: Shell,
    error_field: &'static str,
    usable: bool,
    unusable: &'static str,
    minimum: usize,
    error: Option<String>,
}

fn activate_form(shell: Shell, usable: bool, error: Option<(&'static str, String)>) -> Response {
    let (error_field, error) = split_error(error);
    render(&ActivatePage {
        shell,
        error_field,
        usable,
        unusable: UNUSABLE_LINK,
        minimum: MINIMUM_PASSWORD_LENGTH,
        error,
    })
}

async fn activate_page(State(state): State<WebState>, headers: HeaderMap, Path(code): Path<String>) -> PageResult {
    // A link that cannot be checked is shown as one that cannot be used (the cause logged).
    let usable =
        plausible_code(&code) && or_logged(blocking(&state.app, move |app| app.activation_usable(&code)).await?, false);
    Ok(anonymous_page(&headers, &state, |shell| activate_form(shell, usable, None)))
}

async fn activate(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(code): Path<String>,
    ClientAddress(address): ClientAddress,
    AnonymousCsrfForm(form): AnonymousCsrfForm<ResetForm>,
) -> PageResult {
    let form_kind = LinkPasswordForm {
        page: activate_form,
        set: |app, code, password| app.activate_account(code, password).map(Some),
        done: "/",
    };
    password_with_code(&state, &headers, code, address, form, &form_kind).await
}

// ----- changing one's password ------------------------------------------------------------------

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    shell: Shell,
    error_field: &'static str,
    minimum: usize,
    error: Option<String>,
}

async fn password_page(signed_in: SignedIn) -> Response {
    render(&PasswordPage {
        shell: Shell::signed_in(&signed_in, None),
        error_field: "",
        minimum: MINIMUM_PASSWORD_LENGTH,
        error: None,
    })
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

async fn change_password(
    State(state): State<WebState>,
    signed_in: SignedIn,
    ClientAddress(address): ClientAddress,
    CsrfForm(form): CsrfForm<PasswordForm>,
) -> PageResult {
    // A password typed again is a guess like a sign-in: the same per-address burst.
    state.guards.attempt(address)?;
    let again = |field: &'static str, error: String| {
        render(&PasswordPage {
            shell: Shell::signed_in(&signed_in, None),
            error_field: field,
            minimum: MINIMUM_PASSWORD_LENGTH,
            error: Some(error),
        })
    };
    if form.password != form.confirm {
        let error = "The two new passwords are different. Type the same new password twice.".to_owned();
        return Ok(again("confirm", error));
    }
    let secret = signed_in.secret.clone();
    let (current, new) = (Secret::new(form.current), Secret::new(form.password));
    Ok(match state.guards.hash(&state.app, move |app| app.change_password(&secret, &current, &new)).await? {
        Ok(session) => see_other_signed_in(&state, "/?done=password", session.secret.expose()),
        // A wrong current password, or a new one the rules refuse.
        Err(AppError::Invalid(message)) if message.starts_with("password: ") => {
            again("password", password_problem(&message))
        }
        Err(AppError::Invalid(message)) => again("current", message),
        Err(AppError::Denied) => see_other("/sign-in"),
        Err(error) => return Err(PageError::from(error)),
    })
}

#[derive(Deserialize)]
struct DisableForm {
    #[serde(default)]
    password: String,
}

async fn two_factor_disable(
    State(state): State<WebState>,
    signed_in: SignedIn,
    ClientAddress(address): ClientAddress,
    CsrfForm(form): CsrfForm<DisableForm>,
) -> PageResult {
    state.guards.attempt(address)?;
    let secret = signed_in.secret.clone();
    let password = Secret::new(form.password);
    match state.guards.hash(&state.app, move |app| app.disable_two_factor(&secret, &password)).await? {
        Ok(session) => Ok(see_other_signed_in(&state, "/?done=two-factor-off", session.secret.expose())),
        Err(AppError::Invalid(message)) => two_factor_setup(&state, &signed_in, Some(message)).await,
        Err(AppError::Denied) => Ok(see_other("/sign-in")),
        Err(error) => Err(PageError::from(error)),
    }
}
