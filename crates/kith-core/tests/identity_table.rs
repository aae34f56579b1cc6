//! The matching rule, row by row as ARCHITECTURE.md's table states it: which record a
//! message is about, what it may change there, and whether a merge may go ahead.

use kith_core::identity::{
    Candidate, Conflict, Creation, Current, Field, FieldDecision, FieldFacts, FoundBy, KeepReason, Match, MatchFacts,
    MergeDecision, MergeFacts, MergeRefusal, MergedRecordFacts, MessagePatient, RecordFacts, check_birth_date,
    decide_field, decide_match, decide_merge, family_names_agree,
};
use kith_core::patient::NhsNumber;
use kith_core::text::Name;
use kith_core::{Date, PatientId};
use uuid::Uuid;

const X: PatientId = PatientId::from_uuid(Uuid::from_u128(1));
const Y: PatientId = PatientId::from_uuid(Uuid::from_u128(2));

fn nhs(text: &str) -> NhsNumber {
    NhsNumber::parse(text).unwrap()
}

fn name(text: &str) -> Name {
    Name::parse("family name", text).unwrap()
}

fn date(text: &str) -> Date {
    Date::parse(text).unwrap()
}

/// Okafor, born 1971-09-14, NHS number 943 476 5919, in the sending organisation only.
fn record(id: PatientId) -> RecordFacts {
    RecordFacts {
        id,
        nhs_number: Some(nhs("9434765919")),
        family_name: name("Okafor"),
        birth_date: date("1971-09-14"),
        in_sending_organisation: true,
        shared_with_other_organisation: false,
        registered: false,
    }
}

fn found(by: FoundBy, record: RecordFacts) -> Candidate {
    Candidate { found_by: by, record }
}

struct Row {
    name: &'static str,
    nhs_number: Option<&'static str>,
    family: Option<&'static str>,
    birth_date: Option<&'static str>,
    candidates: Vec<Candidate>,
    creation: Creation,
    expected: Match,
}

fn row(name: &'static str, candidates: Vec<Candidate>, expected: Match) -> Row {
    Row {
        name,
        nhs_number: Some("9434765919"),
        family: Some("Okafor"),
        birth_date: Some("1971-09-14"),
        candidates,
        creation: Creation::Allowed,
        expected,
    }
}

#[test]
fn which_record_a_message_is_about() {
    let same = |id| Match::Record { id, join: false, give_nhs_number: false };
    let elsewhere =
        |id| RecordFacts { in_sending_organisation: false, shared_with_other_organisation: true, ..record(id) };
    let without_number = |id| RecordFacts { nhs_number: None, ..record(id) };
    let rows = vec![
        row("no identifier finds a record: a registration creates one", vec![], Match::New),
        Row {
            creation: Creation::NotAllowed,
            ..row("no identifier finds a record: a result, document or visit creates none", vec![], Match::Unknown)
        },
        row(
            "the NHS number and the local identifier find the same record",
            vec![found(FoundBy::NhsNumber, record(X)), found(FoundBy::LocalIdentifier, record(X))],
            same(X),
        ),
        row(
            "the identifiers lead to different records",
            vec![found(FoundBy::NhsNumber, record(Y)), found(FoundBy::LocalIdentifier, record(X))],
            Match::Conflict(Conflict::IdentifiersDisagree { records: vec![X, Y] }),
        ),
        Row {
            nhs_number: Some("4010232137"),
            ..row(
                "the hospital number finds a record whose NHS number is another",
                vec![found(FoundBy::LocalIdentifier, record(X))],
                Match::Conflict(Conflict::NhsNumberDiffers { record: X }),
            )
        },
        Row {
            nhs_number: Some("4010232137"),
            family: Some("Nobody"),
            birth_date: Some("2001-01-01"),
            ..row(
                "the hospital number finds a record; NHS number, name and birth date are someone else's",
                vec![found(FoundBy::LocalIdentifier, record(X))],
                Match::Conflict(Conflict::NhsNumberDiffers { record: X }),
            )
        },
        Row {
            nhs_number: None,
            ..row(
                "the hospital number alone finds the record",
                vec![found(FoundBy::LocalIdentifier, record(X))],
                same(X),
            )
        },
        row(
            "the NHS number of a record merged into X finds X (X has another number)",
            vec![found(FoundBy::NhsNumber, RecordFacts { nhs_number: Some(nhs("4010232137")), ..record(X) })],
            same(X),
        ),
        row(
            "another organisation's record, family name and birth date agree: it joins this organisation",
            vec![found(FoundBy::NhsNumber, elsewhere(X))],
            Match::Record { id: X, join: true, give_nhs_number: false },
        ),
        Row {
            family: Some("okafor-smith"),
            ..row(
                "another organisation's record, a double-barrelled family name agrees",
                vec![found(FoundBy::NhsNumber, elsewhere(X))],
                Match::Record { id: X, join: true, give_nhs_number: false },
            )
        },
        Row {
            family: None,
            birth_date: None,
            ..row(
                "another organisation's record, found by NHS number alone",
                vec![found(FoundBy::NhsNumber, elsewhere(X))],
                Match::Conflict(Conflict::NotTheSamePerson {
                    record: X,
                    fields: vec!["family name (PID-5)", "birth date (PID-7)"],
                }),
            )
        },
        Row {
            birth_date: Some("1971-09-15"),
            ..row(
                "another organisation's record, the birth date differs",
                vec![found(FoundBy::NhsNumber, elsewhere(X))],
                Match::Conflict(Conflict::NotTheSamePerson { record: X, fields: vec!["birth date (PID-7)"] }),
            )
        },
        Row {
            family: Some("Smith"),
            ..row(
                "another organisation's record, the family name differs",
                vec![found(FoundBy::NhsNumber, elsewhere(X))],
                Match::Conflict(Conflict::NotTheSamePerson { record: X, fields: vec!["family name (PID-5)"] }),
            )
        },
        row(
            "the organisation's record without an NHS number takes the message's when the demographics agree",
            vec![found(FoundBy::LocalIdentifier, without_number(X))],
            Match::Record { id: X, join: false, give_nhs_number: true },
        ),
        Row {
            birth_date: None,
            ..row(
                "the organisation's record without an NHS number, the message gives no birth date",
                vec![found(FoundBy::LocalIdentifier, without_number(X))],
                Match::Conflict(Conflict::NotTheSamePerson { record: X, fields: vec!["birth date (PID-7)"] }),
            )
        },
        Row {
            family: Some("Smith"),
            birth_date: Some("1980-01-01"),
            ..row(
                "the organisation's record, family name and birth date both differ",
                vec![found(FoundBy::NhsNumber, record(X))],
                Match::Conflict(Conflict::DemographicsDisagree { record: X }),
            )
        },
        Row {
            family: Some("Smith"),
            ..row(
                "the organisation's record, the family name changes (the birth date agrees)",
                vec![found(FoundBy::NhsNumber, record(X))],
                same(X),
            )
        },
        Row {
            birth_date: Some("1971-09-15"),
            ..row(
                "the organisation's record, the birth date is corrected (the family name agrees)",
                vec![found(FoundBy::NhsNumber, record(X))],
                same(X),
            )
        },
    ];
    for row in rows {
        let (nhs_number, family) = (row.nhs_number.map(nhs), row.family.map(name));
        let facts = MatchFacts {
            message: MessagePatient {
                nhs_number: nhs_number.as_ref(),
                family_name: family.as_ref(),
                birth_date: row.birth_date.map(date),
            },
            candidates: &row.candidates,
            creation: row.creation,
        };
        assert_eq!(decide_match(&facts), row.expected, "{}", row.name);
    }
}

#[test]
fn family_names_agree_ignoring_case_punctuation_and_a_second_part() {
    for (a, b, agree) in [
        ("Okafor", "OKAFOR", true),
        ("O'Brien", "OBrien", true),
        ("Okafor", "Okafor-Smith", true),
        ("Smith Okafor", "okafor", true),
        ("Smith Jones Taylor Okafor", "Okafor", false),
        ("Okafor", "Ade Okafor Bello", false),
        ("Oka", "Okafor", false),
        ("Okafor", "Smith", false),
        ("", "", false),
    ] {
        assert_eq!(family_names_agree(a, b), agree, "{a} / {b}");
        assert_eq!(family_names_agree(b, a), agree, "{b} / {a}");
    }
}

#[test]
fn a_name_written_another_way_is_the_same_name() {
    use kith_core::identity::same_name;
    assert!(same_name("Okafor", "OKAFOR"));
    assert!(same_name("O'Brien", "OBRIEN"));
    assert!(!same_name("Okafor", "Okafor-Smith"), "a new part is a change");
    assert!(!same_name("", ""));
}

#[test]
fn what_a_matched_message_may_change() {
    use Current::*;
    use Field::*;
    use FieldDecision::*;
    let facts = |field, current| FieldFacts {
        field,
        current,
        registered: false,
        shared_with_other_organisation: false,
        taken_by_another_record: false,
    };
    let registered = |field, current| FieldFacts { registered: true, ..facts(field, current) };
    let shared = |field, current| FieldFacts { shared_with_other_organisation: true, ..facts(field, current) };
    let rows: Vec<(&str, FieldFacts, FieldDecision)> = vec![
        ("the same value changes nothing", facts(FamilyName, Same), Unchanged),
        ("the organisation's own record: a new family name", facts(FamilyName, Differs), Apply),
        ("the organisation's own record: a corrected birth date", facts(BirthDate, Differs), Apply),
        ("the organisation's own record: a new email", facts(Email, Differs), Apply),
        ("the organisation's own record: a first mobile", facts(Mobile, Empty), Apply),
        ("the organisation's own record: a new address", facts(Address, Differs), Apply),
        ("a registered patient's email is theirs", registered(Email, Differs), Keep(KeepReason::PatientsOwn)),
        (
            "a registered patient's mobile is theirs, even when empty",
            registered(Mobile, Empty),
            Keep(KeepReason::PatientsOwn),
        ),
        ("a registered patient's address is theirs", registered(Address, Differs), Keep(KeepReason::PatientsOwn)),
        ("a registered patient's name still follows the hospital", registered(GivenName, Differs), Apply),
        (
            "an email another record has is not taken",
            FieldFacts { taken_by_another_record: true, ..facts(Email, Empty) },
            Keep(KeepReason::TakenByAnotherRecord),
        ),
        ("a shared record's family name is held for a person", shared(FamilyName, Differs), Hold),
        ("a shared record's given name is held for a person", shared(GivenName, Differs), Hold),
        ("a shared record's birth date is held for a person", shared(BirthDate, Differs), Hold),
        ("a shared record's email is not overwritten", shared(Email, Differs), Keep(KeepReason::Shared)),
        (
            "a shared record's empty email is not filled in (it would carry an invitation)",
            shared(Email, Empty),
            Keep(KeepReason::Shared),
        ),
        ("a shared record's empty mobile is not filled in", shared(Mobile, Empty), Keep(KeepReason::Shared)),
        ("a shared record's empty address is not filled in", shared(Address, Empty), Keep(KeepReason::Shared)),
        ("a shared record's sex is not overwritten", shared(Sex, Differs), Keep(KeepReason::Shared)),
        ("a shared record's unknown sex is filled in", shared(Sex, Empty), Apply),
    ];
    for (name, facts, expected) in rows {
        assert_eq!(decide_field(&facts), expected, "{name}");
    }
}

#[test]
fn whether_a_merge_goes_ahead() {
    let prior = |id, merged_into| MergedRecordFacts {
        id,
        merged_into,
        known_to_sender: true,
        only_sending_organisations: true,
        registered: false,
    };
    let z = PatientId::from_uuid(Uuid::from_u128(3));
    let survivor = record(X);
    let shared_survivor = RecordFacts { shared_with_other_organisation: true, ..record(X) };
    let registered_survivor = RecordFacts { registered: true, ..record(X) };
    let rows: Vec<(&str, &RecordFacts, Vec<MergedRecordFacts>, MergeDecision)> = vec![
        (
            "two of the organisation's records",
            &survivor,
            vec![prior(Y, None)],
            MergeDecision::Merge { survivor: X, merged: Y },
        ),
        ("MRG-1 finds nothing", &survivor, vec![], MergeDecision::Refuse(MergeRefusal::NotFound)),
        (
            "MRG-1 names the record of PID-3",
            &survivor,
            vec![prior(X, None)],
            MergeDecision::Refuse(MergeRefusal::SameRecord),
        ),
        ("the same merge again", &survivor, vec![prior(Y, Some(X))], MergeDecision::AlreadyDone),
        (
            "the same merge again, MRG-1's identifiers now on both records",
            &survivor,
            vec![prior(X, None), prior(Y, Some(X))],
            MergeDecision::AlreadyDone,
        ),
        (
            "MRG-1's record was merged into a third record",
            &survivor,
            vec![prior(Y, Some(z))],
            MergeDecision::Refuse(MergeRefusal::AlreadyMergedElsewhere),
        ),
        (
            "MRG-1's identifiers lead to two records",
            &survivor,
            vec![prior(Y, None), prior(z, None)],
            MergeDecision::Refuse(MergeRefusal::IdentifiersDisagree),
        ),
        (
            "MRG-1 names only a record the sender does not have: not found, as an unknown one",
            &survivor,
            vec![MergedRecordFacts { known_to_sender: false, only_sending_organisations: false, ..prior(Y, None) }],
            MergeDecision::Refuse(MergeRefusal::NotFound),
        ),
        (
            "MRG-1 names a record merged elsewhere that the sender does not have: not found",
            &survivor,
            vec![MergedRecordFacts { known_to_sender: false, ..prior(Y, Some(z)) }],
            MergeDecision::Refuse(MergeRefusal::NotFound),
        ),
        (
            "the record to keep is shared with another organisation",
            &shared_survivor,
            vec![prior(Y, None)],
            MergeDecision::Conflict(Conflict::MergeAcrossOrganisations { survivor: X, merged: Y }),
        ),
        (
            "the record to merge is another organisation's too",
            &survivor,
            vec![MergedRecordFacts { only_sending_organisations: false, ..prior(Y, None) }],
            MergeDecision::Conflict(Conflict::MergeAcrossOrganisations { survivor: X, merged: Y }),
        ),
        (
            "both records belong to registered patients",
            &registered_survivor,
            vec![MergedRecordFacts { registered: true, ..prior(Y, None) }],
            MergeDecision::Conflict(Conflict::MergeOfTwoRegistered { survivor: X, merged: Y }),
        ),
        (
            "one registered patient's record takes in an unregistered one",
            &registered_survivor,
            vec![prior(Y, None)],
            MergeDecision::Merge { survivor: X, merged: Y },
        ),
    ];
    for (name, survivor, merged, expected) in rows {
        assert_eq!(
            decide_merge(&MergeFacts { survivor, survivor_took_in_records: false, merged: &merged }),
            expected,
            "{name}"
        );
    }
}

#[test]
fn a_merge_seen_again_after_it_moved_the_hospital_number_changes_nothing() {
    let survivor = record(X);
    let same = [MergedRecordFacts {
        id: X,
        merged_into: None,
        known_to_sender: true,
        only_sending_organisations: true,
        registered: false,
    }];
    let facts = |took_in| MergeFacts { survivor: &survivor, survivor_took_in_records: took_in, merged: &same };
    assert_eq!(decide_merge(&facts(true)), MergeDecision::AlreadyDone);
    assert_eq!(decide_merge(&facts(false)), MergeDecision::Refuse(MergeRefusal::SameRecord));
}

#[test]
fn conflicts_say_how_they_can_be_resolved() {
    use kith_core::identity::ResolutionKind::*;
    let disagree = Conflict::IdentifiersDisagree { records: vec![X, Y] };
    assert_eq!(disagree.resolutions(), &[ApplyToRecord, ApplyWithoutField, Reject]);
    assert_eq!(disagree.records(), vec![X, Y]);
    assert_eq!(disagree.code(), "identifiers_disagree");
    assert!(!disagree.summary().contains(&X.to_string()), "the sender is not told Kith's record ids");
    assert!(disagree.to_string().contains(&X.to_string()), "the data-quality staff are");
    let person = Conflict::NotTheSamePerson { record: X, fields: vec!["birth date (PID-7)"] };
    assert_eq!(person.resolutions(), &[ApplyToRecord, Reject]);
    assert!(person.to_string().contains("birth date (PID-7) must be given and agree"), "{person}");
    let merge = Conflict::MergeAcrossOrganisations { survivor: X, merged: Y };
    assert_eq!(merge.resolutions(), &[Reject]);
}

#[test]
fn impossible_birth_dates() {
    let today = date("2026-12-04");
    assert_eq!(check_birth_date(date("2026-12-04"), today), Ok(()));
    assert_eq!(check_birth_date(date("1880-01-01"), today), Ok(()));
    assert_eq!(
        check_birth_date(date("2026-12-05"), today).unwrap_err().to_string(),
        "the date of birth is in the future"
    );
    assert_eq!(
        check_birth_date(date("1879-12-31"), today).unwrap_err().to_string(),
        "the date of birth is before 1880"
    );
}
