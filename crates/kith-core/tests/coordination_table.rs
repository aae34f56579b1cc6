//! The coordinator rules of `kith_core::coordination`: a table of named rows, one per row of
//! ARCHITECTURE.md's "Coordinators' account-wide actions", and every combination of the
//! facts checked against a second, literal reading of the rule.

use kith_core::access::MembershipFacts;
use kith_core::coordination::{
    AccountActionRefusal, AccountTies, AddressFacts, CoordinatorFacts, HeldMembership, InvitationReason, Joining,
    NotCoordinator, NotOrganisationsAlone, UnusableAddress, check_coordinator, decide_account_action, decide_joining,
};
use kith_core::team::{AccountStatus, MembershipRole, MembershipStatus};
use kith_core::{OrganisationId, TeamId};
use uuid::Uuid;

const ORG_A: OrganisationId = OrganisationId::from_uuid(Uuid::from_u128(1));
const ORG_B: OrganisationId = OrganisationId::from_uuid(Uuid::from_u128(2));
const TEAM_A: TeamId = TeamId::from_uuid(Uuid::from_u128(10));

const ACTIVE: MembershipStatus = MembershipStatus::Active;
const DEACTIVATED: MembershipStatus = MembershipStatus::Deactivated;

fn coordinator() -> CoordinatorFacts {
    CoordinatorFacts {
        account_status: AccountStatus::Active,
        membership: Some(MembershipFacts { role: MembershipRole::Coordinator, status: ACTIVE }),
        team: TEAM_A,
        organisation: ORG_A,
    }
}

fn held(organisation: OrganisationId, status: MembershipStatus) -> HeldMembership {
    HeldMembership { organisation, status }
}

fn ties<'a>(memberships: &'a [HeldMembership], privacy_officer_of: &'a [OrganisationId]) -> AccountTies<'a> {
    AccountTies { memberships, privacy_officer_of, is_patient: false }
}

use AccountActionRefusal as Refused;
use NotOrganisationsAlone as Elsewhere;

/// A named row: the coordinator, the account's membership of their team, its ties, the answer.
type Row<'a> = (&'static str, CoordinatorFacts, Option<MembershipStatus>, AccountTies<'a>, Result<(), Refused>);

/// One row per line of the ARCHITECTURE.md table, in its order.
#[test]
fn account_wide_actions_table() {
    let in_team_a = [held(ORG_A, ACTIVE)];
    let two_teams_in_a = [held(ORG_A, ACTIVE), held(ORG_A, ACTIVE)];
    let also_b = [held(ORG_A, ACTIVE), held(ORG_B, ACTIVE)];
    let b_deactivated = [held(ORG_A, ACTIVE), held(ORG_B, DEACTIVATED)];
    let deactivated_in_a = [held(ORG_A, DEACTIVATED)];
    let none: [OrganisationId; 0] = [];
    let professional = CoordinatorFacts {
        membership: Some(MembershipFacts { role: MembershipRole::Professional, status: ACTIVE }),
        ..coordinator()
    };
    let deactivated_coordinator = CoordinatorFacts {
        membership: Some(MembershipFacts { role: MembershipRole::Coordinator, status: DEACTIVATED }),
        ..coordinator()
    };
    let locked_coordinator = CoordinatorFacts { account_status: AccountStatus::Locked, ..coordinator() };
    let outsider = CoordinatorFacts { membership: None, ..coordinator() };
    let patient = AccountTies { is_patient: true, ..ties(&in_team_a, &none) };

    #[rustfmt::skip]
    let rows: Vec<Row<'_>> = vec![
        ("caller not an active coordinator of the team (account not active)",
            locked_coordinator, Some(ACTIVE), ties(&in_team_a, &none),
            Err(Refused::NotCoordinator(NotCoordinator::AccountNotActive(AccountStatus::Locked)))),
        ("caller not a member of the team",
            outsider, Some(ACTIVE), ties(&in_team_a, &none), Err(Refused::NotCoordinator(NotCoordinator::NotAMemberOfTeam))),
        ("caller's coordinator membership deactivated",
            deactivated_coordinator, Some(ACTIVE), ties(&in_team_a, &none),
            Err(Refused::NotCoordinator(NotCoordinator::MembershipDeactivated))),
        ("caller a professional of the team",
            professional, Some(ACTIVE), ties(&in_team_a, &none), Err(Refused::NotCoordinator(NotCoordinator::ProfessionalRole))),
        ("account not a member of the team",
            coordinator(), None, ties(&in_team_a, &none), Err(Refused::NotInTeam)),
        ("account's membership of the team deactivated",
            coordinator(), Some(DEACTIVATED), ties(&deactivated_in_a, &none), Err(Refused::MembershipInTeamDeactivated)),
        ("account is a patient's login",
            coordinator(), Some(ACTIVE), patient, Err(Refused::NotOrganisationsAlone(Elsewhere::PatientLogin))),
        ("account also active in another organisation",
            coordinator(), Some(ACTIVE), ties(&also_b, &none), Err(Refused::NotOrganisationsAlone(Elsewhere::ActiveInAnotherOrganisation))),
        ("account a privacy officer of another organisation",
            coordinator(), Some(ACTIVE), ties(&in_team_a, &[ORG_B]),
            Err(Refused::NotOrganisationsAlone(Elsewhere::PrivacyOfficerOfAnotherOrganisation))),
        ("allowed: every active membership in the organisation",
            coordinator(), Some(ACTIVE), ties(&two_teams_in_a, &none), Ok(())),
        ("allowed: a deactivated membership elsewhere does not count",
            coordinator(), Some(ACTIVE), ties(&b_deactivated, &none), Ok(())),
        ("allowed: a privacy officer of the same organisation",
            coordinator(), Some(ACTIVE), ties(&in_team_a, &[ORG_A]), Ok(())),
    ];
    for (name, coordinator, membership_in_team, account, expected) in rows {
        assert_eq!(decide_account_action(&coordinator, membership_in_team, &account), expected, "{name}");
    }
    let refused = Refused::NotOrganisationsAlone(Elsewhere::ActiveInAnotherOrganisation);
    assert!(refused.ask_holder_or_operator());
    assert_eq!(refused.to_string(), "the account has an active membership in another organisation");
    assert!(!Refused::NotInTeam.ask_holder_or_operator());
}

/// Every combination of coordinator standing, the account's membership of the team, its
/// memberships elsewhere, privacy officer appointments and patient login, against the rule
/// read literally: "allowed only to coordinators of a team in which the account has an
/// active membership and only when every active membership of that account is in the
/// coordinator's organisation" (plus: no privacy officer appointment elsewhere, not a
/// patient's login).
#[test]
fn account_wide_actions_match_the_rule_read_literally() {
    let standings = [
        (AccountStatus::Active, None),
        (AccountStatus::Active, Some(MembershipFacts { role: MembershipRole::Coordinator, status: ACTIVE })),
        (AccountStatus::Active, Some(MembershipFacts { role: MembershipRole::Coordinator, status: DEACTIVATED })),
        (AccountStatus::Active, Some(MembershipFacts { role: MembershipRole::Professional, status: ACTIVE })),
        (AccountStatus::Disabled, Some(MembershipFacts { role: MembershipRole::Coordinator, status: ACTIVE })),
        (AccountStatus::Invited, Some(MembershipFacts { role: MembershipRole::Coordinator, status: ACTIVE })),
    ];
    let elsewhere_options: [&[HeldMembership]; 5] = [
        &[],
        &[HeldMembership { organisation: ORG_A, status: ACTIVE }],
        &[HeldMembership { organisation: ORG_A, status: DEACTIVATED }],
        &[HeldMembership { organisation: ORG_B, status: ACTIVE }],
        &[HeldMembership { organisation: ORG_B, status: DEACTIVATED }],
    ];
    let officer_options: [&[OrganisationId]; 3] = [&[], &[ORG_A], &[ORG_B]];
    let mut allowed = 0;
    let mut cases = 0;
    for (account_status, membership) in standings {
        let coordinator = CoordinatorFacts { account_status, membership, ..coordinator() };
        for in_team in [None, Some(ACTIVE), Some(DEACTIVATED)] {
            for elsewhere in elsewhere_options {
                for officer in officer_options {
                    for is_patient in [false, true] {
                        let mut memberships: Vec<HeldMembership> = elsewhere.to_vec();
                        if let Some(status) = in_team {
                            memberships.push(HeldMembership { organisation: ORG_A, status });
                        }
                        let account =
                            AccountTies { memberships: &memberships, privacy_officer_of: officer, is_patient };
                        let literal = account_status == AccountStatus::Active
                            && membership
                                == Some(MembershipFacts { role: MembershipRole::Coordinator, status: ACTIVE })
                            && in_team == Some(ACTIVE)
                            && memberships.iter().filter(|m| m.status == ACTIVE).all(|m| m.organisation == ORG_A)
                            && officer.iter().all(|&o| o == ORG_A)
                            && !is_patient;
                        let decided = decide_account_action(&coordinator, in_team, &account);
                        assert_eq!(decided.is_ok(), literal, "{coordinator:?} {in_team:?} {account:?}: {decided:?}");
                        allowed += usize::from(literal);
                        cases += 1;
                    }
                }
            }
        }
    }
    assert_eq!(cases, 6 * 3 * 5 * 3 * 2);
    // The one active coordinator standing × active in the team × nothing else, another
    // membership in A (active or not) or a deactivated one in B × no officer, or officer of A.
    assert_eq!(allowed, 4 * 2);
}

#[test]
fn who_is_an_active_coordinator() {
    let coordinator = Some(MembershipFacts { role: MembershipRole::Coordinator, status: ACTIVE });
    assert_eq!(check_coordinator(AccountStatus::Active, coordinator), Ok(()));
    for status in [AccountStatus::Invited, AccountStatus::Locked, AccountStatus::Disabled] {
        assert_eq!(check_coordinator(status, coordinator), Err(NotCoordinator::AccountNotActive(status)));
    }
    assert_eq!(check_coordinator(AccountStatus::Active, None), Err(NotCoordinator::NotAMemberOfTeam));
    assert_eq!(
        check_coordinator(
            AccountStatus::Active,
            Some(MembershipFacts { role: MembershipRole::Professional, status: ACTIVE })
        ),
        Err(NotCoordinator::ProfessionalRole)
    );
    assert_eq!(
        check_coordinator(
            AccountStatus::Active,
            Some(MembershipFacts { role: MembershipRole::Coordinator, status: DEACTIVATED })
        ),
        Err(NotCoordinator::MembershipDeactivated)
    );
    assert_eq!(
        NotCoordinator::ProfessionalRole.to_string(),
        "not an active coordinator of the team: a professional, not a coordinator"
    );
}

#[test]
fn joining_table() {
    let none: [OrganisationId; 0] = [];
    let only_a = [held(ORG_A, ACTIVE)];
    let also_b = [held(ORG_A, ACTIVE), held(ORG_B, ACTIVE)];
    let only_b = [held(ORG_B, ACTIVE)];
    let deactivated_a = [held(ORG_A, DEACTIVATED)];
    fn address(account: Option<AccountTies<'_>>, on_patient_record: bool) -> AddressFacts<'_> {
        AddressFacts { account, on_patient_record }
    }
    let leak = |reason| Joining::OnAcceptance(InvitationReason::NotOrganisationsAlone(reason));
    let patient_login = AccountTies { memberships: &[], privacy_officer_of: &[], is_patient: true };
    #[rustfmt::skip]
    let rows: Vec<(&str, AddressFacts<'_>, Joining)> = vec![
        ("no account, no patient record: invited (a new account, joins when activated)",
            address(None, false), Joining::OnAcceptance(InvitationReason::NewAddress)),
        ("no account, on a patient record: never",
            address(None, true), Joining::Unusable(UnusableAddress::OnPatientRecord)),
        ("a patient's login: never",
            address(Some(patient_login), false), Joining::Unusable(UnusableAddress::PatientLogin)),
        ("a staff account whose address is also on a patient record: never",
            address(Some(ties(&only_a, &none)), true), Joining::Unusable(UnusableAddress::OnPatientRecord)),
        ("active only in the organisation: at once",
            address(Some(ties(&only_a, &none)), false), Joining::Directly),
        ("active in the organisation and another: invited",
            address(Some(ties(&also_b, &none)), false), leak(Elsewhere::ActiveInAnotherOrganisation)),
        ("active only in another organisation: invited",
            address(Some(ties(&only_b, &none)), false), leak(Elsewhere::ActiveInAnotherOrganisation)),
        ("a privacy officer of another organisation: invited",
            address(Some(ties(&only_a, &[ORG_B])), false), leak(Elsewhere::PrivacyOfficerOfAnotherOrganisation)),
        ("only deactivated memberships in the organisation: invited",
            address(Some(ties(&deactivated_a, &none)), false), leak(Elsewhere::NotActiveInOrganisation)),
        ("an account with no memberships at all: invited",
            address(Some(ties(&[], &none)), false), leak(Elsewhere::NotActiveInOrganisation)),
    ];
    for (name, facts, expected) in rows {
        assert_eq!(decide_joining(ORG_A, &facts), expected, "{name}");
    }
}
