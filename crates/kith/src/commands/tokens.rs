//! API tokens.

use clap::Subcommand;
use kith_app::{App, Operator};
use kith_core::text::Name;
use serde_json::{Value, json};

use super::input::email;
use super::output::print;

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a bearer token for the FHIR API acting for this account (printed once; only
    /// its hash is kept). It acts with the account's memberships as they are at each request.
    Create {
        #[arg(long)]
        email: String,
        /// A name to tell the account's tokens apart (and to revoke this one by).
        #[arg(long, default_value = "api")]
        name: String,
        /// Days until it expires (1 to 366). Without it, the token lives until revoked.
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// Revoke the account's live token of this name; it stops working at once.
    Revoke {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "api")]
        name: String,
    },
    /// List the account's tokens (never the secrets).
    List {
        #[arg(long)]
        email: String,
    },
}

/// `kith token …`: API tokens.
pub(super) fn token(app: &App, operator: &Operator, json: bool, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { email: address, name, expires_days } => {
            let created =
                app.create_api_token(operator, &email(&address)?, &Name::parse("name", &name)?, expires_days)?;
            let token = &created.token;
            print(
                json,
                json!({ "id": token.id.to_string(), "name": token.name.as_str(), "expires_at": token.expires_at.map(|at| at.to_string()), "token": created.secret.expose() }),
                || {
                    format!(
                        "created token {} for {address}{}\ntoken (shown once; keep it secret): {}",
                        token.name,
                        token.expires_at.map_or(String::from(", no expiry"), |at| format!(", expires {at}")),
                        created.secret.expose()
                    )
                },
            );
        }
        TokenCommand::Revoke { email: address, name } => {
            let token = app.revoke_api_token(operator, &email(&address)?, &Name::parse("name", &name)?)?;
            print(json, json!({ "id": token.id.to_string(), "name": token.name.as_str(), "revoked": true }), || {
                format!("revoked token {} of {address}", token.name)
            });
        }
        TokenCommand::List { email: address } => {
            let tokens = app.api_tokens(&email(&address)?)?;
            let now = app.now();
            print(
                json,
                Value::Array(
                    tokens
                        .iter()
                        .map(|token| {
                            json!({
                                "id": token.id.to_string(),
                                "name": token.name.as_str(),
                                "created_at": token.created_at.to_string(),
                                "expires_at": token.expires_at.map(|at| at.to_string()),
                                "revoked_at": token.revoked_at.map(|at| at.to_string()),
                                "live": token.is_live(now),
                            })
                        })
                        .collect(),
                ),
                || {
                    tokens
                        .iter()
                        .map(|token| {
                            format!(
                                "{}\tcreated {}\t{}",
                                token.name,
                                token.created_at,
                                if token.is_live(now) {
                                    "live"
                                } else if token.revoked_at.is_some() {
                                    "revoked"
                                } else {
                                    "expired"
                                }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
    }
    Ok(())
}
