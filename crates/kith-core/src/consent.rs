//! Care links and consent: how a patient comes to be in a team, and who may change what a
//! team sees.

use crate::access::{DenyReason, MembershipFacts};
use crate::label::LabelSet;
use crate::team::{AccountStatus, MembershipRole, MembershipStatus, TeamKind, TeamStatus, coded_enum};
use crate::text::Reason;

coded_enum!(
    /// Why a care link exists, or why its labels last changed.
    LinkBasis {
        /// The record was created in the organisation, in its Patient Record Team.
        OrganisationRecord => "organisation_record",
        /// The organisation's HL7 feed added the patient to the team (`ZTM`).
        Hl7ImpliedConsent => "hl7_implied_consent",
        /// A professional added the patient with the patient's explicit consent.
        ProfessionalExplicitConsent => "professional_explicit_consent",
        /// A professional added the patient on implied consent (a referral).
        ProfessionalImpliedConsent => "professional_implied_consent",
        /// The patient chose.
        PatientChoice => "patient_choice",
        /// A professional recorded a change on the patient's behalf, with a reason.
        OnBehalfOfPatient => "on_behalf_of_patient",
        /// The operator added the patient (set-up and data loads).
        AddedByOperator => "added_by_operator",
    }
);

/// Why a patient cannot be brought into a team, or its consent cannot change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentRefusal {
    #[error("sharing is disabled on this record: contact the organisation's privacy officer")]
    SharingDisabled,
    #[error("the team is closed")]
    TeamClosed,
    #[error("the patient is not in the team's organisation: add them to its Patient Record Team first")]
    PatientNotInOrganisation,
    #[error("the patient is not in this team: bring them into the team first")]
    NotInTeam,
    #[error("a change on the patient's behalf needs a reason")]
    ReasonRequired,
    #[error("not permitted")]
    Denied(DenyReason),
}

/// The facts about a new care link (patient X into team T).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NewLinkFacts {
    pub team_kind: TeamKind,
    pub team_status: TeamStatus,
    pub sharing_disabled: bool,
    /// X has an active link to the Patient Record Team of T's organisation.
    pub patient_in_organisation: bool,
    /// A professional asks, acting through a team (not the operator, nor the
    /// organisation's own feed).
    pub by_professional: bool,
}

/// A patient enters an organisation through its Patient Record Team, and a speciality team
/// only once in the organisation; nobody enters a closed team or a locked-down record. Only
/// the organisation's feed or the operator brings a patient into an organisation: a
/// professional (even of the Patient Record Team) adds only patients already in it, so
/// that no one pulls another organisation's patient into their own by NHS number and date
/// of birth (and so gains break glass on them).
pub fn check_new_link(facts: &NewLinkFacts) -> Result<(), ConsentRefusal> {
    if facts.sharing_disabled {
        return Err(ConsentRefusal::SharingDisabled);
    }
    if facts.team_status == TeamStatus::Closed {
        return Err(ConsentRefusal::TeamClosed);
    }
    if (facts.team_kind == TeamKind::Speciality || facts.by_professional) && !facts.patient_in_organisation {
        return Err(ConsentRefusal::PatientNotInOrganisation);
    }
    Ok(())
}

/// Who asks to change a team's labels for a patient.
#[derive(Clone, Debug)]
pub enum ConsentChanger<'a> {
    /// The patient, on their own record.
    Patient { account_status: AccountStatus },
    /// A professional of the team, on the patient's behalf.
    Professional { account_status: AccountStatus, membership: Option<MembershipFacts>, reason: Option<&'a Reason> },
}

/// The facts about a consent change on the link (X, T).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConsentChangeFacts {
    pub link_active: bool,
    pub current: LabelSet,
    pub requested: LabelSet,
    pub sharing_disabled: bool,
}

/// The patient may change consent at any time; a professional of the team may change it on
/// the patient's behalf with a stated reason. With sharing disabled labels may be removed
/// but not added.
pub fn decide_consent_change(
    changer: &ConsentChanger<'_>,
    facts: &ConsentChangeFacts,
) -> Result<crate::consent::LinkBasis, ConsentRefusal> {
    let basis = match changer {
        ConsentChanger::Patient { account_status } => {
            if *account_status != AccountStatus::Active {
                return Err(ConsentRefusal::Denied(DenyReason::AccountNotActive(*account_status)));
            }
            LinkBasis::PatientChoice
        }
        ConsentChanger::Professional { account_status, membership, reason } => {
            if *account_status != AccountStatus::Active {
                return Err(ConsentRefusal::Denied(DenyReason::AccountNotActive(*account_status)));
            }
            match membership {
                None => return Err(ConsentRefusal::Denied(DenyReason::NotAMemberOfTeam)),
                Some(MembershipFacts { status: MembershipStatus::Deactivated, .. }) => {
                    return Err(ConsentRefusal::Denied(DenyReason::MembershipDeactivated));
                }
                Some(MembershipFacts { role: MembershipRole::Coordinator, .. }) => {
                    return Err(ConsentRefusal::Denied(DenyReason::CoordinatorRoleHasNoClinicalAccess));
                }
                Some(_) => {}
            }
            if reason.is_none() {
                return Err(ConsentRefusal::ReasonRequired);
            }
            LinkBasis::OnBehalfOfPatient
        }
    };
    if !facts.link_active {
        return Err(ConsentRefusal::NotInTeam);
    }
    let adds_labels = facts.requested.bits() & !facts.current.bits() != 0;
    if facts.sharing_disabled && adds_labels {
        return Err(ConsentRefusal::SharingDisabled);
    }
    Ok(basis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label::PrivacyLabel;

    fn change(current: LabelSet, requested: LabelSet) -> ConsentChangeFacts {
        ConsentChangeFacts { link_active: true, current, requested, sharing_disabled: false }
    }

    #[test]
    fn patient_and_professional_consent_changes() {
        let general = LabelSet::EMPTY.with(PrivacyLabel::General);
        let patient = ConsentChanger::Patient { account_status: AccountStatus::Active };
        assert_eq!(decide_consent_change(&patient, &change(general, LabelSet::ALL)), Ok(LinkBasis::PatientChoice));

        let reason = Reason::parse("patient asked by phone").unwrap();
        let member = Some(MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Active });
        let professional = ConsentChanger::Professional {
            account_status: AccountStatus::Active,
            membership: member,
            reason: Some(&reason),
        };
        assert_eq!(
            decide_consent_change(&professional, &change(LabelSet::EMPTY, general)),
            Ok(LinkBasis::OnBehalfOfPatient)
        );

        let no_reason =
            ConsentChanger::Professional { account_status: AccountStatus::Active, membership: member, reason: None };
        assert_eq!(
            decide_consent_change(&no_reason, &change(LabelSet::EMPTY, general)),
            Err(ConsentRefusal::ReasonRequired)
        );

        let coordinator = ConsentChanger::Professional {
            account_status: AccountStatus::Active,
            membership: Some(MembershipFacts { role: MembershipRole::Coordinator, status: MembershipStatus::Active }),
            reason: Some(&reason),
        };
        assert_eq!(
            decide_consent_change(&coordinator, &change(LabelSet::EMPTY, general)),
            Err(ConsentRefusal::Denied(DenyReason::CoordinatorRoleHasNoClinicalAccess))
        );

        let locked = ConsentChangeFacts { sharing_disabled: true, ..change(general, LabelSet::ALL) };
        assert_eq!(decide_consent_change(&patient, &locked), Err(ConsentRefusal::SharingDisabled));
        let narrowing = ConsentChangeFacts { sharing_disabled: true, ..change(general, LabelSet::EMPTY) };
        assert_eq!(decide_consent_change(&patient, &narrowing), Ok(LinkBasis::PatientChoice));

        let discharged = ConsentChangeFacts { link_active: false, ..change(general, LabelSet::ALL) };
        assert_eq!(decide_consent_change(&patient, &discharged), Err(ConsentRefusal::NotInTeam));
    }

    #[test]
    fn new_links() {
        let facts = NewLinkFacts {
            team_kind: TeamKind::Speciality,
            team_status: TeamStatus::Live,
            sharing_disabled: false,
            patient_in_organisation: true,
            by_professional: false,
        };
        assert_eq!(check_new_link(&facts), Ok(()));
        assert_eq!(
            check_new_link(&NewLinkFacts { patient_in_organisation: false, ..facts }),
            Err(ConsentRefusal::PatientNotInOrganisation)
        );
        assert_eq!(
            check_new_link(&NewLinkFacts {
                team_kind: TeamKind::PatientRecord,
                patient_in_organisation: false,
                ..facts
            }),
            Ok(())
        );
        // A professional never brings a patient into their organisation, not even through
        // the Patient Record Team.
        for team_kind in [TeamKind::PatientRecord, TeamKind::Speciality] {
            assert_eq!(
                check_new_link(&NewLinkFacts {
                    team_kind,
                    patient_in_organisation: false,
                    by_professional: true,
                    ..facts
                }),
                Err(ConsentRefusal::PatientNotInOrganisation)
            );
            assert_eq!(check_new_link(&NewLinkFacts { team_kind, by_professional: true, ..facts }), Ok(()));
        }
        assert_eq!(
            check_new_link(&NewLinkFacts { sharing_disabled: true, ..facts }),
            Err(ConsentRefusal::SharingDisabled)
        );
        assert_eq!(
            check_new_link(&NewLinkFacts { team_status: TeamStatus::Closed, ..facts }),
            Err(ConsentRefusal::TeamClosed)
        );
    }
}
