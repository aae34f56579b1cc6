//! The decisions kith-app used to make by comparing roles and statuses itself (issue 16):
//! an account's and a membership's standing, "the patient's own record", who may break the
//! glass and through which team, when a membership change ends its grants, which consents
//! a reader sees, and what the team directory shows. One row per case; each table also
//! runs every combination of the facts against a literal reading of the rule.

use kith_core::access::{
    BreakGlassRequestFacts, ConsentReader, GrantEnding, MembershipFacts, TeamMembership, awaits_activation,
    break_glass_team, grant_ending, is_active_account, is_active_membership, is_active_professional, is_own_record,
    may_break_glass_somewhere, sees_care_link,
};
use kith_core::directory::{DirectoryMembership, directory_teams, lists_member, shows_role};
use kith_core::team::{AccountStatus, MembershipRole, MembershipStatus};
use kith_core::{AccountId, TeamId};
use uuid::Uuid;

const ME: AccountId = AccountId::from_uuid(Uuid::from_u128(1));
const SOMEONE_ELSE: AccountId = AccountId::from_uuid(Uuid::from_u128(2));
const TEAM_A: TeamId = TeamId::from_uuid(Uuid::from_u128(10));
const TEAM_B: TeamId = TeamId::from_uuid(Uuid::from_u128(11));
const TEAM_C: TeamId = TeamId::from_uuid(Uuid::from_u128(12));

const ACCOUNT_STATUSES: [AccountStatus; 4] =
    [AccountStatus::Active, AccountStatus::Invited, AccountStatus::Locked, AccountStatus::Disabled];
const ROLES: [MembershipRole; 2] = [MembershipRole::Professional, MembershipRole::Coordinator];
const STATUSES: [MembershipStatus; 2] = [MembershipStatus::Active, MembershipStatus::Deactivated];

fn facts(role: MembershipRole, status: MembershipStatus) -> MembershipFacts {
    MembershipFacts { role, status }
}
const PROFESSIONAL: MembershipFacts =
    MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Active };
const COORDINATOR: MembershipFacts =
    MembershipFacts { role: MembershipRole::Coordinator, status: MembershipStatus::Active };
const DEACTIVATED_PROFESSIONAL: MembershipFacts =
    MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Deactivated };
const DEACTIVATED_COORDINATOR: MembershipFacts =
    MembershipFacts { role: MembershipRole::Coordinator, status: MembershipStatus::Deactivated };

#[test]
fn account_standing() {
    // (status, signs in and acts, an activation code activates it)
    let rows = [
        (AccountStatus::Active, true, false),
        (AccountStatus::Invited, false, true),
        (AccountStatus::Locked, false, false),
        (AccountStatus::Disabled, false, false),
    ];
    for (status, active, activates) in rows {
        assert_eq!(is_active_account(status), active, "{status:?}");
        assert_eq!(awaits_activation(status), activates, "{status:?}");
    }
    assert_eq!(rows.len(), ACCOUNT_STATUSES.len(), "every status has a row");
}

#[test]
fn membership_standing() {
    // (membership, counts at all, clinical)
    let rows = [
        (PROFESSIONAL, true, true),
        (COORDINATOR, true, false),
        (DEACTIVATED_PROFESSIONAL, false, false),
        (DEACTIVATED_COORDINATOR, false, false),
    ];
    for (membership, active, clinical) in rows {
        assert_eq!(is_active_membership(membership.status), active, "{membership:?}");
        assert_eq!(is_active_professional(membership), clinical, "{membership:?}");
    }
    for role in ROLES {
        for status in STATUSES {
            let literal = role == MembershipRole::Professional && status == MembershipStatus::Active;
            assert_eq!(is_active_professional(facts(role, status)), literal);
        }
    }
}

#[test]
fn own_record() {
    // (the record's login, the account asking, the record is theirs)
    let rows = [(Some(ME), ME, true), (Some(SOMEONE_ELSE), ME, false), (None, ME, false)];
    for (record_account, account, theirs) in rows {
        assert_eq!(is_own_record(record_account, account), theirs, "{record_account:?}");
    }
}

#[test]
fn who_may_break_the_glass_at_all() {
    // (P's memberships, may break the glass through some team)
    let rows: [(&[MembershipFacts], bool); 7] = [
        (&[], false),
        (&[PROFESSIONAL], true),
        (&[COORDINATOR], false),
        (&[DEACTIVATED_PROFESSIONAL], false),
        (&[DEACTIVATED_COORDINATOR, COORDINATOR], false),
        (&[COORDINATOR, PROFESSIONAL], true),
        (&[DEACTIVATED_PROFESSIONAL, PROFESSIONAL], true),
    ];
    for (memberships, may) in rows {
        assert_eq!(may_break_glass_somewhere(memberships), may, "{memberships:?}");
    }
}

/// P's teams in order, each with the facts of a request through it.
type Candidates = Vec<(TeamId, BreakGlassRequestFacts)>;

fn request(membership: MembershipFacts, in_organisation: bool) -> BreakGlassRequestFacts {
    BreakGlassRequestFacts {
        account_status: AccountStatus::Active,
        membership: Some(membership),
        patient_in_organisation: in_organisation,
        sharing_disabled: false,
    }
}

#[test]
fn which_team_the_glass_is_broken_through() {
    // (P's teams in order with their facts, the team chosen)
    let rows: Vec<(Candidates, Option<TeamId>)> = vec![
        (vec![], None),
        (vec![(TEAM_A, request(PROFESSIONAL, true))], Some(TEAM_A)),
        // The first team that may, in the order given.
        (vec![(TEAM_A, request(PROFESSIONAL, true)), (TEAM_B, request(PROFESSIONAL, true))], Some(TEAM_A)),
        // A coordinator membership, a deactivated one, or a team of another organisation is passed over.
        (vec![(TEAM_A, request(COORDINATOR, true)), (TEAM_B, request(PROFESSIONAL, true))], Some(TEAM_B)),
        (vec![(TEAM_A, request(DEACTIVATED_PROFESSIONAL, true)), (TEAM_B, request(PROFESSIONAL, true))], Some(TEAM_B)),
        (vec![(TEAM_A, request(PROFESSIONAL, false)), (TEAM_B, request(PROFESSIONAL, true))], Some(TEAM_B)),
        // Nobody may: the caller audits the denial through a team of its choosing.
        (vec![(TEAM_A, request(PROFESSIONAL, false)), (TEAM_B, request(COORDINATOR, true))], None),
        (vec![(TEAM_A, BreakGlassRequestFacts { sharing_disabled: true, ..request(PROFESSIONAL, true) })], None),
        (
            vec![(
                TEAM_A,
                BreakGlassRequestFacts { account_status: AccountStatus::Locked, ..request(PROFESSIONAL, true) },
            )],
            None,
        ),
    ];
    for (candidates, chosen) in rows {
        assert_eq!(break_glass_team(&candidates), chosen, "{candidates:?}");
    }
}

#[test]
fn a_membership_change_ends_its_grants() {
    // (the membership as changed, why its grants end)
    let rows = [
        (PROFESSIONAL, None),
        (COORDINATOR, Some(GrantEnding::NoLongerProfessional)),
        (DEACTIVATED_PROFESSIONAL, Some(GrantEnding::MembershipDeactivated)),
        (DEACTIVATED_COORDINATOR, Some(GrantEnding::MembershipDeactivated)),
    ];
    for (membership, ending) in rows {
        assert_eq!(grant_ending(membership), ending, "{membership:?}");
    }
    assert_eq!(
        GrantEnding::NoLongerProfessional.to_string(),
        "the membership it was opened through is no longer a professional one"
    );
    assert_eq!(GrantEnding::MembershipDeactivated.to_string(), "the membership it was opened through was deactivated");
}

#[test]
fn which_consents_a_reader_sees() {
    let held = |team, membership| TeamMembership { team, membership };
    let memberships = [held(TEAM_A, PROFESSIONAL), held(TEAM_B, COORDINATOR), held(TEAM_C, DEACTIVATED_PROFESSIONAL)];
    let professional = ConsentReader::Professional { memberships: &memberships };
    let stranger = ConsentReader::Professional { memberships: &[] };
    // (reader, the link's team, seen)
    let rows = [
        (ConsentReader::Owner, TEAM_A, true),
        (ConsentReader::Owner, TEAM_C, true),
        (professional, TEAM_A, true),
        // A coordinator membership grants no clinical view, nor of the consents.
        (professional, TEAM_B, false),
        (professional, TEAM_C, false),
        (stranger, TEAM_A, false),
    ];
    for (reader, team, seen) in rows {
        assert_eq!(sees_care_link(reader, team), seen, "{reader:?} {team:?}");
    }
}

#[test]
fn which_teams_the_directory_shows() {
    let held = |team, status| DirectoryMembership { team, status };
    // (the account's memberships, its own record's links, the teams it may look up)
    let rows: Vec<(Vec<DirectoryMembership>, Vec<TeamId>, Vec<TeamId>)> = vec![
        (vec![], vec![], vec![]),
        (vec![held(TEAM_A, MembershipStatus::Active)], vec![], vec![TEAM_A]),
        (vec![held(TEAM_A, MembershipStatus::Deactivated)], vec![], vec![]),
        // A patient sees the teams their record is (or was) linked to.
        (vec![], vec![TEAM_B, TEAM_C], vec![TEAM_B, TEAM_C]),
        // Memberships first, then links, each team once.
        (
            vec![held(TEAM_B, MembershipStatus::Active), held(TEAM_A, MembershipStatus::Active)],
            vec![TEAM_A, TEAM_C],
            vec![TEAM_B, TEAM_A, TEAM_C],
        ),
    ];
    for (memberships, links, teams) in rows {
        assert_eq!(directory_teams(&memberships, &links), teams, "{memberships:?} {links:?}");
    }
    assert!(lists_member(MembershipStatus::Active));
    assert!(!lists_member(MembershipStatus::Deactivated));
}

#[test]
fn which_roles_of_a_professional_the_directory_shows() {
    let role = |team, status| DirectoryMembership { team, status };
    let mine = [TEAM_A];
    // (viewer, practitioner, the role, shown)
    let rows = [
        (ME, SOMEONE_ELSE, role(TEAM_A, MembershipStatus::Active), true),
        (ME, SOMEONE_ELSE, role(TEAM_B, MembershipStatus::Active), false),
        (ME, SOMEONE_ELSE, role(TEAM_A, MembershipStatus::Deactivated), false),
        // Oneself: every active role, whatever the team.
        (ME, ME, role(TEAM_B, MembershipStatus::Active), true),
        (ME, ME, role(TEAM_B, MembershipStatus::Deactivated), false),
    ];
    for (viewer, practitioner, shown_role, shown) in rows {
        assert_eq!(
            shows_role(viewer, practitioner, shown_role, &mine),
            shown,
            "{viewer:?} {practitioner:?} {shown_role:?}"
        );
    }
}
