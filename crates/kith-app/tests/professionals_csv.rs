//! Professionals in bulk from a CSV file, on both backends: per-row outcomes and line numbers
//! for a file with every kind of row; nothing from an invalid row in the database; the
//! preview writes nothing; the same file twice changes nothing; the emails and activation
//! codes; who may import; and file-level problems that apply nothing.

mod support;

use kith_app::professionals_csv::{CsvReport, Importer, MAX_ROWS, RowOutcome};
use kith_app::*;
use kith_core::audit::ChainedEvent;
use kith_core::team::{AccountStatus, MembershipRole, MembershipStatus};
use kith_core::text::EmailAddress;
use kith_store::professionals::OnboardingCounts;
use kith_store::{CodePurpose, OutboxRow, StoreError};
use kith_test_support::{TestDatabase, on_each_engine};
use support::*;

fn counts(world: &World) -> OnboardingCounts {
    world.app.store().read(|tx| tx.onboarding_counts()).unwrap()
}

fn outbox(world: &World) -> Vec<OutboxRow> {
    world.app.store().read(|tx| tx.outbox(10_000)).unwrap()
}

fn events_after(world: &World, seq: i64) -> Vec<ChainedEvent> {
    world.app.store().read(|tx| tx.audit_events_after(seq, 10_000)).unwrap()
}

fn audit_seq(world: &World) -> i64 {
    world.app.store().read(|tx| tx.audit_head().map(|(seq, _)| seq)).unwrap()
}

fn import(world: &World, team: &str, bytes: &[u8]) -> CsvReport {
    world.app.import_professionals_csv(&Importer::Operator(&operator()), &code(), &alias(team), bytes).unwrap()
}

fn preview(world: &World, team: &str, bytes: &[u8]) -> CsvReport {
    world.app.preview_professionals_csv(&Importer::Operator(&operator()), &code(), &alias(team), bytes).unwrap()
}

fn outcomes(report: &CsvReport) -> Vec<(usize, &str, &str)> {
    report.rows.iter().map(|row| (row.line, row.email.as_str(), row.outcome.code())).collect()
}

fn reason(report: &CsvReport, line: usize) -> String {
    let row = report.rows.iter().find(|row| row.line == line).unwrap_or_else(|| panic!("no row on line {line}"));
    match &row.outcome {
        RowOutcome::Error(reasons) => reasons.join("; "),
        other => panic!("line {line} is {other:?}, not an error"),
    }
}

fn account(world: &World, address: &str) -> Option<kith_core::model::Account> {
    let address = EmailAddress::parse(address).unwrap();
    world.app.store().read(|tx| tx.account_by_email(&address)).unwrap()
}

fn membership(world: &World, address: &str, team: &str) -> Option<kith_core::model::Membership> {
    let account = account(world, address)?;
    world
        .app
        .store()
        .read(|tx| -> Result<_, StoreError> {
            let organisation = tx.organisation_by_code(&code())?.unwrap();
            let team = tx.team_by_alias(organisation.id, &alias(team))?.unwrap();
            tx.membership(account.id, team.id)
        })
        .unwrap()
}

/// Every kind of row, with a byte order mark, CRLF line ends, odd header spellings, quoted
/// fields with commas, doubled quotes and a line break, and a blank line.
const MIXED: &str = concat!(
    "\u{feff}E-Mail,Given_Name,FAMILY NAME,jobtitle,Professional-Registration-Number,Role\r\n",
    "new1@example.org,Ada,Okafor,Staff Nurse,NMC 12A3456E,\r\n", // 2 created
    "new2@example.org,\"Bo \"\"Bobby\"\"\",\"Smith, Jr\",\"Consultant, Psychiatry\",GMC 1234567,Coordinator\r\n", // 3 created
    "gum@example.org,Gus,Um,,,professional\r\n",      // 4 added to team
    "pro@example.org,Pro,Fessional,,,\r\n",           // 5 already in team
    "old@example.org,Old,Timer,,,\r\n",               // 6 already in team (deactivated)
    "not an email,Al,Bad,,,\r\n",                     // 7 error
    "x1@example.org,Xa,,,,\r\n",                      // 8 error: family name missing
    "x2@example.org,Xb,Yu,,,admin\r\n",               // 9 error: role
    "x3@example.org,Xc,Yu,JOB_TITLE_TOO_LONG,,\r\n",  // 10 error: job title
    "x4@example.org,Xd,Yu,,GMC#1,\r\n",               // 11 error: registration number
    "patient@example.org,Pat,Ient,,,\r\n",            // 12 error: a patient's account
    "unregistered@example.org,Un,Reg,,,\r\n",         // 13 error: on a patient's record
    "NEW1@example.org,Ada,Again,,,\r\n",              // 14 error: duplicate of line 2
    "x5@example.org,Xe,Yu,\"Ward\r\nManager\",,\r\n", // 15-16 error: line break in a job title
    "new4@example.org,Di,Lee,,,\r\n",                 // 17 created
    "\r\n",                                           // 18 blank
    "new5@example.org,Eve,Ng,,,",                     // 19 created, no line end
);

fn mixed_file() -> Vec<u8> {
    MIXED.replace("JOB_TITLE_TOO_LONG", &"j".repeat(201)).into_bytes()
}

const ERROR_EMAILS: [&str; 6] = [
    "x1@example.org",
    "x2@example.org",
    "x3@example.org",
    "x4@example.org",
    "x5@example.org",
    "unregistered@example.org",
];

/// The world plus: a deactivated member `old@` of mh, the world's patient registered as
/// patient@, and an unregistered patient whose record has the address unregistered@.
fn prepare(world: &World) {
    world.add_member("mh", "old@example.org", MembershipRole::Professional);
    world.deactivate_member("mh", "old@example.org");
    world.add_patient_addresses();
}

const EXPECTED: [(usize, &str, &str); 16] = [
    (2, "new1@example.org", "created"),
    (3, "new2@example.org", "created"),
    (4, "gum@example.org", "added_to_team"),
    (5, "pro@example.org", "already_in_team"),
    (6, "old@example.org", "already_in_team_deactivated"),
    (7, "not an email", "error"),
    (8, "x1@example.org", "error"),
    (9, "x2@example.org", "error"),
    (10, "x3@example.org", "error"),
    (11, "x4@example.org", "error"),
    (12, "patient@example.org", "error"),
    (13, "unregistered@example.org", "error"),
    (14, "NEW1@example.org", "error"),
    (15, "x5@example.org", "error"),
    (17, "new4@example.org", "created"),
    (19, "new5@example.org", "created"),
];

fn expected() -> Vec<(usize, &'static str, &'static str)> {
    EXPECTED.to_vec()
}

on_each_engine!(professionals_from_a_mixed_file_are_previewed_then_applied_row_by_row);
fn professionals_from_a_mixed_file_are_previewed_then_applied_row_by_row(database: TestDatabase) {
    let world = world(database);
    prepare(&world);
    let file = mixed_file();
    let before = counts(&world);
    let outbox_before = outbox(&world).len();
    let seq_before = audit_seq(&world);

    // The preview says what each row would do, and writes nothing.
    let previewed = preview(&world, "mh", &file);
    assert!(previewed.is_usable() && !previewed.applied);
    assert_eq!(outcomes(&previewed), expected());
    assert_eq!(previewed.summary(), "would create 4, would add to team 1, already in team 2, errors 9");
    assert_eq!(counts(&world), OnboardingCounts { audit_events: before.audit_events + 1, ..before });
    let preview_event = events_after(&world, seq_before).pop().unwrap();
    assert_eq!(preview_event.record.action, "professionals.preview", "a preview is audited");
    assert!(preview_event.record.reason.as_deref().unwrap().starts_with("rows=16 file_sha256="));
    let seq_before = audit_seq(&world);
    let before = counts(&world);

    let report = import(&world, "mh", &file);
    assert!(report.applied);
    assert_eq!(outcomes(&report), expected());
    assert_eq!(report.summary(), "created 4, added to team 1, already in team 2, errors 9");
    assert_eq!(
        report.rows.iter().map(|row| &row.outcome).collect::<Vec<_>>(),
        previewed.rows.iter().map(|row| &row.outcome).collect::<Vec<_>>()
    );

    // Each error says what is wrong.
    assert!(
        reason(&report, 7).starts_with("email: \"not an email\" is not an email address"),
        "{}",
        reason(&report, 7)
    );
    assert_eq!(reason(&report, 8), "family name: missing");
    assert!(reason(&report, 9).starts_with("role: \"admin\" must be professional or coordinator"));
    assert_eq!(reason(&report, 10), "job title: must be at most 200 characters");
    assert!(reason(&report, 11).contains("only letters, digits, spaces and hyphens"));
    assert!(reason(&report, 12).contains("patient"), "{}", reason(&report, 12));
    assert!(reason(&report, 13).contains("patient"), "{}", reason(&report, 13));
    assert_eq!(reason(&report, 14), "email: new1@example.org is also on line 2 (one row per person)");
    assert!(reason(&report, 15).contains("job title"), "{}", reason(&report, 15));

    // New accounts are invited, without a password, named from the two name columns.
    let new2 = account(&world, "new2@example.org").unwrap();
    assert_eq!((new2.name.as_str(), new2.status), ("Bo \"Bobby\" Smith, Jr", AccountStatus::Invited));
    assert_eq!(world.app.store().read(|tx| tx.password_hash(new2.id)).unwrap(), None);
    for (address, role) in [
        ("new1@example.org", MembershipRole::Professional),
        ("new2@example.org", MembershipRole::Coordinator),
        ("gum@example.org", MembershipRole::Professional),
        ("new4@example.org", MembershipRole::Professional),
        ("new5@example.org", MembershipRole::Professional),
    ] {
        let membership = membership(&world, address, "mh").unwrap_or_else(|| panic!("{address} joined mh"));
        assert_eq!((membership.role, membership.status), (role, MembershipStatus::Active), "{address}");
    }
    assert_eq!(account(&world, "new1@example.org").unwrap().name.as_str(), "Ada Okafor");
    // Unchanged: the deactivated member stays deactivated; the patient gets no membership.
    assert_eq!(membership(&world, "old@example.org", "mh").unwrap().status, MembershipStatus::Deactivated);
    assert_eq!(membership(&world, "patient@example.org", "mh"), None);

    // Nothing from an invalid row: no account, no membership, no message, no event.
    for address in ERROR_EMAILS {
        assert_eq!(account(&world, address), None, "{address}");
    }
    let after = counts(&world);
    assert_eq!(after.accounts - before.accounts, 4);
    assert_eq!(after.memberships - before.memberships, 5);
    assert_eq!(after.one_time_codes - before.one_time_codes, 4);
    assert_eq!(after.outbox - before.outbox, 5);
    let messages = outbox(&world);
    let new_messages = &messages[outbox_before..];
    let mut recipients: Vec<(&str, &str)> =
        new_messages.iter().map(|row| (row.message.recipient.as_str(), row.message.template.as_str())).collect();
    recipients.sort();
    assert_eq!(
        recipients,
        [
            ("gum@example.org", "professional_added"),
            ("new1@example.org", "professional_activation"),
            ("new2@example.org", "professional_activation"),
            ("new4@example.org", "professional_activation"),
            ("new5@example.org", "professional_activation"),
        ]
    );
    let events = events_after(&world, seq_before);
    assert_eq!(events.len(), 9, "4 accounts and 5 memberships");
    assert_eq!(events.iter().filter(|e| e.record.action == "account.create").count(), 4);
    assert_eq!(events.iter().filter(|e| e.record.action == "membership.add").count(), 5);
    let subjects: Vec<String> = events.iter().filter_map(|e| e.record.subject.clone()).collect();
    for address in ["new1@example.org", "new2@example.org", "gum@example.org", "new4@example.org", "new5@example.org"] {
        assert!(subjects.contains(&account(&world, address).unwrap().id.to_string()), "{address}");
    }
    let coordinator_event = events
        .iter()
        .find(|e| e.record.action == "membership.add" && e.record.subject == Some(new2.id.to_string()))
        .unwrap();
    assert_eq!(coordinator_event.record.reason.as_deref(), Some("role=coordinator source=csv line=3"));
    assert!(
        events.iter().all(|e| e.record.channel == "cli" && e.record.actor_name.as_deref() == Some("test-operator"))
    );
    assert!(matches!(world.app.verify_audit().unwrap(), AuditVerification::Intact { .. }));
}

on_each_engine!(professionals_from_the_same_file_twice_change_nothing_the_second_time);
fn professionals_from_the_same_file_twice_change_nothing_the_second_time(database: TestDatabase) {
    let world = world(database);
    prepare(&world);
    let file = mixed_file();
    import(&world, "mh", &file);
    let before = counts(&world);
    let again = import(&world, "mh", &file);
    assert_eq!(counts(&world), before);
    assert_eq!(again.summary(), "created 0, added to team 0, already in team 7, errors 9");
    for (line, address, code) in expected() {
        let row = again.rows.iter().find(|row| row.line == line).unwrap();
        let now = if code == "error" || code == "already_in_team_deactivated" { code } else { "already_in_team" };
        assert_eq!((row.email.as_str(), row.outcome.code()), (address, now), "line {line}");
    }
    let coordinator = again.rows.iter().find(|row| row.line == 3).unwrap();
    assert_eq!(
        coordinator.outcome,
        RowOutcome::AlreadyInTeam { role: MembershipRole::Coordinator, deactivated: false }
    );
}

on_each_engine!(new_professionals_get_an_activation_code_and_known_ones_a_notice);
fn new_professionals_get_an_activation_code_and_known_ones_a_notice(database: TestDatabase) {
    let world = world(database);
    let file = b"email,given name,family name\nfresh@example.org,Fay,Resh\ngum@example.org,Gus,Um\n";
    let seq = audit_seq(&world);
    let report = import(&world, "mh", file);
    assert_eq!(report.summary(), "created 1, added to team 1, already in team 0, errors 0");
    let fresh = account(&world, "fresh@example.org").unwrap();
    let gum = account(&world, "gum@example.org").unwrap();
    let messages = outbox(&world);
    let activation = messages.iter().find(|row| row.message.recipient == "fresh@example.org").unwrap();
    assert_eq!(
        (activation.message.channel, activation.message.template.as_str()),
        ("email", "professional_activation")
    );
    let expires = START.plus(professionals_csv::ACTIVATION_CODE_LIFETIME);
    let payload: serde_json::Value = serde_json::from_str(&activation.message.payload).unwrap();
    assert_eq!(
        payload,
        serde_json::json!({ "account": fresh.id.to_string(), "team": "Mental Health", "expires": expires.date().to_string() })
    );
    let secret = activation.message.secret.clone().expect("the activation code travels with the message");
    let code = world.app.store().read(|tx| tx.code(&token_hash(&secret))).unwrap().expect("the code's hash is kept");
    assert_eq!(
        (code.purpose, code.account, code.patient, code.created_at, code.expires_at, code.used_at),
        (CodePurpose::ProfessionalActivation, Some(fresh.id), None, START, expires, None)
    );

    let notice = messages.iter().find(|row| row.message.recipient == "gum@example.org").unwrap();
    assert_eq!((notice.message.template.as_str(), notice.message.secret.as_deref()), ("professional_added", None));
    let payload: serde_json::Value = serde_json::from_str(&notice.message.payload).unwrap();
    assert_eq!(payload, serde_json::json!({ "account": gum.id.to_string(), "team": "Mental Health" }));
    // The existing account is untouched apart from its new membership.
    assert_eq!((gum.name.as_str(), gum.status), ("gum", AccountStatus::Active));
    assert_eq!(events_after(&world, seq).len(), 3);
}

on_each_engine!(only_active_coordinators_of_the_team_may_import_professionals_through_the_web);
fn only_active_coordinators_of_the_team_may_import_professionals_through_the_web(database: TestDatabase) {
    let world = world(database);
    let file = b"email,given name,family name\nweb@example.org,Web,Added\n";
    let other = world.add_member("gum", "gc@example.org", MembershipRole::Coordinator);
    let pro = world.app.account_by_email(&email("pro@example.org")).unwrap();
    let before = counts(&world);
    for refused in [other.account.id, pro.id] {
        for result in [
            world.app.preview_professionals_csv(&Importer::Coordinator(refused), &code(), &alias("mh"), file),
            world.app.import_professionals_csv(&Importer::Coordinator(refused), &code(), &alias("mh"), file),
        ] {
            let error = result.unwrap_err();
            assert!(matches!(error, AppError::Forbidden(_)), "{error}");
            assert!(error.to_string().contains("coordinators of team mh"), "{error}");
        }
    }
    let after = counts(&world);
    assert_eq!(OnboardingCounts { audit_events: before.audit_events, ..after }, before, "only the refusals");
    assert_eq!(after.audit_events - before.audit_events, 4, "each refusal is audited");
    let refusal = events_after(&world, 0).into_iter().last().unwrap();
    assert_eq!(
        (refusal.record.action.as_str(), refusal.record.outcome.as_str(), refusal.record.channel.as_str()),
        ("professionals.import", "denied", "web")
    );

    // A coordinator of the team may, through the web; the events name them.
    let coordinator = world.app.account_by_email(&email("c1@example.org")).unwrap();
    let seq = audit_seq(&world);
    let report = world
        .app
        .import_professionals_csv(&Importer::Coordinator(coordinator.id), &code(), &alias("mh"), file)
        .unwrap();
    // A new address is invited: an invited account, which joins when activated.
    assert_eq!(report.summary(), "invited 1, added to team 0, already in team 0, already invited 0, errors 0");
    let events = events_after(&world, seq);
    assert_eq!(
        events.iter().map(|e| e.record.action.as_str()).collect::<Vec<_>>(),
        ["account.create", "membership.invite"]
    );
    assert!(events.iter().all(|e| e.record.channel == "web" && e.record.actor_account == Some(coordinator.id)));

    // Unknown organisations and teams are named.
    let missing = world.app.preview_professionals_csv(&Importer::Operator(&operator()), &code(), &alias("nope"), file);
    assert!(matches!(missing, Err(AppError::NotFound(_))));
}

on_each_engine!(a_professionals_file_with_file_level_problems_applies_nothing);
fn a_professionals_file_with_file_level_problems_applies_nothing(database: TestDatabase) {
    let world = world(database);
    let before = counts(&world);
    let header_problems = import(&world, "mh", b"email,given name,department\nok@example.org,Ok,Cardiology\n");
    assert!(!header_problems.is_usable() && !header_problems.applied && header_problems.rows.is_empty());
    let messages: Vec<String> = header_problems.file_problems.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].starts_with("line 1: unknown column \"department\""), "{messages:?}");
    assert!(messages[1].starts_with("line 1: missing required column family name"), "{messages:?}");

    let mut long = String::from("email,given name,family name\n");
    for n in 0..=MAX_ROWS {
        long.push_str(&format!("p{n}@example.org,Pat,Lee\n"));
    }
    let too_long = import(&world, "mh", long.as_bytes());
    assert_eq!(too_long.file_problems.len(), 1);
    assert!(too_long.file_problems[0].message.starts_with("the file has more than 50,000 rows"));

    let not_utf8 = import(&world, "mh", b"email,given name,family name\nok@example.org,Jos\xe9,Lee\n");
    assert_eq!(not_utf8.file_problems[0].line, Some(2));

    let unclosed = preview(&world, "mh", b"email,given name,family name\nok@example.org,\"Jo,Lee\n");
    assert_eq!(
        unclosed.file_problems[0].to_string(),
        "line 2: a quoted field starts on this line and its closing quote (\") is missing"
    );

    // Nothing but the preview's audit event.
    assert_eq!(counts(&world), OnboardingCounts { audit_events: before.audit_events + 1, ..before });
    assert_eq!(account(&world, "ok@example.org"), None);
    assert_eq!(account(&world, "p0@example.org"), None);
}

on_each_engine!(the_documented_professionals_template_imports_cleanly);
fn the_documented_professionals_template_imports_cleanly(database: TestDatabase) {
    let world = world(database);
    let template = include_bytes!("../../../docs/professionals-template.csv");
    let report = preview(&world, "mh", template);
    assert_eq!(report.summary(), "would create 2, would add to team 0, already in team 0, errors 0");
    assert_eq!(report.rows[1].role, Some(MembershipRole::Coordinator));
}
