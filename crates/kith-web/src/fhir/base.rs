//! What every part of the FHIR API shares, and imports nothing of the others: Kith's code
//! systems and extensions, instants as FHIR writes them, security labels, the
//! OperationOutcome, and page sizes.

use std::borrow::Cow;

use kith_core::{PrivacyLabel, Timestamp};
use serde::Serialize;
use serde_json::{Value, json};

/// The NHS number's identifier system.
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// Local identifiers: `https://kith.dev/fhir/Id/{organisation code}/{assigning authority}`.
pub const LOCAL_SYSTEM_PREFIX: &str = "https://kith.dev/fhir/Id/";
/// Kith's privacy labels as security labels.
pub const PRIVACY_LABEL_SYSTEM: &str = "https://kith.dev/fhir/CodeSystem/privacy-label";
pub(crate) const CONFIDENTIALITY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
pub(crate) const ACT_CODE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub(crate) const OBSERVATION_CATEGORY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
pub(crate) const INTERPRETATION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v2-0078";
/// The Bundle extension saying that entries the caller may not see exist (never how many).
pub const HIDDEN_EXTENSION: &str = "https://kith.dev/fhir/StructureDefinition/some-entries-hidden";

/// Page size when `_count` is not given, and the largest allowed.
pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 500;
/// The furthest a page may start.
pub const MAX_OFFSET: usize = 1_000_000;

/// An instant as FHIR writes it.
pub fn instant(at: Timestamp) -> String {
    at.to_string()
}

#[derive(Serialize)]
pub struct Coding<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) system: Option<Cow<'a, str>>,
    pub(crate) code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) display: Option<&'a str>,
}

/// `meta.security` for an entry's privacy label: Kith's own code and the HL7 v3 equivalent
/// (general is normal confidentiality; the three sensitive labels are restricted, with
/// their sensitivity codes).
pub fn security<'a>(label: Option<PrivacyLabel>) -> Vec<Coding<'a>> {
    let mut labels = Vec::with_capacity(3);
    if let Some(label) = label {
        labels.push(Coding {
            system: Some(Cow::Borrowed(PRIVACY_LABEL_SYSTEM)),
            code: label.code(),
            display: Some(label.plain_words()),
        });
    }
    let (confidentiality, sensitivity) = match label {
        Some(PrivacyLabel::General) => ("N", None),
        Some(PrivacyLabel::SexualHealth) => ("R", Some("SEX")),
        Some(PrivacyLabel::MentalHealth) => ("R", Some("PSY")),
        Some(PrivacyLabel::SocialCare) => ("R", Some("SOC")),
        None => ("R", None),
    };
    labels.push(Coding { system: Some(Cow::Borrowed(CONFIDENTIALITY_SYSTEM)), code: confidentiality, display: None });
    if let Some(code) = sensitivity {
        labels.push(Coding { system: Some(Cow::Borrowed(ACT_CODE_SYSTEM)), code, display: None });
    }
    labels
}

/// An OperationOutcome with one issue.
pub fn operation_outcome(severity: &str, code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": severity, "code": code, "diagnostics": diagnostics }],
    })
}

/// The resource types the API serves besides the entry types (`entries::ENTRY_TYPES`), in
/// the order the capability statement lists them. The router, the capability statement and
/// the OpenAPI document each match on every one, exhaustively: a new resource type is added
/// here, then wherever the compiler asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceType {
    Patient,
    Consent,
    AuditEvent,
    Organization,
    CareTeam,
    Practitioner,
    PractitionerRole,
}

impl ResourceType {
    pub const ALL: [ResourceType; 7] = [
        ResourceType::Patient,
        ResourceType::Consent,
        ResourceType::AuditEvent,
        ResourceType::Organization,
        ResourceType::CareTeam,
        ResourceType::Practitioner,
        ResourceType::PractitionerRole,
    ];

    /// Its FHIR name, as in `/fhir/{name}` and `resourceType`.
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Patient => "Patient",
            ResourceType::Consent => "Consent",
            ResourceType::AuditEvent => "AuditEvent",
            ResourceType::Organization => "Organization",
            ResourceType::CareTeam => "CareTeam",
            ResourceType::Practitioner => "Practitioner",
            ResourceType::PractitionerRole => "PractitionerRole",
        }
    }
}
