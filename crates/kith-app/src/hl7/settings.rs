//! An organisation's feed settings: its assigning authorities and when a message may create
//! a record. Every change is an operator's, audited.

use kith_core::audit::Channel;
use kith_core::patient::LocalIdentifier;
use kith_core::text::OrganisationCode;

use crate::organisations::organisation_by_code;
use crate::{App, AppError, AppResult, AuditBuilder, Operator};

/// An assigning authority as hospitals write it (`RXH-MRN`, `Good Health Hospital`), as it
/// is kept (see [`LocalIdentifier::normalise_authority`]); `NHS` and `EMAIL` are not local.
pub fn normalise_authority(authority: &str) -> AppResult<String> {
    let authority = LocalIdentifier::normalise_authority(authority).ok_or_else(|| {
        AppError::Invalid(
            "authority: 1 to 64 characters without HL7 delimiters (|^~\\&) or ':', e.g. RXH-MRN or GOOD HEALTH HOSPITAL"
                .to_owned(),
        )
    })?;
    if authority == "NHS" || authority == "EMAIL" {
        return Err(AppError::Invalid(format!("authority: {authority} is not a local assigning authority")));
    }
    Ok(authority)
}

impl App {
    /// Adds an assigning authority whose PID-3 identifiers are the organisation's local ones.
    /// Returns the authority as it is kept (see [`normalise_authority`]).
    pub fn add_assigning_authority(
        &self,
        operator: &Operator,
        code: &OrganisationCode,
        authority: &str,
    ) -> AppResult<String> {
        let authority = normalise_authority(authority)?;
        let now = self.now();
        self.store.write(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            tx.add_assigning_authority(organisation.id, &authority, now)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "organisation.settings")
                    .organisation(organisation.id)
                    .subject(format!("assigning_authority={authority}"))
                    .basis("administration")
                    .build(),
            );
            Ok(authority.clone())
        })
    }

    /// Whether admission and registration ADTs may create records, or only A28 and A31.
    pub fn set_hl7_create_on_any_adt(&self, operator: &Operator, code: &OrganisationCode, any: bool) -> AppResult<()> {
        let now = self.now();
        self.store.write(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            tx.set_hl7_create_on_any_adt(organisation.id, any)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "organisation.settings")
                    .organisation(organisation.id)
                    .subject(format!("hl7_create_on_any_adt={any}"))
                    .basis("administration")
                    .build(),
            );
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_as_hospitals_write_them() {
        assert_eq!(normalise_authority("  Good   Health Hospital ").unwrap(), "GOOD HEALTH HOSPITAL");
        assert_eq!(normalise_authority("rxh-mrn").unwrap(), "RXH-MRN");
        assert_eq!(normalise_authority("St. Mary's (Paddington)").unwrap(), "ST. MARY'S (PADDINGTON)");
        for bad in ["", "  ", "A|B", "A^B", "A:B", "nhs", "Email"] {
            assert!(normalise_authority(bad).is_err(), "{bad:?}");
        }
    }
}
