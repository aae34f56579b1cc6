//! API tokens: bearer secrets for the FHIR API, created and revoked by the operator for one
//! account. Only the SHA-256 of a token is stored; the token itself is shown once.

use std::time::Duration;

use kith_core::audit::Channel;
use kith_core::model::ApiToken;
use kith_core::text::{EmailAddress, Name, Secret};
use kith_core::{AccountId, ApiTokenId, Timestamp};
use kith_store::{StoreError, Tx};

use crate::organisations::account_by_email;
use crate::secrets::{new_bearer_token, token_hash};
use crate::{App, AppError, AppResult, AuditBuilder, Operator, new_uuid};

/// The longest a token may live: a year. Tokens without an expiry live until revoked.
pub const MAX_TOKEN_DAYS: u32 = 366;

/// A new token: its record and the secret, which is not kept.
#[derive(Clone, Debug)]
pub struct NewApiToken {
    pub token: ApiToken,
    pub secret: Secret,
}

impl App {
    /// Creates an API token for the account with this email. A live token of the same name
    /// must be revoked first.
    pub fn create_api_token(
        &self,
        operator: &Operator,
        email: &EmailAddress,
        name: &Name,
        expires_in_days: Option<u32>,
    ) -> AppResult<NewApiToken> {
        if let Some(days) = expires_in_days
            && !(1..=MAX_TOKEN_DAYS).contains(&days)
        {
            return Err(AppError::Invalid(format!("expires-days: must be between 1 and {MAX_TOKEN_DAYS}")));
        }
        let secret = new_bearer_token();
        let hash = token_hash(&secret);
        let now = self.now();
        self.store.write(|tx| {
            let account = account_by_email(tx, email)?;
            if let Some(why) = kith_core::team::api_token_refusal(account.status) {
                return Err(AppError::Invalid(format!("{email} {why}")));
            }
            if tx.live_api_token(account.id, name)?.is_some() {
                return Err(AppError::Conflict(format!(
                    "{email} already has a live token named {name}: revoke it first or choose another name"
                )));
            }
            let token = ApiToken {
                id: ApiTokenId::from_uuid(new_uuid()),
                account: account.id,
                name: name.clone(),
                created_at: now,
                expires_at: expires_in_days.map(|days| now.plus(Duration::from_secs(u64::from(days) * 86_400))),
                revoked_at: None,
            };
            tx.insert_api_token(&token, &hash)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "api_token.create")
                    .subject(token.id)
                    .basis("administration")
                    .build(),
            );
            Ok(NewApiToken { token, secret: Secret::new(secret.clone()) })
        })
    }

    /// Revokes the account's live token of this name; it stops working at once.
    pub fn revoke_api_token(&self, operator: &Operator, email: &EmailAddress, name: &Name) -> AppResult<ApiToken> {
        let now = self.now();
        self.store.write(|tx| {
            let account = account_by_email(tx, email)?;
            let Some(mut token) = tx.live_api_token(account.id, name)? else {
                return Err(AppError::NotFound(format!("{email} has no live token named {name}")));
            };
            tx.revoke_api_token(token.id, now)?;
            token.revoked_at = Some(now);
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "api_token.revoke")
                    .subject(token.id)
                    .basis("administration")
                    .build(),
            );
            Ok(token)
        })
    }

    /// The account's tokens, newest first (never the secrets: they are not kept).
    pub fn api_tokens(&self, email: &EmailAddress) -> AppResult<Vec<ApiToken>> {
        self.store.read(|tx| {
            let account = account_by_email(tx, email)?;
            Ok(tx.api_tokens(account.id)?)
        })
    }

    /// The account a presented bearer token acts for: `None` for an unknown, revoked or
    /// expired token, or one whose account is not active. What the token may then see is
    /// decided at each request from the account's memberships as they are then.
    pub fn authenticate_api_token(&self, presented: &str) -> AppResult<Option<AccountId>> {
        let Some(hash) = presented_token_hash(presented) else { return Ok(None) };
        let now = self.now();
        self.store.read(|tx| Ok(token_account(tx, &hash, now)?))
    }
}

/// The hash a presented token is looked up by; `None` for one that cannot be a token.
pub(crate) fn presented_token_hash(presented: &str) -> Option<[u8; 32]> {
    (!presented.is_empty() && presented.len() <= 256).then(|| token_hash(presented))
}

/// The account of a live token whose account is active, inside the caller's transaction.
pub(crate) fn token_account(tx: &mut Tx<'_>, hash: &[u8; 32], now: Timestamp) -> Result<Option<AccountId>, StoreError> {
    let Some(token) = tx.api_token_by_hash(hash)? else { return Ok(None) };
    if !token.is_live(now) {
        return Ok(None);
    }
    let active = tx.account(token.account)?.is_some_and(|account| kith_core::access::is_active_account(account.status));
    Ok(active.then_some(token.account))
}
