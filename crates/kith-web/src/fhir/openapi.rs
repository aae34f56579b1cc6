//! The OpenAPI 3.0 document at `/openapi.json`: every `/fhir` route this server answers,
//! built from the same tables as the router and the capability statement so that the three
//! cannot drift. FHIR resources are described loosely (an object with its `resourceType`):
//! their full definitions are FHIR R4's, and the CapabilityStatement says which are served.

use serde_json::{Map, Value, json};

use super::base::{DEFAULT_COUNT, MAX_COUNT, MAX_OFFSET, ResourceType};
use super::entries::ENTRY_TYPES;

fn resource_schema(types: &[&str]) -> Value {
    json!({
        "type": "object",
        "required": ["resourceType"],
        "properties": { "resourceType": { "type": "string", "enum": types } },
    })
}

fn fhir_content(types: &[&str]) -> Value {
    json!({ "application/fhir+json": { "schema": resource_schema(types) } })
}

fn outcome(description: &str) -> Value {
    json!({ "description": description, "content": fhir_content(&["OperationOutcome"]) })
}

/// The responses every authenticated operation may give, besides its own.
fn responses(ok_status: &str, ok_types: &[&str], extra: &[(&str, &str)]) -> Value {
    let mut out = Map::new();
    out.insert(ok_status.to_owned(), json!({ "description": "success", "content": fhir_content(ok_types) }));
    out.insert("400".to_owned(), outcome("bad search parameters or request"));
    out.insert("401".to_owned(), outcome("no live API token"));
    out.insert("404".to_owned(), outcome("not found, or not visible to the caller (the same answer)"));
    out.insert("405".to_owned(), outcome("method not supported on this path"));
    out.insert("503".to_owned(), outcome("the database is unavailable; try again"));
    for (status, description) in extra {
        out.insert((*status).to_owned(), outcome(description));
    }
    Value::Object(out)
}

fn query(name: &str, schema: Value, required: bool, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": required, "schema": schema, "description": description })
}

fn path_id(pattern: &str, description: &str) -> Value {
    json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "pattern": pattern }, "description": description })
}

const UUID: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
const PAIR: &str = "^[0-9a-f]{64}$";
const PATIENT_REFERENCE: &str =
    "^(Patient/)?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
const PRACTITIONER_REFERENCE: &str =
    "^(Practitioner/)?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
const DATE_SEARCH: &str = "^(eq|ne|gt|lt|ge|le)?[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|\\+00:00))?$";

fn paging() -> [Value; 2] {
    [
        query(
            "_count",
            json!({ "type": "integer", "minimum": 1, "maximum": MAX_COUNT, "default": DEFAULT_COUNT }),
            false,
            "page size",
        ),
        query(
            "_offset",
            json!({ "type": "integer", "minimum": 0, "maximum": MAX_OFFSET }),
            false,
            "where the page starts (from next links)",
        ),
    ]
}

fn patient_query(required: bool) -> Value {
    query(
        "patient",
        json!({ "type": "string", "pattern": PATIENT_REFERENCE }),
        required,
        "a Patient id, or Patient/{id}",
    )
}

fn get_operation(summary: &str, parameters: Vec<Value>, ok_types: &[&str], extra: &[(&str, &str)]) -> Value {
    json!({ "summary": summary, "parameters": parameters, "responses": responses("200", ok_types, extra) })
}

fn body_operation(summary: &str, parameters: Vec<Value>, body_type: &str, ok_status: &str, ok_types: &[&str]) -> Value {
    json!({
        "summary": summary,
        "parameters": parameters,
        "requestBody": { "required": true, "content": fhir_content(&[body_type]) },
        "responses": responses(ok_status, ok_types, &[("403", "an action the caller may never take"), ("422", "the resource is invalid")]),
    })
}

/// The paths of one resource type that is not an entry type.
fn resource_paths(resource_type: ResourceType, add: &mut impl FnMut(String, &str, Value)) {
    let name = resource_type.name();
    let path = |suffix: &str| format!("/fhir/{name}{suffix}");
    match resource_type {
        ResourceType::Patient => {
            let mut patient_search = vec![
                query(
                    "identifier",
                    json!({ "type": "string" }),
                    false,
                    "system|value: the NHS number or a local identifier",
                ),
                query(
                    "family",
                    json!({ "type": "string", "minLength": 1, "maxLength": 100 }),
                    false,
                    "family name (with birthdate)",
                ),
                query("birthdate", json!({ "type": "string", "format": "date" }), false, "date of birth (with family)"),
            ];
            patient_search.extend(paging());
            add(path(""), "get", get_operation("Search patients the caller may see", patient_search, &["Bundle"], &[]));
            add(
                path("/{id}"),
                "get",
                get_operation("Read a patient", vec![path_id(UUID, "Patient id")], &["Patient"], &[]),
            );
            add(
                path("/{id}/$break-glass"),
                "post",
                body_operation(
                    "Break the glass: emergency access to the whole record",
                    vec![path_id(UUID, "Patient id")],
                    "Parameters",
                    "200",
                    &["Parameters"],
                ),
            );
        }
        ResourceType::Consent => {
            let mut consent_search = vec![patient_query(true)];
            consent_search.extend(paging());
            add(path(""), "get", get_operation("Search a patient's consents", consent_search, &["Bundle"], &[]));
            add(
                path("/{id}"),
                "get",
                get_operation("Read a consent", vec![path_id(PAIR, "patient and team")], &["Consent"], &[]),
            );
            add(
                path("/{id}"),
                "put",
                body_operation(
                    "Change a consent",
                    vec![path_id(PAIR, "patient and team")],
                    "Consent",
                    "200",
                    &["Consent"],
                ),
            );
        }
        ResourceType::AuditEvent => {
            let mut audit_search = vec![
                patient_query(false),
                query(
                    "subtype",
                    json!({ "type": "string" }),
                    false,
                    "the action, [system|]code: for a privacy officer consent.change, care_link.create, patient.lookup_limit, patient.password_reset_request or patient.invite",
                ),
            ];
            audit_search.extend(paging());
            add(
                path(""),
                "get",
                get_operation(
                    "The patient's access log, or a privacy officer's break-glass events (or, by subtype, what else they review)",
                    audit_search,
                    &["Bundle"],
                    &[("403", "neither the patient nor a privacy officer")],
                ),
            );
        }
        ResourceType::Organization | ResourceType::CareTeam => {
            add(
                path(""),
                "get",
                get_operation(&format!("The caller's {name} list"), paging().to_vec(), &["Bundle"], &[]),
            );
            add(
                path("/{id}"),
                "get",
                get_operation(&format!("Read a {name}"), vec![path_id(UUID, "id")], &[name], &[]),
            );
            if resource_type == ResourceType::CareTeam {
                let mut add_patient = body_operation(
                    "Bring a patient into the team by exact identifier and birth date",
                    vec![path_id(UUID, "CareTeam id")],
                    "Parameters",
                    "200",
                    &["Consent"],
                );
                add_patient["responses"]["429"] = outcome("too many look-ups that matched no patient in the last hour");
                add(path("/{id}/$add-patient"), "post", add_patient);
            }
        }
        ResourceType::Practitioner => add(
            path("/{id}"),
            "get",
            get_operation("Read a practitioner", vec![path_id(UUID, "Practitioner id")], &["Practitioner"], &[]),
        ),
        ResourceType::PractitionerRole => {
            let mut role_search = vec![query(
                "practitioner",
                json!({ "type": "string", "pattern": PRACTITIONER_REFERENCE }),
                true,
                "a Practitioner id",
            )];
            role_search.extend(paging());
            add(path(""), "get", get_operation("A practitioner's roles", role_search, &["Bundle"], &[]));
            add(
                path("/{id}"),
                "get",
                get_operation(
                    "Read a practitioner's role",
                    vec![path_id(PAIR, "practitioner and team")],
                    &["PractitionerRole"],
                    &[],
                ),
            );
        }
    }
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    let mut add = |path: String, method: &str, operation: Value| {
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        entry[method] = operation;
    };
    let mut metadata =
        get_operation("The CapabilityStatement: what this server serves", vec![], &["CapabilityStatement"], &[]);
    metadata["security"] = json!([]);
    add("/fhir/metadata".into(), "get", metadata);

    for resource_type in ResourceType::ALL {
        resource_paths(resource_type, &mut add);
    }
    for entry_type in ENTRY_TYPES {
        let mut parameters = vec![patient_query(true)];
        let codes = entry_type.categories();
        if !codes.is_empty() {
            parameters.push(query("category", json!({ "type": "string", "enum": codes }), false, "category"));
        }
        for name in ["date", "_lastUpdated"] {
            parameters.push(query(
                name,
                json!({ "type": "string", "pattern": DATE_SEARCH }),
                false,
                "date with prefix",
            ));
        }
        parameters.push(query("_sort", json!({ "type": "string", "enum": ["date", "-date"] }), false, "order"));
        parameters.extend(paging());
        let name = entry_type.name;
        add(
            format!("/fhir/{name}"),
            "get",
            get_operation(&format!("Search {name} of a patient"), parameters, &["Bundle"], &[]),
        );
        add(
            format!("/fhir/{name}/{{id}}"),
            "get",
            get_operation(&format!("Read a {name}"), vec![path_id(UUID, "resource id")], &[name], &[]),
        );
    }
    add(
        "/fhir/Observation".into(),
        "post",
        body_operation("Record a measurement", vec![], "Observation", "201", &["Observation"]),
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Kith FHIR R4 API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every answer obeys the patient's consent and every read is audited. Resources are FHIR R4 JSON; see /fhir/metadata.",
        },
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "an API token (kith token create)" } } },
        "security": [{ "bearer": [] }],
        "paths": paths,
    })
}
