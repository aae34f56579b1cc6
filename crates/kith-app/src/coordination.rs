//! Who is acting as a team's coordinator: the facts `kith_core::coordination::check_coordinator`
//! needs, loaded, and the rule asked. Every coordinator use case (the coordinators' pages,
//! invitations to join a team, the professionals' CSV) goes through here.

use kith_core::audit::{Actor, Channel, Outcome};
use kith_core::model::{Organisation, Team};
use kith_core::team::AccountStatus;
use kith_core::{AccountId, TeamId, Timestamp};
use kith_store::Tx;

use crate::{AppError, AppResult, AuditBuilder};

/// The team and its organisation when `coordinator` actively coordinates it; otherwise the
/// refusal is audited and returned.
pub(crate) fn coordinated(
    tx: &mut Tx<'_>,
    coordinator: AccountId,
    team: TeamId,
    action: &'static str,
    now: Timestamp,
) -> AppResult<Result<(Organisation, Team), AppError>> {
    let found = match tx.team(team)? {
        Some(team) => tx.organisation(team.organisation)?.map(|organisation| (organisation, team)),
        None => None,
    };
    let standing = coordinator_standing(tx, coordinator, team)?;
    let refusal = match (&found, standing) {
        (Some(_), Ok(())) => None,
        (Some(_), Err(reason)) => Some(reason.to_string()),
        (None, _) => Some("no such team".to_owned()),
    };
    match (found, refusal) {
        (Some(found), None) => Ok(Ok(found)),
        (_, reason) => {
            tx.audit(
                AuditBuilder::new(now, Actor::Account(coordinator), Channel::Web, action)
                    .team(team)
                    .outcome(Outcome::Denied)
                    .reason(reason.unwrap_or_default())
                    .basis("administration")
                    .build(),
            );
            Ok(Err(AppError::Forbidden("only the team's active coordinators can do this".to_owned())))
        }
    }
}

/// Whether `account` is an active coordinator of `team` ([`kith_core::coordination::check_coordinator`]).
pub(crate) fn coordinator_standing(
    tx: &mut Tx<'_>,
    account: AccountId,
    team: TeamId,
) -> AppResult<Result<(), kith_core::coordination::NotCoordinator>> {
    let status = tx.account(account)?.map_or(AccountStatus::Disabled, |account| account.status);
    let membership = tx.membership(account, team)?.map(|membership| membership.facts());
    Ok(kith_core::coordination::check_coordinator(status, membership))
}
