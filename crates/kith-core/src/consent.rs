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
    /// A professional of a speciality team asked to add labels: on the patient's behalf a
    /// team may only narrow what it sees itself.
    #[error(
        "on the patient's behalf a team's professional may only remove labels; the patient adds them (or, for the \
         Patient Record Team only, its data-quality staff)"
    )]
    OnlyDataQualityMayAdd,
    /// The Patient Record Team's data-quality staff asked for a label their organisation
    /// does not let them add on a patient's behalf.
    #[error("the organisation lets its data-quality staff add only these labels on a patient's behalf: {}", allowed_words(.allowed))]
    LabelNotAllowedOnBehalf { allowed: LabelSet },
    #[error("not permitted")]
    Denied(DenyReason),
}

fn allowed_words(allowed: &LabelSet) -> String {
    if allowed.is_empty() { "none".to_owned() } else { allowed.to_string() }
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

/// An active account with an active *professional* membership of the team: the
/// precondition of every clinical action through a team (coordinator status grants none).
fn check_team_professional(
    account_status: AccountStatus,
    membership: Option<MembershipFacts>,
) -> Result<(), DenyReason> {
    if account_status != AccountStatus::Active {
        return Err(DenyReason::AccountNotActive(account_status));
    }
    match membership {
        None => Err(DenyReason::NotAMemberOfTeam),
        Some(MembershipFacts { status: MembershipStatus::Deactivated, .. }) => Err(DenyReason::MembershipDeactivated),
        Some(MembershipFacts { role: MembershipRole::Coordinator, .. }) => {
            Err(DenyReason::CoordinatorRoleHasNoClinicalAccess)
        }
        Some(MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Active }) => Ok(()),
    }
}

/// Who asks to change a team's labels for a patient.
#[derive(Clone, Debug)]
pub enum ConsentChanger<'a> {
    /// The patient, on their own record.
    Patient { account_status: AccountStatus },
    /// A professional, on the patient's behalf: their membership of the link's team (none
    /// when they are not a member, or act through another team) and the reason they give.
    Professional { account_status: AccountStatus, membership: Option<MembershipFacts>, reason: Option<&'a Reason> },
}

/// Where the patient stands with the team whose labels would change.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LinkState {
    /// No record has the id asked about.
    NoRecord,
    /// The record has never been linked to the team.
    NotLinked,
    /// The patient was discharged from the team.
    Discharged,
    /// The patient is in the team, which sees `labels`.
    Active { labels: LabelSet },
}

/// The facts about a consent change on the link (X, T).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConsentChangeFacts {
    pub team_kind: TeamKind,
    /// The labels T's organisation lets its data-quality staff add to its Patient Record
    /// Team's link on a patient's behalf (an organisation setting; general health unless
    /// the operator changes it).
    pub on_behalf_labels: LabelSet,
    pub link: LinkState,
    pub requested: LabelSet,
    pub sharing_disabled: bool,
}

/// Who may change what team T sees of patient X's record (DESIGN.md §1 "Data quality", §3a
/// "Consent on the patient's behalf"):
///
/// - the patient, at any time, while T is linked — with sharing disabled only to remove;
/// - on the patient's behalf, always with a reason, an active professional of T itself:
///   - to **remove** labels (narrowing), in any team: the patient asks in clinic; it can
///     only reduce what that professional's own team sees;
///   - to **add** labels only when T is the organisation's Patient Record Team (its
///     members are the data-quality staff), only labels the organisation allows on a
///     patient's behalf, never on a record whose sharing is disabled.
///
/// Everything decided before the patient is looked at (who asks, the reason) is the same
/// whether or not the record exists; a professional is told nothing more about a record
/// until it is known to be in their own team (then they may see who the patient is anyway):
/// a missing record, no link and a discharged link are one refusal,
/// [`ConsentRefusal::Denied`].
pub fn decide_consent_change(
    changer: &ConsentChanger<'_>,
    facts: &ConsentChangeFacts,
) -> Result<LinkBasis, ConsentRefusal> {
    let adds = LabelSet::from_bits(facts.requested.bits() & !current_labels(facts.link).bits()).unwrap_or_default();
    match changer {
        ConsentChanger::Patient { account_status } => {
            if *account_status != AccountStatus::Active {
                return Err(ConsentRefusal::Denied(DenyReason::AccountNotActive(*account_status)));
            }
            match facts.link {
                LinkState::NoRecord => return Err(ConsentRefusal::Denied(DenyReason::NotTheirRecord)),
                LinkState::NotLinked | LinkState::Discharged => return Err(ConsentRefusal::NotInTeam),
                LinkState::Active { .. } => {}
            }
            if facts.sharing_disabled && !adds.is_empty() {
                return Err(ConsentRefusal::SharingDisabled);
            }
            Ok(LinkBasis::PatientChoice)
        }
        ConsentChanger::Professional { account_status, membership, reason } => {
            check_team_professional(*account_status, *membership).map_err(ConsentRefusal::Denied)?;
            if reason.is_none() {
                return Err(ConsentRefusal::ReasonRequired);
            }
            match facts.link {
                LinkState::NoRecord => return Err(ConsentRefusal::Denied(DenyReason::NoRelationshipWithPatient)),
                LinkState::NotLinked => return Err(ConsentRefusal::Denied(DenyReason::NoCareLink)),
                LinkState::Discharged => return Err(ConsentRefusal::Denied(DenyReason::CareLinkDischarged)),
                LinkState::Active { .. } => {}
            }
            if adds.is_empty() {
                return Ok(LinkBasis::OnBehalfOfPatient);
            }
            if facts.team_kind != TeamKind::PatientRecord {
                return Err(ConsentRefusal::OnlyDataQualityMayAdd);
            }
            if facts.sharing_disabled {
                return Err(ConsentRefusal::SharingDisabled);
            }
            if adds.iter().any(|label| !facts.on_behalf_labels.contains(label)) {
                return Err(ConsentRefusal::LabelNotAllowedOnBehalf { allowed: facts.on_behalf_labels });
            }
            Ok(LinkBasis::OnBehalfOfPatient)
        }
    }
}

fn current_labels(link: LinkState) -> LabelSet {
    match link {
        LinkState::Active { labels } => labels,
        LinkState::NoRecord | LinkState::NotLinked | LinkState::Discharged => LabelSet::EMPTY,
    }
}

/// What a professional's exact look-up (an identifier and a date of birth) found, to bring
/// the patient into their team.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LookupResult {
    /// No record has the identifier.
    NoRecord,
    /// A record has the identifier, with another date of birth.
    BirthDateDiffers,
    /// A record has both.
    Found {
        /// It is linked to the Patient Record Team of the team's organisation.
        patient_in_organisation: bool,
        sharing_disabled: bool,
        /// It has an active link to the team already.
        in_team: bool,
    },
}

/// The facts about bringing a looked-up patient into team T.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AddPatientFacts {
    pub account_status: AccountStatus,
    /// The caller's membership of T.
    pub membership: Option<MembershipFacts>,
    pub team_kind: TeamKind,
    pub team_status: TeamStatus,
    pub found: LookupResult,
}

/// Why a looked-up patient is not brought into the team.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AddPatientRefusal {
    /// The caller may not bring anyone into this team (the same whatever the patient).
    Caller(DenyReason),
    /// The team is closed (the same whatever the patient).
    TeamClosed,
    /// Nothing the caller may be told about: no record, another date of birth, a record
    /// outside the team's organisation or with sharing disabled. One answer for all, and a
    /// miss against the caller's look-up limit; the text is for the audit trail only.
    NoMatch(&'static str),
    /// The patient is in the team already (the caller may see who they are anyway).
    AlreadyInTeam,
}

/// May an active professional of T bring the patient their look-up found into T? Caller
/// and team are decided before the record is looked at, so that their refusals say nothing
/// about it; every refusal that depends on the record is [`AddPatientRefusal::NoMatch`]
/// (no existence oracle). A team takes only patients already in its organisation — a
/// professional never brings a patient of another organisation in, not even through the
/// Patient Record Team (the organisation's own feed does that); nobody enters a closed
/// team or a locked-down record.
pub fn decide_add_patient(facts: &AddPatientFacts) -> Result<(), AddPatientRefusal> {
    check_team_professional(facts.account_status, facts.membership).map_err(AddPatientRefusal::Caller)?;
    if facts.team_status == TeamStatus::Closed {
        return Err(AddPatientRefusal::TeamClosed);
    }
    match facts.found {
        LookupResult::NoRecord => Err(AddPatientRefusal::NoMatch("no record has the identifier")),
        LookupResult::BirthDateDiffers => Err(AddPatientRefusal::NoMatch("the date of birth does not match")),
        // The link the patient would get is decided as every new link is (`check_new_link`,
        // asked by a professional: never into another organisation), and every refusal of
        // it says nothing about the record.
        LookupResult::Found { patient_in_organisation, sharing_disabled, in_team } => {
            let link = NewLinkFacts {
                team_kind: facts.team_kind,
                team_status: facts.team_status,
                sharing_disabled,
                patient_in_organisation,
                by_professional: true,
            };
            match check_new_link(&link) {
                Err(ConsentRefusal::SharingDisabled) => {
                    Err(AddPatientRefusal::NoMatch("sharing is disabled on the record"))
                }
                Err(_) => Err(AddPatientRefusal::NoMatch("the patient is not in the team's organisation")),
                Ok(()) if in_team => Err(AddPatientRefusal::AlreadyInTeam),
                Ok(()) => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

/// Why a break-the-glass request by look-up (an identifier and a date of birth) is refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BreakGlassLookupRefusal {
    /// The caller may not break the glass through the team, whatever the record: decided
    /// before anything about the record counts, so that no answer depends on it.
    Caller(crate::DenyReason),
    /// A miss: no record, another date of birth, or a record [`crate::access::decide_break_glass`] refuses
    /// (another organisation's, sharing disabled). Every miss is the same answer and counts
    /// against the caller's look-up allowance.
    NoMatch(&'static str),
}

/// A break-the-glass request by look-up, from what the look-up found: the caller first, then
/// the record, every refusal about which is a miss.
pub fn decide_break_glass_lookup(
    account_status: crate::team::AccountStatus,
    membership: Option<crate::access::MembershipFacts>,
    found: LookupResult,
) -> Result<(), BreakGlassLookupRefusal> {
    crate::access::decide_workspace(account_status, membership).map_err(BreakGlassLookupRefusal::Caller)?;
    match found {
        LookupResult::NoRecord => Err(BreakGlassLookupRefusal::NoMatch("no record has the identifier")),
        LookupResult::BirthDateDiffers => Err(BreakGlassLookupRefusal::NoMatch("the date of birth differs")),
        LookupResult::Found { patient_in_organisation, sharing_disabled, .. } => {
            let facts = crate::access::BreakGlassRequestFacts {
                account_status,
                membership,
                patient_in_organisation,
                sharing_disabled,
            };
            crate::access::decide_break_glass(&facts).map_err(|reason| {
                BreakGlassLookupRefusal::NoMatch(match reason {
                    crate::DenyReason::SharingDisabled => "sharing is disabled on the record",
                    _ => "the patient is not in the team's organisation",
                })
            })
        }
    }
}
