//! Break glass bound to the team it was opened through (issue 15), on both backends: a grant
//! opens the record through that team only, is audited under that team's organisation, ends
//! with the membership, the account and the web session it was opened in, and what is
//! written under it opens no lasting access to any other team.

mod support;

use kith_app::sessions::SignIn;
use kith_app::*;
use kith_core::audit::Channel;
use kith_core::patient::{EntryKind, NhsNumber};
use kith_core::team::{AccountStatus, MembershipRole, MembershipStatus};
use kith_core::text::{Name, OrganisationCode, Reason, Secret, Title};
use kith_core::{Basis, LabelSet, PrivacyLabel};
use kith_test_support::{TestDatabase, on_each_engine};
use support::*;

fn hillside() -> OrganisationCode {
    OrganisationCode::parse("HSH").unwrap()
}

fn reason() -> Reason {
    Reason::parse("Unconscious on arrival in the emergency department").unwrap()
}

/// A second organisation, Hillside, with an emergency team `ed`, in which the demo
/// organisation's sexual-health professional gum@ also works; a patient of Hillside only;
/// and a privacy officer in each organisation.
struct Two {
    world: World,
    hillside_patient: kith_core::PatientId,
    /// gum@ acting through Riverside's `gum`.
    at_riverside: ProfessionalContext,
    /// gum@ acting through Hillside's `ed`.
    at_hillside: ProfessionalContext,
    riverside_officer: kith_core::AccountId,
    hillside_officer: kith_core::AccountId,
}

fn two_organisations(world: World) -> Two {
    let op = operator();
    world
        .app
        .create_organisation(
            &op,
            &NewOrganisation {
                code: hillside(),
                name: Name::parse("name", "Hillside Health").unwrap(),
                break_glass_duration: None,
            },
        )
        .unwrap();
    world
        .app
        .create_team(
            &op,
            &hillside(),
            &Name::parse("n", "Emergency Department").unwrap(),
            &alias("ed"),
            LabelSet::from_labels([PrivacyLabel::General]),
        )
        .unwrap();
    let member = |organisation: OrganisationCode, team: &str, who: &str| {
        world.add_member_in(organisation, team, who, MembershipRole::Professional)
    };
    member(hillside(), "ed", "gum@example.org");
    let riverside_officer = member(code(), "gum", "po-riverside@example.org").account.id;
    let hillside_officer = member(hillside(), "ed", "po-hillside@example.org").account.id;
    world.app.appoint_privacy_officer(&op, &code(), &email("po-riverside@example.org")).unwrap();
    world.app.appoint_privacy_officer(&op, &hillside(), &email("po-hillside@example.org")).unwrap();
    let hillside_patient = world
        .app
        .create_patient(
            &op,
            &NewPatient {
                organisation: hillside(),
                demographics: demographics("Adaeze"),
                nhs_number: Some(NhsNumber::parse("9434765870").unwrap()),
                local_identifiers: vec![],
                teams: vec![],
            },
        )
        .unwrap()
        .id;
    world
        .app
        .add_entry(
            &EntryAuthor::Operator { operator: &op, organisation: &hillside(), team: &alias("prt") },
            hillside_patient,
            &NewEntry {
                kind: EntryKind::Document,
                label: Some(PrivacyLabel::MentalHealth),
                title: Title::parse("Discharge letter").unwrap(),
                body: String::new(),
                effective_at: START,
            },
        )
        .unwrap();
    let at_riverside = world.context("gum", "gum@example.org");
    let at_hillside =
        world.app.professional_context(&hillside(), &alias("ed"), &email("gum@example.org"), Channel::Fhir).unwrap();
    Two { world, hillside_patient, at_riverside, at_hillside, riverside_officer, hillside_officer }
}

fn riverside_team(world: &World, team: &str) -> kith_core::model::Team {
    world
        .app
        .store()
        .read(|tx| {
            let organisation = tx.organisation_by_code(&code())?.unwrap();
            tx.team_by_alias(organisation.id, &alias(team))
        })
        .unwrap()
        .unwrap()
}

on_each_engine!(a_grant_opens_the_record_through_its_team_only_and_is_audited_under_its_organisation);
fn a_grant_opens_the_record_through_its_team_only_and_is_audited_under_its_organisation(database: TestDatabase) {
    let world = world(database);
    let two = two_organisations(world);
    let app = &two.world.app;
    let grant = app.open_break_glass(&two.at_hillside, two.hillside_patient, &reason()).unwrap();
    assert_eq!(grant.team, two.at_hillside.team);

    // Through the Hillside team: everything, on the grant.
    let view = app.read_record(&two.at_hillside, two.hillside_patient).unwrap();
    assert_eq!(view.basis, Basis::BreakGlass { grant: grant.id });
    // Through the professional's Riverside team: nothing (it was a grant of Hillside's).
    assert!(matches!(app.read_record(&two.at_riverside, two.hillside_patient), Err(AppError::Denied)));

    // A read across all the account's teams (the FHIR API) is audited under the team
    // and organisation the grant was opened through, never under a Riverside team.
    let account_view = app
        .read_entries_as(
            two.at_hillside.account,
            Channel::Fhir,
            two.hillside_patient,
            EntrySelection::Kinds(&EntryKind::ALL),
        )
        .unwrap();
    assert_eq!(account_view.entries.len(), 1);
    let events = app.audit_events(Some(two.hillside_patient), 1000).unwrap();
    let glass_events: Vec<_> =
        events.iter().filter(|event| event.record.basis.as_deref() == Some("break_glass")).collect();
    assert!(glass_events.len() >= 3, "{glass_events:?}");
    for event in &glass_events {
        assert_eq!(event.record.acting_team, Some(two.at_hillside.team), "{event:?}");
        assert_eq!(event.record.organisation, Some(two.at_hillside.organisation), "{event:?}");
    }

    // Hillside's privacy officer sees the grant and the reads; Riverside's learns nothing
    // of Hillside's patient.
    let hillside_log = app.break_glass_log(two.hillside_officer, None, 100, Channel::Web).unwrap();
    assert!(hillside_log.iter().any(|line| line.action == "break_glass.open"));
    assert!(hillside_log.iter().any(|line| line.action == "record.read"));
    let riverside_log = app.break_glass_log(two.riverside_officer, None, 100, Channel::Web).unwrap();
    assert!(
        riverside_log.iter().all(|line| line.patient != Some(two.hillside_patient)),
        "Riverside's privacy officer saw Hillside's patient: {riverside_log:?}"
    );
}

on_each_engine!(a_grant_ends_with_the_membership_it_was_opened_through);
fn a_grant_ends_with_the_membership_it_was_opened_through(database: TestDatabase) {
    let world = world(database);
    let two = two_organisations(world);
    let app = &two.world.app;
    app.open_break_glass(&two.at_hillside, two.hillside_patient, &reason()).unwrap();
    assert!(app.read_patient_as(two.at_hillside.account, Channel::Fhir, two.hillside_patient).is_ok());

    app.set_membership_status(
        &operator(),
        &hillside(),
        &alias("ed"),
        &email("gum@example.org"),
        MembershipStatus::Deactivated,
        false,
    )
    .unwrap();
    // Neither the record nor who the patient is, nor a search by NHS number, through any
    // team the professional still has.
    assert!(matches!(app.read_record(&two.at_hillside, two.hillside_patient), Err(AppError::Denied)));
    assert!(matches!(
        app.read_patient_as(two.at_hillside.account, Channel::Fhir, two.hillside_patient),
        Err(AppError::Denied)
    ));
    let found = app
        .find_patients_as(
            two.at_hillside.account,
            Channel::Fhir,
            &PatientQuery::NhsNumber(NhsNumber::parse("9434765870").unwrap()),
        )
        .unwrap_or_default();
    assert!(found.is_empty(), "found by NHS number after the membership ended: {found:?}");

    // The grant itself ended (audited), so reactivating the membership does not revive it.
    let events = app.audit_events(Some(two.hillside_patient), 1000).unwrap();
    let ended = events.iter().find(|event| event.record.action == "break_glass.end").expect("the end is audited");
    assert_eq!(ended.record.reason.as_deref(), Some("the membership it was opened through was deactivated"));
    app.set_membership_status(
        &operator(),
        &hillside(),
        &alias("ed"),
        &email("gum@example.org"),
        MembershipStatus::Active,
        false,
    )
    .unwrap();
    assert!(matches!(app.read_record(&two.at_hillside, two.hillside_patient), Err(AppError::Denied)));
}

on_each_engine!(a_grant_ends_when_the_account_is_no_longer_active);
fn a_grant_ends_when_the_account_is_no_longer_active(database: TestDatabase) {
    let world = world(database);
    let two = two_organisations(world);
    let app = &two.world.app;
    let grant = app.open_break_glass(&two.at_hillside, two.hillside_patient, &reason()).unwrap();
    let ended = app
        .store()
        .write(|tx| tx.set_account_status(two.at_hillside.account, AccountStatus::Disabled, app.now()))
        .unwrap();
    assert_eq!(ended.iter().map(|grant| grant.id).collect::<Vec<_>>(), vec![grant.id]);
    app.store().write(|tx| tx.set_account_status(two.at_hillside.account, AccountStatus::Active, app.now())).unwrap();
    assert!(matches!(app.read_record(&two.at_hillside, two.hillside_patient), Err(AppError::Denied)));
}

on_each_engine!(a_grant_opened_in_a_web_session_ends_at_sign_out);
fn a_grant_opened_in_a_web_session_ends_at_sign_out(database: TestDatabase) {
    let world = world(database);
    let hash = kith_app::password::hash_password(&Secret::new("correct horse battery".into())).unwrap();
    let two = two_organisations(world);
    let app = &two.world.app;
    let account = two.at_hillside.account;
    app.store().write(|tx| tx.set_password(account, &hash, AccountStatus::Active, START)).unwrap();
    let sign_in = || match app.sign_in("gum@example.org", &Secret::new("correct horse battery".into())).unwrap() {
        SignIn::SignedIn(session) => session.secret,
        other => panic!("not signed in: {other:?}"),
    };
    let secret = sign_in();
    app.switch_team(secret.expose(), two.at_hillside.team).unwrap();
    let grant = app.open_break_glass_in_session(secret.expose(), two.hillside_patient, &reason()).unwrap();
    assert_eq!(grant.team, two.at_hillside.team);
    // The same account through the API sees the record while the session lasts.
    assert!(app.read_record(&two.at_hillside, two.hillside_patient).is_ok());

    app.sign_out(secret.expose()).unwrap();
    assert!(matches!(app.read_record(&two.at_hillside, two.hillside_patient), Err(AppError::Denied)));
    let events = app.audit_events(Some(two.hillside_patient), 1000).unwrap();
    assert!(events.iter().any(|event| event.record.action == "break_glass.end"
        && event.record.reason.as_deref() == Some("the session it was opened in was signed out")));

    // A grant in a session left idle ends when the session times out, unwritten.
    let secret = sign_in();
    app.switch_team(secret.expose(), two.at_hillside.team).unwrap();
    app.open_break_glass_in_session(secret.expose(), two.hillside_patient, &reason()).unwrap();
    assert!(app.read_record(&two.at_hillside, two.hillside_patient).is_ok());
    two.world.clock.advance(kith_core::access::SESSION_IDLE);
    assert!(matches!(app.read_record(&two.at_hillside, two.hillside_patient), Err(AppError::Denied)));

    // A signed-out session cannot open one.
    assert!(matches!(
        app.open_break_glass_in_session(secret.expose(), two.hillside_patient, &reason()),
        Err(AppError::Denied)
    ));
}

on_each_engine!(what_is_written_under_a_grant_opens_no_other_team);
fn what_is_written_under_a_grant_opens_no_other_team(database: TestDatabase) {
    let world = world(database);
    let two = two_organisations(world);
    let app = &two.world.app;
    // gum@ is also a professional of Riverside's mental-health team; the patient is in
    // neither of gum@'s Riverside teams.
    two.world.add_member("mh", "gum@example.org", MembershipRole::Professional);
    app.open_break_glass(&two.at_hillside, two.hillside_patient, &reason()).unwrap();
    let note = NewEntry {
        kind: EntryKind::Measurement,
        label: Some(PrivacyLabel::General),
        title: Title::parse("Pulse").unwrap(),
        body: "72 /min".into(),
        effective_at: START,
    };
    // Writing as a Riverside team (the performer named in a FHIR Observation) under the
    // Hillside grant is refused: the grant is not theirs.
    let mh = riverside_team(&two.world, "mh");
    assert!(matches!(
        app.record_entry_as(two.at_hillside.account, Channel::Fhir, two.hillside_patient, Some(mh.id), &note),
        Err(AppError::Denied)
    ));
    // Naming a team the professional is not a member of is refused too.
    let riverside_prt = riverside_team(&two.world, "prt");
    assert!(matches!(
        app.record_entry_as(
            two.at_hillside.account,
            Channel::Fhir,
            two.hillside_patient,
            Some(riverside_prt.id),
            &note
        ),
        Err(AppError::Denied)
    ));
    // Written through the grant's own team, it stays that team's data after the grant.
    let entry = app
        .record_entry_as(
            two.at_hillside.account,
            Channel::Fhir,
            two.hillside_patient,
            Some(two.at_hillside.team),
            &note,
        )
        .unwrap();
    assert_eq!(entry.authored_by, two.at_hillside.team);
    app.end_break_glass(&two.at_hillside, two.hillside_patient).unwrap();
    let view = app.read_record(&two.at_hillside, two.hillside_patient).unwrap();
    assert_eq!(view.entries.iter().map(|visible| visible.entry.id).collect::<Vec<_>>(), vec![entry.id]);
    assert_eq!(view.basis, Basis::OwnTeamData { team: two.at_hillside.team });
    // The other members of Riverside's teams learn nothing of the patient.
    let pro = two.world.context("mh", "pro@example.org");
    assert!(matches!(app.read_record(&pro, two.hillside_patient), Err(AppError::Denied)));
    assert!(matches!(app.read_patient_as(pro.account, Channel::Fhir, two.hillside_patient), Err(AppError::Denied)));
}

on_each_engine!(a_professional_cannot_bring_another_organisations_patient_into_their_own);
fn a_professional_cannot_bring_another_organisations_patient_into_their_own(database: TestDatabase) {
    let world = world(database);
    let two = two_organisations(world);
    let app = &two.world.app;
    // Riverside's data-quality member knows Hillside's patient's NHS number and date of
    // birth: adding them to Riverside's Patient Record Team would put them "in"
    // Riverside, and open break glass to every Riverside professional.
    let dq = two.world.add_member("prt", "dq@example.org", MembershipRole::Professional).account.id;
    let prt = riverside_team(&two.world, "prt");
    let added = app.add_patient_to_team_as(
        dq,
        Channel::Fhir,
        prt.id,
        &PatientQuery::NhsNumber(NhsNumber::parse("9434765870").unwrap()),
        kith_core::Date::parse("1971-09-14").unwrap(),
        &AddBasis::Referral,
    );
    assert!(added.is_err(), "{added:?}");
    let links = app.store().read(|tx| tx.care_links(two.hillside_patient)).unwrap();
    assert!(links.iter().all(|link| link.team != prt.id), "{links:?}");
    assert!(matches!(app.open_break_glass(&two.at_riverside, two.hillside_patient, &reason()), Err(AppError::Denied)));
}
