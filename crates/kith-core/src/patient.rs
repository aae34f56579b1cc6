//! Patients, their identifiers and their record entries.

use std::fmt;

use crate::text::{EmailAddress, InvalidText, MobileNumber, Name, PostalAddress};
use crate::time::Date;

/// An NHS number: ten digits whose last is a modulus-11 check digit. Stored as the ten
/// digits; printed in the customary 3-3-4 groups by [`NhsNumber::formatted`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct NhsNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    #[error("an NHS number has exactly 10 digits (spaces and hyphens are ignored)")]
    Format,
    #[error("this is not a valid NHS number: its check digit does not match (mistyped?)")]
    CheckDigit,
}

impl NhsNumber {
    pub fn parse(text: &str) -> Result<Self, NhsNumberError> {
        let digits: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NhsNumberError::Format);
        }
        let values: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
        if Self::check_digit(&values[..9]) != Some(values[9]) {
            return Err(NhsNumberError::CheckDigit);
        }
        Ok(Self(digits))
    }

    /// The modulus-11 check digit for the first nine digits, or `None` when the remainder
    /// makes 10 (such numbers are never issued).
    pub fn check_digit(first_nine: &[u32]) -> Option<u32> {
        let sum: u32 = first_nine.iter().zip((2..=10).rev()).map(|(digit, weight)| digit * weight).sum();
        match 11 - sum % 11 {
            11 => Some(0),
            10 => None,
            digit => Some(digit),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn formatted(&self) -> String {
        format!("{} {} {}", &self.0[..3], &self.0[3..6], &self.0[6..])
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A patient identifier issued by an organisation, e.g. a hospital number, under one of
/// its assigning authorities (`RXH-MRN:K1234567`).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct LocalIdentifier {
    authority: String,
    value: String,
}

impl LocalIdentifier {
    /// Parses `AUTHORITY:VALUE`. The authority is upper-cased; the value is kept as written.
    pub fn parse(text: &str) -> Result<Self, InvalidText> {
        let problem = |what: &str| InvalidText {
            field: "local identifier",
            problem: format!("{:?} {what}; write AUTHORITY:VALUE, e.g. RXH-MRN:K1234567", text.trim()),
        };
        let (authority, value) = text.trim().split_once(':').ok_or_else(|| problem("has no ':'"))?;
        let authority = Self::normalise_authority(authority).ok_or_else(|| {
            problem("has an authority that is not 1 to 64 characters without HL7 delimiters (|^~\\&)")
        })?;
        let value = value.trim();
        if value.is_empty() || value.len() > 64 || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(problem("has a value that is empty, too long or contains spaces"));
        }
        Ok(Self { authority, value: value.to_owned() })
    }

    /// An assigning authority as it is kept and compared: spaces inside are kept (a run of
    /// them becomes one), letters are upper-cased, so that `Good Health Hospital` and
    /// `GOOD  HEALTH HOSPITAL` are one authority. `None` when it is empty, longer than 64
    /// characters, or holds a control character, an HL7 delimiter or `:`.
    pub fn normalise_authority(text: &str) -> Option<String> {
        let authority = text.split_whitespace().collect::<Vec<_>>().join(" ").to_uppercase();
        let fits = (1..=64).contains(&authority.chars().count());
        (fits && !authority.chars().any(|c| c.is_control() || "|^~\\&:".contains(c))).then_some(authority)
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for LocalIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.authority, self.value)
    }
}

/// Administrative sex as recorded by the source system.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Sex {
    Female,
    Male,
    Other,
    Unknown,
}

impl Sex {
    pub const fn code(self) -> &'static str {
        match self {
            Sex::Female => "female",
            Sex::Male => "male",
            Sex::Other => "other",
            Sex::Unknown => "unknown",
        }
    }
    pub fn from_code(code: &str) -> Option<Self> {
        [Sex::Female, Sex::Male, Sex::Other, Sex::Unknown].into_iter().find(|sex| sex.code() == code)
    }
}

/// Who the patient is: what a professional sees when demographics are visible to them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Demographics {
    pub family_name: Name,
    pub given_name: Name,
    pub birth_date: Date,
    pub sex: Sex,
    pub email: Option<EmailAddress>,
    pub mobile: Option<MobileNumber>,
    /// Where letters (invitations by post) go.
    pub address: Option<PostalAddress>,
}

/// Whether the patient has an account on their record yet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RegistrationStatus {
    /// The record exists (usually from a hospital feed); the patient has not registered.
    Unregistered,
    /// An invitation has been sent.
    Invited,
    /// The patient has an active account on their record.
    Registered,
}

impl RegistrationStatus {
    pub const fn code(self) -> &'static str {
        match self {
            RegistrationStatus::Unregistered => "unregistered",
            RegistrationStatus::Invited => "invited",
            RegistrationStatus::Registered => "registered",
        }
    }
    pub fn from_code(code: &str) -> Option<Self> {
        [Self::Unregistered, Self::Invited, Self::Registered].into_iter().find(|s| s.code() == code)
    }
}

/// What kind of thing a record entry is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum EntryKind {
    Result,
    Document,
    Appointment,
    CarePlan,
    Note,
    Measurement,
    Diagnosis,
    Medication,
    Allergy,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown entry kind {0:?}: use result, document, appointment, care_plan, note, measurement, diagnosis, medication or allergy"
)]
pub struct UnknownEntryKind(pub String);

impl EntryKind {
    pub const ALL: [EntryKind; 9] = [
        EntryKind::Result,
        EntryKind::Document,
        EntryKind::Appointment,
        EntryKind::CarePlan,
        EntryKind::Note,
        EntryKind::Measurement,
        EntryKind::Diagnosis,
        EntryKind::Medication,
        EntryKind::Allergy,
    ];

    pub const fn code(self) -> &'static str {
        match self {
            EntryKind::Result => "result",
            EntryKind::Document => "document",
            EntryKind::Appointment => "appointment",
            EntryKind::CarePlan => "care_plan",
            EntryKind::Note => "note",
            EntryKind::Measurement => "measurement",
            EntryKind::Diagnosis => "diagnosis",
            EntryKind::Medication => "medication",
            EntryKind::Allergy => "allergy",
        }
    }

    /// The kind whose stored code is exactly `code` (see [`EntryKind::code`]); for reading
    /// back what Kith wrote. [`EntryKind::parse`] is for what people type.
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "result" => EntryKind::Result,
            "document" => EntryKind::Document,
            "appointment" => EntryKind::Appointment,
            "care_plan" => EntryKind::CarePlan,
            "note" => EntryKind::Note,
            "measurement" => EntryKind::Measurement,
            "diagnosis" => EntryKind::Diagnosis,
            "medication" => EntryKind::Medication,
            "allergy" => EntryKind::Allergy,
            _ => return None,
        })
    }

    pub fn parse(text: &str) -> Result<Self, UnknownEntryKind> {
        let normalised = text.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        Self::ALL
            .into_iter()
            .find(|kind| kind.code() == normalised)
            .ok_or_else(|| UnknownEntryKind(text.trim().to_owned()))
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_numbers_are_checked_and_normalised() {
        let number = NhsNumber::parse("943 476 5919").unwrap();
        assert_eq!(number.as_str(), "9434765919");
        assert_eq!(number.formatted(), "943 476 5919");
        assert_eq!(NhsNumber::parse("943-476-5919").unwrap(), number);
        assert_eq!(NhsNumber::parse("9434765918"), Err(NhsNumberError::CheckDigit));
        assert_eq!(NhsNumber::parse("943476591"), Err(NhsNumberError::Format));
        assert_eq!(NhsNumber::parse("94347659190"), Err(NhsNumberError::Format));
        assert_eq!(NhsNumber::parse("94347659x9"), Err(NhsNumberError::Format));
        // A remainder of 10 has no check digit, so no number starting 000000006 is valid
        // whatever its last digit.
        assert_eq!(NhsNumber::check_digit(&[0, 0, 0, 0, 0, 0, 0, 0, 6]), None);
        for last in 0..10 {
            assert!(NhsNumber::parse(&format!("000000006{last}")).is_err());
        }
    }

    #[test]
    fn local_identifiers() {
        let id = LocalIdentifier::parse("rxh-mrn:K1234567").unwrap();
        assert_eq!((id.authority(), id.value()), ("RXH-MRN", "K1234567"));
        assert_eq!(id.to_string(), "RXH-MRN:K1234567");
        assert!(LocalIdentifier::parse("K1234567").is_err());
        assert!(LocalIdentifier::parse("RXH:").is_err());
        // Authorities as hospitals write them: spaces kept (runs of them made one), any case.
        let spaced = LocalIdentifier::parse(" Good  Health hospital :H-77").unwrap();
        assert_eq!((spaced.authority(), spaced.value()), ("GOOD HEALTH HOSPITAL", "H-77"));
        assert!(LocalIdentifier::parse("R|X:1").is_err());
        assert!(LocalIdentifier::parse(" :1").is_err());
        assert!(LocalIdentifier::parse("RXH:K 1").is_err(), "a value has no spaces");
    }

    #[test]
    fn entry_kinds() {
        assert_eq!(EntryKind::parse("Care plan"), Ok(EntryKind::CarePlan));
        assert!(EntryKind::parse("x-ray").is_err());
        for kind in EntryKind::ALL {
            assert_eq!(EntryKind::from_code(kind.code()), Some(kind));
            assert_eq!(EntryKind::parse(kind.code()), Ok(kind));
        }
        // Stored codes are exact: no trimming, case folding or spelling variants.
        for loose in ["Care plan", "care-plan", " note", "NOTE", ""] {
            assert_eq!(EntryKind::from_code(loose), None, "{loose:?}");
        }
    }
}
