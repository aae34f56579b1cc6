//! Invitations to join a team: what a coordinator's import makes for an address that is not
//! an account of their organisation alone (`kith_core::coordination::decide_joining`). An
//! invitation grants nothing — it is not a membership, so no rule ever reads it as one —
//! until the address's holder accepts it, signed in, from their home page (or, for an
//! account that never set a password, by activating it with the code the invitation
//! carried). The holder may decline; a coordinator of the team may withdraw it. Each step is
//! audited.

use kith_core::audit::{Actor, Channel, Outcome};
use kith_core::coordination::{InvitationAnswer, MembershipInvitation};
use kith_core::model::{Account, Membership, Organisation, Team};
use kith_core::team::{MembershipStatus, TeamStatus};
use kith_core::{AccountId, MembershipInvitationId, TeamId, Timestamp};
use kith_store::{OpenInvitation, Tx};

use crate::coordination::coordinated;
use crate::{App, AppError, AppResult, AuditBuilder};

/// An invitation waiting for its holder's answer, with the team and organisation it is to.
#[derive(Clone, Debug)]
pub struct InvitationToAnswer {
    pub invitation: MembershipInvitation,
    pub team: Team,
    pub organisation: Organisation,
}

/// The holder's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Accept,
    Decline,
}

/// Whether `account` may answer invitations: an active account that is not a patient's
/// login (a patient's account is never made a professional's).
fn may_answer(tx: &mut Tx<'_>, account: AccountId) -> AppResult<Option<Account>> {
    let Some(account) = tx.account(account)?.filter(|account| kith_core::access::is_active_account(account.status))
    else {
        return Ok(None);
    };
    Ok((!tx.account_ties(account.id)?.is_patient).then_some(account))
}

/// Accepts an open invitation for `account`: the membership (active, with the invited role)
/// unless one exists already, the invitation closed, and an audit event.
fn accept(
    tx: &mut Tx<'_>,
    account: &Account,
    invitation: &MembershipInvitation,
    team: &Team,
    channel: Channel,
    how: &str,
    now: Timestamp,
) -> AppResult<Membership> {
    let membership = match tx.membership(account.id, team.id)? {
        Some(existing) => existing,
        None => {
            let membership = Membership {
                account: account.id,
                team: team.id,
                role: invitation.role,
                status: MembershipStatus::Active,
            };
            tx.insert_membership(&membership, now)?;
            membership
        }
    };
    tx.answer_membership_invitation(invitation.id, InvitationAnswer::Accepted, now)?;
    tx.audit(
        AuditBuilder::new(now, Actor::Account(account.id), channel, "membership.accept")
            .organisation(team.organisation)
            .team(team.id)
            .subject(account.id)
            .basis("administration")
            .reason(format!(
                "invitation={} role={} status={}; {how}",
                invitation.id, membership.role, membership.status
            ))
            .build(),
    );
    Ok(membership)
}

/// At activation with `code_hash`: accepts the open invitations that carried that code (the
/// email said that activating accepts). Invitations to closed teams stay open.
pub(crate) fn accept_activated(
    tx: &mut Tx<'_>,
    account: &Account,
    code_hash: &[u8; 32],
    now: Timestamp,
) -> AppResult<usize> {
    let mut accepted = 0;
    for invitation in tx.open_invitations_activated_by(code_hash)? {
        if invitation.email != account.email {
            continue;
        }
        let Some(team) = tx.team(invitation.team)?.filter(|team| team.status != TeamStatus::Closed) else {
            continue;
        };
        accept(tx, account, &invitation, &team, Channel::Web, "by activating the account", now)?;
        accepted += 1;
    }
    Ok(accepted)
}

impl App {
    /// The invitations to join a team waiting for `account`'s answer, oldest first (none
    /// for a patient's login, or an account that is not active).
    pub fn membership_invitations_for(&self, account: AccountId) -> AppResult<Vec<InvitationToAnswer>> {
        self.store.read(|tx| {
            let Some(account) = may_answer(tx, account)? else { return Ok(Vec::new()) };
            let mut waiting = Vec::new();
            for invitation in tx.open_invitations_to(&account.email)? {
                let Some(team) = tx.team(invitation.team)?.filter(|team| team.status != TeamStatus::Closed) else {
                    continue;
                };
                let Some(organisation) = tx.organisation(team.organisation)? else { continue };
                waiting.push(InvitationToAnswer { invitation, team, organisation });
            }
            Ok(waiting)
        })
    }

    /// The holder of an invited address answers, signed in: accepting makes the membership
    /// (with the role the coordinator chose), declining makes nothing. An invitation that is
    /// not theirs or not open is [`AppError::Denied`]; every answer and refusal is audited.
    pub fn answer_membership_invitation(
        &self,
        account: AccountId,
        invitation: MembershipInvitationId,
        answer: Answer,
    ) -> AppResult<Option<Membership>> {
        let now = self.now();
        let action = match answer {
            Answer::Accept => "membership.accept",
            Answer::Decline => "membership.decline",
        };
        self.store.write(|tx| {
            let holder = may_answer(tx, account)?;
            let found = tx.membership_invitation(invitation)?;
            let team = match &found {
                Some((invitation, None)) => tx.team(invitation.team)?,
                _ => None,
            };
            let refusal = match (&holder, &found, &team) {
                (None, _, _) => Some("the account may not answer invitations (not active, or a patient's login)"),
                (_, None, _) => Some("no such invitation"),
                (_, Some((_, Some(_))), _) => Some("the invitation is no longer open"),
                (Some(holder), Some((invitation, None)), _) if invitation.email != holder.email => {
                    Some("the invitation is to another address")
                }
                (_, _, None) => Some("no such team"),
                (_, _, Some(team)) if team.status == TeamStatus::Closed && answer == Answer::Accept => {
                    Some("the team is closed")
                }
                _ => None,
            };
            let (Some(holder), Some((invitation, None)), Some(team), None) = (holder, found, team, refusal) else {
                tx.audit(
                    AuditBuilder::new(now, Actor::Account(account), Channel::Web, action)
                        .subject(account)
                        .outcome(Outcome::Denied)
                        .basis("administration")
                        .reason(format!("invitation={invitation}: {}", refusal.unwrap_or_default()))
                        .build(),
                );
                return Ok(Err(AppError::Denied));
            };
            match answer {
                Answer::Accept => {
                    let membership = accept(tx, &holder, &invitation, &team, Channel::Web, "by its holder", now)?;
                    Ok::<_, AppError>(Ok(Some(membership)))
                }
                Answer::Decline => {
                    tx.answer_membership_invitation(invitation.id, InvitationAnswer::Declined, now)?;
                    tx.audit(
                        AuditBuilder::new(now, Actor::Account(holder.id), Channel::Web, action)
                            .organisation(team.organisation)
                            .team(team.id)
                            .subject(holder.id)
                            .basis("administration")
                            .reason(format!("invitation={} by its holder", invitation.id))
                            .build(),
                    );
                    Ok(Ok(None))
                }
            }
        })?
    }

    /// The open invitations of the coordinator's team, by name, each with the state of the
    /// email that carried it. The same rows whoever holds each address.
    pub fn team_invitations_as(&self, coordinator: AccountId, team: TeamId) -> AppResult<Vec<OpenInvitation>> {
        let now = self.now();
        self.store.write(|tx| {
            let (_, team) = match coordinated(tx, coordinator, team, "team.members_read", now)? {
                Ok(found) => found,
                Err(refused) => return Ok(Err(refused)),
            };
            Ok::<_, AppError>(Ok(tx.open_invitations_of_team(team.id)?))
        })?
    }

    /// A coordinator of the team withdraws one of its open invitations (audited); one of
    /// another team, or not open, is [`AppError::Denied`].
    pub fn withdraw_membership_invitation_as(
        &self,
        coordinator: AccountId,
        team: TeamId,
        invitation: MembershipInvitationId,
    ) -> AppResult<()> {
        let now = self.now();
        self.store.write(|tx| {
            let (organisation, team) = match coordinated(tx, coordinator, team, "membership.invitation_withdraw", now)?
            {
                Ok(found) => found,
                Err(refused) => return Ok(Err(refused)),
            };
            let event =
                AuditBuilder::new(now, Actor::Account(coordinator), Channel::Web, "membership.invitation_withdraw")
                    .organisation(organisation.id)
                    .team(team.id)
                    .basis("administration");
            let open = tx
                .membership_invitation(invitation)?
                .is_some_and(|(found, answer)| found.team == team.id && answer.is_none());
            if !open || !tx.answer_membership_invitation(invitation, InvitationAnswer::Withdrawn, now)? {
                tx.audit(
                    event
                        .outcome(Outcome::Denied)
                        .reason(format!("invitation={invitation}: not an open invitation of the team"))
                        .build(),
                );
                return Ok(Err(AppError::Denied));
            }
            tx.audit(event.reason(format!("invitation={invitation}")).build());
            Ok::<_, AppError>(Ok(()))
        })?
    }
}
