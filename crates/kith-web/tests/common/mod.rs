//! What the page tests share: a browser over the real router, in-process.
#![allow(dead_code)]

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

/// A browser: keeps cookies, follows nothing, remembers the last form token.
pub struct Browser<'r> {
    router: &'r Router,
    pub cookies: HashMap<String, String>,
    pub csrf: String,
    /// The client's address, as the server's connection would give it (none in-process).
    pub address: Option<std::net::SocketAddr>,
}

pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl<'r> Browser<'r> {
    pub fn new(router: &'r Router) -> Self {
        Browser { router, cookies: HashMap::new(), csrf: String::new(), address: None }
    }

    pub fn from_address(router: &'r Router, address: [u8; 4]) -> Self {
        Browser { address: Some(std::net::SocketAddr::from((address, 5000))), ..Browser::new(router) }
    }

    pub async fn send(&mut self, request: axum::http::request::Builder, body: Body) -> Page {
        let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let request = request.header(header::HOST, "127.0.0.1:8080").header(header::COOKIE, cookie);
        let mut request = request.body(body).unwrap();
        if let Some(address) = self.address {
            request.extensions_mut().insert(axum::extract::ConnectInfo(address));
        }
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let location = response.headers().get(header::LOCATION).map(|value| value.to_str().unwrap().to_owned());
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect();
        for set in &set_cookies {
            let (pair, _) = set.split_once(';').unwrap();
            let (key, value) = pair.split_once('=').unwrap();
            if value.is_empty() {
                self.cookies.remove(key);
            } else {
                self.cookies.insert(key.to_owned(), value.to_owned());
            }
        }
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body = String::from_utf8(bytes.to_vec()).unwrap();
        if let Some(start) = body.find("name=\"csrf\" value=\"") {
            let rest = &body[start + 19..];
            self.csrf = rest[..rest.find('"').unwrap()].to_owned();
        }
        Page { status, location, set_cookies, body }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.send(Request::get(path), Body::empty()).await
    }

    /// Posts a form with the page's token (unless the fields give their own `csrf`).
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.post_with(path, fields, &[]).await
    }

    pub async fn post_with(&mut self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let mut form = form_urlencoded::Serializer::new(String::new());
        if !fields.iter().any(|(key, _)| *key == "csrf") {
            form.append_pair("csrf", &self.csrf);
        }
        for (key, value) in fields {
            form.append_pair(key, value);
        }
        let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (key, value) in headers {
            request = request.header(*key, *value);
        }
        self.send(request, Body::from(form.finish())).await
    }

    pub async fn sign_in(&mut self, email: &str, password: &str) -> Page {
        self.get("/sign-in").await;
        self.post("/sign-in", &[("email", email), ("password", password)]).await
    }

    /// Posts an upload: the page's token, `fields`, and one file field `file` (its file
    /// name, declared type and bytes).
    pub async fn post_file(&mut self, path: &str, fields: &[(&str, &str)], file: (&str, &str, &[u8])) -> Page {
        let boundary = "----kith-test-boundary";
        let mut body: Vec<u8> = Vec::new();
        let csrf = self.csrf.clone();
        for (name, value) in [("csrf", csrf.as_str())].into_iter().chain(fields.iter().copied()) {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        let (file_name, content_type, bytes) = file;
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
                 Content-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let request =
            Request::post(path).header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"));
        self.send(request, Body::from(body)).await
    }

    /// A GET that keeps the response's headers and raw bytes (a download).
    pub async fn download(&mut self, path: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let request = Request::get(path)
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20).await.unwrap().to_vec();
        (status, headers, bytes)
    }
}
