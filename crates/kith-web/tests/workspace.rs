//! The clinical workspace's pages on SQLite and PostgreSQL, through the real router: a
//! professional finds a patient by identifier and date of birth and adds them to the team,
//! reads the record as the patient's consent allows and writes a note; another breaks the
//! glass; the patient changes what a team sees and reads who looked. And every page and
//! action refused to those the rule does not allow — other teams, other organisations,
//! coordinators, guessed ids — with one answer that says nothing of whether the patient
//! exists. (The same story in Chromium is in crates/kith/tests/browser.rs.)

mod common;

use axum::Router;
use axum::http::StatusCode;
use common::{Browser, Page};
use kith_app::*;
use kith_core::team::MembershipRole;
use kith_core::text::{Name, OrganisationCode, Secret};
use kith_core::{LabelSet, PrivacyLabel};
use kith_test_support::TestDatabase;
use kith_test_support::world::{World, alias, code, email, operator, world};
use kith_web::WebConfig;

const PASSWORD: &str = "a long enough test password";
const NOT_AVAILABLE: &str = "This page is not available";
const NO_MATCH_WORDS: &str = "No patient in your organisation matches that identifier and date of birth";
const REASON: &str = "Unconscious in the emergency department, no history available";

fn sync<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

struct Web {
    world: World,
    router: Router,
    patient: String,
}

/// The shared world (RXH: teams mh and gum; the patient Ngozi, in mh, with a document
/// under each label) plus: gum live, a cardiology team `card` (live, general health) with
/// card@, a second organisation NGT with ngt@, and the patient registered as
/// patient@. Everyone signs in with [`PASSWORD`].
fn web(database: TestDatabase) -> Web {
    let world = world(database);
    let hash = kith_app::password::hash_password(&Secret::new(PASSWORD.into())).unwrap();
    let op = operator();
    let member = |organisation: OrganisationCode, team: &str, who: &str, role: MembershipRole| {
        world.add_member_with_password(organisation, team, who, role, &hash);
    };
    world
        .app
        .create_team(
            &op,
            &code(),
            &Name::parse("n", "Cardiology").unwrap(),
            &alias("card"),
            LabelSet::from_labels([PrivacyLabel::General]),
        )
        .unwrap();
    for team in ["gum", "card"] {
        member(code(), team, &format!("{team}-c1@example.org"), MembershipRole::Coordinator);
        member(code(), team, &format!("{team}-c2@example.org"), MembershipRole::Coordinator);
        world.app.go_live(&op, &code(), &alias(team)).unwrap();
    }
    member(code(), "gum", "gumpro@example.org", MembershipRole::Professional);
    member(code(), "card", "card@example.org", MembershipRole::Professional);
    member(code(), "mh", "mhpro@example.org", MembershipRole::Professional);
    member(code(), "mh", "mhcoord@example.org", MembershipRole::Coordinator);
    member(code(), "prt", "dq@example.org", MembershipRole::Professional);
    let ngt = OrganisationCode::parse("NGT").unwrap();
    world
        .app
        .create_organisation(
            &op,
            &NewOrganisation {
                code: ngt.clone(),
                name: Name::parse("n", "Northgate").unwrap(),
                break_glass_duration: None,
            },
        )
        .unwrap();
    world
        .app
        .create_team(&op, &ngt, &Name::parse("n", "Northgate Cardiology").unwrap(), &alias("ncard"), LabelSet::ALL)
        .unwrap();
    member(ngt, "ncard", "ngt@example.org", MembershipRole::Professional);
    world.app.register_patient_account(&op, &code(), world.patient.id, &email("patient@example.org"), &hash).unwrap();
    let router = kith_web::router_with(world.app.clone(), WebConfig::default());
    let patient = world.patient.id.to_string();
    Web { world, router, patient }
}

async fn each_web(test: impl AsyncFn(&Web)) {
    for database in sync(TestDatabase::all) {
        eprintln!("engine: {:?}", database.engine);
        let web = sync(|| web(database));
        test(&web).await;
        sync(|| drop(web));
    }
}

async fn signed_in<'r>(web: &'r Web, who: &str) -> Browser<'r> {
    let mut browser = Browser::new(&web.router);
    let page = browser.sign_in(who, PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{who} signs in: {}", page.body);
    // The first page (or the one it sends them to) gives the session's form token.
    if let Some(next) = browser.get("/").await.location {
        browser.get(&next).await;
    }
    browser
}

/// Finds the patient (NHS number 943 476 5919, born 1971-09-14 in the shared world).
async fn find(browser: &mut Browser<'_>, identifier: &str, day: &str, fields: &[(&str, &str)]) -> Page {
    browser.get("/patients/find").await;
    let mut form = vec![("identifier", identifier), ("day", day), ("month", "9"), ("year", "1971")];
    form.extend_from_slice(fields);
    browser.post("/patients/find", &form).await
}

fn shown(page: &Page, title: &str) -> bool {
    page.body.contains(&format!("<h3>{title}</h3>"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_professional_finds_adds_reads_and_writes_and_the_patient_sees_it() {
    each_web(async |web: &Web| {
        let birth = web.world.patient.demographics.birth_date;
        assert_eq!(birth.to_string(), "1971-09-14", "the shared world's patient");
        let mut gum = signed_in(web, "gumpro@example.org").await;

        // A wrong date of birth and an unknown number get the same answer.
        let wrong_birth = find(&mut gum, "943 476 5919", "15", &[("action", "add"), ("basis", "referral")]).await;
        let unknown = find(&mut gum, "9434765870", "14", &[("action", "add"), ("basis", "referral")]).await;
        assert_eq!(wrong_birth.status, StatusCode::OK);
        assert!(wrong_birth.body.contains(NO_MATCH_WORDS), "{}", wrong_birth.body);
        let strip = |page: &Page| {
            page.body
                .replace(&gum.csrf, "")
                .replace("9434765870", "")
                .replace("943 476 5919", "")
                .replace("value=\"15\"", "")
                .replace("value=\"14\"", "")
        };
        assert_eq!(strip(&wrong_birth), strip(&unknown), "one answer for both");
        // Nothing changed: the patient is not in the list.
        let list = gum.get("/patients").await;
        assert!(!list.body.contains(&web.patient), "{}", list.body);

        // The right details: added, with the team's default labels (general, sexual health).
        let added = find(&mut gum, "9434765919", "14", &[("action", "add"), ("basis", "consent")]).await;
        assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
        assert_eq!(added.location.as_deref(), Some(format!("/patients/{}?done=added", web.patient).as_str()));
        let record = gum.get(&format!("/patients/{}", web.patient)).await;
        assert_eq!(record.status, StatusCode::OK);
        assert!(shown(&record, "general") && shown(&record, "sexual_health"), "{}", record.body);
        assert!(!shown(&record, "mental_health") && !shown(&record, "social_care"), "{}", record.body);
        assert!(
            record.body.contains("Some entries are hidden by the patient&#x27;s choice")
                || record.body.contains("Some entries are hidden by the patient's choice"),
            "{}",
            record.body
        );
        // The list shows them, and finds them by name, NHS number and date of birth.
        for query in ["", "ngo", "OKA", "9434765919", "14/09/1971"] {
            let list = gum.get(&format!("/patients?q={query}")).await;
            assert!(list.body.contains(&web.patient), "query {query:?}: {}", list.body);
        }
        assert!(!gum.get("/patients?q=zzz").await.body.contains(&web.patient));
        // Adding again says so.
        let again = find(&mut gum, "9434765919", "14", &[("action", "add"), ("basis", "referral")]).await;
        assert!(again.body.contains("already in your team"), "{}", again.body);

        // A note: a missing title is refused and writes nothing; then written and shown.
        let bad = gum
            .post(
                &format!("/patients/{}/entries", web.patient),
                &[("kind", "note"), ("title", ""), ("body", "Seen today")],
            )
            .await;
        assert_eq!(bad.status, StatusCode::OK);
        assert!(bad.body.contains("Enter a title"), "{}", bad.body);
        let note = gum
            .post(
                &format!("/patients/{}/entries", web.patient),
                &[
                    ("kind", "note"),
                    ("title", "Clinic review"),
                    ("body", "Seen today; well."),
                    ("label", "sexual_health"),
                ],
            )
            .await;
        assert_eq!(note.status, StatusCode::SEE_OTHER, "{}", note.body);
        let record = gum.get(&format!("/patients/{}", web.patient)).await;
        assert!(shown(&record, "Clinic review"), "{}", record.body);
        assert_eq!(record.body.matches("<h3>Clinic review</h3>").count(), 1, "the refused note wrote nothing");

        // The patient sees everything, the note included, and who looked.
        let mut patient = signed_in(web, "patient@example.org").await;
        let own = patient.get("/my/record").await;
        assert_eq!(own.status, StatusCode::OK, "{}", own.body);
        for title in ["general", "sexual_health", "mental_health", "social_care", "Clinic review"] {
            assert!(shown(&own, title), "{title}: {}", own.body);
        }
        // Filtered by label.
        let filtered = patient.get("/my/record?label=mental_health").await;
        assert!(shown(&filtered, "mental_health") && !shown(&filtered, "general"));
        let log = patient.get("/my/access-log").await;
        assert!(log.body.contains("gumpro<br>Sexual Health, Riverside Hospitals"), "{}", log.body);

        // The patient takes mental health away from mh: mh's view loses it at once.
        let mut mh = signed_in(web, "mhpro@example.org").await;
        assert!(shown(&mh.get(&format!("/patients/{}", web.patient)).await, "mental_health"));
        let sharing = patient.get("/my/sharing").await;
        let mh_team = team_id(web, "mh");
        assert!(sharing.body.contains(&format!("/my/sharing/{mh_team}")), "{}", sharing.body);
        let changed = patient.post(&format!("/my/sharing/{mh_team}"), &[("general", "on")]).await;
        assert_eq!(changed.location.as_deref(), Some("/my/sharing?done=changed"), "{}", changed.body);
        let after = mh.get(&format!("/patients/{}", web.patient)).await;
        assert!(shown(&after, "general") && !shown(&after, "mental_health"), "{}", after.body);
    })
    .await;
}

fn team_id(web: &Web, team: &str) -> String {
    let teams = sync(|| web.world.app.teams_with_members(&code()).unwrap());
    teams.iter().find(|(t, _)| t.alias.as_str() == team).unwrap().0.id.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn breaking_the_glass_shows_everything_with_a_banner_and_the_patient_sees_why() {
    each_web(async |web: &Web| {
        let mut card = signed_in(web, "card@example.org").await;
        assert_eq!(card.get(&format!("/patients/{}", web.patient)).await.status, StatusCode::NOT_FOUND);
        // A reason is required: refused with a message, nothing opened.
        let no_reason =
            find(&mut card, "9434765919", "14", &[("action", "emergency"), ("emergency_reason", "  ")]).await;
        assert_eq!(no_reason.status, StatusCode::OK);
        assert!(no_reason.body.contains("Say why you need emergency access"), "{}", no_reason.body);
        assert_eq!(card.get(&format!("/patients/{}", web.patient)).await.status, StatusCode::NOT_FOUND);
        // A wrong date of birth: the one answer.
        let wrong = find(&mut card, "9434765919", "13", &[("action", "emergency"), ("emergency_reason", REASON)]).await;
        assert!(wrong.body.contains(NO_MATCH_WORDS), "{}", wrong.body);

        let opened =
            find(&mut card, "9434765919", "14", &[("action", "emergency"), ("emergency_reason", REASON)]).await;
        assert_eq!(opened.status, StatusCode::SEE_OTHER, "{}", opened.body);
        let record = card.get(&format!("/patients/{}", web.patient)).await;
        for title in ["general", "sexual_health", "mental_health", "social_care"] {
            assert!(shown(&record, title), "{title}: {}", record.body);
        }
        assert!(record.body.contains("Emergency access is on"), "the banner: {}", record.body);
        assert!(card.get("/patients").await.body.contains("Emergency access is on"), "on every page");

        let mut patient = signed_in(web, "patient@example.org").await;
        let log = patient.get("/my/access-log").await;
        assert!(log.body.contains("Emergency access:"), "{}", log.body);
        assert!(log.body.contains(REASON), "{}", log.body);
        assert!(log.body.contains("card<br>Cardiology, Riverside Hospitals"), "who, team, organisation: {}", log.body);
        let csv = patient.get("/my/access-log.csv").await;
        assert_eq!(csv.status, StatusCode::OK);
        assert!(csv.body.starts_with("when,who,team,organisation,what,data,basis,emergency access,reason given\r\n"));
        assert!(
            csv.body.lines().any(|line| line.contains(",card,Cardiology,Riverside Hospitals,")
                && line.contains(",yes,")
                && line.contains(REASON)),
            "{}",
            csv.body
        );

        // Signing out ends it: the record is closed again.
        card.post("/sign-out", &[]).await;
        let mut card = signed_in(web, "card@example.org").await;
        assert_eq!(card.get(&format!("/patients/{}", web.patient)).await.status, StatusCode::NOT_FOUND);
        assert!(!card.get("/patients").await.body.contains("Emergency access is on"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_refuses_whom_the_rule_does_not_allow_with_one_answer() {
    each_web(async |web: &Web| {
        let patient = &web.patient;
        let unknown = uuid::Uuid::from_u128(0x1234).to_string();
        let entry = web.world.entries[0].id.to_string();
        // Guessed and other patients' ids: the same answer as for the real one.
        for who in ["card@example.org", "ngt@example.org", "gumpro@example.org"] {
            let mut browser = signed_in(web, who).await;
            for id in [patient.as_str(), unknown.as_str(), "not-an-id", entry.as_str()] {
                for path in [format!("/patients/{id}"), format!("/patients/{id}/discharge")] {
                    let page = browser.get(&path).await;
                    assert_eq!(page.status, StatusCode::NOT_FOUND, "{who} GET {path}");
                    assert!(page.body.contains(NOT_AVAILABLE), "{who} {path}");
                    assert!(!page.body.contains("Ngozi"), "{who} {path}");
                }
                for path in [
                    format!("/patients/{id}/discharge"),
                    format!("/patients/{id}/entries"),
                    format!("/patients/{id}/consent"),
                ] {
                    let fields =
                        [("kind", "note"), ("title", "x"), ("body", "x"), ("general", "on"), ("reason", REASON)];
                    let page = browser.post(&path, &fields).await;
                    assert_eq!(page.status, StatusCode::NOT_FOUND, "{who} POST {path}: {}", page.body);
                }
                let upload = format!("/patients/{id}/documents");
                let page = browser.post_file(&upload, &[("title", "Letter")], ("a.pdf", "application/pdf", PDF)).await;
                assert_eq!(page.status, StatusCode::NOT_FOUND, "{who} POST {upload}: {}", page.body);
            }
            // The patient's own pages are for patients.
            for path in ["/my/record", "/my/sharing", "/my/access-log", "/my/access-log.csv"] {
                assert_eq!(browser.get(path).await.status, StatusCode::FORBIDDEN, "{who} {path}");
            }
        }
        // Another organisation's professional cannot find or open the patient by their details.
        let mut ngt = signed_in(web, "ngt@example.org").await;
        let found = find(&mut ngt, "9434765919", "14", &[("action", "add"), ("basis", "referral")]).await;
        assert!(found.body.contains(NO_MATCH_WORDS), "{}", found.body);
        let glass = find(&mut ngt, "9434765919", "14", &[("action", "emergency"), ("emergency_reason", REASON)]).await;
        assert!(glass.body.contains(NO_MATCH_WORDS), "{}", glass.body);
        assert!(!ngt.get("/patients").await.body.contains(patient));

        // A coordinator runs the team: no clinical pages.
        let mut coordinator = signed_in(web, "mhcoord@example.org").await;
        assert_eq!(coordinator.get("/patients").await.status, StatusCode::NOT_FOUND);
        assert_eq!(coordinator.get(&format!("/patients/{patient}")).await.status, StatusCode::NOT_FOUND);

        // A patient may change only their own links: another team id changes nothing.
        let mut own = signed_in(web, "patient@example.org").await;
        own.get("/my/sharing").await;
        let gum = team_id(web, "gum");
        let refused = own.post(&format!("/my/sharing/{gum}"), &[("general", "on")]).await;
        assert_ne!(refused.status, StatusCode::SEE_OTHER, "{}", refused.body);
        let links = sync(|| web.world.app.store().read(|tx| tx.care_links(web.world.patient.id)).unwrap());
        assert!(links.iter().all(|link| link.team.to_string() != gum), "{links:?}");
        // The discharge by the team it is in works, and the list no longer shows them.
        let mut mh = signed_in(web, "mhpro@example.org").await;
        mh.get(&format!("/patients/{patient}/discharge")).await;
        let discharged = mh.post(&format!("/patients/{patient}/discharge"), &[]).await;
        assert_eq!(discharged.status, StatusCode::SEE_OTHER, "{}", discharged.body);
        assert!(!mh.get("/patients").await.body.contains(patient.as_str()));
        assert_eq!(mh.get(&format!("/patients/{patient}")).await.status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_in_an_email_lands_on_its_page_after_sign_in() {
    each_web(async |web: &Web| {
        let mut browser = Browser::new(&web.router);
        let page = browser.get("/my/access-log").await;
        assert_eq!(page.location.as_deref(), Some("/sign-in?next=%2Fmy%2Faccess-log"));
        let form = browser.get("/sign-in?next=%2Fmy%2Faccess-log").await;
        assert!(form.body.contains("name=\"next\" value=\"/my/access-log\""), "{}", form.body);
        let signed_in = browser
            .post("/sign-in", &[("email", "patient@example.org"), ("password", PASSWORD), ("next", "/my/access-log")])
            .await;
        assert_eq!(signed_in.location.as_deref(), Some("/my/access-log"));
        // Never another site.
        let mut other = Browser::new(&web.router);
        other.get("/sign-in").await;
        let page = other
            .post("/sign-in", &[("email", "patient@example.org"), ("password", PASSWORD), ("next", "//evil.example/")])
            .await;
        assert_eq!(page.location.as_deref(), Some("/"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_patient_relabels_an_entry_and_professionals_record_consent_on_their_behalf() {
    each_web(async |web: &Web| {
        let patient = &web.patient;
        let social = web.world.entries.iter().find(|e| e.label == Some(PrivacyLabel::SocialCare)).unwrap().id;
        let mut mh = signed_in(web, "mhpro@example.org").await;
        assert!(!shown(&mh.get(&format!("/patients/{patient}")).await, "social_care"));

        // The patient makes the social care entry general: mh sees it at once.
        let mut own = signed_in(web, "patient@example.org").await;
        own.get("/my/record").await;
        let changed = own.post(&format!("/my/entries/{social}/label"), &[("label", "general")]).await;
        assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.body);
        assert!(shown(&mh.get(&format!("/patients/{patient}")).await, "social_care"));
        // Not a label, and an entry that is not theirs: refused, nothing changed.
        let bad = own.post(&format!("/my/entries/{social}/label"), &[("label", "secret")]).await;
        assert!(bad.body.contains("Choose a label from the list"), "{}", bad.body);
        let unknown = uuid::Uuid::from_u128(7).to_string();
        assert_eq!(
            own.post(&format!("/my/entries/{unknown}/label"), &[("label", "general")]).await.status,
            StatusCode::NOT_FOUND
        );
        // A professional cannot relabel through the patient's route.
        assert_eq!(
            mh.post(&format!("/my/entries/{social}/label"), &[("label", "mental_health")]).await.status,
            StatusCode::FORBIDDEN
        );

        // mh narrows its own view on the patient's behalf, with a reason; adding back is the patient's.
        let page = mh.get(&format!("/patients/{patient}")).await;
        assert!(page.body.contains("What Mental Health sees"), "{}", page.body);
        let no_reason = mh.post(&format!("/patients/{patient}/consent"), &[("general", "on")]).await;
        assert!(no_reason.body.contains("Say on what basis"), "{}", no_reason.body);
        let narrowed = mh
            .post(
                &format!("/patients/{patient}/consent"),
                &[("general", "on"), ("reason", "The patient asked us in clinic today")],
            )
            .await;
        assert_eq!(narrowed.status, StatusCode::SEE_OTHER, "{}", narrowed.body);
        assert!(!shown(&mh.get(&format!("/patients/{patient}")).await, "mental_health"));
        let widened = mh
            .post(
                &format!("/patients/{patient}/consent"),
                &[("general", "on"), ("mental_health", "on"), ("reason", "The patient asked us in clinic today")],
            )
            .await;
        assert_eq!(widened.status, StatusCode::OK, "refused on the page: {}", widened.body);
        assert!(!shown(&mh.get(&format!("/patients/{patient}")).await, "mental_health"), "nothing changed");
        // Another team's professional cannot change mh's view: the page is not theirs.
        let mut card = signed_in(web, "card@example.org").await;
        let other = card
            .post(
                &format!("/patients/{patient}/consent"),
                &[("general", "on"), ("reason", "The patient asked us in clinic today")],
            )
            .await;
        assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.body);

        // A long access log comes in pages, newest first.
        for _ in 0..60 {
            mh.get(&format!("/patients/{patient}")).await;
        }
        let first = own.get("/my/access-log").await;
        let older =
            first.body.split("&#38;before=").nth(1).unwrap_or_else(|| panic!("a link to older events: {}", first.body));
        let before: i64 = older[..older.find('"').unwrap()].parse().unwrap();
        let page = own.get(&format!("/my/access-log?own=0&before={before}")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("Mental Health") && page.body.contains(">Newest</a>"), "{}", page.body);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn patients_choose_how_they_are_told_and_cannot_turn_off_emergency_access() {
    each_web(async |web: &Web| {
        let mut own = signed_in(web, "patient@example.org").await;
        let page = own.get("/my/notifications").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("When someone uses emergency access to your record"), "{}", page.body);
        assert!(!page.body.contains("id=\"break_glass-off\""), "no way to turn it off");
        let off = own
            .post("/my/notifications", &[("team_added", "email"), ("new_entries", "email"), ("break_glass", "off")])
            .await;
        assert_eq!(off.status, StatusCode::OK);
        assert!(off.body.contains("You are always told when someone uses emergency access"), "{}", off.body);
        let missing = own.post("/my/notifications", &[("team_added", "email")]).await;
        assert!(missing.body.contains("Choose one answer for each question"), "{}", missing.body);
        let saved = own
            .post("/my/notifications", &[("team_added", "off"), ("new_entries", "both"), ("break_glass", "email")])
            .await;
        assert_eq!(saved.location.as_deref(), Some("/my/notifications?done=saved"));
        let page = own.get("/my/notifications?done=saved").await;
        assert!(
            page.body.contains("id=\"new_entries-both\" name=\"new_entries\" value=\"both\" checked"),
            "{}",
            page.body
        );
        // Professionals have no notification page of a patient's.
        let mut mh = signed_in(web, "mhpro@example.org").await;
        assert_eq!(mh.get("/my/notifications").await.status, StatusCode::FORBIDDEN);
    })
    .await;
}

/// A small, real PDF (one empty page).
const PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n\
3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n";

#[tokio::test(flavor = "multi_thread")]
async fn documents_are_uploaded_checked_by_content_and_served_only_to_whom_the_rule_allows() {
    each_web(async |web: &Web| {
        let patient = &web.patient;
        let mut mh = signed_in(web, "mhpro@example.org").await;
        let record = format!("/patients/{patient}");
        let upload = format!("/patients/{patient}/documents");
        mh.get(&record).await;
        let entries_before = mh.get(&record).await.body.matches("<h3>").count();

        // Bad input: a clear message on the page, nothing written.
        let text = mh
            .post_file(
                &upload,
                &[("title", "Clinic letter"), ("label", "general")],
                ("letter.pdf", "application/pdf", b"just text, not a PDF"),
            )
            .await;
        assert_eq!(text.status, StatusCode::OK);
        assert!(text.body.contains("The file is not a PDF, PNG or JPEG image"), "{}", text.body);
        let html = mh
            .post_file(
                &upload,
                &[("title", "Clinic letter")],
                ("x.pdf", "application/pdf", b"<html><script>alert(1)</script>"),
            )
            .await;
        assert!(html.body.contains("The file is not a PDF, PNG or JPEG image"), "{}", html.body);
        let no_title = mh.post_file(&upload, &[("title", "")], ("letter.pdf", "application/pdf", PDF)).await;
        assert!(no_title.body.contains("Enter a title"), "{}", no_title.body);
        let empty = mh.post_file(&upload, &[("title", "Clinic letter")], ("letter.pdf", "application/pdf", b"")).await;
        assert!(empty.body.contains("Choose a file to upload"), "{}", empty.body);
        let mut big = PDF.to_vec();
        big.resize(kith_core::document::MAX_DOCUMENT_BYTES + 1, b' ');
        let too_big = mh.post_file(&upload, &[("title", "Clinic letter")], ("big.pdf", "application/pdf", &big)).await;
        assert_eq!(too_big.status, StatusCode::OK);
        assert!(too_big.body.contains("10 MB"), "{}", too_big.body);
        let mut huge = PDF.to_vec();
        huge.resize(kith_core::document::MAX_DOCUMENT_BYTES + 1024 * 1024, b' ');
        let refused =
            mh.post_file(&upload, &[("title", "Clinic letter")], ("huge.pdf", "application/pdf", &huge)).await;
        assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
        // A stale token: refused, nothing written.
        let mut stale = signed_in(web, "mhpro@example.org").await;
        stale.get(&record).await;
        stale.csrf = "0".repeat(64);
        let expired =
            stale.post_file(&upload, &[("title", "Clinic letter")], ("letter.pdf", "application/pdf", PDF)).await;
        assert_eq!(expired.status, StatusCode::FORBIDDEN);
        assert_eq!(mh.get(&record).await.body.matches("<h3>").count(), entries_before, "nothing was written");

        // A PDF: stored, listed with a link, streamed back as itself and never run.
        mh.get(&record).await;
        let added = mh
            .post_file(
                &upload,
                &[("title", "Clinic letter"), ("label", "mental_health")],
                ("clinic letter.pdf", "image/png", PDF),
            )
            .await;
        assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
        let page = mh.get(&record).await;
        assert!(shown(&page, "Clinic letter"), "{}", page.body);
        let link = page.body.split("href=\"/documents/").nth(1).expect("a link to the document");
        let url = format!("/documents/{}", &link[..link.find('"').unwrap()]);
        let (status, headers, bytes) = mh.download(&url).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(bytes, PDF, "byte for byte");
        assert_eq!(headers["content-type"], "application/pdf", "the type its content has, not the one declared");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment;"));
        assert!(headers["content-security-policy"].to_str().unwrap().contains("sandbox"));
        assert_eq!(headers["cache-control"], "no-store");

        // The patient opens it; another team without mental health, another organisation and
        // a guessed id get the one answer; so does a signed-out browser (sent to sign in).
        let mut own = signed_in(web, "patient@example.org").await;
        assert!(own.get("/my/record").await.body.contains(&url));
        assert_eq!(own.download(&url).await.2, PDF);
        for who in ["gumpro@example.org", "card@example.org", "ngt@example.org", "mhcoord@example.org"] {
            let mut other = signed_in(web, who).await;
            let (status, _, bytes) = other.download(&url).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{who}");
            assert!(!bytes.starts_with(b"%PDF"), "{who}");
        }
        let guessed = format!("/documents/{}", uuid::Uuid::from_u128(99));
        assert_eq!(own.download(&guessed).await.0, StatusCode::NOT_FOUND);
        let a_note = format!("/documents/{}", web.world.entries[0].id);
        assert_eq!(mh.download(&a_note).await.0, StatusCode::NOT_FOUND, "an entry without a file");
        let mut nobody = Browser::new(&web.router);
        assert_eq!(nobody.download(&url).await.0, StatusCode::SEE_OTHER);
        // Consent for mental health taken away: the team still sees what it wrote itself.
        let mh_team = team_id(web, "mh");
        own.get("/my/sharing").await;
        own.post(&format!("/my/sharing/{mh_team}"), &[("general", "on")]).await;
        assert_eq!(mh.download(&url).await.0, StatusCode::OK, "its own team's document");

        // Another team's upload to a record it is not in: refused, not available.
        let mut card = signed_in(web, "card@example.org").await;
        card.get("/patients").await;
        let other = card.post_file(&upload, &[("title", "Letter")], ("letter.pdf", "application/pdf", PDF)).await;
        assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.body);

        // The patient adds their own PNG.
        own.get("/my/record").await;
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
        let mine = own
            .post_file("/my/documents", &[("title", "Home blood pressure chart")], ("bp.png", "image/png", png))
            .await;
        assert_eq!(mine.location.as_deref(), Some("/my/record?done=document"), "{}", mine.body);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn home_pages_show_welcomes_and_what_is_new_since_the_last_visit() {
    each_web(async |web: &Web| {
        let app = &web.world.app;
        sync(|| {
            let patient = app.account_by_email(&email("patient@example.org")).unwrap();
            app.finish_walkthrough(patient.id).unwrap()
        });
        // First visits: nothing is "new" yet.
        let mut mh = signed_in(web, "mhpro@example.org").await;
        assert!(!mh.get("/").await.body.contains("Since your last visit"));
        let mut own = signed_in(web, "patient@example.org").await;
        assert!(!own.get("/").await.body.contains("Since your last visit"));

        // Then: a coordinator's welcome for professionals, the organisation's welcome for
        // patients, and a new general entry from the hospital's team.
        let mut coordinator = signed_in(web, "mhcoord@example.org").await;
        coordinator.get("/team/members").await;
        let saved = coordinator.post("/team/welcome", &[("welcome", "Handover is at 8:30 in room 4.")]).await;
        assert!(saved.body.contains("The welcome message is saved"), "{}", saved.body);
        sync(|| app.set_welcome_message(&operator(), &code(), "Welcome to Riverside's Kith.").unwrap());
        web.world.clock.advance(std::time::Duration::from_secs(3600));
        sync(|| {
            app.add_entry(
                &EntryAuthor::Operator { operator: &operator(), organisation: &code(), team: &alias("prt") },
                web.world.patient.id,
                &NewEntry {
                    kind: kith_core::patient::EntryKind::Note,
                    label: Some(PrivacyLabel::General),
                    title: kith_core::text::Title::parse("Discharge summary").unwrap(),
                    body: String::new(),
                    effective_at: app.now(),
                },
            )
            .unwrap()
        });
        web.world.clock.advance(std::time::Duration::from_secs(60));

        let mut mh = signed_in(web, "mhpro@example.org").await;
        let home = mh.get("/").await;
        assert!(home.body.contains("Handover is at 8:30 in room 4."), "{}", home.body);
        assert!(home.body.contains("Since your last visit"), "{}", home.body);
        assert!(
            home.body.contains(&format!("<a href=\"/patients/{}\">Ngozi Okafor</a>: 1 new entry", web.patient)),
            "{}",
            home.body
        );
        // Another team sees nothing of a patient it does not have.
        let mut card = signed_in(web, "card@example.org").await;
        card.get("/").await;
        web.world.clock.advance(std::time::Duration::from_secs(60));
        let mut card = signed_in(web, "card@example.org").await;
        assert!(!card.get("/").await.body.contains("Ngozi"));

        let mut own = signed_in(web, "patient@example.org").await;
        let home = own.get("/").await;
        assert!(home.body.contains("1 new entry in your record"), "{}", home.body);
        assert!(home.body.contains("From Patient Record Team, Riverside Hospitals"), "{}", home.body);
        assert!(
            home.body.contains("Welcome to Riverside&#39;s Kith.")
                || home.body.contains("Welcome to Riverside's Kith."),
            "{}",
            home.body
        );
        let _ = own.csrf.len();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn data_quality_staff_see_nothing_until_they_record_consent_on_the_patient_s_behalf() {
    each_web(async |web: &Web| {
        let patient = &web.patient;
        let mut dq = signed_in(web, "dq@example.org").await;
        // The Patient Record Team has every record of the organisation, and sees none of it.
        assert!(dq.get("/patients").await.body.contains(patient.as_str()));
        let record = dq.get(&format!("/patients/{patient}")).await;
        assert_eq!(record.status, StatusCode::OK);
        assert_eq!(record.body.matches("<h3>").count(), 0, "no entries: {}", record.body);
        assert!(record.body.contains("Some entries are hidden by the patient"), "{}", record.body);
        assert!(record.body.contains("What Patient Record Team sees"), "{}", record.body);
        // What the organisation allows on the patient's behalf (general health), with a basis;
        // nothing more.
        let more = dq
            .post(
                &format!("/patients/{patient}/consent"),
                &[("general", "on"), ("mental_health", "on"), ("reason", "The patient asked at the front desk")],
            )
            .await;
        assert_eq!(more.status, StatusCode::OK, "{}", more.body);
        assert!(more.body.contains("There is a problem"), "{}", more.body);
        assert!(!shown(&dq.get(&format!("/patients/{patient}")).await, "general"));
        let general = dq
            .post(
                &format!("/patients/{patient}/consent"),
                &[("general", "on"), ("reason", "The patient asked at the front desk")],
            )
            .await;
        assert_eq!(general.status, StatusCode::SEE_OTHER, "{}", general.body);
        let record = dq.get(&format!("/patients/{patient}")).await;
        assert!(shown(&record, "general") && !shown(&record, "mental_health"), "{}", record.body);
        // The patient sees who did it, on what basis, in their access log.
        let mut own = signed_in(web, "patient@example.org").await;
        let log = own.get("/my/access-log").await;
        assert!(log.body.contains("changed what a team sees"), "{}", log.body);
    })
    .await;
}

/// What the look-up allowance's refusal says (`LookupBudget::refusal`).
const LIMIT_WORDS: &str = "look-ups in the last hour that matched no patient";

/// `n` emergency-access look-ups with the wrong date of birth.
async fn misses(browser: &mut Browser<'_>, n: usize) {
    for _ in 0..n {
        let miss = find(browser, "9434765919", "13", &[("action", "emergency"), ("emergency_reason", REASON)]).await;
        assert!(miss.body.contains(NO_MATCH_WORDS), "{}", miss.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emergency_look_up_of_a_record_with_sharing_disabled_counts_as_a_miss() {
    each_web(async |web: &Web| {
        let app = &web.world.app;
        sync(|| {
            app.appoint_privacy_officer(&operator(), &code(), &email("mhcoord@example.org")).unwrap();
            let officer = app.account_by_email(&email("mhcoord@example.org")).unwrap();
            let reason = kith_core::text::Reason::parse("Safeguarding concern raised").unwrap();
            app.set_sharing_disabled(officer.id, web.world.patient.id, true, &reason).unwrap();
        });
        let mut card = signed_in(web, "card@example.org").await;
        misses(&mut card, MAX_LOOKUP_MISSES_PER_HOUR as usize - 1).await;
        // The right identifier and date of birth of a record whose sharing is disabled: the
        // one answer, and a miss like any other, so that the allowance tells nothing.
        let locked =
            find(&mut card, "9434765919", "14", &[("action", "emergency"), ("emergency_reason", REASON)]).await;
        assert!(locked.body.contains(NO_MATCH_WORDS), "{}", locked.body);
        let next = find(&mut card, "9434765919", "13", &[("action", "emergency"), ("emergency_reason", REASON)]).await;
        assert!(next.body.contains(LIMIT_WORDS), "the allowance is spent: {}", next.body);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emergency_look_up_by_someone_the_rule_refuses_tells_nothing_through_the_allowance() {
    each_web(async |web: &Web| {
        // Two coordinators (no clinical access): the same misses, then one looks up the
        // patient's real details and the other a wrong date of birth. What follows must be
        // the same for both.
        let mut answers = Vec::new();
        for (who, day) in [("mhcoord@example.org", "14"), ("gum-c1@example.org", "13")] {
            let mut coordinator = signed_in(web, who).await;
            misses(&mut coordinator, MAX_LOOKUP_MISSES_PER_HOUR as usize - 1).await;
            let probe =
                find(&mut coordinator, "9434765919", day, &[("action", "emergency"), ("emergency_reason", REASON)])
                    .await;
            assert!(probe.body.contains(NO_MATCH_WORDS), "{who}: {}", probe.body);
            let next =
                find(&mut coordinator, "9434765919", "13", &[("action", "emergency"), ("emergency_reason", REASON)])
                    .await;
            answers.push((next.status, next.body.contains(NO_MATCH_WORDS), next.body.contains(LIMIT_WORDS)));
        }
        assert_eq!(answers[0], answers[1], "a hit and a miss leave the same allowance");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_never_goes_on_to_another_site_through_characters_browsers_drop() {
    each_web(async |web: &Web| {
        // Browsers remove tabs and newlines from a URL before reading it: `/<TAB>/evil` is
        // `//evil`, another site.
        for next in ["/\t/evil.example/", "/\t\\evil.example/", "/\u{0}/evil.example/", "/\u{7f}/x"] {
            let mut browser = Browser::new(&web.router);
            browser.get("/sign-in").await;
            let page = browser
                .post("/sign-in", &[("email", "patient@example.org"), ("password", PASSWORD), ("next", next)])
                .await;
            assert_eq!(page.location.as_deref(), Some("/"), "{next:?}: {} {}", page.status, page.body);
            let form = browser
                .get(&format!("/sign-in?next={}", form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()))
                .await;
            assert!(!form.body.contains("evil.example"), "{next:?}: {}", form.body);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_teams_own_coordinators_set_its_welcome_for_professionals() {
    each_web(async |web: &Web| {
        let mh: kith_core::TeamId = team_id(web, "mh").parse().unwrap();
        // A professional of the team and another organisation's professional are refused; a
        // coordinator of another team sets their own team's (the team comes from the session,
        // never the form). mh's is never touched.
        for (who, refused) in [("mhpro@example.org", true), ("ngt@example.org", true), ("gum-c1@example.org", false)] {
            let mut browser = signed_in(web, who).await;
            let page = browser
                .post("/team/welcome", &[("welcome", "<script>alert(1)</script>"), ("team", &mh.to_string())])
                .await;
            assert_eq!(!page.body.contains("The welcome message is saved"), refused, "{who}: {}", page.body);
            assert_eq!(sync(|| web.world.app.professional_welcome(mh).unwrap()), None, "{who}");
        }
        // The team's coordinator: saved, and shown escaped on the team's home pages.
        let mut coordinator = signed_in(web, "mhcoord@example.org").await;
        coordinator.get("/team/members").await;
        let saved = coordinator.post("/team/welcome", &[("welcome", "<script>alert(1)</script>")]).await;
        assert!(saved.body.contains("The welcome message is saved"), "{}", saved.body);
        let mut professional = signed_in(web, "mhpro@example.org").await;
        let home = professional.get("/").await;
        assert!(home.body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{}", home.body);
        assert!(!home.body.contains("<script>alert(1)"), "{}", home.body);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_consent_and_upload_forms_and_the_list_cursor_answer_alike_for_real_and_guessed_patients() {
    each_web(async |web: &Web| {
        let unknown = uuid::Uuid::from_u128(0x5678).to_string();
        let entry = web.world.entries[0].id.to_string();
        let mut card = signed_in(web, "card@example.org").await;
        card.get("/patients").await;
        let mut answers = Vec::new();
        for id in [web.patient.as_str(), unknown.as_str(), entry.as_str(), "not-an-id"] {
            let consent = card
                .post(
                    &format!("/patients/{id}/consent"),
                    &[("general", "on"), ("reason", "The patient asked us in clinic today")],
                )
                .await;
            let no_reason = card.post(&format!("/patients/{id}/consent"), &[("general", "on")]).await;
            let upload = card
                .post_file(
                    &format!("/patients/{id}/documents"),
                    &[("title", "Letter")],
                    ("letter.pdf", "application/pdf", b"%PDF-1.4\n%%EOF\n"),
                )
                .await;
            let bad_file = card
                .post_file(
                    &format!("/patients/{id}/documents"),
                    &[("title", "Letter")],
                    ("a.html", "text/html", b"<b>"),
                )
                .await;
            for page in [&consent, &no_reason, &upload, &bad_file] {
                assert_eq!(page.status, StatusCode::NOT_FOUND, "{id}: {}", page.body);
                assert!(page.body.contains(NOT_AVAILABLE) && !page.body.contains("Ngozi"), "{id}: {}", page.body);
            }
            // The team's list after a patient not in the team is the list from its start.
            let list = card.get(&format!("/patients?after={id}")).await;
            answers.push(list.body.replace(id, ""));
        }
        assert!(answers.windows(2).all(|pair| pair[0] == pair[1]), "{answers:#?}");
    })
    .await;
}
