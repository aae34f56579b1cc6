//! Kith's records as FHIR R4 JSON resources. Hand-written: about a dozen resources, each
//! with only the elements Kith fills, checked against the R4 models in the test suite.

use kith_app::{AccessLogEntry, PatientDetails, PractitionerDirectory, TeamDirectory, VisibleEntry};
use kith_core::model::{CareLink, Entry, EntryStatus, Membership, Organisation, Team};
use kith_core::team::{AccountStatus, TeamKind, TeamStatus};
use kith_core::{PatientId, PrivacyLabel, TeamId};
use serde_json::{Map, Value, json};

use super::base::{ACT_CODE_SYSTEM, LOCAL_SYSTEM_PREFIX, NHS_NUMBER_SYSTEM, PRIVACY_LABEL_SYSTEM, instant, security};

/// `meta.security` for an entry's privacy label (see [`security`]).
pub fn security_labels(label: Option<PrivacyLabel>) -> Value {
    serde_json::to_value(security(label)).expect("codings serialise")
}

pub fn patient(details: &PatientDetails) -> Value {
    let patient = &details.patient;
    let demographics = &patient.demographics;
    let mut identifiers = Vec::new();
    if let Some(number) = &patient.nhs_number {
        identifiers.push(json!({ "system": NHS_NUMBER_SYSTEM, "value": number.as_str() }));
    }
    for (organisation, identifier) in &details.identifiers {
        identifiers.push(json!({
            "system": format!("{LOCAL_SYSTEM_PREFIX}{}/{}", organisation.as_str(), authority_in_uri(identifier.authority())),
            "value": identifier.value(),
        }));
    }
    let mut telecom = Vec::new();
    if let Some(email) = &demographics.email {
        telecom.push(json!({ "system": "email", "value": email.as_str() }));
    }
    if let Some(mobile) = &demographics.mobile {
        telecom.push(json!({ "system": "phone", "value": mobile.as_str(), "use": "mobile" }));
    }
    let mut resource = json!({
        "resourceType": "Patient",
        "id": patient.id.to_string(),
        "meta": { "lastUpdated": instant(patient.updated_at) },
        "active": true,
        "name": [{
            "use": "official",
            "family": demographics.family_name.as_str(),
            "given": [demographics.given_name.as_str()],
        }],
        "gender": demographics.sex.code(),
        "birthDate": demographics.birth_date.to_string(),
    });
    let object = resource.as_object_mut().expect("an object");
    if !identifiers.is_empty() {
        object.insert("identifier".to_owned(), Value::Array(identifiers));
    }
    if !telecom.is_empty() {
        object.insert("telecom".to_owned(), Value::Array(telecom));
    }
    resource
}

/// Standard base64 (RFC 4648, with padding), for attachment data.
pub fn base64(bytes: &[u8]) -> String {
    data_encoding::BASE64.encode(bytes)
}

/// An assigning authority as the last segment of an identifier system URI: a space (which
/// authorities as hospitals write them may hold) and `%` are percent-encoded.
pub fn authority_in_uri(authority: &str) -> String {
    authority.replace('%', "%25").replace(' ', "%20")
}

/// An identifier system URI's last segment read back as an assigning authority.
pub fn authority_from_uri(segment: &str) -> String {
    segment.replace("%20", " ").replace("%25", "%")
}

/// A document; a replaced document keeps its identifier and shows its latest version.
pub fn document_reference(visible: &VisibleEntry) -> Value {
    let entry = &visible.entry;
    let doc_status = match entry.status {
        Some(EntryStatus::Preliminary) => "preliminary",
        Some(EntryStatus::Corrected) => "amended",
        _ => "final",
    };
    json!({
        "resourceType": "DocumentReference",
        "id": entry.id.to_string(),
        "meta": entry_meta(entry),
        // A document its sender cancelled (MDM^T11) is kept, marked entered in error.
        "status": if entry.status == Some(EntryStatus::Cancelled) { "entered-in-error" } else { "current" },
        "docStatus": doc_status,
        "type": { "text": entry.title.as_str() },
        "subject": { "reference": format!("Patient/{}", entry.patient) },
        "date": instant(entry.recorded_at),
        "author": [{ "reference": format!("CareTeam/{}", entry.authored_by) }],
        "description": entry.title.as_str(),
        "content": [{
            "attachment": {
                "contentType": "text/plain; charset=utf-8",
                "data": base64(entry.body.as_bytes()),
                "title": entry.title.as_str(),
                "creation": instant(entry.effective_at),
            },
        }],
        "context": { "period": { "start": instant(entry.effective_at) } },
    })
}

/// A care plan (an MDM document of type CP, or one written in Kith).
pub fn care_plan(visible: &VisibleEntry) -> Value {
    let entry = &visible.entry;
    let mut resource = json!({
        "resourceType": "CarePlan",
        "id": entry.id.to_string(),
        "meta": entry_meta(entry),
        "status": "active",
        "intent": "plan",
        "title": entry.title.as_str(),
        "subject": { "reference": format!("Patient/{}", entry.patient) },
        "period": { "start": instant(entry.effective_at) },
        "created": instant(entry.recorded_at),
        "author": { "reference": format!("CareTeam/{}", entry.authored_by) },
    });
    if !entry.body.trim().is_empty() {
        resource["description"] = Value::String(entry.body.trim().to_owned());
    }
    resource
}

/// An appointment. FHIR wants `end` with `start` on a booked appointment: when the feed did
/// not say how long it lasts, `end` is the start (an instant, not an invented length) and
/// there is no `minutesDuration`.
pub fn appointment(visible: &VisibleEntry) -> Value {
    let entry = &visible.entry;
    let status = match entry.status {
        Some(EntryStatus::Cancelled) => "cancelled",
        Some(EntryStatus::NoShow) => "noshow",
        _ => "booked",
    };
    let mut resource = json!({
        "resourceType": "Appointment",
        "id": entry.id.to_string(),
        "meta": entry_meta(entry),
        "status": status,
        "description": entry.title.as_str(),
        "start": instant(entry.effective_at),
        "end": instant(entry.ends_at.unwrap_or(entry.effective_at)),
        "created": instant(entry.recorded_at),
        "participant": [{
            "actor": { "reference": format!("Patient/{}", entry.patient) },
            "status": "accepted",
        }],
    });
    if let Some(end) = entry.ends_at {
        let minutes = (end.as_micros() - entry.effective_at.as_micros()) / 60_000_000;
        if minutes > 0 {
            resource["minutesDuration"] = json!(minutes);
        }
    }
    if !entry.body.trim().is_empty() {
        resource["comment"] = Value::String(entry.body.trim().to_owned());
    }
    resource
}

fn entry_meta(entry: &Entry) -> Value {
    json!({
        "versionId": entry.version.to_string(),
        "lastUpdated": instant(entry.recorded_at),
        "security": security_labels(entry.label),
    })
}

/// A Consent's id: the patient's and the team's identifiers, 32 hexadecimal digits each.
pub fn consent_id(patient: PatientId, team: TeamId) -> String {
    format!("{}{}", patient.as_uuid().simple(), team.as_uuid().simple())
}

/// The (patient, team) a Consent id names.
pub fn parse_consent_id(id: &str) -> Option<(PatientId, TeamId)> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let patient = uuid::Uuid::parse_str(&id[..32]).ok()?;
    let team = uuid::Uuid::parse_str(&id[32..]).ok()?;
    Some((PatientId::from_uuid(patient), TeamId::from_uuid(team)))
}

/// Explains who recorded a care link's labels (Kith's link basis).
pub const CONSENT_BASIS_EXTENSION: &str = "https://kith.dev/fhir/StructureDefinition/consent-basis";
/// On a Consent sent with PUT by a professional: why they change it on the patient's behalf.
pub const ON_BEHALF_REASON_EXTENSION: &str = "https://kith.dev/fhir/StructureDefinition/on-behalf-reason";

/// A care link as a Consent: which labels of the record the team (a CareTeam) may see.
pub fn consent(link: &CareLink) -> Value {
    let labels: Vec<Value> = link
        .labels
        .iter()
        .map(|label| json!({ "system": PRIVACY_LABEL_SYSTEM, "code": label.code(), "display": label.plain_words() }))
        .collect();
    let mut provision = json!({
        "type": "permit",
        "actor": [{
            "role": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP" }] },
            "reference": { "reference": format!("CareTeam/{}", link.team) },
        }],
    });
    if !labels.is_empty() {
        provision["securityLabel"] = Value::Array(labels);
    }
    if let Some(discharged) = link.discharged_at {
        provision["period"] = json!({ "start": instant(link.linked_at), "end": instant(discharged) });
    } else {
        provision["period"] = json!({ "start": instant(link.linked_at) });
    }
    json!({
        "resourceType": "Consent",
        "id": consent_id(link.patient, link.team),
        "meta": { "lastUpdated": instant(link.updated_at) },
        "extension": [{ "url": CONSENT_BASIS_EXTENSION, "valueCode": link.basis.code() }],
        "status": if link.is_active() { "active" } else { "inactive" },
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent" }] }],
        "patient": { "reference": format!("Patient/{}", link.patient) },
        "dateTime": instant(link.updated_at),
        "policyRule": { "coding": [{ "system": ACT_CODE_SYSTEM, "code": "OPTIN" }] },
        "provision": provision,
    })
}

/// Organisation codes (ODS-style).
pub const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
/// Team roles: professional or coordinator.
pub const ROLE_SYSTEM: &str = "https://kith.dev/fhir/CodeSystem/team-role";
/// Team kinds: patient_record (the organisation's Patient Record Team) or speciality.
pub const TEAM_KIND_SYSTEM: &str = "https://kith.dev/fhir/CodeSystem/team-kind";
/// On a PractitionerRole: the team (CareTeam) the role is in.
pub const CARE_TEAM_EXTENSION: &str = "https://kith.dev/fhir/StructureDefinition/care-team";
/// Kith's audit actions and access bases.
pub const AUDIT_ACTION_SYSTEM: &str = "https://kith.dev/fhir/CodeSystem/audit-action";
pub const ACCESS_BASIS_SYSTEM: &str = "https://kith.dev/fhir/CodeSystem/access-basis";

pub fn organization(organisation: &Organisation) -> Value {
    json!({
        "resourceType": "Organization",
        "id": organisation.id.to_string(),
        "identifier": [{ "system": ODS_SYSTEM, "value": organisation.code.as_str() }],
        "active": true,
        "name": organisation.name.as_str(),
    })
}

pub fn care_team(directory: &TeamDirectory) -> Value {
    let team = &directory.team;
    let status = match team.status {
        TeamStatus::Setup => "proposed",
        TeamStatus::Live => "active",
        TeamStatus::Closed => "inactive",
    };
    let kind = match team.kind {
        TeamKind::PatientRecord => "patient_record",
        TeamKind::Speciality => "speciality",
    };
    let participants: Vec<Value> = directory
        .members
        .iter()
        .map(|(membership, account)| {
            json!({
                "role": [{ "coding": [{ "system": ROLE_SYSTEM, "code": membership.role.code() }] }],
                "member": { "reference": format!("Practitioner/{}", account.id), "display": account.name.as_str() },
            })
        })
        .collect();
    let mut resource = json!({
        "resourceType": "CareTeam",
        "id": team.id.to_string(),
        "identifier": [{
            "system": format!("https://kith.dev/fhir/Id/team-alias/{}", directory.organisation.code.as_str()),
            "value": team.alias.as_str(),
        }],
        "status": status,
        "category": [{ "coding": [{ "system": TEAM_KIND_SYSTEM, "code": kind }] }],
        "name": team.name.as_str(),
        "managingOrganization": [{
            "reference": format!("Organization/{}", directory.organisation.id),
            "display": directory.organisation.name.as_str(),
        }],
    });
    if !participants.is_empty() {
        resource["participant"] = Value::Array(participants);
    }
    resource
}

pub fn practitioner(directory: &PractitionerDirectory) -> Value {
    json!({
        "resourceType": "Practitioner",
        "id": directory.account.id.to_string(),
        "active": directory.account.status == AccountStatus::Active,
        "name": [{ "text": directory.account.name.as_str() }],
    })
}

/// A PractitionerRole's id: the account's and the team's identifiers, 32 hex digits each.
pub fn practitioner_role_id(membership: &Membership) -> String {
    format!("{}{}", membership.account.as_uuid().simple(), membership.team.as_uuid().simple())
}

pub fn practitioner_role(membership: &Membership, team: &Team) -> Value {
    json!({
        "resourceType": "PractitionerRole",
        "id": practitioner_role_id(membership),
        "extension": [{ "url": CARE_TEAM_EXTENSION, "valueReference": { "reference": format!("CareTeam/{}", team.id) } }],
        "active": true,
        "practitioner": { "reference": format!("Practitioner/{}", membership.account) },
        "organization": { "reference": format!("Organization/{}", team.organisation) },
        "code": [{ "coding": [{ "system": ROLE_SYSTEM, "code": membership.role.code() }], "text": team.name.as_str() }],
    })
}

/// An event a privacy officer reviews: as [`audit_event`], with the organisation (as the
/// source's site), the reason given or refused (`entity.detail` "reason", and
/// `outcomeDesc` for a refusal) and what changed (`entity.detail` "change").
pub fn reviewed_audit_event(event: &kith_app::ReviewedEvent) -> Value {
    let mut resource = audit_event(&event.entry);
    if let Some(organisation) = &event.organisation {
        resource["source"]["site"] = Value::String(organisation.clone());
    }
    let mut details = Vec::new();
    if let Some(reason) = &event.reason {
        details.push(json!({ "type": "reason", "valueString": reason }));
        if event.entry.outcome != "allowed" {
            resource["outcomeDesc"] = Value::String(reason.clone());
        }
    }
    if let Some(subject) = &event.subject {
        details.push(json!({ "type": "change", "valueString": subject }));
    }
    if !details.is_empty() {
        if resource["entity"].as_array().is_none() {
            resource["entity"] = json!([{}]);
        }
        let entity = &mut resource["entity"][0];
        match entity["detail"].as_array_mut() {
            Some(existing) => existing.extend(details),
            None => entity["detail"] = Value::Array(details),
        }
    }
    resource
}

/// An audit event as its patient or a privacy officer sees it: who, which team, when, what
/// kinds of data and labels, on what basis; break glass marked as emergency treatment.
pub fn audit_event(entry: &AccessLogEntry) -> Value {
    let action = match entry.action.as_str() {
        action if action.ends_with(".read") || action.ends_with(".search") => "R",
        action if action.ends_with(".create") || action == "entry.add" => "C",
        action if action.starts_with("break_glass.") => "E",
        _ => "U",
    };
    let mut who = json!({ "display": entry.who });
    if let Some(actor) = entry.actor {
        who["reference"] = Value::String(format!("Practitioner/{actor}"));
    }
    let mut agents = vec![json!({ "who": who, "requestor": true })];
    if let Some(team) = entry.team_id {
        let mut team_ref = json!({ "reference": format!("CareTeam/{team}") });
        if let Some(name) = &entry.team {
            team_ref["display"] = Value::String(name.clone());
        }
        agents.push(json!({
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass", "code": "PROV" }], "text": "acting team" },
            "who": team_ref,
            "requestor": false,
        }));
    }
    let mut purpose = Vec::new();
    if let Some(basis) = &entry.basis {
        let mut coding = vec![json!({ "system": ACCESS_BASIS_SYSTEM, "code": basis })];
        if entry.break_glass {
            coding.push(json!({ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "ETREAT", "display": "emergency treatment" }));
        }
        purpose.push(json!({ "coding": coding }));
    }
    let mut entity = Map::new();
    if let Some(patient) = entry.patient {
        entity.insert("what".to_owned(), json!({ "reference": format!("Patient/{patient}") }));
    }
    let labels: Vec<Value> =
        entry.label_set.iter().map(|label| json!({ "system": PRIVACY_LABEL_SYSTEM, "code": label.code() })).collect();
    if !labels.is_empty() {
        entity.insert("securityLabel".to_owned(), Value::Array(labels));
    }
    if !entry.entry_kinds.is_empty() {
        entity.insert("detail".to_owned(), json!([{ "type": "entry-kinds", "valueString": entry.entry_kinds }]));
    }
    let mut resource = json!({
        "resourceType": "AuditEvent",
        "id": entry.seq.to_string(),
        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation" },
        "subtype": [{ "system": AUDIT_ACTION_SYSTEM, "code": entry.action }],
        "action": action,
        "recorded": instant(entry.at),
        "outcome": if entry.outcome == "allowed" { "0" } else { "4" },
        "agent": agents,
        "source": { "observer": { "display": "Kith" } },
    });
    if !purpose.is_empty() {
        resource["purposeOfEvent"] = Value::Array(purpose);
    }
    if !entity.is_empty() {
        resource["entity"] = json!([entity]);
    }
    resource
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc_4648() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(input.as_bytes()), output);
        }
    }

    #[test]
    fn authorities_with_spaces_round_trip_through_an_identifier_system() {
        let segment = super::authority_in_uri("GOOD HEALTH HOSPITAL 100%");
        assert_eq!(segment, "GOOD%20HEALTH%20HOSPITAL%20100%25");
        assert_eq!(super::authority_from_uri(&segment), "GOOD HEALTH HOSPITAL 100%");
        assert_eq!(super::authority_in_uri("RXH-MRN"), "RXH-MRN");
    }
}
