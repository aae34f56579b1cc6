//! Record entries as FHIR resources: which resource type each kind of entry is served as,
//! with its category ([`served_as`], the one place a kind of entry meets FHIR), the entry
//! resource types ([`ENTRY_TYPES`]: their routes, capability statement and OpenAPI paths
//! are made from it), and writing an entry as its resource ([`entry_resource`]).
//!
//! A new kind of entry is placed in [`served_as`] (the match is exhaustive); a new entry
//! resource type is a static here with its writer, a row of [`ENTRY_TYPES`] and arms of
//! [`served_as`]. The tests below check that the three agree.

use kith_app::VisibleEntry;
use kith_core::AccountId;
use kith_core::model::Observation;
use kith_core::patient::EntryKind;
use serde::Serialize;
use serde_json::Value;

use super::resources;
use super::typed::{self, ObservationResource};

/// A FHIR resource type served from record entries.
pub struct EntryType {
    pub name: &'static str,
    /// Writes an entry served as this type, in its category (see [`served_as`]), with its
    /// observations and the record's own account.
    write:
        for<'a> fn(&'a VisibleEntry, &'a [Observation], Option<AccountId>, Option<&'static str>) -> EntryResource<'a>,
}

pub static OBSERVATION: EntryType = EntryType {
    name: "Observation",
    write: |visible, observations, account, category| {
        EntryResource::Observation(Box::new(typed::observation(visible, observations, account, category)))
    },
};
pub static DOCUMENT_REFERENCE: EntryType = EntryType {
    name: "DocumentReference",
    write: |visible, _, _, _| EntryResource::Other(resources::document_reference(visible)),
};
pub static CARE_PLAN: EntryType =
    EntryType { name: "CarePlan", write: |visible, _, _, _| EntryResource::Other(resources::care_plan(visible)) };
pub static APPOINTMENT: EntryType =
    EntryType { name: "Appointment", write: |visible, _, _, _| EntryResource::Other(resources::appointment(visible)) };

/// Every entry resource type, in the order the API lists them.
pub static ENTRY_TYPES: [&EntryType; 4] = [&OBSERVATION, &DOCUMENT_REFERENCE, &CARE_PLAN, &APPOINTMENT];

/// How a kind of entry is served: as which resource type, in which category (the values of
/// the type's `category` search parameter; none for a type without one).
#[derive(Clone, Copy)]
pub struct Served {
    pub entry_type: &'static EntryType,
    pub category: Option<&'static str>,
}

/// The resource type a kind of entry is served as, or none (not served over FHIR).
pub fn served_as(kind: EntryKind) -> Option<Served> {
    let plain = |entry_type| Some(Served { entry_type, category: None });
    match kind {
        EntryKind::Result => Some(Served { entry_type: &OBSERVATION, category: Some("laboratory") }),
        EntryKind::Measurement => Some(Served { entry_type: &OBSERVATION, category: Some("exam") }),
        EntryKind::Document => plain(&DOCUMENT_REFERENCE),
        EntryKind::CarePlan => plain(&CARE_PLAN),
        EntryKind::Appointment => plain(&APPOINTMENT),
        EntryKind::Note | EntryKind::Diagnosis | EntryKind::Medication | EntryKind::Allergy => None,
    }
}

impl EntryType {
    fn serves(&self, kind: EntryKind) -> Option<Served> {
        served_as(kind).filter(|served| served.entry_type.name == self.name)
    }

    /// The kinds of entry served as this type.
    pub fn kinds(&self) -> Vec<EntryKind> {
        EntryKind::ALL.into_iter().filter(|kind| self.serves(*kind).is_some()).collect()
    }

    /// The kinds of entry in one of this type's categories (none for an unknown category).
    pub fn kinds_in(&self, category: &str) -> Vec<EntryKind> {
        let in_category = |kind: &EntryKind| self.serves(*kind).is_some_and(|served| served.category == Some(category));
        EntryKind::ALL.into_iter().filter(in_category).collect()
    }

    /// The codes of this type's `category` search parameter (none: it has no such parameter).
    pub fn categories(&self) -> Vec<&'static str> {
        let mut codes: Vec<&'static str> = Vec::new();
        for category in EntryKind::ALL.into_iter().filter_map(|kind| self.serves(kind)?.category) {
            if !codes.contains(&category) {
                codes.push(category);
            }
        }
        codes
    }

    /// Whether `kind` is served as this type.
    pub fn serves_kind(&self, kind: EntryKind) -> bool {
        self.serves(kind).is_some()
    }
}

/// An entry as the resource its kind is served as: typed for Observations, a `Value` for
/// the rest.
#[derive(Serialize)]
#[serde(untagged)]
pub enum EntryResource<'a> {
    Observation(Box<ObservationResource<'a>>),
    Other(Value),
}

impl EntryResource<'_> {
    pub fn id(&self) -> String {
        match self {
            EntryResource::Observation(observation) => observation.id(),
            EntryResource::Other(value) => value["id"].as_str().unwrap_or_default().to_owned(),
        }
    }
}

/// An entry as the resource its kind is served as (none for a kind not served over FHIR);
/// `patient_account` is the record's own account.
pub fn entry_resource<'a>(
    visible: &'a VisibleEntry,
    observations: &'a [Observation],
    patient_account: Option<AccountId>,
) -> Option<EntryResource<'a>> {
    let served = served_as(visible.entry.kind)?;
    Some((served.entry_type.write)(visible, observations, patient_account, served.category))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_kind_has_its_type_listed_and_every_listed_type_serves_a_kind() {
        for kind in EntryKind::ALL {
            if let Some(served) = served_as(kind) {
                assert!(ENTRY_TYPES.iter().any(|listed| listed.name == served.entry_type.name), "{kind:?}");
                assert!(served.entry_type.kinds().contains(&kind));
            }
        }
        for entry_type in ENTRY_TYPES {
            assert!(!entry_type.kinds().is_empty(), "{} serves no kind of entry", entry_type.name);
            // A type with categories puts every kind it serves in one.
            if !entry_type.categories().is_empty() {
                for kind in entry_type.kinds() {
                    assert!(entry_type.serves(kind).is_some_and(|served| served.category.is_some()), "{kind:?}");
                }
            }
        }
        assert_eq!(OBSERVATION.categories(), ["laboratory", "exam"]);
        assert_eq!(OBSERVATION.kinds_in("exam"), [EntryKind::Measurement]);
        assert!(OBSERVATION.kinds_in("vital-signs").is_empty());
        assert_eq!(DOCUMENT_REFERENCE.kinds(), [EntryKind::Document]);
    }
}
