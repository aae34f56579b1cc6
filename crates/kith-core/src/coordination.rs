//! What a coordinator may do beyond the memberships of their own team: who counts as an
//! active coordinator, which accounts join their team at once and which must accept an
//! invitation first, and when they may act on a whole account (a password reset, turning
//! two-step verification off).
//!
//! One account is one person's login across every organisation they work for (DESIGN.md
//! §2), so a change to the account reaches beyond the coordinator's team. An organisation
//! acts alone only on an account that is its own alone: an active membership of one of its
//! teams and none in another organisation, no privacy officer appointment elsewhere, and
//! not a patient's login (a record outlives organisations). Anything else is the account
//! holder's to decide, or the operator's (DESIGN.md §3, "Coordinators act inside their
//! organisation").
//!
//! ARCHITECTURE.md, "Coordinators' account-wide actions", states [`decide_account_action`]
//! as a table; `tests/coordination_table.rs` checks every row.

use std::fmt;

use crate::access::MembershipFacts;
use crate::ids::{AccountId, MembershipInvitationId, OrganisationId, TeamId};
use crate::team::{AccountStatus, MembershipRole, MembershipStatus, coded_enum};
use crate::text::{EmailAddress, Name};
use crate::time::Timestamp;

/// Why someone is not acting as an active coordinator of a team.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NotCoordinator {
    AccountNotActive(AccountStatus),
    NotAMemberOfTeam,
    MembershipDeactivated,
    ProfessionalRole,
}

impl fmt::Display for NotCoordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an active coordinator of the team: ")?;
        match self {
            NotCoordinator::AccountNotActive(status) => write!(f, "account is {status}"),
            NotCoordinator::NotAMemberOfTeam => f.write_str("not a member"),
            NotCoordinator::MembershipDeactivated => f.write_str("membership is deactivated"),
            NotCoordinator::ProfessionalRole => f.write_str("a professional, not a coordinator"),
        }
    }
}

/// The one test of "an active coordinator of the team": an active account with an active
/// coordinator membership of it.
pub fn check_coordinator(
    account_status: AccountStatus,
    membership: Option<MembershipFacts>,
) -> Result<(), NotCoordinator> {
    if account_status != AccountStatus::Active {
        return Err(NotCoordinator::AccountNotActive(account_status));
    }
    match membership {
        None => Err(NotCoordinator::NotAMemberOfTeam),
        Some(MembershipFacts { status: MembershipStatus::Deactivated, .. }) => {
            Err(NotCoordinator::MembershipDeactivated)
        }
        Some(MembershipFacts { role: MembershipRole::Professional, .. }) => Err(NotCoordinator::ProfessionalRole),
        Some(MembershipFacts { role: MembershipRole::Coordinator, status: MembershipStatus::Active }) => Ok(()),
    }
}

/// One membership of the account acted on, with its team's organisation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HeldMembership {
    pub organisation: OrganisationId,
    pub status: MembershipStatus,
}

/// Everything that ties an account to organisations.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AccountTies<'a> {
    /// Every membership of the account, whatever its status.
    pub memberships: &'a [HeldMembership],
    /// The organisations where the account is a privacy officer.
    pub privacy_officer_of: &'a [OrganisationId],
    /// The account is the login of a patient record.
    pub is_patient: bool,
}

/// Why an account is not its organisation's alone (checked in this order).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NotOrganisationsAlone {
    /// The login of a patient record, which no organisation owns.
    PatientLogin,
    /// An active membership of a team in another organisation.
    ActiveInAnotherOrganisation,
    /// A privacy officer of another organisation.
    PrivacyOfficerOfAnotherOrganisation,
    /// No active membership of any team of the organisation.
    NotActiveInOrganisation,
}

impl fmt::Display for NotOrganisationsAlone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotOrganisationsAlone::PatientLogin => "the account is a patient's login",
            NotOrganisationsAlone::ActiveInAnotherOrganisation => {
                "the account has an active membership in another organisation"
            }
            NotOrganisationsAlone::PrivacyOfficerOfAnotherOrganisation => {
                "the account is a privacy officer of another organisation"
            }
            NotOrganisationsAlone::NotActiveInOrganisation => {
                "the account has no active membership in the organisation"
            }
        })
    }
}

/// Whether the account is `organisation`'s alone: an active membership there, none active
/// anywhere else, no privacy officer appointment elsewhere, and not a patient's login.
pub fn organisations_alone(organisation: OrganisationId, ties: &AccountTies<'_>) -> Result<(), NotOrganisationsAlone> {
    let active = || ties.memberships.iter().filter(|m| m.status == MembershipStatus::Active);
    if ties.is_patient {
        Err(NotOrganisationsAlone::PatientLogin)
    } else if active().any(|m| m.organisation != organisation) {
        Err(NotOrganisationsAlone::ActiveInAnotherOrganisation)
    } else if ties.privacy_officer_of.iter().any(|&other| other != organisation) {
        Err(NotOrganisationsAlone::PrivacyOfficerOfAnotherOrganisation)
    } else if !active().any(|m| m.organisation == organisation) {
        Err(NotOrganisationsAlone::NotActiveInOrganisation)
    } else {
        Ok(())
    }
}

// ----- account-wide actions ---------------------------------------------------------------

/// A change to a whole account that a coordinator may ask for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AccountAction {
    /// Email the account a single-use password-reset link.
    PasswordReset,
    /// Turn two-step verification off (a lost phone) and end the account's sessions.
    TwoFactorReset,
}

impl AccountAction {
    pub const ALL: [AccountAction; 2] = [AccountAction::PasswordReset, AccountAction::TwoFactorReset];

    /// The audit action.
    pub const fn code(self) -> &'static str {
        match self {
            AccountAction::PasswordReset => "account.password_reset_request",
            AccountAction::TwoFactorReset => "account.two_factor_reset",
        }
    }
}

/// The coordinator and the team they act through.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CoordinatorFacts {
    pub account_status: AccountStatus,
    /// Their membership of the acting team.
    pub membership: Option<MembershipFacts>,
    pub team: TeamId,
    /// The acting team's organisation.
    pub organisation: OrganisationId,
}

/// Why a coordinator may not act on an account (the audit event's reason).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AccountActionRefusal {
    NotCoordinator(NotCoordinator),
    /// The account has no membership of the coordinator's team.
    NotInTeam,
    /// Its membership of the coordinator's team is deactivated.
    MembershipInTeamDeactivated,
    /// It is not the organisation's alone.
    NotOrganisationsAlone(NotOrganisationsAlone),
}

impl AccountActionRefusal {
    /// Whether the coordinator should be told to ask the account holder or the operator
    /// (the account is a member of their team, but not theirs alone to change).
    pub fn ask_holder_or_operator(self) -> bool {
        matches!(self, AccountActionRefusal::NotOrganisationsAlone(_))
    }
}

impl fmt::Display for AccountActionRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountActionRefusal::NotCoordinator(reason) => reason.fmt(f),
            AccountActionRefusal::NotInTeam => f.write_str("the account is not a member of the coordinator's team"),
            AccountActionRefusal::MembershipInTeamDeactivated => {
                f.write_str("the account's membership of the coordinator's team is deactivated")
            }
            AccountActionRefusal::NotOrganisationsAlone(reason) => reason.fmt(f),
        }
    }
}

/// Whether a coordinator may change a whole account (every [`AccountAction`]): only an
/// active coordinator of a team in which the account has an active membership, and only
/// when the account is the coordinator's organisation's alone ([`organisations_alone`]).
/// `membership_in_team` is the account's membership of the coordinator's team.
pub fn decide_account_action(
    coordinator: &CoordinatorFacts,
    membership_in_team: Option<MembershipStatus>,
    account: &AccountTies<'_>,
) -> Result<(), AccountActionRefusal> {
    check_coordinator(coordinator.account_status, coordinator.membership)
        .map_err(AccountActionRefusal::NotCoordinator)?;
    match membership_in_team {
        None => return Err(AccountActionRefusal::NotInTeam),
        Some(MembershipStatus::Deactivated) => return Err(AccountActionRefusal::MembershipInTeamDeactivated),
        Some(MembershipStatus::Active) => {}
    }
    organisations_alone(coordinator.organisation, account).map_err(AccountActionRefusal::NotOrganisationsAlone)
}

// ----- joining a team -------------------------------------------------------------------

/// What is known about an email address a coordinator adds to their team (from a CSV file
/// or the one-person form), when it is not already a member or invited.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AddressFacts<'a> {
    /// The account with this address, if any.
    pub account: Option<AccountTies<'a>>,
    /// A patient record has this contact address.
    pub on_patient_record: bool,
}

/// Why an address gets an invitation rather than a membership.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InvitationReason {
    /// No account has the address: a new (invited) account, which joins when activated.
    NewAddress,
    /// The account is not the organisation's alone.
    NotOrganisationsAlone(NotOrganisationsAlone),
}

/// Why an address can never be a professional's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UnusableAddress {
    /// It is a patient's login.
    PatientLogin,
    /// A patient record has it (one email belongs to one record, DESIGN.md §2).
    OnPatientRecord,
}

/// How an address a coordinator adds joins their team.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Joining {
    /// A membership at once: the account is the organisation's alone.
    Directly,
    /// An invitation that grants nothing until the address's holder accepts it.
    OnAcceptance(InvitationReason),
    /// Never a membership; the address is told why (so that the coordinator's answer does
    /// not depend on it).
    Unusable(UnusableAddress),
}

impl fmt::Display for Joining {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Joining::Directly => f.write_str("the account is the organisation's alone"),
            Joining::OnAcceptance(InvitationReason::NewAddress) => f.write_str("no account has the address"),
            Joining::OnAcceptance(InvitationReason::NotOrganisationsAlone(reason)) => reason.fmt(f),
            Joining::Unusable(UnusableAddress::PatientLogin) => f.write_str("the address is a patient's login"),
            Joining::Unusable(UnusableAddress::OnPatientRecord) => f.write_str("the address is on a patient record"),
        }
    }
}

/// How an address a coordinator of a team of `organisation` adds joins the team: at once
/// only when its account is the organisation's alone; a patient's address never.
pub fn decide_joining(organisation: OrganisationId, address: &AddressFacts<'_>) -> Joining {
    match &address.account {
        Some(account) if account.is_patient => Joining::Unusable(UnusableAddress::PatientLogin),
        _ if address.on_patient_record => Joining::Unusable(UnusableAddress::OnPatientRecord),
        None => Joining::OnAcceptance(InvitationReason::NewAddress),
        Some(account) => match organisations_alone(organisation, account) {
            Ok(()) => Joining::Directly,
            Err(reason) => Joining::OnAcceptance(InvitationReason::NotOrganisationsAlone(reason)),
        },
    }
}

// ----- invitations ----------------------------------------------------------------------

/// A coordinator's invitation to join their team, sent to an address: it grants nothing
/// (it is not a membership, so the access rule never sees it); the membership is made when
/// the address's holder accepts.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MembershipInvitation {
    pub id: MembershipInvitationId,
    pub team: TeamId,
    pub email: EmailAddress,
    /// The name, job title and registration number as the coordinator typed them (an
    /// existing account keeps its own).
    pub name: Name,
    pub role: MembershipRole,
    pub job_title: Option<String>,
    pub registration_number: Option<String>,
    pub invited_by: AccountId,
    pub created_at: Timestamp,
}

coded_enum!(
    /// How an invitation was closed.
    InvitationAnswer {
        /// By its holder (or by activating the new account it carried the code for).
        Accepted => "accepted",
        /// By its holder.
        Declined => "declined",
        /// By a coordinator of the team.
        Withdrawn => "withdrawn",
    }
);
