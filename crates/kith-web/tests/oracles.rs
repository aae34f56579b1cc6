//! No existence oracles (issue 15), through the real router on SQLite and PostgreSQL: a
//! caller who may not know whether a patient exists gets the same status and body, in
//! roughly the same time, whether it exists or not — `PUT /fhir/Consent/{id}`,
//! `$add-patient`, and the Patient Record Team coordinator's patient reset and remind forms
//! — with callers from a second organisation; and what privacy officers see of it.
//!
//! Timing: for each oracle, 200 requests about an existing and 200 about a non-existent
//! subject, after a warm-up, interleaved (the order alternating within each pair, so that
//! drift and caches fall on both alike); the medians are printed and must be within 10 %.
//! On a loaded machine one measurement can be unlucky, so up to three are made and the
//! test passes when one of them is within 10 % (a real difference shows in all three).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use kith_app::*;
use kith_core::model::Patient;
use kith_core::patient::{Demographics, NhsNumber, Sex};
use kith_core::team::MembershipRole;
use kith_core::text::{EmailAddress, Name, OrganisationCode, Secret, TeamAlias};
use kith_core::{Date, LabelSet, PatientId, PrivacyLabel, TeamId, Timestamp};
use kith_test_support::TestDatabase;
use kith_web::WebConfig;
use serde_json::{Value, json};
use tower::ServiceExt;

const START: Timestamp = Timestamp::from_micros(1_795_000_000_000_000);
/// Not a real hash: FHIR callers do not sign in.
const FAKE_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$dGVzdHNhbHQ$dGVzdGhhc2g";
const PASSWORD: &str = "a long enough test password";
const NHS_A: &str = "9434765919";
const NHS_B: &str = "9999999468";
/// A valid NHS number no record has.
const NHS_NOBODY: &str = "9876543210";
const BORN: &str = "1971-09-14";

const SAMPLES: usize = 200;
const WARM_UP: usize = 20;
const TOLERANCE: f64 = 0.10;
const MEASUREMENTS: usize = 3;

fn op() -> Operator {
    Operator { name: "test-operator".into() }
}
fn rxh() -> OrganisationCode {
    OrganisationCode::parse("RXH").unwrap()
}
fn rxb() -> OrganisationCode {
    OrganisationCode::parse("RXB").unwrap()
}
fn alias(text: &str) -> TeamAlias {
    TeamAlias::parse(text).unwrap()
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

struct World {
    _database: TestDatabase,
    app: App,
    clock: Arc<ManualClock>,
    router: Router,
    /// Registered, in RXH, linked to team gum only.
    a: Patient,
    mh: TeamId,
    card: TeamId,
}

impl World {
    fn team(&self, organisation: &OrganisationCode, team: &str) -> TeamId {
        sync(|| self.app.teams_with_members(organisation))
            .unwrap()
            .into_iter()
            .find(|(t, _)| t.alias.as_str() == team)
            .unwrap()
            .0
            .id
    }

    fn token(&self, who: &str) -> String {
        sync(|| self.app.create_api_token(&op(), &email(who), &name("api"), None).unwrap().secret.expose().to_owned())
    }

    async fn call(&self, method: &str, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/fhir+json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 22).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let request = Request::get(path).header(header::AUTHORIZATION, format!("Bearer {token}")).body(Body::empty());
        let response = self.router.clone().oneshot(request.unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 22).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn outbox_to(&self, template: &str, recipient: &str) -> usize {
        sync(|| self.app.store().read(|tx| tx.outbox(100_000)))
            .unwrap()
            .iter()
            .filter(|row| row.message.template == template && row.message.recipient == recipient)
            .count()
    }
}

fn patient(
    given: &str,
    nhs: &str,
    address: Option<&str>,
    organisation: OrganisationCode,
    teams: &[&str],
) -> NewPatient {
    NewPatient {
        organisation,
        demographics: Demographics {
            family_name: name("Okafor"),
            given_name: name(given),
            birth_date: Date::parse(BORN).unwrap(),
            sex: Sex::Female,
            email: address.map(email),
            mobile: None,
            address: None,
        },
        nhs_number: Some(NhsNumber::parse(nhs).unwrap()),
        local_identifiers: vec![],
        teams: teams.iter().map(|team| alias(team)).collect(),
    }
}

/// RXH: teams mh and gum, their professionals, two Patient Record Team coordinators and a
/// privacy officer; patient A (registered, in gum) and patient B (invited, in no team).
/// RXB: team card with a professional, a Patient Record Team coordinator and a privacy
/// officer.
fn world(database: TestDatabase) -> World {
    let clock = Arc::new(ManualClock::new(START));
    let app = App::new(database.store(), clock.clone());
    let hash = kith_app::password::hash_password(&Secret::new(PASSWORD.into())).unwrap();
    for (code, organisation_name) in [(rxh(), "Riverside Hospitals"), (rxb(), "Brookside Trust")] {
        app.create_organisation(
            &op(),
            &NewOrganisation { code, name: name(organisation_name), break_glass_duration: None },
        )
        .unwrap();
    }
    let general_and = |label| LabelSet::from_labels([PrivacyLabel::General, label]);
    app.create_team(&op(), &rxh(), &name("Mental Health"), &alias("mh"), general_and(PrivacyLabel::MentalHealth))
        .unwrap();
    app.create_team(&op(), &rxh(), &name("Sexual Health"), &alias("gum"), general_and(PrivacyLabel::SexualHealth))
        .unwrap();
    app.create_team(&op(), &rxb(), &name("Cardiology"), &alias("card"), general_and(PrivacyLabel::General)).unwrap();
    for (organisation, team, who, role, password) in [
        (rxh(), "mh", "pro@example.org", MembershipRole::Professional, FAKE_HASH),
        (rxh(), "gum", "gum@example.org", MembershipRole::Professional, FAKE_HASH),
        (rxh(), "gum", "privacy@example.org", MembershipRole::Coordinator, FAKE_HASH),
        (rxh(), "prt", "prt.c1@example.org", MembershipRole::Coordinator, hash.as_str()),
        (rxh(), "prt", "prt.c2@example.org", MembershipRole::Coordinator, hash.as_str()),
        (rxb(), "card", "card.b@example.org", MembershipRole::Professional, FAKE_HASH),
        (rxb(), "card", "privacy.b@example.org", MembershipRole::Coordinator, FAKE_HASH),
        (rxb(), "prt", "prt.b@example.org", MembershipRole::Coordinator, hash.as_str()),
    ] {
        app.add_member(
            &op(),
            &NewMember {
                organisation,
                team: alias(team),
                email: email(who),
                name: name(who.split('@').next().unwrap()),
                role,
                password_hash: Some(password.to_owned()),
            },
        )
        .unwrap();
    }
    app.appoint_privacy_officer(&op(), &rxh(), &email("privacy@example.org")).unwrap();
    app.appoint_privacy_officer(&op(), &rxb(), &email("privacy.b@example.org")).unwrap();
    let a = app.create_patient(&op(), &patient("Ngozi", NHS_A, None, rxh(), &["gum"])).unwrap();
    app.register_patient_account(&op(), &rxh(), a.id, &email("a@example.org"), FAKE_HASH).unwrap();
    app.create_patient(&op(), &patient("Bisi", NHS_B, Some("b@example.org"), rxh(), &[])).unwrap();
    let router = kith_web::router_with(app.clone(), WebConfig { attempt_burst: 1000, ..WebConfig::default() });
    let mut world = World {
        _database: database,
        app,
        clock,
        router,
        a,
        mh: TeamId::from_uuid(uuid::Uuid::nil()),
        card: TeamId::from_uuid(uuid::Uuid::nil()),
    };
    world.mh = world.team(&rxh(), "mh");
    world.card = world.team(&rxb(), "card");
    world
}

/// Runs `test` on SQLite and, when configured, PostgreSQL.
async fn each_world(test: impl AsyncFn(&World)) {
    for database in sync(TestDatabase::all) {
        eprintln!("backend: {:?}", database.engine);
        let world = sync(|| world(database));
        test(&world).await;
        sync(|| drop(world));
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Times `request(existing)` for an existing and a non-existent subject, interleaved, and
/// checks each pair's answers are equal; returns when the medians are within
/// [`TOLERANCE`], or fails after [`MEASUREMENTS`] tries.
async fn same_answer_same_time<F: AsyncFnMut(bool, usize) -> String>(what: &str, mut request: F) {
    let mut results = Vec::new();
    for measurement in 0..MEASUREMENTS {
        let mut existing = Vec::with_capacity(SAMPLES);
        let mut missing = Vec::with_capacity(SAMPLES);
        for index in 0..WARM_UP + SAMPLES {
            let mut answers: [Option<String>; 2] = [None, None];
            let order = if index % 2 == 0 { [true, false] } else { [false, true] };
            for exists in order {
                let started = Instant::now();
                let answer = request(exists, index).await;
                let took = started.elapsed();
                if index >= WARM_UP {
                    if exists { &mut existing } else { &mut missing }.push(took);
                }
                answers[usize::from(exists)] = Some(answer);
            }
            assert_eq!(answers[1], answers[0], "{what}: the answer about an existing subject and a missing one differ");
        }
        let (existing, missing) = (median(&mut existing), median(&mut missing));
        let difference = existing.as_secs_f64() / missing.as_secs_f64() - 1.0;
        println!(
            "{what}: median {:.3} ms for an existing subject, {:.3} ms for a non-existent one ({:+.1} %), measurement {}",
            existing.as_secs_f64() * 1e3,
            missing.as_secs_f64() * 1e3,
            difference * 100.0,
            measurement + 1
        );
        if difference.abs() <= TOLERANCE {
            return;
        }
        results.push(difference);
    }
    panic!("{what}: the medians differ by more than 10 % in every measurement: {results:?}");
}

fn consent_body(patient: PatientId, team: TeamId, reason: Option<&str>) -> (String, Value) {
    let id = format!("{}{}", patient.as_uuid().simple(), team.as_uuid().simple());
    let mut consent = json!({
        "resourceType": "Consent",
        "id": id,
        "status": "active",
        "provision": { "securityLabel": [{ "system": kith_web::fhir::PRIVACY_LABEL_SYSTEM, "code": "general" }] },
    });
    if let Some(reason) = reason {
        consent["extension"] =
            json!([{ "url": "https://kith.dev/fhir/StructureDefinition/on-behalf-reason", "valueString": reason }]);
    }
    (format!("/fhir/Consent/{id}"), consent)
}

const REASON: &str = "Patient asked by phone to change what the team sees";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_consent_answers_the_same_whether_or_not_the_patient_exists() {
    each_world(async |w: &World| {
        let nobody = PatientId::from_uuid(uuid::Uuid::now_v7());
        let pro = w.token("pro@example.org");
        let card_b = w.token("card.b@example.org");
        // Patient A is not in team mh; RXB's professional is in no team of A's. Each time
        // the same answer as for an id no record has: with and without a reason, on their
        // own team's link and on another organisation's.
        // A member of the team without a reason is told so (422) — whatever the record.
        for (who, token, team, member) in [
            ("mh", &pro, w.mh, true),
            ("RXB on its own team", &card_b, w.card, true),
            ("RXB on mh", &card_b, w.mh, false),
        ] {
            for reason in [Some(REASON), None] {
                let (path, body) = consent_body(w.a.id, team, reason);
                let existing = w.call("PUT", &path, token, body).await;
                let (path, body) = consent_body(nobody, team, reason);
                let missing = w.call("PUT", &path, token, body).await;
                assert_eq!(existing, missing, "{who}, reason {reason:?}");
                let expected =
                    if reason.is_none() && member { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::NOT_FOUND };
                assert_eq!(existing.0, expected, "{who}, reason {reason:?}: {}", existing.1);
            }
        }

        let (existing_path, existing_body) = consent_body(w.a.id, w.mh, Some(REASON));
        same_answer_same_time("PUT /fhir/Consent/{id}", async |exists, _| {
            let (path, body) = if exists {
                (existing_path.clone(), existing_body.clone())
            } else {
                consent_body(PatientId::from_uuid(uuid::Uuid::now_v7()), w.mh, Some(REASON))
            };
            let (status, body) = w.call("PUT", &path, &pro, body).await;
            format!("{status}\n{body}")
        })
        .await;

        // RXH's privacy officer lists the attempts on RXH's teams, with their reasons.
        let officer = w.token("privacy@example.org");
        let (status, bundle) = w.get("/fhir/AuditEvent?subtype=consent.change", &officer).await;
        assert_eq!(status, StatusCode::OK, "{bundle}");
        assert!(bundle["total"].as_u64().unwrap() > 2 * SAMPLES as u64, "{}", bundle["total"]);
        let events = bundle["entry"].as_array().unwrap();
        let event = &events[0]["resource"];
        assert_eq!(event["subtype"][0]["code"], "consent.change");
        assert_eq!(event["outcome"], "4");
        assert_eq!(event["source"]["site"], "Riverside Hospitals");
        assert!(event["outcomeDesc"].as_str().unwrap().contains(REASON), "{event}");
        let (status, _) = w.get("/fhir/AuditEvent?subtype=consent.change", &pro).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "not a privacy officer");
        let officer_b = w.token("privacy.b@example.org");
        let (_, theirs) = w.get("/fhir/AuditEvent?subtype=consent.change", &officer_b).await;
        let theirs = theirs["entry"].as_array().unwrap();
        assert!(!theirs.is_empty());
        assert!(
            theirs.iter().all(|e| e["resource"]["source"]["site"] == "Brookside Trust"),
            "only attempts on RXB's teams: {theirs:?}"
        );
    })
    .await;
}

fn add_patient_body(nhs: &str, born: &str) -> Value {
    json!({ "resourceType": "Parameters", "parameter": [
        { "name": "identifier", "valueIdentifier": { "system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs } },
        { "name": "birthdate", "valueDate": born },
    ] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_patient_answers_the_same_whether_or_not_the_patient_exists() {
    each_world(async |w: &World| {
        let card_b = w.token("card.b@example.org");
        let pro = w.token("pro@example.org");
        let to_card = format!("/fhir/CareTeam/{}/$add-patient", w.card);
        let to_mh = format!("/fhir/CareTeam/{}/$add-patient", w.mh);
        // RXB's professional with A's right NHS number and date of birth (A is in RXH only);
        // RXH's with a wrong date of birth: the same answer as a number no record has.
        let nobody = w.call("POST", &to_card, &card_b, add_patient_body(NHS_NOBODY, BORN)).await;
        assert_eq!(nobody.0, StatusCode::NOT_FOUND, "{}", nobody.1);
        assert_eq!(w.call("POST", &to_card, &card_b, add_patient_body(NHS_A, BORN)).await, nobody);
        assert_eq!(w.call("POST", &to_mh, &pro, add_patient_body(NHS_A, "1971-09-15")).await, nobody);
        assert_eq!(w.call("POST", &to_mh, &pro, add_patient_body(NHS_NOBODY, BORN)).await, nobody);

        // Ten misses an hour at most: step the clock so that the limit is never reached.
        w.clock.advance(Duration::from_secs(3601));
        same_answer_same_time("POST /fhir/CareTeam/{id}/$add-patient", async |exists, _| {
            w.clock.advance(Duration::from_secs(7 * 60));
            let body = add_patient_body(if exists { NHS_A } else { NHS_NOBODY }, BORN);
            let (status, body) = w.call("POST", &to_card, &card_b, body).await;
            format!("{status}\n{body}")
        })
        .await;

        // The limit: the tenth miss in an hour tells RXB's privacy officer; then every
        // look-up is answered 429 without looking, even a match.
        w.clock.advance(Duration::from_secs(3601));
        let told = w.outbox_to("patient_lookup_limit_privacy_officer", "privacy.b@example.org");
        for _ in 0..MAX_LOOKUP_MISSES_PER_HOUR {
            assert_eq!(w.call("POST", &to_card, &card_b, add_patient_body(NHS_A, BORN)).await, nobody);
        }
        assert_eq!(w.outbox_to("patient_lookup_limit_privacy_officer", "privacy.b@example.org"), told + 1);
        let (status, body) = w.call("POST", &to_card, &card_b, add_patient_body(NHS_NOBODY, BORN)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["issue"][0]["code"], "throttled");
        // Another professional is not held back, and a match is still a match.
        let gum = w.token("gum@example.org");
        let to_gum = format!("/fhir/CareTeam/{}/$add-patient", w.team(&rxh(), "gum"));
        let (status, body) = w.call("POST", &to_gum, &gum, add_patient_body(NHS_B, BORN)).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // The patient sees the attempts in their access log; RXB's privacy officer sees the
        // limit and the misses.
        let own = w.token("a@example.org");
        let (_, log) = w.get("/fhir/AuditEvent?subtype=care_link.create", &own).await;
        let card_b_id = sync(|| w.app.account_by_email(&email("card.b@example.org"))).unwrap().id;
        assert!(log["total"].as_u64().unwrap() > SAMPLES as u64, "{}", log["total"]);
        let newest = &log["entry"][0]["resource"];
        assert_eq!(newest["agent"][0]["who"]["reference"], format!("Practitioner/{card_b_id}"), "{newest}");
        assert_eq!(newest["outcome"], "4");
        let officer_b = w.token("privacy.b@example.org");
        let (_, limits) = w.get("/fhir/AuditEvent?subtype=patient.lookup_limit", &officer_b).await;
        assert!(limits["total"].as_u64().unwrap() >= 1, "{limits}");
    })
    .await;
}

/// A browser: keeps cookies, remembers the last form token.
struct Browser<'w> {
    world: &'w World,
    cookies: HashMap<String, String>,
    csrf: String,
}

impl<'w> Browser<'w> {
    async fn signed_in(world: &'w World, who: &str) -> Self {
        let mut browser = Browser { world, cookies: HashMap::new(), csrf: String::new() };
        browser.get("/sign-in").await;
        let (status, _) = browser.post("/sign-in", &[("email", who), ("password", PASSWORD)]).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{who} signs in");
        // The signed-in form token.
        let (status, _) = browser.get("/team/members").await;
        assert_eq!(status, StatusCode::OK, "{who} coordinates a team");
        browser
    }

    async fn send(&mut self, request: axum::http::request::Builder, body: Body) -> (StatusCode, String) {
        let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let request = request.header(header::HOST, "127.0.0.1:8080").header(header::COOKIE, cookie);
        let response = self.world.router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status();
        for set in response.headers().get_all(header::SET_COOKIE) {
            let (pair, _) = set.to_str().unwrap().split_once(';').unwrap();
            let (key, value) = pair.split_once('=').unwrap();
            self.cookies.insert(key.to_owned(), value.to_owned());
        }
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body = String::from_utf8(bytes.to_vec()).unwrap();
        if let Some(start) = body.find("name=\"csrf\" value=\"") {
            let rest = &body[start + 19..];
            self.csrf = rest[..rest.find('"').unwrap()].to_owned();
        }
        (status, body)
    }

    async fn get(&mut self, path: &str) -> (StatusCode, String) {
        self.send(Request::get(path), Body::empty()).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("csrf", &self.csrf);
        for (key, value) in fields {
            form.append_pair(key, value);
        }
        let request = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        self.send(request, Body::from(form.finish())).await
    }
}

fn identity(nhs: &str) -> [(&'static str, &str); 3] {
    [("nhs_number", nhs), ("family", "okafor"), ("birth_date", BORN)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_patient_reset_and_remind_forms_answer_the_same_whether_or_not_a_patient_matches() {
    each_world(async |w: &World| {
        // RXB's Patient Record Team coordinator, about RXH's registered patient A: the same
        // page as about nobody, and nothing sent.
        let mut rxb_coordinator = Browser::signed_in(w, "prt.b@example.org").await;
        let about_a = rxb_coordinator.post("/team/patient-reset", &identity(NHS_A)).await;
        let about_nobody = rxb_coordinator.post("/team/patient-reset", &identity(NHS_NOBODY)).await;
        assert_eq!(about_a, about_nobody);
        assert_eq!(about_a.0, StatusCode::OK, "{}", about_a.1);
        assert_eq!(w.outbox_to("password_reset", "a@example.org"), 0);

        // RXH's coordinators: a registered patient who matches, and nobody. Two
        // coordinators take turns and the clock moves 150 s a pair, so that neither reaches
        // 30 identity checks an hour; they sign in afresh for each measurement, so that no
        // session grows older than 12 hours.
        let mut coordinator = Browser::signed_in(w, "prt.c1@example.org").await;
        let (status, page) = coordinator.post("/team/patient-reset", &identity(NHS_A)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains(kith_app::coordinators::PATIENT_RESET_ANSWER.split(',').next().unwrap()), "{page}");
        assert_eq!(w.outbox_to("password_reset", "a@example.org"), 1, "a match sends the link");
        for (form, existing_nhs) in [("/team/patient-reset", NHS_A), ("/team/patient-remind", NHS_B)] {
            let sent_before =
                w.outbox_to("password_reset", "a@example.org") + w.outbox_to("patient_invitation", "b@example.org");
            let mut coordinators: Vec<Browser<'_>> = Vec::new();
            same_answer_same_time(&format!("POST {form}"), async |exists, index| {
                if exists == (index % 2 == 0) {
                    if index == 0 {
                        coordinators = vec![
                            Browser::signed_in(w, "prt.c1@example.org").await,
                            Browser::signed_in(w, "prt.c2@example.org").await,
                        ];
                    }
                    w.clock.advance(Duration::from_secs(150));
                }
                let coordinator = &mut coordinators[index % 2];
                let (status, page) =
                    coordinator.post(form, &identity(if exists { existing_nhs } else { NHS_NOBODY })).await;
                format!("{status}\n{page}")
            })
            .await;
            let sent =
                w.outbox_to("password_reset", "a@example.org") + w.outbox_to("patient_invitation", "b@example.org");
            assert!(sent - sent_before >= SAMPLES + WARM_UP, "every match sent something: {sent} after {sent_before}");
        }
    })
    .await;
}
