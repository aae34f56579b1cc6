//! The clinical workspace's whole story in real headless Chromium
//! (`tests/python/clinical_story.py`, Playwright against Debian's Chromium): a patient fed
//! by HL7 over MLLP (`mllp_send`, a real client) with results under all four labels; a
//! professional finds and adds them, reads what the patient's consent allows and writes a
//! note; the patient registers from the emailed invitation (a real SMTP server), sees
//! everything and takes mental health away from the team, which loses it at once; a
//! professional of another team breaks the glass; the patient sees that in the access log
//! and downloads it as CSV.
//!
//! Without Chromium, Playwright or mllp_send the test says so and passes, except under
//! `CI=true`, where it fails: CI must run the browser suite (`scripts/test` installs them).

mod common;

use std::process::Command;

use common::chromium::*;
use common::*;
use kith_test_support::TestDatabase;

fn tools_present() -> Result<(), String> {
    browser_tools_present(&["hl7"])?;
    if !Command::new("mllp_send").arg("--version").output().is_ok_and(|output| output.status.success()) {
        return Err("mllp_send (pip install hl7) is missing".into());
    }
    Ok(())
}

/// An HL7 v2.4 message from the PAS/lab feed (`\n` between segments, as `mllp_send --loose`
/// takes them).
fn message(kind: &str, control: &str, segments: &[&str]) -> String {
    format!("MSH|^~\\&|LAB|RXH-PAS|KITH|KITH|20261201090000||{kind}|{control}|P|2.4\n{}\n", segments.join("\n"))
}

const PID: &str = "PID|1||9434765870^^^NHS^NH~R4455667^^^RXH-MRN^MR||Lovelace^Ada||19800211|F|||||^NET^Internet^ada.story@example.org";

#[test]
fn the_clinical_story_in_chromium() {
    if let Err(missing) = tools_present() {
        assert!(!in_ci(), "CI must run the browser tests, but {missing}");
        eprintln!("skipping the clinical browser story: {missing}");
        return;
    }
    let mail = tempfile::tempdir().unwrap();
    let (_sink, smtp_port) = start_smtp_sink(mail.path());

    // RXH with its PAS feed, team mh (general, mental health: live, professional pro@) and
    // team ed (Emergency Department, general: live, professional ed@); results labelled by
    // OBR-4.
    let database = TestDatabase::sqlite();
    let kith = Kith { database: &database };
    set_up_feed(&kith);
    kith.create_team("Emergency Department", "ed", "general");
    for team in ["mh", "ed"] {
        kith.add_member(team, &format!("{team}-c1@example.org"), true);
        kith.add_member(team, &format!("{team}-c2@example.org"), true);
        kith.ok(&["team", "go-live", "--org", "RXH", "--team", team]);
    }
    kith.add_member("ed", "ed@example.org", false);
    for (code, label) in [("CHLAM", "sexual_health"), ("PHQ9", "mental_health"), ("CARE", "social_care")] {
        kith.ok(&["label-rule", "add", "--org", "RXH", "--field", "OBR-4", "--value", code, "--label", label]);
    }

    let (_server, listening, base_url) = serve_with_mail(&kith, smtp_port, &["--mllp-listen", "127.0.0.1:0"]);

    // The feed: the patient, then a result under each label.
    let messages = [
        message("ADT^A28^ADT_A05", "STORY1", &["EVN|A28", PID]),
        message(
            "ORU^R01^ORU_R01",
            "STORY2",
            &[
                PID,
                "OBR|1|O1|F1|FBC^Full blood count^L|||20261201080000",
                "OBX|1|NM|HB^Haemoglobin^L||98|g/L|115-165|L|||F",
            ],
        ),
        // The laboratory corrects the haemoglobin: a second version of the same result.
        message(
            "ORU^R01^ORU_R01",
            "STORY2C",
            &[
                PID,
                "OBR|1|O1|F1|FBC^Full blood count^L|||20261201080000",
                "OBX|1|NM|HB^Haemoglobin^L||101|g/L|115-165|L|||C",
            ],
        ),
        message(
            "ORU^R01^ORU_R01",
            "STORY3",
            &[
                PID,
                "OBR|1|O2|F2|CHLAM^Chlamydia screen^L|||20261201080100",
                "OBX|1|ST|CT^Chlamydia^L||Not detected||||||F",
            ],
        ),
        message(
            "ORU^R01^ORU_R01",
            "STORY4",
            &[
                PID,
                "OBR|1|O3|F3|PHQ9^Depression questionnaire^L|||20261201080200",
                "OBX|1|NM|PHQ^PHQ-9 score^L||14||0-4|H|||F",
            ],
        ),
        message(
            "ORU^R01^ORU_R01",
            "STORY5",
            &[
                PID,
                "OBR|1|O4|F4|CARE^Care needs assessment^L|||20261201080300",
                "OBX|1|ST|CN^Care needs^L||Help at home daily||||||F",
            ],
        ),
    ];
    let feed = tempfile::tempdir().unwrap();
    let file = feed.path().join("story.hl7");
    std::fs::write(&file, messages.concat()).unwrap();
    let mllp = listening.mllp.expect("the MLLP listener started");
    let (host, port) = mllp.rsplit_once(':').unwrap();
    let sent = Command::new("mllp_send").args(["--loose", "-f"]).arg(&file).args(["-p", port, host]).output().unwrap();
    let acks = String::from_utf8_lossy(&sent.stdout);
    assert!(sent.status.success(), "mllp_send failed: {}", String::from_utf8_lossy(&sent.stderr));
    assert_eq!(acks.matches("MSA|AA|").count(), 6, "every message accepted: {acks}");

    // The feed gave the record an email address: Kith invited the patient by email.
    let args = ["--professional", "pro@example.org", "--emergency", "ed@example.org", "--password", PASSWORD];
    let stdout = run_browser_script(
        "clinical_story.py",
        &base_url,
        mail.path(),
        &[&args[..], &["--patient", "ada.story@example.org"]].concat(),
    );
    for step in [
        "ok: a wrong date of birth and an unknown number get the same answer",
        "ok: the professional adds the patient and sees only the consented labels",
        "ok: the professional writes a note",
        "ok: the professional uploads a PDF",
        "ok: the patient registers and sees everything",
        "ok: the patient takes mental health away and the team loses it at once",
        "ok: another team breaks the glass, with the banner",
        "ok: the patient sees the emergency access and its reason, and downloads the log",
        "the clinical story passed",
    ] {
        assert!(stdout.contains(step), "missing: {step}");
    }
    // Every page of the workspace, checked by axe-core at desktop and phone widths.
    let checked: usize = stdout
        .lines()
        .find_map(|line| line.strip_prefix("ok: accessibility checked on ")?.split(' ').next()?.parse().ok())
        .expect("the accessibility summary line");
    assert!(checked >= 18, "accessibility checked on {checked} pages only");
}
