//! The extractors every state-changing page takes its form through: a handler is given the
//! fields only after the request has shown the token it must carry and that it comes from
//! this site ([`guard::same_origin`]), so no handler can forget the check. A form that
//! cannot be read is refused like one without its token.
//!
//! - [`CsrfForm`]: a form posted with a session cookie — a signed-in session, or the
//!   password-only session waiting for its second step. The token is derived from the
//!   session's secret ([`guard::session_csrf`]).
//! - [`AnonymousCsrfForm`]: a form posted before any session exists (signing in, a
//!   password reset, an activation link, registering): the token must equal the
//!   double-submit cookie ([`guard::FORM_COOKIE`]).
//! - [`CsrfMultipart`]: an upload (multipart) with a session's token.
//!
//! The token travels in the form's `csrf` field; the form types need not declare it.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, RawForm, Request};
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::error::PageError;
use super::guard;
use crate::WebState;

/// The form field that carries the token.
pub const TOKEN_FIELD: &str = "csrf";

/// A urlencoded form posted with a session cookie and the session's token.
pub struct CsrfForm<T>(pub T);

/// A urlencoded form posted before sign-in, with the double-submit cookie's token.
pub struct AnonymousCsrfForm<T>(pub T);

/// Which token a form must carry.
#[derive(Clone, Copy)]
enum Expected {
    /// Derived from the session cookie's secret.
    Session,
    /// Equal to the pre-session form cookie.
    FormCookie,
}

/// Whether `given` is the token the request must carry, from this site.
fn token_ok(headers: &HeaderMap, expected: Expected, given: &str) -> bool {
    let expected = match expected {
        Expected::Session => guard::cookie(headers, guard::SESSION_COOKIE).map(guard::session_csrf),
        Expected::FormCookie => guard::cookie(headers, guard::FORM_COOKIE).map(str::to_owned),
    };
    guard::same_origin(headers) && expected.is_some_and(|expected| guard::tokens_match(&expected, given))
}

/// Reads a urlencoded form, checks its token, then reads its fields as `T`.
async fn checked_form<T: DeserializeOwned>(request: Request, expected: Expected) -> Result<T, PageError> {
    let (parts, body) = request.into_parts();
    let RawForm(bytes) = RawForm::from_request(Request::from_parts(parts.clone(), body), &())
        .await
        .map_err(|_| PageError::FormExpired)?;
    let token = form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == TOKEN_FIELD)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    if !token_ok(&parts.headers, expected, &token) {
        return Err(PageError::FormExpired);
    }
    let axum::Form(fields) = axum::Form::<T>::from_request(Request::from_parts(parts, Body::from(bytes)), &())
        .await
        .map_err(|_| PageError::FormExpired)?;
    Ok(fields)
}

impl<T: DeserializeOwned> FromRequest<WebState> for CsrfForm<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, _state: &WebState) -> Result<Self, Self::Rejection> {
        checked_form(request, Expected::Session).await.map(CsrfForm)
    }
}

impl<T: DeserializeOwned> FromRequest<WebState> for AnonymousCsrfForm<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, _state: &WebState) -> Result<Self, Self::Rejection> {
        checked_form(request, Expected::FormCookie).await.map(AnonymousCsrfForm)
    }
}

/// The answer to an upload larger than its form accepts (the body is not read further).
const TOO_LARGE: &str = "The file is larger than this form accepts (documents: at most 10 MB). Go back and choose a \
     smaller file.\n";

/// A multipart form (an upload) posted with a session cookie and the session's token: its
/// fields, each read whole (the route's body limit bounds them).
pub struct CsrfMultipart {
    /// (field name, the file name the browser gave for a file field, value).
    fields: Vec<(String, Option<String>, Bytes)>,
}

impl CsrfMultipart {
    /// The first field called `name`.
    pub fn field(&self, name: &str) -> Option<&Bytes> {
        self.fields.iter().find(|(field, ..)| field == name).map(|(.., value)| value)
    }

    /// The first field called `name` as text (empty when missing or not UTF-8).
    pub fn text(&self, name: &str) -> &str {
        self.field(name).and_then(|bytes| std::str::from_utf8(bytes).ok()).unwrap_or_default()
    }

    /// The file name the browser sent with the file field `name`, as given.
    pub fn file_name(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(field, ..)| field == name).and_then(|(_, file_name, _)| file_name.as_deref())
    }
}

impl FromRequest<WebState> for CsrfMultipart {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &WebState) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        let mut form = Multipart::from_request(request, state).await.map_err(|_| PageError::FormExpired)?;
        let mut token = String::new();
        let mut fields = Vec::new();
        loop {
            match form.next_field().await {
                Ok(Some(field)) => match field.name().map(str::to_owned) {
                    Some(name) if name == TOKEN_FIELD => token = field.text().await.unwrap_or_default(),
                    Some(name) => {
                        let file_name = field.file_name().map(str::to_owned);
                        match field.bytes().await {
                            Ok(bytes) => fields.push((name, file_name, bytes)),
                            Err(_) => return Err(PageError::refused(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE)),
                        }
                    }
                    None => {}
                },
                Ok(None) => break,
                Err(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    return Err(PageError::refused(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE));
                }
                Err(_) => {
                    return Err(PageError::refused(
                        StatusCode::BAD_REQUEST,
                        "The upload could not be read. Try again.\n",
                    ));
                }
            }
        }
        if !token_ok(&headers, Expected::Session, &token) {
            return Err(PageError::FormExpired);
        }
        Ok(CsrfMultipart { fields })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::{HeaderValue, header};
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Fields {
        #[serde(default)]
        email: String,
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn state() -> (kith_test_support::TestDatabase, WebState) {
        let database = kith_test_support::TestDatabase::sqlite();
        let app = kith_app::App::new(database.store(), Arc::new(kith_app::SystemClock));
        let guards = Arc::new(guard::Guards::new(guard::WebConfig::default()));
        (database, WebState { app, guards })
    }

    fn form(cookie: &str, body: String, extra: Option<(&'static str, &'static str)>) -> Request {
        let mut request = Request::post("/anything")
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        if let Some((name, value)) = extra {
            request.headers_mut().insert(name, HeaderValue::from_static(value));
        }
        request
    }

    #[tokio::test]
    async fn a_session_form_is_read_only_with_the_sessions_token_from_this_site() {
        let (_database, state) = state();
        let cookie = format!("kith_session={SECRET}");
        let token = guard::session_csrf(SECRET);
        let body = format!("csrf={token}&email=ada%40example.org");
        let CsrfForm(fields) =
            CsrfForm::<Fields>::from_request(form(&cookie, body.clone(), None), &state).await.expect("accepted");
        assert_eq!(fields, Fields { email: "ada@example.org".to_owned() });

        let refused = |result: Result<CsrfForm<Fields>, PageError>| matches!(result, Err(PageError::FormExpired));
        for (cookie, body, extra) in [
            (cookie.clone(), "email=ada%40example.org".to_owned(), None),
            (cookie.clone(), format!("csrf={}&email=x", "0".repeat(64)), None),
            (cookie.clone(), format!("csrf={SECRET}&email=x"), None),
            (String::new(), body.clone(), None),
            (format!("kith_form={token}"), body.clone(), None),
            (cookie.clone(), body.clone(), Some(("sec-fetch-site", "cross-site"))),
            (cookie.clone(), body.clone(), Some(("origin", "https://evil.example"))),
        ] {
            assert!(refused(CsrfForm::<Fields>::from_request(form(&cookie, body, extra), &state).await));
        }
        // Not a urlencoded form: refused like one without its token.
        let json = Request::post("/anything")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(format!("{{\"csrf\":\"{token}\"}}")))
            .unwrap();
        assert!(refused(CsrfForm::<Fields>::from_request(json, &state).await));
    }

    #[tokio::test]
    async fn an_anonymous_form_is_read_only_with_its_cookies_token() {
        let (_database, state) = state();
        let token = "a".repeat(64);
        let body = format!("csrf={token}&email=ada%40example.org");
        let accepted =
            AnonymousCsrfForm::<Fields>::from_request(form(&format!("kith_form={token}"), body.clone(), None), &state)
                .await;
        assert!(matches!(accepted, Ok(AnonymousCsrfForm(Fields { email })) if email == "ada@example.org"));
        // A session's token is not a pre-session form's token.
        let session = format!("kith_session={SECRET}");
        let body = format!("csrf={}&email=x", guard::session_csrf(SECRET));
        let refused = AnonymousCsrfForm::<Fields>::from_request(form(&session, body, None), &state).await;
        assert!(matches!(refused, Err(PageError::FormExpired)));
    }

    #[tokio::test]
    async fn an_upload_is_read_only_with_the_sessions_token() {
        let (_database, state) = state();
        let upload = |token: &str| {
            let boundary = "kithboundary";
            let body = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{token}\r\n--{boundary}\r\n\
                 Content-Disposition: form-data; name=\"file\"; filename=\"staff.csv\"\r\nContent-Type: text/csv\r\n\r\n\
                 a,b\r\n--{boundary}--\r\n"
            );
            Request::post("/anything")
                .header(header::COOKIE, format!("kith_session={SECRET}"))
                .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
                .body(Body::from(body))
                .unwrap()
        };
        let accepted = CsrfMultipart::from_request(upload(&guard::session_csrf(SECRET)), &state).await;
        assert_eq!(accepted.expect("accepted").field("file").map(|bytes| &bytes[..]), Some(&b"a,b"[..]));
        assert!(matches!(CsrfMultipart::from_request(upload("forged"), &state).await, Err(PageError::FormExpired)));
    }
}
