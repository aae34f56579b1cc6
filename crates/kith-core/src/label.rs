//! The four privacy labels and sets of them.

use std::fmt;

/// Every record entry carries exactly one privacy label; a team sees an entry only when the
/// patient has consented to that label for the team (DESIGN.md §2, §3).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum PrivacyLabel {
    General,
    /// Includes reproductive health and HIV.
    SexualHealth,
    MentalHealth,
    SocialCare,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown privacy label {0:?}: use general, sexual_health, mental_health or social_care")]
pub struct UnknownLabel(pub String);

impl PrivacyLabel {
    pub const ALL: [PrivacyLabel; 4] =
        [PrivacyLabel::General, PrivacyLabel::SexualHealth, PrivacyLabel::MentalHealth, PrivacyLabel::SocialCare];

    /// The stable code used in storage, the CLI and FHIR `meta.security`.
    pub const fn code(self) -> &'static str {
        match self {
            PrivacyLabel::General => "general",
            PrivacyLabel::SexualHealth => "sexual_health",
            PrivacyLabel::MentalHealth => "mental_health",
            PrivacyLabel::SocialCare => "social_care",
        }
    }

    /// The label of a new version of an entry (a corrected result, a replaced document):
    /// the incoming label, except that an entry under a sensitive label keeps it. A
    /// correction never opens an entry's earlier versions to teams its label kept out.
    pub fn of_new_version(previous: Option<PrivacyLabel>, incoming: PrivacyLabel) -> PrivacyLabel {
        match previous {
            Some(previous) if previous != PrivacyLabel::General => previous,
            _ => incoming,
        }
    }

    /// Words a patient understands, for the consent walkthrough and the access log.
    pub const fn plain_words(self) -> &'static str {
        match self {
            PrivacyLabel::General => "general health",
            PrivacyLabel::SexualHealth => "sexual health (including reproductive health and HIV)",
            PrivacyLabel::MentalHealth => "mental health",
            PrivacyLabel::SocialCare => "social care",
        }
    }

    /// Accepts the code in any case, with `-` or space for `_`.
    pub fn parse(text: &str) -> Result<Self, UnknownLabel> {
        let normalised: String =
            text.trim().chars().map(|c| if c == '-' || c == ' ' { '_' } else { c.to_ascii_lowercase() }).collect();
        PrivacyLabel::ALL
            .into_iter()
            .find(|label| label.code() == normalised)
            .ok_or_else(|| UnknownLabel(text.trim().to_owned()))
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for PrivacyLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A set of privacy labels, e.g. the labels a team may see for one patient.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LabelSet(u8);

impl LabelSet {
    pub const EMPTY: LabelSet = LabelSet(0);
    pub const ALL: LabelSet = LabelSet(0b1111);

    pub fn from_labels(labels: impl IntoIterator<Item = PrivacyLabel>) -> Self {
        labels.into_iter().fold(Self::EMPTY, |set, label| set.with(label))
    }

    #[must_use]
    pub const fn with(self, label: PrivacyLabel) -> Self {
        Self(self.0 | label.bit())
    }

    pub const fn contains(self, label: PrivacyLabel) -> bool {
        self.0 & label.bit() != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// All four labels: the only set that may see entries with no label.
    pub const fn is_all(self) -> bool {
        self.0 == Self::ALL.0
    }

    pub fn iter(self) -> impl Iterator<Item = PrivacyLabel> {
        PrivacyLabel::ALL.into_iter().filter(move |label| self.contains(*label))
    }

    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The inverse of [`LabelSet::bits`]; bits above the four labels are refused.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        if bits & !Self::ALL.0 == 0 { Some(Self(bits)) } else { None }
    }

    /// Parses a comma-separated list such as `general,mental_health`; empty text is the
    /// empty set.
    pub fn parse_list(text: &str) -> Result<Self, UnknownLabel> {
        text.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(PrivacyLabel::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self::from_labels)
    }
}

/// Comma-separated codes, e.g. `general,mental_health`; the empty set prints as nothing.
impl fmt::Display for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, label) in self.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            f.write_str(label.code())?;
        }
        Ok(())
    }
}

impl fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LabelSet[{self}]")
    }
}

impl FromIterator<PrivacyLabel> for LabelSet {
    fn from_iter<I: IntoIterator<Item = PrivacyLabel>>(iter: I) -> Self {
        Self::from_labels(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_version_never_leaves_a_sensitive_label() {
        use PrivacyLabel::*;
        for (previous, incoming, expected) in [
            (None, SexualHealth, SexualHealth),
            (Some(General), General, General),
            (Some(General), MentalHealth, MentalHealth),
            (Some(SexualHealth), General, SexualHealth),
            (Some(SexualHealth), MentalHealth, SexualHealth),
        ] {
            assert_eq!(PrivacyLabel::of_new_version(previous, incoming), expected, "{previous:?} then {incoming:?}");
        }
    }

    #[test]
    fn parses_labels_leniently_and_refuses_unknown_ones() {
        assert_eq!(PrivacyLabel::parse("Mental-Health"), Ok(PrivacyLabel::MentalHealth));
        assert_eq!(PrivacyLabel::parse(" sexual health "), Ok(PrivacyLabel::SexualHealth));
        assert_eq!(PrivacyLabel::parse("genetic"), Err(UnknownLabel("genetic".into())));
        let set = LabelSet::parse_list("general, mental_health,").unwrap();
        assert_eq!(set.to_string(), "general,mental_health");
        assert_eq!(LabelSet::parse_list("").unwrap(), LabelSet::EMPTY);
        assert!(LabelSet::parse_list("general,hiv").is_err());
    }

    #[test]
    fn bits_round_trip_and_reject_garbage() {
        for bits in 0..16u8 {
            assert_eq!(LabelSet::from_bits(bits).unwrap().bits(), bits);
        }
        assert_eq!(LabelSet::from_bits(16), None);
        assert!(LabelSet::ALL.is_all());
        assert!(!LabelSet::ALL.is_empty());
        assert_eq!(LabelSet::ALL.iter().count(), 4);
    }
}
