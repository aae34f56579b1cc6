//! The access rule (DESIGN.md §3), written once.
//!
//! A professional P may see entry E of patient X, acting through team T, when all hold:
//! 1. P's account is active and P's membership of T is active (and is a professional
//!    membership: coordinator status grants no clinical access);
//! 2. X has an active care link to T whose labels include E's label, **or** E was authored
//!    by T (a team always sees its own data, even after discharge).
//!
//! The Patient Record Team is the exception to "a team sees its own data": what it holds
//! is the organisation's record, filed from the organisation's feeds, and it has no access
//! by default. Its professionals (the data quality team) see entries only through labels
//! the patient — or someone on their behalf — granted it, or by breaking the glass.
//!
//! P may instead see all of X's record, acting through the team T the grant was opened
//! through, while that break-glass grant (P, T, X) is unexpired and not ended (it ends with
//! P's membership of T, P's account, and the web session it was opened in), unless X's
//! sharing is disabled. A grant opens nothing through any other team. An entry with no label is visible only to a team holding
//! all four labels. Sharing disabled leaves a team only its own data.
//!
//! [`record_scope`] turns the facts about (P, T, X) into a [`RecordScope`]; the scope decides
//! each entry ([`RecordScope::decide`]) and is what the store compiles into SQL, so a list
//! filtered in the database and an entry decided here cannot disagree.

use std::fmt;

use crate::ids::{AccountId, BreakGlassId, TeamId};
use crate::label::{LabelSet, PrivacyLabel};
use crate::team::{AccountStatus, MembershipRole, MembershipStatus, TeamKind};
use crate::time::Timestamp;

/// Why access was allowed. Every audit event of a read or write of patient data names one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Basis {
    /// The patient consented to the entry's label for this team.
    Consent { team: TeamId },
    /// The team authored the entry (its own data, visible even after discharge).
    OwnTeamData { team: TeamId },
    /// An unexpired break-the-glass grant.
    BreakGlass { grant: BreakGlassId },
    /// The patient reading their own record.
    SelfAccess,
    /// Administration by the operator or an organisation's feed: no clinical reading.
    Administration,
}

impl Basis {
    /// The stable code stored in the audit trail.
    pub const fn code(self) -> &'static str {
        match self {
            Basis::Consent { .. } => "consent",
            Basis::OwnTeamData { .. } => "own_team_data",
            Basis::BreakGlass { .. } => "break_glass",
            Basis::SelfAccess => "self",
            Basis::Administration => "administration",
        }
    }

    /// Which of two bases an access that used both should be recorded under: break glass
    /// outranks consent, which outranks a team's own data.
    pub fn strongest(self, other: Basis) -> Basis {
        fn rank(basis: Basis) -> u8 {
            match basis {
                Basis::Administration => 0,
                Basis::SelfAccess => 1,
                Basis::OwnTeamData { .. } => 2,
                Basis::Consent { .. } => 3,
                Basis::BreakGlass { .. } => 4,
            }
        }
        if rank(other) > rank(self) { other } else { self }
    }
}

/// Why access was denied. Kept for the audit trail; callers show a generic message.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DenyReason {
    AccountNotActive(AccountStatus),
    NotAMemberOfTeam,
    MembershipDeactivated,
    CoordinatorRoleHasNoClinicalAccess,
    NoCareLink,
    CareLinkDischarged,
    LabelNotConsented(PrivacyLabel),
    UnlabelledEntryNeedsAllLabels,
    SharingDisabled,
    NoRelationshipWithPatient,
    PatientNotInOrganisation,
    NotTheirRecord,
    NotPrivacyOfficer,
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::AccountNotActive(status) => write!(f, "account is {status}, not active"),
            DenyReason::NotAMemberOfTeam => f.write_str("not a member of the acting team"),
            DenyReason::MembershipDeactivated => f.write_str("membership of the acting team is deactivated"),
            DenyReason::CoordinatorRoleHasNoClinicalAccess => {
                f.write_str("coordinator membership grants no clinical access")
            }
            DenyReason::NoCareLink => f.write_str("patient has no care link to the team"),
            DenyReason::CareLinkDischarged => f.write_str("patient was discharged from the team"),
            DenyReason::LabelNotConsented(label) => write!(f, "no consent for label {label}"),
            DenyReason::UnlabelledEntryNeedsAllLabels => {
                f.write_str("entry has no label and the team does not hold all four labels")
            }
            DenyReason::SharingDisabled => f.write_str("sharing is disabled on the record"),
            DenyReason::NoRelationshipWithPatient => {
                f.write_str("no active care link, authored data or break-glass grant for the patient")
            }
            DenyReason::PatientNotInOrganisation => f.write_str("patient is not in the acting team's organisation"),
            DenyReason::NotTheirRecord => f.write_str("not the account of this patient"),
            DenyReason::NotPrivacyOfficer => f.write_str("not a privacy officer of an organisation the patient is in"),
        }
    }
}

/// The answer of the access rule, with its basis or its reason.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Decision {
    Allow(Basis),
    Deny(DenyReason),
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        matches!(self, Decision::Allow(_))
    }
    pub fn basis(self) -> Option<Basis> {
        match self {
            Decision::Allow(basis) => Some(basis),
            Decision::Deny(_) => None,
        }
    }
}

/// A professional's membership of the acting team.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MembershipFacts {
    pub role: MembershipRole,
    pub status: MembershipStatus,
}

/// The patient's care link to a team.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CareLinkFacts {
    pub labels: LabelSet,
    /// False once discharged.
    pub active: bool,
}

/// The web session a grant was opened in: the grant ends with it (sign-out, idle, expiry).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SessionFacts {
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    /// Signed out (or ended by the operator).
    pub ended: bool,
}

/// A web session unused this long has ended.
pub const SESSION_IDLE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

impl SessionFacts {
    /// Not ended, not idle for [`SESSION_IDLE`], not past its absolute expiry, not from the
    /// future (a clock set back).
    pub fn is_live(&self, now: Timestamp) -> bool {
        !self.ended && now < self.expires_at && now < self.last_seen_at.plus(SESSION_IDLE) && now >= self.created_at
    }
}

/// The most recent break-the-glass grant of (P, X).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BreakGlassFacts {
    pub grant: BreakGlassId,
    /// The team it was opened through: it opens the record through that team only, and
    /// only while P's membership of it is active.
    pub team: TeamId,
    pub expires_at: Timestamp,
    /// Ended early: by the professional, at sign-out, when the membership it was opened
    /// through was deactivated, or when the account was disabled.
    pub ended: bool,
    /// The web session it was opened in (`None`: opened through the API or the CLI); the
    /// grant ends with the session even if the ending was never written to the grant.
    pub session: Option<SessionFacts>,
}

impl BreakGlassFacts {
    pub fn is_active(&self, now: Timestamp) -> bool {
        !self.ended && now < self.expires_at && self.session.is_none_or(|session| session.is_live(now))
    }

    /// Active and opened through `team`.
    pub fn is_active_through(&self, team: TeamId, now: Timestamp) -> bool {
        self.team == team && self.is_active(now)
    }
}

/// Everything the rule needs to decide what P, acting through T, may see of X's record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RecordAccessFacts {
    pub now: Timestamp,
    pub acting_team: TeamId,
    /// Only a speciality team sees its own data without consent (see the module docs).
    pub acting_team_kind: TeamKind,
    pub account_status: AccountStatus,
    /// P's membership of the acting team, if any.
    pub membership: Option<MembershipFacts>,
    /// X's care link to the acting team, if any.
    pub care_link: Option<CareLinkFacts>,
    /// The most recent break-the-glass grant of (P, X), if any.
    pub break_glass: Option<BreakGlassFacts>,
    pub sharing_disabled: bool,
}

/// What the rule needs to know about one entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EntryFacts {
    pub label: Option<PrivacyLabel>,
    pub authored_by: TeamId,
}

/// Which entries of one record P may see through T: the rule applied to everything but
/// the entry. The store compiles it into a `WHERE` clause; [`RecordScope::decide`] is the
/// same rule for one entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RecordScope {
    /// Nothing at all, not even the team's own data.
    Denied(DenyReason),
    Visible {
        team: TeamId,
        /// Labels the patient consented to for the team (empty without an active link).
        consented: LabelSet,
        /// Why `consented` is empty when there is no active link, for the audit trail.
        consent_gap: Option<DenyReason>,
        /// Entries the team authored are visible (a speciality team; not the PRT).
        own_team_data: bool,
        /// An unexpired break-the-glass grant: then every entry is visible.
        break_glass: Option<BreakGlassId>,
    },
}

/// An account signs in, holds sessions and API tokens, answers invitations and is acted for
/// only while it is active: the one test of an account's standing.
pub fn is_active_account(status: AccountStatus) -> bool {
    status == AccountStatus::Active
}

/// An activation code activates only an account that was invited and has no password yet.
pub fn awaits_activation(status: AccountStatus) -> bool {
    status == AccountStatus::Invited
}

/// A membership counts (a session acts through its team, the directory lists it) only while
/// it is active, whatever its role.
pub fn is_active_membership(status: MembershipStatus) -> bool {
    status == MembershipStatus::Active
}

/// A clinical membership: active and professional (coordinator status grants no clinical
/// access). Precondition 1 of the rule, the account aside.
pub fn is_active_professional(membership: MembershipFacts) -> bool {
    membership == MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Active }
}

/// "This is the patient's own record": the record's login is the account.
pub fn is_own_record(record_account: Option<AccountId>, account: AccountId) -> bool {
    record_account == Some(account)
}

/// A team a professional holds a membership of, with the membership.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TeamMembership {
    pub team: TeamId,
    pub membership: MembershipFacts,
}

/// Precondition 1 of the rule: an active account with an active professional membership.
fn check_professional(account_status: AccountStatus, membership: Option<MembershipFacts>) -> Result<(), DenyReason> {
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

/// May P work in team T's clinical workspace — list the team's patients, look a patient
/// up to bring them in or to break the glass? Precondition 1 of the rule, on its own: an
/// active account with an active professional membership of T (a coordinator runs the
/// team and has no clinical access). Each patient listed is still decided by
/// [`decide_demographics`] through T.
pub fn decide_workspace(account_status: AccountStatus, membership: Option<MembershipFacts>) -> Result<(), DenyReason> {
    check_professional(account_status, membership)
}

/// The rule for everything but the entry.
pub fn record_scope(facts: &RecordAccessFacts) -> RecordScope {
    if let Err(reason) = check_professional(facts.account_status, facts.membership) {
        return RecordScope::Denied(reason);
    }
    let (consented, consent_gap) = if facts.sharing_disabled {
        (LabelSet::EMPTY, Some(DenyReason::SharingDisabled))
    } else {
        match facts.care_link {
            None => (LabelSet::EMPTY, Some(DenyReason::NoCareLink)),
            Some(CareLinkFacts { active: false, .. }) => (LabelSet::EMPTY, Some(DenyReason::CareLinkDischarged)),
            Some(CareLinkFacts { labels, active: true }) => (labels, None),
        }
    };
    let break_glass = if facts.sharing_disabled {
        None
    } else {
        facts.break_glass.filter(|grant| grant.is_active_through(facts.acting_team, facts.now)).map(|grant| grant.grant)
    };
    RecordScope::Visible {
        team: facts.acting_team,
        consented,
        consent_gap,
        own_team_data: facts.acting_team_kind == TeamKind::Speciality,
        break_glass,
    }
}

impl RecordScope {
    /// The rule for one entry.
    pub fn decide(&self, entry: &EntryFacts) -> Decision {
        let (team, consented, consent_gap, own_team_data, break_glass) = match *self {
            RecordScope::Denied(reason) => return Decision::Deny(reason),
            RecordScope::Visible { team, consented, consent_gap, own_team_data, break_glass } => {
                (team, consented, consent_gap, own_team_data, break_glass)
            }
        };
        let consent_covers = match entry.label {
            Some(label) => consented.contains(label),
            None => consented.is_all(),
        };
        if consent_covers {
            return Decision::Allow(Basis::Consent { team });
        }
        if own_team_data && entry.authored_by == team {
            return Decision::Allow(Basis::OwnTeamData { team });
        }
        if let Some(grant) = break_glass {
            return Decision::Allow(Basis::BreakGlass { grant });
        }
        Decision::Deny(consent_gap.unwrap_or(match entry.label {
            Some(label) => DenyReason::LabelNotConsented(label),
            None => DenyReason::UnlabelledEntryNeedsAllLabels,
        }))
    }

    /// Whether some entry could be visible (used to tell "nothing to see" from "denied").
    pub fn is_denied(&self) -> bool {
        matches!(self, RecordScope::Denied(_))
    }
}

/// The rule for one entry: [`record_scope`] then [`RecordScope::decide`].
pub fn decide_entry(facts: &RecordAccessFacts, entry: &EntryFacts) -> Decision {
    record_scope(facts).decide(entry)
}

/// May P, acting through T, add an entry authored by T to X's record? Only while X is in
/// the team (an active link, sharing not disabled) or under an unexpired break-glass grant.
pub fn decide_write(facts: &RecordAccessFacts) -> Decision {
    match record_scope(facts) {
        RecordScope::Denied(reason) => Decision::Deny(reason),
        RecordScope::Visible { team, consent_gap: None, .. } => Decision::Allow(Basis::Consent { team }),
        RecordScope::Visible { break_glass: Some(grant), .. } => Decision::Allow(Basis::BreakGlass { grant }),
        RecordScope::Visible { consent_gap: Some(reason), .. } => Decision::Deny(reason),
    }
}

/// May P, acting through T, bring X into T (a new care link)? Only an active professional of
/// T: the precondition of every clinical action through a team.
pub fn decide_team_link(facts: &RecordAccessFacts) -> Result<(), DenyReason> {
    check_professional(facts.account_status, facts.membership)
}

/// May P, acting through T, discharge X from T? An active professional of T, while X is in T.
pub fn decide_team_discharge(facts: &RecordAccessFacts) -> Result<(), DenyReason> {
    check_professional(facts.account_status, facts.membership)?;
    match facts.care_link {
        Some(CareLinkFacts { active: true, .. }) => Ok(()),
        Some(CareLinkFacts { active: false, .. }) => Err(DenyReason::CareLinkDischarged),
        None => Err(DenyReason::NoCareLink),
    }
}

/// One of P's memberships and how its team relates to X.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TeamRelationFacts {
    pub team: TeamId,
    pub kind: TeamKind,
    pub membership: MembershipFacts,
    /// X has an active care link to the team.
    pub care_link_active: bool,
    /// The team authored at least one entry in X's record.
    pub authored_entries: bool,
}

/// Everything the rule needs to decide whether P may see who X is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DemographicsFacts {
    pub now: Timestamp,
    pub account_status: AccountStatus,
    pub teams: Vec<TeamRelationFacts>,
    pub break_glass: Option<BreakGlassFacts>,
    pub sharing_disabled: bool,
}

impl DemographicsFacts {
    /// The facts as they stand for P acting through one team: a read through a team shows
    /// who the patient is only on that team's grounds (its link, its own data, a grant
    /// opened through it), never on another team's.
    pub fn through_team(mut self, team: TeamId) -> Self {
        self.teams.retain(|relation| relation.team == team);
        self
    }
}

/// Demographics of X are visible to P when X has an active care link to a team where P is
/// an active professional, when one of those (speciality) teams authored entries in X's record, or
/// under break glass opened through a team where P is still an active professional (never
/// with sharing disabled, which leaves only the team-data view).
pub fn decide_demographics(facts: &DemographicsFacts) -> Decision {
    if facts.account_status != AccountStatus::Active {
        return Decision::Deny(DenyReason::AccountNotActive(facts.account_status));
    }
    let clinical_teams = facts
        .teams
        .iter()
        .filter(|relation| check_professional(AccountStatus::Active, Some(relation.membership)).is_ok());
    let mut own_data = None;
    for relation in clinical_teams {
        if relation.care_link_active && !facts.sharing_disabled {
            return Decision::Allow(Basis::Consent { team: relation.team });
        }
        if relation.authored_entries && relation.kind == TeamKind::Speciality && own_data.is_none() {
            own_data = Some(Basis::OwnTeamData { team: relation.team });
        }
    }
    if let Some(basis) = own_data {
        return Decision::Allow(basis);
    }
    // A grant opens demographics only while P is an active professional of the team it was
    // opened through (as it opens entries only through that team).
    let grant_team_active = |grant: &BreakGlassFacts| {
        facts.teams.iter().any(|relation| {
            relation.team == grant.team && check_professional(AccountStatus::Active, Some(relation.membership)).is_ok()
        })
    };
    match facts.break_glass {
        Some(grant) if grant.is_active(facts.now) && grant_team_active(&grant) && !facts.sharing_disabled => {
            Decision::Allow(Basis::BreakGlass { grant: grant.grant })
        }
        _ if facts.sharing_disabled => Decision::Deny(DenyReason::SharingDisabled),
        _ => Decision::Deny(DenyReason::NoRelationshipWithPatient),
    }
}

/// Everything the rule needs to decide whether P may break the glass on X through T.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BreakGlassRequestFacts {
    pub account_status: AccountStatus,
    pub membership: Option<MembershipFacts>,
    /// X is in the acting team's organisation (linked to its Patient Record Team).
    pub patient_in_organisation: bool,
    pub sharing_disabled: bool,
}

/// Break glass is for active professionals of a team, on patients of the team's
/// organisation, and never on a record whose sharing is disabled. The reason is required
/// by the type of the caller's argument ([`crate::text::Reason`]).
pub fn decide_break_glass(facts: &BreakGlassRequestFacts) -> Result<(), DenyReason> {
    check_professional(facts.account_status, facts.membership)?;
    if facts.sharing_disabled {
        return Err(DenyReason::SharingDisabled);
    }
    if !facts.patient_in_organisation {
        return Err(DenyReason::PatientNotInOrganisation);
    }
    Ok(())
}

/// Why a break-the-glass request by look-up (an identifier and a date of birth) is refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BreakGlassLookupRefusal {
    /// The caller may not break the glass through the team, whatever the record: decided
    /// before anything about the record counts, so that no answer depends on it.
    Caller(DenyReason),
    /// A miss: no record, another date of birth, or a record [`decide_break_glass`] refuses
    /// (another organisation's, sharing disabled). Every miss is the same answer and counts
    /// against the caller's look-up allowance.
    NoMatch(&'static str),
}

/// A break-the-glass request by look-up, from what the look-up found: the caller first, then
/// the record, every refusal about which is a miss.
pub fn decide_break_glass_lookup(
    account_status: AccountStatus,
    membership: Option<MembershipFacts>,
    found: crate::consent::LookupResult,
) -> Result<(), BreakGlassLookupRefusal> {
    use crate::consent::LookupResult;
    check_professional(account_status, membership).map_err(BreakGlassLookupRefusal::Caller)?;
    match found {
        LookupResult::NoRecord => Err(BreakGlassLookupRefusal::NoMatch("no record has the identifier")),
        LookupResult::BirthDateDiffers => Err(BreakGlassLookupRefusal::NoMatch("the date of birth differs")),
        LookupResult::Found { patient_in_organisation, sharing_disabled, .. } => {
            let facts =
                BreakGlassRequestFacts { account_status, membership, patient_in_organisation, sharing_disabled };
            decide_break_glass(&facts).map_err(|reason| {
                BreakGlassLookupRefusal::NoMatch(match reason {
                    DenyReason::SharingDisabled => "sharing is disabled on the record",
                    _ => "the patient is not in the team's organisation",
                })
            })
        }
    }
}

/// May P break the glass at all: some membership of P is an active professional one.
/// Without one, P is refused outright, before any patient is looked at.
pub fn may_break_glass_somewhere(memberships: &[MembershipFacts]) -> bool {
    memberships.iter().any(|&membership| is_active_professional(membership))
}

/// Which of P's teams a break-glass request without a named team goes through: the first, in
/// the order given, whose facts [`decide_break_glass`] allows. `None`: no team may, and the
/// caller audits the denial through a team of its choosing.
pub fn break_glass_team(candidates: &[(TeamId, BreakGlassRequestFacts)]) -> Option<TeamId> {
    candidates.iter().find(|(_, facts)| decide_break_glass(facts).is_ok()).map(|(team, _)| *team)
}

/// Why a break-glass grant opened through a membership ends when the membership changes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GrantEnding {
    MembershipDeactivated,
    NoLongerProfessional,
}

impl fmt::Display for GrantEnding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GrantEnding::MembershipDeactivated => "the membership it was opened through was deactivated",
            GrantEnding::NoLongerProfessional => "the membership it was opened through is no longer a professional one",
        })
    }
}

/// A grant opened through a membership lives only as long as the membership is an active
/// professional one: `Some(why)` when the membership as changed ends its grants.
pub fn grant_ending(membership: MembershipFacts) -> Option<GrantEnding> {
    if is_active_professional(membership) {
        None
    } else if is_active_membership(membership.status) {
        Some(GrantEnding::NoLongerProfessional)
    } else {
        Some(GrantEnding::MembershipDeactivated)
    }
}

/// Who reads a record's care links (its consents).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConsentReader<'a> {
    /// The patient, reading their own record's links.
    Owner,
    /// A professional, with every membership they hold.
    Professional { memberships: &'a [TeamMembership] },
}

/// Whether the reader sees the care link of `link_team`: the patient sees every link; a
/// professional only those of teams they are an active professional of (another team's
/// link would say which services the patient uses).
pub fn sees_care_link(reader: ConsentReader<'_>, link_team: TeamId) -> bool {
    match reader {
        ConsentReader::Owner => true,
        ConsentReader::Professional { memberships } => {
            memberships.iter().any(|held| held.team == link_team && is_active_professional(held.membership))
        }
    }
}

/// A patient reads their own record: all of it, on the basis `self`.
pub fn decide_self_access(account_status: AccountStatus, is_their_record: bool) -> Decision {
    if account_status != AccountStatus::Active {
        Decision::Deny(DenyReason::AccountNotActive(account_status))
    } else if !is_their_record {
        Decision::Deny(DenyReason::NotTheirRecord)
    } else {
        Decision::Allow(Basis::SelfAccess)
    }
}

/// Only a privacy officer of an organisation the patient is in may disable (or re-enable)
/// sharing on a record.
pub fn decide_sharing_lockdown(
    account_status: AccountStatus,
    privacy_officer_of_patients_organisation: bool,
) -> Result<(), DenyReason> {
    if account_status != AccountStatus::Active {
        return Err(DenyReason::AccountNotActive(account_status));
    }
    if !privacy_officer_of_patients_organisation {
        return Err(DenyReason::NotPrivacyOfficer);
    }
    Ok(())
}
