//! An organisation's integrations: who may send, and how they prove it (a bearer token, a
//! pinned client certificate or a source address). Every change is an operator's, audited.

use kith_core::audit::Channel;
use kith_core::integration::{AddressRange, BindRefusal, ConnectionFacts, bind_connection, token_is_live};
use kith_core::model::Integration;
use kith_core::text::{Name, OrganisationCode};
use kith_core::{IntegrationId, Timestamp};

use crate::organisations::organisation_by_code;
use crate::secrets::{new_bearer_token, token_hash};
use crate::{App, AppError, AppResult, AuditBuilder, Operator, new_uuid};

/// A new integration and its bearer token (shown once; only its hash is kept).
#[derive(Clone, Debug)]
pub struct NewIntegration {
    pub integration: Integration,
    pub token: kith_core::text::Secret,
}

/// How an integration's MLLP connections prove who they are.
#[derive(Clone, Debug, Default)]
pub struct IntegrationBinding {
    /// Replace the source-address list with these ranges (`Some(vec![])` clears it).
    pub addresses: Option<Vec<AddressRange>>,
    /// Pin this client certificate (its SHA-256, DER); `Some(None)` removes the pin.
    pub certificate: Option<Option<[u8; 32]>>,
}

/// The SHA-256 of a certificate (DER): how an integration pins its TLS client certificate.
pub fn certificate_sha256(der: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(der).into()
}

fn expiry(now: Timestamp, days: Option<u32>) -> AppResult<Option<Timestamp>> {
    match days {
        None => Ok(None),
        Some(0) => Err(AppError::Invalid("expires-days: at least 1".to_owned())),
        Some(days) => Ok(Some(now.plus(std::time::Duration::from_secs(u64::from(days) * 86_400)))),
    }
}

impl App {
    /// Registers an HL7 integration for an organisation: its sending facility (MSH-4) and a
    /// new bearer token for HTTP, returned once, expiring after `expires_in_days` if given.
    pub fn create_integration(
        &self,
        operator: &Operator,
        code: &OrganisationCode,
        name: &Name,
        facility: &str,
        expires_in_days: Option<u32>,
    ) -> AppResult<NewIntegration> {
        let facility = facility.trim();
        if facility.is_empty()
            || facility.len() > 64
            || facility.chars().any(|c| c.is_control() || "|^~\\&".contains(c))
        {
            return Err(AppError::Invalid(
                "facility: must be the MSH-4 sending facility, 1 to 64 characters without HL7 delimiters".to_owned(),
            ));
        }
        let token = new_bearer_token();
        let hash = token_hash(&token);
        let now = self.now();
        let token_expires_at = expiry(now, expires_in_days)?;
        self.store.write(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            if tx.all_integrations()?.iter().any(|known| known.facility.eq_ignore_ascii_case(facility)) {
                return Err(AppError::Conflict(format!("an integration already uses the sending facility {facility}")));
            }
            let integration = Integration {
                id: IntegrationId::from_uuid(new_uuid()),
                organisation: organisation.id,
                name: name.clone(),
                facility: facility.to_owned(),
                created_at: now,
                revoked_at: None,
                token_expires_at,
                allowed_addresses: Vec::new(),
                client_certificate_sha256: None,
            };
            tx.insert_integration(&integration, &hash)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "integration.create")
                    .organisation(organisation.id)
                    .subject(integration.id)
                    .basis("administration")
                    .build(),
            );
            Ok(NewIntegration { integration, token: kith_core::text::Secret::new(token.clone()) })
        })
    }

    /// The organisation's integration with this sending facility.
    fn integration_of(
        tx: &mut kith_store::Tx<'_>,
        code: &OrganisationCode,
        facility: &str,
    ) -> AppResult<(kith_core::model::Organisation, Integration)> {
        let organisation = organisation_by_code(tx, code)?;
        let integration = tx
            .integrations(organisation.id)?
            .into_iter()
            .find(|integration| integration.facility.eq_ignore_ascii_case(facility.trim()))
            .ok_or_else(|| {
                AppError::NotFound(format!(
                    "organisation {code} has no integration with the sending facility {}",
                    facility.trim()
                ))
            })?;
        Ok((organisation, integration))
    }

    /// Gives an integration a new bearer token (returned once); the old one stops working at
    /// once. The new token expires after `expires_in_days`, if given.
    pub fn rotate_integration_token(
        &self,
        operator: &Operator,
        code: &OrganisationCode,
        facility: &str,
        expires_in_days: Option<u32>,
    ) -> AppResult<NewIntegration> {
        let token = new_bearer_token();
        let hash = token_hash(&token);
        let now = self.now();
        let expires_at = expiry(now, expires_in_days)?;
        self.store.write(|tx| {
            let (organisation, mut integration) = Self::integration_of(tx, code, facility)?;
            if integration.revoked_at.is_some() {
                return Err(AppError::Conflict(format!(
                    "the integration {} is revoked; create a new one",
                    integration.facility
                )));
            }
            tx.set_integration_token(integration.id, &hash, expires_at)?;
            integration.token_expires_at = expires_at;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "integration.rotate_token")
                    .organisation(organisation.id)
                    .subject(integration.id)
                    .basis("administration")
                    .build(),
            );
            Ok(NewIntegration { integration: integration.clone(), token: kith_core::text::Secret::new(token.clone()) })
        })
    }

    /// Revokes an integration: its token and new MLLP connections are refused from now on; a
    /// connection already open is closed when its binding is next checked (at most 5 s
    /// later, before the message that follows is applied).
    pub fn revoke_integration(
        &self,
        operator: &Operator,
        code: &OrganisationCode,
        facility: &str,
    ) -> AppResult<Integration> {
        let now = self.now();
        self.store.write(|tx| {
            let (organisation, mut integration) = Self::integration_of(tx, code, facility)?;
            if integration.revoked_at.is_none() {
                integration.revoked_at = Some(now);
                tx.update_integration(&integration)?;
                tx.audit(
                    AuditBuilder::new(now, operator.actor(), Channel::Cli, "integration.revoke")
                        .organisation(organisation.id)
                        .subject(integration.id)
                        .basis("administration")
                        .build(),
                );
            }
            Ok(integration)
        })
    }

    /// Sets how an integration's MLLP connections are bound to it: its source addresses
    /// and its client certificate. An address range another integration allows already is
    /// refused, so that an address always names one integration.
    pub fn bind_integration(
        &self,
        operator: &Operator,
        code: &OrganisationCode,
        facility: &str,
        binding: &IntegrationBinding,
    ) -> AppResult<Integration> {
        let now = self.now();
        self.store.write(|tx| {
            let (organisation, mut integration) = Self::integration_of(tx, code, facility)?;
            let all_others: Vec<Integration> =
                tx.all_integrations()?.into_iter().filter(|other| other.id != integration.id).collect();
            let others: Vec<&Integration> = all_others.iter().filter(|other| other.revoked_at.is_none()).collect();
            let mut changed = Vec::new();
            if let Some(addresses) = &binding.addresses {
                for range in addresses {
                    let clash = others.iter().find(|other| {
                        other.client_certificate_sha256.is_none()
                            && other.allowed_addresses.iter().any(|theirs| theirs.overlaps(range))
                    });
                    if let Some(other) = clash {
                        return Err(AppError::Conflict(format!(
                            "the address range {range} overlaps one the integration {} allows: an address names one integration (give one of them a client certificate)",
                            other.facility
                        )));
                    }
                }
                integration.allowed_addresses = addresses.clone();
                changed.push(format!(
                    "addresses={}",
                    addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
                ));
            }
            if let Some(certificate) = binding.certificate {
                // Revoked integrations keep theirs: a certificate once pinned is never reused.
                if let Some(hash) = certificate
                    && all_others.iter().any(|other| other.client_certificate_sha256 == Some(hash))
                {
                    return Err(AppError::Conflict(
                        "another integration (perhaps a revoked one) uses this client certificate: issue a new one".to_owned(),
                    ));
                }
                integration.client_certificate_sha256 = certificate;
                changed.push(format!("certificate={}", if certificate.is_some() { "pinned" } else { "none" }));
            }
            tx.update_integration(&integration)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "integration.bind")
                    .organisation(organisation.id)
                    .subject(integration.id)
                    .reason(changed.join("; "))
                    .basis("administration")
                    .build(),
            );
            Ok(integration)
        })
    }

    /// An organisation's integrations.
    pub fn integrations(&self, code: &OrganisationCode) -> AppResult<Vec<Integration>> {
        self.store.read(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            Ok(tx.integrations(organisation.id)?)
        })
    }

    /// Every live integration: what binds an MLLP connection.
    pub fn live_integrations(&self) -> AppResult<Vec<Integration>> {
        self.store.read(|tx| Ok(tx.all_integrations()?.into_iter().filter(|i| i.revoked_at.is_none()).collect()))
    }

    /// The integration an MLLP connection's credentials name (see
    /// `kith_core::integration::bind_connection`), or why none.
    pub fn bind_mllp_connection(&self, connection: &ConnectionFacts) -> AppResult<Result<Integration, BindRefusal>> {
        let integrations = self.store.read(|tx| Ok::<_, AppError>(tx.all_integrations()?))?;
        let credentials: Vec<_> = integrations.iter().map(Integration::credentials).collect();
        Ok(bind_connection(connection, &credentials).map(|id| {
            integrations.into_iter().find(|integration| integration.id == id).expect("bound to a listed one")
        }))
    }

    /// Whether any live integration can bind an MLLP connection (an address list or a
    /// client certificate): without one, an authenticated listener would refuse everyone.
    pub fn any_mllp_binding(&self) -> AppResult<bool> {
        Ok(self.live_integrations()?.iter().any(|integration| {
            !integration.allowed_addresses.is_empty() || integration.client_certificate_sha256.is_some()
        }))
    }

    /// The integration a bearer token belongs to, if the token is live.
    pub fn integration_for_token(&self, token: &str) -> AppResult<Option<Integration>> {
        let hash = token_hash(token);
        let now = self.now();
        let found = self.store.read(|tx| Ok::<_, AppError>(tx.integration_by_token_hash(&hash)?))?;
        Ok(found.filter(|integration| token_is_live(integration.revoked_at, integration.token_expires_at, now)))
    }
}
