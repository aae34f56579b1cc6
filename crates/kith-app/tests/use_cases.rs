//! The use cases on both backends: team rules, the access rule end to end, break glass,
//! consent, the patient's own view and access log, lock-down, bad input, and the audit chain.

mod support;

use std::time::Duration;

use kith_app::*;
use kith_core::audit::{ChainBreak, Channel};
use kith_core::consent::ConsentRefusal;
use kith_core::patient::{EntryKind, NhsNumber};
use kith_core::team::{MembershipRole, MembershipStatus, TeamRuleViolation};
use kith_core::text::{Name, Reason, Title};
use kith_core::{Basis, LabelSet, PrivacyLabel};
use kith_test_support::{TestDatabase, on_each_engine};
use support::*;

fn audit_actions(world: &World) -> Vec<(String, String, Option<String>, Option<String>)> {
    world
        .app
        .audit_events(Some(world.patient.id), 1000)
        .unwrap()
        .into_iter()
        .map(|event| (event.record.action, event.record.outcome, event.record.basis, event.record.reason))
        .collect()
}

on_each_engine!(a_live_team_keeps_two_coordinators);
fn a_live_team_keeps_two_coordinators(database: TestDatabase) {
    let world = world(database);
    let op = operator();
    // Go-live: refused with one coordinator, accepted with two.
    world.add_member("gum", "g1@example.org", MembershipRole::Coordinator);
    let refused = world.app.go_live(&op, &code(), &alias("gum")).unwrap_err();
    assert!(
        matches!(refused, AppError::TeamRule(TeamRuleViolation::TooFewCoordinatorsToGoLive { active: 1, .. })),
        "{refused}"
    );
    assert!(refused.to_string().contains("Appoint another coordinator first"));
    world.add_member("gum", "g2@example.org", MembershipRole::Coordinator);
    world.app.go_live(&op, &code(), &alias("gum")).unwrap();
    let deactivate_in_mh = |address: &str, force: bool| {
        world.app.set_membership_status(
            &op,
            &code(),
            &alias("mh"),
            &email(address),
            MembershipStatus::Deactivated,
            force,
        )
    };

    // Deactivating or demoting one of the last two is refused with what to do instead.
    let refused = deactivate_in_mh("c1@example.org", false).unwrap_err();
    assert!(refused.to_string().contains("Appoint another coordinator first"), "{refused}");
    let refused = world
        .app
        .set_membership_role(&op, &code(), &alias("mh"), &email("c1@example.org"), MembershipRole::Professional, false)
        .unwrap_err();
    assert!(matches!(
        refused,
        AppError::TeamRule(TeamRuleViolation::WouldDropBelowMinimumCoordinators { remaining: 1 })
    ));

    // With a third coordinator it is allowed; the operator may force it, audited.
    world.add_member("mh", "c3@example.org", MembershipRole::Coordinator);
    let change = deactivate_in_mh("c1@example.org", false).unwrap();
    assert_eq!(change.overridden, None);
    let forced = deactivate_in_mh("c2@example.org", true).unwrap();
    assert!(forced.overridden.is_some());
    let events = world.app.audit_events(None, 1000).unwrap();
    let last = events.last().unwrap();
    assert_eq!((last.record.action.as_str(), last.record.outcome.as_str()), ("membership.deactivate", "overridden"));
    assert!(last.record.reason.as_deref().unwrap().contains("forced by the operator"));

    // Deactivation is per team: the same person's other membership is untouched.
    world.add_member("gum", "c1@example.org", MembershipRole::Professional);
    let teams = world.app.teams_with_members(&code()).unwrap();
    let gum = teams.iter().find(|(team, _)| team.alias.as_str() == "gum").unwrap();
    assert!(gum.1.iter().any(|(m, a)| a.email.as_str() == "c1@example.org" && m.status == MembershipStatus::Active));

    // Nothing to change is said plainly.
    let again = deactivate_in_mh("c1@example.org", false).unwrap_err();
    assert!(matches!(again, AppError::Conflict(_)), "{again}");
}

on_each_engine!(professionals_see_what_the_rule_allows_and_every_read_is_audited);
fn professionals_see_what_the_rule_allows_and_every_read_is_audited(database: TestDatabase) {
    let world = world(database);
    let pro = world.context("mh", "pro@example.org");
    let view = world.app.read_record(&pro, world.patient.id).unwrap();
    assert_eq!(labels_seen(&view), vec![PrivacyLabel::General, PrivacyLabel::MentalHealth]);
    assert!(view.entries.iter().all(|visible| visible.basis == Basis::Consent { team: pro.team }));
    assert!(view.some_hidden);
    assert_eq!(view.patient.demographics.given_name.as_str(), "Ngozi");

    // A professional of a team the patient is not in sees nothing, and the attempt is
    // audited with the precise reason while the answer stays generic.
    let stranger = world.context("gum", "gum@example.org");
    let denied = world.app.read_record(&stranger, world.patient.id).unwrap_err();
    assert!(matches!(denied, AppError::Denied));
    assert_eq!(denied.to_string(), "not found or not permitted");

    // A coordinator has no clinical access.
    let coordinator = world.context("mh", "c1@example.org");
    assert!(matches!(world.app.read_record(&coordinator, world.patient.id), Err(AppError::Denied)));

    let actions = audit_actions(&world);
    let reads: Vec<_> = actions.iter().filter(|(action, ..)| action == "record.read").collect();
    assert_eq!(reads.len(), 3);
    assert_eq!(reads[0].1, "allowed");
    assert_eq!(reads[0].2.as_deref(), Some("consent"));
    assert_eq!(reads[1].1, "denied");
    assert_eq!(reads[1].3.as_deref(), Some("no active care link, authored data or break-glass grant for the patient"));
    assert_eq!(reads[2].3.as_deref(), Some("coordinator membership grants no clinical access"));
}

on_each_engine!(breaking_the_glass_shows_everything_until_it_expires);
fn breaking_the_glass_shows_everything_until_it_expires(database: TestDatabase) {
    let world = world(database);
    let stranger = world.context("gum", "gum@example.org");
    let reason = Reason::parse("Unconscious in the emergency department").unwrap();
    let grant = world.app.open_break_glass(&stranger, world.patient.id, &reason).unwrap();
    assert_eq!(grant.expires_at, START.plus(Duration::from_secs(4 * 3600)), "the default is four hours");
    let view = world.app.read_record(&stranger, world.patient.id).unwrap();
    assert_eq!(labels_seen(&view), PrivacyLabel::ALL.to_vec());
    assert_eq!(view.basis, Basis::BreakGlass { grant: grant.id });
    // The team is not linked, so every entry is seen on the grant alone.
    assert!(view.entries.iter().all(|visible| matches!(visible.basis, Basis::BreakGlass { .. })));

    world.clock.advance(Duration::from_secs(4 * 3600));
    assert!(matches!(world.app.read_record(&stranger, world.patient.id), Err(AppError::Denied)));

    // Ending a grant early works the same way.
    world.app.open_break_glass(&stranger, world.patient.id, &reason).unwrap();
    assert!(world.app.read_record(&stranger, world.patient.id).is_ok());
    assert_eq!(world.app.end_break_glass(&stranger, world.patient.id).unwrap(), 1);
    assert!(matches!(world.app.read_record(&stranger, world.patient.id), Err(AppError::Denied)));

    let actions = audit_actions(&world);
    let opened = actions.iter().find(|(action, ..)| action == "break_glass.open").unwrap();
    assert_eq!(opened.2.as_deref(), Some("break_glass"));
    assert_eq!(opened.3.as_deref(), Some("Unconscious in the emergency department"));
    assert!(
        actions.iter().any(|(action, _, basis, _)| action == "record.read" && basis.as_deref() == Some("break_glass"))
    );
    assert!(actions.iter().any(|(action, ..)| action == "break_glass.end"));
}

on_each_engine!(a_team_keeps_its_own_data_after_discharge);
fn a_team_keeps_its_own_data_after_discharge(database: TestDatabase) {
    let world = world(database);
    let op = operator();
    let pro = world.context("mh", "pro@example.org");
    let own = world
        .app
        .add_entry(
            &EntryAuthor::Professional(&pro),
            world.patient.id,
            &NewEntry {
                kind: EntryKind::Note,
                label: Some(PrivacyLabel::SocialCare),
                title: Title::parse("Home visit").unwrap(),
                body: "Lives alone".into(),
                effective_at: START,
            },
        )
        .unwrap();
    let before = world.app.read_record(&pro, world.patient.id).unwrap();
    assert!(before.entries.iter().any(|v| v.entry.id == own.id && v.basis == Basis::OwnTeamData { team: pro.team }));

    world.app.discharge_patient(&LinkActor::Operator(&op), world.patient.id, &code(), &alias("mh")).unwrap();
    let after = world.app.read_record(&pro, world.patient.id).unwrap();
    assert_eq!(after.entries.iter().map(|v| v.entry.id).collect::<Vec<_>>(), vec![own.id]);
    assert_eq!(after.basis, Basis::OwnTeamData { team: pro.team });

    // After discharge the team may not add to the record.
    let refused = world.app.add_entry(
        &EntryAuthor::Professional(&pro),
        world.patient.id,
        &NewEntry {
            kind: EntryKind::Note,
            label: None,
            title: Title::parse("x").unwrap(),
            body: String::new(),
            effective_at: START,
        },
    );
    assert!(matches!(refused, Err(AppError::Denied)));

    // Re-linking restores the team's default labels.
    world.app.link_patient(&LinkActor::Operator(&op), world.patient.id, &code(), &alias("mh"), None).unwrap();
    assert_eq!(world.app.read_record(&pro, world.patient.id).unwrap().entries.len(), 3);
}

on_each_engine!(consent_is_changed_by_the_patient_or_on_their_behalf_with_a_reason);
fn consent_is_changed_by_the_patient_or_on_their_behalf_with_a_reason(database: TestDatabase) {
    let world = world(database);
    let op = operator();
    let account = world
        .app
        .register_patient_account(&op, &code(), world.patient.id, &email("ngozi@example.org"), FAKE_HASH)
        .unwrap();
    let pro = world.context("mh", "pro@example.org");

    // The patient narrows the team's view to general health.
    let patient_actor = ConsentActor::Patient { account: account.id, channel: Channel::Web };
    world
        .app
        .change_consent(&patient_actor, world.patient.id, pro.team, LabelSet::from_labels([PrivacyLabel::General]))
        .unwrap();
    assert_eq!(labels_seen(&world.app.read_record(&pro, world.patient.id).unwrap()), vec![PrivacyLabel::General]);

    // A professional needs a reason; a speciality team's may only narrow its own view on
    // the patient's behalf (adding is for the patient, or the PRT's data-quality staff).
    let no_reason = world.app.change_consent(
        &ConsentActor::Professional { context: &pro, reason: None },
        world.patient.id,
        pro.team,
        LabelSet::EMPTY,
    );
    assert!(matches!(no_reason, Err(AppError::Consent(ConsentRefusal::ReasonRequired))));
    let reason = Reason::parse("Patient asked in clinic to stop the team seeing her record").unwrap();
    let widen = world.app.change_consent(
        &ConsentActor::Professional { context: &pro, reason: Some(&reason) },
        world.patient.id,
        pro.team,
        LabelSet::ALL,
    );
    assert!(matches!(widen, Err(AppError::Forbidden(_))), "{widen:?}");
    world
        .app
        .change_consent(
            &ConsentActor::Professional { context: &pro, reason: Some(&reason) },
            world.patient.id,
            pro.team,
            LabelSet::EMPTY,
        )
        .unwrap();
    assert_eq!(labels_seen(&world.app.read_record(&pro, world.patient.id).unwrap()), vec![]);
    let outbox = world.app.store().read(|tx| tx.outbox(100)).unwrap();
    assert!(
        outbox.iter().any(
            |row| row.message.template == "consent_changed_patient" && row.message.recipient == "ngozi@example.org"
        )
    );

    // Someone else's account cannot change this patient's consent.
    let other = world.add_member("gum", "gum2@example.org", MembershipRole::Professional);
    let intruder = ConsentActor::Patient { account: other.account.id, channel: Channel::Web };
    assert!(matches!(
        world.app.change_consent(&intruder, world.patient.id, pro.team, LabelSet::EMPTY),
        Err(AppError::Denied)
    ));
    // A coordinator cannot change it on the patient's behalf.
    let coordinator = world.context("mh", "c1@example.org");
    let refused = world.app.change_consent(
        &ConsentActor::Professional { context: &coordinator, reason: Some(&reason) },
        world.patient.id,
        pro.team,
        LabelSet::EMPTY,
    );
    assert!(matches!(refused, Err(AppError::Denied)));

    let actions = audit_actions(&world);
    let changes: Vec<_> = actions.iter().filter(|(action, ..)| action == "consent.change").collect();
    assert_eq!(changes.iter().filter(|c| c.1 == "allowed").count(), 2);
    assert!(
        changes
            .iter()
            .any(|c| c.2.as_deref() == Some("on_behalf_of_patient") && c.3.as_deref() == Some(reason.as_str()))
    );
    assert!(changes.iter().filter(|c| c.1 == "denied").count() >= 4);
}

on_each_engine!(patients_read_their_own_record_and_see_who_looked);
fn patients_read_their_own_record_and_see_who_looked(database: TestDatabase) {
    let world = world(database);
    let op = operator();
    let account = world
        .app
        .register_patient_account(&op, &code(), world.patient.id, &email("ngozi@example.org"), FAKE_HASH)
        .unwrap();
    let own = world.app.read_own_record(account.id, Channel::Web).unwrap();
    assert_eq!(own.entries.len(), 4);
    assert_eq!(own.basis, Basis::SelfAccess);

    let pro = world.context("mh", "pro@example.org");
    world.app.read_record(&pro, world.patient.id).unwrap();
    let stranger = world.context("gum", "gum@example.org");
    world.app.open_break_glass(&stranger, world.patient.id, &Reason::parse("Collapsed at home").unwrap()).unwrap();
    world.app.read_record(&stranger, world.patient.id).unwrap();

    let log = world.app.access_log(account.id, false, None, 100, Channel::Web).unwrap();
    assert!(log.iter().all(|line| line.who != "Ngozi Okafor"), "own access hidden by default");
    let read_by_pro = log.iter().find(|line| line.action == "record.read" && line.who == "pro").unwrap();
    assert_eq!(read_by_pro.team.as_deref(), Some("Mental Health"));
    assert_eq!(read_by_pro.labels, "general,mental_health");
    assert_eq!(read_by_pro.entry_kinds, "document");
    assert!(log.iter().any(|line| line.action == "record.read" && line.break_glass && line.who == "gum"));
    let with_own = world.app.access_log(account.id, true, None, 100, Channel::Web).unwrap();
    assert!(with_own.iter().any(|line| line.basis.as_deref() == Some("self")));

    // Break glass told the patient.
    let outbox = world.app.store().read(|tx| tx.outbox(100)).unwrap();
    assert!(outbox.iter().any(|row| row.message.template == "break_glass_patient"));
    // A professional's account has no own record to read.
    assert!(matches!(world.app.read_own_record(pro.account, Channel::Web), Err(AppError::Denied)));
}

on_each_engine!(a_privacy_officer_locks_a_record_down);
fn a_privacy_officer_locks_a_record_down(database: TestDatabase) {
    let world = world(database);
    let op = operator();
    let officer = world.add_member("gum", "privacy@example.org", MembershipRole::Professional);
    let pro = world.context("mh", "pro@example.org");
    let reason = Reason::parse("Patient request after safeguarding concern").unwrap();
    // Not yet an officer: refused.
    assert!(matches!(
        world.app.set_sharing_disabled(officer.account.id, world.patient.id, true, &reason),
        Err(AppError::Denied)
    ));
    world.app.appoint_privacy_officer(&op, &code(), &email("privacy@example.org")).unwrap();
    world.app.set_sharing_disabled(officer.account.id, world.patient.id, true, &reason).unwrap();

    assert!(matches!(world.app.read_record(&pro, world.patient.id), Err(AppError::Denied)));
    let stranger = world.context("gum", "gum@example.org");
    assert!(matches!(world.app.open_break_glass(&stranger, world.patient.id, &reason), Err(AppError::Denied)));
    let relink = world.app.link_patient(&LinkActor::Operator(&op), world.patient.id, &code(), &alias("gum"), None);
    assert!(matches!(relink, Err(AppError::Consent(ConsentRefusal::SharingDisabled))), "{relink:?}");

    world.app.set_sharing_disabled(officer.account.id, world.patient.id, false, &reason).unwrap();
    world.app.link_patient(&LinkActor::Operator(&op), world.patient.id, &code(), &alias("mh"), None).unwrap();
    assert_eq!(world.app.read_record(&pro, world.patient.id).unwrap().entries.len(), 2);
}

on_each_engine!(bad_input_is_refused_and_nothing_is_half_written);
fn bad_input_is_refused_and_nothing_is_half_written(database: TestDatabase) {
    let world = world(database);
    let op = operator();
    let before = world.app.audit_events(None, 100_000).unwrap().len();
    let duplicate = world.app.create_patient(
        &op,
        &NewPatient {
            organisation: code(),
            demographics: demographics("Twin"),
            nhs_number: Some(NhsNumber::parse("943 476 5919").unwrap()),
            local_identifiers: vec![],
            teams: vec![alias("mh")],
        },
    );
    assert!(
        matches!(&duplicate, Err(AppError::Conflict(message)) if message.contains("943 476 5919")),
        "{duplicate:?}"
    );
    let unknown_team = world.app.create_patient(
        &op,
        &NewPatient {
            organisation: code(),
            demographics: demographics("New"),
            nhs_number: None,
            local_identifiers: vec![],
            teams: vec![alias("nope")],
        },
    );
    assert!(matches!(&unknown_team, Err(AppError::NotFound(message)) if message.contains("nope")));
    let unknown_org = world.app.create_team(
        &op,
        &kith_core::text::OrganisationCode::parse("ZZZ").unwrap(),
        &Name::parse("n", "x").unwrap(),
        &alias("x"),
        LabelSet::EMPTY,
    );
    assert!(matches!(unknown_org, Err(AppError::NotFound(_))));
    assert_eq!(world.app.audit_events(None, 100_000).unwrap().len(), before, "refusals write nothing");
    assert!(matches!(
        world.app.create_team(&op, &code(), &Name::parse("n", "x").unwrap(), &alias("mh"), LabelSet::EMPTY),
        Err(AppError::Conflict(_))
    ));
}

/// Runs `statement` against the audit log behind the append-only guard: SQLite's trigger
/// `sqlite_trigger` is dropped, PostgreSQL's is disabled.
fn tamper(world: &World, sqlite_trigger: &str, statement: &str) {
    let unguard = match world.database.engine {
        kith_test_support::Engine::Sqlite => format!("DROP TRIGGER {sqlite_trigger};"),
        kith_test_support::Engine::Postgres => {
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only;".to_owned()
        }
    };
    world.database.execute_raw(&format!("{unguard} {statement}")).unwrap();
}

on_each_engine!(the_audit_trail_verifies_until_someone_changes_it);
fn the_audit_trail_verifies_until_someone_changes_it(database: TestDatabase) {
    let world = world(database);
    let pro = world.context("mh", "pro@example.org");
    world.app.read_record(&pro, world.patient.id).unwrap();
    let intact = world.app.verify_audit().unwrap();
    let AuditVerification::Intact { events } = intact else { panic!("{intact:?}") };
    assert!(events > 10);
    tamper(&world, "audit_events_append_only_delete", "DELETE FROM audit_events WHERE seq = 5;");
    assert_eq!(
        world.app.verify_audit().unwrap(),
        AuditVerification::Broken(ChainBreak::Removed { after: 4, found: 6 })
    );
}

on_each_engine!(the_audit_verification_names_an_event_it_cannot_read);
/// A damaged column that no longer reads as an event (here the labels, set to a value Kith
/// never writes) is named, not a storage error (issue 15).
fn the_audit_verification_names_an_event_it_cannot_read(database: TestDatabase) {
    let world = world(database);
    tamper(&world, "audit_events_append_only_update", "UPDATE audit_events SET labels = 999 WHERE seq = 3;");
    let verified = world.app.verify_audit().unwrap();
    assert_eq!(verified, AuditVerification::Broken(ChainBreak::Unreadable { seq: 3 }));
    let AuditVerification::Broken(broken) = verified else { unreachable!() };
    assert_eq!(
        broken.to_string(),
        "audit event 3 was changed: it cannot be read (a column holds a value Kith never writes)"
    );
}

on_each_engine!(the_patient_record_team_sees_nothing_until_it_is_granted_access);
fn the_patient_record_team_sees_nothing_until_it_is_granted_access(database: TestDatabase) {
    let world = world(database);
    world.add_member("prt", "data.quality@example.org", MembershipRole::Professional);
    let data_quality = world.context("prt", "data.quality@example.org");
    // Every record is in the PRT and its feed data was filed by the PRT, yet it sees no
    // entries: it knows who the patient is, nothing more.
    let view = world.app.read_record(&data_quality, world.patient.id).unwrap();
    assert!(view.entries.is_empty(), "{:?}", view.entries);
    assert!(view.some_hidden);
    // Adding general health for the PRT on the patient's behalf (audited, with a reason).
    let reason = Reason::parse("Data quality: duplicate record investigation").unwrap();
    world
        .app
        .change_consent(
            &ConsentActor::Professional { context: &data_quality, reason: Some(&reason) },
            world.patient.id,
            data_quality.team,
            LabelSet::from_labels([PrivacyLabel::General]),
        )
        .unwrap();
    assert_eq!(
        labels_seen(&world.app.read_record(&data_quality, world.patient.id).unwrap()),
        vec![PrivacyLabel::General]
    );
}

on_each_engine!(a_family_name_search_finds_the_searcher_s_patient_behind_many_others);
/// A search by family name and birth date counts the patients the searcher may see, not
/// the candidates: 105 other Smiths born the same day, sorted first, do not hide the
/// professional's own patient (issue 15: the limit came before the access filter).
fn a_family_name_search_finds_the_searcher_s_patient_behind_many_others(database: TestDatabase) {
    let world = world(database);
    let op = operator();
    let born = kith_core::Date::parse("1980-01-01").unwrap();
    let smith = |given: &str, teams: Vec<kith_core::text::TeamAlias>| NewPatient {
        organisation: code(),
        demographics: kith_core::patient::Demographics {
            family_name: kith_core::text::Name::parse("family", "Smith").unwrap(),
            given_name: kith_core::text::Name::parse("given", given).unwrap(),
            birth_date: born,
            ..demographics("x")
        },
        nhs_number: None,
        local_identifiers: vec![],
        teams,
    };
    for n in 0..105 {
        world.app.create_patient(&op, &smith(&format!("Aaron{n:03}"), vec![])).unwrap();
    }
    let mine = world.app.create_patient(&op, &smith("Zed", vec![alias("mh")])).unwrap();
    let pro = world.context("mh", "pro@example.org");
    let query = PatientQuery::FamilyAndBirthDate { family: "smi".into(), birth_date: born };
    let found = world.app.find_patients_as(pro.account, kith_core::audit::Channel::Cli, &query).unwrap();
    let ids: Vec<_> = found.iter().map(|details| details.patient.id).collect();
    assert_eq!(ids, vec![mine.id], "only the visible one, found behind the others");
}
