//! What a coordinator does for the team they coordinate, through the web application: see
//! its members and whether their emails arrived, deactivate and reactivate memberships,
//! send a professional a password-reset link, and — in a Patient Record Team — send a
//! registered patient one after confirming who they are. Each is audited with the
//! coordinator as actor; a caller who is not an active coordinator of the team is refused
//! (and that is audited too).

use kith_core::audit::{Actor, Channel, Outcome};
use kith_core::coordination::{AccountAction, AccountActionRefusal, CoordinatorFacts, decide_account_action};
use kith_core::model::{Account, Organisation, Team};
use kith_core::patient::NhsNumber;
use kith_core::team::{AccountStatus, MembershipRole, MembershipStatus, TeamKind};
use kith_core::text::EmailAddress;
use kith_core::{AccountId, Date, TeamId, Timestamp};
use kith_store::Tx;

use crate::coordination::coordinated;
use crate::lookups::LookupBudget;
use crate::organisations::{MembershipChange, apply_membership_change};
use crate::outbox::Notice;
use crate::sessions::{send_reset_link, send_reset_link_for};
use crate::{App, AppError, AppResult, AuditBuilder, Operator};

/// One member of a team, with the state of the last email Kith sent them.
#[derive(Clone, Debug)]
pub struct TeamMember {
    pub account: Account,
    pub role: MembershipRole,
    pub status: MembershipStatus,
    pub job_title: Option<String>,
    pub registration_number: Option<String>,
    pub two_factor: bool,
    /// The last message to their address: its template and delivery state.
    pub last_message: Option<kith_store::MessageState>,
    /// Whether the coordinator may reset their password or two-step verification, or why
    /// not ([`decide_account_action`]).
    pub account_actions: Result<(), AccountActionRefusal>,
}

/// What a coordinator is told when the account is not their organisation's alone to change.
pub const ASK_HOLDER_OR_OPERATOR: &str = "This account is not only your organisation's, so you cannot change it: ask \
     the account holder (they can reset their own password from the sign-in page, and sign in with a recovery code if \
     they lost their phone) or the Kith operator.";

/// What a coordinator is told when the member's membership of their team is deactivated.
pub const REACTIVATE_FIRST: &str = "Their membership of the team is deactivated: reactivate it first, or ask the \
     account holder or the Kith operator.";

/// The one answer to a patient password reset, whether or not a patient matched (no
/// existence oracle): the coordinator learns nothing the patient has not told them.
pub const PATIENT_RESET_ANSWER: &str = "If a registered patient of the organisation matches the NHS number, family \
     name and date of birth given, a password reset link is on its way to their email address; it works once, \
     within an hour. If it does not arrive, check the details with the patient.";

/// The coordinator and the team they act through, as [`decide_account_action`] needs them.
fn coordinator_facts(tx: &mut Tx<'_>, coordinator: AccountId, team: &Team) -> AppResult<CoordinatorFacts> {
    let account_status = tx.account(coordinator)?.map_or(AccountStatus::Disabled, |account| account.status);
    let membership = tx.membership(coordinator, team.id)?.map(|membership| membership.facts());
    Ok(CoordinatorFacts { account_status, membership, team: team.id, organisation: team.organisation })
}

/// Whether the coordinator may change `member`'s whole account: the facts loaded, the rule
/// asked.
fn account_action_decision(
    tx: &mut Tx<'_>,
    coordinator: &CoordinatorFacts,
    member: AccountId,
) -> AppResult<Result<(), AccountActionRefusal>> {
    let in_team = tx.membership(member, coordinator.team)?.map(|membership| membership.status);
    let ties = tx.account_ties(member)?;
    Ok(decide_account_action(coordinator, in_team, &ties.ties()))
}

/// Checks an account-wide action: allowed, or refused with the precise reason audited and
/// what to do instead returned.
fn authorise_account_action(
    tx: &mut Tx<'_>,
    coordinator: AccountId,
    organisation: &Organisation,
    team: &Team,
    member: AccountId,
    action: AccountAction,
    now: Timestamp,
) -> AppResult<Result<Account, AppError>> {
    let facts = coordinator_facts(tx, coordinator, team)?;
    let decision = account_action_decision(tx, &facts, member)?;
    let account = tx.account(member)?;
    let exists = account.is_some();
    let (Ok(()), Some(account)) = (decision, account) else {
        let reason = decision.err().map_or_else(|| "no such account".to_owned(), |refusal| refusal.to_string());
        let mut event = AuditBuilder::new(now, Actor::Account(coordinator), Channel::Web, action.code())
            .organisation(organisation.id)
            .team(team.id)
            .outcome(Outcome::Denied)
            .basis("administration")
            .reason(format!("by the team's coordinator: {reason}"));
        if exists {
            event = event.subject(member);
        }
        tx.audit(event.build());
        return Ok(Err(match decision {
            Err(refusal) if refusal.ask_holder_or_operator() => AppError::Conflict(ASK_HOLDER_OR_OPERATOR.to_owned()),
            Err(AccountActionRefusal::MembershipInTeamDeactivated) => AppError::Conflict(REACTIVATE_FIRST.to_owned()),
            Err(AccountActionRefusal::NotCoordinator(_)) => {
                AppError::Forbidden("only the team's active coordinators can do this".to_owned())
            }
            _ => AppError::Denied,
        }));
    };
    Ok(Ok(account))
}

/// What a coordinator checks with a patient before acting on their account: all three
/// must match the record.
#[derive(Clone, Copy, Debug)]
pub struct IdentityCheck<'a> {
    pub nhs_number: &'a NhsNumber,
    pub family_name: &'a str,
    pub birth_date: Date,
}

/// The one answer to "remind to register", whether or not a patient matched.
pub const PATIENT_REMIND_ANSWER: &str = "If a patient of the organisation who has still to register matches the \
     NHS number, family name and date of birth given, a new invitation is on its way to them by email, text \
     message or letter, whichever their record allows, and their older codes stop working. If it does not \
     arrive, check the details with the patient.";

/// What an identity check found: the record with the NHS number (audited with the check,
/// matched or not, so that the patient sees it) and whether it is the organisation's
/// patient with that family name (any case) and date of birth. The same statements run
/// whether or not a record has the number.
fn identity_check(
    tx: &mut Tx<'_>,
    organisation: &Organisation,
    identity: &IdentityCheck<'_>,
) -> AppResult<(Option<kith_core::model::Patient>, Result<(), &'static str>)> {
    let patient = tx.patient_by_nhs_number(identity.nhs_number)?.filter(|patient| patient.merged_into.is_none());
    let probe = patient.as_ref().map_or(kith_core::PatientId::from_uuid(uuid::Uuid::nil()), |patient| patient.id);
    let in_organisation = tx.patient_in_organisation(probe, organisation.id)?;
    let matched = match &patient {
        None => Err("no record has the NHS number"),
        Some(_) if !in_organisation => Err("the patient is not in the organisation"),
        Some(patient)
            if !patient.demographics.family_name.as_str().eq_ignore_ascii_case(identity.family_name.trim()) =>
        {
            Err("the family name does not match")
        }
        Some(patient) if patient.demographics.birth_date != identity.birth_date => {
            Err("the date of birth does not match")
        }
        Some(_) => Ok(()),
    };
    Ok((patient, matched))
}

/// The checks before an identity check: the coordinator coordinates a Patient Record Team
/// and has identity checks left this hour (each check counts, matched or not). Refusals
/// here say nothing about any patient.
fn identity_check_allowed(
    tx: &mut Tx<'_>,
    coordinator: AccountId,
    team: TeamId,
    action: &'static str,
    refusal: &'static str,
    now: Timestamp,
) -> AppResult<Result<(Organisation, Team), AppError>> {
    let (organisation, team) = match coordinated(tx, coordinator, team, action, now)? {
        Ok(found) => found,
        Err(refused) => return Ok(Err(refused)),
    };
    if team.kind != TeamKind::PatientRecord {
        return Ok(Err(AppError::Forbidden(refusal.to_owned())));
    }
    let budget = LookupBudget::IdentityChecks;
    if budget.spent(tx, coordinator, now)? {
        tx.audit(
            AuditBuilder::new(now, Actor::Account(coordinator), Channel::Web, action)
                .organisation(organisation.id)
                .team(team.id)
                .outcome(Outcome::Denied)
                .reason("too many identity checks in the last hour; not looked up")
                .basis("administration")
                .build(),
        );
        return Ok(Err(budget.refusal()));
    }
    budget.spend(tx, coordinator, Channel::Web, organisation.id, now)?;
    Ok(Ok((organisation, team)))
}

/// Turns two-step verification off, ends every session of the account, and tells its
/// holder (naming the coordinator's team, or the operator); the number of sessions ended.
fn clear_two_factor(tx: &mut Tx<'_>, account: &Account, team: Option<&Team>, now: Timestamp) -> AppResult<u64> {
    tx.clear_two_factor(account.id, now)?;
    let ended = tx.end_sessions_of(account.id, now)?;
    let team = team.map(|team| team.name.clone());
    tx.enqueue(&Notice::TwoFactorReset { account: account.id, team }.email(&account.email, now))?;
    Ok(ended)
}

/// A member of `team` (any status), or `Denied`.
fn member_of(tx: &mut Tx<'_>, team: &Team, member: AccountId) -> AppResult<Account> {
    match (tx.membership(member, team.id)?, tx.account(member)?) {
        (Some(_), Some(account)) => Ok(account),
        _ => Err(AppError::Denied),
    }
}

impl App {
    /// The team's members, for its coordinator.
    pub fn team_members_as(&self, coordinator: AccountId, team: TeamId) -> AppResult<Vec<TeamMember>> {
        let now = self.now();
        self.store.write(|tx| {
            let (_, team) = match coordinated(tx, coordinator, team, "team.members_read", now)? {
                Ok(found) => found,
                Err(refused) => return Ok(Err(refused)),
            };
            let mut details: std::collections::HashMap<AccountId, (Option<String>, Option<String>)> = tx
                .member_details(team.id)?
                .into_iter()
                .map(|details| (details.account, (details.job_title, details.registration_number)))
                .collect();
            let facts = coordinator_facts(tx, coordinator, &team)?;
            let mut members = Vec::new();
            for (membership, account) in tx.team_members(team.id)? {
                let last_message = tx.last_message_to(account.email.as_str())?;
                let (job_title, registration_number) = details.remove(&account.id).unwrap_or_default();
                let two_factor = tx.two_factor(account.id)?.key.is_some();
                let account_actions = account_action_decision(tx, &facts, account.id)?;
                members.push(TeamMember {
                    account,
                    role: membership.role,
                    status: membership.status,
                    job_title,
                    registration_number,
                    two_factor,
                    last_message,
                    account_actions,
                });
            }
            Ok::<_, AppError>(Ok(members))
        })?
    }

    /// Deactivates or reactivates a member of the coordinator's team (the two-coordinator
    /// rule applies; a coordinator cannot force past it).
    pub fn set_member_status_as(
        &self,
        coordinator: AccountId,
        team: TeamId,
        member: AccountId,
        status: MembershipStatus,
    ) -> AppResult<MembershipChange> {
        let now = self.now();
        self.store.write(|tx| {
            let (organisation, team) = match coordinated(tx, coordinator, team, "membership.change", now)? {
                Ok(found) => found,
                Err(refused) => return Ok(Err(refused)),
            };
            tx.lock_team(team.id)?;
            let account = member_of(tx, &team, member)?;
            let change = |membership: &kith_core::model::Membership| kith_core::model::Membership {
                status,
                ..membership.clone()
            };
            Ok::<_, AppError>(apply_membership_change(
                tx,
                Actor::Account(coordinator),
                Channel::Web,
                &organisation,
                &team,
                &account,
                false,
                &change,
                now,
            ))
        })?
    }

    /// Emails a member of the coordinator's team a password-reset link (an hour, once),
    /// saying that their coordinator asked for it. Only when the account is the
    /// organisation's alone ([`decide_account_action`]); otherwise the coordinator is told to
    /// ask the account holder or the operator. Either way it is audited.
    pub fn reset_member_password_as(&self, coordinator: AccountId, team: TeamId, member: AccountId) -> AppResult<()> {
        let now = self.now();
        let action = AccountAction::PasswordReset;
        self.store.write(|tx| {
            let (organisation, team) = match coordinated(tx, coordinator, team, action.code(), now)? {
                Ok(found) => found,
                Err(refused) => return Ok(Err(refused)),
            };
            let account = match authorise_account_action(tx, coordinator, &organisation, &team, member, action, now)? {
                Ok(account) => account,
                Err(refused) => return Ok(Err(refused)),
            };
            if !kith_core::access::is_active_account(account.status) {
                return Ok(Err(AppError::Conflict(
                    "this person has not set a password yet: their activation email is what they need".to_owned(),
                )));
            }
            send_reset_link_for(tx, &account, Some(&team), now)?;
            tx.audit(
                AuditBuilder::new(now, Actor::Account(coordinator), Channel::Web, action.code())
                    .organisation(organisation.id)
                    .team(team.id)
                    .subject(account.id)
                    .basis("administration")
                    .reason("by the team's coordinator; every active membership in the organisation")
                    .build(),
            );
            Ok::<_, AppError>(Ok(()))
        })?
    }

    /// Turns off a member's two-step verification (a lost phone): their sessions end, they
    /// are told by email, and they sign in with their password and set it up again. Only
    /// when the account is the organisation's alone ([`decide_account_action`]); otherwise
    /// the coordinator is told to ask the account holder or the operator. Either way it is
    /// audited.
    pub fn reset_member_two_factor_as(&self, coordinator: AccountId, team: TeamId, member: AccountId) -> AppResult<()> {
        let now = self.now();
        let action = AccountAction::TwoFactorReset;
        self.store.write(|tx| {
            let (organisation, team) = match coordinated(tx, coordinator, team, action.code(), now)? {
                Ok(found) => found,
                Err(refused) => return Ok(Err(refused)),
            };
            let account =
                match authorise_account_action(tx, coordinator, &organisation, &team, member, action, now)? {
                    Ok(account) => account,
                    Err(refused) => return Ok(Err(refused)),
                };
            if tx.two_factor(account.id)?.key.is_none() {
                return Ok(Err(AppError::Conflict("this person does not use two-step verification".to_owned())));
            }
            let ended = clear_two_factor(tx, &account, Some(&team), now)?;
            tx.audit(
                AuditBuilder::new(now, Actor::Account(coordinator), Channel::Web, action.code())
                    .organisation(organisation.id)
                    .team(team.id)
                    .subject(account.id)
                    .basis("administration")
                    .reason(format!(
                        "by the team's coordinator; every active membership in the organisation; sessions ended: {ended}"
                    ))
                    .build(),
            );
            Ok::<_, AppError>(Ok(()))
        })?
    }

    /// The operator turns off an account's two-step verification (the person lost their
    /// phone and their recovery codes, and no coordinator may do it for them): their
    /// sessions end and they are told by email. Audited.
    pub fn reset_two_factor(&self, operator: &Operator, email: &EmailAddress) -> AppResult<Account> {
        let now = self.now();
        self.store.write(|tx| {
            let account = crate::organisations::account_by_email(tx, email)?;
            if tx.two_factor(account.id)?.key.is_none() {
                return Err(AppError::Conflict(format!("{} does not use two-step verification", account.email)));
            }
            let ended = clear_two_factor(tx, &account, None, now)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, AccountAction::TwoFactorReset.code())
                    .subject(account.id)
                    .basis("administration")
                    .reason(format!("by the operator; sessions ended: {ended}"))
                    .build(),
            );
            Ok(account)
        })
    }

    /// "Remind to register": a Patient Record Team's coordinator sends a patient of the
    /// organisation who has not registered a new invitation (older codes stop working), by
    /// the channel the record allows (email, then SMS, then letter). The NHS number, family
    /// name and date of birth must all match. The answer is the same whether or not they
    /// did ([`PATIENT_REMIND_ANSWER`]); a mismatch is audited, with the patient when a record
    /// has the number. Each check counts against [`crate::MAX_IDENTITY_CHECKS_PER_HOUR`].
    pub fn remind_patient_as(
        &self,
        coordinator: AccountId,
        team: TeamId,
        identity: &IdentityCheck<'_>,
    ) -> AppResult<()> {
        let now = self.now();
        self.store.write(|tx| {
            let refusal = "patients are invited by the Patient Record Team's coordinators";
            let (organisation, team) =
                match identity_check_allowed(tx, coordinator, team, "patient.invite", refusal, now)? {
                    Ok(found) => found,
                    Err(refused) => return Ok(Err(refused)),
                };
            let (patient, matched) = identity_check(tx, &organisation, identity)?;
            let how = patient.as_ref().and_then(|patient| {
                let d = &patient.demographics;
                if d.email.is_some() {
                    Some(crate::invitations::InviteChannel::Email)
                } else if d.mobile.is_some() {
                    Some(crate::invitations::InviteChannel::Sms)
                } else {
                    d.address.as_ref().map(|_| crate::invitations::InviteChannel::Letter)
                }
            });
            let matched = matched
                .and_then(|()| match &patient {
                    Some(patient) if patient.account.is_some() => Err("the patient has registered already"),
                    _ => Ok(()),
                })
                .and_then(|()| how.ok_or("the record has no email address, mobile number or postal address"));
            match (patient, matched) {
                (Some(mut patient), Ok(how)) => {
                    crate::invitations::send_invitation(
                        tx,
                        Actor::Account(coordinator),
                        Channel::Web,
                        &organisation,
                        &mut patient,
                        how,
                        now,
                    )?;
                }
                (patient, matched) => {
                    let mut event = AuditBuilder::new(now, Actor::Account(coordinator), Channel::Web, "patient.invite")
                        .organisation(organisation.id)
                        .team(team.id)
                        .outcome(Outcome::Denied)
                        .reason(format!("identity check: {}", matched.err().unwrap_or("no match")))
                        .basis("administration");
                    if let Some(patient) = patient {
                        event = event.patient(patient.id);
                    }
                    tx.audit(event.build());
                }
            }
            Ok::<_, AppError>(Ok(()))
        })?
    }

    /// A Patient Record Team's coordinator, having confirmed the patient's identity, emails
    /// a registered patient of the organisation a password-reset link. The NHS number,
    /// family name (any case) and date of birth must all match. The answer is the same
    /// whether or not they did ([`PATIENT_RESET_ANSWER`]); a mismatch is audited, with the
    /// patient when a record has the number. Each check counts against
    /// [`crate::MAX_IDENTITY_CHECKS_PER_HOUR`].
    pub fn reset_patient_password_as(
        &self,
        coordinator: AccountId,
        team: TeamId,
        identity: &IdentityCheck<'_>,
    ) -> AppResult<()> {
        let now = self.now();
        self.store.write(|tx| {
            let action = "patient.password_reset_request";
            let refusal = "patients' passwords are reset by the Patient Record Team's coordinators";
            let (organisation, team) = match identity_check_allowed(tx, coordinator, team, action, refusal, now)? {
                Ok(found) => found,
                Err(refused) => return Ok(Err(refused)),
            };
            let event = AuditBuilder::new(now, Actor::Account(coordinator), Channel::Web, action)
                .organisation(organisation.id)
                .team(team.id)
                .basis("administration");
            let (patient, matched) = identity_check(tx, &organisation, identity)?;
            // The same statement whether or not the record has an account.
            let holder =
                patient.as_ref().and_then(|patient| patient.account).unwrap_or(AccountId::from_uuid(uuid::Uuid::nil()));
            let account = tx.account(holder)?;
            let matched = matched.and_then(|()| match &account {
                Some(account) if kith_core::access::is_active_account(account.status) => Ok(()),
                Some(_) => Err("the patient's account is not active"),
                None => Err("the patient has not registered"),
            });
            match (patient, account, matched) {
                (Some(patient), Some(account), Ok(())) => {
                    send_reset_link(tx, &account, now)?;
                    tx.audit(
                        event
                            .patient(patient.id)
                            .subject(account.id)
                            .reason("identity confirmed by the coordinator")
                            .build(),
                    );
                }
                (patient, _, matched) => {
                    let mut event = event
                        .outcome(Outcome::Denied)
                        .reason(format!("identity check: {}", matched.err().unwrap_or("no match")));
                    if let Some(patient) = patient {
                        event = event.patient(patient.id);
                    }
                    tx.audit(event.build());
                }
            }
            Ok::<_, AppError>(Ok(()))
        })?
    }
}
