//! The hot path of FHIR searches as typed structures serialised straight to bytes: the
//! searchset Bundle and the Observation (with its components). Building `serde_json::Value`
//! trees for these took about a third of the server's time (bench/RESULTS.md, fhir). The
//! JSON is the same as `resources.rs` wrote; the test suite validates it against the FHIR
//! models.

use std::borrow::Cow;

use kith_app::VisibleEntry;
use kith_core::AccountId;
use kith_core::model::{EntryStatus, Observation};
use serde::Serialize;
use serde_json::Value;

use super::base::{
    Coding, HIDDEN_EXTENSION, INTERPRETATION_SYSTEM, OBSERVATION_CATEGORY_SYSTEM, instant, operation_outcome, security,
};

#[derive(Serialize)]
struct Codings<'a> {
    coding: [Coding<'a>; 1],
}

#[derive(Serialize)]
struct Text<'a> {
    text: &'a str,
}

#[derive(Serialize)]
struct Reference {
    reference: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta<'a> {
    version_id: String,
    last_updated: String,
    security: Vec<Coding<'a>>,
}

#[derive(Serialize)]
struct Quantity<'a> {
    value: serde_json::Number,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<&'a str>,
}

#[derive(Serialize)]
struct ComponentCode<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    coding: Option<[Coding<'a>; 1]>,
    text: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Component<'a> {
    code: ComponentCode<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_quantity: Option<Quantity<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_string: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference_range: Option<[Text<'a>; 1]>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    interpretation: Vec<Codings<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_absent_reason: Option<Codings<'a>>,
}

/// A result (its OBX observations as components) or a measurement.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservationResource<'a> {
    resource_type: &'static str,
    id: String,
    meta: Meta<'a>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<[Codings<'a>; 1]>,
    code: Text<'a>,
    subject: Reference,
    effective_date_time: String,
    issued: String,
    performer: [Reference; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    value_string: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    component: Vec<Component<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<[Text<'a>; 1]>,
}

impl ObservationResource<'_> {
    pub fn id(&self) -> String {
        self.id.clone()
    }
}

fn observation_status(status: Option<EntryStatus>) -> &'static str {
    match status {
        Some(EntryStatus::Preliminary) => "preliminary",
        Some(EntryStatus::Corrected) => "corrected",
        Some(EntryStatus::Cancelled) => "cancelled",
        _ => "final",
    }
}

fn component(observation: &Observation) -> Component<'_> {
    let text = observation.value.trim();
    let number = (!text.is_empty()
        && matches!(observation.value_type.as_str(), "NM" | "SN" | "")
        && text.parse::<f64>().is_ok_and(f64::is_finite))
    .then(|| serde_json::from_str::<serde_json::Number>(text).ok())
    .flatten();
    let units = observation.units.trim();
    let (value_quantity, value_string) = match number {
        Some(value) => (Some(Quantity { value, unit: (!units.is_empty()).then_some(units) }), None),
        None => (None, (!text.is_empty()).then_some(text)),
    };
    let coding = (!observation.code.is_empty()).then(|| {
        [Coding {
            system: (!observation.code_system.is_empty())
                .then(|| Cow::Owned(format!("urn:kith:hl7-coding-system:{}", observation.code_system))),
            code: &observation.code,
            display: (!observation.name.is_empty()).then_some(observation.name.as_str()),
        }]
    });
    let range = observation.reference_range.trim();
    let absent = value_quantity.is_none() && value_string.is_none();
    Component {
        code: ComponentCode {
            coding,
            text: if observation.name.is_empty() { &observation.code } else { &observation.name },
        },
        value_quantity,
        value_string,
        reference_range: (!range.is_empty()).then_some([Text { text: range }]),
        interpretation: observation
            .flags
            .split('~')
            .map(str::trim)
            .filter(|flag| !flag.is_empty())
            .map(|flag| Codings {
                coding: [Coding { system: Some(Cow::Borrowed(INTERPRETATION_SYSTEM)), code: flag, display: None }],
            })
            .collect(),
        data_absent_reason: absent.then_some(Codings {
            coding: [Coding {
                system: Some(Cow::Borrowed("http://terminology.hl7.org/CodeSystem/data-absent-reason")),
                code: "unknown",
                display: None,
            }],
        }),
    }
}

/// The Observation of a result or measurement, in its `category` (laboratory or exam, as
/// `entries.rs` serves the entry's kind);
/// `patient_account` is the record's own account (an entry it wrote names the patient as
/// performer).
pub fn observation<'a>(
    visible: &'a VisibleEntry,
    observations: &'a [Observation],
    patient_account: Option<AccountId>,
    category: Option<&'static str>,
) -> ObservationResource<'a> {
    let entry = &visible.entry;
    let body = entry.body.trim();
    let performer = if entry.author_account.is_some() && entry.author_account == patient_account {
        format!("Patient/{}", entry.patient)
    } else {
        format!("CareTeam/{}", entry.authored_by)
    };
    ObservationResource {
        resource_type: "Observation",
        id: entry.id.to_string(),
        meta: Meta {
            version_id: entry.version.to_string(),
            last_updated: instant(entry.recorded_at),
            security: security(entry.label),
        },
        status: observation_status(entry.status),
        category: category.map(|code| {
            [Codings {
                coding: [Coding { system: Some(Cow::Borrowed(OBSERVATION_CATEGORY_SYSTEM)), code, display: None }],
            }]
        }),
        code: Text { text: entry.title.as_str() },
        subject: Reference { reference: format!("Patient/{}", entry.patient) },
        effective_date_time: instant(entry.effective_at),
        issued: instant(entry.recorded_at),
        performer: [Reference { reference: performer }],
        value_string: (observations.is_empty() && !body.is_empty()).then_some(body),
        component: observations.iter().map(component).collect(),
        note: (!observations.is_empty() && !body.is_empty()).then_some([Text { text: body }]),
    }
}

#[derive(Serialize)]
struct Link {
    relation: &'static str,
    url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BundleMeta {
    last_updated: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    extension: Vec<Value>,
}

#[derive(Serialize)]
struct Search {
    mode: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MatchEntry<R> {
    full_url: String,
    resource: R,
    search: Search,
}

#[derive(Serialize)]
struct OutcomeEntry {
    resource: Value,
    search: Search,
}

/// A Bundle entry: a match, or Kith's note that some entries are hidden.
#[derive(Serialize)]
#[serde(untagged)]
enum BundleEntry<R> {
    Match(MatchEntry<R>),
    Outcome(OutcomeEntry),
}

/// A searchset Bundle: one page of what the caller may see, its total, paging links, and
/// — when entries of the searched kinds are hidden by consent — Kith's extension on
/// `Bundle.meta` and an OperationOutcome entry with the code `suppressed` (never a count).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle<R> {
    resource_type: &'static str,
    meta: BundleMeta,
    #[serde(rename = "type")]
    kind: &'static str,
    total: usize,
    link: Vec<Link>,
    entry: Vec<BundleEntry<R>>,
}

/// One page of a search: the resources on it (with their ids), where it starts, its size,
/// how many match in all, and whether some were hidden by consent.
pub struct Page<R> {
    pub items: Vec<(String, R)>,
    pub total: usize,
    pub offset: usize,
    pub count: usize,
    pub some_hidden: bool,
}

/// Builds the Bundle for one page. `links(offset)` gives the URL of the page at `offset`.
pub fn bundle<R>(resource_type: &str, page: Page<R>, links: impl Fn(usize) -> String, now: String) -> Bundle<R> {
    let Page { items, total, offset, count, some_hidden } = page;
    let mut link = vec![Link { relation: "self", url: links(offset) }];
    if offset + count < total {
        link.push(Link { relation: "next", url: links(offset + count) });
    }
    if offset > 0 {
        link.push(Link { relation: "previous", url: links(offset.saturating_sub(count)) });
    }
    let mut entry: Vec<BundleEntry<R>> = items
        .into_iter()
        .map(|(id, resource)| {
            BundleEntry::Match(MatchEntry {
                full_url: format!("/fhir/{resource_type}/{id}"),
                resource,
                search: Search { mode: "match" },
            })
        })
        .collect();
    let mut extension = Vec::new();
    if some_hidden {
        extension.push(serde_json::json!({ "url": HIDDEN_EXTENSION, "valueBoolean": true }));
        entry.push(BundleEntry::Outcome(OutcomeEntry {
            resource: operation_outcome("information", "suppressed", "some entries are hidden by consent"),
            search: Search { mode: "outcome" },
        }));
    }
    Bundle {
        resource_type: "Bundle",
        meta: BundleMeta { last_updated: now, extension },
        kind: "searchset",
        total,
        link,
        entry,
    }
}
