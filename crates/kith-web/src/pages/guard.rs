//! What protects the web pages: cookies, the signed-in session, CSRF checks, per-address
//! throttling of sign-in and reset attempts, and the cap on concurrent password hashing.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use kith_app::App;
use kith_app::sessions::{SESSION_ABSOLUTE, WebSession};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::error::{PageError, blocking};
use crate::WebState;

pub const SESSION_COOKIE: &str = "kith_session";
pub const FORM_COOKIE: &str = "kith_form";

/// How the web pages behave where they are deployed.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Where Kith is reached, e.g. `https://kith.example.org`. Cookies are `Secure` and HSTS
    /// is sent when it is https.
    pub public_url: String,
    /// Sign-in and reset attempts one address may make: a burst of this many, then one
    /// every [`WebConfig::attempt_refill`].
    pub attempt_burst: u32,
    pub attempt_refill: Duration,
    /// Password hashes computed at once (each takes ~19 MiB and a core for tens of ms).
    pub hashing_permits: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        WebConfig {
            public_url: "http://127.0.0.1:8080".to_owned(),
            attempt_burst: 10,
            attempt_refill: Duration::from_secs(6),
            hashing_permits: (cores / 2).max(1),
        }
    }
}

impl WebConfig {
    pub fn secure(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

/// Shared web state: configuration, the per-address throttle and the hashing cap.
pub struct Guards {
    pub config: WebConfig,
    throttle: Mutex<HashMap<IpAddr, Bucket>>,
    hashing: Semaphore,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Addresses remembered before idle buckets are forgotten.
const THROTTLE_MEMORY: usize = 100_000;

impl Guards {
    pub fn new(config: WebConfig) -> Self {
        let permits = config.hashing_permits.max(1);
        Guards { config, throttle: Mutex::new(HashMap::new()), hashing: Semaphore::new(permits) }
    }

    /// Takes one attempt from `address`'s allowance; false when it has none left.
    pub fn allow_attempt(&self, address: Option<IpAddr>) -> bool {
        let Some(address) = address else { return true };
        let burst = f64::from(self.config.attempt_burst.max(1));
        let refill = self.config.attempt_refill.as_secs_f64().max(0.001);
        let now = Instant::now();
        let mut buckets = self.throttle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= THROTTLE_MEMORY {
            buckets.retain(|_, bucket| (now - bucket.at).as_secs_f64() / refill < burst);
        }
        let bucket = buckets.entry(address).or_insert(Bucket { tokens: burst, at: now });
        bucket.tokens = (bucket.tokens + (now - bucket.at).as_secs_f64() / refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Runs Argon2id work on a blocking thread, at most `hashing_permits` at once; waits up
    /// to ten seconds for a turn, then answers busy.
    pub async fn hash<T: Send + 'static>(
        &self,
        app: &App,
        work: impl FnOnce(&App) -> T + Send + 'static,
    ) -> Result<T, PageError> {
        let permit = tokio::time::timeout(Duration::from_secs(10), self.hashing.acquire())
            .await
            .map_err(|_| PageError::Busy)?
            .map_err(|_| PageError::Busy)?;
        let outcome = blocking(app, work).await;
        drop(permit);
        outcome
    }

    /// Takes one attempt from `address`'s allowance, or refuses: too many attempts.
    pub fn attempt(&self, address: Option<IpAddr>) -> Result<(), PageError> {
        if self.allow_attempt(address) { Ok(()) } else { Err(PageError::TooManyAttempts) }
    }
}

/// The caller's address, when the server recorded it (for the per-address throttle).
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip())))
    }
}

/// A cookie's value from the request.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A `Set-Cookie` value: HttpOnly always, `Secure` behind https.
pub fn set_cookie(
    config: &WebConfig,
    name: &str,
    value: &str,
    same_site: &str,
    max_age: Option<Duration>,
) -> HeaderValue {
    let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    if config.secure() {
        text.push_str("; Secure");
    }
    HeaderValue::from_str(&text).expect("cookie values are ASCII")
}

pub fn session_cookie(config: &WebConfig, secret: &str) -> HeaderValue {
    set_cookie(config, SESSION_COOKIE, secret, "Lax", Some(SESSION_ABSOLUTE))
}

pub fn clear_session_cookie(config: &WebConfig) -> HeaderValue {
    set_cookie(config, SESSION_COOKIE, "", "Lax", Some(Duration::ZERO))
}

/// The CSRF token of a signed-in session: derived from the session secret, so that only a
/// page served to that browser can hold it.
pub fn session_csrf(secret: &str) -> String {
    let digest = Sha256::new().chain_update(b"kith csrf\0").chain_update(secret.as_bytes()).finalize();
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether a state-changing request may come from where it says: refused when the browser
/// says it is cross-site, or when its Origin is not this server.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|value| value.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match headers.get(header::ORIGIN).and_then(|value| value.to_str().ok()) {
        None => true,
        Some(origin) => {
            let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or_default();
            let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
            !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
        }
    }
}

/// Constant-time comparison of two tokens.
pub fn tokens_match(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        && !expected.is_empty()
}

/// The signed-in person, or nobody. Looking the session up reads the database.
pub struct MaybeSignedIn(pub Option<SignedIn>);

/// A live session: the person, and the cookie secret it came from.
pub struct SignedIn {
    pub session: WebSession,
    pub secret: String,
}

impl SignedIn {
    pub fn csrf(&self) -> String {
        session_csrf(&self.secret)
    }
}

impl FromRequestParts<WebState> for MaybeSignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Self::Rejection> {
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE).map(str::to_owned) else {
            return Ok(MaybeSignedIn(None));
        };
        let lookup = secret.clone();
        let session = blocking(&state.app, move |app| app.session(&lookup))
            .await
            .map_err(IntoResponse::into_response)?
            .map_err(|error| PageError::from(error).into_response())?;
        Ok(MaybeSignedIn(session.map(|session| SignedIn { session, secret })))
    }
}

impl FromRequestParts<WebState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Self::Rejection> {
        match MaybeSignedIn::from_request_parts(parts, state).await?.0 {
            // An organisation requiring two-step verification: nothing else until it is set up.
            Some(signed_in)
                if signed_in.session.must_enrol_two_factor
                    && !parts.uri.path().starts_with("/account/two-factor")
                    && parts.uri.path() != "/sign-out" =>
            {
                Err(Redirect::to("/account/two-factor").into_response())
            }
            Some(signed_in) => Ok(signed_in),
            // A page a link led to (an email's, say) is where the sign-in goes on to.
            None if parts.method == axum::http::Method::GET && parts.uri.path() != "/" => {
                let target = parts.uri.path_and_query().map_or("/", |path| path.as_str());
                Err(Redirect::to(&format!("/sign-in?next={}", super::percent_encoded(target))).into_response())
            }
            None => Err(Redirect::to("/sign-in").into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_allows_a_burst_then_refuses() {
        let guards = Guards::new(WebConfig {
            attempt_burst: 3,
            attempt_refill: Duration::from_secs(3600),
            ..WebConfig::default()
        });
        let address = Some(IpAddr::from([192, 0, 2, 1]));
        assert!((0..3).all(|_| guards.allow_attempt(address)));
        assert!(!guards.allow_attempt(address));
        assert!(guards.allow_attempt(Some(IpAddr::from([192, 0, 2, 2]))), "other addresses are not affected");
    }

    #[test]
    fn cookies_and_origins() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; kith_session=abc123; b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc123"));
        headers.insert(header::COOKIE, HeaderValue::from_static("kith_session=bad;value"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("bad"));
        headers.insert(header::COOKIE, HeaderValue::from_static("kith_session=<script>"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), None);

        let mut request = HeaderMap::new();
        request.insert(header::HOST, HeaderValue::from_static("kith.example:8080"));
        assert!(same_origin(&request));
        request.insert(header::ORIGIN, HeaderValue::from_static("http://kith.example:8080"));
        assert!(same_origin(&request));
        request.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&request));
        request.remove(header::ORIGIN);
        request.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&request));
        assert!(tokens_match("abc", "abc") && !tokens_match("abc", "abd") && !tokens_match("", ""));
    }
}
