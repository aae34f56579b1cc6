//! Reading ADT messages into what Kith does with them: who
//! the patient is (PID), their details, and the teams to add and discharge (the `ZTM`
//! segment: ZTM-1 aliases to add, ZTM-2 aliases to discharge, `~`-separated).
//!
//! Pure: what needs the database (does the alias exist, is the patient known) is decided by
//! the caller. What can be decided from the message alone is decided here, with the field
//! that is wrong.

use kith_core::Date;
use kith_core::patient::{LocalIdentifier, NhsNumber, Sex};
use kith_core::text::{EmailAddress, MobileNumber, Name, PostalAddress, TeamAlias};

use crate::message::{Message, Segment};
use crate::parse::Location;

/// Why a message is rejected (AR): the reason for MSA-3, where, and the HL7 table 0357 code.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Rejection {
    pub text: String,
    pub location: Option<Box<Location>>,
    pub code: &'static str,
    pub code_text: &'static str,
}

impl Rejection {
    pub fn new(code: (&'static str, &'static str), location: Option<Location>, text: impl Into<String>) -> Self {
        Rejection { text: text.into(), location: location.map(Box::new), code: code.0, code_text: code.1 }
    }
}

pub const SEGMENT_SEQUENCE_ERROR: (&str, &str) = ("100", "Segment sequence error");
pub const REQUIRED_FIELD_MISSING: (&str, &str) = ("101", "Required field missing");
pub const DATA_TYPE_ERROR: (&str, &str) = ("102", "Data type error");
pub const TABLE_VALUE_NOT_FOUND: (&str, &str) = ("103", "Table value not found");
pub const UNSUPPORTED_MESSAGE_TYPE: (&str, &str) = ("200", "Unsupported message type");
pub const UNSUPPORTED_EVENT_CODE: (&str, &str) = ("201", "Unsupported event code");
pub const UNKNOWN_KEY_IDENTIFIER: (&str, &str) = ("204", "Unknown key identifier");
pub const DUPLICATE_KEY_IDENTIFIER: (&str, &str) = ("205", "Duplicate key identifier");
pub const APPLICATION_INTERNAL_ERROR: (&str, &str) = ("207", "Application internal error");

/// How the message identifies the patient.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct PatientIdentity {
    /// PID-3 with assigning authority `NHS` and type `NH`, modulus-11 checked.
    pub nhs_number: Option<NhsNumber>,
    /// PID-3 under one of the organisation's assigning authorities.
    pub local_identifiers: Vec<LocalIdentifier>,
}

/// The patient's details as the message gives them; `None` where the message is silent.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct PatientDetails {
    pub family_name: Option<Name>,
    pub given_name: Option<Name>,
    pub birth_date: Option<Date>,
    pub sex: Option<Sex>,
    pub mobile: Option<MobileNumber>,
    pub email: Option<EmailAddress>,
    /// PID-11 (the first repetition): street, other designation, city, county, postcode.
    pub address: Option<PostalAddress>,
}

/// The teams to add and to discharge, each with where the alias was.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct TeamChanges {
    pub add: Vec<(TeamAlias, Location)>,
    pub discharge: Vec<(TeamAlias, Location)>,
}

/// An ADT message as Kith reads it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AdtMessage {
    /// The PID segment's position in the message, for locating problems found later.
    pub pid_segment: usize,
    pub identity: PatientIdentity,
    pub details: PatientDetails,
    pub teams: TeamChanges,
}

fn position<'m>(message: &'m Message, id: &str) -> Option<(usize, &'m Segment)> {
    message
        .segments
        .iter()
        .enumerate()
        .find(|(_, segment)| segment.id == id)
        .map(|(index, segment)| (index + 1, segment))
}

/// Reads who the patient is from PID-3: the NHS number (authority `NHS`, type `NH`,
/// modulus-11 checked), identifiers under the organisation's assigning authorities, and an
/// email sent as an identifier (authority `EMAIL`). Returns the PID segment's position too.
pub fn read_patient_identity(
    message: &Message,
    is_local_authority: &dyn Fn(&str) -> bool,
) -> Result<(usize, PatientIdentity, Option<EmailAddress>), Rejection> {
    read_identifier_list(message, "PID", 3, is_local_authority)
}

/// Reads a list of patient identifiers (CX) from `segment_id`-`field`, as PID-3 is read.
pub fn read_identifier_list(
    message: &Message,
    segment_id: &str,
    field_number: usize,
    is_local_authority: &dyn Fn(&str) -> bool,
) -> Result<(usize, PatientIdentity, Option<EmailAddress>), Rejection> {
    let Some((index, segment)) = position(message, segment_id) else {
        return Err(Rejection::new(SEGMENT_SEQUENCE_ERROR, None, format!("the message has no {segment_id} segment")));
    };
    let name = format!("{segment_id}-{field_number}");
    let mut identity = PatientIdentity::default();
    let mut email = None;
    for (r, cx) in segment.repetitions(field_number).iter().enumerate() {
        let (value, authority, kind) = (cx.component(1).trim(), cx.component(4).trim(), cx.component(5).trim());
        let location = Location {
            repetition: Some(r + 1),
            component: Some(1),
            ..Location::field(index, segment_id, field_number)
        };
        if value.is_empty() {
            continue;
        }
        if authority.eq_ignore_ascii_case("NHS") && kind.eq_ignore_ascii_case("NH") {
            let number = NhsNumber::parse(value)
                .map_err(|error| Rejection::new(DATA_TYPE_ERROR, Some(location.clone()), format!("{name}: {error}")))?;
            if identity.nhs_number.as_ref().is_some_and(|known| *known != number) {
                return Err(Rejection::new(
                    DATA_TYPE_ERROR,
                    Some(location),
                    format!("{name}: two different NHS numbers"),
                ));
            }
            identity.nhs_number = Some(number);
        } else if authority.eq_ignore_ascii_case("EMAIL") {
            email = Some(
                EmailAddress::parse(value)
                    .map_err(|error| Rejection::new(DATA_TYPE_ERROR, Some(location), format!("{name}: {error}")))?,
            );
        } else if !authority.is_empty() && is_local_authority(authority) {
            let identifier = LocalIdentifier::parse(&format!("{authority}:{value}"))
                .map_err(|error| Rejection::new(DATA_TYPE_ERROR, Some(location), format!("{name}: {error}")))?;
            if !identity.local_identifiers.contains(&identifier) {
                identity.local_identifiers.push(identifier);
            }
        }
    }
    if identity.nhs_number.is_none() && identity.local_identifiers.is_empty() {
        return Err(Rejection::new(
            REQUIRED_FIELD_MISSING,
            Some(Location::field(index, segment_id, field_number)),
            format!(
                "{name}: no NHS number (assigning authority NHS, type NH) and no identifier under one of the organisation's assigning authorities"
            ),
        ));
    }
    Ok((index, identity, email))
}

/// The family name (PID-5.1) and birth date (PID-7) of the first PID segment, read
/// leniently: a value that does not parse is `None`. What the matching rule compares when a
/// result, document or appointment names a record.
pub fn read_pid_names_and_birth_date(message: &Message) -> (Option<Name>, Option<Date>) {
    let Some((_, pid)) = position(message, "PID") else { return (None, None) };
    let family = Name::parse("family name", pid.component(5, 1).trim()).ok();
    (family, hl7_date(pid.value(7).trim()))
}

/// An ADT^A40: the record named by MRG-1 merges into the one named by PID-3.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MergeMessage {
    pub survivor: PatientIdentity,
    pub pid_segment: usize,
    /// The record that goes.
    pub merged: PatientIdentity,
    pub mrg_segment: usize,
}

/// Reads an ADT^A40 (merge patient: the record of MRG-1 goes into the record of PID-3).
pub fn read_merge(message: &Message, is_local_authority: &dyn Fn(&str) -> bool) -> Result<MergeMessage, Rejection> {
    let (pid_segment, survivor, _) = read_patient_identity(message, is_local_authority)?;
    let (mrg_segment, merged, _) = read_identifier_list(message, "MRG", 1, is_local_authority)?;
    Ok(MergeMessage { survivor, pid_segment, merged, mrg_segment })
}

/// Reads an ADT message. `is_local_authority` says which PID-3 assigning authorities are the
/// organisation's; identifiers under other authorities are ignored, as the modelled system
/// does.
pub fn read_adt(message: &Message, is_local_authority: &dyn Fn(&str) -> bool) -> Result<AdtMessage, Rejection> {
    let (pid_index, identity, mut email) = read_patient_identity(message, is_local_authority)?;
    let pid = &message.segments[pid_index - 1];
    let at = |field: usize| Some(Location::field(pid_index, "PID", field));

    let name = |component: usize, field_name: &'static str| -> Result<Option<Name>, Rejection> {
        let text = pid.component(5, component).trim();
        if text.is_empty() {
            return Ok(None);
        }
        Name::parse(field_name, text)
            .map(Some)
            .map_err(|error| Rejection::new(DATA_TYPE_ERROR, at(5), format!("PID-5: {error}")))
    };
    let birth_date = match pid.value(7).trim() {
        "" => None,
        text => Some(hl7_date(text).ok_or_else(|| {
            Rejection::new(DATA_TYPE_ERROR, at(7), "PID-7: the date of birth is not a date (YYYYMMDD)")
        })?),
    };
    let sex = match pid.value(8).trim().to_ascii_uppercase().as_str() {
        "" => None,
        "F" => Some(Sex::Female),
        "M" => Some(Sex::Male),
        "O" | "A" => Some(Sex::Other),
        "U" | "N" => Some(Sex::Unknown),
        _ => return Err(Rejection::new(TABLE_VALUE_NOT_FOUND, at(8), "PID-8: sex must be F, M, O, A, U or N")),
    };
    let mut mobile = None;
    for xtn in pid.repetitions(13) {
        let (use_code, equipment) = (xtn.component(2).trim(), xtn.component(3).trim());
        if use_code.eq_ignore_ascii_case("NET") || equipment.eq_ignore_ascii_case("Internet") {
            let address = xtn.component(4).trim();
            if !address.is_empty() && email.is_none() {
                email = Some(
                    EmailAddress::parse(address)
                        .map_err(|error| Rejection::new(DATA_TYPE_ERROR, at(13), format!("PID-13: {error}")))?,
                );
            }
        } else if equipment.eq_ignore_ascii_case("CP") && mobile.is_none() {
            let number = [xtn.component(1), xtn.component(12)].into_iter().map(str::trim).find(|n| !n.is_empty());
            if let Some(number) = number {
                mobile = Some(
                    MobileNumber::parse(number)
                        .map_err(|error| Rejection::new(DATA_TYPE_ERROR, at(13), format!("PID-13: {error}")))?,
                );
            }
        }
    }
    // PID-11 (XAD): street (1), other designation (2), city (3), state or county (4) and
    // postal code (5) become the lines of the address, in that order.
    let address = match pid.repetitions(11).first() {
        Some(xad) if (1..=5).any(|c| !xad.component(c).trim().is_empty()) => Some(
            PostalAddress::from_lines((1..=5).map(|c| xad.component(c)))
                .map_err(|error| Rejection::new(DATA_TYPE_ERROR, at(11), format!("PID-11: {error}")))?,
        ),
        _ => None,
    };
    let details = PatientDetails {
        family_name: name(1, "family name")?,
        given_name: name(2, "given name")?,
        birth_date,
        sex,
        mobile,
        email,
        address,
    };
    Ok(AdtMessage { pid_segment: pid_index, identity, details, teams: read_ztm(message)? })
}

/// ZTM-1 (add) and ZTM-2 (discharge); the same team in both is refused.
fn read_ztm(message: &Message) -> Result<TeamChanges, Rejection> {
    let mut changes = TeamChanges::default();
    let Some((index, ztm)) = position(message, "ZTM") else { return Ok(changes) };
    for (field, list) in [(1, &mut changes.add), (2, &mut changes.discharge)] {
        for (r, repetition) in ztm.repetitions(field).iter().enumerate() {
            let text = repetition.component(1).trim();
            if text.is_empty() {
                continue;
            }
            let location = Location { repetition: Some(r + 1), ..Location::field(index, "ZTM", field) };
            let alias = TeamAlias::parse(text).map_err(|_| {
                Rejection::new(
                    TABLE_VALUE_NOT_FOUND,
                    Some(location.clone()),
                    format!("ZTM-{field}: {text:?} is not a team alias"),
                )
            })?;
            if !list.iter().any(|(known, _)| *known == alias) {
                list.push((alias, location));
            }
        }
    }
    if let Some((alias, location)) =
        changes.discharge.iter().find(|(alias, _)| changes.add.iter().any(|(added, _)| added == alias))
    {
        return Err(Rejection::new(
            TABLE_VALUE_NOT_FOUND,
            Some(location.clone()),
            format!("ZTM: team {alias} is in both ZTM-1 (add) and ZTM-2 (discharge)"),
        ));
    }
    Ok(changes)
}

/// The date part of an HL7 TS/DT value (`YYYYMMDD`, optionally followed by a time).
pub fn hl7_date(text: &str) -> Option<Date> {
    let digits = text.get(..8)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Date::parse(&format!("{}-{}-{}", &digits[..4], &digits[4..6], &digits[6..8])).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn adt(body: &str) -> Result<AdtMessage, Rejection> {
        let text = format!("MSH|^~\\&|PAS|RXH|KITH|KITH|20261125||ADT^A28|1|P|2.4\r{body}");
        let message = parse(text.as_bytes()).message.unwrap();
        read_adt(&message, &|authority| authority == "RXH-MRN")
    }

    #[test]
    fn reads_identity_details_and_teams() {
        let read = adt(
            "PID|1||9434765919^^^NHS^NH~K123^^^RXH-MRN^MR~X9^^^OTHER^MR~ngozi@example.org^^^EMAIL^EMAIL||Okafor^Ngozi||19710914|F|||||07700 900123^PRN^CP\rZTM|mh~prt|gum\r",
        )
        .unwrap();
        assert_eq!(read.identity.nhs_number.unwrap().as_str(), "9434765919");
        assert_eq!(
            read.identity.local_identifiers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["RXH-MRN:K123"]
        );
        assert_eq!(read.details.family_name.unwrap().as_str(), "Okafor");
        assert_eq!(read.details.birth_date.unwrap().to_string(), "1971-09-14");
        assert_eq!(read.details.sex, Some(Sex::Female));
        assert_eq!(read.details.mobile.unwrap().as_str(), "+447700900123");
        assert_eq!(read.details.email.unwrap().as_str(), "ngozi@example.org");
        assert_eq!(read.teams.add.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["mh", "prt"]);
        assert_eq!(read.teams.discharge[0].1.to_string(), "ZTM[3]-2(1)");
    }

    #[test]
    fn refusals_name_the_field() {
        let refused = |body: &str| adt(body).unwrap_err();
        let bad_nhs = refused("PID|1||9434765918^^^NHS^NH||A^B||19710914\r");
        assert_eq!((bad_nhs.code, bad_nhs.location.unwrap().to_string()), ("102", "PID[2]-3(1).1".to_owned()));
        assert!(bad_nhs.text.contains("check digit"));
        assert_eq!(refused("PID|1||X^^^OTHER^MR||A^B\r").code, "101");
        assert_eq!(
            refused("PID|1||9434765919^^^NHS^NH||A^B||1971-09-14\r").text,
            "PID-7: the date of birth is not a date (YYYYMMDD)"
        );
        assert_eq!(refused("PID|1||9434765919^^^NHS^NH||A^B||19710914|Q\r").code, "103");
        let both = refused("PID|1||9434765919^^^NHS^NH||A^B\rZTM|mh~gum|gum\r");
        assert_eq!(both.text, "ZTM: team gum is in both ZTM-1 (add) and ZTM-2 (discharge)");
        assert_eq!(refused("EVN|A28\r").text, "the message has no PID segment");
    }

    #[test]
    fn dates() {
        assert_eq!(hl7_date("19710914").unwrap().to_string(), "1971-09-14");
        assert_eq!(hl7_date("197109141230").unwrap().to_string(), "1971-09-14");
        assert_eq!(hl7_date("19710231"), None);
        assert_eq!(hl7_date("1971"), None);
    }
}
