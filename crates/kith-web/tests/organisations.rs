//! Two organisations, each with its own teams, coordinators, privacy officer, data-quality
//! staff, registered patient and HL7 integration, on SQLite and PostgreSQL. Every person of
//! one organisation tries every route against the other's patient, team, staff and consent
//! — the FHIR API with their token, the pages with their session, the HL7 endpoint with
//! their organisation's integration — and then:
//!
//! - no response names the other organisation's patient (id, NHS number, names, email,
//!   entries);
//! - nothing the other organisation owns changed: its patient's record, links and entries,
//!   its staff's accounts and memberships of its teams, and no message went to its people
//!   other than those the rules promise (a membership invitation to accept).
//!
//! Both directions are tried: Riverside against Hillside, and Hillside against Riverside.
//! The command line's `--as` goes through the same use cases (crates/kith/tests/cli.rs).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use kith_app::sessions::SignIn;
use kith_app::*;
use kith_core::patient::{EntryKind, NhsNumber, Sex};
use kith_core::team::MembershipRole;
use kith_core::text::{EmailAddress, Name, OrganisationCode, Secret, TeamAlias, Title};
use kith_core::time::Date;
use kith_core::{AccountId, LabelSet, PatientId, PrivacyLabel, TeamId, Timestamp};
use kith_test_support::TestDatabase;
use serde_json::{Value, json};
use tower::ServiceExt;

const START: Timestamp = Timestamp::from_micros(1_795_000_000_000_000);
const PASSWORD: &str = "a long enough test password";

fn op() -> Operator {
    Operator { name: "test-operator".into() }
}
fn name(text: &str) -> Name {
    Name::parse("name", text).unwrap()
}
fn alias(text: &str) -> TeamAlias {
    TeamAlias::parse(text).unwrap()
}
fn email(text: &str) -> EmailAddress {
    EmailAddress::parse(text).unwrap()
}

/// The people of one organisation, by role.
const ROLES: [&str; 5] = ["coordinator", "privacy-officer", "professional", "data-quality", "patient"];

/// One organisation and what it owns.
struct Org {
    code: OrganisationCode,
    /// Addresses are `{role}@{domain}`.
    domain: &'static str,
    ward: TeamId,
    prt: TeamId,
    patient: PatientId,
    nhs_number: &'static str,
    given: &'static str,
    family: &'static str,
    birth_date: &'static str,
    entry_title: &'static str,
    staff: Vec<AccountId>,
    integration_token: String,
    facility: &'static str,
    /// Learnt from the organisation's own people before the attack.
    consent_id: String,
    observation_id: String,
}

impl Org {
    fn address(&self, role: &str) -> String {
        format!("{role}@{}", self.domain)
    }
    fn patient_email(&self) -> String {
        self.address("patient")
    }
    /// What no one outside the organisation may learn from a response.
    fn secrets(&self) -> Vec<String> {
        vec![
            self.patient.to_string(),
            self.nhs_number.to_owned(),
            self.given.to_owned(),
            self.family.to_owned(),
            self.patient_email(),
            self.entry_title.to_owned(),
            self.observation_id.clone(),
        ]
    }
}

struct World {
    _database: TestDatabase,
    app: App,
    router: Router,
    orgs: [Org; 2],
}

fn sync<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

#[allow(clippy::too_many_arguments)]
fn organisation(
    app: &App,
    hash: &str,
    code: &str,
    org_name: &str,
    domain: &'static str,
    (given, family, nhs_number, birth_date): (&'static str, &'static str, &'static str, &'static str),
    entry_title: &'static str,
    facility: &'static str,
) -> Org {
    let code = OrganisationCode::parse(code).unwrap();
    app.create_organisation(
        &op(),
        &NewOrganisation { code: code.clone(), name: name(org_name), break_glass_duration: None },
    )
    .unwrap();
    app.create_team(&op(), &code, &name("Ward"), &alias("ward"), LabelSet::from_labels([PrivacyLabel::General]))
        .unwrap();
    let member = |team: &str, who: String, role| {
        app.add_member(
            &op(),
            &NewMember {
                organisation: code.clone(),
                team: alias(team),
                email: email(&who),
                name: name(who.split('@').next().unwrap()),
                role,
                password_hash: Some(hash.to_owned()),
            },
        )
        .unwrap()
        .account
        .id
    };
    let staff = vec![
        member("ward", format!("coordinator@{domain}"), MembershipRole::Coordinator),
        member("ward", format!("second-coordinator@{domain}"), MembershipRole::Coordinator),
        member("prt", format!("privacy-officer@{domain}"), MembershipRole::Coordinator),
        member("ward", format!("professional@{domain}"), MembershipRole::Professional),
        member("prt", format!("data-quality@{domain}"), MembershipRole::Professional),
    ];
    app.go_live(&op(), &code, &alias("ward")).unwrap();
    app.appoint_privacy_officer(&op(), &code, &email(&format!("privacy-officer@{domain}"))).unwrap();
    let patient = app
        .create_patient(
            &op(),
            &NewPatient {
                organisation: code.clone(),
                demographics: kith_core::patient::Demographics {
                    family_name: name(family),
                    given_name: name(given),
                    birth_date: Date::parse(birth_date).unwrap(),
                    sex: Sex::Female,
                    email: None,
                    mobile: None,
                    address: None,
                },
                nhs_number: Some(NhsNumber::parse(nhs_number).unwrap()),
                local_identifiers: vec![],
                teams: vec![alias("ward")],
            },
        )
        .unwrap();
    app.add_entry(
        &EntryAuthor::Operator { operator: &op(), organisation: &code, team: &alias("prt") },
        patient.id,
        &NewEntry {
            kind: EntryKind::Measurement,
            label: Some(PrivacyLabel::General),
            title: Title::parse(entry_title).unwrap(),
            body: "7.1 mmol/L".into(),
            effective_at: START,
        },
    )
    .unwrap();
    app.register_patient_account(&op(), &code, patient.id, &email(&format!("patient@{domain}")), hash).unwrap();
    let integration = app.create_integration(&op(), &code, &name("PAS feed"), facility, None).unwrap();
    let (ward, prt) = app
        .store()
        .read(|tx| {
            let organisation = tx.organisation_by_code(&code)?.unwrap();
            let ward = tx.team_by_alias(organisation.id, &alias("ward"))?.unwrap().id;
            let prt = tx.team_by_alias(organisation.id, &alias("prt"))?.unwrap().id;
            Ok::<_, kith_store::StoreError>((ward, prt))
        })
        .unwrap();
    Org {
        code,
        domain,
        ward,
        prt,
        patient: patient.id,
        nhs_number,
        given,
        family,
        birth_date,
        entry_title,
        staff,
        integration_token: integration.token.expose().to_owned(),
        facility,
        consent_id: String::new(),
        observation_id: String::new(),
    }
}

fn world(database: TestDatabase) -> World {
    let app = App::new(database.store(), Arc::new(ManualClock::new(START)));
    let hash = kith_app::password::hash_password(&Secret::new(PASSWORD.into())).unwrap();
    let riverside = organisation(
        &app,
        &hash,
        "RXH",
        "Riverside Hospitals",
        "riverside.example",
        ("Zanele", "Quartermaine", "4010230002", "1971-09-14"),
        "Riverside glucose reading",
        "RIVERSIDE_PAS",
    );
    let hillside = organisation(
        &app,
        &hash,
        "HSH",
        "Hillside Health",
        "hillside.example",
        ("Yusuf", "Blackwood", "7312460003", "1983-02-27"),
        "Hillside potassium reading",
        "HILLSIDE_PAS",
    );
    let router = kith_web::router(app.clone());
    World { _database: database, app, router, orgs: [riverside, hillside] }
}

/// A response: status, content type and body text.
struct Answer {
    status: StatusCode,
    body: String,
}

async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 22).await.unwrap();
    Answer { status, body: String::from_utf8_lossy(&bytes).into_owned() }
}

async fn fhir(router: &Router, method: &str, path: &str, token: &str, body: Option<Value>) -> Answer {
    let mut request =
        Request::builder().method(method).uri(path).header(header::AUTHORIZATION, format!("Bearer {token}"));
    let body = match body {
        Some(body) => {
            request = request.header(header::CONTENT_TYPE, "application/fhir+json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    send(router, request.body(body).unwrap()).await
}

/// A signed-in browser: its cookies and the last form token it saw.
struct Browser {
    cookie: String,
    csrf: String,
}

impl Browser {
    async fn sign_in(router: &Router, app: &App, who: &str) -> Browser {
        let signed_in = sync(|| app.sign_in(who, &Secret::new(PASSWORD.into())).unwrap());
        let SignIn::SignedIn(session) = signed_in else { panic!("{who} could not sign in") };
        let mut browser = Browser { cookie: format!("kith_session={}", session.secret.expose()), csrf: String::new() };
        let home = browser.get(router, "/").await;
        // A patient who has not finished the walkthrough is sent to it.
        assert!(matches!(home.status, StatusCode::OK | StatusCode::SEE_OTHER), "{who}'s home page: {}", home.body);
        browser
    }

    /// A form refused for its token would prove nothing: every post must reach its handler.
    fn assert_reached(&self, who: &str, what: &str, answer: &Answer) {
        assert!(!answer.body.contains("This form has expired"), "{who}: {what} was refused for its form token");
    }

    fn remember_token(&mut self, answer: &Answer) {
        if let Some(start) = answer.body.find("name=\"csrf\" value=\"") {
            let rest = &answer.body[start + 19..];
            self.csrf = rest[..rest.find('"').unwrap()].to_owned();
        }
    }

    async fn get(&mut self, router: &Router, path: &str) -> Answer {
        let request = Request::get(path)
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::COOKIE, &self.cookie)
            .body(Body::empty())
            .unwrap();
        let answer = send(router, request).await;
        self.remember_token(&answer);
        answer
    }

    async fn post(&mut self, router: &Router, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("csrf", &self.csrf);
        for (key, value) in fields {
            form.append_pair(key, value);
        }
        let request = Request::post(path)
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::COOKIE, &self.cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.finish()))
            .unwrap();
        let answer = send(router, request).await;
        self.remember_token(&answer);
        answer
    }

    async fn upload(&mut self, router: &Router, path: &str, csv: &str) -> Answer {
        let boundary = "kithboundary";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"staff.csv\"\r\nContent-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n",
            self.csrf
        );
        let request = Request::post(path)
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::COOKIE, &self.cookie)
            .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
            .body(Body::from(body))
            .unwrap();
        let answer = send(router, request).await;
        self.remember_token(&answer);
        answer
    }
}

/// Everything the victim organisation owns that another must not change.
fn snapshot(app: &App, victim: &Org) -> String {
    sync(|| {
        app.store()
            .read(|tx| {
                let mut out = String::new();
                out += &format!("{:?}\n", tx.patient(victim.patient)?);
                out += &format!("{:?}\n", tx.care_links(victim.patient)?);
                for entry in tx.entries(victim.patient)? {
                    out += &format!("{} v{} {:?} {}\n", entry.id, entry.version, entry.label, entry.authored_by);
                }
                let patient_account = tx.patient(victim.patient)?.and_then(|record| record.account);
                for account in victim.staff.iter().copied().chain(patient_account) {
                    out += &format!("{:?}\n", tx.account(account)?);
                    for membership in tx.memberships_of(account)? {
                        if membership.team == victim.ward || membership.team == victim.prt {
                            out += &format!("{membership:?}\n");
                        }
                    }
                }
                Ok::<_, kith_store::StoreError>(out)
            })
            .unwrap()
    })
}

/// Messages waiting for the victim organisation's people.
fn messages_to(app: &App, victim: &Org) -> Vec<(String, String)> {
    sync(|| app.store().read(|tx| tx.outbox(10_000)).unwrap())
        .into_iter()
        .filter(|row| row.message.recipient.ends_with(victim.domain))
        .map(|row| (row.message.template.to_owned(), row.message.recipient.clone()))
        .collect()
}

/// No response names what the victim owns; the request's own words echoed back (a search
/// bundle's self link) are not a leak.
fn assert_no_leak(victim: &Org, who: &str, what: &str, answer: &Answer) {
    let echoed = what.split_once(' ').map_or(what, |(_, path)| path);
    let body = match serde_json::from_str::<Value>(&answer.body) {
        // A search bundle's links repeat the search.
        Ok(mut bundle) if bundle["resourceType"] == "Bundle" => {
            bundle.as_object_mut().unwrap().remove("link");
            bundle.to_string()
        }
        _ => answer.body.replace(echoed, ""),
    };
    for secret in victim.secrets() {
        assert!(
            !body.contains(&secret),
            "{who}: {what} answered {} naming {secret:?} of {}: {}",
            answer.status,
            victim.code,
            answer.body
        );
    }
}

fn hl7_message(control: &str, facility: &str, kind: &str, victim: &Org) -> String {
    let pid = format!(
        "PID|1||{nhs}^^^NHS^NH~ATTACK-{control}^^^{facility}^MR||Impostor^{given}||{dob}|F",
        nhs = victim.nhs_number,
        given = victim.given,
        dob = victim.birth_date.replace('-', "")
    );
    match kind {
        "A08" => format!(
            "MSH|^~\\&|PAS|{facility}|KITH|KITH|20261204090000||ADT^A08|{control}|P|2.4\rEVN|A08|20261204090000\r{pid}\rPV1|1|I\r"
        ),
        _ => format!(
            "MSH|^~\\&|LAB|{facility}|KITH|KITH|20261204090000||ORU^R01|{control}|P|2.4\r{pid}\rOBR|1||LAB-{control}|GLU^Glucose\rOBX|1|NM|GLU^Glucose||9.9|mmol/L|||||F\r"
        ),
    }
}

/// Every route, tried by every person of `attacker` against `victim`.
async fn attack(world: &World, attacker: &Org, victim: &Org) {
    let router = &world.router;
    let app = &world.app;
    let victim_pro = victim.staff[3];
    let before = snapshot(app, victim);
    let messages_before = messages_to(app, victim);

    let mut applied_uploads = 0;
    for role in ROLES {
        let who = attacker.address(role);
        let token = sync(|| {
            app.create_api_token(&op(), &email(&who), &name("attack"), None).unwrap().secret.expose().to_owned()
        });
        let patient = victim.patient;
        let reason = "Unconscious on arrival in the emergency department";
        let tries: Vec<(&str, String, Option<Value>)> = vec![
            ("GET", format!("/fhir/Patient/{patient}"), None),
            ("GET", format!("/fhir/Patient?identifier={}", victim.nhs_number), None),
            (
                "GET",
                format!("/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number%7C{}", victim.nhs_number),
                None,
            ),
            ("GET", format!("/fhir/Patient?family={}&birthdate={}", victim.family, victim.birth_date), None),
            (
                "POST",
                format!("/fhir/Patient/{patient}/$break-glass"),
                Some(
                    json!({ "resourceType": "Parameters", "parameter": [{ "name": "reason", "valueString": reason }] }),
                ),
            ),
            ("GET", format!("/fhir/Consent?patient={patient}"), None),
            ("GET", format!("/fhir/Consent/{}", victim.consent_id), None),
            (
                "PUT",
                format!("/fhir/Consent/{}", victim.consent_id),
                Some(json!({
                    "resourceType": "Consent",
                    "id": victim.consent_id,
                    "status": "active",
                    "extension": [{ "url": "https://kith.dev/fhir/StructureDefinition/on-behalf-reason", "valueString": "The patient asked in clinic today" }],
                    "provision": { "securityLabel": PrivacyLabel::ALL.iter().map(|label| json!({ "system": "https://kith.dev/fhir/CodeSystem/privacy-label", "code": label.code() })).collect::<Vec<_>>() }
                })),
            ),
            ("GET", format!("/fhir/AuditEvent?patient={patient}"), None),
            ("GET", format!("/fhir/Observation?patient={patient}"), None),
            ("GET", format!("/fhir/Observation/{}", victim.observation_id), None),
            ("GET", format!("/fhir/DocumentReference?patient={patient}"), None),
            ("GET", format!("/fhir/CareTeam/{}", victim.ward), None),
            ("GET", format!("/fhir/Practitioner/{victim_pro}"), None),
            ("GET", format!("/fhir/PractitionerRole?practitioner={victim_pro}"), None),
        ];
        let mut tries = tries;
        for performer in [attacker.ward, victim.ward, attacker.prt] {
            tries.push((
                "POST",
                "/fhir/Observation".to_owned(),
                Some(json!({
                    "resourceType": "Observation",
                    "status": "final",
                    "subject": { "reference": format!("Patient/{patient}") },
                    "performer": [{ "reference": format!("CareTeam/{performer}") }],
                    "code": { "text": "Pulse" },
                    "valueQuantity": { "value": 80, "unit": "/min" }
                })),
            ));
        }
        for team in [victim.ward, victim.prt, attacker.ward, attacker.prt] {
            tries.push((
                "POST",
                format!("/fhir/CareTeam/{team}/$add-patient"),
                Some(json!({ "resourceType": "Parameters", "parameter": [
                    { "name": "identifier", "valueIdentifier": { "system": "https://fhir.nhs.uk/Id/nhs-number", "value": victim.nhs_number } },
                    { "name": "birthdate", "valueDate": victim.birth_date }
                ] })),
            ));
        }
        for (method, path, body) in tries {
            let answer = fhir(router, method, &path, &token, body).await;
            assert!(
                method == "GET" || !answer.status.is_success(),
                "{who}: {method} {path} succeeded across organisations: {} {}",
                answer.status,
                answer.body
            );
            assert_no_leak(victim, &who, &format!("{method} {path}"), &answer);
        }

        // The pages, signed in.
        let mut browser = Browser::sign_in(router, app, &who).await;
        for path in ["/", "/team/members", "/team/professionals", "/welcome", "/account/password"] {
            let answer = browser.get(router, path).await;
            assert_no_leak(victim, &who, &format!("GET {path}"), &answer);
        }
        let switch = browser.post(router, "/team", &[("team", &victim.ward.to_string())]).await;
        browser.assert_reached(&who, "switching team", &switch);
        assert_no_leak(victim, &who, "switching to the other organisation's team", &switch);
        browser.get(router, "/team/members").await;
        let victim_address = victim.address("professional");
        let identity =
            [("nhs_number", victim.nhs_number), ("family", victim.family), ("birth_date", victim.birth_date)];
        let forms: [(String, &[(&str, &str)]); 6] = [
            (format!("/team/members/{victim_pro}/status"), &[("status", "deactivated")]),
            (format!("/team/members/{victim_pro}/reset"), &[]),
            (format!("/team/members/{victim_pro}/two-factor"), &[]),
            ("/team/members/invite".to_owned(), &[("email", &victim_address), ("given", "Vic"), ("family", "Tim")]),
            ("/team/patient-reset".to_owned(), &identity),
            ("/team/patient-remind".to_owned(), &identity),
        ];
        for (path, fields) in forms {
            browser.get(router, "/team/members").await;
            let answer = browser.post(router, &path, fields).await;
            browser.assert_reached(&who, &path, &answer);
            assert_no_leak(victim, &who, &format!("POST {path}"), &answer);
        }
        // A coordinator's CSV upload naming the other organisation's staff and patient.
        browser.get(router, "/team/professionals").await;
        let csv = format!(
            "email,given name,family name,role\n{},Vic,Tim,professional\n{},Pat,Ient,professional\n",
            victim.address("professional"),
            victim.patient_email()
        );
        let preview = browser.upload(router, "/team/professionals/preview", &csv).await;
        browser.assert_reached(&who, "the CSV preview", &preview);
        if role == "coordinator" {
            assert_eq!(preview.status, StatusCode::OK, "{who}: the preview of their own team: {}", preview.body);
        }
        assert!(!preview.body.contains(victim.family), "{who}: the preview named the patient: {}", preview.body);
        if preview.status.is_success() {
            let marker = "<textarea name=\"file\" hidden aria-hidden=\"true\">\n";
            let file = preview.body.find(marker).map(|start| {
                let rest = &preview.body[start + marker.len()..];
                rest[..rest.find("</textarea>").unwrap()].to_owned()
            });
            if let Some(file) = file {
                let file = html_unescape(&file);
                let mut applied = browser.post(router, "/team/professionals/apply", &[("file", &file)]).await;
                browser.assert_reached(&who, "applying the upload", &applied);
                applied_uploads += 1;
                // The report repeats the addresses the coordinator typed; beyond them it must
                // say nothing (the same words for a patient's address as for a new one).
                applied.body = applied.body.replace(&victim.patient_email(), "");
                assert_no_leak(victim, &who, "applying the upload", &applied);
            }
        }
        // Whatever the upload did, the coordinator still cannot act on the other
        // organisation's account.
        browser.get(router, "/team/members").await;
        for action in ["reset", "two-factor"] {
            browser.get(router, "/team/members").await;
            let answer = browser.post(router, &format!("/team/members/{victim_pro}/{action}"), &[]).await;
            browser.assert_reached(&who, action, &answer);
            assert_no_leak(victim, &who, action, &answer);
        }
        let _ = browser.post(router, "/sign-out", &[]).await;
    }

    assert!(applied_uploads >= 1, "the coordinator's upload was applied (the invitation path was tried)");

    // The attacker's HL7 feed, about the victim's patient with a different family name.
    for (index, kind) in ["A08", "ORU"].into_iter().enumerate() {
        let message = hl7_message(&format!("X{index}{}", attacker.domain.len()), attacker.facility, kind, victim);
        let request = Request::post("/hl7/v2")
            .header(header::AUTHORIZATION, format!("Bearer {}", attacker.integration_token))
            .header(header::CONTENT_TYPE, "x-application/hl7-v2+er7")
            .body(Body::from(message))
            .unwrap();
        let answer = send(router, request).await;
        assert_eq!(answer.status, StatusCode::OK, "{kind}: {}", answer.body);
        assert!(answer.body.starts_with("MSH|"), "{kind}: {}", answer.body);
        assert_no_leak(victim, attacker.facility, kind, &answer);
    }
    // Another organisation's facility name with the attacker's token is refused.
    let spoofed = hl7_message("SPOOF1", victim.facility, "A08", victim);
    let request = Request::post("/hl7/v2")
        .header(header::AUTHORIZATION, format!("Bearer {}", attacker.integration_token))
        .header(header::CONTENT_TYPE, "x-application/hl7-v2+er7")
        .body(Body::from(spoofed))
        .unwrap();
    let answer = send(router, request).await;
    assert!(answer.body.contains("MSA|AR"), "a spoofed MSH-4 must be refused: {}", answer.body);

    assert_eq!(before, snapshot(app, victim), "{} changed something {} owns", attacker.code, victim.code);
    // A membership invitation asks its holder to accept; a patient's address named as a
    // professional's is told so (the coordinator is told the same as for a new address).
    let promised = ["membership_invitation", "professional_address_unusable"];
    let new_messages: Vec<_> = messages_to(app, victim)
        .into_iter()
        .filter(|message| !messages_before.contains(message) && !promised.contains(&message.0.as_str()))
        .collect();
    assert!(new_messages.is_empty(), "{} caused messages to {}'s people: {new_messages:?}", attacker.code, victim.code);
}

fn html_unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The organisation's own people see what the attack must not: the test's secrets are real.
async fn learn_ids(world: &mut World) {
    for org in world.orgs.iter_mut() {
        let token = sync(|| {
            world
                .app
                .create_api_token(&op(), &email(&org.patient_email()), &name("own"), None)
                .unwrap()
                .secret
                .expose()
                .to_owned()
        });
        let consents =
            fhir(&world.router, "GET", &format!("/fhir/Consent?patient={}", org.patient), &token, None).await;
        assert_eq!(consents.status, StatusCode::OK, "{}", consents.body);
        let consents: Value = serde_json::from_str(&consents.body).unwrap();
        let ward = format!("CareTeam/{}", org.ward);
        org.consent_id = consents["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["resource"].to_string().contains(&ward))
            .map(|entry| entry["resource"]["id"].as_str().unwrap().to_owned())
            .expect("the patient sees the ward's consent");
        let observations =
            fhir(&world.router, "GET", &format!("/fhir/Observation?patient={}", org.patient), &token, None).await;
        let observations: Value = serde_json::from_str(&observations.body).unwrap();
        org.observation_id = observations["entry"][0]["resource"]["id"].as_str().expect("an observation").to_owned();
        assert!(observations.to_string().contains(org.entry_title));
        // The professional of the organisation's ward sees the patient.
        let token = sync(|| {
            world
                .app
                .create_api_token(&op(), &email(&org.address("professional")), &name("own"), None)
                .unwrap()
                .secret
                .expose()
                .to_owned()
        });
        let read = fhir(&world.router, "GET", &format!("/fhir/Patient/{}", org.patient), &token, None).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.body);
        assert!(read.body.contains(org.family));
    }
}

async fn both_directions(database: TestDatabase) {
    let mut world = sync(|| world(database));
    learn_ids(&mut world).await;
    let [riverside, hillside] = &world.orgs;
    attack(&world, riverside, hillside).await;
    attack(&world, hillside, riverside).await;
    sync(|| drop(world));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_organisations_every_route_every_role_on_sqlite() {
    both_directions(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_organisations_every_route_every_role_on_postgres() {
    let Some(database) = sync(TestDatabase::postgres) else { return };
    both_directions(database).await;
}
