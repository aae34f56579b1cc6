//! The web application's pages: server-rendered HTML from compile-time-checked, escaping
//! templates (`templates/`), plain forms that work without JavaScript, one layout with the
//! signed-in person's name, their teams and roles and a team switcher.
//!
//! Every state-changing form carries a CSRF token and is refused when the browser says it
//! comes from another site ([`guard::same_origin`]). Signed-in forms use a token derived
//! from the session; the sign-in and reset forms, before any session exists, use a
//! double-submit cookie. Sign-in and reset attempts are throttled per address, and password
//! hashing runs on blocking threads under a concurrency cap.

pub mod guard;
mod invitations;
mod registration;
mod team;

use askama::Template;
use axum::Router;
use axum::extract::{FromRequest, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use kith_app::AppError;
use kith_app::password::MINIMUM_PASSWORD_LENGTH;
use kith_app::sessions::{SignIn, UNUSABLE_LINK, WRONG_CODE, WebSession};
use kith_core::TeamId;
use kith_core::team::{MembershipRole, TeamKind};
use kith_core::text::Secret;
use serde::Deserialize;

use crate::WebState;
use guard::{FORM_COOKIE, MaybeSignedIn, SignedIn};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/", get(home))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/team", post(switch_team))
        .route("/password-reset", get(reset_request_page).post(reset_request))
        .route("/password-reset/{code}", get(reset_form_page).post(reset_password))
        .route("/sign-in/two-factor", get(second_step_page).post(second_step))
        .route("/account/two-factor", get(two_factor_page).post(two_factor_confirm))
        .route("/account/two-factor/qr.svg", get(two_factor_qr))
        .route("/account/two-factor/disable", post(two_factor_disable))
        .route("/activate/{code}", get(activate_page).post(activate))
        .route("/account/password", get(password_page).post(change_password))
        .merge(registration::routes())
        .merge(invitations::routes())
        .merge(team::routes())
}

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

/// Renders a template as an HTML response.
pub(crate) fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, "a page could not be rendered");
            guard::internal_error()
        }
    }
}

/// A page for someone not signed in, with the form token cookie set when it is new.
pub(crate) fn anonymous_page(headers: &HeaderMap, state: &WebState, page: impl FnOnce(Shell) -> Response) -> Response {
    let (token, fresh) = match guard::cookie(headers, FORM_COOKIE) {
        Some(token) if token.len() == 64 => (token.to_owned(), false),
        _ => (format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()), true),
    };
    let mut response = page(Shell { nav: None, csrf: token.clone(), notice: None });
    if fresh {
        let cookie = guard::set_cookie(&state.guards.config, FORM_COOKIE, &token, "Strict", None);
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// A posted form and the caller's address (for the per-address throttle). A form that
/// cannot be read is refused like one without its token.
pub(crate) async fn posted_form<T: serde::de::DeserializeOwned>(
    state: &WebState,
    request: axum::extract::Request,
) -> Result<(T, Option<std::net::IpAddr>), Response> {
    let address = guard::client_address(request.extensions());
    match axum::Form::<T>::from_request(request, state).await {
        Ok(axum::Form(form)) => Ok((form, address)),
        Err(_) => Err(guard::csrf_refused()),
    }
}

/// An attempt before sign-in (signing in, a password from a link, registering): the posted
/// form, refused without its double-submit token or from another site, and counted against
/// the caller's address.
pub(crate) async fn anonymous_attempt<T: serde::de::DeserializeOwned>(
    state: &WebState,
    headers: &HeaderMap,
    request: axum::extract::Request,
    token: impl Fn(&T) -> &str,
) -> Result<T, Response> {
    let (form, address) = posted_form::<T>(state, request).await?;
    if !anonymous_form_ok(headers, token(&form)) {
        return Err(guard::csrf_refused());
    }
    if !state.guards.allow_attempt(address) {
        return Err(guard::too_many_attempts());
    }
    Ok(form)
}

/// Whether an anonymous form's token matches its cookie and the request is same-origin.
pub(crate) fn anonymous_form_ok(headers: &HeaderMap, token: &str) -> bool {
    guard::same_origin(headers)
        && guard::cookie(headers, FORM_COOKIE).is_some_and(|cookie| guard::tokens_match(cookie, token))
}

pub(crate) fn signed_in_form_ok(headers: &HeaderMap, signed_in: &SignedIn, token: &str) -> bool {
    guard::same_origin(headers) && guard::tokens_match(&signed_in.csrf(), token)
}

pub(crate) fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

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
}

async fn home(
    State(state): State<WebState>,
    Query(done): Query<Done>,
    MaybeSignedIn(signed_in): MaybeSignedIn,
) -> Response {
    let Some(signed_in) = signed_in else {
        // No form here, so no cookie either.
        return render(&LandingPage { shell: Shell { nav: None, csrf: String::new(), notice: None } });
    };
    let session = &signed_in.session;
    if session.must_enrol_two_factor {
        return see_other("/account/two-factor");
    }
    if session.walkthrough_pending {
        return see_other("/welcome");
    }
    let patient_teams = match session.patient {
        Some(_) => {
            let app = state.app.clone();
            let account = session.account.id;
            match tokio::task::spawn_blocking(move || app.walkthrough(account)).await {
                Ok(Ok(walkthrough)) => walkthrough
                    .teams
                    .iter()
                    .map(|step| (step.team.name.to_string(), registration::labels_in_words(step.labels)))
                    .collect(),
                _ => return guard::internal_error(),
            }
        }
        None => Vec::new(),
    };
    let invitations = match invitations::waiting(&state, session.account.id).await {
        Ok(invitations) => invitations,
        Err(response) => return response,
    };
    render(&HomePage {
        invitations,
        patient_teams,
        name: session.account.name.to_string(),
        is_patient: session.patient.is_some(),
        current_team: session.current_team().map(|team| team.team.name.to_string()),
        teams: nav(session).teams,
        shell: Shell::signed_in(&signed_in, done_notice(done.done.as_deref())),
    })
}

// ----- sign-in and sign-out ----------------------------------------------------------------

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    shell: Shell,
    email: String,
    error: Option<&'static str>,
}

/// The one answer to every refused sign-in.
pub const SIGN_IN_REFUSED: &str =
    "The email address or password is not right. Check them and try again, or reset your password.";

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
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
    anonymous_page(&headers, &state, |mut shell| {
        shell.notice = notice;
        render(&SignInPage { shell, email: String::new(), error: None })
    })
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

async fn sign_in(State(state): State<WebState>, headers: HeaderMap, request: axum::extract::Request) -> Response {
    let form: SignInForm = match anonymous_attempt(&state, &headers, request, |form: &SignInForm| &form.csrf).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let app = state.app.clone();
    let email = form.email.clone();
    let password = Secret::new(form.password);
    let outcome = match state.guards.hash(move || app.sign_in(&email, &password)).await {
        Ok(outcome) => outcome,
        Err(response) => return response,
    };
    match outcome {
        Ok(SignIn::SecondStep(pending)) => {
            let mut response = see_other("/sign-in/two-factor");
            response
                .headers_mut()
                .append(header::SET_COOKIE, guard::session_cookie(&state.guards.config, pending.secret.expose()));
            response
        }
        Ok(SignIn::SignedIn(new)) => {
            // A session cookie the browser already had is ended: a new id at every sign-in.
            if let Some(old) = guard::cookie(&headers, guard::SESSION_COOKIE).map(str::to_owned) {
                let app = state.app.clone();
                let _ = tokio::task::spawn_blocking(move || app.sign_out(&old)).await;
            }
            let mut response = see_other("/");
            response
                .headers_mut()
                .append(header::SET_COOKIE, guard::session_cookie(&state.guards.config, new.secret.expose()));
            response
        }
        Ok(SignIn::Refused) => anonymous_page(&headers, &state, |shell| {
            render(&SignInPage { shell, email: form.email.trim().to_owned(), error: Some(SIGN_IN_REFUSED) })
        }),
        Err(error) => {
            tracing::error!(%error, "sign-in failed");
            guard::internal_error()
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: String,
}

async fn sign_out(
    State(state): State<WebState>,
    headers: HeaderMap,
    signed_in: SignedIn,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    if !signed_in_form_ok(&headers, &signed_in, &form.csrf) {
        return guard::csrf_refused();
    }
    let app = state.app.clone();
    let secret = signed_in.secret.clone();
    if let Ok(Err(error)) = tokio::task::spawn_blocking(move || app.sign_out(&secret)).await {
        tracing::error!(%error, "sign-out failed");
        return guard::internal_error();
    }
    let mut response = see_other("/sign-in?done=signed-out");
    response.headers_mut().append(header::SET_COOKIE, guard::clear_session_cookie(&state.guards.config));
    response
}

#[derive(Deserialize)]
struct TeamForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    team: String,
}

async fn switch_team(
    State(state): State<WebState>,
    headers: HeaderMap,
    signed_in: SignedIn,
    axum::Form(form): axum::Form<TeamForm>,
) -> Response {
    if !signed_in_form_ok(&headers, &signed_in, &form.csrf) {
        return guard::csrf_refused();
    }
    let Ok(team) = form.team.parse::<uuid::Uuid>().map(TeamId::from_uuid) else {
        return (StatusCode::BAD_REQUEST, "Choose one of your teams.\n").into_response();
    };
    let app = state.app.clone();
    let secret = signed_in.secret.clone();
    match tokio::task::spawn_blocking(move || app.switch_team(&secret, team)).await {
        Ok(Ok(())) => see_other("/"),
        Ok(Err(AppError::Denied)) => {
            (StatusCode::FORBIDDEN, "You are not an active member of that team.\n").into_response()
        }
        _ => guard::internal_error(),
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
    csrf: String,
    #[serde(default)]
    email: String,
}

/// Answers at once and the same way whether or not the address has an account: the lookup,
/// the code and the email happen after the answer, off the request.
async fn reset_request(State(state): State<WebState>, headers: HeaderMap, request: axum::extract::Request) -> Response {
    let (form, address): (ResetRequestForm, _) = match posted_form(&state, request).await {
        Ok(posted) => posted,
        Err(refused) => return refused,
    };
    if !anonymous_form_ok(&headers, &form.csrf) {
        return guard::csrf_refused();
    }
    if form.email.trim().is_empty() {
        return anonymous_page(&headers, &state, |shell| {
            render(&ResetRequestPage { shell, sent: false, error: Some("Enter the email address you sign in with.") })
        });
    }
    if !state.guards.allow_attempt(address) {
        return guard::too_many_attempts();
    }
    let app = state.app.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(error) = app.request_password_reset(&form.email) {
            tracing::error!(%error, "a password reset request could not be stored");
        }
    });
    anonymous_page(&headers, &state, |shell| render(&ResetRequestPage { shell, sent: true, error: None }))
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

async fn reset_form_page(State(state): State<WebState>, headers: HeaderMap, Path(code): Path<String>) -> Response {
    let usable = plausible_code(&code) && {
        let app = state.app.clone();
        matches!(tokio::task::spawn_blocking(move || app.password_reset_usable(&code)).await, Ok(Ok(true)))
    };
    anonymous_page(&headers, &state, |shell| reset_form(shell, usable, None))
}

#[derive(Deserialize)]
struct ResetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

async fn reset_password(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(code): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let form = LinkPasswordForm {
        page: reset_form,
        set: |app, code, password| app.reset_password(code, password).map(|_| None),
        done: "/sign-in?done=reset",
    };
    password_with_code(&state, &headers, code, request, &form).await
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

async fn password_with_code(
    state: &WebState,
    headers: &HeaderMap,
    code: String,
    request: axum::extract::Request,
    form_kind: &LinkPasswordForm,
) -> Response {
    let form: ResetForm = match anonymous_attempt(state, headers, request, |form: &ResetForm| &form.csrf).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let page = form_kind.page;
    if !plausible_code(&code) {
        return anonymous_page(headers, state, |shell| page(shell, false, None));
    }
    if form.password != form.confirm {
        let error = "The two passwords are different. Type the same password twice.".to_owned();
        return anonymous_page(headers, state, |shell| page(shell, true, Some(("confirm", error))));
    }
    let app = state.app.clone();
    let password = Secret::new(form.password);
    let set = form_kind.set;
    let outcome = match state.guards.hash(move || set(&app, &code, &password)).await {
        Ok(outcome) => outcome,
        Err(response) => return response,
    };
    match outcome {
        Ok(session) => {
            let mut response = see_other(form_kind.done);
            let cookie = match session {
                Some(session) => guard::session_cookie(&state.guards.config, session.secret.expose()),
                None => guard::clear_session_cookie(&state.guards.config),
            };
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Err(AppError::Invalid(message)) if message == UNUSABLE_LINK => {
            anonymous_page(headers, state, |shell| page(shell, false, None))
        }
        Err(AppError::Invalid(message)) => {
            let error = password_problem(&message);
            anonymous_page(headers, state, |shell| page(shell, true, Some(("password", error))))
        }
        Err(error) => {
            tracing::error!(%error, "setting a password from a link failed");
            guard::internal_error()
        }
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
}

/// The password-only session waiting for its second step, with its cookie secret.
async fn pending_second_step(state: &WebState, headers: &HeaderMap) -> Option<(String, kith_core::model::Account)> {
    let secret = guard::cookie(headers, guard::SESSION_COOKIE)?.to_owned();
    let app = state.app.clone();
    let lookup = secret.clone();
    let account = tokio::task::spawn_blocking(move || app.pending_second_step(&lookup)).await.ok()?.ok()??;
    Some((secret, account))
}

async fn second_step_page(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let Some((secret, _)) = pending_second_step(&state, &headers).await else { return see_other("/sign-in") };
    render(&SecondStepPage {
        shell: Shell { nav: None, csrf: guard::session_csrf(&secret), notice: None },
        error: None,
    })
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

async fn second_step(State(state): State<WebState>, headers: HeaderMap, request: axum::extract::Request) -> Response {
    let (form, address): (CodeForm, _) = match posted_form(&state, request).await {
        Ok(posted) => posted,
        Err(refused) => return refused,
    };
    let Some((secret, _)) = pending_second_step(&state, &headers).await else { return see_other("/sign-in") };
    if !guard::same_origin(&headers) || !guard::tokens_match(&guard::session_csrf(&secret), &form.csrf) {
        return guard::csrf_refused();
    }
    if !state.guards.allow_attempt(address) {
        return guard::too_many_attempts();
    }
    let app = state.app.clone();
    let pending = secret.clone();
    match tokio::task::spawn_blocking(move || app.complete_second_step(&pending, &form.code)).await {
        Ok(Ok(Some(new))) => {
            let mut response = see_other("/");
            response
                .headers_mut()
                .append(header::SET_COOKIE, guard::session_cookie(&state.guards.config, new.secret.expose()));
            response
        }
        Ok(Ok(None)) => render(&SecondStepPage {
            shell: Shell { nav: None, csrf: guard::session_csrf(&secret), notice: None },
            error: Some(WRONG_CODE),
        }),
        Ok(Err(error)) => {
            tracing::error!(%error, "second step failed");
            guard::internal_error()
        }
        Err(_) => guard::internal_error(),
    }
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

async fn two_factor_setup(state: &WebState, signed_in: &SignedIn, error: Option<String>) -> Response {
    let session = &signed_in.session;
    if session.two_factor_enabled {
        return render(&TwoFactorPage {
            shell: Shell::signed_in(signed_in, None),
            enabled: true,
            required: false,
            key: String::new(),
            error,
            recovery_codes: None,
        });
    }
    let app = state.app.clone();
    let account = session.account.id;
    let key = match tokio::task::spawn_blocking(move || app.begin_two_factor(account)).await {
        Ok(Ok(key)) => key,
        _ => return guard::internal_error(),
    };
    render(&TwoFactorPage {
        shell: Shell::signed_in(signed_in, None),
        enabled: false,
        required: session.must_enrol_two_factor,
        key: grouped(&key),
        error,
        recovery_codes: None,
    })
}

async fn two_factor_page(State(state): State<WebState>, signed_in: SignedIn) -> Response {
    two_factor_setup(&state, &signed_in, None).await
}

async fn two_factor_confirm(
    State(state): State<WebState>,
    headers: HeaderMap,
    signed_in: SignedIn,
    axum::Form(form): axum::Form<CodeForm>,
) -> Response {
    if !signed_in_form_ok(&headers, &signed_in, &form.csrf) {
        return guard::csrf_refused();
    }
    let app = state.app.clone();
    let account = signed_in.session.account.id;
    match tokio::task::spawn_blocking(move || app.confirm_two_factor(account, &form.code)).await {
        Ok(Ok(codes)) => render(&TwoFactorPage {
            shell: Shell::signed_in(&signed_in, None),
            enabled: true,
            required: false,
            key: String::new(),
            error: None,
            recovery_codes: Some(codes),
        }),
        Ok(Err(AppError::Invalid(message))) => two_factor_setup(&state, &signed_in, Some(message)).await,
        _ => guard::internal_error(),
    }
}

/// The enrolment key as a QR code (SVG), for the signed-in person only.
async fn two_factor_qr(State(state): State<WebState>, signed_in: SignedIn) -> Response {
    if signed_in.session.two_factor_enabled {
        return StatusCode::NOT_FOUND.into_response();
    }
    let app = state.app.clone();
    let account = signed_in.session.account.id;
    let Ok(Ok(key)) = tokio::task::spawn_blocking(move || app.begin_two_factor(account)).await else {
        return guard::internal_error();
    };
    let Some(bytes) = kith_app::two_factor::from_base32(&key) else { return guard::internal_error() };
    let uri = kith_app::two_factor::otpauth_uri(&bytes, "Kith", signed_in.session.account.email.as_str());
    let Ok(code) = qrcodegen::QrCode::encode_text(&uri, qrcodegen::QrCodeEcc::Medium) else {
        return guard::internal_error();
    };
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
    ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
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

async fn activate_page(State(state): State<WebState>, headers: HeaderMap, Path(code): Path<String>) -> Response {
    let usable = plausible_code(&code) && {
        let app = state.app.clone();
        matches!(tokio::task::spawn_blocking(move || app.activation_usable(&code)).await, Ok(Ok(true)))
    };
    anonymous_page(&headers, &state, |shell| activate_form(shell, usable, None))
}

async fn activate(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(code): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let form = LinkPasswordForm {
        page: activate_form,
        set: |app, code, password| app.activate_account(code, password).map(Some),
        done: "/",
    };
    password_with_code(&state, &headers, code, request, &form).await
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
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

async fn change_password(
    State(state): State<WebState>,
    headers: HeaderMap,
    signed_in: SignedIn,
    request: axum::extract::Request,
) -> Response {
    let (form, address) = match posted_form::<PasswordForm>(&state, request).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    if !signed_in_form_ok(&headers, &signed_in, &form.csrf) {
        return guard::csrf_refused();
    }
    // A password typed again is a guess like a sign-in: the same per-address burst.
    if !state.guards.allow_attempt(address) {
        return guard::too_many_attempts();
    }
    let again = |field: &'static str, error: String| {
        render(&PasswordPage {
            shell: Shell::signed_in(&signed_in, None),
            error_field: field,
            minimum: MINIMUM_PASSWORD_LENGTH,
            error: Some(error),
        })
    };
    if form.password != form.confirm {
        return again("confirm", "The two new passwords are different. Type the same new password twice.".to_owned());
    }
    let app = state.app.clone();
    let secret = signed_in.secret.clone();
    let (current, new) = (Secret::new(form.current), Secret::new(form.password));
    let outcome = match state.guards.hash(move || app.change_password(&secret, &current, &new)).await {
        Ok(outcome) => outcome,
        Err(response) => return response,
    };
    match outcome {
        Ok(session) => {
            let mut response = see_other("/?done=password");
            response
                .headers_mut()
                .append(header::SET_COOKIE, guard::session_cookie(&state.guards.config, session.secret.expose()));
            response
        }
        // A wrong current password, or a new one the rules refuse.
        Err(AppError::Invalid(message)) if message.starts_with("password: ") => {
            again("password", password_problem(&message))
        }
        Err(AppError::Invalid(message)) => again("current", message),
        Err(AppError::Denied) => see_other("/sign-in"),
        Err(error) => {
            tracing::error!(%error, "password change failed");
            guard::internal_error()
        }
    }
}

#[derive(Deserialize)]
struct DisableForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

async fn two_factor_disable(
    State(state): State<WebState>,
    headers: HeaderMap,
    signed_in: SignedIn,
    request: axum::extract::Request,
) -> Response {
    let (form, address) = match posted_form::<DisableForm>(&state, request).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    if !signed_in_form_ok(&headers, &signed_in, &form.csrf) {
        return guard::csrf_refused();
    }
    if !state.guards.allow_attempt(address) {
        return guard::too_many_attempts();
    }
    let app = state.app.clone();
    let secret = signed_in.secret.clone();
    let password = Secret::new(form.password);
    let outcome = match state.guards.hash(move || app.disable_two_factor(&secret, &password)).await {
        Ok(outcome) => outcome,
        Err(response) => return response,
    };
    match outcome {
        Ok(session) => {
            let mut response = see_other("/?done=two-factor-off");
            response
                .headers_mut()
                .append(header::SET_COOKIE, guard::session_cookie(&state.guards.config, session.secret.expose()));
            response
        }
        Err(AppError::Invalid(message)) => two_factor_setup(&state, &signed_in, Some(message)).await,
        Err(AppError::Denied) => see_other("/sign-in"),
        Err(error) => {
            tracing::error!(%error, "turning two-step verification off failed");
            guard::internal_error()
        }
    }
}
