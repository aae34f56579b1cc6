//! Issue 15 on both backends: consent on the patient's behalf (only the Patient Record
//! Team's data-quality staff add, only the labels their organisation allows; any team's
//! own professionals narrow; the patient is told now or at registration; the privacy
//! officer lists it all), and patient look-ups that are no existence oracle (misses
//! audited with the patient, limited per professional, the privacy officer told) — with
//! callers from a second organisation.

mod support;

use std::time::Duration;

use kith_app::coordinators::IdentityCheck;
use kith_app::*;
use kith_core::audit::Channel;
use kith_core::consent::ConsentRefusal;
use kith_core::model::Patient;
use kith_core::patient::NhsNumber;
use kith_core::team::MembershipRole;
use kith_core::text::{Name, OrganisationCode, Reason};
use kith_core::{Date, LabelSet, PrivacyLabel, TeamId};
use kith_test_support::{TestDatabase, on_each_engine};
use support::*;

const GENERAL: LabelSet = LabelSet::EMPTY.with(PrivacyLabel::General);

fn rxb() -> OrganisationCode {
    OrganisationCode::parse("RXB").unwrap()
}

fn reason(text: &str) -> Reason {
    Reason::parse(text).unwrap()
}

/// A second organisation, RXB: its Patient Record Team with a data-quality professional
/// and a coordinator, a cardiology team with a professional, and a privacy officer; and
/// organisation RXH's privacy officer.
fn second_organisation(world: &World) {
    let op = operator();
    world
        .app
        .create_organisation(
            &op,
            &NewOrganisation {
                code: rxb(),
                name: Name::parse("n", "Brookside Trust").unwrap(),
                break_glass_duration: None,
            },
        )
        .unwrap();
    world.app.create_team(&op, &rxb(), &Name::parse("n", "Cardiology").unwrap(), &alias("card"), GENERAL).unwrap();
    for (team, who, role) in [
        ("prt", "dq.b@example.org", MembershipRole::Professional),
        ("prt", "coord.b@example.org", MembershipRole::Coordinator),
        ("card", "card.b@example.org", MembershipRole::Professional),
        ("card", "privacy.b@example.org", MembershipRole::Coordinator),
    ] {
        world
            .app
            .add_member(
                &op,
                &NewMember {
                    organisation: rxb(),
                    team: alias(team),
                    email: email(who),
                    name: Name::parse("name", who.split('@').next().unwrap()).unwrap(),
                    role,
                    password_hash: Some(FAKE_HASH.into()),
                },
            )
            .unwrap();
    }
    world.app.appoint_privacy_officer(&op, &rxb(), &email("privacy.b@example.org")).unwrap();
    world.add_member("gum", "privacy@example.org", MembershipRole::Coordinator);
    world.app.appoint_privacy_officer(&op, &code(), &email("privacy@example.org")).unwrap();
}

fn context_in(world: &World, organisation: &OrganisationCode, team: &str, who: &str) -> ProfessionalContext {
    world.app.professional_context(organisation, &alias(team), &email(who), Channel::Fhir).unwrap()
}

fn team_id(world: &World, organisation: &OrganisationCode, team: &str) -> TeamId {
    world
        .app
        .teams_with_members(organisation)
        .unwrap()
        .into_iter()
        .find(|(t, _)| t.alias.as_str() == team)
        .unwrap()
        .0
        .id
}

fn outbox_to(world: &World, template: &str, recipient: &str) -> usize {
    let outbox = world.app.store().read(|tx| tx.outbox(10_000)).unwrap();
    outbox.iter().filter(|row| row.message.template == template && row.message.recipient == recipient).count()
}

fn account_id(world: &World, who: &str) -> kith_core::AccountId {
    world.app.account_by_email(&email(who)).unwrap().id
}

on_each_engine!(data_quality_staff_add_what_the_organisation_allows_and_the_patient_is_told_now_or_at_registration);
fn data_quality_staff_add_what_the_organisation_allows_and_the_patient_is_told_now_or_at_registration(
    database: TestDatabase,
) {
    let world = world(database);
    world.add_member("prt", "data.quality@example.org", MembershipRole::Professional);
    let data_quality = world.context("prt", "data.quality@example.org");
    let patient = world.patient.id;
    let why = reason("Investigating a duplicate record reported by the ward");
    let as_data_quality = ConsentActor::Professional { context: &data_quality, reason: Some(&why) };

    // General health, the organisation's default: allowed. The patient has not
    // registered: nothing is sent now.
    let link = world.app.change_consent(&as_data_quality, patient, data_quality.team, GENERAL).unwrap();
    assert_eq!(link.basis.code(), "on_behalf_of_patient");
    assert_eq!(outbox_to(&world, "consent_changed_patient", "ngozi@example.org"), 0);
    // Mental health is not allowed until the operator allows it.
    let mental = GENERAL.with(PrivacyLabel::MentalHealth);
    let refused = world.app.change_consent(&as_data_quality, patient, data_quality.team, mental);
    assert!(
        matches!(refused, Err(AppError::Consent(ConsentRefusal::LabelNotAllowedOnBehalf { allowed })) if allowed == GENERAL),
        "{refused:?}"
    );
    assert!(refused.unwrap_err().to_string().contains("only these labels on a patient's behalf: general"));
    world.app.set_on_behalf_labels(&operator(), &code(), mental).unwrap();
    assert_eq!(world.app.on_behalf_labels(&code()).unwrap(), mental);
    world.app.change_consent(&as_data_quality, patient, data_quality.team, mental).unwrap();
    assert_eq!(
        labels_seen(&world.app.read_record(&data_quality, patient).unwrap()),
        vec![PrivacyLabel::General, PrivacyLabel::MentalHealth]
    );

    // At registration the walkthrough shows both changes: who, team, organisation,
    // labels before and after, reason, when.
    let account = world
        .app
        .register_patient_account(&operator(), &code(), patient, &email("ngozi@example.org"), FAKE_HASH)
        .unwrap();
    let walkthrough = world.app.walkthrough(account.id).unwrap();
    let changes: Vec<_> = walkthrough
        .on_behalf
        .iter()
        .map(|c| (c.who.as_str(), c.team.as_str(), c.organisation.as_str(), c.before, c.after, c.reason.as_str(), c.at))
        .collect();
    assert_eq!(
        changes,
        [
            (
                "data.quality",
                "Patient Record Team",
                "Riverside Hospitals",
                Some(LabelSet::EMPTY),
                GENERAL,
                why.as_str(),
                START
            ),
            ("data.quality", "Patient Record Team", "Riverside Hospitals", Some(GENERAL), mental, why.as_str(), START),
        ]
    );

    // Registered, the patient is told at once (email; no health information in it).
    world.app.change_consent(&as_data_quality, patient, data_quality.team, GENERAL).unwrap();
    assert_eq!(outbox_to(&world, "consent_changed_patient", "ngozi@example.org"), 1);
    // With sharing disabled nothing is added on the patient's behalf.
    let officer = {
        world.add_member("gum", "privacy@example.org", MembershipRole::Coordinator);
        world.app.appoint_privacy_officer(&operator(), &code(), &email("privacy@example.org")).unwrap();
        account_id(&world, "privacy@example.org")
    };
    world.app.set_sharing_disabled(officer, patient, true, &reason("Safeguarding concern raised")).unwrap();
    let locked = world.app.change_consent(&as_data_quality, patient, data_quality.team, GENERAL);
    assert!(matches!(locked, Err(AppError::Consent(ConsentRefusal::SharingDisabled))), "{locked:?}");
    // The organisation may stop it altogether.
    world.app.set_sharing_disabled(officer, patient, false, &reason("Safeguarding concern closed")).unwrap();
    world.app.set_on_behalf_labels(&operator(), &code(), LabelSet::EMPTY).unwrap();
    let none = world.app.change_consent(&as_data_quality, patient, data_quality.team, GENERAL);
    assert!(
        matches!(none, Err(AppError::Consent(ConsentRefusal::LabelNotAllowedOnBehalf { allowed })) if allowed.is_empty()),
        "{none:?}"
    );
}

on_each_engine!(a_team_narrows_only_its_own_view_and_nobody_from_another_organisation_changes_anything);
fn a_team_narrows_only_its_own_view_and_nobody_from_another_organisation_changes_anything(database: TestDatabase) {
    let world = world(database);
    second_organisation(&world);
    let patient = world.patient.id;
    let why = reason("Patient asked in clinic to limit what the team sees");
    let pro = world.context("mh", "pro@example.org");
    let mh = pro.team;
    let prt_a = team_id(&world, &code(), "prt");

    // A speciality team's professional narrows their own team; they do not widen it.
    let narrowed = world
        .app
        .change_consent(&ConsentActor::Professional { context: &pro, reason: Some(&why) }, patient, mh, GENERAL)
        .unwrap();
    assert_eq!(narrowed.labels, GENERAL);
    let widen = world.app.change_consent(
        &ConsentActor::Professional { context: &pro, reason: Some(&why) },
        patient,
        mh,
        LabelSet::ALL,
    );
    assert!(matches!(widen, Err(AppError::Forbidden(_))), "{widen:?}");
    // Another team of the organisation: refused, whatever it asks.
    let gum = world.context("gum", "gum@example.org");
    for labels in [LabelSet::EMPTY, LabelSet::ALL] {
        let refused = world.app.change_consent(
            &ConsentActor::Professional { context: &gum, reason: Some(&why) },
            patient,
            mh,
            labels,
        );
        assert!(matches!(refused, Err(AppError::Denied)), "{refused:?}");
    }
    // Another organisation's data-quality professional, on RXH's Patient Record Team:
    // refused the same way for the patient and for an id no record has.
    let dq_b = context_in(&world, &rxb(), "prt", "dq.b@example.org");
    let unknown = kith_core::PatientId::from_uuid(uuid::Uuid::now_v7());
    for target in [patient, unknown] {
        let refused = world.app.change_consent(
            &ConsentActor::Professional { context: &dq_b, reason: Some(&why) },
            target,
            prt_a,
            GENERAL,
        );
        assert!(matches!(refused, Err(AppError::Denied)), "{refused:?}");
    }
    // RXB's data-quality staff act on RXB's own Patient Record Team only, and the
    // patient is not in RXB: the same answer as for no record.
    let own_prt = world.app.change_consent(
        &ConsentActor::Professional { context: &dq_b, reason: Some(&why) },
        patient,
        dq_b.team,
        GENERAL,
    );
    assert!(matches!(own_prt, Err(AppError::Denied)), "{own_prt:?}");

    // RXH's privacy officer lists every change and attempt on RXH's teams, with the
    // reasons; RXB's lists the attempt on its own team only; others may not look.
    let officer_a = account_id(&world, "privacy@example.org");
    let officer_b = account_id(&world, "privacy.b@example.org");
    let review =
        |officer| world.app.officer_review(officer, OfficerReview::OnBehalfConsent, None, 100, Channel::Fhir).unwrap();
    let seen_a = review(officer_a);
    let allowed: Vec<_> = seen_a.iter().filter(|e| e.entry.outcome == "allowed").collect();
    assert_eq!(allowed.len(), 1, "{seen_a:?}");
    assert_eq!(allowed[0].entry.basis.as_deref(), Some("on_behalf_of_patient"));
    assert_eq!(allowed[0].reason.as_deref(), Some(why.as_str()));
    assert_eq!(allowed[0].subject.as_deref(), Some("labels general,mental_health -> general"));
    assert_eq!(allowed[0].organisation.as_deref(), Some("Riverside Hospitals"));
    let denied: Vec<_> = seen_a.iter().filter(|e| e.entry.outcome == "denied").collect();
    assert_eq!(denied.len(), 5, "widen, two by gum, two by RXB on RXH's PRT: {denied:?}");
    assert!(denied.iter().all(|e| e.reason.as_deref().is_some_and(|r| r.contains(why.as_str()))));
    let dq_b_account = account_id(&world, "dq.b@example.org");
    assert_eq!(denied.iter().filter(|e| e.entry.actor == Some(dq_b_account)).count(), 2);
    let seen_b = review(officer_b);
    assert_eq!(seen_b.len(), 1, "{seen_b:?}");
    assert_eq!(seen_b[0].entry.actor, Some(dq_b_account));
    let not_an_officer =
        world.app.officer_review(pro.account, OfficerReview::OnBehalfConsent, None, 100, Channel::Fhir);
    assert!(matches!(not_an_officer, Err(AppError::Forbidden(_))));
    // One patient's events only, when asked.
    let about =
        world.app.officer_review(officer_a, OfficerReview::OnBehalfConsent, Some(unknown), 100, Channel::Fhir).unwrap();
    assert!(about.is_empty(), "{about:?}");
}

fn nhs(number: &str) -> PatientQuery {
    PatientQuery::NhsNumber(NhsNumber::parse(number).unwrap())
}

fn birth(text: &str) -> Date {
    Date::parse(text).unwrap()
}

/// A patient of RXB only.
fn rxb_patient(world: &World) -> Patient {
    world
        .app
        .create_patient(
            &operator(),
            &NewPatient {
                organisation: rxb(),
                demographics: demographics("Bola"),
                nhs_number: Some(NhsNumber::parse("9999999468").unwrap()),
                local_identifiers: vec![],
                teams: vec![],
            },
        )
        .unwrap()
}

on_each_engine!(add_patient_misses_are_one_answer_audited_with_the_patient_and_limited_per_professional);
fn add_patient_misses_are_one_answer_audited_with_the_patient_and_limited_per_professional(database: TestDatabase) {
    let world = world(database);
    second_organisation(&world);
    let rxb_patient = rxb_patient(&world);
    let card = team_id(&world, &rxb(), "card");
    let pro_b = account_id(&world, "card.b@example.org");
    let add = |identifier: &PatientQuery, born: &str| {
        world.app.add_patient_to_team_as(pro_b, Channel::Fhir, card, identifier, birth(born), &AddBasis::Referral)
    };
    // RXH's patient, the right NHS number and date of birth, from RXB's cardiology: the
    // same answer as a wrong date of birth and an unknown number.
    let misses = [
        add(&nhs("9434765919"), "1971-09-14"),
        add(&nhs("9434765919"), "1971-09-15"),
        add(&nhs("9876543210"), "1971-09-14"),
    ];
    for miss in &misses {
        assert!(matches!(miss, Err(AppError::Denied)), "{miss:?}");
    }
    // Audited with the patient when there is one: the patient sees both attempts.
    let account = world
        .app
        .register_patient_account(&operator(), &code(), world.patient.id, &email("ngozi@example.org"), FAKE_HASH)
        .unwrap();
    let log = world.app.access_log(account.id, false, None, 100, Channel::Web).unwrap();
    let attempts: Vec<_> = log.iter().filter(|e| e.action == "care_link.create" && e.actor == Some(pro_b)).collect();
    assert_eq!(attempts.len(), 2, "{log:?}");
    assert!(attempts.iter().all(|e| e.outcome == "denied" && e.team.as_deref() == Some("Cardiology")));
    let reasons: Vec<String> = world
        .app
        .audit_events(Some(world.patient.id), 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.record.action == "care_link.create" && e.record.actor_account == Some(pro_b))
        .filter_map(|e| e.record.reason)
        .collect();
    assert_eq!(
        reasons,
        ["no match: the patient is not in the team's organisation", "no match: the date of birth does not match"]
    );

    // Ten misses an hour; the tenth tells RXB's privacy officer, once; then every
    // look-up is refused without looking, even one that would match.
    for _ in misses.len()..MAX_LOOKUP_MISSES_PER_HOUR as usize {
        assert!(matches!(add(&nhs("9876543210"), "1971-09-14"), Err(AppError::Denied)));
    }
    assert_eq!(outbox_to(&world, "patient_lookup_limit_privacy_officer", "privacy.b@example.org"), 1);
    assert_eq!(outbox_to(&world, "patient_lookup_limit_privacy_officer", "privacy@example.org"), 0);
    let refused = add(&nhs("9999999468"), "1971-09-14");
    assert!(matches!(refused, Err(AppError::TooManyAttempts(_))), "{refused:?}");
    assert!(!refused.unwrap_err().to_string().contains("9999999468"));
    assert!(matches!(add(&nhs("9876543210"), "1971-09-14"), Err(AppError::TooManyAttempts(_))));
    assert_eq!(outbox_to(&world, "patient_lookup_limit_privacy_officer", "privacy.b@example.org"), 1);
    let officer_b = account_id(&world, "privacy.b@example.org");
    let limits = world.app.officer_review(officer_b, OfficerReview::LookupLimit, None, 100, Channel::Fhir).unwrap();
    assert_eq!(limits.len(), 1);
    assert_eq!(limits[0].entry.actor, Some(pro_b));
    let attempts = world.app.officer_review(officer_b, OfficerReview::AddPatient, None, 100, Channel::Fhir).unwrap();
    let by_pro_b = attempts.iter().filter(|e| e.entry.actor == Some(pro_b)).count();
    assert_eq!(by_pro_b, 12, "ten misses and two refused: {attempts:?}");
    // Another professional is not held back; an hour later this one may look again,
    // and a hit does not count.
    world.clock.advance(Duration::from_secs(3601));
    let link = add(&nhs("9999999468"), "1971-09-14").unwrap();
    assert_eq!((link.patient, link.team), (rxb_patient.id, card));
    let again = add(&nhs("9999999468"), "1971-09-14");
    assert!(matches!(again, Err(AppError::Conflict(_))), "in the team already: {again:?}");
}

on_each_engine!(a_coordinator_s_identity_checks_are_limited_matched_or_not);
fn a_coordinator_s_identity_checks_are_limited_matched_or_not(database: TestDatabase) {
    let world = world(database);
    second_organisation(&world);
    world.add_member("prt", "prt.c1@example.org", MembershipRole::Coordinator);
    let coordinator = account_id(&world, "prt.c1@example.org");
    let prt = team_id(&world, &code(), "prt");
    let number = NhsNumber::parse("9434765919").unwrap();
    let check = |family: &'static str| IdentityCheck {
        nhs_number: &number,
        family_name: family,
        birth_date: birth("1971-09-14"),
    };
    // The patient has an email: a match sends an invitation; a mismatch nothing; the
    // answer is Ok(()) either way.
    world
        .app
        .update_patient(
            &operator(),
            &code(),
            world.patient.id,
            &PatientChanges { email: Some(email("ngozi@example.org")), ..PatientChanges::default() },
        )
        .unwrap();
    let invitations = outbox_to(&world, "patient_invitation", "ngozi@example.org");
    world.app.remind_patient_as(coordinator, prt, &check("Wrong")).unwrap();
    assert_eq!(outbox_to(&world, "patient_invitation", "ngozi@example.org"), invitations);
    world.app.remind_patient_as(coordinator, prt, &check("okafor")).unwrap();
    assert_eq!(outbox_to(&world, "patient_invitation", "ngozi@example.org"), invitations + 1);
    // Not registered: a reset sends nothing, and says the same.
    world.app.reset_patient_password_as(coordinator, prt, &check("Okafor")).unwrap();
    assert_eq!(outbox_to(&world, "password_reset", "ngozi@example.org"), 0);
    // The mismatch is audited with the patient.
    let denied = world
        .app
        .audit_events(Some(world.patient.id), 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.record.actor_account == Some(coordinator) && e.record.outcome == "denied")
        .count();
    assert_eq!(denied, 2, "the wrong family name and the reset of an unregistered patient");
    for _ in 3..MAX_IDENTITY_CHECKS_PER_HOUR {
        world.app.reset_patient_password_as(coordinator, prt, &check("Wrong")).unwrap();
    }
    assert_eq!(outbox_to(&world, "patient_lookup_limit_privacy_officer", "privacy@example.org"), 1);
    let refused = world.app.remind_patient_as(coordinator, prt, &check("okafor"));
    assert!(matches!(refused, Err(AppError::TooManyAttempts(_))), "{refused:?}");
    // RXB's Patient Record Team coordinator finds no RXH patient, with the same answer.
    let coordinator_b = account_id(&world, "coord.b@example.org");
    let prt_b = team_id(&world, &rxb(), "prt");
    let before = outbox_to(&world, "patient_invitation", "ngozi@example.org");
    world.app.remind_patient_as(coordinator_b, prt_b, &check("okafor")).unwrap();
    assert_eq!(outbox_to(&world, "patient_invitation", "ngozi@example.org"), before);
}
