//! What the team directory shows (FHIR `Organization`, `PractitionerRole`, `Practitioner`):
//! which teams an account may look up, which members a team lists, and which of a
//! professional's roles a caller sees. Nothing here reads a patient's data; it still says
//! which services a patient uses, so a caller sees only teams they belong to or their own
//! record is linked to.

use crate::access::is_active_membership;
use crate::ids::{AccountId, TeamId};
use crate::team::MembershipStatus;

/// One membership as the directory needs it: its team and whether it is active.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DirectoryMembership {
    pub team: TeamId,
    pub status: MembershipStatus,
}

/// The teams an account may look up, in order: those it is an active member of (any role),
/// then those its own record is or was linked to (a discharged link too: the patient
/// knows the team).
pub fn directory_teams(memberships: &[DirectoryMembership], own_record_links: &[TeamId]) -> Vec<TeamId> {
    let mut teams: Vec<TeamId> =
        memberships.iter().filter(|held| is_active_membership(held.status)).map(|held| held.team).collect();
    for &team in own_record_links {
        if !teams.contains(&team) {
            teams.push(team);
        }
    }
    teams
}

/// A team lists its active members only.
pub fn lists_member(status: MembershipStatus) -> bool {
    is_active_membership(status)
}

/// Whether `viewer` sees `practitioner`'s membership `role`: an active one, of a team the
/// viewer may look up ([`directory_teams`]) — or any active one when the viewer is the
/// practitioner.
pub fn shows_role(
    viewer: AccountId,
    practitioner: AccountId,
    role: DirectoryMembership,
    viewer_teams: &[TeamId],
) -> bool {
    is_active_membership(role.status) && (viewer == practitioner || viewer_teams.contains(&role.team))
}
