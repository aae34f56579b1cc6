//! Queries for API tokens.

use kith_core::model::ApiToken;
use kith_core::text::Name;
use kith_core::{AccountId, ApiTokenId, Timestamp};

use super::rows::corrupt;
use super::transaction::Tx;
use crate::error::StoreError;
use crate::value::Row;

macro_rules! token_columns {
    () => {
        "id, account_id, name, created_at, expires_at, revoked_at"
    };
}

fn token_from(row: &Row) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: ApiTokenId::from_uuid(row.uuid(0)?),
        account: AccountId::from_uuid(row.uuid(1)?),
        name: Name::parse("name", row.text(2)?).map_err(corrupt("token name"))?,
        created_at: row.timestamp(3)?,
        expires_at: row.opt_timestamp(4)?,
        revoked_at: row.opt_timestamp(5)?,
    })
}

impl Tx<'_> {
    pub fn insert_api_token(&mut self, token: &ApiToken, token_hash: &[u8; 32]) -> Result<(), StoreError> {
        self.conn.execute(
            concat!("INSERT INTO api_tokens (", token_columns!(), ", token_hash) VALUES (?, ?, ?, ?, ?, ?, ?)"),
            &[
                token.id.into(),
                token.account.into(),
                token.name.as_str().into(),
                token.created_at.into(),
                token.expires_at.into(),
                token.revoked_at.into(),
                token_hash.as_slice().into(),
            ],
        )?;
        Ok(())
    }

    /// The token with this hash, live or not.
    pub fn api_token_by_hash(&mut self, token_hash: &[u8; 32]) -> Result<Option<ApiToken>, StoreError> {
        self.one(
            concat!("SELECT ", token_columns!(), " FROM api_tokens WHERE token_hash = ?"),
            &[token_hash.as_slice().into()],
            token_from,
        )
    }

    /// The account's unrevoked token of this name, if any.
    pub fn live_api_token(&mut self, account: AccountId, name: &Name) -> Result<Option<ApiToken>, StoreError> {
        self.one(
            concat!(
                "SELECT ",
                token_columns!(),
                " FROM api_tokens WHERE account_id = ? AND name = ? AND revoked_at IS NULL"
            ),
            &[account.into(), name.as_str().into()],
            token_from,
        )
    }

    /// The account's tokens, newest first.
    pub fn api_tokens(&mut self, account: AccountId) -> Result<Vec<ApiToken>, StoreError> {
        self.all(
            concat!("SELECT ", token_columns!(), " FROM api_tokens WHERE account_id = ? ORDER BY created_at DESC, id"),
            &[account.into()],
            token_from,
        )
    }

    pub fn revoke_api_token(&mut self, id: ApiTokenId, at: Timestamp) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            &[at.into(), id.into()],
        )?;
        Ok(())
    }
}
