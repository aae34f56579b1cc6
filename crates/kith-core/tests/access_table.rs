//! The access rule over every combination of membership state, care-link state and labels,
//! entry label, authorship, break glass (none, active, expired, ended), sharing disabled and
//! account state — checked against a second, literal reading of DESIGN.md §3 — and a table
//! of named rows for the cases people ask about.

use kith_core::access::{
    BreakGlassFacts, BreakGlassRequestFacts, CareLinkFacts, DemographicsFacts, EntryFacts, MembershipFacts,
    RecordAccessFacts, SessionFacts, TeamRelationFacts, decide_break_glass, decide_demographics, decide_entry,
    decide_write, record_scope,
};
use kith_core::team::{AccountStatus, MembershipRole, MembershipStatus, TeamKind};
use kith_core::{Basis, BreakGlassId, Decision, DenyReason, LabelSet, PrivacyLabel, TeamId, Timestamp};
use uuid::Uuid;

const NOW: Timestamp = Timestamp::from_micros(1_800_000_000_000_000);
const TEAM: TeamId = TeamId::from_uuid(Uuid::from_u128(1));
const OTHER_TEAM: TeamId = TeamId::from_uuid(Uuid::from_u128(2));
const GRANT: BreakGlassId = BreakGlassId::from_uuid(Uuid::from_u128(3));

#[derive(Clone, Copy, Debug)]
enum Glass {
    None,
    /// Opened through the acting team, outside a web session (API, CLI).
    Active,
    /// Opened through the acting team in a web session still live.
    InLiveSession,
    /// Opened through the acting team in a web session since signed out.
    SessionSignedOut,
    /// Opened in a web session that has been idle past the limit.
    SessionIdle,
    /// Opened through another of P's teams.
    ThroughOtherTeam,
    Expired,
    Ended,
}

const GLASSES: [Glass; 8] = [
    Glass::None,
    Glass::Active,
    Glass::InLiveSession,
    Glass::SessionSignedOut,
    Glass::SessionIdle,
    Glass::ThroughOtherTeam,
    Glass::Expired,
    Glass::Ended,
];

fn glass_facts(glass: Glass) -> Option<BreakGlassFacts> {
    let hour = std::time::Duration::from_secs(3600);
    let earlier = Timestamp::from_micros(NOW.as_micros() - 3600 * 1_000_000);
    let session = |last_seen_at: Timestamp, ended: bool| SessionFacts {
        created_at: earlier,
        last_seen_at,
        expires_at: NOW.plus(hour),
        ended,
    };
    let active = BreakGlassFacts { grant: GRANT, team: TEAM, expires_at: NOW.plus(hour), ended: false, session: None };
    match glass {
        Glass::None => None,
        Glass::Active => Some(active),
        Glass::InLiveSession => Some(BreakGlassFacts {
            session: Some(session(Timestamp::from_micros(NOW.as_micros() - 60_000_000), false)),
            ..active
        }),
        Glass::SessionSignedOut => Some(BreakGlassFacts { session: Some(session(NOW, true)), ..active }),
        Glass::SessionIdle => Some(BreakGlassFacts { session: Some(session(earlier, false)), ..active }),
        Glass::ThroughOtherTeam => Some(BreakGlassFacts { team: OTHER_TEAM, ..active }),
        Glass::Expired => Some(BreakGlassFacts { expires_at: NOW, ..active }),
        Glass::Ended => Some(BreakGlassFacts { ended: true, ..active }),
    }
}

/// The grant, read literally: opened through the acting team, not ended, not expired, and
/// its web session (if any) signed in, used in the last 30 minutes.
fn glass_open_through(glass: Option<BreakGlassFacts>, team: TeamId) -> bool {
    glass.is_some_and(|g| {
        g.team == team
            && !g.ended
            && NOW < g.expires_at
            && g.session.is_none_or(|s| {
                !s.ended && NOW.as_micros() - s.last_seen_at.as_micros() < 30 * 60 * 1_000_000 && NOW < s.expires_at
            })
    })
}

/// DESIGN.md §3 read literally, as a boolean formula, without the scope machinery.
fn reference_visible(facts: &RecordAccessFacts, entry: &EntryFacts) -> bool {
    let precondition = facts.account_status == AccountStatus::Active
        && facts.membership
            == Some(MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Active });
    let link_labels = match facts.care_link {
        Some(CareLinkFacts { labels, active: true }) if !facts.sharing_disabled => labels,
        _ => LabelSet::EMPTY,
    };
    let label_ok = match entry.label {
        Some(label) => link_labels.contains(label),
        None => link_labels == LabelSet::ALL,
    };
    // The Patient Record Team holds the organisation's feed data without access to it.
    let authored = entry.authored_by == facts.acting_team && facts.acting_team_kind == TeamKind::Speciality;
    let glass = glass_open_through(facts.break_glass, facts.acting_team) && !facts.sharing_disabled;
    precondition && (label_ok || authored || glass)
}

fn all_facts() -> Vec<RecordAccessFacts> {
    let memberships = [
        None,
        Some(MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Active }),
        Some(MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Deactivated }),
        Some(MembershipFacts { role: MembershipRole::Coordinator, status: MembershipStatus::Active }),
        Some(MembershipFacts { role: MembershipRole::Coordinator, status: MembershipStatus::Deactivated }),
    ];
    let mut links = vec![None];
    for bits in 0..16 {
        for active in [true, false] {
            links.push(Some(CareLinkFacts { labels: LabelSet::from_bits(bits).unwrap(), active }));
        }
    }
    let mut out = Vec::new();
    for account_status in AccountStatus::ALL.iter().copied() {
        for membership in memberships {
            for care_link in &links {
                for glass in GLASSES {
                    for sharing_disabled in [false, true] {
                        for acting_team_kind in [TeamKind::Speciality, TeamKind::PatientRecord] {
                            out.push(RecordAccessFacts {
                                now: NOW,
                                acting_team: TEAM,
                                acting_team_kind,
                                account_status,
                                membership,
                                care_link: *care_link,
                                break_glass: glass_facts(glass),
                                sharing_disabled,
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

fn all_entries() -> Vec<EntryFacts> {
    let labels = [None].into_iter().chain(PrivacyLabel::ALL.into_iter().map(Some));
    labels.flat_map(|label| [TEAM, OTHER_TEAM].map(|authored_by| EntryFacts { label, authored_by })).collect()
}

#[test]
fn every_combination_agrees_with_the_literal_rule() {
    let facts = all_facts();
    let entries = all_entries();
    let mut allowed = 0;
    let mut checked = 0;
    for facts in &facts {
        let scope = record_scope(facts);
        for entry in &entries {
            let decision = decide_entry(facts, entry);
            let expected = reference_visible(facts, entry);
            assert_eq!(decision.is_allowed(), expected, "{facts:?} {entry:?} → {decision:?}");
            assert_eq!(scope.decide(entry), decision);
            // The basis names the narrowest ground that applies: consent, then the team's own
            // data, then break glass.
            if let Decision::Allow(basis) = decision {
                allowed += 1;
                let expected_basis = match basis {
                    Basis::Consent { team } => team == TEAM && facts.care_link.is_some_and(|l| l.active),
                    Basis::OwnTeamData { team } => {
                        team == TEAM && entry.authored_by == TEAM && facts.acting_team_kind == TeamKind::Speciality
                    }
                    Basis::BreakGlass { grant } => {
                        grant == GRANT
                            && (entry.authored_by != TEAM || facts.acting_team_kind == TeamKind::PatientRecord)
                    }
                    Basis::SelfAccess | Basis::Administration => false,
                };
                assert!(expected_basis, "{facts:?} {entry:?} → {basis:?}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 4 * 5 * 33 * GLASSES.len() * 2 * 2 * 10);
    assert!(allowed > 1000, "the table must exercise allowed cases too ({allowed})");
}

#[test]
fn bringing_in_and_discharging_need_an_active_professional_of_the_team() {
    use kith_core::access::{decide_team_discharge, decide_team_link};
    for facts in all_facts() {
        let professional = facts.account_status == AccountStatus::Active
            && facts.membership
                == Some(MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Active });
        assert_eq!(decide_team_link(&facts).is_ok(), professional, "{facts:?}");
        let linked = facts.care_link.is_some_and(|link| link.active);
        assert_eq!(decide_team_discharge(&facts).is_ok(), professional && linked, "{facts:?}");
    }
}

#[test]
fn the_workspace_is_for_active_professionals_of_the_team() {
    use kith_core::access::decide_workspace;
    let professional = MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Active };
    let coordinator = MembershipFacts { role: MembershipRole::Coordinator, status: MembershipStatus::Active };
    let deactivated = MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Deactivated };
    let rows = [
        (AccountStatus::Active, Some(professional), Ok(())),
        (AccountStatus::Active, Some(coordinator), Err(DenyReason::CoordinatorRoleHasNoClinicalAccess)),
        (AccountStatus::Active, Some(deactivated), Err(DenyReason::MembershipDeactivated)),
        (AccountStatus::Active, None, Err(DenyReason::NotAMemberOfTeam)),
        (AccountStatus::Locked, Some(professional), Err(DenyReason::AccountNotActive(AccountStatus::Locked))),
        (AccountStatus::Disabled, Some(professional), Err(DenyReason::AccountNotActive(AccountStatus::Disabled))),
        (AccountStatus::Invited, Some(professional), Err(DenyReason::AccountNotActive(AccountStatus::Invited))),
    ];
    for (status, membership, expected) in rows {
        assert_eq!(decide_workspace(status, membership), expected, "{status:?} {membership:?}");
    }
}

#[test]
fn writing_follows_the_link_or_the_glass() {
    for facts in all_facts() {
        let expected = facts.account_status == AccountStatus::Active
            && facts.membership
                == Some(MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Active })
            && !facts.sharing_disabled
            && (facts.care_link.is_some_and(|l| l.active) || glass_open_through(facts.break_glass, TEAM));
        assert_eq!(decide_write(&facts).is_allowed(), expected, "{facts:?}");
    }
}

/// Named rows: (situation, facts, entry, expected decision).
#[test]
fn named_rows() {
    let professional = Some(MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Active });
    let general_and_mental = LabelSet::from_labels([PrivacyLabel::General, PrivacyLabel::MentalHealth]);
    let linked = RecordAccessFacts {
        now: NOW,
        acting_team: TEAM,
        acting_team_kind: TeamKind::Speciality,
        account_status: AccountStatus::Active,
        membership: professional,
        care_link: Some(CareLinkFacts { labels: general_and_mental, active: true }),
        break_glass: None,
        sharing_disabled: false,
    };
    let from_elsewhere = |label| EntryFacts { label: Some(label), authored_by: OTHER_TEAM };
    let own = |label| EntryFacts { label: Some(label), authored_by: TEAM };
    let rows: Vec<(&str, RecordAccessFacts, EntryFacts, Decision)> = vec![
        (
            "consented label",
            linked,
            from_elsewhere(PrivacyLabel::MentalHealth),
            Decision::Allow(Basis::Consent { team: TEAM }),
        ),
        (
            "label not consented",
            linked,
            from_elsewhere(PrivacyLabel::SexualHealth),
            Decision::Deny(DenyReason::LabelNotConsented(PrivacyLabel::SexualHealth)),
        ),
        (
            "own data without consent",
            linked,
            own(PrivacyLabel::SocialCare),
            Decision::Allow(Basis::OwnTeamData { team: TEAM }),
        ),
        (
            "unlabelled entry, all four labels",
            RecordAccessFacts { care_link: Some(CareLinkFacts { labels: LabelSet::ALL, active: true }), ..linked },
            EntryFacts { label: None, authored_by: OTHER_TEAM },
            Decision::Allow(Basis::Consent { team: TEAM }),
        ),
        (
            "unlabelled entry, two labels",
            linked,
            EntryFacts { label: None, authored_by: OTHER_TEAM },
            Decision::Deny(DenyReason::UnlabelledEntryNeedsAllLabels),
        ),
        (
            "discharged: own data only",
            RecordAccessFacts {
                care_link: Some(CareLinkFacts { labels: general_and_mental, active: false }),
                ..linked
            },
            from_elsewhere(PrivacyLabel::General),
            Decision::Deny(DenyReason::CareLinkDischarged),
        ),
        (
            "discharged, own data",
            RecordAccessFacts {
                care_link: Some(CareLinkFacts { labels: general_and_mental, active: false }),
                ..linked
            },
            own(PrivacyLabel::General),
            Decision::Allow(Basis::OwnTeamData { team: TEAM }),
        ),
        (
            "deactivated membership sees not even its own data",
            RecordAccessFacts {
                membership: Some(MembershipFacts {
                    role: MembershipRole::Professional,
                    status: MembershipStatus::Deactivated,
                }),
                ..linked
            },
            own(PrivacyLabel::General),
            Decision::Deny(DenyReason::MembershipDeactivated),
        ),
        (
            "coordinator only",
            RecordAccessFacts {
                membership: Some(MembershipFacts {
                    role: MembershipRole::Coordinator,
                    status: MembershipStatus::Active,
                }),
                ..linked
            },
            from_elsewhere(PrivacyLabel::General),
            Decision::Deny(DenyReason::CoordinatorRoleHasNoClinicalAccess),
        ),
        (
            "locked account",
            RecordAccessFacts { account_status: AccountStatus::Locked, ..linked },
            from_elsewhere(PrivacyLabel::General),
            Decision::Deny(DenyReason::AccountNotActive(AccountStatus::Locked)),
        ),
        (
            "break glass, no link",
            RecordAccessFacts { care_link: None, break_glass: glass_facts(Glass::Active), ..linked },
            from_elsewhere(PrivacyLabel::SexualHealth),
            Decision::Allow(Basis::BreakGlass { grant: GRANT }),
        ),
        (
            "break glass opened through another of the professional's teams",
            RecordAccessFacts { care_link: None, break_glass: glass_facts(Glass::ThroughOtherTeam), ..linked },
            from_elsewhere(PrivacyLabel::SexualHealth),
            Decision::Deny(DenyReason::NoCareLink),
        ),
        (
            "break glass in a session since signed out",
            RecordAccessFacts { care_link: None, break_glass: glass_facts(Glass::SessionSignedOut), ..linked },
            from_elsewhere(PrivacyLabel::General),
            Decision::Deny(DenyReason::NoCareLink),
        ),
        (
            "break glass in a live session",
            RecordAccessFacts { care_link: None, break_glass: glass_facts(Glass::InLiveSession), ..linked },
            from_elsewhere(PrivacyLabel::General),
            Decision::Allow(Basis::BreakGlass { grant: GRANT }),
        ),
        (
            "break glass, the membership it was opened through deactivated",
            RecordAccessFacts {
                care_link: None,
                break_glass: glass_facts(Glass::Active),
                membership: Some(MembershipFacts {
                    role: MembershipRole::Professional,
                    status: MembershipStatus::Deactivated,
                }),
                ..linked
            },
            from_elsewhere(PrivacyLabel::General),
            Decision::Deny(DenyReason::MembershipDeactivated),
        ),
        (
            "break glass expired",
            RecordAccessFacts { care_link: None, break_glass: glass_facts(Glass::Expired), ..linked },
            from_elsewhere(PrivacyLabel::SexualHealth),
            Decision::Deny(DenyReason::NoCareLink),
        ),
        (
            "break glass on a locked-down record",
            RecordAccessFacts { break_glass: glass_facts(Glass::Active), sharing_disabled: true, ..linked },
            from_elsewhere(PrivacyLabel::General),
            Decision::Deny(DenyReason::SharingDisabled),
        ),
        (
            "locked-down record keeps the team's own data",
            RecordAccessFacts { sharing_disabled: true, ..linked },
            own(PrivacyLabel::MentalHealth),
            Decision::Allow(Basis::OwnTeamData { team: TEAM }),
        ),
        (
            "the Patient Record Team does not see the organisation's data it holds",
            RecordAccessFacts {
                acting_team_kind: TeamKind::PatientRecord,
                care_link: Some(CareLinkFacts { labels: LabelSet::EMPTY, active: true }),
                ..linked
            },
            own(PrivacyLabel::General),
            Decision::Deny(DenyReason::LabelNotConsented(PrivacyLabel::General)),
        ),
        (
            "the Patient Record Team with general health added on the patient's behalf",
            RecordAccessFacts {
                acting_team_kind: TeamKind::PatientRecord,
                care_link: Some(CareLinkFacts { labels: LabelSet::EMPTY.with(PrivacyLabel::General), active: true }),
                ..linked
            },
            own(PrivacyLabel::General),
            Decision::Allow(Basis::Consent { team: TEAM }),
        ),
    ];
    for (situation, facts, entry, expected) in rows {
        assert_eq!(decide_entry(&facts, &entry), expected, "{situation}");
    }
}

#[test]
fn demographics_follow_any_clinical_team_or_the_glass() {
    let professional = MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Active };
    let coordinator = MembershipFacts { role: MembershipRole::Coordinator, status: MembershipStatus::Active };
    let deactivated = MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Deactivated };
    let relation = |membership, care_link_active, authored_entries| TeamRelationFacts {
        team: TEAM,
        kind: TeamKind::Speciality,
        membership,
        care_link_active,
        authored_entries,
    };
    let facts = |teams: Vec<TeamRelationFacts>, glass: Glass, sharing_disabled: bool| DemographicsFacts {
        now: NOW,
        account_status: AccountStatus::Active,
        teams,
        break_glass: glass_facts(glass),
        sharing_disabled,
    };
    let rows = [
        (
            "linked team, even with no labels (the PRT)",
            facts(vec![relation(professional, true, false)], Glass::None, false),
            Decision::Allow(Basis::Consent { team: TEAM }),
        ),
        (
            "past patient of the team",
            facts(vec![relation(professional, false, true)], Glass::None, false),
            Decision::Allow(Basis::OwnTeamData { team: TEAM }),
        ),
        (
            "a Patient Record Team no longer linked, holding feed data",
            facts(
                vec![TeamRelationFacts { kind: TeamKind::PatientRecord, ..relation(professional, false, true) }],
                Glass::None,
                false,
            ),
            Decision::Deny(DenyReason::NoRelationshipWithPatient),
        ),
        (
            "coordinator of a linked team",
            facts(vec![relation(coordinator, true, true)], Glass::None, false),
            Decision::Deny(DenyReason::NoRelationshipWithPatient),
        ),
        ("stranger", facts(vec![], Glass::None, false), Decision::Deny(DenyReason::NoRelationshipWithPatient)),
        (
            "stranger under break glass opened through their team",
            facts(vec![relation(professional, false, false)], Glass::Active, false),
            Decision::Allow(Basis::BreakGlass { grant: GRANT }),
        ),
        (
            "stranger under break glass, no longer a member of any team",
            facts(vec![], Glass::Active, false),
            Decision::Deny(DenyReason::NoRelationshipWithPatient),
        ),
        (
            "under break glass, the membership it was opened through deactivated",
            facts(vec![relation(deactivated, false, false)], Glass::Active, false),
            Decision::Deny(DenyReason::NoRelationshipWithPatient),
        ),
        (
            "under break glass, now only a coordinator of the team it was opened through",
            facts(vec![relation(coordinator, false, false)], Glass::Active, false),
            Decision::Deny(DenyReason::NoRelationshipWithPatient),
        ),
        (
            "under break glass opened through a team they have left, active in another",
            facts(vec![relation(professional, false, false)], Glass::ThroughOtherTeam, false),
            Decision::Deny(DenyReason::NoRelationshipWithPatient),
        ),
        (
            "under break glass, the session it was opened in signed out",
            facts(vec![relation(professional, false, false)], Glass::SessionSignedOut, false),
            Decision::Deny(DenyReason::NoRelationshipWithPatient),
        ),
        (
            "stranger after the glass expired",
            facts(vec![relation(professional, false, false)], Glass::Expired, false),
            Decision::Deny(DenyReason::NoRelationshipWithPatient),
        ),
        (
            "locked-down record, linked team",
            facts(vec![relation(professional, true, false)], Glass::Active, true),
            Decision::Deny(DenyReason::SharingDisabled),
        ),
        (
            "locked-down record, past patient",
            facts(vec![relation(professional, true, true)], Glass::None, true),
            Decision::Allow(Basis::OwnTeamData { team: TEAM }),
        ),
    ];
    for (situation, facts, expected) in rows {
        assert_eq!(decide_demographics(&facts), expected, "{situation}");
    }
    let disabled = DemographicsFacts {
        account_status: AccountStatus::Disabled,
        ..facts(vec![relation(professional, true, true)], Glass::Active, false)
    };
    assert_eq!(decide_demographics(&disabled), Decision::Deny(DenyReason::AccountNotActive(AccountStatus::Disabled)));
}

#[test]
fn breaking_the_glass() {
    let active = Some(MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Active });
    let request = BreakGlassRequestFacts {
        account_status: AccountStatus::Active,
        membership: active,
        patient_in_organisation: true,
        sharing_disabled: false,
    };
    assert_eq!(decide_break_glass(&request), Ok(()));
    assert_eq!(
        decide_break_glass(&BreakGlassRequestFacts { sharing_disabled: true, ..request }),
        Err(DenyReason::SharingDisabled)
    );
    assert_eq!(
        decide_break_glass(&BreakGlassRequestFacts { patient_in_organisation: false, ..request }),
        Err(DenyReason::PatientNotInOrganisation)
    );
    assert_eq!(
        decide_break_glass(&BreakGlassRequestFacts {
            membership: Some(MembershipFacts { role: MembershipRole::Coordinator, status: MembershipStatus::Active }),
            ..request
        }),
        Err(DenyReason::CoordinatorRoleHasNoClinicalAccess)
    );
    assert_eq!(
        decide_break_glass(&BreakGlassRequestFacts { membership: None, ..request }),
        Err(DenyReason::NotAMemberOfTeam)
    );
}

#[test]
fn breaking_the_glass_by_look_up_decides_on_the_caller_before_the_record() {
    use kith_core::consent::LookupResult;
    use kith_core::consent::{BreakGlassLookupRefusal, decide_break_glass_lookup};
    let active = Some(MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Active });
    let coordinator = Some(MembershipFacts { role: MembershipRole::Coordinator, status: MembershipStatus::Active });
    let found = |patient_in_organisation, sharing_disabled| LookupResult::Found {
        patient_in_organisation,
        sharing_disabled,
        in_team: false,
    };
    assert_eq!(decide_break_glass_lookup(AccountStatus::Active, active, found(true, false)), Ok(()));
    for miss in [LookupResult::NoRecord, LookupResult::BirthDateDiffers, found(false, false), found(true, true)] {
        assert!(
            matches!(
                decide_break_glass_lookup(AccountStatus::Active, active, miss),
                Err(BreakGlassLookupRefusal::NoMatch(_))
            ),
            "{miss:?}"
        );
        // Refused whatever the record: the same answer for a hit and a miss.
        assert_eq!(
            decide_break_glass_lookup(AccountStatus::Active, coordinator, miss),
            Err(BreakGlassLookupRefusal::Caller(DenyReason::CoordinatorRoleHasNoClinicalAccess))
        );
    }
    assert_eq!(
        decide_break_glass_lookup(AccountStatus::Active, coordinator, found(true, false)),
        Err(BreakGlassLookupRefusal::Caller(DenyReason::CoordinatorRoleHasNoClinicalAccess))
    );
}
