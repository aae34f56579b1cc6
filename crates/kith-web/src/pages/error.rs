//! What a page handler answers when it does not answer with its page ([`PageError`]), and
//! the one way handlers run blocking work ([`blocking`]).
//!
//! Every failure on our side goes through [`PageError`], which logs its cause and shows the
//! browser the same plain page whatever it was. Logs carry no health data and no
//! identifiers: a use case's error is logged by its kind only (its words may name an email
//! address, an NHS number or a record), except a storage error, whose message is written
//! for operators (what the database said, never the values involved).

use std::borrow::Cow;
use std::panic::Location;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kith_app::{App, AppError};

/// What a page handler returns.
pub type PageResult = Result<Response, PageError>;

/// Why a page handler did not answer with its page.
#[derive(Debug)]
pub enum PageError {
    /// The form came without the token it must carry, or from another site: "This form has
    /// expired" (403).
    FormExpired,
    /// Too many sign-in or reset attempts from this address (429).
    TooManyAttempts,
    /// No turn for password hashing within ten seconds (503).
    Busy,
    /// An answer in words, with its status, for the person: a refusal, an unknown member, a
    /// choice the form did not offer. Nothing went wrong on our side, so nothing is logged.
    Refused(StatusCode, Cow<'static, str>),
    /// A use case failed in a way the handler does not answer itself: logged, 500.
    App { error: AppError, at: &'static Location<'static> },
    /// Something else failed on our side (a blocking task, a template, a QR code): logged,
    /// 500.
    Internal { what: &'static str, at: &'static Location<'static> },
}

impl PageError {
    /// An answer in words for the person, with its status (not logged).
    pub fn refused(status: StatusCode, words: impl Into<Cow<'static, str>>) -> Self {
        PageError::Refused(status, words.into())
    }

    /// A failure on our side that is not a use case's error; `what` says what failed.
    #[track_caller]
    pub fn internal(what: &'static str) -> Self {
        PageError::Internal { what, at: Location::caller() }
    }
}

impl From<AppError> for PageError {
    /// `?` on a use case's result: the location is where the `?` is, for the log.
    #[track_caller]
    fn from(error: AppError) -> Self {
        PageError::App { error, at: Location::caller() }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::FormExpired => csrf_refused(),
            PageError::TooManyAttempts => too_many_attempts(),
            PageError::Busy => busy(),
            PageError::Refused(status, words) => (status, words).into_response(),
            // Not permitted, or not there: one answer, which says nothing about whether the
            // patient, team or entry exists (the audit trail has the reason).
            PageError::App { error: AppError::Denied, .. } => not_available(),
            PageError::App { error, at } => {
                log_app_error(&error, at);
                internal_error()
            }
            PageError::Internal { what, at } => {
                tracing::error!(at = %at, "a page failed: {what}");
                internal_error()
            }
        }
    }
}

/// Logs a use case's error without what its words may carry (see the module comment).
pub(crate) fn log_app_error(error: &AppError, at: &Location<'_>) {
    match error {
        AppError::Store(error) => tracing::error!(at = %at, %error, "a page failed in the store"),
        other => tracing::error!(at = %at, kind = app_error_kind(other), "a page failed: an unexpected use case error"),
    }
}

/// The name of a use case error's kind, for logs. Exhaustive, so that a new kind is named
/// here (and its words checked) before it can be logged.
fn app_error_kind(error: &AppError) -> &'static str {
    match error {
        AppError::Invalid(_) => "invalid",
        AppError::NotFound(_) => "not_found",
        AppError::Conflict(_) => "conflict",
        AppError::TeamRule(_) => "team_rule",
        AppError::Consent(_) => "consent",
        AppError::Denied => "denied",
        AppError::Forbidden(_) => "forbidden",
        AppError::TooManyAttempts(_) => "too_many_attempts",
        AppError::Store(_) => "store",
    }
}

/// Runs blocking work (a use case, a session look-up) on a blocking thread with its own
/// handle on the app. The work's result comes back for the handler to answer; a task that
/// panicked (its panic already reported) is an internal error. A use case that the handler
/// does not answer specially is passed on with `?` (`blocking(…).await??`).
pub(crate) async fn blocking<T: Send + 'static>(
    app: &App,
    work: impl FnOnce(&App) -> T + Send + 'static,
) -> Result<T, PageError> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || work(&app))
        .await
        .map_err(|_| PageError::internal("a blocking task panicked or was cancelled"))
}

/// A use case's answer where a failure is answered like a miss (a link that cannot be
/// used, a second step that is not pending): the failure is logged, `fallback` used.
#[track_caller]
pub(crate) fn or_logged<T>(result: Result<T, AppError>, fallback: T) -> T {
    let at = Location::caller();
    result.unwrap_or_else(|error| {
        log_app_error(&error, at);
        fallback
    })
}

// The plain pages a refusal or failure shows.

pub(super) fn busy() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "5")], "Kith is busy; try again in a few seconds.\n")
        .into_response()
}

/// The one answer to a page the caller may not see or that does not exist.
pub(super) fn not_available() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::response::Html(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>Not available · Kith</title><link rel=\"stylesheet\" href=\"/static/kith.css\"></head>\
             <body><main id=\"main\"><h1>This page is not available</h1><p>It does not exist, or you do not have \
             access to it. <a href=\"/\">Go to your home page</a>.</p></main></body></html>",
        ),
    )
        .into_response()
}

pub(super) fn internal_error() -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on our side. Try again.\n").into_response()
}

pub(super) fn too_many_attempts() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, "60")],
        axum::response::Html(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Too many attempts · Kith</title>\
             <link rel=\"stylesheet\" href=\"/static/kith.css\"></head><body><main><h1>Too many attempts</h1>\
             <p>Wait a minute, then try again.</p></main></body></html>",
        ),
    )
        .into_response()
}

pub(super) fn csrf_refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        axum::response::Html(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Form expired · Kith</title>\
             <link rel=\"stylesheet\" href=\"/static/kith.css\"></head><body><main><h1>This form has expired</h1>\
             <p>Go back, reload the page and try again.</p></main></body></html>",
        ),
    )
        .into_response()
}
