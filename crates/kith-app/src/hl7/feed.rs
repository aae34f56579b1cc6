//! What ingestion knows of an organisation (read once per transaction) and what every
//! change made from one message shares.

use kith_core::audit::Actor;
use kith_core::integration::facility_matches;
use kith_core::model::{Integration, Organisation, Team};
use kith_core::text::OrganisationCode;
use kith_core::{Hl7MessageId, PatientId, Timestamp};
use kith_store::Tx;

use crate::organisations::organisation_by_code;
use crate::{AppError, AppResult};

/// What ingestion needs to know about an organisation. Read once per transaction: applying
/// messages never changes it.
pub(crate) struct FeedFacts {
    pub(crate) organisation: Organisation,
    pub(crate) prt: Team,
    authorities: Vec<String>,
    pub(crate) label_rules: Vec<(String, String, kith_core::PrivacyLabel)>,
    pub(crate) create_on_any_adt: bool,
}

impl FeedFacts {
    /// Whether PID-3 identifiers under this assigning authority are the organisation's
    /// (compared as authorities are kept: spaces collapsed, upper case).
    pub(crate) fn is_local_authority(&self, authority: &str) -> bool {
        let Some(authority) = kith_core::patient::LocalIdentifier::normalise_authority(authority) else {
            return false;
        };
        self.authorities.contains(&authority)
    }
}

/// Organisation facts read within one transaction, by id and by code.
#[derive(Default)]
pub(crate) struct FeedCache {
    facts: std::collections::HashMap<kith_core::OrganisationId, FeedFacts>,
    codes: std::collections::HashMap<OrganisationCode, kith_core::OrganisationId>,
    integrations: Option<Vec<Integration>>,
}

impl FeedCache {
    pub(crate) fn organisation_id(
        &mut self,
        tx: &mut Tx<'_>,
        code: &OrganisationCode,
    ) -> AppResult<kith_core::OrganisationId> {
        if let Some(id) = self.codes.get(code) {
            return Ok(*id);
        }
        let id = organisation_by_code(tx, code)?.id;
        self.codes.insert(code.clone(), id);
        Ok(id)
    }

    /// The live integration whose facility MSH-4 names (an unauthenticated listener's way).
    pub(crate) fn integration_by_facility(
        &mut self,
        tx: &mut Tx<'_>,
        facility: &str,
    ) -> AppResult<Option<Integration>> {
        if self.integrations.is_none() {
            self.integrations = Some(tx.all_integrations()?);
        }
        Ok(self
            .integrations
            .iter()
            .flatten()
            .find(|integration| integration.revoked_at.is_none() && facility_matches(&integration.facility, facility))
            .cloned())
    }

    pub(crate) fn facts(&mut self, tx: &mut Tx<'_>, id: kith_core::OrganisationId) -> AppResult<&FeedFacts> {
        match self.facts.entry(id) {
            std::collections::hash_map::Entry::Occupied(entry) => Ok(entry.into_mut()),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let organisation = tx.organisation(id)?.ok_or_else(|| AppError::NotFound("organisation".to_owned()))?;
                let prt = tx.patient_record_team(id)?.ok_or_else(|| {
                    AppError::NotFound(format!("organisation {} has no Patient Record Team", organisation.code))
                })?;
                Ok(entry.insert(FeedFacts {
                    prt,
                    authorities: tx.assigning_authorities(id)?,
                    label_rules: tx.label_rules(id)?,
                    create_on_any_adt: tx.hl7_create_on_any_adt(id)?,
                    organisation,
                }))
            }
        }
    }
}

/// What every change made from one message shares.
pub(crate) struct Filing<'a> {
    pub(crate) facts: &'a FeedFacts,
    pub(crate) actor: &'a Actor,
    pub(crate) message: Hl7MessageId,
    /// How a person resolving a held message overrode the matching rule.
    pub(crate) how: Override,
    pub(crate) now: Timestamp,
}

/// How a person resolving a held message overrides the matching rule.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Override {
    /// As the rule says.
    None,
    /// The message is about this record (the person checked); held field changes apply.
    ApplyTo(PatientId),
    /// Without the field that conflicts: the NHS number when identifiers disagree; the name
    /// and birth date changes otherwise.
    WithoutConflictingField,
}
