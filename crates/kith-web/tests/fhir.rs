//! The FHIR API's access matrix, on SQLite and PostgreSQL: for each route and each kind of
//! caller, the status and the body follow the one rule, and nothing hidden appears anywhere
//! in a response.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use kith_app::*;
use kith_core::model::{Entry, Patient};
use kith_core::patient::{Demographics, EntryKind, NhsNumber, Sex};
use kith_core::team::{MembershipRole, MembershipStatus};
use kith_core::text::{EmailAddress, Name, OrganisationCode, Reason, TeamAlias, Title};
use kith_core::{Date, LabelSet, PrivacyLabel, Timestamp};
use kith_test_support::TestDatabase;
use serde_json::{Value, json};
use tower::ServiceExt;

const START: Timestamp = Timestamp::from_micros(1_795_000_000_000_000);
/// Not a real hash: nobody signs in here, and Argon2 in debug builds is slow.
const FAKE_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$dGVzdHNhbHQ$dGVzdGhhc2g";
const NHS_A: &str = "9434765919";

fn op() -> Operator {
    Operator { name: "test-operator".into() }
}
fn code() -> OrganisationCode {
    OrganisationCode::parse("RXH").unwrap()
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

struct World {
    _database: TestDatabase,
    app: App,
    clock: Arc<ManualClock>,
    router: Router,
    a: Patient,
    b: Patient,
    /// Patient A's entries: result general, result mental health, measurement sexual
    /// health, document general.
    entries: Vec<Entry>,
}

impl World {
    fn token(&self, who: &str, token_name: &str, days: Option<u32>) -> String {
        sync(|| {
            self.app.create_api_token(&op(), &email(who), &name(token_name), days).unwrap().secret.expose().to_owned()
        })
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/fhir+json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let response = self.router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
        assert_eq!(content_type, "application/fhir+json; charset=utf-8", "{method} {path}");
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        }
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 22).await.unwrap();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        if !status.is_success() {
            assert_eq!(value["resourceType"], "OperationOutcome", "{method} {path}: {value}");
        }
        (status, value)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call("GET", path, token, None).await
    }

    /// Nothing about entries `hidden` (their ids or titles) appears in the body.
    fn assert_nothing_of(&self, body: &Value, hidden: &[usize]) {
        let text = body.to_string();
        for &index in hidden {
            let entry = &self.entries[index];
            assert!(!text.contains(&entry.id.to_string()), "entry {index} leaked: {text}");
            assert!(!text.contains(entry.title.as_str()), "entry {index}'s title leaked: {text}");
        }
    }

    fn observation_ids(&self, bundle: &Value) -> Vec<String> {
        assert_eq!(bundle["resourceType"], "Bundle");
        assert_eq!(bundle["type"], "searchset");
        let mut ids: Vec<String> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["search"]["mode"] == "match")
            .map(|entry| entry["resource"]["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }

    fn ids_of(&self, indexes: &[usize]) -> Vec<String> {
        let mut ids: Vec<String> = indexes.iter().map(|&index| self.entries[index].id.to_string()).collect();
        ids.sort();
        ids
    }
}

fn hidden_flag(bundle: &Value) -> bool {
    let extension = bundle["meta"]["extension"].as_array().is_some_and(|extensions| {
        extensions.iter().any(|e| e["url"] == kith_web::fhir::HIDDEN_EXTENSION && e["valueBoolean"] == true)
    });
    let outcome = bundle["entry"].as_array().unwrap().iter().any(|entry| entry["search"]["mode"] == "outcome");
    assert_eq!(extension, outcome, "the extension and the outcome entry go together: {bundle}");
    extension
}

fn demographics(given: &str, birth: &str) -> Demographics {
    Demographics {
        family_name: name("Okafor"),
        given_name: name(given),
        birth_date: Date::parse(birth).unwrap(),
        sex: Sex::Female,
        email: None,
        mobile: None,
        address: None,
    }
}

fn world(database: TestDatabase) -> World {
    let clock = Arc::new(ManualClock::new(START));
    let app = App::new(database.store(), clock.clone());
    app.create_organisation(
        &op(),
        &NewOrganisation { code: code(), name: name("Riverside Hospitals"), break_glass_duration: None },
    )
    .unwrap();
    for (team, team_name, label) in
        [("mh", "Mental Health", PrivacyLabel::MentalHealth), ("gum", "Sexual Health", PrivacyLabel::SexualHealth)]
    {
        app.create_team(
            &op(),
            &code(),
            &name(team_name),
            &alias(team),
            LabelSet::from_labels([PrivacyLabel::General, label]),
        )
        .unwrap();
    }
    let member = |team: &str, who: &str, role| {
        app.add_member(
            &op(),
            &NewMember {
                organisation: code(),
                team: alias(team),
                email: email(who),
                name: name(who.split('@').next().unwrap()),
                role,
                password_hash: Some(FAKE_HASH.into()),
            },
        )
        .unwrap();
    };
    member("mh", "c1@example.org", MembershipRole::Coordinator);
    member("mh", "c2@example.org", MembershipRole::Coordinator);
    app.go_live(&op(), &code(), &alias("mh")).unwrap();
    member("mh", "pro@example.org", MembershipRole::Professional);
    member("mh", "deact@example.org", MembershipRole::Professional);
    member("gum", "gum@example.org", MembershipRole::Professional);
    member("gum", "deact@example.org", MembershipRole::Professional);
    app.set_membership_status(
        &op(),
        &code(),
        &alias("mh"),
        &email("deact@example.org"),
        MembershipStatus::Deactivated,
        false,
    )
    .unwrap();
    app.set_membership_status(
        &op(),
        &code(),
        &alias("gum"),
        &email("deact@example.org"),
        MembershipStatus::Deactivated,
        false,
    )
    .unwrap();
    member("gum", "privacy@example.org", MembershipRole::Coordinator);
    app.appoint_privacy_officer(&op(), &code(), &email("privacy@example.org")).unwrap();
    let a = app
        .create_patient(
            &op(),
            &NewPatient {
                organisation: code(),
                demographics: demographics("Ngozi", "1971-09-14"),
                nhs_number: Some(NhsNumber::parse(NHS_A).unwrap()),
                local_identifiers: vec![],
                teams: vec![alias("mh")],
            },
        )
        .unwrap();
    let b = app
        .create_patient(
            &op(),
            &NewPatient {
                organisation: code(),
                demographics: demographics("Ada", "1980-01-02"),
                nhs_number: None,
                local_identifiers: vec![],
                teams: vec![],
            },
        )
        .unwrap();
    let entries = [
        (EntryKind::Result, PrivacyLabel::General, "Full blood count"),
        (EntryKind::Result, PrivacyLabel::MentalHealth, "Lithium level"),
        (EntryKind::Measurement, PrivacyLabel::SexualHealth, "Chlamydia screen score"),
        (EntryKind::Document, PrivacyLabel::General, "Discharge letter"),
    ]
    .into_iter()
    .enumerate()
    .map(|(index, (kind, label, title))| {
        app.add_entry(
            &EntryAuthor::Operator { operator: &op(), organisation: &code(), team: &alias("prt") },
            a.id,
            &NewEntry {
                kind,
                label: Some(label),
                title: Title::parse(title).unwrap(),
                body: format!("value {index}"),
                effective_at: START.minus(Duration::from_secs(3600 * (index as u64 + 1))),
            },
        )
        .unwrap()
    })
    .collect();
    app.register_patient_account(&op(), &code(), a.id, &email("a@example.org"), FAKE_HASH).unwrap();
    app.register_patient_account(&op(), &code(), b.id, &email("b@example.org"), FAKE_HASH).unwrap();
    let router = kith_web::router(app.clone());
    World { _database: database, app, clock, router, a, b, entries }
}

/// Runs synchronous use cases (the PostgreSQL client blocks) from the async tests.
fn sync<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

async fn access_matrix(database: TestDatabase) {
    let w = sync(|| world(database));
    let a = w.a.id;
    let patient_a = format!("/fhir/Patient/{a}");
    let observations_a = format!("/fhir/Observation?patient={a}");
    let observation = |index: usize| format!("/fhir/Observation/{}", w.entries[index].id);
    let search_a = format!("/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number%7C{NHS_A}");

    // The capability statement is public; everything else needs a live token.
    let (status, metadata) = w.get("/fhir/metadata", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(metadata["resourceType"], "CapabilityStatement");
    assert_eq!(metadata["fhirVersion"], "4.0.1");
    let pro = w.token("pro@example.org", "api", None);
    let revoked = w.token("pro@example.org", "old", None);
    sync(|| w.app.revoke_api_token(&op(), &email("pro@example.org"), &name("old")).unwrap());
    let short_lived = w.token("pro@example.org", "short", Some(1));
    for token in [None, Some("kith_not-a-token"), Some(revoked.as_str()), Some("")] {
        for path in [&patient_a, &observations_a, &observation(0), &search_a] {
            let (status, body) = w.get(path, token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} with {token:?}");
            assert_eq!(body["issue"][0]["code"], "login");
            w.assert_nothing_of(&body, &[0, 1, 2, 3]);
        }
    }

    // The matrix, before anything changes: every read route against every caller. Each
    // caller has the entries it may see (by the rule), whether it may see who A is, and
    // whether it may read A's audit trail; every response is checked for its status, for
    // exactly the visible entries, and for nothing of the others.
    let tokens = [
        ("pro", w.token("pro@example.org", "matrix", None)),
        ("gum", w.token("gum@example.org", "matrix", None)),
        ("deactivated", w.token("deact@example.org", "matrix", None)),
        ("coordinator", w.token("c1@example.org", "matrix", None)),
        ("patient A", w.token("a@example.org", "matrix", None)),
        ("patient B", w.token("b@example.org", "matrix", None)),
        ("privacy officer", w.token("privacy@example.org", "matrix", None)),
    ];
    // (caller, entries visible, demographics visible, consents visible, AuditEvent status)
    let expectations: [(&str, &[usize], bool, usize, StatusCode); 7] = [
        ("pro", &[0, 1, 3], true, 1, StatusCode::FORBIDDEN),
        ("gum", &[], false, 0, StatusCode::FORBIDDEN),
        ("deactivated", &[], false, 0, StatusCode::FORBIDDEN),
        ("coordinator", &[], false, 0, StatusCode::FORBIDDEN),
        ("patient A", &[0, 1, 2, 3], true, 2, StatusCode::OK),
        ("patient B", &[], false, 0, StatusCode::FORBIDDEN),
        ("privacy officer", &[], false, 0, StatusCode::OK),
    ];
    for ((who, token), (expected_who, visible, demographics, consents, audit)) in tokens.iter().zip(expectations) {
        assert_eq!(*who, expected_who);
        let hidden: Vec<usize> = (0..4).filter(|index| !visible.contains(index)).collect();
        let found =
            |status: StatusCode| if demographics { status == StatusCode::OK } else { status == StatusCode::NOT_FOUND };
        let (status, body) = w.get(&patient_a, Some(token)).await;
        assert!(found(status), "{who}: Patient/A gave {status}");
        w.assert_nothing_of(&body, &hidden);
        let (_, body) = w.get(&search_a, Some(token)).await;
        assert_eq!(body["total"], u8::from(demographics), "{who}: Patient search");
        for (resource, kinds) in [("Observation", &[0usize, 1, 2][..]), ("DocumentReference", &[3][..])] {
            let (status, bundle) = w.get(&format!("/fhir/{resource}?patient={a}"), Some(token)).await;
            assert_eq!(status, StatusCode::OK, "{who}: {resource} search");
            let expected: Vec<usize> = kinds.iter().copied().filter(|index| visible.contains(index)).collect();
            assert_eq!(w.observation_ids(&bundle), w.ids_of(&expected), "{who}: {resource} search");
            let some_hidden = demographics && kinds.iter().any(|index| !visible.contains(index));
            assert_eq!(hidden_flag(&bundle), some_hidden, "{who}: {resource} hidden flag");
            w.assert_nothing_of(&bundle, &hidden);
            for &index in kinds {
                let (status, body) = w.get(&format!("/fhir/{resource}/{}", w.entries[index].id), Some(token)).await;
                let expected = if visible.contains(&index) { StatusCode::OK } else { StatusCode::NOT_FOUND };
                assert_eq!(status, expected, "{who}: {resource}/{index}");
                w.assert_nothing_of(&body, &hidden);
            }
        }
        for resource in ["CarePlan", "Appointment"] {
            let (status, bundle) = w.get(&format!("/fhir/{resource}?patient={a}"), Some(token)).await;
            assert_eq!((status, bundle["total"].as_i64()), (StatusCode::OK, Some(0)), "{who}: {resource}");
        }
        let (status, bundle) = w.get(&format!("/fhir/Consent?patient={a}"), Some(token)).await;
        assert_eq!((status, bundle["total"].as_u64()), (StatusCode::OK, Some(consents as u64)), "{who}: Consent");
        let (status, body) = w.get(&format!("/fhir/AuditEvent?patient={a}"), Some(token)).await;
        assert_eq!(status, audit, "{who}: AuditEvent");
        w.assert_nothing_of(&body, &hidden);
    }

    // A professional of the linked team: general and mental health, not sexual health;
    // the bundle says some entries are hidden, and no more.
    let (status, patient) = w.get(&patient_a, Some(&pro)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patient["identifier"][0], json!({ "system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS_A }));
    assert_eq!(patient["birthDate"], "1971-09-14");
    let (status, bundle) = w.get(&observations_a, Some(&pro)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(w.observation_ids(&bundle), w.ids_of(&[0, 1]));
    assert_eq!(bundle["total"], 2);
    assert!(hidden_flag(&bundle));
    w.assert_nothing_of(&bundle, &[2, 3]);
    assert!(!bundle.to_string().contains("sexual_health"), "no label of a hidden entry: {bundle}");
    for entry in bundle["entry"].as_array().unwrap().iter().filter(|entry| entry["search"]["mode"] == "match") {
        let security = entry["resource"]["meta"]["security"].as_array().unwrap();
        assert_eq!(security[0]["system"], kith_web::fhir::PRIVACY_LABEL_SYSTEM);
    }
    let (status, one) = w.get(&observation(1), Some(&pro)).await;
    assert_eq!((status, one["id"].as_str()), (StatusCode::OK, Some(w.entries[1].id.to_string().as_str())));
    assert_eq!(one["meta"]["security"][0]["code"], "mental_health");
    assert_eq!(one["meta"]["security"][2]["code"], "PSY");
    let (status, body) = w.get(&observation(2), Some(&pro)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a hidden entry is not found");
    w.assert_nothing_of(&body, &[2]);
    let (status, body) = w.get(&observation(3), Some(&pro)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a document is not an Observation");
    w.assert_nothing_of(&body, &[3]);
    let (status, documents) = w.get(&format!("/fhir/DocumentReference?patient={a}"), Some(&pro)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(w.observation_ids(&documents), w.ids_of(&[3]));
    assert!(!hidden_flag(&documents), "no document is hidden from the team");
    let (status, document) = w.get(&format!("/fhir/DocumentReference/{}", w.entries[3].id), Some(&pro)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["content"][0]["attachment"]["data"], "dmFsdWUgMw==", "base64 of the body, \"value 3\"");
    assert_eq!(
        w.get(&format!("/fhir/DocumentReference/{}", w.entries[0].id), Some(&pro)).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, plans) = w.get(&format!("/fhir/CarePlan?patient={a}"), Some(&pro)).await;
    assert_eq!((status, plans["total"].as_i64(), hidden_flag(&plans)), (StatusCode::OK, Some(0), false));
    let (status, found) = w.get(&search_a, Some(&pro)).await;
    assert_eq!((status, found["total"].as_i64()), (StatusCode::OK, Some(1)));
    let by_name = "/fhir/Patient?family=okaf&birthdate=1971-09-14";
    let (_, found) = w.get(by_name, Some(&pro)).await;
    assert_eq!(found["total"], 1, "patient B (another birth date, no link) is never found: {found}");
    assert_eq!(found["entry"][0]["resource"]["id"], a.to_string());
    let (status, b_read) = w.get(&format!("/fhir/Patient/{}", w.b.id), Some(&pro)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "B is not linked to the professional's team");
    assert!(!b_read.to_string().contains("Ada"));

    // Paging: one per page, with next and previous links that repeat the query.
    let (_, page) = w.get(&format!("{observations_a}&_count=1"), Some(&pro)).await;
    assert_eq!((page["total"].as_i64(), w.observation_ids(&page).len()), (Some(2), 1));
    let next = page["link"].as_array().unwrap().iter().find(|link| link["relation"] == "next").unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, second) = w.get(&next, Some(&pro)).await;
    assert_eq!(w.observation_ids(&second).len(), 1);
    assert_ne!(w.observation_ids(&page), w.observation_ids(&second));
    assert!(second["link"].as_array().unwrap().iter().all(|link| link["relation"] != "next"));
    let (_, lab) = w.get(&format!("{observations_a}&category=laboratory&_sort=date"), Some(&pro)).await;
    assert_eq!(w.observation_ids(&lab), w.ids_of(&[0, 1]));
    assert_eq!(lab["entry"][0]["resource"]["id"], w.entries[1].id.to_string(), "oldest first");

    // Callers who may not see A: another team, a deactivated membership, a coordinator,
    // patient B. Reads are 404 and searches empty, exactly as for a patient who does not
    // exist; nothing of A appears.
    let gum = w.token("gum@example.org", "api", None);
    let deact = w.token("deact@example.org", "api", None);
    let coordinator = w.token("c1@example.org", "api", None);
    let patient_b = w.token("b@example.org", "api", None);
    let nobody = kith_core::PatientId::from_uuid(uuid_like(7));
    for (who, token) in
        [("gum", &gum), ("deactivated", &deact), ("coordinator", &coordinator), ("patient B", &patient_b)]
    {
        for path in [&patient_a, &observation(0), &observation(1), &observation(2)] {
            let (status, body) = w.get(path, Some(token)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{who}: {path}");
            w.assert_nothing_of(&body, &[0, 1, 2, 3]);
        }
        let (status, bundle) = w.get(&observations_a, Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{who}");
        let (_, empty) = w.get(&format!("/fhir/Observation?patient={nobody}"), Some(token)).await;
        assert_eq!(bundle["entry"], empty["entry"], "{who}: same as a patient who does not exist");
        assert_eq!((bundle["total"].as_i64(), hidden_flag(&bundle)), (Some(0), false), "{who}");
        let (_, found) = w.get(&search_a, Some(token)).await;
        assert_eq!(found["total"], 0, "{who}");
        assert!(!found.to_string().contains("Ngozi"), "{who}");
    }

    // Patient A sees everything of their own record, with nothing flagged as hidden.
    let own = w.token("a@example.org", "api", None);
    let (status, bundle) = w.get(&observations_a, Some(&own)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(w.observation_ids(&bundle), w.ids_of(&[0, 1, 2]));
    assert!(!hidden_flag(&bundle));
    assert_eq!(w.get(&patient_a, Some(&own)).await.0, StatusCode::OK);
    assert_eq!(w.get(&observation(2), Some(&own)).await.0, StatusCode::OK);

    // Consent: one per care link. The patient sees all of theirs; a professional only
    // their own team's; another team's professional none.
    let consents = format!("/fhir/Consent?patient={a}");
    let (_, mine) = w.get(&consents, Some(&own)).await;
    assert_eq!(mine["total"], 2, "the Patient Record Team's link and team mh's: {mine}");
    let (_, theirs) = w.get(&consents, Some(&pro)).await;
    assert_eq!(theirs["total"], 1);
    let mh_consent = theirs["entry"][0]["resource"].clone();
    assert_eq!(mh_consent["status"], "active");
    let codes: Vec<&str> = mh_consent["provision"]["securityLabel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["general", "mental_health"]);
    assert_eq!(w.get(&consents, Some(&gum)).await.1["total"], 0);
    let consent_path = format!("/fhir/Consent/{}", mh_consent["id"].as_str().unwrap());
    assert_eq!(w.get(&consent_path, Some(&gum)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(w.get(&consent_path, Some(&own)).await.0, StatusCode::OK);
    // The patient narrows team mh to general: the team's next search shows only that.
    let mut narrowed = mh_consent.clone();
    narrowed["provision"]["securityLabel"] =
        json!([{ "system": kith_web::fhir::PRIVACY_LABEL_SYSTEM, "code": "general" }]);
    let (status, changed) = w.call("PUT", &consent_path, Some(&own), Some(narrowed.clone())).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["extension"][0]["valueCode"], "patient_choice");
    let (_, bundle) = w.get(&observations_a, Some(&pro)).await;
    assert_eq!(w.observation_ids(&bundle), w.ids_of(&[0]));
    w.assert_nothing_of(&bundle, &[1, 2]);
    // Another team's professional may not change it; the team's own only with a reason,
    // and on the patient's behalf only to narrow it (the patient widens it again).
    assert_eq!(w.call("PUT", &consent_path, Some(&gum), Some(narrowed.clone())).await.0, StatusCode::NOT_FOUND);
    let mut restored = mh_consent.clone();
    let (status, body) = w.call("PUT", &consent_path, Some(&pro), Some(restored.clone())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "no reason: {body}");
    restored["extension"] = json!([{ "url": "https://kith.dev/fhir/StructureDefinition/on-behalf-reason", "valueString": "patient asked by phone to share more" }]);
    let (status, body) = w.call("PUT", &consent_path, Some(&pro), Some(restored.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a speciality team does not widen its own view: {body}");
    let (status, changed) = w.call("PUT", &consent_path, Some(&own), Some(restored)).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["extension"][0]["valueCode"], "patient_choice");
    assert_eq!(w.observation_ids(&w.get(&observations_a, Some(&pro)).await.1), w.ids_of(&[0, 1]));
    let mut bad = mh_consent.clone();
    bad["provision"]["securityLabel"] =
        json!([{ "system": kith_web::fhir::PRIVACY_LABEL_SYSTEM, "code": "everything" }]);
    assert_eq!(w.call("PUT", &consent_path, Some(&own), Some(bad)).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let mut wrong_id = mh_consent.clone();
    wrong_id["id"] = json!("0");
    assert_eq!(w.call("PUT", &consent_path, Some(&own), Some(wrong_id)).await.0, StatusCode::BAD_REQUEST);

    // Bad requests.
    for path in [
        "/fhir/Observation".to_owned(),
        format!("{observations_a}&code=1234"),
        format!("{observations_a}&_count=0"),
        format!("{observations_a}&_count=abc"),
        format!("{observations_a}&category=vital-signs"),
        format!("{observations_a}&_lastUpdated=yesterday"),
        format!("{observations_a}&patient={a}"),
        "/fhir/Observation?patient=not-an-id".to_owned(),
        "/fhir/Patient?identifier=9434765919".to_owned(),
        "/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number%7C1234567890".to_owned(),
        "/fhir/Patient?family=Okafor".to_owned(),
    ] {
        let (status, body) = w.get(&path, Some(&pro)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["issue"][0]["code"], "invalid");
    }
    assert_eq!(w.get("/fhir/Encounter", Some(&pro)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(w.call("DELETE", &patient_a, Some(&pro), None).await.0, StatusCode::METHOD_NOT_ALLOWED);

    // Break glass: refused to a patient (403) and without a reason (422); for the other
    // team's professional it opens the whole record until it expires.
    let break_glass = format!("/fhir/Patient/{a}/$break-glass");
    let reason = json!({ "resourceType": "Parameters", "parameter": [{ "name": "reason", "valueString": "unconscious in A&E" }] });
    assert_eq!(w.call("POST", &break_glass, Some(&own), Some(reason.clone())).await.0, StatusCode::FORBIDDEN);
    let no_reason = json!({ "resourceType": "Parameters", "parameter": [] });
    assert_eq!(w.call("POST", &break_glass, Some(&gum), Some(no_reason)).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    // A placeholder is not a reason: refused with what is expected, and no grant.
    for placeholder in ["x", "emergency access", "test test test"] {
        let body =
            json!({ "resourceType": "Parameters", "parameter": [{ "name": "reason", "valueString": placeholder }] });
        let (status, refused) = w.call("POST", &break_glass, Some(&gum), Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{placeholder}: {refused}");
        assert!(refused["issue"][0]["diagnostics"].as_str().unwrap().starts_with("reason: must"), "{refused}");
    }
    assert_eq!(w.get(&patient_a, Some(&gum)).await.0, StatusCode::NOT_FOUND, "no grant was opened");
    let (status, body) =
        w.call("POST", &format!("/fhir/Patient/{nobody}/$break-glass"), Some(&gum), Some(reason.clone())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, granted) = w.call("POST", &break_glass, Some(&gum), Some(reason.clone())).await;
    assert_eq!(status, StatusCode::OK, "{granted}");
    assert_eq!(granted["resourceType"], "Parameters");
    let expires = granted["parameter"].as_array().unwrap().iter().find(|p| p["name"] == "expires").unwrap();
    assert_eq!(expires["valueInstant"], START.plus(Duration::from_secs(4 * 3600)).to_string());
    let (_, bundle) = w.get(&observations_a, Some(&gum)).await;
    assert_eq!(w.observation_ids(&bundle), w.ids_of(&[0, 1, 2]), "break glass shows everything");
    assert_eq!(w.get(&patient_a, Some(&gum)).await.0, StatusCode::OK);
    let events = sync(|| w.app.audit_events(Some(a), 500).unwrap());
    let has = |basis: Option<&str>, outcome: &str| {
        events.iter().any(|event| {
            event.record.action == "record.read"
                && event.record.basis.as_deref() == basis
                && event.record.outcome == outcome
                && event.record.channel == "fhir"
        })
    };
    assert!(has(Some("break_glass"), "allowed"), "the break-glass read is audited as such");
    assert!(has(Some("consent"), "allowed"), "the linked team's read is audited on consent");
    assert!(has(None, "denied"), "the other callers' attempts are audited as denied");
    // A read of entries through a team is filed under that team's organisation (the privacy
    // officer's view of break-glass accesses is by organisation).
    let through_teams: Vec<_> = events
        .iter()
        .filter(|e| e.record.action == "record.read" && e.record.channel == "fhir" && e.record.acting_team.is_some())
        .collect();
    assert!(!through_teams.is_empty());
    assert!(through_teams.iter().all(|e| e.record.organisation.is_some()), "{through_teams:?}");
    // AuditEvent: the patient sees who looked (not their own actions), break glass marked as
    // emergency treatment; the privacy officer sees the organisation's break-glass events;
    // professionals see none.
    let (status, log) = w.get(&format!("/fhir/AuditEvent?patient={a}"), Some(&own)).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let events: Vec<&Value> = log["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).collect();
    let pro_account = sync(|| w.app.account_by_email(&email("pro@example.org")).unwrap()).id;
    let a_account = sync(|| w.app.account_by_email(&email("a@example.org")).unwrap()).id;
    assert!(events.iter().any(|e| e["agent"][0]["who"]["reference"] == format!("Practitioner/{pro_account}")
        && e["purposeOfEvent"][0]["coding"][0]["code"] == "consent"));
    assert!(events.iter().any(|e| e["purposeOfEvent"][0]["coding"][1]["code"] == "ETREAT"), "break glass is marked");
    assert!(events.iter().all(|e| e["agent"][0]["who"]["reference"] != format!("Practitioner/{a_account}")));
    for token in [&pro, &gum, &coordinator] {
        assert_eq!(w.get(&format!("/fhir/AuditEvent?patient={a}"), Some(token)).await.0, StatusCode::FORBIDDEN);
    }
    assert_eq!(w.get(&format!("/fhir/AuditEvent?patient={a}"), Some(&patient_b)).await.0, StatusCode::FORBIDDEN);
    let officer = w.token("privacy@example.org", "api", None);
    let (_, officer_log) = w.get("/fhir/AuditEvent", Some(&officer)).await;
    let officer_events: Vec<&Value> = officer_log["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).collect();
    assert!(officer_events.iter().any(|e| e["subtype"][0]["code"] == "break_glass.open"), "{officer_log}");
    assert!(
        officer_events.iter().any(|e| e["subtype"][0]["code"] == "record.read"
            && e["purposeOfEvent"][0]["coding"][0]["code"] == "break_glass"),
        "the officer sees the reads made under the grant: {officer_log}"
    );
    assert!(
        officer_events.iter().all(|e| e["subtype"][0]["code"] == "break_glass.open"
            || e["purposeOfEvent"][0]["coding"][0]["code"] == "break_glass"),
        "only break-glass events: {officer_log}"
    );
    let (_, none) = w.get(&format!("/fhir/AuditEvent?patient={}", w.b.id), Some(&officer)).await;
    assert_eq!(none["total"], 0);

    // Directory: a team for its members and its patients; practitioners through their teams.
    let (_, teams) = w.get("/fhir/CareTeam", Some(&pro)).await;
    assert_eq!(teams["total"], 1);
    let mh = teams["entry"][0]["resource"].clone();
    assert_eq!(mh["name"], "Mental Health");
    assert!(
        mh["participant"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["member"]["reference"] == format!("Practitioner/{pro_account}"))
    );
    let (_, own_teams) = w.get("/fhir/CareTeam", Some(&own)).await;
    assert_eq!(own_teams["total"], 2, "the Patient Record Team and mh: {own_teams}");
    let mh_path = format!("/fhir/CareTeam/{}", mh["id"].as_str().unwrap());
    assert_eq!(w.get(&mh_path, Some(&own)).await.0, StatusCode::OK);
    assert_eq!(w.get(&mh_path, Some(&gum)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(w.get(&mh_path, Some(&patient_b)).await.0, StatusCode::NOT_FOUND);
    let practitioner = format!("/fhir/Practitioner/{pro_account}");
    assert_eq!(w.get(&practitioner, Some(&own)).await.0, StatusCode::OK);
    assert_eq!(w.get(&practitioner, Some(&patient_b)).await.0, StatusCode::NOT_FOUND);
    let (_, roles) = w.get(&format!("/fhir/PractitionerRole?practitioner={pro_account}"), Some(&own)).await;
    assert_eq!(roles["total"], 1);
    let role_path = format!("/fhir/PractitionerRole/{}", roles["entry"][0]["resource"]["id"].as_str().unwrap());
    assert_eq!(w.get(&role_path, Some(&own)).await.0, StatusCode::OK);
    assert_eq!(w.get(&role_path, Some(&gum)).await.0, StatusCode::NOT_FOUND);
    let organisation = mh["managingOrganization"][0]["reference"].as_str().unwrap().to_owned();
    let (status, org) = w.get(&format!("/fhir/{organisation}"), Some(&patient_b)).await;
    assert_eq!((status, org["identifier"][0]["value"].as_str()), (StatusCode::OK, Some("RXH")));

    w.clock.advance(Duration::from_secs(4 * 3600 + 1));
    assert_eq!(w.get(&patient_a, Some(&gum)).await.0, StatusCode::NOT_FOUND, "after the grant expires");
    let (_, bundle) = w.get(&observations_a, Some(&gum)).await;
    assert_eq!(bundle["total"], 0);

    // $add-patient: an exact identifier and date of birth, by a professional of the team.
    let gum_team = sync(|| w.app.teams_as(w.app.account_by_email(&email("gum@example.org")).unwrap().id).unwrap())
        .into_iter()
        .find(|directory| directory.team.alias.as_str() == "gum")
        .unwrap()
        .team
        .id;
    let add_patient = format!("/fhir/CareTeam/{gum_team}/$add-patient");
    let parameters = |nhs: &str, birth: &str| {
        json!({ "resourceType": "Parameters", "parameter": [
            { "name": "identifier", "valueIdentifier": { "system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs } },
            { "name": "birthdate", "valueDate": birth },
        ] })
    };
    for (who, token, body, expected) in [
        ("wrong birth date", &gum, parameters(NHS_A, "1971-09-15"), StatusCode::NOT_FOUND),
        ("unknown patient", &gum, parameters("9876543210", "1971-09-14"), StatusCode::NOT_FOUND),
        ("not of the team", &pro, parameters(NHS_A, "1971-09-14"), StatusCode::NOT_FOUND),
        ("a coordinator", &officer, parameters(NHS_A, "1971-09-14"), StatusCode::NOT_FOUND),
        (
            "no birthdate",
            &gum,
            json!({ "resourceType": "Parameters", "parameter": [] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, body) = w.call("POST", &add_patient, Some(token), Some(body)).await;
        assert_eq!(status, expected, "{who}: {body}");
        assert!(!body.to_string().contains(&a.to_string()), "{who}: {body}");
    }
    let (status, link) = w.call("POST", &add_patient, Some(&gum), Some(parameters(NHS_A, "1971-09-14"))).await;
    assert_eq!(status, StatusCode::OK, "{link}");
    assert_eq!(link["extension"][0]["valueCode"], "professional_implied_consent");
    let (_, bundle) = w.get(&observations_a, Some(&gum)).await;
    assert_eq!(w.observation_ids(&bundle), w.ids_of(&[0, 2]), "the team's defaults: general and sexual health");
    assert!(hidden_flag(&bundle));

    // POST Observation: the team is the author; the label from meta.security.
    let measurement = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": { "text": "Mood score" },
        "subject": { "reference": format!("Patient/{a}") },
        "valueQuantity": { "value": 7, "unit": "score" },
        "meta": { "security": [{ "system": kith_web::fhir::PRIVACY_LABEL_SYSTEM, "code": "mental_health" }] },
    });
    let (status, created) = w.call("POST", "/fhir/Observation", Some(&pro), Some(measurement.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["valueString"], "7 score");
    assert_eq!(created["meta"]["security"][0]["code"], "mental_health");
    let created_path = format!("/fhir/Observation/{}", created["id"].as_str().unwrap());
    assert_eq!(w.get(&created_path, Some(&pro)).await.0, StatusCode::OK);
    assert_eq!(w.get(&created_path, Some(&gum)).await.0, StatusCode::NOT_FOUND, "gum does not see mental health");
    assert_eq!(w.get(&created_path, Some(&own)).await.0, StatusCode::OK);
    // The patient records one for themselves: filed under the Patient Record Team (which
    // sees nothing by default), the patient named as performer.
    let mut own_measurement = measurement.clone();
    own_measurement["meta"]["security"][0]["code"] = json!("general");
    own_measurement["code"]["text"] = json!("Home blood pressure");
    let (status, recorded) = w.call("POST", "/fhir/Observation", Some(&own), Some(own_measurement)).await;
    assert_eq!(status, StatusCode::CREATED, "{recorded}");
    assert_eq!(recorded["performer"][0]["reference"], format!("Patient/{a}"));
    let recorded_path = format!("/fhir/Observation/{}", recorded["id"].as_str().unwrap());
    assert_eq!(w.get(&recorded_path, Some(&pro)).await.0, StatusCode::OK, "team mh sees general entries");
    assert_eq!(w.get(&recorded_path, Some(&patient_b)).await.0, StatusCode::NOT_FOUND);
    let mut for_a_by_b = measurement.clone();
    for_a_by_b["meta"]["security"][0]["code"] = json!("general");
    let (status, body) = w.call("POST", "/fhir/Observation", Some(&patient_b), Some(for_a_by_b)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a patient may never write another's record: {body}");
    w.assert_nothing_of(&body, &[0, 1, 2, 3]);
    let mut for_b = measurement.clone();
    for_b["subject"]["reference"] = json!(format!("Patient/{}", w.b.id));
    assert_eq!(w.call("POST", "/fhir/Observation", Some(&pro), Some(for_b)).await.0, StatusCode::NOT_FOUND);
    let mut no_value = measurement.clone();
    no_value.as_object_mut().unwrap().remove("valueQuantity");
    assert_eq!(
        w.call("POST", "/fhir/Observation", Some(&pro), Some(no_value)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // Sharing disabled: the teams are discharged and see only what they wrote themselves
    // (mh its measurement, gum nothing), and the glass cannot be broken.
    sync(|| {
        let officer = w.app.account_by_email(&email("privacy@example.org")).unwrap();
        w.app
            .set_sharing_disabled(officer.id, a, true, &Reason::parse("Safeguarding concern raised").unwrap())
            .unwrap();
    });
    let (_, bundle) = w.get(&observations_a, Some(&pro)).await;
    assert_eq!(w.observation_ids(&bundle), [created["id"].as_str().unwrap().to_owned()], "only the team's own data");
    assert!(hidden_flag(&bundle));
    w.assert_nothing_of(&bundle, &[0, 1, 2]);
    assert_eq!(w.get(&patient_a, Some(&gum)).await.0, StatusCode::NOT_FOUND);
    let (_, bundle) = w.get(&observations_a, Some(&gum)).await;
    assert_eq!((bundle["total"].as_i64(), hidden_flag(&bundle)), (Some(0), false));
    assert_eq!(w.call("POST", &break_glass, Some(&gum), Some(reason)).await.0, StatusCode::NOT_FOUND);
    let (_, bundle) = w.get(&observations_a, Some(&own)).await;
    assert_eq!(w.observation_ids(&bundle).len(), 5, "the patient still sees their own record, and what they wrote");

    // A token past its expiry stops working.
    assert_eq!(w.get("/fhir/Patient?family=x&birthdate=2000-01-01", Some(&short_lived)).await.0, StatusCode::OK);
    w.clock.advance(Duration::from_secs(86_400));
    assert_eq!(
        w.get("/fhir/Patient?family=x&birthdate=2000-01-01", Some(&short_lived)).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Dropping the world drops its scratch database, which blocks.
    sync(|| drop(w));
}

fn uuid_like(n: u8) -> uuid::Uuid {
    uuid::Uuid::from_bytes([n; 16])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_access_matrix_on_sqlite() {
    access_matrix(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_access_matrix_on_postgres() {
    let Some(database) = sync(TestDatabase::postgres) else { return };
    access_matrix(database).await;
}
