//! Flags parsed into domain types, once.

use anyhow::anyhow;
use kith_core::PatientId;
use kith_core::text::{EmailAddress, OrganisationCode, TeamAlias};

pub(crate) fn org_code(text: &str) -> anyhow::Result<OrganisationCode> {
    Ok(OrganisationCode::parse(text)?)
}

pub(crate) fn team_alias(text: &str) -> anyhow::Result<TeamAlias> {
    Ok(TeamAlias::parse(text)?)
}

/// `--address` lines, when any were given.
pub(crate) fn postal_address(lines: &[String]) -> anyhow::Result<Option<kith_core::text::PostalAddress>> {
    if lines.is_empty() {
        return Ok(None);
    }
    Ok(Some(kith_core::text::PostalAddress::from_lines(lines.iter().map(String::as_str))?))
}

pub(crate) fn email(text: &str) -> anyhow::Result<EmailAddress> {
    Ok(EmailAddress::parse(text)?)
}

pub(crate) fn patient_id(text: &str) -> anyhow::Result<PatientId> {
    text.parse().map_err(|error| anyhow!("--patient: {error}"))
}
