//! Consent on the patient's behalf and bringing a patient into a team: a table of named rows
//! (the same rows as ARCHITECTURE.md's "Consent on the patient's behalf" table), then every
//! combination checked for the property that makes the answers safe to send — nothing
//! decided about the record leaks out before the caller is known to be in its team.

use kith_core::DenyReason;
use kith_core::access::MembershipFacts;
use kith_core::consent::{
    AddPatientFacts, AddPatientRefusal, ConsentChangeFacts, ConsentChanger, ConsentRefusal, LinkBasis, LinkState,
    LookupResult, decide_add_patient, decide_consent_change,
};
use kith_core::team::{AccountStatus, MembershipRole, MembershipStatus, TeamKind, TeamStatus};
use kith_core::text::Reason;
use kith_core::{LabelSet, PrivacyLabel};

const ACTIVE_PROFESSIONAL: Option<MembershipFacts> =
    Some(MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Active });
const GENERAL: LabelSet = LabelSet::EMPTY.with(PrivacyLabel::General);
const GENERAL_MENTAL: LabelSet = GENERAL.with(PrivacyLabel::MentalHealth);

fn reason() -> Reason {
    Reason::parse("Duplicate record investigation requested by the ward").unwrap()
}

fn facts(team_kind: TeamKind, link: LinkState, requested: LabelSet) -> ConsentChangeFacts {
    ConsentChangeFacts { team_kind, on_behalf_labels: GENERAL, link, requested, sharing_disabled: false }
}

fn active(labels: LabelSet) -> LinkState {
    LinkState::Active { labels }
}

#[test]
fn who_may_change_consent_and_on_what_basis() {
    let reason = reason();
    let patient = ConsentChanger::Patient { account_status: AccountStatus::Active };
    let professional =
        |membership, reason| ConsentChanger::Professional { account_status: AccountStatus::Active, membership, reason };
    let data_quality = professional(ACTIVE_PROFESSIONAL, Some(&reason));
    let prt = TeamKind::PatientRecord;
    let speciality = TeamKind::Speciality;
    let locked_down = |facts: ConsentChangeFacts| ConsentChangeFacts { sharing_disabled: true, ..facts };
    let organisation_allows_all =
        |facts: ConsentChangeFacts| ConsentChangeFacts { on_behalf_labels: LabelSet::ALL, ..facts };
    let rows: Vec<(&str, ConsentChanger<'_>, ConsentChangeFacts, Result<LinkBasis, ConsentRefusal>)> = vec![
        // The patient.
        (
            "the patient widens",
            patient.clone(),
            facts(speciality, active(GENERAL), LabelSet::ALL),
            Ok(LinkBasis::PatientChoice),
        ),
        (
            "the patient narrows",
            patient.clone(),
            facts(speciality, active(LabelSet::ALL), GENERAL),
            Ok(LinkBasis::PatientChoice),
        ),
        (
            "the patient gives the PRT a sensitive label",
            patient.clone(),
            facts(prt, active(LabelSet::EMPTY), LabelSet::ALL),
            Ok(LinkBasis::PatientChoice),
        ),
        (
            "a locked patient account",
            ConsentChanger::Patient { account_status: AccountStatus::Locked },
            facts(speciality, active(GENERAL), LabelSet::EMPTY),
            Err(ConsentRefusal::Denied(DenyReason::AccountNotActive(AccountStatus::Locked))),
        ),
        (
            "the patient adds with sharing disabled",
            patient.clone(),
            locked_down(facts(prt, active(LabelSet::EMPTY), GENERAL)),
            Err(ConsentRefusal::SharingDisabled),
        ),
        (
            "the patient removes with sharing disabled",
            patient.clone(),
            locked_down(facts(prt, active(GENERAL), LabelSet::EMPTY)),
            Ok(LinkBasis::PatientChoice),
        ),
        (
            "the patient, a discharged team",
            patient.clone(),
            facts(speciality, LinkState::Discharged, GENERAL),
            Err(ConsentRefusal::NotInTeam),
        ),
        // The Patient Record Team's data-quality staff, for the PRT's own link.
        (
            "data quality adds general health to the PRT",
            data_quality.clone(),
            facts(prt, active(LabelSet::EMPTY), GENERAL),
            Ok(LinkBasis::OnBehalfOfPatient),
        ),
        (
            "data quality adds a label the organisation does not allow",
            data_quality.clone(),
            facts(prt, active(LabelSet::EMPTY), GENERAL_MENTAL),
            Err(ConsentRefusal::LabelNotAllowedOnBehalf { allowed: GENERAL }),
        ),
        (
            "data quality, the organisation allows every label",
            data_quality.clone(),
            organisation_allows_all(facts(prt, active(LabelSet::EMPTY), LabelSet::ALL)),
            Ok(LinkBasis::OnBehalfOfPatient),
        ),
        (
            "data quality keeps a sensitive label the patient gave and adds general",
            data_quality.clone(),
            facts(prt, active(LabelSet::EMPTY.with(PrivacyLabel::MentalHealth)), GENERAL_MENTAL),
            Ok(LinkBasis::OnBehalfOfPatient),
        ),
        (
            "data quality without a reason",
            professional(ACTIVE_PROFESSIONAL, None),
            facts(prt, active(LabelSet::EMPTY), GENERAL),
            Err(ConsentRefusal::ReasonRequired),
        ),
        (
            "data quality adds with sharing disabled",
            data_quality.clone(),
            locked_down(facts(prt, active(LabelSet::EMPTY), GENERAL)),
            Err(ConsentRefusal::SharingDisabled),
        ),
        (
            "data quality removes",
            data_quality.clone(),
            facts(prt, active(GENERAL), LabelSet::EMPTY),
            Ok(LinkBasis::OnBehalfOfPatient),
        ),
        (
            "data quality, a patient not in the organisation",
            data_quality.clone(),
            facts(prt, LinkState::NotLinked, GENERAL),
            Err(ConsentRefusal::Denied(DenyReason::NoCareLink)),
        ),
        // A speciality team's professional, for their own team's link.
        (
            "a team's professional narrows their own team",
            data_quality.clone(),
            facts(speciality, active(GENERAL_MENTAL), GENERAL),
            Ok(LinkBasis::OnBehalfOfPatient),
        ),
        (
            "a team's professional narrows their own team to nothing",
            data_quality.clone(),
            facts(speciality, active(GENERAL_MENTAL), LabelSet::EMPTY),
            Ok(LinkBasis::OnBehalfOfPatient),
        ),
        (
            "a team's professional widens their own team",
            data_quality.clone(),
            facts(speciality, active(GENERAL), LabelSet::ALL),
            Err(ConsentRefusal::OnlyDataQualityMayAdd),
        ),
        (
            "a team's professional narrows without a reason",
            professional(ACTIVE_PROFESSIONAL, None),
            facts(speciality, active(GENERAL_MENTAL), GENERAL),
            Err(ConsentRefusal::ReasonRequired),
        ),
        // Everyone else: one refusal, whatever the record.
        (
            "a professional of another team",
            professional(None, Some(&reason)),
            facts(speciality, active(GENERAL_MENTAL), GENERAL),
            Err(ConsentRefusal::Denied(DenyReason::NotAMemberOfTeam)),
        ),
        (
            "a coordinator of the team",
            professional(
                Some(MembershipFacts { role: MembershipRole::Coordinator, status: MembershipStatus::Active }),
                Some(&reason),
            ),
            facts(prt, active(LabelSet::EMPTY), GENERAL),
            Err(ConsentRefusal::Denied(DenyReason::CoordinatorRoleHasNoClinicalAccess)),
        ),
        (
            "a deactivated member",
            professional(
                Some(MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Deactivated }),
                Some(&reason),
            ),
            facts(prt, active(LabelSet::EMPTY), GENERAL),
            Err(ConsentRefusal::Denied(DenyReason::MembershipDeactivated)),
        ),
        (
            "a disabled account",
            ConsentChanger::Professional {
                account_status: AccountStatus::Disabled,
                membership: ACTIVE_PROFESSIONAL,
                reason: Some(&reason),
            },
            facts(prt, active(LabelSet::EMPTY), GENERAL),
            Err(ConsentRefusal::Denied(DenyReason::AccountNotActive(AccountStatus::Disabled))),
        ),
        (
            "a member, no such record",
            data_quality.clone(),
            facts(prt, LinkState::NoRecord, GENERAL),
            Err(ConsentRefusal::Denied(DenyReason::NoRelationshipWithPatient)),
        ),
        (
            "a member, a discharged patient",
            data_quality.clone(),
            facts(speciality, LinkState::Discharged, LabelSet::EMPTY),
            Err(ConsentRefusal::Denied(DenyReason::CareLinkDischarged)),
        ),
    ];
    for (row, changer, facts, expected) in rows {
        assert_eq!(decide_consent_change(&changer, &facts), expected, "{row}");
    }
}

fn all_label_sets() -> impl Iterator<Item = LabelSet> + Clone {
    (0..16).map(|bits| LabelSet::from_bits(bits).unwrap())
}

fn all_memberships() -> Vec<Option<MembershipFacts>> {
    let mut memberships = vec![None];
    for role in MembershipRole::ALL {
        for status in MembershipStatus::ALL {
            memberships.push(Some(MembershipFacts { role: *role, status: *status }));
        }
    }
    memberships
}

/// For a professional, every answer that does not depend on the record is the same for a
/// missing record as for any record; every answer about a record outside the caller's
/// team is the generic refusal; and the rule never lets anyone but the patient and the
/// Patient Record Team's own professionals add a label.
#[test]
fn no_answer_to_a_professional_depends_on_a_record_outside_their_team() {
    let reason = reason();
    let mut states = vec![LinkState::NoRecord, LinkState::NotLinked, LinkState::Discharged];
    states.extend(all_label_sets().map(|labels| LinkState::Active { labels }));
    let mut checked = 0;
    for account_status in AccountStatus::ALL {
        for membership in all_memberships() {
            for given_reason in [None, Some(&reason)] {
                let changer =
                    ConsentChanger::Professional { account_status: *account_status, membership, reason: given_reason };
                for team_kind in TeamKind::ALL {
                    for on_behalf_labels in all_label_sets() {
                        for requested in all_label_sets() {
                            for sharing_disabled in [false, true] {
                                let base = ConsentChangeFacts {
                                    team_kind: *team_kind,
                                    on_behalf_labels,
                                    link: LinkState::NoRecord,
                                    requested,
                                    sharing_disabled,
                                };
                                let without_record = decide_consent_change(&changer, &base);
                                for link in &states {
                                    let decided =
                                        decide_consent_change(&changer, &ConsentChangeFacts { link: *link, ..base });
                                    checked += 1;
                                    match link {
                                        LinkState::Active { labels } => {
                                            if without_record
                                                != Err(ConsentRefusal::Denied(DenyReason::NoRelationshipWithPatient))
                                            {
                                                assert_eq!(decided, without_record, "{changer:?} {link:?}");
                                            }
                                            let adds = requested.iter().any(|label| !labels.contains(label));
                                            if decided.is_ok() && adds {
                                                assert_eq!(*team_kind, TeamKind::PatientRecord);
                                                assert!(given_reason.is_some() && !sharing_disabled);
                                                assert_eq!(membership, ACTIVE_PROFESSIONAL);
                                                assert!(
                                                    requested
                                                        .iter()
                                                        .all(|l| labels.contains(l) || on_behalf_labels.contains(l))
                                                );
                                            }
                                        }
                                        _ => assert!(
                                            matches!(decided, Err(ConsentRefusal::Denied(_)))
                                                || decided == without_record,
                                            "{changer:?} {link:?}: {decided:?} against {without_record:?}"
                                        ),
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 100_000, "{checked}");
}

fn add(found: LookupResult) -> AddPatientFacts {
    AddPatientFacts {
        account_status: AccountStatus::Active,
        membership: ACTIVE_PROFESSIONAL,
        team_kind: TeamKind::Speciality,
        team_status: TeamStatus::Live,
        found,
    }
}

const IN_ORGANISATION: LookupResult =
    LookupResult::Found { patient_in_organisation: true, sharing_disabled: false, in_team: false };

#[test]
fn who_may_bring_a_looked_up_patient_into_a_team() {
    let elsewhere = LookupResult::Found { patient_in_organisation: false, sharing_disabled: false, in_team: false };
    let rows = [
        ("a patient of the organisation", add(IN_ORGANISATION), Ok(())),
        ("no record", add(LookupResult::NoRecord), Err(AddPatientRefusal::NoMatch("no record has the identifier"))),
        (
            "another date of birth",
            add(LookupResult::BirthDateDiffers),
            Err(AddPatientRefusal::NoMatch("the date of birth does not match")),
        ),
        (
            "a patient of another organisation, into a speciality team",
            add(elsewhere),
            Err(AddPatientRefusal::NoMatch("the patient is not in the team's organisation")),
        ),
        (
            "a patient of another organisation, into the Patient Record Team",
            AddPatientFacts { team_kind: TeamKind::PatientRecord, ..add(elsewhere) },
            Err(AddPatientRefusal::NoMatch("the patient is not in the team's organisation")),
        ),
        (
            "a locked-down record",
            add(LookupResult::Found { patient_in_organisation: true, sharing_disabled: true, in_team: true }),
            Err(AddPatientRefusal::NoMatch("sharing is disabled on the record")),
        ),
        (
            "already in the team",
            add(LookupResult::Found { patient_in_organisation: true, sharing_disabled: false, in_team: true }),
            Err(AddPatientRefusal::AlreadyInTeam),
        ),
        (
            "a closed team",
            AddPatientFacts { team_status: TeamStatus::Closed, ..add(IN_ORGANISATION) },
            Err(AddPatientRefusal::TeamClosed),
        ),
        (
            "a coordinator",
            AddPatientFacts {
                membership: Some(MembershipFacts {
                    role: MembershipRole::Coordinator,
                    status: MembershipStatus::Active,
                }),
                ..add(IN_ORGANISATION)
            },
            Err(AddPatientRefusal::Caller(DenyReason::CoordinatorRoleHasNoClinicalAccess)),
        ),
        (
            "not a member",
            AddPatientFacts { membership: None, ..add(IN_ORGANISATION) },
            Err(AddPatientRefusal::Caller(DenyReason::NotAMemberOfTeam)),
        ),
    ];
    for (row, facts, expected) in rows {
        assert_eq!(decide_add_patient(&facts), expected, "{row}");
    }
}

/// The refusals that depend only on the caller and the team come first and are the same
/// whatever the look-up found; everything else about the record is `NoMatch` until the
/// patient would be in the caller's team.
#[test]
fn an_add_patient_refusal_says_nothing_about_the_record() {
    let mut found = vec![LookupResult::NoRecord, LookupResult::BirthDateDiffers];
    for patient_in_organisation in [false, true] {
        for sharing_disabled in [false, true] {
            for in_team in [false, true] {
                found.push(LookupResult::Found { patient_in_organisation, sharing_disabled, in_team });
            }
        }
    }
    for account_status in AccountStatus::ALL {
        for membership in all_memberships() {
            for team_kind in TeamKind::ALL {
                for team_status in TeamStatus::ALL {
                    let facts = |found| AddPatientFacts {
                        account_status: *account_status,
                        membership,
                        team_kind: *team_kind,
                        team_status: *team_status,
                        found,
                    };
                    let without_record = decide_add_patient(&facts(LookupResult::NoRecord));
                    for found in &found {
                        let decided = decide_add_patient(&facts(*found));
                        match without_record {
                            Err(AddPatientRefusal::NoMatch(_)) => assert!(
                                matches!(
                                    decided,
                                    Ok(()) | Err(AddPatientRefusal::NoMatch(_) | AddPatientRefusal::AlreadyInTeam)
                                ),
                                "{found:?}: {decided:?}"
                            ),
                            other => assert_eq!(decided, other, "{found:?}"),
                        }
                        if let Err(AddPatientRefusal::AlreadyInTeam) | Ok(()) = decided {
                            assert!(matches!(found, LookupResult::Found { sharing_disabled: false, .. }));
                        }
                    }
                }
            }
        }
    }
}
