//! Every page route that accepts a POST refuses a request without the token its form must
//! carry. The routes are read from the table the router is built from
//! (`kith_web::pages::post_routes`), so a new form cannot be left out of this test. CSRF is
//! decided before any storage is touched, so SQLite alone is enough here.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use kith_app::sessions::SignIn;
use kith_app::*;
use kith_core::team::MembershipRole;
use kith_core::text::{EmailAddress, Name, OrganisationCode, Secret, TeamAlias};
use kith_core::{LabelSet, PrivacyLabel, Timestamp};
use kith_test_support::TestDatabase;
use kith_web::pages::FormEncoding;
use kith_web::pages::guard::session_csrf;
use tower::ServiceExt;

const PASSWORD: &str = "a long enough test password";
const EXPIRED: &str = "This form has expired";

fn op() -> Operator {
    Operator { name: "test-operator".into() }
}

/// An organisation with one team and its coordinator, who may sign in.
fn world(database: &TestDatabase) -> (App, Router) {
    let app = App::new(database.store(), Arc::new(ManualClock::new(Timestamp::from_micros(1_795_000_000_000_000))));
    let code = OrganisationCode::parse("RXH").unwrap();
    let name = |text: &str| Name::parse("name", text).unwrap();
    app.create_organisation(
        &op(),
        &NewOrganisation { code: code.clone(), name: name("Riverside Hospitals"), break_glass_duration: None },
    )
    .unwrap();
    let alias = TeamAlias::parse("mh").unwrap();
    app.create_team(&op(), &code, &name("Mental Health"), &alias, LabelSet::from_labels([PrivacyLabel::General]))
        .unwrap();
    let hash = kith_app::password::hash_password(&Secret::new(PASSWORD.into())).unwrap();
    app.add_member(
        &op(),
        &NewMember {
            organisation: code,
            team: alias,
            email: EmailAddress::parse("ada@example.org").unwrap(),
            name: name("Ada Example"),
            role: MembershipRole::Coordinator,
            password_hash: Some(hash),
        },
    )
    .unwrap();
    let router = kith_web::router(app.clone());
    (app, router)
}

/// A path with every `{parameter}` filled in (a number fits every one).
fn concrete(pattern: &str) -> String {
    pattern.split('/').map(|segment| if segment.starts_with('{') { "1" } else { segment }).collect::<Vec<_>>().join("/")
}

/// A form for `encoding` with `token` (none when `None`) and a one-line file.
fn form(encoding: FormEncoding, token: Option<&str>) -> (String, String) {
    match encoding {
        FormEncoding::UrlEncoded => {
            let body = token.map(|token| format!("csrf={token}&")).unwrap_or_default() + "unused=1";
            ("application/x-www-form-urlencoded".to_owned(), body)
        }
        FormEncoding::Multipart => {
            let boundary = "kithboundary";
            let token = token
                .map(|token| {
                    format!("--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{token}\r\n")
                })
                .unwrap_or_default();
            let body = format!(
                "{token}--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"staff.csv\"\r\n\
                 Content-Type: text/csv\r\n\r\nemail\r\n--{boundary}--\r\n"
            );
            (format!("multipart/form-data; boundary={boundary}"), body)
        }
    }
}

/// What a refused request was: its description, the token it gave, a header it added.
type Case<'a> = (&'a str, Option<&'a str>, Option<(&'a str, &'a str)>);

struct Answer {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

async fn post(
    router: &Router,
    path: &str,
    encoding: FormEncoding,
    cookie: &str,
    token: Option<&str>,
    extra: Option<(&str, &str)>,
) -> Answer {
    let (content_type, body) = form(encoding, token);
    let mut request = Request::post(path)
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::CONTENT_TYPE, content_type)
        .header(header::COOKIE, cookie);
    if let Some((name, value)) = extra {
        request = request.header(name, value);
    }
    let response = router.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
    let status = response.status();
    let location = response.headers().get(header::LOCATION).map(|value| value.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    Answer { status, location, body: String::from_utf8_lossy(&bytes).into_owned() }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_post_route_refuses_a_form_without_its_token_and_takes_one_with_it() {
    let database = TestDatabase::sqlite();
    let (app, router) = world(&database);
    let routes = kith_web::pages::post_routes();
    let paths: Vec<&str> = routes.iter().map(|(path, _)| *path).collect();
    for expected in ["/sign-in", "/sign-out", "/register/account", "/my/sharing/{team}", "/team/professionals/preview"]
    {
        assert!(paths.contains(&expected), "{expected} is in the route table: {paths:?}");
    }
    assert!(routes.contains(&("/team/professionals/preview", FormEncoding::Multipart)));

    let signed_in = tokio::task::block_in_place(|| app.sign_in("ada@example.org", &Secret::new(PASSWORD.into())));
    let Ok(SignIn::SignedIn(session)) = signed_in else { panic!("the coordinator signs in") };
    let secret = session.secret.expose().to_owned();
    let token = session_csrf(&secret);
    let session_cookie = format!("kith_session={secret}");

    for (pattern, encoding) in &routes {
        let path = concrete(pattern);
        // Signed in, so that a refusal is for the token: none, a wrong one, the right one
        // from another site.
        let cases: [Case; 4] = [
            ("no token", None, None),
            ("a wrong token", Some(&"0".repeat(64)), None),
            ("the session's secret as the token", Some(&secret), None),
            ("the right token from another site", Some(&token), Some(("sec-fetch-site", "cross-site"))),
        ];
        for (what, given, extra) in cases {
            let answer = post(&router, &path, *encoding, &session_cookie, given, extra).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{pattern} with {what}: {}", answer.body);
            assert!(answer.body.contains(EXPIRED), "{pattern} with {what}: {}", answer.body);
        }
        // Signed out: refused for the token, or sent to sign in first.
        let answer = post(&router, &path, *encoding, "", None, None).await;
        let refused = answer.status == StatusCode::FORBIDDEN && answer.body.contains(EXPIRED);
        let to_sign_in = answer.status == StatusCode::SEE_OTHER && answer.location.as_deref() == Some("/sign-in");
        assert!(refused || to_sign_in, "{pattern} signed out: {} {}", answer.status, answer.body);
    }
    assert!(
        tokio::task::block_in_place(|| app.session(&secret)).unwrap().is_some(),
        "no refused form signed the coordinator out"
    );

    // With the right token (the pre-session cookie set to the same value, so that it is right
    // for every kind of form) no route refuses the form for its token; signing out last.
    let both_cookies = format!("{session_cookie}; kith_form={token}");
    let mut in_order: Vec<_> = routes.iter().filter(|(path, _)| *path != "/sign-out").collect();
    in_order.extend(routes.iter().filter(|(path, _)| *path == "/sign-out"));
    for (pattern, encoding) in in_order {
        let answer = post(&router, &concrete(pattern), *encoding, &both_cookies, Some(&token), None).await;
        assert!(!answer.body.contains(EXPIRED), "{pattern} refused a valid token: {} {}", answer.status, answer.body);
    }
    assert!(tokio::task::block_in_place(|| app.session(&secret)).unwrap().is_none(), "signed out at the end");
}
