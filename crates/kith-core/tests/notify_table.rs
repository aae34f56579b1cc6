//! Which notices reach a patient, and how: every event, choice and reach.

use kith_core::notify::{NotificationSettings, NotifyBy, PatientEvent, Reach, notification_reach};

const EVENTS: [PatientEvent; 4] =
    [PatientEvent::TeamAdded, PatientEvent::NewEntries, PatientEvent::BreakGlass, PatientEvent::SharingChanged];

fn settings(choice: NotifyBy) -> NotificationSettings {
    NotificationSettings { team_added: choice, new_entries: choice, break_glass: choice }
}

#[test]
fn every_combination_follows_the_literal_rule() {
    for event in EVENTS {
        for &choice in NotifyBy::ALL {
            for has_email in [false, true] {
                for has_mobile in [false, true] {
                    let reach = notification_reach(event, &settings(choice), has_email, has_mobile);
                    let effective = if event == PatientEvent::SharingChanged { NotifyBy::Email } else { choice };
                    let told = effective != NotifyBy::Off || event.always_told();
                    let can = has_email || has_mobile;
                    // Told exactly when the rule says and the record has a way to reach them.
                    assert_eq!(reach != Reach::default(), told && can, "{event:?} {choice:?} {has_email} {has_mobile}");
                    // Never by a channel the record lacks.
                    assert!(!reach.email || has_email, "{event:?} {choice:?}");
                    assert!(!reach.sms || has_mobile, "{event:?} {choice:?}");
                }
            }
        }
    }
}

#[test]
fn named_rows() {
    let default = NotificationSettings::default();
    let both = Reach { email: true, sms: true };
    let email = Reach { email: true, sms: false };
    let sms = Reach { email: false, sms: true };
    let none = Reach::default();
    let rows = [
        // Defaults: a team added and emergency access by email; new entries not at all.
        (PatientEvent::TeamAdded, default, true, true, email),
        (PatientEvent::NewEntries, default, true, true, none),
        (PatientEvent::BreakGlass, default, true, true, email),
        // Emergency access cannot be turned off.
        (PatientEvent::BreakGlass, settings(NotifyBy::Off), true, true, email),
        (PatientEvent::BreakGlass, settings(NotifyBy::Off), false, true, sms),
        (PatientEvent::BreakGlass, settings(NotifyBy::Both), true, true, both),
        // Changes by someone else: always, by email (else SMS), whatever they chose.
        (PatientEvent::SharingChanged, settings(NotifyBy::Sms), true, true, email),
        (PatientEvent::SharingChanged, settings(NotifyBy::Off), false, true, sms),
        // Off is off for the rest.
        (PatientEvent::TeamAdded, settings(NotifyBy::Off), true, true, none),
        (PatientEvent::NewEntries, settings(NotifyBy::Off), true, true, none),
        // A chosen channel the record lacks: the other one.
        (PatientEvent::NewEntries, settings(NotifyBy::Sms), true, false, email),
        (PatientEvent::TeamAdded, settings(NotifyBy::Email), false, true, sms),
        (PatientEvent::NewEntries, settings(NotifyBy::Both), false, true, sms),
        // No way to reach them.
        (PatientEvent::BreakGlass, default, false, false, none),
    ];
    for (event, settings, has_email, has_mobile, expected) in rows {
        assert_eq!(notification_reach(event, &settings, has_email, has_mobile), expected, "{event:?} {settings:?}");
    }
}
