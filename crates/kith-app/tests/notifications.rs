//! Patients' notification choices, on SQLite and PostgreSQL: which notices reach them and
//! by which channel (`kith_core::notify` decides), new entries at most once an hour, and
//! emergency access and changes by someone else always told.

mod support;

use std::time::Duration;

use kith_app::*;
use kith_core::audit::Channel;
use kith_core::notify::{NotificationSettings, NotifyBy};
use kith_core::patient::EntryKind;
use kith_core::text::{MobileNumber, Reason, Title};
use kith_core::{LabelSet, PrivacyLabel};
use kith_test_support::{TestDatabase, on_each_engine};
use support::*;

/// Notices to the world's patient: (id, template, channel), in no particular order (the
/// test clock stands still).
fn sent(world: &World) -> Vec<(uuid::Uuid, String, String)> {
    world
        .app
        .outbox_messages(None, 1000)
        .unwrap()
        .into_iter()
        .filter(|row| row.message.template != "patient_invitation")
        .filter(|row| row.message.recipient == "ngozi@example.org" || row.message.recipient.starts_with("+447700900"))
        .map(|row| (row.message.id, row.message.template, row.message.channel.to_owned()))
        .collect()
}

/// What was sent since `before` (a [`sent`] list), sorted: (template, channel).
fn since(world: &World, before: &[(uuid::Uuid, String, String)]) -> Vec<(String, String)> {
    let mut new: Vec<(String, String)> = sent(world)
        .into_iter()
        .filter(|message| !before.iter().any(|old| old.0 == message.0))
        .map(|(_, template, channel)| (template, channel))
        .collect();
    new.sort();
    new
}

fn pair(template: &str, channel: &str) -> (String, String) {
    (template.to_owned(), channel.to_owned())
}

fn note(world: &World, pro: &ProfessionalContext) {
    let new = NewEntry {
        kind: EntryKind::Note,
        label: Some(PrivacyLabel::General),
        title: Title::parse("Seen in clinic").unwrap(),
        body: "Well.".into(),
        effective_at: world.app.now(),
    };
    world.app.add_entry(&EntryAuthor::Professional(pro), world.patient.id, &new).unwrap();
}

on_each_engine!(patients_are_told_as_they_chose_and_always_of_emergency_access);
fn patients_are_told_as_they_chose_and_always_of_emergency_access(database: TestDatabase) {
    let world = world(database);
    let op = operator();
    let changes = PatientChanges {
        email: Some(email("ngozi@example.org")),
        mobile: Some(MobileNumber::parse("+447700900123").unwrap()),
        ..PatientChanges::default()
    };
    world.app.update_patient(&op, &code(), world.patient.id, &changes).unwrap();
    let account = world
        .app
        .register_patient_account(&op, &code(), world.patient.id, &email("ngozi@example.org"), FAKE_HASH)
        .unwrap()
        .id;
    let pro = world.context("mh", "pro@example.org");
    let before = sent(&world);

    // The defaults: no notice of new entries; emergency access by email.
    assert_eq!(world.app.own_notifications(account).unwrap().settings, NotificationSettings::default());
    note(&world, &pro);
    assert_eq!(since(&world, &before), [], "new entries are off by default");
    let gum = world.context("gum", "gum@example.org");
    let reason = Reason::parse("Unconscious in the emergency department").unwrap();
    world.app.open_break_glass(&gum, world.patient.id, &reason).unwrap();
    assert_eq!(since(&world, &before), [pair("break_glass_patient", "email")]);

    // Emergency access cannot be turned off.
    let off = NotificationSettings { break_glass: NotifyBy::Off, ..NotificationSettings::default() };
    assert!(matches!(world.app.set_own_notifications(account, Channel::Web, &off), Err(AppError::Invalid(_))));

    // New entries by both channels, at most once an hour; emergency access by text message.
    let chosen =
        NotificationSettings { team_added: NotifyBy::Off, new_entries: NotifyBy::Both, break_glass: NotifyBy::Sms };
    world.app.set_own_notifications(account, Channel::Web, &chosen).unwrap();
    assert_eq!(world.app.own_notifications(account).unwrap().settings, chosen);
    let before = sent(&world);
    note(&world, &pro);
    note(&world, &pro);
    assert_eq!(since(&world, &before), [pair("new_entries_patient", "email"), pair("new_entries_patient", "sms")]);
    world.clock.advance(Duration::from_secs(61 * 60));
    note(&world, &pro);
    assert_eq!(since(&world, &before).len(), 4, "a second notice an hour later");

    let before = sent(&world);
    let cardiology = world
        .app
        .create_team(
            &op,
            &code(),
            &kith_core::text::Name::parse("n", "Cardiology").unwrap(),
            &alias("card"),
            LabelSet::from_labels([PrivacyLabel::General]),
        )
        .unwrap();
    let _ = cardiology;
    world.app.link_patient(&LinkActor::Operator(&op), world.patient.id, &code(), &alias("card"), None).unwrap();
    assert_eq!(since(&world, &before), [], "a team added: off");
    world.app.end_break_glass(&gum, world.patient.id).unwrap();
    world.app.open_break_glass(&gum, world.patient.id, &reason).unwrap();
    assert_eq!(since(&world, &before), [pair("break_glass_patient", "sms")]);

    // A change by someone else is always told, by email.
    let before = sent(&world);
    let why = Reason::parse("The patient asked us in clinic today").unwrap();
    world
        .app
        .change_consent(
            &ConsentActor::Professional { context: &pro, reason: Some(&why) },
            world.patient.id,
            pro.team,
            LabelSet::from_labels([PrivacyLabel::General]),
        )
        .unwrap();
    assert_eq!(since(&world, &before), [pair("consent_changed_patient", "email")]);
    // The patient's own change tells the team's coordinators (and no one else), naming no one.
    let coordinators = |world: &World| -> Vec<String> {
        world
            .app
            .outbox_messages(None, 1000)
            .unwrap()
            .into_iter()
            .filter(|row| row.message.template == "consent_changed_coordinator")
            .map(|row| row.message.recipient)
            .collect()
    };
    assert!(coordinators(&world).is_empty());
    world.app.change_consent_as(account, Channel::Web, world.patient.id, pro.team, LabelSet::EMPTY, None).unwrap();
    let mut told = coordinators(&world);
    told.sort();
    assert_eq!(told, ["c1@example.org", "c2@example.org"]);
    assert!(
        world
            .app
            .outbox_messages(None, 1000)
            .unwrap()
            .iter()
            .filter(|row| row.message.template == "consent_changed_coordinator")
            .all(|row| !row.message.payload.contains(&world.patient.id.to_string()))
    );

    // Each change of choices is audited on the patient's record.
    let events = world.app.audit_events(Some(world.patient.id), 1000).unwrap();
    assert!(events.iter().any(|event| event.record.action == "notifications.change"));
}
