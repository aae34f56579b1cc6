//! The web application in real headless Chromium: `tests/python/browser_test.py` drives
//! Debian's Chromium through Playwright against a running `kith serve` that delivers its
//! email to a real SMTP server (`tests/python/smtp_sink.py`, aiosmtpd) started here.
//!
//! Every page the scenarios visit is also checked for accessibility with axe-core (vendored
//! in `tests/python/vendor/axe-core`) at a desktop and a phone width.
//!
//! Without Chromium or Playwright the test says so and passes, except under `CI=true`,
//! where it fails: CI must run the browser suite (`scripts/test` installs both).

mod common;

use common::chromium::*;
use common::*;
use kith_test_support::TestDatabase;

/// The distinct pages (and states of pages) the scenarios check for accessibility today: fewer
/// means a check was lost. Raise it when you add some.
const ACCESSIBILITY_CHECKED_AT_LEAST: usize = 29;

#[test]
fn the_web_application_in_chromium() {
    if let Err(missing) = browser_tools_present(&[]) {
        assert!(!in_ci(), "CI must run the browser tests, but {missing}");
        eprintln!("skipping the browser tests: {missing}");
        return;
    }
    let mail = tempfile::tempdir().unwrap();

    // A real SMTP server: it stores each message as a .eml file.
    let (_sink, smtp_port) = start_smtp_sink(mail.path());

    let database = TestDatabase::sqlite();
    let kith = Kith { database: &database };
    set_up_team(&kith);
    kith.add_member("mh", "coordinator@example.org", true);
    kith.add_member("mh", "second@example.org", false);

    let (_server, _, base_url) = serve_with_mail(&kith, smtp_port, &[]);

    // A patient whose record gets an email: the invitation is emailed (through the server's
    // outbox worker and the SMTP sink).
    kith.add_patient("Pat", "Example", "1985-03-27", "9434765919", &["--email", "pat@example.org", "--team", "mh"]);

    let stdout = run_browser_script(
        "browser_test.py",
        &base_url,
        mail.path(),
        &[
            "--professional",
            "coordinator@example.org",
            "--second-professional",
            "second@example.org",
            "--password",
            PASSWORD,
            "--patient",
            "pat@example.org",
            "--patient-birth-date",
            "1985-03-27",
        ],
    );
    for scenario in [
        "ok: the accessibility check reports violations on broken pages",
        "ok: sign-in and sign-out",
        "ok: two-step verification enrolment and sign-in",
        "ok: password reset by email",
        "ok: a patient registers from an emailed invitation and walks through their teams",
        "ok: a coordinator uploads a CSV with one bad row and sees the report",
        "all browser scenarios passed",
    ] {
        assert!(stdout.contains(scenario), "missing: {scenario}");
    }
    let checked: usize = stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("ok: accessibility checked on ")?.strip_suffix(" pages at desktop and phone widths")
        })
        .expect("the accessibility summary line")
        .parse()
        .unwrap();
    assert!(
        checked >= ACCESSIBILITY_CHECKED_AT_LEAST,
        "accessibility checked on {checked} pages, fewer than {ACCESSIBILITY_CHECKED_AT_LEAST}"
    );
}
