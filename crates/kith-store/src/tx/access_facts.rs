//! The facts the access rule (`kith_core::access`) needs, loaded in as few statements as
//! possible: a professional's read of a record, reads through an account, demographics.

use kith_core::access::{
    BreakGlassFacts, CareLinkFacts, DemographicsFacts, MembershipFacts, RecordAccessFacts, SessionFacts,
    TeamRelationFacts,
};
use kith_core::model::*;
use kith_core::team::{AccountStatus, MembershipRole, MembershipStatus, TeamKind};
use kith_core::*;

use super::rows::{coded, labels, patient_from};
use super::transaction::Tx;
use crate::error::StoreError;
use crate::value::Row;

/// What a professional's read of a record needs to know, loaded together by
/// [`Tx::record_read_facts`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordReadFacts {
    pub access: RecordAccessFacts,
    pub demographics: DemographicsFacts,
    pub patient: Patient,
}

/// The account and its membership of the acting team.
struct ProfessionalFacts {
    account_status: AccountStatus,
    membership: Option<MembershipFacts>,
    team_kind: TeamKind,
}

impl ProfessionalFacts {
    fn record_access_facts(
        &self,
        now: Timestamp,
        team: TeamId,
        care_link: Option<CareLinkFacts>,
        break_glass: Option<BreakGlassFacts>,
        sharing_disabled: bool,
    ) -> RecordAccessFacts {
        RecordAccessFacts {
            now,
            acting_team: team,
            acting_team_kind: self.team_kind,
            account_status: self.account_status,
            membership: self.membership,
            care_link,
            break_glass,
            sharing_disabled,
        }
    }
}

/// A care link's labels at `offset` and its discharge time after them (both NULL without a
/// link).
fn care_link_facts(row: &Row, offset: usize) -> Result<Option<CareLinkFacts>, StoreError> {
    match row.opt_int(offset)? {
        Some(bits) => Ok(Some(CareLinkFacts { labels: labels(bits)?, active: row.is_null(offset + 1)? })),
        None => Ok(None),
    }
}

/// What [`Tx::account_access_facts`] loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountAccessFacts {
    pub demographics: DemographicsFacts,
    /// The record-access facts through each of the account's teams, in team order.
    pub access: Vec<RecordAccessFacts>,
    /// Each of those teams with its organisation.
    pub organisations: Vec<(TeamId, OrganisationId)>,
}

impl Tx<'_> {
    // ----- facts for the access rule -----------------------------------------------------

    /// The facts about (account, acting team, patient); `None` when the account or the
    /// patient does not exist.
    pub fn record_access_facts(
        &mut self,
        account: AccountId,
        team: TeamId,
        patient: PatientId,
        now: Timestamp,
    ) -> Result<Option<RecordAccessFacts>, StoreError> {
        let Some(professional) = self.professional_facts(account, team)? else {
            return Ok(None);
        };
        let Some((sharing_disabled, care_link)) = self.one(
            "SELECT p.sharing_disabled, c.labels, c.discharged_at FROM patients p
             LEFT JOIN care_links c ON c.patient_id = p.id AND c.team_id = ? WHERE p.id = ?",
            &[team.into(), patient.into()],
            |row| Ok((row.bool(0)?, care_link_facts(row, 1)?)),
        )?
        else {
            return Ok(None);
        };
        let break_glass = self.latest_break_glass_facts(account, patient)?;
        Ok(Some(professional.record_access_facts(now, team, care_link, break_glass, sharing_disabled)))
    }

    /// What a professional's read of a record needs, in four statements: the facts for the
    /// access rule ([`Tx::record_access_facts`]), those for demographics
    /// ([`Tx::demographics_facts`]) and the patient. `None` when the account, the acting
    /// team or the patient does not exist.
    pub fn record_read_facts(
        &mut self,
        account: AccountId,
        team: TeamId,
        patient: PatientId,
        now: Timestamp,
    ) -> Result<Option<RecordReadFacts>, StoreError> {
        let Some(professional) = self.professional_facts(account, team)? else {
            return Ok(None);
        };
        let Some((record, care_link)) = self.one(
            "SELECT p.id, p.nhs_number, p.family_name, p.given_name, p.birth_date, p.sex, p.email, p.mobile,
                    p.registration, p.account_id, p.sharing_disabled, p.merged_into, p.created_at, p.updated_at, p.address,
                    c.labels, c.discharged_at
             FROM patients p LEFT JOIN care_links c ON c.patient_id = p.id AND c.team_id = ? WHERE p.id = ?",
            &[team.into(), patient.into()],
            |row| Ok((patient_from(row)?, care_link_facts(row, 15)?)),
        )?
        else {
            return Ok(None);
        };
        let break_glass = self.latest_break_glass_facts(account, patient)?;
        let teams = self.team_relation_facts(account, patient)?;
        let sharing_disabled = record.sharing_disabled;
        Ok(Some(RecordReadFacts {
            access: professional.record_access_facts(now, team, care_link, break_glass, sharing_disabled),
            demographics: DemographicsFacts {
                now,
                account_status: professional.account_status,
                teams,
                break_glass,
                sharing_disabled,
            },
            patient: record,
        }))
    }

    /// The account's status, its membership of the team and the team's kind; `None` when
    /// the account or the team does not exist.
    fn professional_facts(
        &mut self,
        account: AccountId,
        team: TeamId,
    ) -> Result<Option<ProfessionalFacts>, StoreError> {
        self.one(
            "SELECT a.status, m.role, m.status, t.kind FROM accounts a
             JOIN teams t ON t.id = ?
             LEFT JOIN memberships m ON m.account_id = a.id AND m.team_id = t.id WHERE a.id = ?",
            &[team.into(), account.into()],
            |row| {
                let account_status = coded("account status", row.text(0)?, AccountStatus::from_code)?;
                let membership = match (row.opt_text(1)?, row.opt_text(2)?) {
                    (Some(role), Some(status)) => Some(MembershipFacts {
                        role: coded("role", role, MembershipRole::from_code)?,
                        status: coded("membership status", status, MembershipStatus::from_code)?,
                    }),
                    _ => None,
                };
                let team_kind = coded("team kind", row.text(3)?, TeamKind::from_code)?;
                Ok(ProfessionalFacts { account_status, membership, team_kind })
            },
        )
    }

    fn latest_break_glass_facts(
        &mut self,
        account: AccountId,
        patient: PatientId,
    ) -> Result<Option<BreakGlassFacts>, StoreError> {
        self.one(
            "SELECT g.id, g.team_id, g.expires_at, g.ended_at, g.session_hash IS NOT NULL,
                    s.created_at, s.last_seen_at, s.expires_at, s.ended_at, s.id_hash IS NOT NULL
             FROM break_glass_grants g LEFT JOIN sessions s ON s.id_hash = g.session_hash
             WHERE g.patient_id = ? AND g.account_id = ?
             ORDER BY g.started_at DESC, g.id DESC LIMIT 1",
            &[patient.into(), account.into()],
            |row| {
                let expires_at = row.timestamp(2)?;
                let session = match (row.bool(4)?, row.bool(9)?) {
                    (false, _) => None,
                    (true, true) => Some(SessionFacts {
                        created_at: row.timestamp(5)?,
                        last_seen_at: row.timestamp(6)?,
                        expires_at: row.timestamp(7)?,
                        ended: !row.is_null(8)?,
                    }),
                    // The session it was opened in is gone (cleaned up): it has ended.
                    (true, false) => {
                        Some(SessionFacts { created_at: expires_at, last_seen_at: expires_at, expires_at, ended: true })
                    }
                };
                Ok(BreakGlassFacts {
                    grant: BreakGlassId::from_uuid(row.uuid(0)?),
                    team: TeamId::from_uuid(row.uuid(1)?),
                    expires_at,
                    ended: !row.is_null(3)?,
                    session,
                })
            },
        )
    }

    /// Each of the account's memberships and how its team relates to the patient.
    fn team_relation_facts(
        &mut self,
        account: AccountId,
        patient: PatientId,
    ) -> Result<Vec<TeamRelationFacts>, StoreError> {
        self.all(
            "SELECT m.team_id, m.role, m.status,
                    EXISTS (SELECT 1 FROM care_links c WHERE c.patient_id = ? AND c.team_id = m.team_id AND c.discharged_at IS NULL),
                    EXISTS (SELECT 1 FROM record_entries e WHERE e.patient_id = ? AND e.authored_team_id = m.team_id),
                    t.kind
             FROM memberships m JOIN teams t ON t.id = m.team_id WHERE m.account_id = ? ORDER BY m.team_id",
            &[patient.into(), patient.into(), account.into()],
            |row| {
                Ok(TeamRelationFacts {
                    team: TeamId::from_uuid(row.uuid(0)?),
                    membership: MembershipFacts {
                        role: coded("role", row.text(1)?, MembershipRole::from_code)?,
                        status: coded("membership status", row.text(2)?, MembershipStatus::from_code)?,
                    },
                    care_link_active: row.bool(3)?,
                    authored_entries: row.bool(4)?,
                    kind: coded("team kind", row.text(5)?, TeamKind::from_code)?,
                })
            },
        )
    }

    /// Everything the rule needs about an account (with this status) and a patient (with this
    /// sharing flag), for every team the account is a member of, in two statements: the
    /// demographics facts, and the record-access facts of each membership (in team order),
    /// with each team's organisation (for the audit events). The same facts as
    /// [`Tx::demographics_facts`] and [`Tx::record_access_facts`] per team.
    pub fn account_access_facts(
        &mut self,
        account: AccountId,
        account_status: AccountStatus,
        patient: PatientId,
        sharing_disabled: bool,
        now: Timestamp,
    ) -> Result<AccountAccessFacts, StoreError> {
        // Each membership with its team's care link to the patient, if any (one at most:
        // the link's key is the patient and the team).
        let relations = self.all(
            "SELECT m.team_id, m.role, m.status, c.labels, c.discharged_at,
                    EXISTS (SELECT 1 FROM record_entries e WHERE e.patient_id = ? AND e.authored_team_id = m.team_id),
                    t.kind, t.organisation_id
             FROM memberships m JOIN teams t ON t.id = m.team_id
             LEFT JOIN care_links c ON c.patient_id = ? AND c.team_id = m.team_id
             WHERE m.account_id = ? ORDER BY m.team_id",
            &[patient.into(), patient.into(), account.into()],
            |row| {
                let care_link = care_link_facts(row, 3)?;
                let relation = TeamRelationFacts {
                    team: TeamId::from_uuid(row.uuid(0)?),
                    membership: MembershipFacts {
                        role: coded("role", row.text(1)?, MembershipRole::from_code)?,
                        status: coded("membership status", row.text(2)?, MembershipStatus::from_code)?,
                    },
                    care_link_active: care_link.is_some_and(|link| link.active),
                    authored_entries: row.bool(5)?,
                    kind: coded("team kind", row.text(6)?, TeamKind::from_code)?,
                };
                Ok((relation, care_link, OrganisationId::from_uuid(row.uuid(7)?)))
            },
        )?;
        let break_glass = self.latest_break_glass_facts(account, patient)?;
        let access = relations
            .iter()
            .map(|(relation, care_link, _)| {
                ProfessionalFacts { account_status, membership: Some(relation.membership), team_kind: relation.kind }
                    .record_access_facts(now, relation.team, *care_link, break_glass, sharing_disabled)
            })
            .collect();
        let organisations =
            relations.iter().map(|(relation, _, organisation)| (relation.team, *organisation)).collect();
        let teams = relations.into_iter().map(|(relation, ..)| relation).collect();
        Ok(AccountAccessFacts {
            demographics: DemographicsFacts { now, account_status, teams, break_glass, sharing_disabled },
            access,
            organisations,
        })
    }

    /// The facts about whether the account may see who the patient is; `None` when either
    /// does not exist.
    pub fn demographics_facts(
        &mut self,
        account: AccountId,
        patient: PatientId,
        now: Timestamp,
    ) -> Result<Option<DemographicsFacts>, StoreError> {
        let Some(account_status) = self.one("SELECT status FROM accounts WHERE id = ?", &[account.into()], |row| {
            coded("account status", row.text(0)?, AccountStatus::from_code)
        })?
        else {
            return Ok(None);
        };
        let Some(sharing_disabled) =
            self.one("SELECT sharing_disabled FROM patients WHERE id = ?", &[patient.into()], |row| row.bool(0))?
        else {
            return Ok(None);
        };
        let teams = self.team_relation_facts(account, patient)?;
        let break_glass = self.latest_break_glass_facts(account, patient)?;
        Ok(Some(DemographicsFacts { now, account_status, teams, break_glass, sharing_disabled }))
    }
}
