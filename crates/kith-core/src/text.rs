//! Parsed text values: each is checked once, where it enters Kith, and is valid from then on.

use std::fmt;

/// Why a piece of text was refused. The message names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidText {
    pub field: &'static str,
    pub problem: String,
}

impl InvalidText {
    fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self { field, problem: problem.into() }
    }
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// Free text with its whitespace trimmed, at least one character and at most `max`
/// characters, with no control characters other than newlines and tabs when `multiline`.
fn bounded_text(field: &'static str, text: &str, max: usize, multiline: bool) -> Result<String, InvalidText> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(InvalidText::new(field, "must not be empty"));
    }
    // A string has no more characters than bytes: only a long one needs counting.
    if trimmed.len() > max && trimmed.chars().count() > max {
        return Err(InvalidText::new(field, format!("must be at most {max} characters")));
    }
    let allowed = |c: char| !c.is_control() || (multiline && (c == '\n' || c == '\t' || c == '\r'));
    if !trimmed.chars().all(allowed) {
        return Err(InvalidText::new(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

text_type!(
    /// An organisation's ODS-style code, e.g. `RXH`: 2–16 letters and digits, upper case.
    OrganisationCode
);

impl OrganisationCode {
    pub fn parse(text: &str) -> Result<Self, InvalidText> {
        let code = text.trim().to_ascii_uppercase();
        if !(2..=16).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(InvalidText::new(
                "organisation code",
                format!("{:?} must be 2 to 16 letters or digits, e.g. RXH", text.trim()),
            ));
        }
        Ok(Self(code))
    }
}

text_type!(
    /// A team's alias, unique within its organisation and used by HL7 `ZTM`: 1–32 lower-case
    /// letters, digits, `-` or `_`, starting with a letter.
    TeamAlias
);

impl TeamAlias {
    /// The alias of every organisation's Patient Record Team.
    pub fn patient_record_team() -> Self {
        Self("prt".to_owned())
    }

    pub fn parse(text: &str) -> Result<Self, InvalidText> {
        let alias = text.trim().to_ascii_lowercase();
        let valid = (1..=32).contains(&alias.len())
            && alias.starts_with(|c: char| c.is_ascii_lowercase())
            && alias.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(InvalidText::new(
                "team alias",
                format!(
                    "{:?} must be 1 to 32 letters, digits, '-' or '_', starting with a letter, e.g. cardiology",
                    text.trim()
                ),
            ));
        }
        Ok(Self(alias))
    }
}

text_type!(
    /// A name as people write it: an organisation's, a team's, or a person's.
    Name
);

impl Name {
    pub fn parse(field: &'static str, text: &str) -> Result<Self, InvalidText> {
        bounded_text(field, text, 200, false).map(Self)
    }
}

text_type!(
    /// An email address, normalised to lower case (one login per address, case-insensitive).
    EmailAddress
);

impl EmailAddress {
    pub fn parse(text: &str) -> Result<Self, InvalidText> {
        let email = text.trim().to_lowercase();
        let problem =
            || InvalidText::new("email", format!("{:?} is not an email address such as name@example.org", text.trim()));
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(problem());
        }
        let (local, domain) = email.rsplit_once('@').ok_or_else(problem)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain.split('.').all(|part| !part.is_empty() && !part.starts_with('-') && !part.ends_with('-'));
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(problem());
        }
        Ok(Self(email))
    }
}

text_type!(
    /// A mobile phone number, normalised to `+` and digits (UK numbers to +44).
    MobileNumber
);

impl MobileNumber {
    pub fn parse(text: &str) -> Result<Self, InvalidText> {
        let compact: String = text.trim().chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')')).collect();
        let digits = compact.strip_prefix('+').unwrap_or(&compact);
        let problem =
            || InvalidText::new("mobile", format!("{:?} is not a phone number such as +447700900123", text.trim()));
        if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(problem());
        }
        let normalised = if compact.starts_with('+') {
            compact
        } else if let Some(national) = digits.strip_prefix('0') {
            format!("+44{national}")
        } else {
            format!("+{digits}")
        };
        Ok(Self(normalised))
    }
}

/// A postal address: one to six lines (street, town, county, postcode…), each at most 100
/// characters, as printed on a letter. Stored as its lines joined by newlines.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct PostalAddress(Vec<String>);

impl PostalAddress {
    /// Reads lines, dropping empty ones; commas are not split (a line may hold one).
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Self, InvalidText> {
        let mut kept = Vec::new();
        for line in lines {
            if line.trim().is_empty() {
                continue;
            }
            kept.push(bounded_text("address", line, 100, false)?);
        }
        if kept.is_empty() {
            return Err(InvalidText::new("address", "must have at least one line"));
        }
        if kept.len() > 6 {
            return Err(InvalidText::new("address", "must have at most six lines"));
        }
        Ok(Self(kept))
    }

    /// Reads the stored form (lines joined by newlines).
    pub fn parse(stored: &str) -> Result<Self, InvalidText> {
        Self::from_lines(stored.split('\n'))
    }

    pub fn lines(&self) -> &[String] {
        &self.0
    }

    /// The stored form: the lines joined by newlines.
    pub fn joined(&self) -> String {
        self.0.join("\n")
    }
}

impl fmt::Display for PostalAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

text_type!(
    /// Why someone did something that needs a reason: breaking the glass, overriding a
    /// rule, changing consent on a patient's behalf. Up to 1,000 characters.
    Reason
);

/// The fewest characters a reason may have.
pub const MIN_REASON_CHARS: usize = 10;

/// Words that say nothing about why: a reason made of these alone is a placeholder
/// ("test", "emergency access", "n/a", "break glass", "as above").
const FILLER_WORDS: &[&str] = &[
    "a",
    "above",
    "access",
    "as",
    "asdf",
    "break",
    "breaking",
    "by",
    "care",
    "clinical",
    "dolor",
    "emergency",
    "for",
    "glass",
    "ipsum",
    "lorem",
    "n",
    "na",
    "need",
    "needed",
    "no",
    "none",
    "nothing",
    "of",
    "ok",
    "per",
    "placeholder",
    "qwerty",
    "reason",
    "reasons",
    "required",
    "see",
    "tbc",
    "tbd",
    "test",
    "testing",
    "the",
    "to",
    "todo",
    "urgent",
    "x",
    "xx",
    "xxx",
    "xxxx",
    "yes",
];

impl Reason {
    /// A reason a person typed: a real sentence, so that whoever reviews it later learns why.
    /// Trimmed, at most 1,000 characters, at least [`MIN_REASON_CHARS`]; at least two words;
    /// at least five different letters (no "aaaaaaaaaa"); and not made only of words that
    /// say nothing ([`FILLER_WORDS`]: "test test", "emergency access", "n/a n/a").
    pub fn parse(text: &str) -> Result<Self, InvalidText> {
        let text = bounded_text("reason", text, 1000, true)?;
        let refuse = |problem: &str| Err(InvalidText::new("reason", problem));
        if text.chars().count() < MIN_REASON_CHARS {
            return refuse("must be at least 10 characters: say why, in a sentence");
        }
        let lowered = text.to_lowercase();
        let words: Vec<&str> = lowered.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()).collect();
        if words.len() < 2 {
            return refuse("must be a sentence of at least two words saying why");
        }
        let mut letters: Vec<char> = lowered.chars().filter(|c| c.is_alphabetic()).collect();
        letters.sort_unstable();
        letters.dedup();
        if letters.len() < 5 {
            return refuse("must be a real sentence saying why, not a placeholder");
        }
        if words.iter().all(|word| FILLER_WORDS.contains(word)) {
            return refuse("must say why, not only that it is needed (e.g. \"unconscious on arrival in A&E\")");
        }
        Ok(Self(text))
    }

    /// A reason read back from storage: stored reasons were checked when written, under the
    /// rules of their day, and are shown as they are.
    pub fn from_stored(text: &str) -> Result<Self, InvalidText> {
        bounded_text("reason", text, 1000, true).map(Self)
    }
}

text_type!(
    /// A short title, e.g. of a record entry.
    Title
);

impl Title {
    pub fn parse(text: &str) -> Result<Self, InvalidText> {
        bounded_text("title", text, 300, false).map(Self)
    }
}

/// A secret (a password, a token) that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: String) -> Self {
        Self(secret)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organisation_codes_and_aliases() {
        assert_eq!(OrganisationCode::parse(" rxh ").unwrap().as_str(), "RXH");
        assert!(OrganisationCode::parse("R").is_err());
        assert!(OrganisationCode::parse("RX H").is_err());
        assert_eq!(TeamAlias::parse("Cardiology").unwrap().as_str(), "cardiology");
        assert!(TeamAlias::parse("1team").is_err());
        assert!(TeamAlias::parse("a b").is_err());
        assert!(TeamAlias::parse("").is_err());
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(EmailAddress::parse(" Ada@Example.ORG ").unwrap().as_str(), "ada@example.org");
        for bad in ["ada", "ada@", "@example.org", "ada@example", "a da@example.org", "ada@.org", "ada@example..org"] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn mobiles_are_normalised() {
        assert_eq!(MobileNumber::parse("07700 900123").unwrap().as_str(), "+447700900123");
        assert_eq!(MobileNumber::parse("+44 7700-900123").unwrap().as_str(), "+447700900123");
        assert!(MobileNumber::parse("call me").is_err());
        let address = PostalAddress::from_lines(["1 High Street", " ", "Riverside", "RV1 2AB"]).unwrap();
        assert_eq!(address.lines(), ["1 High Street", "Riverside", "RV1 2AB"]);
        assert_eq!(PostalAddress::parse(&address.joined()).unwrap(), address);
        assert!(PostalAddress::from_lines(["", " "]).is_err());
        assert!(PostalAddress::from_lines(["a"; 7]).is_err());
        assert!(PostalAddress::from_lines(["line\u{7}"]).is_err());
    }

    #[test]
    fn a_reason_is_a_real_sentence() {
        for (text, accepted) in [
            ("Unconscious in the emergency department", true),
            ("unconscious in A&E", true),
            ("Patient asked by phone", true),
            ("Collapsed at home", true),
            ("Safeguarding concern raised", true),
            ("x", false),
            ("short one", false),
            ("safeguarding", false),
            ("aaaaaaaaaaaaaa bbbbbbb", false),
            ("1234567890 1234", false),
            ("test test test", false),
            ("emergency access", false),
            ("Break the glass", false),
            ("n/a n/a n/a n/a", false),
            ("reason: urgent!!", false),
            ("lorem ipsum dolor", false),
            ("..........", false),
        ] {
            assert_eq!(Reason::parse(text).is_ok(), accepted, "{text:?}");
        }
        let refused = Reason::parse("test").unwrap_err().to_string();
        assert!(refused.starts_with("reason: must be at least 10 characters"), "{refused}");
    }

    #[test]
    fn free_text_is_bounded() {
        assert!(Reason::parse("   ").is_err());
        assert!(Reason::parse(&"x".repeat(1001)).is_err());
        assert_eq!(Reason::parse(" unconscious in A&E\n").unwrap().as_str(), "unconscious in A&E");
        assert_eq!(Reason::from_stored("x").unwrap().as_str(), "x");
        assert!(Name::parse("name", "Ada\u{0}").is_err());
        // The bound is in characters, not bytes.
        assert!(Title::parse(&"é".repeat(300)).is_ok());
        assert!(Title::parse(&"é".repeat(301)).is_err());
        assert!(Title::parse(&"x".repeat(300)).is_ok());
        assert!(Title::parse(&"x".repeat(301)).is_err());
        assert!(Title::parse("next\u{85}line").is_err());
        assert_eq!(format!("{:?}", Secret::new("hunter2".into())), "Secret(***)");
    }
}
