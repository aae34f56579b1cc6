//! The web application's sign-in, on SQLite and PostgreSQL: sessions and their expiry,
//! sign-out, CSRF refusals, the failed-attempt limits, no account enumeration, and
//! single-use expiring reset codes. Requests go through the real router; a small cookie
//! jar plays the browser (the Chromium tests are in crates/kith/tests/browser.rs).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use kith_app::sessions::SignIn;
use kith_app::*;
use kith_core::Timestamp;
use kith_core::team::MembershipRole;
use kith_core::text::{EmailAddress, Name, OrganisationCode, Secret, TeamAlias};
use kith_core::{LabelSet, PrivacyLabel};
use kith_test_support::TestDatabase;
use kith_web::WebConfig;

mod common;
use common::{Browser, Page};
use tower::ServiceExt;

const START: Timestamp = Timestamp::from_micros(1_795_000_000_000_000);
const PASSWORD: &str = "a long enough test password";
const NEW_PASSWORD: &str = "another long enough password";

fn op() -> Operator {
    Operator { name: "test-operator".into() }
}
fn code() -> OrganisationCode {
    OrganisationCode::parse("RXH").unwrap()
}
fn name(text: &str) -> Name {
    Name::parse("name", text).unwrap()
}

struct World {
    _database: TestDatabase,
    app: App,
    clock: Arc<ManualClock>,
    router: Router,
}

fn world(database: TestDatabase, config: WebConfig) -> World {
    let clock = Arc::new(ManualClock::new(START));
    let app = App::new(database.store(), clock.clone());
    app.create_organisation(
        &op(),
        &NewOrganisation { code: code(), name: name("Riverside Hospitals"), break_glass_duration: None },
    )
    .unwrap();
    app.create_team(
        &op(),
        &code(),
        &name("Mental Health"),
        &TeamAlias::parse("mh").unwrap(),
        LabelSet::from_labels([PrivacyLabel::General, PrivacyLabel::MentalHealth]),
    )
    .unwrap();
    let hash = kith_app::password::hash_password(&Secret::new(PASSWORD.into())).unwrap();
    for (who, role) in
        [("ada@example.org", MembershipRole::Coordinator), ("bob@example.org", MembershipRole::Professional)]
    {
        app.add_member(
            &op(),
            &NewMember {
                organisation: code(),
                team: TeamAlias::parse("mh").unwrap(),
                email: EmailAddress::parse(who).unwrap(),
                name: name(&format!("{} Example", who.split('@').next().unwrap())),
                role,
                password_hash: Some(hash.clone()),
            },
        )
        .unwrap();
    }
    let router = kith_web::router_with(app.clone(), config);
    World { _database: database, app, clock, router }
}

fn sync<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

/// Runs `test` on SQLite and, when configured, PostgreSQL. Creating and dropping a
/// PostgreSQL scratch database blocks, so both happen off the async executor.
async fn each_world(config: WebConfig, test: impl AsyncFn(&World)) {
    for database in sync(TestDatabase::all) {
        eprintln!("backend: {:?}", database.engine);
        let world = sync(|| world(database, config.clone()));
        test(&world).await;
        sync(|| drop(world));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_in_and_out() {
    each_world(WebConfig::default(), async |world: &World| {
        let mut browser = Browser::new(&world.router);
        let landing = browser.get("/").await;
        assert_eq!(landing.status, StatusCode::OK);
        assert!(landing.body.contains("href=\"/sign-in\""));

        let form = browser.get("/sign-in").await;
        assert!(form.body.contains("<label for=\"email\">Email address</label>"), "labelled fields");
        let form_cookie = form.set_cookies.iter().find(|c| c.starts_with("kith_form=")).expect("a form cookie");
        assert!(form_cookie.contains("HttpOnly") && form_cookie.contains("SameSite=Strict"));
        assert!(!form_cookie.contains("Secure"), "plain http: no Secure flag");

        // A session id planted before sign-in (fixation) is not the one signed in.
        let planted = "ab".repeat(32);
        browser.cookies.insert("kith_session".into(), planted.clone());
        let signed_in = browser.post("/sign-in", &[("email", "Ada@Example.org"), ("password", PASSWORD)]).await;
        assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
        assert_eq!(signed_in.location.as_deref(), Some("/"));
        let session_cookie = signed_in.set_cookies.iter().find(|c| c.starts_with("kith_session=")).unwrap();
        assert!(session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"), "{session_cookie}");
        let session = browser.cookies["kith_session"].clone();
        assert_ne!(session, planted, "a new session id at sign-in");

        let home = browser.get("/").await;
        assert!(home.body.contains("Hello, ada Example"), "{}", home.body);
        assert!(home.body.contains("Mental Health (coordinator)"), "the team switcher lists teams and roles");
        assert!(home.body.contains("Sign out"));

        // Signed in, the sign-in page sends you home.
        assert_eq!(browser.get("/sign-in").await.location.as_deref(), Some("/"));

        let out = browser.post("/sign-out", &[]).await;
        assert_eq!(out.status, StatusCode::SEE_OTHER);
        assert_eq!(out.location.as_deref(), Some("/sign-in?done=signed-out"));
        assert!(!browser.cookies.contains_key("kith_session"), "the cookie is cleared");
        assert!(sync(|| world.app.session(&session)).unwrap().is_none(), "the session has ended");
        // An old cookie replayed after sign-out is nobody.
        browser.cookies.insert("kith_session".into(), session);
        assert!(browser.get("/").await.body.contains("href=\"/sign-in\""));
        let actions: Vec<String> = sync(|| world.app.audit_events(None, 1000))
            .unwrap()
            .into_iter()
            .map(|event| format!("{}:{}", event.record.action, event.record.outcome))
            .filter(|action| action.starts_with("account.sign"))
            .collect();
        assert_eq!(actions, ["account.sign_in:allowed", "account.sign_out:allowed"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_do_not_reveal_whether_an_account_exists() {
    each_world(WebConfig { attempt_burst: 1000, ..WebConfig::default() }, async |world: &World| {
        let mut browser = Browser::new(&world.router);
        browser.get("/sign-in").await;
        let mut timings: HashMap<&str, Vec<Duration>> = HashMap::new();
        let mut bodies: HashMap<&str, String> = HashMap::new();
        for round in 0..7 {
            for (case, email) in [("known", "bob@example.org"), ("unknown", "nobody@example.org")] {
                let started = Instant::now();
                let page = browser.post("/sign-in", &[("email", email), ("password", "wrong password, long")]).await;
                timings.entry(case).or_default().push(started.elapsed());
                assert_eq!(page.status, StatusCode::OK);
                assert!(page.body.contains("The email address or password is not right"));
                // The only difference is the address echoed back into the form.
                let body = page.body.replace(email, "EMAIL");
                if round == 0 {
                    bodies.insert(case, body);
                } else {
                    assert_eq!(bodies[case], body);
                }
            }
        }
        assert_eq!(bodies["known"], bodies["unknown"], "the same page for a wrong password and an unknown address");
        // The fastest of seven: other tests running at the same time only ever add time.
        let fastest = |case: &str| timings[case].iter().min().copied().unwrap();
        let (known, unknown) = (fastest("known"), fastest("unknown"));
        eprintln!("fastest sign-in refusal: known {known:?}, unknown {unknown:?}");
        assert!(known < unknown * 2 && unknown < known * 2, "similar timing: known {known:?}, unknown {unknown:?}");

        // Password reset: the same page and similar timing (the lookup happens after the
        // answer), and a message only for the real account.
        let mut answers = Vec::new();
        let mut reset_timings: HashMap<&str, Vec<Duration>> = HashMap::new();
        for _ in 0..7 {
            for email in ["bob@example.org", "nobody@example.org"] {
                browser.get("/password-reset").await;
                let started = Instant::now();
                let page = browser.post("/password-reset", &[("email", email)]).await;
                reset_timings.entry(email).or_default().push(started.elapsed());
                assert_eq!(page.status, StatusCode::OK);
                answers.push(page.body);
            }
        }
        assert!(answers.windows(2).all(|pair| pair[0] == pair[1]), "one answer for every address");
        assert!(answers[0].contains("If an account uses that email address"));
        let fastest = |email: &str| reset_timings[email].iter().min().copied().unwrap();
        let (known, unknown) = (fastest("bob@example.org"), fastest("nobody@example.org"));
        eprintln!("fastest reset answer: known {known:?}, unknown {unknown:?}");
        assert!(known < unknown * 2 + Duration::from_millis(2) && unknown < known * 2 + Duration::from_millis(2));
        let resets = wait_for_resets(world, 7).await;
        assert!(resets.iter().all(|(to, _)| to == "bob@example.org"));
    })
    .await;
}

/// Password-reset emails in the outbox (recipient, code), once `count` are there.
async fn wait_for_resets(world: &World, count: usize) -> Vec<(String, String)> {
    for _ in 0..200 {
        let resets: Vec<(String, String)> = sync(|| world.app.store().read(|tx| tx.outbox(1000)))
            .unwrap()
            .into_iter()
            .filter(|row| row.message.template == "password_reset")
            .map(|row| (row.message.recipient, row.message.secret.expect("the code travels with the message")))
            .collect();
        if resets.len() >= count {
            return resets;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {count} reset messages were queued");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_attempts_are_limited_per_address_and_per_account() {
    // Per address: a burst, then 429 until the allowance refills.
    each_world(
        WebConfig { attempt_burst: 3, attempt_refill: Duration::from_secs(3600), ..WebConfig::default() },
        async |world: &World| {
            let mut browser = Browser::new(&world.router);
            browser.get("/sign-in").await;
            let address = |request: &mut Request<Body>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from(([192, 0, 2, 7], 5000))));
            };
            let mut statuses = Vec::new();
            for _ in 0..4 {
                let mut request = Request::post("/sign-in")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(header::COOKIE, format!("kith_form={}", browser.csrf))
                    .body(Body::from(format!("csrf={}&email=bob%40example.org&password=wrong", browser.csrf)))
                    .unwrap();
                address(&mut request);
                statuses.push(world.router.clone().oneshot(request).await.unwrap().status());
            }
            assert_eq!(statuses, [StatusCode::OK, StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);

            // Per account: after 100 failures in an hour even the right password is refused,
            // exactly as for an unknown address; an hour later it works again.
            let wrong = Secret::new("wrong password, long".into());
            let right = Secret::new(PASSWORD.into());
            // A session Bob had already (or one an attacker took) does not get around it: the
            // password typed again to change it counts against the same limit (issue 15).
            let SignIn::SignedIn(session) = sync(|| world.app.sign_in("bob@example.org", &right)).unwrap() else {
                panic!("Bob signs in")
            };
            let new_password = Secret::new("a new password, long enough".into());
            sync(|| {
                for _ in 0..MAX_FAILURES {
                    assert!(matches!(world.app.sign_in("bob@example.org", &wrong).unwrap(), SignIn::Refused));
                    assert!(matches!(world.app.sign_in("nobody@example.org", &wrong).unwrap(), SignIn::Refused));
                }
            });
            assert!(matches!(sync(|| world.app.sign_in("bob@example.org", &right)).unwrap(), SignIn::Refused));
            let refused = sync(|| world.app.change_password(session.secret.expose(), &right, &new_password));
            assert!(
                matches!(&refused, Err(kith_app::AppError::Invalid(message)) if message.starts_with("Too many wrong passwords")),
                "{refused:?}"
            );
            let refused = sync(|| world.app.disable_two_factor(session.secret.expose(), &right));
            assert!(matches!(refused, Err(kith_app::AppError::Invalid(_))), "{refused:?}");
            assert!(
                matches!(sync(|| world.app.sign_in("ada@example.org", &right)).unwrap(), SignIn::SignedIn(_)),
                "other accounts are not affected"
            );
            world.clock.advance(Duration::from_secs(3601));
            assert!(matches!(sync(|| world.app.sign_in("bob@example.org", &right)).unwrap(), SignIn::SignedIn(_)));
            let reasons: Vec<String> = sync(|| world.app.audit_events(None, 10_000))
                .unwrap()
                .into_iter()
                .filter_map(|event| event.record.reason)
                .collect();
            assert!(
                reasons.iter().any(|reason| reason == "too many failed sign-ins for this address in the last hour")
            );
            assert!(reasons.iter().any(|reason| reason == "no account has this email address"));
        },
    )
    .await;
}

const MAX_FAILURES: i64 = kith_app::sessions::MAX_FAILED_SIGN_INS_PER_HOUR;

#[tokio::test(flavor = "multi_thread")]
async fn state_changes_without_a_valid_token_or_from_another_site_are_refused() {
    each_world(WebConfig::default(), async |world: &World| {
        let mut browser = Browser::new(&world.router);
        browser.get("/sign-in").await;
        let fields = [("email", "ada@example.org"), ("password", PASSWORD)];
        let no_token = browser.post("/sign-in", &[("csrf", ""), fields[0], fields[1]]).await;
        assert_eq!(no_token.status, StatusCode::FORBIDDEN);
        assert!(no_token.body.contains("This form has expired"));
        let wrong_token = browser.post("/sign-in", &[("csrf", &"0".repeat(64)), fields[0], fields[1]]).await;
        assert_eq!(wrong_token.status, StatusCode::FORBIDDEN);
        let cross_origin = browser.post_with("/sign-in", &fields, &[("origin", "https://evil.example")]).await;
        assert_eq!(cross_origin.status, StatusCode::FORBIDDEN);
        let cross_site = browser.post_with("/sign-in", &fields, &[("sec-fetch-site", "cross-site")]).await;
        assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
        assert!(!browser.cookies.contains_key("kith_session"), "none of those signed in");

        assert_eq!(browser.sign_in("ada@example.org", PASSWORD).await.status, StatusCode::SEE_OTHER);
        browser.get("/").await;
        let session = browser.cookies["kith_session"].clone();
        // The pre-session form token is not the session's token.
        let form_token = browser.cookies["kith_form"].clone();
        for token in ["", form_token.as_str(), &"f".repeat(64)] {
            let out = browser.post("/sign-out", &[("csrf", token)]).await;
            assert_eq!(out.status, StatusCode::FORBIDDEN, "token {token:?}");
        }
        let cross_site = browser.post_with("/sign-out", &[], &[("sec-fetch-site", "cross-site")]).await;
        assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
        assert!(sync(|| world.app.session(&session)).unwrap().is_some(), "still signed in");
        assert_eq!(browser.post("/sign-out", &[]).await.status, StatusCode::SEE_OTHER);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_end_after_30_idle_minutes_or_12_hours() {
    each_world(WebConfig::default(), async |world: &World| {
        let mut browser = Browser::new(&world.router);
        browser.sign_in("ada@example.org", PASSWORD).await;
        let signed_in = |page: &Page| page.body.contains("Sign out");
        world.clock.advance(Duration::from_secs(29 * 60));
        assert!(signed_in(&browser.get("/").await), "29 idle minutes");
        world.clock.advance(Duration::from_secs(29 * 60));
        assert!(signed_in(&browser.get("/").await), "activity keeps it alive");
        world.clock.advance(Duration::from_secs(31 * 60));
        assert!(!signed_in(&browser.get("/").await), "31 idle minutes end it");

        browser.sign_in("ada@example.org", PASSWORD).await;
        for _ in 0..28 {
            world.clock.advance(Duration::from_secs(25 * 60));
            assert!(signed_in(&browser.get("/").await));
        }
        world.clock.advance(Duration::from_secs(25 * 60));
        assert!(!signed_in(&browser.get("/").await), "12 hours end it however busy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_codes_work_once_and_expire_and_end_every_session() {
    each_world(WebConfig::default(), async |world: &World| {
        let mut other_device = Browser::new(&world.router);
        other_device.sign_in("bob@example.org", PASSWORD).await;
        let other_session = other_device.cookies["kith_session"].clone();

        let mut browser = Browser::new(&world.router);
        browser.get("/password-reset").await;
        browser.post("/password-reset", &[("email", "bob@example.org")]).await;
        let (_, reset) = wait_for_resets(world, 1).await.remove(0);
        let link = format!("/password-reset/{reset}");
        let form = browser.get(&link).await;
        assert!(form.body.contains("Choose a new password") && form.body.contains("name=\"confirm\""));

        let mismatch = browser.post(&link, &[("password", NEW_PASSWORD), ("confirm", "something else entirely")]).await;
        assert!(mismatch.body.contains("The two passwords are different"));
        let short = browser.post(&link, &[("password", "short"), ("confirm", "short")]).await;
        assert!(short.body.contains("Your new password must be at least 12 characters"), "{}", short.body);
        assert!(
            short.body.contains("id=\"password-error\"") && short.body.contains("aria-invalid=\"true\""),
            "the error is also at its field: {}",
            short.body
        );
        assert!(short.body.contains("<a href=\"#password\">"), "the summary links to the field");
        assert!(
            sync(|| world.app.password_reset_usable(&reset)).unwrap(),
            "a refused password does not spend the code"
        );

        let done = browser.post(&link, &[("password", NEW_PASSWORD), ("confirm", NEW_PASSWORD)]).await;
        assert_eq!(done.location.as_deref(), Some("/sign-in?done=reset"));
        assert!(sync(|| world.app.session(&other_session)).unwrap().is_none(), "a new password ends every session");
        assert!(browser.get("/sign-in?done=reset").await.body.contains("Your password has been changed"));

        let again = browser
            .post(&link, &[("password", "yet another long password"), ("confirm", "yet another long password")])
            .await;
        assert!(again.body.contains("This link has expired or has already been used"), "single use");
        assert!(browser.get(&link).await.body.contains("This link has expired or has already been used"));
        assert_eq!(browser.sign_in("bob@example.org", NEW_PASSWORD).await.status, StatusCode::SEE_OTHER);

        // A second link expires after an hour; a third replaces any earlier one.
        sync(|| world.app.request_password_reset("bob@example.org")).unwrap();
        let second = wait_for_resets(world, 2).await.remove(1).1;
        world.clock.advance(Duration::from_secs(3601));
        assert!(!sync(|| world.app.password_reset_usable(&second)).unwrap(), "expired");
        let expired = sync(|| world.app.reset_password(&second, &Secret::new(PASSWORD.into()))).unwrap_err();
        assert_eq!(expired.to_string(), kith_app::sessions::UNUSABLE_LINK);
        sync(|| world.app.request_password_reset("bob@example.org")).unwrap();
        let third = wait_for_resets(world, 3).await.remove(2).1;
        sync(|| world.app.request_password_reset("bob@example.org")).unwrap();
        assert!(!sync(|| world.app.password_reset_usable(&third)).unwrap(), "replaced by a newer link");
        assert!(browser.get("/password-reset/not-a-code").await.body.contains("This link has expired"));
    })
    .await;
}

fn totp_now(world: &World, key: &str) -> String {
    let key = kith_app::two_factor::from_base32(key).unwrap();
    kith_app::two_factor::code_at(&key, kith_app::two_factor::step_of(world.clock.now()), 6)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_step_verification_enrolment_sign_in_recovery_and_requirement() {
    each_world(WebConfig::default(), async |world: &World| {
        let mut browser = Browser::new(&world.router);
        browser.sign_in("ada@example.org", PASSWORD).await;
        let setup = browser.get("/account/two-factor").await;
        let start = setup.body.find("id=\"totp-key\">").expect("the key is shown") + 14;
        let key: String = setup.body[start..start + setup.body[start..].find('<').unwrap()].replace(' ', "");
        assert_eq!(key.len(), 32);
        let qr = browser.get("/account/two-factor/qr.svg").await;
        assert!(qr.body.starts_with("<svg") && qr.body.contains("<path d=\"M"), "a QR code");

        let wrong = browser.post("/account/two-factor", &[("code", "000000")]).await;
        assert!(wrong.body.contains("That code is not right"));
        let first_code = totp_now(world, &key);
        let enrolled = browser.post("/account/two-factor", &[("code", first_code.as_str())]).await;
        assert!(enrolled.body.contains("Your recovery codes"), "{}", enrolled.body);
        let recovery: Vec<String> =
            enrolled.body.split("<li><code>").skip(1).map(|rest| rest[..rest.find('<').unwrap()].to_owned()).collect();
        assert_eq!(recovery.len(), 10);
        let ada_id = sync(|| world.app.account_by_email(&EmailAddress::parse("ada@example.org").unwrap())).unwrap().id;
        let stored = sync(|| world.app.store().read(|tx| tx.two_factor(ada_id))).unwrap().key.unwrap();
        assert!(stored.starts_with("v1:") && !stored.contains(&key), "the TOTP key is sealed at rest: {stored}");
        browser.post("/sign-out", &[]).await;

        // The password alone opens nothing.
        let first = browser.sign_in("ada@example.org", PASSWORD).await;
        assert_eq!(first.location.as_deref(), Some("/sign-in/two-factor"));
        let pending = browser.cookies["kith_session"].clone();
        assert!(!browser.get("/").await.body.contains("Sign out"), "no page before the second step");
        browser.get("/sign-in/two-factor").await;
        let replay = browser.post("/sign-in/two-factor", &[("code", first_code.as_str())]).await;
        assert!(replay.body.contains("That code is not right"), "the enrolment code cannot be replayed");
        world.clock.advance(Duration::from_secs(30));
        let done = browser.post("/sign-in/two-factor", &[("code", totp_now(world, &key).as_str())]).await;
        assert_eq!(done.location.as_deref(), Some("/"));
        assert_ne!(browser.cookies["kith_session"], pending, "a new session id after the second step");
        assert!(sync(|| world.app.pending_second_step(&pending)).unwrap().is_none());
        assert!(browser.get("/").await.body.contains("Sign out"));
        browser.post("/sign-out", &[]).await;

        // A recovery code works once, typed in any case and with or without its dash.
        for (attempt, expected) in [(recovery[0].to_uppercase(), Some("/")), (recovery[0].replace('-', ""), None)] {
            browser.sign_in("ada@example.org", PASSWORD).await;
            browser.get("/sign-in/two-factor").await;
            let page = browser.post("/sign-in/two-factor", &[("code", attempt.as_str())]).await;
            assert_eq!(page.location.as_deref(), expected, "{attempt}");
            if expected.is_some() {
                browser.get("/").await;
                browser.post("/sign-out", &[]).await;
            }
        }

        // A page an email link asked for is where the second step lands, too.
        browser.get("/sign-in?next=%2Fteam%2Fmembers").await;
        let first = browser
            .post("/sign-in", &[("email", "ada@example.org"), ("password", PASSWORD), ("next", "/team/members")])
            .await;
        assert_eq!(first.location.as_deref(), Some("/sign-in/two-factor?next=%2Fteam%2Fmembers"));
        let step = browser.get("/sign-in/two-factor?next=%2Fteam%2Fmembers").await;
        assert!(step.body.contains("name=\"next\" value=\"/team/members\""), "{}", step.body);
        world.clock.advance(Duration::from_secs(30));
        let typed = totp_now(world, &key);
        let done = browser.post("/sign-in/two-factor", &[("code", typed.as_str()), ("next", "/team/members")]).await;
        assert_eq!(done.location.as_deref(), Some("/team/members"));
        browser.get("/").await;
        browser.post("/sign-out", &[]).await;

        // An organisation that requires it sends professionals without it to set it up.
        sync(|| world.app.set_two_factor_requirement(&op(), &code(), true)).unwrap();
        let mut bob = Browser::new(&world.router);
        bob.sign_in("bob@example.org", PASSWORD).await;
        assert_eq!(bob.get("/").await.location.as_deref(), Some("/account/two-factor"));
        let setup = bob.get("/account/two-factor").await;
        assert!(setup.body.contains("Your organisation requires two-step verification"));
    })
    .await;
}

/// Creates a patient with an email in team `mh`: the record's first email sends an
/// invitation. Returns the patient and the invitation's codes from the outbox.
fn invited_patient(world: &World, given: &str, email: &str, nhs_number: &str) -> (kith_core::model::Patient, String) {
    use kith_core::patient::{Demographics, NhsNumber, Sex};
    let patient = world
        .app
        .create_patient(
            &op(),
            &NewPatient {
                organisation: code(),
                demographics: Demographics {
                    family_name: name("Example"),
                    given_name: name(given),
                    birth_date: kith_core::Date::new(1985, 3, 27).unwrap(),
                    sex: Sex::Female,
                    email: Some(EmailAddress::parse(email).unwrap()),
                    mobile: None,
                    address: None,
                },
                nhs_number: Some(NhsNumber::parse(nhs_number).unwrap()),
                local_identifiers: Vec::new(),
                teams: vec![TeamAlias::parse("mh").unwrap()],
            },
        )
        .unwrap();
    let secret = world
        .app
        .store()
        .read(|tx| tx.outbox(1000))
        .unwrap()
        .into_iter()
        .rev()
        .find(|row| row.message.template == "patient_invitation" && row.message.recipient == email)
        .and_then(|row| row.message.secret)
        .expect("an invitation with its codes");
    (patient, secret)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patient_registers_from_an_emailed_invitation_and_walks_through_their_teams() {
    each_world(WebConfig { attempt_burst: 1000, ..WebConfig::default() }, async |world: &World| {
        let (patient, secret) = sync(|| invited_patient(world, "Pat", "pat@example.org", "9434765919"));
        assert_eq!(
            sync(|| world.app.store().read(|tx| tx.patient(patient.id))).unwrap().unwrap().registration.code(),
            "invited"
        );
        let mut browser = Browser::new(&world.router);
        let form = browser.get(&format!("/register?code={secret}")).await;
        let (invitation, activation) = kith_app::invitations::split_codes(&secret);
        assert!(
            form.body.contains(&format!("value=\"{invitation}\""))
                && form.body.contains(&format!("value=\"{activation}\"")),
            "codes filled in from the link"
        );
        assert!(!form.body.contains("1985"), "the date of birth is never shown");

        let codes = [("invitation", invitation.as_str()), ("activation", activation.as_str())];
        let wrong =
            browser.post("/register", &[codes[0], codes[1], ("day", "28"), ("month", "3"), ("year", "1985")]).await;
        assert!(wrong.body.contains("do not match an invitation"));
        let not_a_date =
            browser.post("/register", &[codes[0], codes[1], ("day", "31"), ("month", "2"), ("year", "1985")]).await;
        assert!(not_a_date.body.contains("Enter your date of birth as numbers"));
        assert!(not_a_date.body.contains("id=\"dob-day-error\""), "{}", not_a_date.body);
        let right =
            browser.post("/register", &[codes[0], codes[1], ("day", "27"), ("month", "03"), ("year", "1985")]).await;
        assert!(right.body.contains("Hello, Pat"), "{}", right.body);
        assert!(right.body.contains("value=\"pat@example.org\""), "the record's email is suggested");

        let short = browser
            .post(
                "/register/account",
                &[
                    ("codes", &secret),
                    ("birth_date", "1985-03-27"),
                    ("email", "pat@example.org"),
                    ("password", "short"),
                    ("confirm", "short"),
                ],
            )
            .await;
        assert!(short.body.contains("Your password must be at least 12 characters"));
        let taken = browser
            .post(
                "/register/account",
                &[
                    ("codes", &secret),
                    ("birth_date", "1985-03-27"),
                    ("email", "bob@example.org"),
                    ("password", NEW_PASSWORD),
                    ("confirm", NEW_PASSWORD),
                ],
            )
            .await;
        assert!(taken.body.contains("An account already uses this email address"));
        let done = browser
            .post(
                "/register/account",
                &[
                    ("codes", &secret),
                    ("birth_date", "1985-03-27"),
                    ("email", "pat@example.org"),
                    ("password", NEW_PASSWORD),
                    ("confirm", NEW_PASSWORD),
                ],
            )
            .await;
        assert_eq!(done.location.as_deref(), Some("/welcome"));

        // Signed in, the home page waits until the walkthrough is done.
        assert_eq!(browser.get("/").await.location.as_deref(), Some("/welcome"));
        let step1 = browser.get("/welcome").await;
        assert!(
            step1.body.contains("Step 1 of 3")
                && step1.body.contains("Welcome to Kith. Riverside Hospitals keeps your record")
        );
        // Step 2 is the sharing page itself: one page for the walkthrough and for later.
        assert_eq!(browser.get("/welcome?step=2").await.location.as_deref(), Some("/my/sharing?walkthrough=1"));
        let step2 = browser.get("/my/sharing?walkthrough=1").await;
        assert!(
            step2.body.contains("Step 2 of 3")
                && step2.body.contains("sees none of your health information")
                && step2
                    .body
                    .contains("Mental Health is caring for you. It can now see general health and mental health"),
            "{}",
            step2.body
        );
        // The patient takes mental health away from the team, and stays in the walkthrough.
        let mh = sharing_form_team(&step2.body, "Mental Health");
        let saved = browser.post(&format!("/my/sharing/{mh}"), &[("general", "on"), ("walkthrough", "1")]).await;
        assert_eq!(saved.location.as_deref(), Some("/my/sharing?walkthrough=1&done=changed"));
        assert!(browser.get("/my/sharing?walkthrough=1&done=changed").await.body.contains("href=\"/welcome?step=3\""));
        let step3 = browser.get("/welcome?step=3").await;
        assert!(step3.body.contains("You're all set"));
        assert_eq!(browser.post("/welcome/finish", &[]).await.location.as_deref(), Some("/"));
        let home = browser.get("/").await;
        assert!(home.body.contains("Who can see your record"));
        assert!(home.body.contains("<td>Mental Health</td><td>general health</td>"), "{}", home.body);

        // The codes work once; an expired invitation's codes not at all.
        let mut again = Browser::new(&world.router);
        again.get("/register").await;
        let reuse =
            again.post("/register", &[codes[0], codes[1], ("day", "27"), ("month", "3"), ("year", "1985")]).await;
        assert!(reuse.body.contains("do not match an invitation"));
        let (_, late) = sync(|| invited_patient(world, "Lou", "lou@example.org", "9999999468"));
        world.clock.advance(Duration::from_secs(31 * 24 * 3600));
        assert!(
            sync(|| world.app.check_invitation(&late, Some(kith_core::Date::new(1985, 3, 27).unwrap())))
                .unwrap()
                .is_none(),
            "expired"
        );
        let actions: Vec<String> = sync(|| world.app.audit_events(Some(patient.id), 1000))
            .unwrap()
            .into_iter()
            .map(|event| format!("{}:{}", event.record.action, event.record.outcome))
            .collect();
        for expected in [
            "patient.invite:allowed",
            "patient.register_check:denied",
            "patient.register:allowed",
            "consent.change:allowed",
            "patient.walkthrough_done:allowed",
        ] {
            assert!(actions.iter().any(|action| action == expected), "{expected} in {actions:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn five_wrong_dates_of_birth_close_an_invitation_for_an_hour() {
    each_world(WebConfig::default(), async |world: &World| {
        let (_, secret) = sync(|| invited_patient(world, "Pat", "pat@example.org", "9434765919"));
        let right = Some(kith_core::Date::new(1985, 3, 27).unwrap());
        let wrong = Some(kith_core::Date::new(1986, 3, 27).unwrap());
        for _ in 0..5 {
            assert!(sync(|| world.app.check_invitation(&secret, wrong)).unwrap().is_none());
        }
        assert!(
            sync(|| world.app.check_invitation(&secret, right)).unwrap().is_none(),
            "closed after five wrong answers"
        );
        world.clock.advance(Duration::from_secs(3601));
        assert!(sync(|| world.app.check_invitation(&secret, right)).unwrap().is_some());
    })
    .await;
}

/// The id of the team whose section of the sharing page is headed `name`.
fn sharing_form_team(body: &str, name: &str) -> String {
    let section = body.find(&format!(">{name}, ")).unwrap_or_else(|| panic!("{name} on the page: {body}"));
    let start = body[section..].find("action=\"/my/sharing/").unwrap() + section + 20;
    body[start..start + 36].to_owned()
}

fn multipart(csrf: &str, file: &str) -> (String, String) {
    let boundary = "----kith-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"staff.csv\"\r\nContent-Type: text/csv\r\n\r\n{file}\r\n\
         --{boundary}--\r\n"
    );
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn html_unescape(text: &str) -> String {
    text.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_uploads_professionals_and_they_activate_their_accounts() {
    each_world(WebConfig::default(), async |world: &World| {
        let mut bob = Browser::new(&world.router);
        bob.sign_in("bob@example.org", PASSWORD).await;
        assert_eq!(bob.get("/team/professionals").await.status, StatusCode::FORBIDDEN, "professionals cannot upload");

        let mut ada = Browser::new(&world.router);
        ada.sign_in("ada@example.org", PASSWORD).await;
        let page = ada.get("/team/professionals").await;
        assert!(
            page.body.contains("Add professionals to Mental Health")
                && page.body.contains("enctype=\"multipart/form-data\"")
        );
        let template = ada.get("/static/professionals-template.csv").await;
        assert!(
            template.body.starts_with("email,given name,family name,job title,professional registration number,role")
        );

        let csv = "\u{feff}Email,Given_Name,family-name,Job Title,Professional Registration Number,Role\r\n\
                   new.one@example.org,New,One,Nurse,NMC 1,professional\r\n\
                   not an email,Bad,Row,Nurse,,professional\r\n\
                   bob@example.org,Bob,Example,Doctor,GMC 2,\r\n\
                   \"new.two@example.org\",\"Two, Jr\",New,Doctor,,coordinator\r\n";
        let accounts_before = sync(|| world.app.store().read(|tx| tx.outbox(10_000))).unwrap().len();
        let (content_type, body) = multipart(&ada.csrf.clone(), csv);
        let preview = ada
            .send(
                Request::post("/team/professionals/preview").header(header::CONTENT_TYPE, content_type),
                Body::from(body),
            )
            .await;
        assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
        assert!(preview.body.contains("Preview: nothing has been added yet"), "{}", preview.body);
        assert!(
            preview
                .body
                .contains("Would invite 2, would add to team 0, already in team 1, already invited 0, errors 1"),
            "{}",
            preview.body
        );
        assert!(
            preview.body.contains("<td>3</td><td>not an email</td><td>error</td>"),
            "the bad row with its line: {}",
            preview.body
        );
        assert_eq!(
            sync(|| world.app.store().read(|tx| tx.outbox(10_000))).unwrap().len(),
            accounts_before,
            "a preview writes nothing"
        );

        // Apply with the file the preview carried.
        let start = preview.body.find("<textarea name=\"file\" hidden aria-hidden=\"true\">\n").unwrap() + 49;
        let file = html_unescape(&preview.body[start..start + preview.body[start..].find("</textarea>").unwrap()]);
        let report = ada.post("/team/professionals/apply", &[("file", file.as_str())]).await;
        assert!(
            report.body.contains("Invited 2, added to team 0, already in team 1, already invited 0, errors 1"),
            "{}",
            report.body
        );
        assert!(report.body.contains("<td>3</td><td>not an email</td><td>error</td>"));
        let members = ada.get("/team/members").await;
        assert!(
            members.body.contains("<td>Nurse (NMC 1)</td>"),
            "job title and registration number kept: {}",
            members.body
        );
        let again = ada.post("/team/professionals/apply", &[("file", file.as_str())]).await;
        assert!(
            again.body.contains("Invited 0, added to team 0, already in team 1, already invited 2, errors 1"),
            "the same file again changes nothing"
        );

        // A new professional activates with the emailed link, once.
        let code = sync(|| world.app.store().read(|tx| tx.outbox(10_000)))
            .unwrap()
            .into_iter()
            .find(|row| {
                row.message.template == "professional_activation" && row.message.recipient == "new.one@example.org"
            })
            .and_then(|row| row.message.secret)
            .expect("an activation email with its code");
        let mut new = Browser::new(&world.router);
        let form = new.get(&format!("/activate/{code}")).await;
        assert!(form.body.contains("Set your password"));
        let done =
            new.post(&format!("/activate/{code}"), &[("password", NEW_PASSWORD), ("confirm", NEW_PASSWORD)]).await;
        assert_eq!(done.location.as_deref(), Some("/"));
        assert!(new.get("/").await.body.contains("Mental Health (professional)"));
        let reuse = Browser::new(&world.router).get(&format!("/activate/{code}")).await;
        assert!(reuse.body.contains("This link has expired or has already been used"));
        let mut signed = Browser::new(&world.router);
        assert_eq!(signed.sign_in("new.one@example.org", NEW_PASSWORD).await.location.as_deref(), Some("/"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn coordinators_manage_members_and_reset_passwords() {
    each_world(WebConfig::default(), async |world: &World| {
        let mut bob = Browser::new(&world.router);
        bob.sign_in("bob@example.org", PASSWORD).await;
        assert_eq!(bob.get("/team/members").await.status, StatusCode::FORBIDDEN, "a professional is not a coordinator");

        let mut ada = Browser::new(&world.router);
        ada.sign_in("ada@example.org", PASSWORD).await;
        let page = ada.get("/team/members").await;
        assert!(page.body.contains("<td>bob@example.org</td>"), "{}", page.body);
        let bob_id = sync(|| world.app.account_by_email(&EmailAddress::parse("bob@example.org").unwrap())).unwrap().id;

        let deactivated = ada.post(&format!("/team/members/{bob_id}/status"), &[("status", "deactivated")]).await;
        assert!(deactivated.body.contains("The membership was deactivated."), "{}", deactivated.body);
        assert!(!bob.get("/").await.body.contains("Mental Health (professional)"), "bob's membership stopped at once");
        let reactivated = ada.post(&format!("/team/members/{bob_id}/status"), &[("status", "active")]).await;
        assert!(reactivated.body.contains("The membership was reactivated."));
        assert!(bob.get("/").await.body.contains("Mental Health (professional)"));

        let reset = ada.post(&format!("/team/members/{bob_id}/reset"), &[]).await;
        assert!(reset.body.contains("A password reset link is on its way"), "{}", reset.body);
        assert!(reset.body.contains("password reset link: pending"), "the delivery state is shown: {}", reset.body);
        assert_eq!(wait_for_resets(world, 1).await[0].0, "bob@example.org");

        let invited = ada
            .post(
                "/team/members/invite",
                &[
                    ("email", "carol@example.org"),
                    ("given", "Carol"),
                    ("family", "Example"),
                    ("title", "Nurse"),
                    ("role", "professional"),
                ],
            )
            .await;
        assert!(invited.body.contains("carol@example.org: invited."), "{}", invited.body);
        assert!(invited.body.contains("<td>Nurse</td>"), "the job title is kept and shown: {}", invited.body);
        assert!(invited.body.contains("invited: not accepted yet") && invited.body.contains("invitation: pending"));
        let bad = ada.post("/team/members/invite", &[("email", "not an email"), ("given", "X"), ("family", "Y")]).await;
        assert!(bad.body.contains("is not an email address"), "{}", bad.body);
        let cross_site = ada
            .post_with(
                &format!("/team/members/{bob_id}/status"),
                &[("status", "deactivated")],
                &[("sec-fetch-site", "cross-site")],
            )
            .await;
        assert_eq!(cross_site.status, StatusCode::FORBIDDEN);

        // A Patient Record Team coordinator resets a registered patient's password after
        // confirming who they are; a match and a mismatch get one answer (no existence
        // oracle), and only the match sends a link.
        let (patient, _) = sync(|| invited_patient(world, "Pat", "pat@example.org", "9434765919"));
        let hash = kith_app::password::hash_password(&Secret::new(PASSWORD.into())).unwrap();
        sync(|| {
            world.app.register_patient_account(
                &op(),
                &code(),
                patient.id,
                &EmailAddress::parse("pat@example.org").unwrap(),
                &hash,
            )
        })
        .unwrap();
        sync(|| {
            world.app.add_member(
                &op(),
                &NewMember {
                    organisation: code(),
                    team: TeamAlias::patient_record_team(),
                    email: EmailAddress::parse("prt.coord@example.org").unwrap(),
                    name: name("Prt Coordinator"),
                    role: MembershipRole::Coordinator,
                    password_hash: Some(hash.clone()),
                },
            )
        })
        .unwrap();
        let mut prt = Browser::new(&world.router);
        prt.sign_in("prt.coord@example.org", PASSWORD).await;
        assert!(
            prt.get("/team/members").await.body.contains("<h2>Reset a patient"),
            "the PRT's coordinators see the form"
        );
        let wrong = prt
            .post(
                "/team/patient-reset",
                &[("nhs_number", "943 476 5919"), ("family", "Wrong"), ("birth_date", "1985-03-27")],
            )
            .await;
        assert!(wrong.body.contains("If a registered patient of the organisation matches"), "{}", wrong.body);
        let right = prt
            .post(
                "/team/patient-reset",
                &[("nhs_number", "943 476 5919"), ("family", "example"), ("birth_date", "1985-03-27")],
            )
            .await;
        assert_eq!(right.body, wrong.body, "the same answer");
        let resets = wait_for_resets(world, 2).await;
        assert!(resets.iter().any(|(to, _)| to == "pat@example.org"));
        // "Remind to register": a new invitation replaces the old one.
        let (_, first) = sync(|| invited_patient(world, "Lou", "lou@example.org", "9999999468"));
        let remind =
            |family: &'static str| [("nhs_number", "999 999 9468"), ("family", family), ("birth_date", "1985-03-27")];
        let wrong = prt.post("/team/patient-remind", &remind("Wrong")).await;
        assert!(wrong.body.contains("If a patient of the organisation who has still to register matches"));
        let sent = prt.post("/team/patient-remind", &remind("EXAMPLE")).await;
        assert_eq!(sent.body, wrong.body, "the same answer");
        let dob = Some(kith_core::Date::new(1985, 3, 27).unwrap());
        assert!(sync(|| world.app.check_invitation(&first, dob)).unwrap().is_none(), "the old codes stop working");
        let registered = prt
            .post(
                "/team/patient-remind",
                &[("nhs_number", "943 476 5919"), ("family", "example"), ("birth_date", "1985-03-27")],
            )
            .await;
        assert_eq!(registered.body, wrong.body, "registered already: the same answer");
        // Ada coordinates a speciality team: not patients' passwords.
        let refused = ada
            .post(
                "/team/patient-reset",
                &[("nhs_number", "943 476 5919"), ("family", "example"), ("birth_date", "1985-03-27")],
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn changing_a_password_ends_the_other_sessions() {
    each_world(WebConfig::default(), async |world: &World| {
        let mut laptop = Browser::new(&world.router);
        laptop.sign_in("bob@example.org", PASSWORD).await;
        let mut phone = Browser::new(&world.router);
        phone.sign_in("bob@example.org", PASSWORD).await;
        let old_laptop_session = laptop.cookies["kith_session"].clone();

        laptop.get("/account/password").await;
        let wrong = laptop
            .post(
                "/account/password",
                &[("current", "not my password"), ("password", NEW_PASSWORD), ("confirm", NEW_PASSWORD)],
            )
            .await;
        assert!(wrong.body.contains("Your current password is not right."), "{}", wrong.body);
        assert!(wrong.body.contains("id=\"current-error\""), "{}", wrong.body);
        let short = laptop
            .post("/account/password", &[("current", PASSWORD), ("password", "short"), ("confirm", "short")])
            .await;
        assert!(short.body.contains("Your new password must be at least 12 characters"));
        let done = laptop
            .post("/account/password", &[("current", PASSWORD), ("password", NEW_PASSWORD), ("confirm", NEW_PASSWORD)])
            .await;
        assert_eq!(done.location.as_deref(), Some("/?done=password"));
        assert_ne!(laptop.cookies["kith_session"], old_laptop_session, "a new session id for this browser");
        assert!(laptop.get("/?done=password").await.body.contains("You are signed out everywhere else."));
        assert!(!phone.get("/").await.body.contains("Sign out"), "the other session has ended");
        assert!(sync(|| world.app.session(&old_laptop_session)).unwrap().is_none());
        let mut fresh = Browser::new(&world.router);
        assert_eq!(fresh.sign_in("bob@example.org", NEW_PASSWORD).await.location.as_deref(), Some("/"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_typed_again_counts_against_the_per_address_burst() {
    // A stolen session must not make the password form an unthrottled guessing oracle: the
    // current password typed to change it, or to turn two-step verification off, takes from
    // the same per-address allowance as signing in (issue 15).
    each_world(
        WebConfig { attempt_burst: 4, attempt_refill: Duration::from_secs(3600), ..WebConfig::default() },
        async |world: &World| {
            let mut browser = Browser::from_address(&world.router, [192, 0, 2, 9]);
            browser.sign_in("bob@example.org", PASSWORD).await;
            browser.get("/account/password").await;
            let guess = [("current", "a wrong guess, long"), ("password", NEW_PASSWORD), ("confirm", NEW_PASSWORD)];
            let mut statuses = Vec::new();
            for _ in 0..4 {
                statuses.push(browser.post("/account/password", &guess).await.status);
            }
            assert_eq!(statuses, [StatusCode::OK, StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);
            // The right password is refused too while the allowance is spent, and so is the
            // form that turns two-step verification off.
            let right = [("current", PASSWORD), ("password", NEW_PASSWORD), ("confirm", NEW_PASSWORD)];
            assert_eq!(browser.post("/account/password", &right).await.status, StatusCode::TOO_MANY_REQUESTS);
            let disable = browser.post("/account/two-factor/disable", &[("password", PASSWORD)]).await;
            assert_eq!(disable.status, StatusCode::TOO_MANY_REQUESTS);
            let mut fresh = Browser::from_address(&world.router, [192, 0, 2, 9]);
            assert_eq!(fresh.sign_in("bob@example.org", PASSWORD).await.status, StatusCode::TOO_MANY_REQUESTS);
            // Another address is not affected.
            let mut elsewhere = Browser::from_address(&world.router, [198, 51, 100, 1]);
            assert_eq!(elsewhere.sign_in("bob@example.org", PASSWORD).await.location.as_deref(), Some("/"));
            // Nothing changed: the old password still works once the allowance refills.
            world.clock.advance(Duration::from_secs(3601));
            assert!(matches!(
                sync(|| world.app.sign_in("bob@example.org", &Secret::new(PASSWORD.into()))).unwrap(),
                SignIn::SignedIn(_)
            ));
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patient_may_set_up_two_step_verification_while_registering() {
    each_world(WebConfig::default(), async |world: &World| {
        let (_, secret) = sync(|| invited_patient(world, "Lou", "lou@example.org", "9434765919"));
        let mut browser = Browser::new(&world.router);
        browser.get(&format!("/register?code={secret}")).await;
        let fields = [
            ("codes", secret.as_str()),
            ("birth_date", "1985-03-27"),
            ("email", "lou@example.org"),
            ("password", NEW_PASSWORD),
            ("confirm", NEW_PASSWORD),
            ("two_factor", "yes"),
        ];
        let done = browser.post("/register/account", &fields).await;
        assert_eq!(done.location.as_deref(), Some("/account/two-factor"));
        enrol_signed_in(&mut browser, world).await;
        assert_eq!(browser.get("/").await.location.as_deref(), Some("/welcome"), "then the walkthrough");
    })
    .await;
}

/// Signs in `who` and turns two-step verification on; the TOTP key.
async fn enrol(browser: &mut Browser<'_>, world: &World, who: &str, password: &str) -> String {
    browser.sign_in(who, password).await;
    enrol_signed_in(browser, world).await
}

/// Turns two-step verification on for whoever is signed in; the TOTP key.
async fn enrol_signed_in(browser: &mut Browser<'_>, world: &World) -> String {
    let setup = browser.get("/account/two-factor").await;
    let start = setup.body.find("id=\"totp-key\">").unwrap() + 14;
    let key: String = setup.body[start..start + setup.body[start..].find('<').unwrap()].replace(' ', "");
    let enrolled = browser.post("/account/two-factor", &[("code", totp_now(world, &key).as_str())]).await;
    assert!(enrolled.body.contains("Your recovery codes"));
    key
}

#[tokio::test(flavor = "multi_thread")]
async fn two_step_verification_can_be_turned_off_or_reset_by_a_coordinator() {
    each_world(WebConfig::default(), async |world: &World| {
        // Bob turns it off himself, with his password.
        let mut bob = Browser::new(&world.router);
        enrol(&mut bob, world, "bob@example.org", PASSWORD).await;
        let mut bob_elsewhere = Browser::new(&world.router);
        world.clock.advance(Duration::from_secs(30));
        bob_elsewhere.sign_in("bob@example.org", PASSWORD).await;
        assert!(!bob_elsewhere.get("/").await.body.contains("Sign out"), "the second step is asked for");
        bob.get("/account/two-factor").await;
        let wrong = bob.post("/account/two-factor/disable", &[("password", "not my password")]).await;
        assert!(wrong.body.contains("Your password is not right."), "{}", wrong.body);
        let off = bob.post("/account/two-factor/disable", &[("password", PASSWORD)]).await;
        assert_eq!(off.location.as_deref(), Some("/?done=two-factor-off"));
        assert!(bob.get("/?done=two-factor-off").await.body.contains("Two-step verification is off."));
        let mut again = Browser::new(&world.router);
        assert_eq!(
            again.sign_in("bob@example.org", PASSWORD).await.location.as_deref(),
            Some("/"),
            "the password alone"
        );

        // Ada (coordinator) resets Bob's after he enrols again and loses his phone.
        let mut bob = Browser::new(&world.router);
        enrol(&mut bob, world, "bob@example.org", PASSWORD).await;
        let mut ada = Browser::new(&world.router);
        ada.sign_in("ada@example.org", PASSWORD).await;
        let members = ada.get("/team/members").await;
        assert!(members.body.contains("Reset two-step verification"), "{}", members.body);
        let bob_id = sync(|| world.app.account_by_email(&EmailAddress::parse("bob@example.org").unwrap())).unwrap().id;
        let reset = ada.post(&format!("/team/members/{bob_id}/two-factor"), &[]).await;
        assert!(reset.body.contains("Their two-step verification is off"), "{}", reset.body);
        assert!(!bob.get("/").await.body.contains("Sign out"), "bob's sessions ended");
        let mut fresh = Browser::new(&world.router);
        assert_eq!(fresh.sign_in("bob@example.org", PASSWORD).await.location.as_deref(), Some("/"));
        let twice = ada.post(&format!("/team/members/{bob_id}/two-factor"), &[]).await;
        assert!(twice.body.contains("does not use two-step verification"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn housekeeping_forgets_dead_sessions_old_failures_and_spent_codes() {
    each_world(WebConfig::default(), async |world: &World| {
        let mut bob = Browser::new(&world.router);
        bob.sign_in("bob@example.org", PASSWORD).await;
        bob.sign_in("nobody@example.org", "a wrong password, long").await;
        sync(|| world.app.request_password_reset("bob@example.org")).unwrap();
        let (_, code) = wait_for_resets(world, 1).await.remove(0);
        world.clock.advance(Duration::from_secs(31 * 24 * 3600));
        let mut ada = Browser::new(&world.router);
        ada.sign_in("ada@example.org", PASSWORD).await;
        let (sessions, failures, codes) = sync(|| world.app.forget_stale_sign_in_state()).unwrap();
        assert_eq!((sessions, failures, codes), (1, 1, 1), "bob's session, the failure and the expired code");
        assert!(ada.get("/").await.body.contains("Sign out"), "a live session stays");
        assert!(!sync(|| world.app.password_reset_usable(&code)).unwrap());
        assert_eq!(sync(|| world.app.forget_stale_sign_in_state()).unwrap(), (0, 0, 0));
    })
    .await;
}

/// Another organisation's coordinator invites a professional: the invitation waits on the
/// professional's home page (accepted with the page's token, refused without it or from
/// another site), and once they belong to two organisations neither coordinator is offered,
/// nor allowed, a reset of their account.
#[tokio::test(flavor = "multi_thread")]
async fn an_invitation_from_another_organisation_is_answered_on_the_home_page() {
    each_world(WebConfig::default(), async |world: &World| {
        let northgate = OrganisationCode::parse("NGT").unwrap();
        let card = TeamAlias::parse("card").unwrap();
        sync(|| {
            world
                .app
                .create_organisation(
                    &op(),
                    &NewOrganisation {
                        code: northgate.clone(),
                        name: name("Northgate Trust"),
                        break_glass_duration: None,
                    },
                )
                .unwrap();
            world
                .app
                .create_team(
                    &op(),
                    &northgate,
                    &name("Cardiology"),
                    &card,
                    LabelSet::from_labels([PrivacyLabel::General]),
                )
                .unwrap();
            let hash = kith_app::password::hash_password(&Secret::new(PASSWORD.into())).unwrap();
            world
                .app
                .add_member(
                    &op(),
                    &NewMember {
                        organisation: northgate.clone(),
                        team: card.clone(),
                        email: EmailAddress::parse("cara@example.org").unwrap(),
                        name: name("Cara Example"),
                        role: MembershipRole::Coordinator,
                        password_hash: Some(hash),
                    },
                )
                .unwrap();
        });
        let bob = sync(|| world.app.account_by_email(&EmailAddress::parse("bob@example.org").unwrap())).unwrap();

        let mut cara = Browser::new(&world.router);
        cara.sign_in("cara@example.org", PASSWORD).await;
        cara.get("/team/members").await;
        let invited = cara
            .post("/team/members/invite", &[("email", "bob@example.org"), ("given", "Bob"), ("family", "Example")])
            .await;
        assert!(invited.body.contains("bob@example.org: invited."), "{}", invited.body);
        assert!(invited.body.contains("invited: not accepted yet"), "{}", invited.body);
        assert!(!invited.body.contains(&format!("/team/members/{}/", bob.id)), "not a member: nothing to act on");

        let mut bob_browser = Browser::new(&world.router);
        bob_browser.sign_in("bob@example.org", PASSWORD).await;
        let home = bob_browser.get("/").await;
        assert!(home.body.contains("Invitations to join a team"), "{}", home.body);
        assert!(
            home.body.contains("<td>Cardiology</td><td>Northgate Trust</td><td>professional</td>"),
            "{}",
            home.body
        );
        assert!(!home.body.contains("Cardiology (professional)"), "not a member before accepting");
        let start = home.body.find("action=\"/account/invitations/").unwrap() + 8;
        let action = home.body[start..start + home.body[start..].find('"').unwrap()].to_owned();

        let forged = bob_browser.post(&action, &[("answer", "accept"), ("csrf", "forged")]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        let cross_site =
            bob_browser.post_with(&action, &[("answer", "accept")], &[("sec-fetch-site", "cross-site")]).await;
        assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
        bob_browser.get("/").await;
        let accepted = bob_browser.post(&action, &[("answer", "accept")]).await;
        assert_eq!(accepted.location.as_deref(), Some("/?done=invitation-accepted"));
        let home = bob_browser.get("/?done=invitation-accepted").await;
        assert!(
            home.body.contains("Cardiology (professional)") && !home.body.contains("Invitations to join"),
            "{}",
            home.body
        );
        let again = bob_browser.post(&action, &[("answer", "accept")]).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND, "answered already");

        // Bob now works for two organisations: neither coordinator is offered a reset, and
        // one asked for anyway is refused with what to do instead.
        let members = cara.get("/team/members").await;
        assert!(members.body.contains("Not only your organisation&#39;s account"), "{}", members.body);
        assert!(!members.body.contains(&format!("/team/members/{}/reset", bob.id)));
        let mut ada = Browser::new(&world.router);
        ada.sign_in("ada@example.org", PASSWORD).await;
        let members = ada.get("/team/members").await;
        assert!(!members.body.contains(&format!("/team/members/{}/reset", bob.id)), "{}", members.body);
        let refused = ada.post(&format!("/team/members/{}/reset", bob.id), &[]).await;
        assert!(refused.body.contains("ask the account holder"), "{}", refused.body);
    })
    .await;
}
