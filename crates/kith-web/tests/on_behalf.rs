//! Consent on the patient's behalf through the real router, on SQLite and PostgreSQL
//! (issue 15): the Patient Record Team's data-quality professional records it with `PUT
//! /fhir/Consent/{id}` and a reason, only for the labels the organisation allows; the
//! unregistered patient is told nothing until they register, and then the walkthrough's
//! first step shows who changed what, in which team and organisation, when and why; once
//! registered they are told at once.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use kith_app::*;
use kith_core::patient::{Demographics, NhsNumber, Sex};
use kith_core::team::MembershipRole;
use kith_core::text::{EmailAddress, Name, OrganisationCode, TeamAlias};
use kith_core::{Date, Timestamp};
use kith_test_support::TestDatabase;
use kith_web::WebConfig;
use serde_json::{Value, json};
use tower::ServiceExt;

const START: Timestamp = Timestamp::from_micros(1_795_000_000_000_000);
const FAKE_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$dGVzdHNhbHQ$dGVzdGhhc2g";
const REASON: &str = "Checking a result filed against the wrong record";

fn op() -> Operator {
    Operator { name: "test-operator".into() }
}
fn rxh() -> OrganisationCode {
    OrganisationCode::parse("RXH").unwrap()
}
fn email(text: &str) -> EmailAddress {
    EmailAddress::parse(text).unwrap()
}
fn name(text: &str) -> Name {
    Name::parse("name", text).unwrap()
}
fn sync<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

async fn call(router: &Router, method: &str, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/fhir+json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 22).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// Posts a form and keeps the cookies; returns the status, the redirect and the body.
async fn post(
    router: &Router,
    cookies: &mut HashMap<String, String>,
    path: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, Option<String>, String) {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (key, value) in fields {
        form.append_pair(key, value);
    }
    send(
        router,
        cookies,
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
        form.finish(),
    )
    .await
}

async fn send(
    router: &Router,
    cookies: &mut HashMap<String, String>,
    request: axum::http::request::Builder,
    body: String,
) -> (StatusCode, Option<String>, String) {
    let cookie = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
    let request = request.header(header::HOST, "127.0.0.1:8080").header(header::COOKIE, cookie);
    let response = router.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
    let status = response.status();
    let location = response.headers().get(header::LOCATION).map(|value| value.to_str().unwrap().to_owned());
    for set in response.headers().get_all(header::SET_COOKIE) {
        let (pair, _) = set.to_str().unwrap().split_once(';').unwrap();
        let (key, value) = pair.split_once('=').unwrap();
        cookies.insert(key.to_owned(), value.to_owned());
    }
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, location, String::from_utf8(bytes.to_vec()).unwrap())
}

fn csrf(body: &str) -> String {
    let start = body.find("name=\"csrf\" value=\"").expect("a form token") + 19;
    body[start..start + body[start..].find('"').unwrap()].to_owned()
}

async fn on_behalf_then_registration(database: TestDatabase) {
    let clock = Arc::new(ManualClock::new(START));
    let app = App::new(sync(|| database.store()), clock.clone());
    sync(|| {
        app.create_organisation(
            &op(),
            &NewOrganisation { code: rxh(), name: name("Riverside Hospitals"), break_glass_duration: None },
        )
        .unwrap();
        app.add_member(
            &op(),
            &NewMember {
                organisation: rxh(),
                team: TeamAlias::patient_record_team(),
                email: email("dq@example.org"),
                name: name("Dana Quill"),
                role: MembershipRole::Professional,
                password_hash: Some(FAKE_HASH.into()),
            },
        )
        .unwrap();
    });
    let patient = sync(|| {
        app.create_patient(
            &op(),
            &NewPatient {
                organisation: rxh(),
                demographics: Demographics {
                    family_name: name("Okafor"),
                    given_name: name("Ngozi"),
                    birth_date: Date::parse("1971-09-14").unwrap(),
                    sex: Sex::Female,
                    email: Some(email("ngozi@example.org")),
                    mobile: None,
                    address: None,
                },
                nhs_number: Some(NhsNumber::parse("9434765919").unwrap()),
                local_identifiers: vec![],
                teams: vec![],
            },
        )
        .unwrap()
    });
    let prt = sync(|| app.teams_with_members(&rxh()))
        .unwrap()
        .into_iter()
        .find(|(team, _)| team.alias == TeamAlias::patient_record_team())
        .unwrap()
        .0;
    let token = sync(|| app.create_api_token(&op(), &email("dq@example.org"), &name("api"), None))
        .unwrap()
        .secret
        .expose()
        .to_owned();
    let router = kith_web::router_with(app.clone(), WebConfig { attempt_burst: 1000, ..WebConfig::default() });
    let outbox = |template: &str| {
        sync(|| app.store().read(|tx| tx.outbox(1000)))
            .unwrap()
            .into_iter()
            .filter(|row| row.message.template == template && row.message.recipient == "ngozi@example.org")
            .collect::<Vec<_>>()
    };

    // The data-quality professional gives their own team general health, with a reason.
    let id = format!("{}{}", patient.id.as_uuid().simple(), prt.id.as_uuid().simple());
    let consent = |labels: &[&str]| {
        json!({
            "resourceType": "Consent",
            "id": id,
            "status": "active",
            "provision": { "securityLabel": labels.iter().map(|code| json!({ "system": kith_web::fhir::PRIVACY_LABEL_SYSTEM, "code": code })).collect::<Vec<_>>() },
            "extension": [{ "url": "https://kith.dev/fhir/StructureDefinition/on-behalf-reason", "valueString": REASON }],
        })
    };
    let path = format!("/fhir/Consent/{id}");
    let (status, changed) = call(&router, "PUT", &path, &token, consent(&["general"])).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["extension"][0]["valueCode"], "on_behalf_of_patient");
    // Mental health is not among the organisation's on-behalf labels: refused, saying which are.
    let (status, refused) = call(&router, "PUT", &path, &token, consent(&["general", "mental_health"])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(
        refused["issue"][0]["diagnostics"].as_str().unwrap().ends_with("on a patient's behalf: general"),
        "{refused}"
    );
    assert!(outbox("consent_changed_patient").is_empty(), "not registered: told at registration");

    // The patient registers from the invitation the record's email sent.
    let secret = outbox("patient_invitation").pop().unwrap().message.secret.unwrap();
    let mut cookies = HashMap::new();
    let (_, _, form) =
        send(&router, &mut cookies, Request::get(format!("/register?code={secret}")), String::new()).await;
    let (invitation, activation) = kith_app::invitations::split_codes(&secret);
    let (_, _, page) = post(
        &router,
        &mut cookies,
        "/register",
        &[
            ("csrf", &csrf(&form)),
            ("invitation", &invitation),
            ("activation", &activation),
            ("day", "14"),
            ("month", "9"),
            ("year", "1971"),
        ],
    )
    .await;
    let password = "a long enough test password";
    let (_, location, _) = post(
        &router,
        &mut cookies,
        "/register/account",
        &[
            ("csrf", &csrf(&page)),
            ("codes", &secret),
            ("birth_date", "1971-09-14"),
            ("email", "ngozi@example.org"),
            ("password", password),
            ("confirm", password),
        ],
    )
    .await;
    assert_eq!(location.as_deref(), Some("/welcome"));
    let (status, _, welcome) = send(&router, &mut cookies, Request::get("/welcome"), String::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(welcome.contains("<h2>Changes made on your behalf</h2>"), "{welcome}");
    let row = "<tr><td>2026-11-18 11:06 UTC</td><td>Dana Quill</td><td>Patient Record Team</td><td>Riverside \
               Hospitals</td><td>It can now also see general health.</td><td>Checking a result filed against the \
               wrong record</td></tr>";
    assert!(welcome.contains(row), "{welcome}");

    // Registered, the next change on their behalf is sent at once (no health information).
    let (status, _) = call(&router, "PUT", &path, &token, consent(&[])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outbox("consent_changed_patient").len(), 1);
    let (_, _, welcome) = send(&router, &mut cookies, Request::get("/welcome"), String::new()).await;
    assert!(welcome.contains("It can no longer see general health."), "{welcome}");
    sync(|| drop((router, app, database)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_on_the_patient_s_behalf_is_shown_at_registration_on_sqlite() {
    on_behalf_then_registration(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_on_the_patient_s_behalf_is_shown_at_registration_on_postgres() {
    let Some(database) = sync(TestDatabase::postgres) else { return };
    on_behalf_then_registration(database).await;
}
