//! Which record a message is about, and what it may change there: the matching rule.
//!
//! A feed's message names a patient by identifiers (an NHS number, identifiers under the
//! sending organisation's assigning authorities) and describes them (names, birth date,
//! contact details). [`decide_match`] resolves that to *this record*, *a new record*, *no
//! record* (a message that may not create one) or a [`Conflict`] that a person must
//! resolve; [`decide_field`] says, field by field, what a matched message may change;
//! [`decide_merge`] says whether an ADT^A40 may merge two records. All three are pure: the
//! caller loads the facts (following merges to the record that survived), asks, and writes.
//!
//! The rule never guesses. Identifiers that disagree, a hospital number whose record has
//! another NHS number, a record of another organisation whose demographics do not agree, a
//! change of name or birth date on a record another organisation shares: each is a
//! conflict, held for the sending organisation's data-quality staff. A feed never changes a
//! record's NHS number (it may give one to a record that has none, when the demographics
//! agree), never changes a registered patient's contact details, and merges only records
//! that are its own organisation's alone.

use crate::ids::PatientId;
use crate::patient::NhsNumber;
use crate::text::Name;
use crate::time::Date;

/// What the matching rule knows of a record (the one that survived any merges).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RecordFacts {
    pub id: PatientId,
    pub nhs_number: Option<NhsNumber>,
    pub family_name: Name,
    pub birth_date: Date,
    /// Whether the record is in the sending organisation (actively linked to its Patient
    /// Record Team).
    pub in_sending_organisation: bool,
    /// Whether any other organisation holds part of it: a care link (active or not) to one
    /// of its teams, or an entry one of its teams wrote.
    pub shared_with_other_organisation: bool,
    /// The patient has registered: their contact details are theirs.
    pub registered: bool,
}

/// How a message identifier found a record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FoundBy {
    NhsNumber,
    LocalIdentifier,
}

/// One of the message's identifiers and the record it leads to.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Candidate {
    pub found_by: FoundBy,
    pub record: RecordFacts,
}

/// Who the message says the patient is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MessagePatient<'a> {
    pub nhs_number: Option<&'a NhsNumber>,
    pub family_name: Option<&'a Name>,
    pub birth_date: Option<Date>,
}

/// Whether a message that matches no record may create one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Creation {
    /// A registration (ADT A28/A31, and A01/A04/A05/A08 where the organisation allows).
    Allowed,
    /// Anything else: results, documents, appointments, visit events.
    NotAllowed,
}

/// The facts [`decide_match`] decides on.
#[derive(Clone, Copy, Debug)]
pub struct MatchFacts<'a> {
    pub message: MessagePatient<'a>,
    /// One row per identifier of the message that found a record.
    pub candidates: &'a [Candidate],
    pub creation: Creation,
}

/// What a message is about.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Match {
    /// This record. `join`: it is not yet in the sending organisation and is linked to it now
    /// (the demographics agree). `give_nhs_number`: the record has no NHS number and takes
    /// the message's (the demographics agree).
    Record { id: PatientId, join: bool, give_nhs_number: bool },
    /// No record: a new one is created.
    New,
    /// No record, and this message may not create one.
    Unknown,
    /// A person must decide.
    Conflict(Conflict),
}

/// Why the rule cannot apply a message by itself.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Conflict {
    /// The message's identifiers lead to different records.
    IdentifiersDisagree { records: Vec<PatientId> },
    /// A local identifier leads to a record whose NHS number is not the message's.
    NhsNumberDiffers { record: PatientId },
    /// The record is not in the sending organisation (or has no NHS number yet) and the
    /// message does not show it is the same person: its family name and birth date must
    /// both be given and agree with the record's.
    NotTheSamePerson { record: PatientId, fields: Vec<&'static str> },
    /// The record is the organisation's, but the message's family name and birth date both
    /// differ from it: another person's details under this record's identifiers.
    DemographicsDisagree { record: PatientId },
    /// The record is shared with another organisation, and the message changes its name or
    /// birth date.
    SharedRecordChange { record: PatientId, fields: Vec<&'static str> },
    /// An ADT^A40 whose records are not the sending organisation's alone.
    MergeAcrossOrganisations { survivor: PatientId, merged: PatientId },
    /// An ADT^A40 of two registered patients' records.
    MergeOfTwoRegistered { survivor: PatientId, merged: PatientId },
}

impl Conflict {
    /// A stable code, stored with a held message.
    pub fn code(&self) -> &'static str {
        match self {
            Conflict::IdentifiersDisagree { .. } => "identifiers_disagree",
            Conflict::NhsNumberDiffers { .. } => "nhs_number_differs",
            Conflict::NotTheSamePerson { .. } => "not_the_same_person",
            Conflict::DemographicsDisagree { .. } => "demographics_disagree",
            Conflict::SharedRecordChange { .. } => "shared_record_change",
            Conflict::MergeAcrossOrganisations { .. } => "merge_across_organisations",
            Conflict::MergeOfTwoRegistered { .. } => "merge_of_two_registered",
        }
    }

    /// The records a person chooses between.
    pub fn records(&self) -> Vec<PatientId> {
        match self {
            Conflict::IdentifiersDisagree { records } => records.clone(),
            Conflict::NhsNumberDiffers { record }
            | Conflict::NotTheSamePerson { record, .. }
            | Conflict::DemographicsDisagree { record }
            | Conflict::SharedRecordChange { record, .. } => vec![*record],
            Conflict::MergeAcrossOrganisations { survivor, merged }
            | Conflict::MergeOfTwoRegistered { survivor, merged } => vec![*survivor, *merged],
        }
    }

    /// What the sender is told (in the ACK): the conflict without Kith's record ids.
    pub fn summary(&self) -> &'static str {
        match self {
            Conflict::IdentifiersDisagree { .. } => "PID-3: the identifiers lead to different records",
            Conflict::NhsNumberDiffers { .. } => "PID-3: the local identifier's record has another NHS number",
            Conflict::NotTheSamePerson { .. } => {
                "PID-5, PID-7: the record is not yet this organisation's and the name and birth date do not show it is the same person"
            }
            Conflict::DemographicsDisagree { .. } => {
                "PID-5, PID-7: the family name and the birth date both differ from the record"
            }
            Conflict::SharedRecordChange { .. } => {
                "PID-5, PID-7: the record is shared with another organisation and the message changes its name or birth date"
            }
            Conflict::MergeAcrossOrganisations { .. } => "MRG-1: the records are not this organisation's alone",
            Conflict::MergeOfTwoRegistered { .. } => "MRG-1: both records belong to registered patients",
        }
    }

    /// Which ways of resolving it make sense: applying to a chosen record (the person
    /// confirms who it is), applying without the field that conflicts, or rejecting.
    pub fn resolutions(&self) -> &'static [ResolutionKind] {
        use ResolutionKind::*;
        match self {
            Conflict::IdentifiersDisagree { .. } | Conflict::NhsNumberDiffers { .. } => {
                &[ApplyToRecord, ApplyWithoutField, Reject]
            }
            Conflict::DemographicsDisagree { .. } => &[ApplyToRecord, ApplyWithoutField, Reject],
            // A shared record's name and birth date are not changed from a feed, confirmed or not.
            Conflict::SharedRecordChange { .. } => &[ApplyWithoutField, Reject],
            Conflict::NotTheSamePerson { .. } => &[ApplyToRecord, Reject],
            // A merge across organisations or of two accounts is done by hand, not by a feed.
            Conflict::MergeAcrossOrganisations { .. } | Conflict::MergeOfTwoRegistered { .. } => &[Reject],
        }
    }
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |records: &[PatientId]| records.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        match self {
            Conflict::IdentifiersDisagree { records } => {
                write!(f, "PID-3: the identifiers lead to different records ({})", list(records))
            }
            Conflict::NhsNumberDiffers { record } => {
                write!(f, "PID-3: the local identifier leads to record {record}, whose NHS number is not the message's")
            }
            Conflict::NotTheSamePerson { record, fields } => write!(
                f,
                "record {record} is not in this organisation and the message does not show it is the same person ({} must be given and agree)",
                fields.join(", ")
            ),
            Conflict::DemographicsDisagree { record } => {
                write!(f, "PID-5, PID-7: the family name and the birth date both differ from record {record}")
            }
            Conflict::SharedRecordChange { record, fields } => write!(
                f,
                "record {record} is shared with another organisation; the message changes {}",
                fields.join(", ")
            ),
            Conflict::MergeAcrossOrganisations { survivor, merged } => write!(
                f,
                "MRG-1: records {merged} and {survivor} are not this organisation's alone; they are merged by hand"
            ),
            Conflict::MergeOfTwoRegistered { survivor, merged } => write!(
                f,
                "MRG-1: records {merged} and {survivor} both belong to registered patients; they are merged by hand"
            ),
        }
    }
}

/// How a person resolves a held message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ResolutionKind {
    ApplyToRecord,
    ApplyWithoutField,
    Reject,
}

impl ResolutionKind {
    pub fn code(self) -> &'static str {
        match self {
            ResolutionKind::ApplyToRecord => "apply-to",
            ResolutionKind::ApplyWithoutField => "apply-without",
            ResolutionKind::Reject => "reject",
        }
    }
}

/// A family name as compared: letters only, case folded.
fn folded(name: &str) -> String {
    name.chars().filter(|c| c.is_alphabetic()).flat_map(char::to_lowercase).collect()
}

/// Whether a message's name is the record's, written another way (`OKAFOR`, `O'Brien` and
/// `OBrien`): then it is no change, and the record keeps its spelling.
pub fn same_name(record: &str, message: &str) -> bool {
    folded(record) == folded(message) && !folded(record).is_empty()
}

/// Family names agree when they are the same letters (ignoring case, spaces, hyphens and
/// apostrophes), or when one is one half of the other, a double-barrelled name (`Okafor`
/// and `Okafor-Smith`). A name of three or more parts agrees only whole, so that a long
/// made-up name cannot agree with every record named after one of its parts.
pub fn family_names_agree(a: &str, b: &str) -> bool {
    let (whole_a, whole_b) = (folded(a), folded(b));
    if whole_a.is_empty() || whole_b.is_empty() {
        return false;
    }
    if whole_a == whole_b {
        return true;
    }
    let halves = |name: &str| -> Vec<String> {
        let parts: Vec<String> = name.split([' ', '-']).map(folded).filter(|part| !part.is_empty()).collect();
        if parts.len() == 2 { parts } else { Vec::new() }
    };
    halves(a).contains(&whole_b) || halves(b).contains(&whole_a)
}

/// Which of family name and birth date are missing from the message or disagree with the
/// record.
fn unconfirmed(message: &MessagePatient<'_>, record: &RecordFacts) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if !message.family_name.is_some_and(|family| family_names_agree(family.as_str(), record.family_name.as_str())) {
        fields.push("family name (PID-5)");
    }
    if message.birth_date != Some(record.birth_date) {
        fields.push("birth date (PID-7)");
    }
    fields
}

/// The matching rule (see the module's documentation and ARCHITECTURE.md's table).
pub fn decide_match(facts: &MatchFacts<'_>) -> Match {
    let mut records: Vec<&RecordFacts> = Vec::new();
    for candidate in facts.candidates {
        if !records.iter().any(|known| known.id == candidate.record.id) {
            records.push(&candidate.record);
        }
    }
    let record = match records.as_slice() {
        [] => {
            return match facts.creation {
                Creation::Allowed => Match::New,
                Creation::NotAllowed => Match::Unknown,
            };
        }
        [one] => *one,
        several => {
            let mut ids: Vec<PatientId> = several.iter().map(|record| record.id).collect();
            ids.sort();
            return Match::Conflict(Conflict::IdentifiersDisagree { records: ids });
        }
    };
    let message = &facts.message;
    // An NHS number that found this record agrees with it (directly, or through a merge);
    // one that found nothing must not contradict the record's own.
    let nhs_number_found_it = facts.candidates.iter().any(|candidate| candidate.found_by == FoundBy::NhsNumber);
    let new_nhs_number = message.nhs_number.is_some() && !nhs_number_found_it;
    if new_nhs_number && record.nhs_number.is_some() {
        return Match::Conflict(Conflict::NhsNumberDiffers { record: record.id });
    }
    let give_nhs_number = new_nhs_number;
    let join = !record.in_sending_organisation;
    if join || give_nhs_number {
        let fields = unconfirmed(message, record);
        if !fields.is_empty() {
            return Match::Conflict(Conflict::NotTheSamePerson { record: record.id, fields });
        }
    } else {
        let family_differs =
            message.family_name.is_some_and(|family| !family_names_agree(family.as_str(), record.family_name.as_str()));
        let birth_date_differs = message.birth_date.is_some_and(|date| date != record.birth_date);
        if family_differs && birth_date_differs {
            return Match::Conflict(Conflict::DemographicsDisagree { record: record.id });
        }
    }
    Match::Record { id: record.id, join, give_nhs_number }
}

/// A demographic field a feed may change.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Field {
    FamilyName,
    GivenName,
    BirthDate,
    Sex,
    Email,
    Mobile,
    Address,
}

impl Field {
    /// The field's name with where it is in a PID segment, as notices and conflicts say it.
    pub fn describe(self) -> &'static str {
        match self {
            Field::FamilyName => "family name (PID-5)",
            Field::GivenName => "given name (PID-5)",
            Field::BirthDate => "birth date (PID-7)",
            Field::Sex => "sex (PID-8)",
            Field::Email => "email (PID-13)",
            Field::Mobile => "mobile (PID-13)",
            Field::Address => "address (PID-11)",
        }
    }

    fn is_contact_detail(self) -> bool {
        matches!(self, Field::Email | Field::Mobile | Field::Address)
    }

    fn is_identifying(self) -> bool {
        matches!(self, Field::FamilyName | Field::GivenName | Field::BirthDate)
    }
}

/// The record's value of a field, compared with the message's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Current {
    /// The record has no value.
    Empty,
    Same,
    Differs,
}

/// What [`decide_field`] decides on, for a field the message gives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FieldFacts {
    pub field: Field,
    pub current: Current,
    pub registered: bool,
    pub shared_with_other_organisation: bool,
    /// An email that another record already has (one email belongs to one record).
    pub taken_by_another_record: bool,
}

/// Why a field the message gives is left as it is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KeepReason {
    /// A registered patient's contact details are theirs to change.
    PatientsOwn,
    /// Another organisation shares the record: its contact details are left as they are
    /// (they carry invitations), its sex is only filled in where empty.
    Shared,
    /// Another record has this email.
    TakenByAnotherRecord,
}

impl std::fmt::Display for KeepReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeepReason::PatientsOwn => "the patient is registered and keeps their own contact details",
            KeepReason::Shared => "another organisation shares the record; its contact details stay as they are",
            KeepReason::TakenByAnotherRecord => "another record has it (one email belongs to one record)",
        })
    }
}

/// What becomes of one field a matched message gives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FieldDecision {
    /// Nothing to do: the record has this value.
    Unchanged,
    Apply,
    /// Left as it is; the message is applied and the sender and data-quality staff are told.
    Keep(KeepReason),
    /// The message waits for a person (a [`Conflict::SharedRecordChange`]).
    Hold,
}

/// What a matched message may change in one field of a record.
pub fn decide_field(facts: &FieldFacts) -> FieldDecision {
    if facts.current == Current::Same {
        return FieldDecision::Unchanged;
    }
    if facts.field == Field::Email && facts.taken_by_another_record {
        return FieldDecision::Keep(KeepReason::TakenByAnotherRecord);
    }
    if facts.field.is_contact_detail() && facts.registered {
        return FieldDecision::Keep(KeepReason::PatientsOwn);
    }
    if facts.shared_with_other_organisation {
        // Contact details carry invitations (and so the patient's account): on a record
        // another organisation holds, a feed neither changes nor fills them.
        if facts.field.is_contact_detail() {
            return FieldDecision::Keep(KeepReason::Shared);
        }
        if facts.current == Current::Differs {
            if facts.field.is_identifying() {
                return FieldDecision::Hold;
            }
            return FieldDecision::Keep(KeepReason::Shared);
        }
    }
    FieldDecision::Apply
}

/// The record MRG-1 names, as found without following merges.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MergedRecordFacts {
    pub id: PatientId,
    pub merged_into: Option<PatientId>,
    /// The record (or, merged, the record it went into) is in the sending organisation: a
    /// record the sender does not have is, to the sender, not found.
    pub known_to_sender: bool,
    /// In the sending organisation and no other (as [`RecordFacts`] says it).
    pub only_sending_organisations: bool,
    pub registered: bool,
}

/// The facts [`decide_merge`] decides on. The record to keep (PID-3) has been matched
/// already: `survivor` is that record.
#[derive(Clone, Debug)]
pub struct MergeFacts<'a> {
    pub survivor: &'a RecordFacts,
    /// Other records were merged into the survivor before (a merge moves local identifiers,
    /// so MRG-1's hospital number then names the survivor itself).
    pub survivor_took_in_records: bool,
    /// The distinct records MRG-1's identifiers lead to, without following merges.
    pub merged: &'a [MergedRecordFacts],
}

/// What becomes of an ADT^A40.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MergeDecision {
    Merge {
        survivor: PatientId,
        merged: PatientId,
    },
    /// The same merge was applied before: nothing to do.
    AlreadyDone,
    /// The message is wrong (AR), with the reason.
    Refuse(MergeRefusal),
    Conflict(Conflict),
}

/// Why an ADT^A40 is refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MergeRefusal {
    /// MRG-1 names no record.
    NotFound,
    /// MRG-1's identifiers name different records.
    IdentifiersDisagree,
    /// MRG-1 and PID-3 name the same record.
    SameRecord,
    /// The record of MRG-1 was merged into another record before.
    AlreadyMergedElsewhere,
}

impl std::fmt::Display for MergeRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MergeRefusal::NotFound => "MRG-1: the record to merge was not found",
            MergeRefusal::IdentifiersDisagree => "MRG-1: the identifiers lead to different records",
            MergeRefusal::SameRecord => "MRG-1: names the same record as PID-3; a record is not merged into itself",
            MergeRefusal::AlreadyMergedElsewhere => {
                "MRG-1: that record was already merged into another record; merge into that one"
            }
        })
    }
}

/// Whether an ADT^A40 merges the record of MRG-1 into the record of PID-3.
pub fn decide_merge(facts: &MergeFacts<'_>) -> MergeDecision {
    let survivor = facts.survivor;
    let known: Vec<MergedRecordFacts> = facts.merged.iter().filter(|record| record.known_to_sender).cloned().collect();
    let merged = match known.as_slice() {
        [] => return MergeDecision::Refuse(MergeRefusal::NotFound),
        [one] => one,
        several => {
            // A record already merged into the survivor and the survivor itself (which took
            // its identifiers) are the same merge seen twice.
            if several.iter().all(|record| record.id == survivor.id || record.merged_into == Some(survivor.id)) {
                return MergeDecision::AlreadyDone;
            }
            return MergeDecision::Refuse(MergeRefusal::IdentifiersDisagree);
        }
    };
    match merged.merged_into {
        Some(into) if into == survivor.id => return MergeDecision::AlreadyDone,
        Some(_) => return MergeDecision::Refuse(MergeRefusal::AlreadyMergedElsewhere),
        None => {}
    }
    if merged.id == survivor.id {
        // The survivor holds MRG-1's identifiers: a merge applied before (which moved them),
        // or a record merged into itself.
        if facts.survivor_took_in_records {
            return MergeDecision::AlreadyDone;
        }
        return MergeDecision::Refuse(MergeRefusal::SameRecord);
    }
    let survivor_only_ours = survivor.in_sending_organisation && !survivor.shared_with_other_organisation;
    if !survivor_only_ours || !merged.only_sending_organisations {
        return MergeDecision::Conflict(Conflict::MergeAcrossOrganisations {
            survivor: survivor.id,
            merged: merged.id,
        });
    }
    if survivor.registered && merged.registered {
        return MergeDecision::Conflict(Conflict::MergeOfTwoRegistered { survivor: survivor.id, merged: merged.id });
    }
    MergeDecision::Merge { survivor: survivor.id, merged: merged.id }
}

/// Why a birth date cannot be right.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum BirthDateProblem {
    #[error("the date of birth is in the future")]
    InTheFuture,
    #[error("the date of birth is before 1880")]
    TooEarly,
}

/// A birth date is possible when it is not after `today` and not before 1880.
pub fn check_birth_date(date: Date, today: Date) -> Result<(), BirthDateProblem> {
    if date > today {
        return Err(BirthDateProblem::InTheFuture);
    }
    if date.year() < 1880 {
        return Err(BirthDateProblem::TooEarly);
    }
    Ok(())
}
