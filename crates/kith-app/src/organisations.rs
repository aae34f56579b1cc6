//! Organisations, teams and the people in them.

use std::time::Duration;

use kith_core::access::grant_ending;
use kith_core::audit::{Actor, Channel, Outcome};
use kith_core::coordination::check_coordinator;
use kith_core::model::{Account, Membership, Organisation, Team};
use kith_core::team::{
    AccountStatus, DEFAULT_BREAK_GLASS_DURATION, MembershipRole, MembershipStatus, Permitted, TeamKind, TeamStatus,
    check_break_glass_duration, check_coordinator_leaving, check_go_live,
};
use kith_core::text::{EmailAddress, Name, OrganisationCode, TeamAlias};
use kith_core::{AccountId, LabelSet, OrganisationId, TeamId};
use kith_store::Tx;

use crate::{App, AppError, AppResult, AuditBuilder, Operator, ProfessionalContext, new_uuid};

/// A new organisation as the operator describes it.
#[derive(Clone, Debug)]
pub struct NewOrganisation {
    pub code: OrganisationCode,
    pub name: Name,
    pub break_glass_duration: Option<Duration>,
}

/// A new member of a team.
#[derive(Clone, Debug)]
pub struct NewMember {
    pub organisation: OrganisationCode,
    pub team: TeamAlias,
    pub email: EmailAddress,
    pub name: Name,
    pub role: MembershipRole,
    /// An Argon2id hash; with it a new account is active, without it invited.
    pub password_hash: Option<String>,
}

/// What adding a member did.
#[derive(Clone, Debug)]
pub struct AddedMember {
    pub account: Account,
    pub membership: Membership,
    /// False when the email already had an account (a new membership of an existing login).
    pub account_created: bool,
}

/// A team and its members with their accounts.
pub type TeamWithMembers = (Team, Vec<(Membership, Account)>);

/// What a change to a membership did.
#[derive(Clone, Debug)]
pub struct MembershipChange {
    pub membership: Membership,
    /// The team rule the operator overrode with `--force`, if any.
    pub overridden: Option<String>,
}

pub(crate) fn organisation_by_code(tx: &mut Tx<'_>, code: &OrganisationCode) -> AppResult<Organisation> {
    tx.organisation_by_code(code)?.ok_or_else(|| AppError::NotFound(format!("no organisation has the code {code}")))
}

pub(crate) fn team_by_alias(tx: &mut Tx<'_>, organisation: &Organisation, alias: &TeamAlias) -> AppResult<Team> {
    tx.team_by_alias(organisation.id, alias)?.ok_or_else(|| {
        AppError::NotFound(format!("organisation {} has no team with the alias {alias}", organisation.code))
    })
}

pub(crate) fn account_by_email(tx: &mut Tx<'_>, email: &EmailAddress) -> AppResult<Account> {
    tx.account_by_email(email)?.ok_or_else(|| AppError::NotFound(format!("no account has the email {email}")))
}

fn membership_of(tx: &mut Tx<'_>, account: &Account, team: &Team) -> AppResult<Membership> {
    tx.membership(account.id, team.id)?
        .ok_or_else(|| AppError::NotFound(format!("{} is not a member of team {}", account.email, team.alias)))
}

impl App {
    /// Creates an organisation with its Patient Record Team (alias `prt`, no labels).
    pub fn create_organisation(&self, operator: &Operator, new: &NewOrganisation) -> AppResult<(Organisation, Team)> {
        let duration = match new.break_glass_duration {
            Some(duration) => check_break_glass_duration(duration).map_err(AppError::Invalid)?,
            None => DEFAULT_BREAK_GLASS_DURATION,
        };
        let now = self.now();
        self.store.write(|tx| {
            if tx.organisation_by_code(&new.code)?.is_some() {
                return Err(AppError::Conflict(format!("an organisation with the code {} already exists", new.code)));
            }
            let organisation = Organisation {
                id: OrganisationId::from_uuid(new_uuid()),
                code: new.code.clone(),
                name: new.name.clone(),
                break_glass_duration: duration,
                created_at: now,
            };
            let prt = Team {
                id: TeamId::from_uuid(new_uuid()),
                organisation: organisation.id,
                kind: TeamKind::PatientRecord,
                name: Name::parse("team name", "Patient Record Team")?,
                alias: TeamAlias::patient_record_team(),
                status: TeamStatus::Setup,
                default_labels: LabelSet::EMPTY,
                created_at: now,
            };
            tx.insert_organisation(&organisation)?;
            tx.insert_team(&prt)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "organisation.create")
                    .organisation(organisation.id)
                    .subject(organisation.code.as_str())
                    .basis("administration")
                    .build(),
            );
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "team.create")
                    .organisation(organisation.id)
                    .team(prt.id)
                    .subject(prt.alias.as_str())
                    .basis("administration")
                    .build(),
            );
            Ok((organisation, prt))
        })
    }

    /// Sets how long a break-the-glass grant lasts in an organisation.
    pub fn set_break_glass_duration(
        &self,
        operator: &Operator,
        code: &OrganisationCode,
        duration: Duration,
    ) -> AppResult<Organisation> {
        let duration = check_break_glass_duration(duration).map_err(AppError::Invalid)?;
        let now = self.now();
        self.store.write(|tx| {
            let mut organisation = organisation_by_code(tx, code)?;
            tx.set_break_glass_duration(organisation.id, duration)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "organisation.settings")
                    .organisation(organisation.id)
                    .subject(format!("break_glass_duration={}s", duration.as_secs()))
                    .basis("administration")
                    .build(),
            );
            organisation.break_glass_duration = duration;
            Ok(organisation)
        })
    }

    /// Creates a speciality team (in set-up) with its default labels.
    pub fn create_team(
        &self,
        operator: &Operator,
        code: &OrganisationCode,
        name: &Name,
        alias: &TeamAlias,
        default_labels: LabelSet,
    ) -> AppResult<Team> {
        let now = self.now();
        self.store.write(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            if tx.team_by_alias(organisation.id, alias)?.is_some() {
                return Err(AppError::Conflict(format!(
                    "organisation {code} already has a team with the alias {alias}"
                )));
            }
            let team = Team {
                id: TeamId::from_uuid(new_uuid()),
                organisation: organisation.id,
                kind: TeamKind::Speciality,
                name: name.clone(),
                alias: alias.clone(),
                status: TeamStatus::Setup,
                default_labels,
                created_at: now,
            };
            tx.insert_team(&team)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "team.create")
                    .organisation(organisation.id)
                    .team(team.id)
                    .subject(team.alias.as_str())
                    .data(String::new(), default_labels)
                    .basis("administration")
                    .build(),
            );
            Ok(team)
        })
    }

    /// Adds a professional or coordinator to a team: a new account when the email is new,
    /// otherwise a new membership of the existing account.
    pub fn add_member(&self, operator: &Operator, new: &NewMember) -> AppResult<AddedMember> {
        let now = self.now();
        self.store.write(|tx| {
            let organisation = organisation_by_code(tx, &new.organisation)?;
            let team = team_by_alias(tx, &organisation, &new.team)?;
            if team.status == TeamStatus::Closed {
                return Err(AppError::TeamRule(kith_core::team::TeamRuleViolation::TeamClosed));
            }
            let (account, account_created) = match tx.account_by_email(&new.email)? {
                Some(account) => (account, false),
                None => {
                    let status =
                        if new.password_hash.is_some() { AccountStatus::Active } else { AccountStatus::Invited };
                    let account = Account {
                        id: AccountId::from_uuid(new_uuid()),
                        email: new.email.clone(),
                        name: new.name.clone(),
                        status,
                        created_at: now,
                    };
                    tx.insert_account(&account, new.password_hash.as_deref())?;
                    tx.audit(
                        AuditBuilder::new(now, operator.actor(), Channel::Cli, "account.create")
                            .organisation(organisation.id)
                            .subject(account.id)
                            .basis("administration")
                            .build(),
                    );
                    (account, true)
                }
            };
            if let Some(existing) = tx.membership(account.id, team.id)? {
                let hint = match existing.status {
                    MembershipStatus::Active => "",
                    MembershipStatus::Deactivated => " (deactivated: reactivate it instead)",
                };
                return Err(AppError::Conflict(format!(
                    "{} is already a {} of team {}{hint}",
                    account.email, existing.role, team.alias
                )));
            }
            let membership =
                Membership { account: account.id, team: team.id, role: new.role, status: MembershipStatus::Active };
            tx.insert_membership(&membership, now)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "membership.add")
                    .organisation(organisation.id)
                    .team(team.id)
                    .subject(account.id)
                    .reason(format!("role={}", new.role))
                    .basis("administration")
                    .build(),
            );
            Ok(AddedMember { account, membership, account_created })
        })
    }

    /// Deactivates or reactivates a membership (this team only). Deactivating one of a live
    /// team's last two active coordinators is refused unless `force`, which is audited.
    pub fn set_membership_status(
        &self,
        operator: &Operator,
        code: &OrganisationCode,
        alias: &TeamAlias,
        email: &EmailAddress,
        status: MembershipStatus,
        force: bool,
    ) -> AppResult<MembershipChange> {
        self.change_membership(operator, code, alias, email, force, |membership| Membership {
            status,
            ..membership.clone()
        })
    }

    /// Makes a member a coordinator or a professional. Demoting one of a live team's last two
    /// active coordinators is refused unless `force`, which is audited.
    pub fn set_membership_role(
        &self,
        operator: &Operator,
        code: &OrganisationCode,
        alias: &TeamAlias,
        email: &EmailAddress,
        role: MembershipRole,
        force: bool,
    ) -> AppResult<MembershipChange> {
        self.change_membership(operator, code, alias, email, force, |membership| Membership {
            role,
            ..membership.clone()
        })
    }

    fn change_membership(
        &self,
        operator: &Operator,
        code: &OrganisationCode,
        alias: &TeamAlias,
        email: &EmailAddress,
        force: bool,
        change: impl Fn(&Membership) -> Membership,
    ) -> AppResult<MembershipChange> {
        let now = self.now();
        self.store.write(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            let team = team_by_alias(tx, &organisation, alias)?;
            tx.lock_team(team.id)?;
            let account = account_by_email(tx, email)?;
            apply_membership_change(
                tx,
                operator.actor(),
                Channel::Cli,
                &organisation,
                &team,
                &account,
                force,
                &change,
                now,
            )
        })
    }
}

/// Changes one membership (a deactivation, reactivation or role change) within a
/// transaction that has locked the team: the two-coordinator rule applies, and only the
/// operator may `force` past it (audited as overridden).
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_membership_change(
    tx: &mut Tx<'_>,
    actor: Actor,
    channel: Channel,
    organisation: &Organisation,
    team: &Team,
    account: &Account,
    force: bool,
    change: &dyn Fn(&Membership) -> Membership,
    now: kith_core::Timestamp,
) -> AppResult<MembershipChange> {
    let before = membership_of(tx, account, team)?;
    let after = change(&before);
    if after == before {
        return Err(AppError::Conflict(format!(
            "nothing to change: {} is already {} in team {}, as {}",
            account.email, after.status, team.alias, after.role
        )));
    }
    let counts = |m: &Membership| check_coordinator(account.status, Some(m.facts())).is_ok();
    let mut overridden = None;
    if counts(&before) && !counts(&after) {
        let active = tx.count_active_coordinators(team.id)?;
        let force = force && matches!(actor, Actor::Operator { .. });
        if let Permitted::Overridden(violation) = check_coordinator_leaving(team.status, active, force)? {
            overridden = Some(violation.to_string());
        }
    }
    tx.update_membership(&after, now)?;
    // A grant opened through this membership ends with its clinical role.
    if let Some(why) = grant_ending(after.facts()) {
        let ended = tx.end_break_glass_of(account.id, Some(team.id), now)?;
        crate::audit::audit_grants_ended(tx, &ended, now, actor.clone(), channel, &why.to_string())?;
    }
    let action = match (before.status, after.status) {
        (MembershipStatus::Active, MembershipStatus::Deactivated) => "membership.deactivate",
        (MembershipStatus::Deactivated, MembershipStatus::Active) => "membership.reactivate",
        _ => "membership.role_change",
    };
    let mut event = AuditBuilder::new(now, actor, channel, action)
        .organisation(organisation.id)
        .team(team.id)
        .subject(account.id)
        .basis("administration");
    event = match &overridden {
        Some(rule) => event.outcome(Outcome::Overridden).reason(format!("forced by the operator: {rule}")),
        None => event.reason(format!("role={} status={}", after.role, after.status)),
    };
    tx.audit(event.build());
    Ok(MembershipChange { membership: after, overridden })
}

impl App {
    /// Takes a team live: it needs two active coordinators.
    pub fn go_live(&self, operator: &Operator, code: &OrganisationCode, alias: &TeamAlias) -> AppResult<Team> {
        let now = self.now();
        self.store.write(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            let mut team = team_by_alias(tx, &organisation, alias)?;
            tx.lock_team(team.id)?;
            let active = tx.count_active_coordinators(team.id)?;
            let appointed = tx.count_appointed_coordinators(team.id)?;
            check_go_live(team.status, active, appointed)?;
            tx.set_team_status(team.id, TeamStatus::Live)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "team.go_live")
                    .organisation(organisation.id)
                    .team(team.id)
                    .subject(team.alias.as_str())
                    .basis("administration")
                    .build(),
            );
            team.status = TeamStatus::Live;
            Ok(team)
        })
    }

    /// Appoints a privacy officer of an organisation (an existing account).
    pub fn appoint_privacy_officer(
        &self,
        operator: &Operator,
        code: &OrganisationCode,
        email: &EmailAddress,
    ) -> AppResult<Account> {
        let now = self.now();
        self.store.write(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            let account = account_by_email(tx, email)?;
            tx.add_privacy_officer(organisation.id, account.id, now)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "privacy_officer.appoint")
                    .organisation(organisation.id)
                    .subject(account.id)
                    .basis("administration")
                    .build(),
            );
            Ok(account)
        })
    }

    /// The account with this email (operator paths).
    pub fn account_by_email(&self, email: &EmailAddress) -> AppResult<Account> {
        self.store.read(|tx| account_by_email(tx, email))
    }

    /// The organisations, for listings.
    pub fn organisations(&self) -> AppResult<Vec<Organisation>> {
        self.store.read(|tx| Ok(tx.organisations()?))
    }

    /// An organisation's teams with their members.
    pub fn teams_with_members(&self, code: &OrganisationCode) -> AppResult<Vec<TeamWithMembers>> {
        self.store.read(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            let teams = tx.teams(organisation.id)?;
            teams.into_iter().map(|team| Ok((team.clone(), tx.team_members(team.id)?))).collect()
        })
    }

    /// Resolves "this person acting through this team" for the operator CLI. The context is
    /// checked by the access rule at each use, not here.
    pub fn professional_context(
        &self,
        code: &OrganisationCode,
        alias: &TeamAlias,
        email: &EmailAddress,
        channel: Channel,
    ) -> AppResult<ProfessionalContext> {
        self.store.read(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            let team = team_by_alias(tx, &organisation, alias)?;
            let account = account_by_email(tx, email)?;
            Ok(ProfessionalContext { account: account.id, team: team.id, organisation: organisation.id, channel })
        })
    }
}

/// The audit actor for a professional context.
pub(crate) fn professional_actor(context: &ProfessionalContext) -> Actor {
    Actor::Account(context.account)
}
