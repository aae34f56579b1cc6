//! Kith's HTTP interface: the operational endpoints (`/healthz`, `/readyz`), HL7 v2 over
//! HTTP (`POST /hl7/v2`), the FHIR R4 API (`/fhir`, see [`fhir`]) and the web application's
//! pages (see [`pages`]). Only this crate knows HTTP.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kith_app::App;
use pages::guard::Guards;

pub mod fhir;
pub mod pages;

pub use pages::guard::WebConfig;

/// What every handler can reach.
#[derive(Clone)]
pub struct WebState {
    pub app: App,
    pub guards: Arc<Guards>,
}

/// The router with every route Kith serves, with the default web configuration.
pub fn router(app: App) -> Router {
    router_with(app, WebConfig::default())
}

/// The router with every route Kith serves.
pub fn router_with(app: App, config: WebConfig) -> Router {
    let guards = Arc::new(Guards::new(config));
    Router::new()
        .route("/static/kith.css", get(stylesheet))
        .route("/static/favicon.svg", get(favicon))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/hl7/v2", post(hl7_v2).layer(axum::extract::DefaultBodyLimit::max(kith_hl7::mllp::DEFAULT_MAX_FRAME)))
        .merge(fhir::routes())
        .merge(pages::routes())
        .with_state(WebState { app, guards: guards.clone() })
        .layer(axum::middleware::map_response_with_state(guards, security_headers))
}

/// Headers every response carries: no framing, no sniffing, no referrer to other sites
/// (`same-origin`: with `no-referrer` browsers send `Origin: null` on form posts, which the
/// CSRF check must refuse), and a
/// content security policy that allows nothing from elsewhere and no inline scripts.
/// Behind https, browsers are also told to use nothing else (HSTS).
async fn security_headers(State(guards): State<Arc<Guards>>, mut response: Response) -> Response {
    let headers = response.headers_mut();
    if guards.config.secure() {
        headers
            .insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    // A response with a stricter policy of its own (an uploaded document: sandboxed) keeps it.
    headers.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(
        "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../static/kith.css"))
}

async fn favicon() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "image/svg+xml")], include_str!("../static/favicon.svg"))
}

/// The media type of an ER7 HL7 v2 message.
const HL7_ER7: &str = "x-application/hl7-v2+er7; charset=utf-8";

/// `POST /hl7/v2`: one ER7 message in the body, `Authorization: Bearer TOKEN` naming the
/// integration. The acknowledgement is the response body, sent after the message and its
/// effects are committed. A missing, unknown, revoked or expired token is 401 and nothing is
/// stored; MSH-4 must be the integration's facility (else `AR`).
async fn hl7_v2(State(state): State<WebState>, headers: HeaderMap, body: Bytes) -> Response {
    let unauthorised = || {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a valid integration token is required (Authorization: Bearer …)\n",
        )
            .into_response()
    };
    let Some(token) = bearer_token(&headers) else { return unauthorised() };
    let app = state.app.clone();
    let outcome = tokio::task::spawn_blocking(move || -> Result<Option<String>, kith_app::AppError> {
        let Some(integration) = app.integration_for_token(&token)? else { return Ok(None) };
        Ok(Some(app.ingest_hl7(kith_app::Hl7Sender::Integration(&integration), &body).ack))
    })
    .await;
    match outcome {
        Ok(Ok(Some(ack))) => ([(header::CONTENT_TYPE, HL7_ER7)], ack).into_response(),
        Ok(Ok(None)) => unauthorised(),
        Ok(Err(error)) => {
            tracing::error!(%error, "HL7 token lookup failed");
            (StatusCode::SERVICE_UNAVAILABLE, "the database is unavailable; send the message again\n").into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response(),
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (the scheme written `Bearer` or
/// `bearer`), if the request carries a non-empty one: integrations (`POST /hl7/v2`) and
/// the FHIR API authenticate with it.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(|token| token.trim().to_owned())
        .filter(|token| !token.is_empty())
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the database answers within two seconds.
async fn readyz(State(state): State<WebState>) -> impl IntoResponse {
    let store = state.app.store().clone();
    let ping = tokio::time::timeout(Duration::from_secs(2), tokio::task::spawn_blocking(move || store.ping())).await;
    match ping {
        Ok(Ok(Ok(()))) => (StatusCode::OK, "ready\n"),
        Ok(Ok(Err(error))) => {
            tracing::warn!(%error, "readiness check: the database did not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
        _ => {
            tracing::warn!("readiness check: the database did not answer in time");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn health_and_readiness_answer_with_security_headers() {
        let database = kith_test_support::TestDatabase::sqlite();
        let app = App::new(database.store(), Arc::new(kith_app::SystemClock));
        let router = router(app);
        for (path, body) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
            let response = router.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
            let bytes = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
            assert_eq!(&bytes[..], body.as_bytes());
        }
        let css = router.clone().oneshot(Request::get("/static/kith.css").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(css.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
        assert!(!css.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("unsafe-inline"));
        let missing = router.oneshot(Request::get("/nope").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }
}
