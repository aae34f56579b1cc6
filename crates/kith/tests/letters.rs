//! `kith patient invite --channel letter` and `kith letters export`: one PDF page per
//! pending letter invitation, with the name, address, both codes and their expiry, never
//! the date of birth; read back with an independent PDF reader (pypdf). On both databases.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use kith_test_support::TestDatabase;
use serde_json::Value;

fn pdf_pages(path: &Path) -> Option<Vec<String>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/pdf_text.py");
    let output = Command::new("python3").arg(script).arg(path).output().expect("python3 runs");
    if !output.status.success() {
        let error = String::from_utf8_lossy(&output.stderr);
        if error.contains("No module named 'pypdf'") && !matches!(std::env::var("CI").as_deref(), Ok("true" | "1")) {
            eprintln!("skipping the independent PDF check: pypdf is missing (tests/python/requirements.txt)");
            return None;
        }
        panic!("pypdf could not read the letters: {error}");
    }
    let pages: Value = serde_json::from_slice(&output.stdout).unwrap();
    Some(pages.as_array().unwrap().iter().map(|page| page.as_str().unwrap().to_owned()).collect())
}

fn letters(database: &TestDatabase) {
    let kith = Kith { database };
    kith.ok(&["org", "create", "--name", "Riverside Hospitals", "--code", "RXH"]);
    let patients = [
        ("Ada", "Lovelace", "9434765919", "1815-12-10", vec!["12 St James's Square", "London", "SW1Y 4JH"]),
        ("Zoë", "O'Brien", "9999999468", "1990-04-15", vec!["Flat 2", "3 River Road", "Riverside", "RV1 2AB"]),
    ];
    for (given, family, nhs, birth, address) in &patients {
        let extra: Vec<&str> = address.iter().flat_map(|line| ["--address", line]).collect();
        kith.add_patient(given, family, birth, nhs, &extra);
        let invited = kith.ok(&["patient", "invite", "--org", "RXH", "--nhs-number", nhs]);
        assert_eq!(invited["channel"], "letter", "only an address: a letter");
    }
    // Only a mobile number: the invitation goes by SMS.
    kith.add_patient("Mo", "Mobile", "1970-01-01", "4010232137", &["--mobile", "07700 900123"]);
    let by_sms = kith.ok(&["patient", "invite", "--org", "RXH", "--nhs-number", "4010232137"]);
    assert_eq!(by_sms["channel"], "sms");
    // A third patient without an address cannot be sent a letter.
    kith.add_patient("Ann", "None", "2000-01-01", "9876543210", &[]);
    let refused =
        kith.fails(&["patient", "invite", "--org", "RXH", "--nhs-number", "9876543210", "--channel", "letter"]);
    assert!(refused.contains("no postal address"), "{refused}");
    // Inviting Ada again replaces her first letter: only the newest is printed.
    kith.ok(&["patient", "invite", "--org", "RXH", "--nhs-number", "9434765919", "--channel", "letter"]);

    let directory = tempfile::tempdir().unwrap();
    let out = directory.path().join("letters.pdf");
    let exported = kith.ok(&[
        "letters",
        "export",
        "--org",
        "RXH",
        "--out",
        out.to_str().unwrap(),
        "--public-url",
        "https://kith.example",
    ]);
    assert_eq!(exported["letters"], 2, "Ada's newer invitation and Zoë's");
    let bytes = std::fs::read(&out).unwrap();
    assert!(bytes.starts_with(b"%PDF-1.4"));
    if let Some(pages) = pdf_pages(&out) {
        assert_eq!(pages.len(), 2, "one page per pending letter");
        for page in &pages {
            assert!(page.contains("Riverside Hospitals") && page.contains("https://kith.example/register"), "{page}");
            assert!(page.contains("Invitation code:") && page.contains("Activation code:"), "{page}");
            assert!(page.contains("These codes work once, until"), "{page}");
            for (_, _, _, birth, _) in &patients {
                assert!(!page.contains(birth) && !page.contains(&birth[..4]), "never the date of birth: {page}");
            }
        }
        let zoe = pages.iter().find(|page| page.contains("O'Brien")).expect("Zoë's letter");
        assert!(zoe.contains("Zoë") && zoe.contains("3 River Road") && zoe.contains("RV1 2AB"), "{zoe}");
    }
    // The file holds invitation codes: its owner's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // A second export to the same file is refused (it would overwrite letters not yet
    // printed) and the first file is untouched; a symbolic link is never written through.
    let refused = kith.fails(&["letters", "export", "--org", "RXH", "--out", out.to_str().unwrap()]);
    assert!(refused.contains("exists already (give --force to replace it)"), "{refused}");
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    #[cfg(unix)]
    {
        let target = directory.path().join("not-the-letters");
        std::fs::write(&target, b"untouched").unwrap();
        let link = directory.path().join("link.pdf");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        kith.fails(&["letters", "export", "--org", "RXH", "--out", link.to_str().unwrap()]);
        assert_eq!(std::fs::read(&target).unwrap(), b"untouched");
    }
    // Printed letters are delivered: a second export (replacing the file, as asked) is
    // empty, and their codes are gone.
    let again = kith.ok(&["letters", "export", "--org", "RXH", "--out", out.to_str().unwrap(), "--force"]);
    assert_eq!(again["letters"], 0);
    let outbox = kith.ok(&["outbox", "list"]);
    let letters: Vec<&Value> =
        outbox["messages"].as_array().unwrap().iter().filter(|message| message["channel"] == "letter").collect();
    let mut statuses: Vec<&str> = letters.iter().map(|message| message["status"].as_str().unwrap()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, ["dead", "sent", "sent"], "the replaced letter is never printed");
    let sms: Vec<&Value> = outbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["channel"] == "sms" && message["template"] == "patient_invitation")
        .collect();
    assert_eq!(sms.len(), 1, "{outbox}");
    assert!(!outbox.to_string().contains("07700") && !outbox.to_string().contains("900123"), "numbers are masked");
}

#[test]
fn letters_export_on_sqlite() {
    letters(&TestDatabase::sqlite());
}

#[test]
fn letters_export_on_postgres() {
    let Some(database) = TestDatabase::postgres() else { return };
    letters(&database);
}
