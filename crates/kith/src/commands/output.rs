//! Printing a result: one JSON object with `--json`, else a line or two for people.

use kith_core::model::{Organisation, Patient, Team};
use serde_json::{Value, json};

pub(crate) fn print(json: bool, value: Value, human: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", human());
    }
}

pub(super) fn organisation_json(organisation: &Organisation, prt: Option<&Team>) -> Value {
    let mut value = json!({
        "id": organisation.id.to_string(),
        "code": organisation.code.as_str(),
        "name": organisation.name.as_str(),
        "break_glass_duration_seconds": organisation.break_glass_duration.as_secs(),
    });
    if let Some(prt) = prt {
        value["patient_record_team"] = team_json(prt);
    }
    value
}

pub(super) fn team_json(team: &Team) -> Value {
    json!({
        "id": team.id.to_string(),
        "alias": team.alias.as_str(),
        "name": team.name.as_str(),
        "kind": team.kind.code(),
        "status": team.status.code(),
        "labels": team.default_labels.iter().map(|label| label.code()).collect::<Vec<_>>(),
    })
}

pub(super) fn patient_json(patient: &Patient) -> Value {
    let d = &patient.demographics;
    json!({
        "id": patient.id.to_string(),
        "nhs_number": patient.nhs_number.as_ref().map(|n| n.as_str()),
        "family": d.family_name.as_str(),
        "given": d.given_name.as_str(),
        "birth_date": d.birth_date.to_string(),
        "sex": d.sex.code(),
        "registration": patient.registration.code(),
        "sharing_disabled": patient.sharing_disabled,
    })
}
