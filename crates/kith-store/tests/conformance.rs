//! One conformance suite for every storage backend: each test runs on SQLite and, when
//! `KITH_TEST_POSTGRES_URL` is set (always in CI), on a fresh PostgreSQL database, as two
//! tests (`name::sqlite`, `name::postgres`) so that a failure names its engine.

use std::time::Duration;

use kith_core::access::{BreakGlassFacts, CareLinkFacts, EntryFacts, MembershipFacts, RecordScope};
use kith_core::audit::{Actor, AuditRecord, ChainVerifier, Channel, Outcome};
use kith_core::consent::LinkBasis;
use kith_core::model::*;
use kith_core::patient::{Demographics, EntryKind, LocalIdentifier, NhsNumber, RegistrationStatus, Sex};
use kith_core::team::{AccountStatus, MembershipRole, MembershipStatus, TeamKind, TeamStatus};
use kith_core::text::{EmailAddress, MobileNumber, Name, OrganisationCode, Reason, TeamAlias, Title};
use kith_core::*;
use kith_store::{OfficerEvents, RecordReadFacts, Store, StoreError, StoreErrorKind, Tx};
use kith_test_support::{TestDatabase, on_each_engine};
use uuid::Uuid;

const T0: Timestamp = Timestamp::from_micros(1_790_000_000_000_000);

fn id() -> Uuid {
    Uuid::now_v7()
}

fn organisation(code: &str) -> Organisation {
    Organisation {
        id: OrganisationId::from_uuid(id()),
        code: OrganisationCode::parse(code).unwrap(),
        name: Name::parse("name", "Riverside Hospitals").unwrap(),
        break_glass_duration: Duration::from_secs(3600),
        created_at: T0,
    }
}

fn team(organisation: &Organisation, alias: &str, kind: TeamKind, labels: LabelSet) -> Team {
    Team {
        id: TeamId::from_uuid(id()),
        organisation: organisation.id,
        kind,
        name: Name::parse("name", &format!("Team {alias}")).unwrap(),
        alias: TeamAlias::parse(alias).unwrap(),
        status: TeamStatus::Setup,
        default_labels: labels,
        created_at: T0,
    }
}

fn account(email: &str) -> Account {
    Account {
        id: AccountId::from_uuid(id()),
        email: EmailAddress::parse(email).unwrap(),
        name: Name::parse("name", "Dr Ada Lovelace").unwrap(),
        status: AccountStatus::Active,
        created_at: T0,
    }
}

fn patient(nhs: Option<&str>, email: Option<&str>) -> Patient {
    Patient {
        id: PatientId::from_uuid(id()),
        nhs_number: nhs.map(|n| NhsNumber::parse(n).unwrap()),
        demographics: Demographics {
            family_name: Name::parse("family", "O'Brien").unwrap(),
            given_name: Name::parse("given", "Siân").unwrap(),
            birth_date: Date::parse("1984-03-07").unwrap(),
            sex: Sex::Female,
            email: email.map(|e| EmailAddress::parse(e).unwrap()),
            mobile: Some(MobileNumber::parse("07700 900123").unwrap()),
            address: None,
        },
        registration: RegistrationStatus::Unregistered,
        account: None,
        sharing_disabled: false,
        merged_into: None,
        created_at: T0,
        updated_at: T0,
    }
}

fn entry(patient: PatientId, team: TeamId, label: Option<PrivacyLabel>, minutes: i64) -> Entry {
    Entry {
        id: EntryId::from_uuid(id()),
        patient,
        kind: EntryKind::Result,
        label,
        authored_by: team,
        author_account: None,
        effective_at: Timestamp::from_micros(T0.as_micros() + minutes * 60_000_000),
        recorded_at: T0,
        title: Title::parse("Full blood count").unwrap(),
        body: "Hb 135 g/L".into(),
        version: 1,
        status: None,
        source_key: None,
        source_message: None,
        ends_at: None,
    }
}

fn audit_record(action: &'static str, patient: Option<PatientId>) -> AuditRecord {
    AuditRecord {
        at: T0,
        actor: Actor::Operator { name: "ops".into() },
        channel: Channel::Cli,
        organisation: None,
        acting_team: None,
        patient,
        action,
        outcome: Outcome::Allowed,
        basis: Some("administration"),
        entry_kinds: "result".into(),
        labels: LabelSet::ALL,
        subject: Some("subject – with ünïcode".into()),
        reason: None,
    }
}

/// Checks the whole audit chain (its first 1,000 events) against its head: how many events,
/// or the first break.
fn verify_chain(store: &Store) -> Result<u64, kith_core::audit::ChainBreak> {
    store
        .read(|tx| {
            let (head_seq, head_hash) = tx.audit_head()?;
            let mut verifier = ChainVerifier::default();
            for event in tx.audit_events_after(0, 1000)? {
                if let Err(broken) = verifier.check(&event) {
                    return Ok(Err(broken));
                }
            }
            Ok::<_, StoreError>(verifier.finish(head_seq, &head_hash))
        })
        .unwrap()
}

fn write<R>(store: &Store, work: impl FnMut(&mut Tx<'_>) -> Result<R, StoreError>) -> R {
    store.write(work).expect("the write succeeds")
}

on_each_engine!(migrations_are_idempotent);
fn migrations_are_idempotent(database: TestDatabase) {
    let store = &database.store();
    let again = store.migrate().unwrap();
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(again.current_version, 16);
    store.ping().unwrap();
}

on_each_engine!(organisations_teams_and_accounts_round_trip);
fn organisations_teams_and_accounts_round_trip(database: TestDatabase) {
    let store = &database.store();
    let org = organisation("RXH");
    let prt = team(&org, "prt", TeamKind::PatientRecord, LabelSet::EMPTY);
    let cardiology = team(
        &org,
        "cardiology",
        TeamKind::Speciality,
        LabelSet::from_labels([PrivacyLabel::General, PrivacyLabel::MentalHealth]),
    );
    let ada = account("Ada@Example.org");
    write(store, |tx| {
        tx.insert_organisation(&org)?;
        tx.insert_team(&prt)?;
        tx.insert_team(&cardiology)?;
        tx.insert_account(&ada, Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"))?;
        tx.insert_membership(
            &Membership {
                account: ada.id,
                team: cardiology.id,
                role: MembershipRole::Coordinator,
                status: MembershipStatus::Active,
            },
            T0,
        )?;
        Ok(())
    });
    store
        .read(|tx| {
            assert_eq!(tx.organisation_by_code(&org.code)?, Some(org.clone()));
            assert_eq!(tx.organisation(org.id)?, Some(org.clone()));
            assert_eq!(tx.team_by_alias(org.id, &cardiology.alias)?, Some(cardiology.clone()));
            assert_eq!(tx.patient_record_team(org.id)?, Some(prt.clone()));
            assert_eq!(tx.teams(org.id)?.len(), 2);
            assert_eq!(tx.account_by_email(&EmailAddress::parse("ADA@example.ORG").unwrap())?, Some(ada.clone()));
            assert!(tx.password_hash(ada.id)?.unwrap().starts_with("$argon2id$"));
            assert_eq!(tx.count_active_coordinators(cardiology.id)?, 1);
            assert_eq!(tx.team_members(cardiology.id)?.len(), 1);
            Ok::<_, StoreError>(())
        })
        .unwrap();

    // The schema enforces one Patient Record Team per organisation and unique aliases.
    let second_prt = team(&org, "prt2", TeamKind::PatientRecord, LabelSet::EMPTY);
    let error = store.write(|tx| tx.insert_team(&second_prt)).unwrap_err();
    assert_eq!(error.kind, StoreErrorKind::Duplicate, "{error}");
    let duplicate_alias = team(&org, "cardiology", TeamKind::Speciality, LabelSet::EMPTY);
    assert_eq!(store.write(|tx| tx.insert_team(&duplicate_alias)).unwrap_err().kind, StoreErrorKind::Duplicate);
    assert_eq!(
        store.write(|tx| tx.insert_account(&account("ada@example.org"), None)).unwrap_err().kind,
        StoreErrorKind::Duplicate
    );

    // A deactivated coordinator, or one whose account is locked, does not count.
    write(store, |tx| {
        tx.update_membership(
            &Membership {
                account: ada.id,
                team: cardiology.id,
                role: MembershipRole::Coordinator,
                status: MembershipStatus::Deactivated,
            },
            T0,
        )
    });
    assert_eq!(store.read(|tx| tx.count_active_coordinators(cardiology.id)).unwrap(), 0);
}

on_each_engine!(a_failed_transaction_leaves_nothing_behind);
fn a_failed_transaction_leaves_nothing_behind(database: TestDatabase) {
    let store = &database.store();
    let org = organisation("RXF");
    let result: Result<(), StoreError> = store.write(|tx| {
        tx.insert_organisation(&org)?;
        tx.audit(audit_record("organisation.create", None));
        Err(StoreError::new(StoreErrorKind::Database, "the use case changed its mind"))
    });
    assert!(result.is_err());
    store
        .read(|tx| {
            assert_eq!(tx.organisation_by_code(&org.code)?, None);
            assert_eq!(tx.audit_head()?.0, 0, "no audit event survives a rollback");
            Ok::<_, StoreError>(())
        })
        .unwrap();
    // Audit events may not be recorded in a read-only transaction.
    let refused = store.read(|tx| {
        tx.audit(audit_record("x", None));
        Ok::<_, StoreError>(())
    });
    assert!(refused.is_err());
}

on_each_engine!(patients_identifiers_and_links_round_trip);
fn patients_identifiers_and_links_round_trip(database: TestDatabase) {
    let store = &database.store();
    let org = organisation("RXP");
    let prt = team(&org, "prt", TeamKind::PatientRecord, LabelSet::EMPTY);
    let mut siân = patient(Some("9434765919"), Some("sian@example.org"));
    let mrn = LocalIdentifier::parse("RXP-MRN:K1234567").unwrap();
    write(store, |tx| {
        tx.insert_organisation(&org)?;
        tx.insert_team(&prt)?;
        tx.put_patient(&siân)?;
        tx.insert_patient_identifier(siân.id, org.id, &mrn, T0)?;
        tx.put_care_link(&CareLink {
            patient: siân.id,
            team: prt.id,
            labels: LabelSet::EMPTY,
            basis: LinkBasis::OrganisationRecord,
            changed_by: None,
            linked_at: T0,
            updated_at: T0,
            discharged_at: None,
        })
    });
    store
        .read(|tx| {
            assert_eq!(tx.patient(siân.id)?, Some(siân.clone()));
            assert_eq!(tx.patient_by_nhs_number(siân.nhs_number.as_ref().unwrap())?.map(|p| p.id), Some(siân.id));
            assert_eq!(
                tx.patient_by_email(&EmailAddress::parse("SIAN@example.org").unwrap())?.map(|p| p.id),
                Some(siân.id)
            );
            assert_eq!(tx.patient_by_local_identifier(org.id, &mrn)?.map(|p| p.id), Some(siân.id));
            assert_eq!(tx.patient_identifiers(siân.id)?[0].identifier, mrn);
            assert!(tx.patient_in_organisation(siân.id, org.id)?);
            Ok::<_, StoreError>(())
        })
        .unwrap();

    // Updates replace every field; a discharged PRT link takes the patient out.
    siân.demographics.email = None;
    siân.sharing_disabled = true;
    siân.updated_at = Timestamp::from_micros(T0.as_micros() + 1);
    write(store, |tx| {
        tx.put_patient(&siân)?;
        let mut link = tx.care_link(siân.id, prt.id)?.unwrap();
        link.discharged_at = Some(T0);
        tx.put_care_link(&link)
    });
    store
        .read(|tx| {
            assert_eq!(tx.patient(siân.id)?, Some(siân.clone()));
            assert!(!tx.patient_in_organisation(siân.id, org.id)?);
            assert_eq!(tx.care_links(siân.id)?.len(), 1);
            Ok::<_, StoreError>(())
        })
        .unwrap();

    // One NHS number, one email, one local identifier per record.
    let twin = patient(Some("943 476 5919"), None);
    assert_eq!(store.write(|tx| tx.put_patient(&twin)).unwrap_err().kind, StoreErrorKind::Duplicate);
    let other = patient(None, None);
    let error = store
        .write(|tx| {
            tx.put_patient(&other)?;
            tx.insert_patient_identifier(other.id, org.id, &mrn, T0)
        })
        .unwrap_err();
    assert_eq!(error.kind, StoreErrorKind::Duplicate);
}

on_each_engine!(an_entrys_end_round_trips_through_its_versions);
/// An appointment's end is stored with the entry, replaced with it, and kept in its history.
fn an_entrys_end_round_trips_through_its_versions(database: TestDatabase) {
    let store = &database.store();
    let org = organisation("RXE");
    let prt = team(&org, "prt", TeamKind::PatientRecord, LabelSet::EMPTY);
    let person = patient(None, None);
    let first = Entry {
        kind: EntryKind::Appointment,
        status: Some(EntryStatus::Booked),
        source_key: Some("SIU:APT-1".into()),
        ends_at: Some(Timestamp::from_micros(T0.as_micros() + 30 * 60_000_000)),
        ..entry(person.id, prt.id, Some(PrivacyLabel::General), 0)
    };
    let second =
        Entry { version: 2, ends_at: None, recorded_at: Timestamp::from_micros(T0.as_micros() + 1), ..first.clone() };
    write(store, |tx| {
        tx.insert_organisation(&org)?;
        tx.insert_team(&prt)?;
        tx.put_patient(&person)?;
        tx.insert_entry(&first)?;
        let stored = tx.entry_by_source_key(person.id, prt.id, "SIU:APT-1")?.expect("the entry is there");
        assert_eq!(stored.ends_at, first.ends_at);
        tx.replace_entry(&second)
    });
    store
        .read(|tx| {
            assert_eq!(tx.entries(person.id)?, vec![second.clone()], "the new version has no end");
            assert_eq!(tx.entry_history(person.id, first.id)?, vec![first.clone()], "the old one keeps its end");
            assert_eq!(tx.patient_entry_history(person.id)?, vec![first.clone()], "the record's history, whole");
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

on_each_engine!(the_entry_filter_in_sql_agrees_with_the_rule);
fn the_entry_filter_in_sql_agrees_with_the_rule(database: TestDatabase) {
    let store = &database.store();
    let org = organisation("RXE");
    let mine = team(&org, "mine", TeamKind::Speciality, LabelSet::EMPTY);
    let theirs = team(&org, "theirs", TeamKind::Speciality, LabelSet::EMPTY);
    let person = patient(None, None);
    let mut entries = Vec::new();
    for (index, label) in [None].into_iter().chain(PrivacyLabel::ALL.map(Some)).enumerate() {
        for author in [mine.id, theirs.id] {
            entries.push(entry(person.id, author, label, index as i64));
        }
    }
    write(store, |tx| {
        tx.insert_organisation(&org)?;
        tx.insert_team(&mine)?;
        tx.insert_team(&theirs)?;
        tx.put_patient(&person)?;
        for entry in &entries {
            tx.insert_entry(entry)?;
        }
        Ok(())
    });
    let grant = BreakGlassId::from_uuid(id());
    let mut scopes = vec![RecordScope::Denied(DenyReason::NotAMemberOfTeam)];
    for bits in 0..16 {
        for break_glass in [None, Some(grant)] {
            for own_team_data in [true, false] {
                scopes.push(RecordScope::Visible {
                    team: mine.id,
                    consented: LabelSet::from_bits(bits).unwrap(),
                    consent_gap: None,
                    own_team_data,
                    break_glass,
                });
            }
        }
    }
    for scope in scopes {
        let shown = store.read(|tx| tx.entries_in_scope(person.id, &scope)).unwrap();
        let mut shown_ids: Vec<EntryId> = shown.iter().map(|e| e.id).collect();
        let mut expected: Vec<EntryId> = entries
            .iter()
            .filter(|e| scope.decide(&EntryFacts { label: e.label, authored_by: e.authored_by }).is_allowed())
            .map(|e| e.id)
            .collect();
        // Newest first, then by id (entries here share their times in pairs).
        let mut in_order = shown.clone();
        in_order.sort_by(|a, b| b.effective_at.cmp(&a.effective_at).then(a.id.cmp(&b.id)));
        assert_eq!(shown, in_order, "{scope:?}: newest first, ties by id");
        shown_ids.sort();
        expected.sort();
        assert_eq!(shown_ids, expected, "{scope:?}");
        for shown in &shown {
            assert_eq!(Some(shown), entries.iter().find(|e| e.id == shown.id), "entries round-trip");
        }
    }
}

on_each_engine!(access_facts_are_loaded_as_stored);
fn access_facts_are_loaded_as_stored(database: TestDatabase) {
    let store = &database.store();
    let org = organisation("RXA");
    let ward = team(&org, "ward", TeamKind::Speciality, LabelSet::EMPTY);
    let other = team(&org, "other", TeamKind::Speciality, LabelSet::EMPTY);
    let nurse = account("nurse@example.org");
    let person = patient(None, None);
    let labels = LabelSet::from_labels([PrivacyLabel::General]);
    let grant = BreakGlassGrant {
        id: BreakGlassId::from_uuid(id()),
        patient: person.id,
        account: nurse.id,
        team: ward.id,
        reason: Reason::parse("Unconscious on arrival").unwrap(),
        started_at: T0,
        expires_at: Timestamp::from_micros(T0.as_micros() + 1_000_000),
        ended_at: None,
    };
    write(store, |tx| {
        tx.insert_organisation(&org)?;
        tx.insert_team(&ward)?;
        tx.insert_team(&other)?;
        tx.insert_account(&nurse, None)?;
        tx.insert_membership(
            &Membership {
                account: nurse.id,
                team: ward.id,
                role: MembershipRole::Professional,
                status: MembershipStatus::Active,
            },
            T0,
        )?;
        tx.insert_membership(
            &Membership {
                account: nurse.id,
                team: other.id,
                role: MembershipRole::Professional,
                status: MembershipStatus::Deactivated,
            },
            T0,
        )?;
        tx.put_patient(&person)?;
        tx.put_care_link(&CareLink {
            patient: person.id,
            team: ward.id,
            labels,
            basis: LinkBasis::Hl7ImpliedConsent,
            changed_by: None,
            linked_at: T0,
            updated_at: T0,
            discharged_at: None,
        })?;
        tx.insert_entry(&entry(person.id, other.id, Some(PrivacyLabel::General), 0))?;
        tx.insert_break_glass(&grant, None)
    });
    let facts = store.read(|tx| tx.record_access_facts(nurse.id, ward.id, person.id, T0)).unwrap().unwrap();
    assert_eq!(facts.account_status, AccountStatus::Active);
    assert_eq!(
        facts.membership,
        Some(MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Active })
    );
    assert_eq!(facts.care_link, Some(CareLinkFacts { labels, active: true }));
    assert_eq!(
        facts.break_glass,
        Some(BreakGlassFacts {
            grant: grant.id,
            team: grant.team,
            expires_at: grant.expires_at,
            ended: false,
            session: None
        })
    );
    assert!(!facts.sharing_disabled);

    let through_other = store.read(|tx| tx.record_access_facts(nurse.id, other.id, person.id, T0)).unwrap().unwrap();
    assert_eq!(through_other.membership.map(|m| m.status), Some(MembershipStatus::Deactivated));
    assert_eq!(through_other.care_link, None);

    let demographics = store.read(|tx| tx.demographics_facts(nurse.id, person.id, T0)).unwrap().unwrap();
    let ward_relation = demographics.teams.iter().find(|t| t.team == ward.id).unwrap();
    assert!(ward_relation.care_link_active && !ward_relation.authored_entries);
    let other_relation = demographics.teams.iter().find(|t| t.team == other.id).unwrap();
    assert!(!other_relation.care_link_active && other_relation.authored_entries);

    assert_eq!(
        store.read(|tx| tx.record_access_facts(AccountId::from_uuid(id()), ward.id, person.id, T0)).unwrap(),
        None
    );
    assert_eq!(
        store.read(|tx| tx.record_access_facts(nurse.id, ward.id, PatientId::from_uuid(id()), T0)).unwrap(),
        None
    );

    // The record read loads the same facts, and the patient, in fewer statements.
    let read_facts_agree = |store: &Store, team: TeamId| {
        let read = store.read(|tx| tx.record_read_facts(nurse.id, team, person.id, T0)).unwrap().unwrap();
        let access = store.read(|tx| tx.record_access_facts(nurse.id, team, person.id, T0)).unwrap().unwrap();
        let demographics = store.read(|tx| tx.demographics_facts(nurse.id, person.id, T0)).unwrap().unwrap();
        let record = store.read(|tx| tx.patient(person.id)).unwrap().unwrap();
        assert_eq!(read, RecordReadFacts { access, demographics: demographics.clone(), patient: record.clone() });
        // The account-wide load (FHIR) agrees with the per-team loads, for every team.
        let all = store
            .read(|tx| {
                let status = tx.account(nurse.id)?.unwrap().status;
                tx.account_access_facts(nurse.id, status, person.id, record.sharing_disabled, T0)
            })
            .unwrap();
        let (all_demographics, all_access) = (all.demographics, all.access);
        // Each team with its own organisation.
        for (team, organisation) in &all.organisations {
            let found = store.read(|tx| tx.team(*team)).unwrap().unwrap();
            assert_eq!(found.organisation, *organisation);
        }
        assert_eq!(all.organisations.len(), all_demographics.teams.len());
        assert_eq!(all_demographics, demographics);
        for relation in &all_demographics.teams {
            let per_team =
                store.read(|tx| tx.record_access_facts(nurse.id, relation.team, person.id, T0)).unwrap().unwrap();
            assert!(all_access.contains(&per_team), "team {}: {per_team:?} not in {all_access:?}", relation.team);
        }
        assert_eq!(all_access.len(), all_demographics.teams.len());
    };
    read_facts_agree(store, ward.id);
    read_facts_agree(store, other.id);
    for (account, team, patient) in [
        (AccountId::from_uuid(id()), ward.id, person.id),
        (nurse.id, TeamId::from_uuid(id()), person.id),
        (nurse.id, ward.id, PatientId::from_uuid(id())),
    ] {
        assert_eq!(store.read(|tx| tx.record_read_facts(account, team, patient, T0)).unwrap(), None);
    }

    // Ending the grant is seen by the next load.
    assert_eq!(store.write(|tx| tx.end_break_glass(nurse.id, person.id, T0)).unwrap(), 1);
    let ended = store.read(|tx| tx.record_access_facts(nurse.id, ward.id, person.id, T0)).unwrap().unwrap();
    assert!(ended.break_glass.unwrap().ended);
    read_facts_agree(store, ward.id);
}

/// The SQLite database, its log and the directory Kith makes for it are their owner's only,
/// whatever the umask; an existing database opened with looser modes is tightened.
#[cfg(unix)]
#[test]
fn sqlite_files_are_their_owner_s_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("data").join("kith.db");
    let store = Store::open(&kith_store::DatabaseUrl::Sqlite(path.clone())).unwrap();
    store.migrate().unwrap();
    write(&store, |tx| tx.insert_organisation(&organisation("RXP")));
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&path), 0o600);
    let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600);
    }
    drop(store);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _again = Store::open(&kith_store::DatabaseUrl::Sqlite(path.clone())).unwrap();
    assert_eq!(mode(&path), 0o600);
}

/// SQLite keeps identifiers as the UUIDs' 16 bytes (they sort as the UUIDs do).
#[test]
fn sqlite_stores_identifiers_as_16_byte_blobs() {
    let database = TestDatabase::sqlite();
    let store = database.store();
    let org = organisation("RXB");
    let ward = team(&org, "ward", TeamKind::Speciality, LabelSet::EMPTY);
    write(&store, |tx| {
        tx.insert_organisation(&org)?;
        tx.insert_team(&ward)
    });
    let kith_store::DatabaseUrl::Sqlite(path) = &database.url else { unreachable!() };
    let connection = kith_store::sqlite::raw_connection(path).unwrap();
    let (kind, id, organisation): (String, Vec<u8>, Vec<u8>) = connection
        .query_row("SELECT typeof(id), id, organisation_id FROM teams", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .unwrap();
    assert_eq!(kind, "blob");
    assert_eq!(id, ward.id.as_uuid().as_bytes());
    assert_eq!(organisation, org.id.as_uuid().as_bytes());
    assert_eq!(store.read(|tx| tx.team(ward.id)).unwrap(), Some(ward));
}

on_each_engine!(the_audit_chain_verifies_and_detects_tampering);
fn the_audit_chain_verifies_and_detects_tampering(database: TestDatabase) {
    let store = &database.store();
    let database = &database;
    let person = PatientId::from_uuid(id());
    for batch in 0..3 {
        write(store, |tx| {
            for _ in 0..=batch {
                tx.audit(audit_record("record.read", Some(person)));
            }
            Ok(())
        });
    }
    let verify = || verify_chain(store);
    assert_eq!(verify(), Ok(6));
    let log = store.read(|tx| tx.audit_events_for_patient(person, None, None, 10)).unwrap();
    assert_eq!(log.len(), 6);
    assert_eq!(log[0].seq, 6, "newest first");
    let older = store.read(|tx| tx.audit_events_for_patient(person, None, Some(4), 2)).unwrap();
    assert_eq!(older.iter().map(|event| event.seq).collect::<Vec<_>>(), [3, 2], "a page before event 4");
    assert_eq!(log[0].record.subject.as_deref(), Some("subject – with ünïcode"));

    // The database refuses updates to audit events...
    let refused = database.execute_raw("UPDATE audit_events SET reason = 'x' WHERE seq = 3");
    assert!(refused.unwrap_err().contains("append-only"));
    let refused = database.execute_raw("DELETE FROM audit_events WHERE seq = 3");
    assert!(refused.unwrap_err().contains("append-only"));
    // ...so an attacker must drop the guard first; the chain still names the event.
    let tamper = match database.engine {
        kith_test_support::Engine::Sqlite => {
            "DROP TRIGGER audit_events_append_only_update; UPDATE audit_events SET reason = 'nothing to see' WHERE seq = 3;"
        }
        kith_test_support::Engine::Postgres => {
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only; UPDATE audit_events SET reason = 'nothing to see' WHERE seq = 3;"
        }
    };
    database.execute_raw(tamper).unwrap();
    assert_eq!(verify(), Err(kith_core::audit::ChainBreak::Changed { seq: 3 }));
}

on_each_engine!(concurrent_writers_keep_the_chain_whole);
/// Concurrent writers each appending audit events leave one unbroken chain.
fn concurrent_writers_keep_the_chain_whole(database: TestDatabase) {
    let store = &database.store();
    in_threads(4, 20, || {
        write(store, |tx| {
            tx.audit(audit_record("record.read", None));
            tx.audit(audit_record("record.read", None));
            Ok(())
        })
    });
    assert_eq!(verify_chain(store).unwrap(), 160);
}

on_each_engine!(audited_reads_commit_their_events_in_groups);
/// Audited reads from many threads: each returns only after its events are durable (it can
/// see them at once), their events share commits but none is lost or doubled, the chain
/// stays whole, and a read whose work fails records nothing.
fn audited_reads_commit_their_events_in_groups(database: TestDatabase) {
    let store = &database.store();
    in_threads(8, 25, || {
        let before = head(store);
        let seen = store
            .read_audited(|tx| {
                tx.audit(audit_record("record.read", None));
                tx.ping()?;
                Ok::<_, StoreError>(())
            })
            .map(|()| head(store))
            .unwrap();
        assert!(seen > before, "the event is committed when read_audited returns");
    });
    assert_eq!(head(store), 200);
    let failed: Result<(), StoreError> = store.read_audited(|tx| {
        tx.audit(audit_record("record.read", None));
        Err(StoreError::new(kith_store::StoreErrorKind::Database, "the read failed"))
    });
    assert!(failed.is_err());
    assert_eq!(head(store), 200, "a failed read records nothing");
    assert_eq!(verify_chain(store).unwrap(), 200);
}

on_each_engine!(an_awaited_audited_read_is_answered_once_its_events_are_durable);
/// The same through `read_then_audit`, the answer awaited as a future: the future is ready
/// only once the events are committed (they are visible when it gives the answer up), and
/// the writer wakes the waiting task rather than leaving it to be polled again.
fn an_awaited_audited_read_is_answered_once_its_events_are_durable(database: TestDatabase) {
    let store = &database.store();
    std::thread::scope(|scope| {
        for thread in 0..4_i64 {
            scope.spawn(move || {
                for read in 0..10_i64 {
                    let before = head(store);
                    let pending = store
                        .read_then_audit(|tx| {
                            tx.audit(audit_record("record.read", None));
                            Ok::<_, StoreError>(thread * 100 + read)
                        })
                        .unwrap();
                    assert_eq!(block_on(pending.durable()).unwrap(), thread * 100 + read);
                    assert!(head(store) > before, "the event is committed when the future is ready");
                }
            });
        }
    });
    assert_eq!(head(store), 40);
    // A read that records nothing has nothing to wait for.
    let nothing = store.read_then_audit(|_| Ok::<_, StoreError>("no events")).unwrap();
    assert_eq!(block_on(nothing.durable()).unwrap(), "no events");
    assert_eq!(verify_chain(store).unwrap(), 40);
}

/// Runs `work` `each` times on each of `threads` threads at once.
fn in_threads(threads: usize, each: usize, work: impl Fn() + Sync) {
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| (0..each).for_each(|_| work()));
        }
    });
}

/// How many audit events the chain holds.
fn head(store: &Store) -> i64 {
    store.read(|tx| Ok::<_, StoreError>(tx.audit_head()?.0)).unwrap()
}

/// Runs a future on this thread, parking between polls; only a wake lets it poll again.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

on_each_engine!(planner_statistics_can_be_refreshed_on_both_engines);
/// Refreshing the planner's statistics names only tables that exist (PostgreSQL runs
/// ANALYZE over them; SQLite has nothing to do) and leaves the data as it was.
fn planner_statistics_can_be_refreshed_on_both_engines(database: TestDatabase) {
    let store = &database.store();
    write(store, |tx| tx.insert_organisation(&organisation("RXS")));
    store.refresh_planner_statistics().unwrap();
    store.refresh_planner_statistics().unwrap();
    let found = store.read(|tx| tx.organisation_by_code(&OrganisationCode::parse("RXS").unwrap())).unwrap();
    assert!(found.is_some());
}

on_each_engine!(a_growing_feed_refreshes_the_planner_statistics);
/// As a feed stores messages, the store refreshes PostgreSQL's statistics by itself (on a
/// thread of its own) once 2,000 have been stored: `ANALYZE` shows in the server's own
/// statistics. Below that count, nothing is refreshed.
fn a_growing_feed_refreshes_the_planner_statistics(database: TestDatabase) {
    let store = &database.store();
    let database = &database;
    let last_analyze = || -> Option<i64> {
        let mut client = postgres::Client::connect(&database.url_text, postgres::NoTls).unwrap();
        let row = client
            .query_one(
                "SELECT EXTRACT(EPOCH FROM last_analyze)::bigint FROM pg_stat_user_tables WHERE relname = 'hl7_messages'",
                &[],
            )
            .unwrap();
        row.get(0)
    };
    store.note_growth(1_999);
    if database.engine == kith_test_support::Engine::Postgres {
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(last_analyze(), None, "not yet: 1,999 messages");
    }
    store.note_growth(1);
    if database.engine == kith_test_support::Engine::Postgres {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while last_analyze().is_none() {
            assert!(std::time::Instant::now() < deadline, "the statistics were not refreshed");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

on_each_engine!(savepoints_undo_their_work_and_the_transaction_goes_on);
/// A savepoint undoes its rows and its audit events and lets the transaction go on.
fn savepoints_undo_their_work_and_the_transaction_goes_on(database: TestDatabase) {
    let store = &database.store();
    let kept = organisation("RXK");
    let undone = organisation("RXU");
    write(store, |tx| {
        tx.insert_organisation(&kept)?;
        tx.audit(audit_record("organisation.create", None));
        let failed: Result<(), StoreError> = tx.savepoint(|tx| {
            tx.insert_organisation(&undone)?;
            tx.audit(audit_record("organisation.create", None));
            // A store error inside the savepoint (a duplicate code) is recovered from too.
            tx.insert_organisation(&Organisation { id: OrganisationId::from_uuid(id()), ..kept.clone() })
        });
        assert_eq!(failed.unwrap_err().kind, StoreErrorKind::Duplicate);
        tx.savepoint(|tx| {
            tx.audit(audit_record("record.read", None));
            Ok::<_, StoreError>(())
        })
    });
    store
        .read(|tx| {
            assert!(tx.organisation_by_code(&kept.code)?.is_some());
            assert!(tx.organisation_by_code(&undone.code)?.is_none());
            let actions: Vec<String> = tx.audit_events_after(0, 10)?.into_iter().map(|e| e.record.action).collect();
            assert_eq!(actions, ["organisation.create", "record.read"]);
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

on_each_engine!(source_keys_are_per_authoring_team_and_record_organisations_are_read);
/// A feed's source keys are its organisation's: two organisations' Patient Record Teams file
/// the same order number for one patient as two entries, and each finds its own. Where a
/// record stands with organisations is read as the matching rule needs it.
fn source_keys_are_per_authoring_team_and_record_organisations_are_read(database: TestDatabase) {
    let store = &database.store();
    let (a, b) = (organisation("RXA"), organisation("RXB"));
    let (prt_a, prt_b) = (
        team(&a, "prt", TeamKind::PatientRecord, LabelSet::EMPTY),
        team(&b, "prt", TeamKind::PatientRecord, LabelSet::EMPTY),
    );
    let person = patient(None, None);
    let keyed = |team: TeamId| Entry {
        kind: EntryKind::Result,
        source_key: Some("ORU:F1".into()),
        ..entry(person.id, team, Some(PrivacyLabel::General), 0)
    };
    let (from_a, from_b) = (keyed(prt_a.id), keyed(prt_b.id));
    write(store, |tx| {
        tx.insert_organisation(&a)?;
        tx.insert_organisation(&b)?;
        tx.insert_team(&prt_a)?;
        tx.insert_team(&prt_b)?;
        tx.put_patient(&person)?;
        tx.put_care_link(&CareLink {
            patient: person.id,
            team: prt_a.id,
            labels: LabelSet::EMPTY,
            basis: LinkBasis::OrganisationRecord,
            changed_by: None,
            linked_at: T0,
            updated_at: T0,
            discharged_at: None,
        })?;
        tx.insert_entry(&from_a)
    });
    store
        .read(|tx| {
            assert_eq!(tx.record_organisations(person.id, a.id)?, (true, false), "in A only");
            assert_eq!(tx.record_organisations(person.id, b.id)?, (false, true), "not in B; A holds it");
            assert_eq!(tx.entry_by_source_key(person.id, prt_b.id, "ORU:F1")?, None);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    write(store, |tx| tx.insert_entry(&from_b));
    store
        .read(|tx| {
            assert_eq!(tx.entry_by_source_key(person.id, prt_a.id, "ORU:F1")?.map(|e| e.id), Some(from_a.id));
            assert_eq!(tx.entry_by_source_key(person.id, prt_b.id, "ORU:F1")?.map(|e| e.id), Some(from_b.id));
            // An entry B's team wrote makes the record B's too.
            assert_eq!(tx.record_organisations(person.id, a.id)?, (true, true));
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let again = Entry { id: EntryId::from_uuid(id()), ..keyed(prt_b.id) };
    assert_eq!(store.write(|tx| tx.insert_entry(&again)).unwrap_err().kind, StoreErrorKind::Duplicate);
}

on_each_engine!(integrations_and_stored_messages);
/// Integrations are found by facility and by token hash; messages are stored once per key.
fn integrations_and_stored_messages(database: TestDatabase) {
    use kith_core::model::{Hl7MessageRecord, Hl7MessageStatus, Integration};

    let store = &database.store();
    let org = organisation("RXM");
    let integration = Integration {
        id: IntegrationId::from_uuid(id()),
        organisation: org.id,
        name: Name::parse("name", "PAS feed").unwrap(),
        facility: "RXM-PAS".into(),
        created_at: T0,
        revoked_at: None,
        token_expires_at: Some(T0),
        allowed_addresses: vec![
            kith_core::integration::AddressRange::parse("10.1.2.0/24").unwrap(),
            kith_core::integration::AddressRange::parse("::1").unwrap(),
        ],
        client_certificate_sha256: None,
    };
    let token_hash = [7u8; 32];
    let record = |control: Option<&str>| Hl7MessageRecord {
        id: Hl7MessageId::from_uuid(id()),
        organisation: org.id,
        integration: Some(integration.id),
        sending_application: "PAS".into(),
        sending_facility: "RXM-PAS".into(),
        control_id: control.map(str::to_owned),
        message_type: "ADT^A28".into(),
        status: Hl7MessageStatus::Accepted,
        ack: "MSH|...\rMSA|AA|1\r".into(),
        error: None,
        patient: None,
        received_at: T0,
        conflict: None,
        conflict_records: Vec::new(),
        resolution: None,
    };
    let first = record(Some("1"));
    let held = Hl7MessageRecord {
        status: Hl7MessageStatus::Held,
        error: Some("PID-3: the identifiers lead to different records".into()),
        conflict: Some("identifiers_disagree".into()),
        conflict_records: vec![PatientId::from_uuid(id()), PatientId::from_uuid(id())],
        ..record(Some("2"))
    };
    write(store, |tx| {
        tx.insert_organisation(&org)?;
        tx.insert_integration(&integration, &token_hash)?;
        tx.add_assigning_authority(org.id, "RXM-MRN", T0)?;
        tx.add_assigning_authority(org.id, "RXM-MRN", T0)?;
        tx.insert_hl7_message(&kith_store::NewHl7Message { record: &first, raw: b"MSH|raw \xe9", processed_at: T0 })?;
        // Messages without a control id are all kept.
        for _ in 0..2 {
            tx.insert_hl7_message(&kith_store::NewHl7Message { record: &record(None), raw: b"?", processed_at: T0 })?;
        }
        tx.insert_hl7_message(&kith_store::NewHl7Message { record: &held, raw: b"MSH|held", processed_at: T0 })?;
        Ok(())
    });
    store
        .read(|tx| {
            assert_eq!(tx.integration_by_facility("RXM-PAS")?, Some(integration.clone()));
            assert_eq!(tx.integration_by_token_hash(&token_hash)?, Some(integration.clone()));
            assert_eq!(tx.integration_by_token_hash(&[8u8; 32])?, None);
            assert_eq!(tx.assigning_authorities(org.id)?, ["RXM-MRN"]);
            assert!(tx.hl7_create_on_any_adt(org.id)?);
            assert_eq!(tx.hl7_message_by_key(org.id, "PAS", "RXM-PAS", "1")?, Some(first.clone()));
            assert_eq!(tx.hl7_message_raw(first.id)?.unwrap(), b"MSH|raw \xe9");
            assert_eq!(tx.hl7_messages(org.id, None, 10)?.len(), 4);
            assert_eq!(tx.hl7_messages(org.id, Some(Hl7MessageStatus::Rejected), 10)?.len(), 0);
            assert_eq!(tx.hl7_messages(org.id, Some(Hl7MessageStatus::Held), 10)?, vec![held.clone()]);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    // A held message resolved: its status, records and resolution are written back;
    // an integration revoked, re-bound and given a new token.
    let resolved = Hl7MessageRecord {
        status: Hl7MessageStatus::Accepted,
        resolution: Some("applied to record … by operator".into()),
        ..held.clone()
    };
    let changed = Integration {
        revoked_at: Some(T0),
        token_expires_at: None,
        allowed_addresses: Vec::new(),
        client_certificate_sha256: Some([9u8; 32]),
        ..integration.clone()
    };
    write(store, |tx| {
        tx.update_hl7_message_outcome(&resolved, T0)?;
        tx.update_integration(&changed)?;
        tx.set_integration_token(integration.id, &[6u8; 32], Some(T0))
    });
    store
        .read(|tx| {
            assert_eq!(tx.hl7_message(held.id)?, Some(resolved.clone()));
            let stored = tx.integration(integration.id)?.unwrap();
            assert_eq!(stored, Integration { token_expires_at: Some(T0), ..changed.clone() });
            assert_eq!(tx.integration_by_token_hash(&token_hash)?, None, "the old token is gone");
            assert_eq!(tx.integration_by_token_hash(&[6u8; 32])?.map(|i| i.id), Some(integration.id));
            assert_eq!(tx.all_integrations()?.len(), 1);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let again = record(Some("1"));
    let duplicate = store
        .write(|tx| tx.insert_hl7_message(&kith_store::NewHl7Message { record: &again, raw: b"", processed_at: T0 }));
    assert_eq!(duplicate.unwrap_err().kind, StoreErrorKind::Duplicate);
}

fn outbox_message(channel: &'static str, secret: Option<&str>, created_at: Timestamp) -> kith_store::OutboxMessage {
    kith_store::OutboxMessage {
        id: id(),
        channel,
        template: if secret.is_some() { "password_reset" } else { "team_added_patient" }.to_owned(),
        recipient: if channel == "sms" { "+447700900123".into() } else { "someone@example.org".into() },
        payload: format!("{{\"account\":\"{}\"}}", id()),
        secret: secret.map(str::to_owned),
        created_at,
    }
}

fn outbox_row(store: &Store, message: Uuid) -> kith_store::OutboxRow {
    store
        .read(|tx| tx.outbox(1000))
        .unwrap()
        .into_iter()
        .find(|row| row.message.id == message)
        .expect("the message is stored")
}

fn minutes(count: u64) -> Duration {
    Duration::from_secs(60 * count)
}

on_each_engine!(the_outbox_is_claimed_once_and_forgets_its_codes);
/// Due email and SMS messages are claimed once, oldest first, under a lease; letters never;
/// a lease that runs out lets another worker claim the message again (counting the lost
/// attempt); sent and dead messages forget their code.
fn the_outbox_is_claimed_once_and_forgets_its_codes(database: TestDatabase) {
    let store = &database.store();
    let later = T0.plus(minutes(1));
    let reset = outbox_message("email", Some("code-1234"), T0);
    let sms = outbox_message("sms", None, later);
    let letter = outbox_message("letter", None, T0);
    let future = outbox_message("email", Some("code-5678"), T0.plus(minutes(60)));
    write(store, |tx| {
        for message in [&sms, &reset, &letter, &future] {
            tx.enqueue(message)?;
        }
        Ok(())
    });
    assert_eq!(outbox_row(store, reset.id).message, reset, "the secret is stored until delivery");

    // Due at T0 + 1 min: the reset email (older) then the SMS; not the letter, not the
    // message created (and so due) later.
    let now = T0.plus(minutes(1));
    let lease = minutes(5);
    let claimed = write(store, |tx| tx.claim_due_outbox(now, lease, 10));
    let ids: Vec<Uuid> = claimed.iter().map(|row| row.message.id).collect();
    assert_eq!(ids, [reset.id, sms.id]);
    assert_eq!(claimed[0].message.secret.as_deref(), Some("code-1234"));
    assert!(claimed.iter().all(|row| row.status == "sending" && row.next_attempt_at == now.plus(lease)));
    // Not twice, even by the same worker; a limit is a limit.
    assert!(write(store, |tx| tx.claim_due_outbox(now, lease, 10)).is_empty());

    // The SMS fails and is due again in 30 s; the reset email is sent and forgets its code.
    assert!(write(store, |tx| tx.mark_outbox_failed(
        sms.id,
        now,
        "SMS endpoint 503",
        Some(now.plus(Duration::from_secs(30)))
    )));
    assert!(write(store, |tx| tx.mark_outbox_sent(reset.id, now)));
    let sent = outbox_row(store, reset.id);
    assert_eq!((sent.status.as_str(), sent.sent_at, sent.message.secret.as_deref()), ("sent", Some(now), None));
    let failed = outbox_row(store, sms.id);
    assert_eq!(failed.status, "failed");
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.last_error.as_deref(), Some("SMS endpoint 503"));
    // A late failure report does not undo a delivery.
    assert!(!write(store, |tx| tx.mark_outbox_failed(reset.id, now, "late", None)));
    assert_eq!(outbox_row(store, reset.id).status, "sent");

    // Once due again the SMS is claimed again, with one at a time.
    let retry_at = now.plus(Duration::from_secs(30));
    assert!(write(store, |tx| tx.claim_due_outbox(now.plus(Duration::from_secs(29)), lease, 10)).is_empty());
    let claimed = write(store, |tx| tx.claim_due_outbox(retry_at, lease, 1));
    assert_eq!(claimed.iter().map(|row| row.message.id).collect::<Vec<_>>(), [sms.id]);
    assert_eq!(claimed[0].attempts, 1);

    // The worker holding it stops mid-send: when the lease runs out it is claimed again,
    // and the abandoned attempt counts.
    assert!(write(store, |tx| tx.claim_due_outbox(retry_at.plus(minutes(4)), lease, 10)).is_empty());
    let reclaimed = write(store, |tx| tx.claim_due_outbox(retry_at.plus(lease), lease, 10));
    assert_eq!(reclaimed.iter().map(|row| row.message.id).collect::<Vec<_>>(), [sms.id]);
    assert_eq!(reclaimed[0].attempts, 2);
    assert_eq!(reclaimed[0].last_error.as_deref(), Some("delivery interrupted (lease ran out)"));

    assert!(write(store, |tx| tx.mark_outbox_sent(sms.id, retry_at.plus(lease))));

    // The far-future email comes due, fails for good and forgets its code.
    let late = T0.plus(minutes(60));
    let claimed = write(store, |tx| tx.claim_due_outbox(late, lease, 10));
    assert_eq!(claimed.iter().map(|row| row.message.id).collect::<Vec<_>>(), [future.id]);
    assert!(write(store, |tx| tx.mark_outbox_failed(future.id, late, "SMTP 550 permanent failure", None)));
    let dead = outbox_row(store, future.id);
    assert_eq!((dead.status.as_str(), dead.attempts, dead.message.secret.as_deref()), ("dead", 1, None));
    assert_eq!(dead.last_error.as_deref(), Some("SMTP 550 permanent failure"));

    // The letter was never claimed; the display counts per channel and status.
    assert_eq!(outbox_row(store, letter.id).status, "pending");
    let counts = store.read(|tx| tx.outbox_counts()).unwrap();
    let count = |channel: &str, status: &str| {
        counts.iter().find(|c| c.channel == channel && c.status == status).map_or(0, |c| c.count)
    };
    assert_eq!(
        (count("email", "sent"), count("email", "dead"), count("sms", "sent"), count("letter", "pending")),
        (1, 1, 1, 1)
    );
    let dead_only = store.read(|tx| tx.recent_outbox(Some("dead"), 10)).unwrap();
    assert_eq!(dead_only.iter().map(|row| row.message.id).collect::<Vec<_>>(), [future.id]);
    let newest_first = store.read(|tx| tx.recent_outbox(None, 2)).unwrap();
    assert_eq!(newest_first.iter().map(|row| row.message.id).collect::<Vec<_>>(), [future.id, sms.id]);
}

on_each_engine!(concurrent_claims_never_take_a_message_twice);
/// Workers claiming at the same moment never take the same message.
fn concurrent_claims_never_take_a_message_twice(database: TestDatabase) {
    let store = &database.store();
    let messages: Vec<_> = (0..40).map(|n| outbox_message("email", None, T0.plus(Duration::from_secs(n)))).collect();
    write(store, |tx| messages.iter().try_for_each(|message| tx.enqueue(message)));
    let now = T0.plus(minutes(1));
    let claimed: Vec<Uuid> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let batch = write(store, |tx| tx.claim_due_outbox(now, minutes(5), 3));
                        if batch.is_empty() {
                            return mine;
                        }
                        mine.extend(batch.into_iter().map(|row| row.message.id));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().unwrap()).collect()
    });
    let mut unique = claimed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((claimed.len(), unique.len()), (40, 40));
}

on_each_engine!(on_behalf_labels_and_a_privacy_officer_s_events);
/// Issue 15: an organisation's on-behalf labels (general health until changed), and the
/// events of one action in the organisations an account is privacy officer of.
fn on_behalf_labels_and_a_privacy_officer_s_events(database: TestDatabase) {
    let store = &database.store();
    let (rxh, rxb) = (organisation("RXH"), organisation("RXB"));
    let officer = account("po@example.org");
    let patient = patient(None, None);
    write(store, |tx| {
        tx.insert_organisation(&rxh)?;
        tx.insert_organisation(&rxb)?;
        tx.insert_account(&officer, None)?;
        tx.add_privacy_officer(rxh.id, officer.id, T0)?;
        tx.put_patient(&patient)?;
        for (organisation, action, about) in [
            (rxh.id, "consent.change", Some(patient.id)),
            (rxh.id, "consent.change", None),
            (rxh.id, "care_link.create", Some(patient.id)),
            (rxb.id, "consent.change", Some(patient.id)),
        ] {
            tx.audit(AuditRecord { organisation: Some(organisation), ..audit_record(action, about) });
        }
        Ok(())
    });
    let general = LabelSet::from_labels([PrivacyLabel::General]);
    assert_eq!(store.read(|tx| tx.on_behalf_labels(rxh.id)).unwrap(), general);
    let wider = general.with(PrivacyLabel::SocialCare);
    assert!(write(store, |tx| tx.set_on_behalf_labels(rxh.id, wider)));
    assert_eq!(store.read(|tx| tx.on_behalf_labels(rxh.id)).unwrap(), wider);
    assert_eq!(store.read(|tx| tx.on_behalf_labels(rxb.id)).unwrap(), general, "per organisation");
    let nowhere = OrganisationId::from_uuid(id());
    assert_eq!(store.read(|tx| tx.on_behalf_labels(nowhere)).unwrap(), LabelSet::EMPTY);

    let events = |action, about| {
        store.read(|tx| tx.officer_events(officer.id, OfficerEvents::Action(action), about, 100)).unwrap()
    };
    let all = events("consent.change", None);
    assert_eq!(all.len(), 2, "RXH's, not RXB's");
    assert!(all[0].seq > all[1].seq, "newest first");
    assert!(all.iter().all(|event| event.record.organisation == Some(rxh.id)));
    assert_eq!(events("consent.change", Some(patient.id)).len(), 1);
    assert_eq!(events("care_link.create", None).len(), 1);
    let stranger = account("x@example.org");
    write(store, |tx| tx.insert_account(&stranger, None));
    assert!(
        store
            .read(|tx| tx.officer_events(stranger.id, OfficerEvents::Action("consent.change"), None, 100))
            .unwrap()
            .is_empty()
    );
}

fn document_file(document_type: kith_core::document::DocumentType, content: Vec<u8>) -> DocumentFile {
    DocumentFile { document_type, file_name: "Clinic letter.pdf".into(), sha256: [7; 32], content, created_at: T0 }
}

on_each_engine!(a_documents_file_is_written_with_its_entry_and_read_back_by_its_key);
/// A document entry and its file go in together and come back byte for byte (up to the 10 MiB
/// limit, which the schema enforces too); only a document entry holds a file; a merge moves
/// the file with its entry.
fn a_documents_file_is_written_with_its_entry_and_read_back_by_its_key(database: TestDatabase) {
    use kith_core::document::{DocumentType, MAX_DOCUMENT_BYTES};
    let store = &database.store();
    let org = organisation("RXD");
    let prt = team(&org, "prt", TeamKind::PatientRecord, LabelSet::EMPTY);
    let person = patient(None, None);
    let other_person = patient(None, None);
    let letter = Entry { kind: EntryKind::Document, ..entry(person.id, prt.id, Some(PrivacyLabel::MentalHealth), 0) };
    // Every byte value, so that no engine's text handling can hide in a round trip.
    let pdf: Vec<u8> = b"%PDF-1.7\n".iter().copied().chain((0..=255u8).cycle().take(4096)).collect();
    let file = document_file(DocumentType::Pdf, pdf);
    write(store, |tx| {
        tx.insert_organisation(&org)?;
        tx.insert_team(&prt)?;
        tx.put_patient(&person)?;
        tx.put_patient(&other_person)?;
        tx.insert_document_entry(&letter, &file)
    });
    store
        .read(|tx| {
            assert_eq!(tx.entries(person.id)?, vec![letter.clone()], "the entry is written with its file");
            assert_eq!(tx.entry_document(person.id, letter.id)?, Some(file.clone()));
            assert_eq!(
                tx.entry_document(other_person.id, letter.id)?,
                None,
                "the key is the patient's and the entry's"
            );
            assert_eq!(tx.entry_document(person.id, EntryId::from_uuid(id()))?, None);
            Ok::<_, StoreError>(())
        })
        .unwrap();

    // Only a document holds a file: a note with one is refused, and nothing of it is written.
    let note = Entry { kind: EntryKind::Note, ..entry(person.id, prt.id, None, 1) };
    let refused = store.write(|tx| tx.insert_document_entry(&note, &file));
    assert!(refused.is_err(), "{refused:?}");
    // The schema holds the limit too: the largest document fits, one byte more does not.
    let largest = Entry { kind: EntryKind::Document, ..entry(person.id, prt.id, None, 2) };
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.resize(MAX_DOCUMENT_BYTES, 0xAB);
    let largest_file = document_file(DocumentType::Png, png);
    write(store, |tx| tx.insert_document_entry(&largest, &largest_file));
    let too_large = Entry { kind: EntryKind::Document, ..entry(person.id, prt.id, None, 3) };
    let mut jpeg = b"\xFF\xD8\xFF".to_vec();
    jpeg.resize(MAX_DOCUMENT_BYTES + 1, 0);
    let too_large_file = document_file(DocumentType::Jpeg, jpeg);
    let refused = store.write(|tx| tx.insert_document_entry(&too_large, &too_large_file));
    assert!(refused.is_err(), "a file over the limit was stored");
    store
        .read(|tx| {
            let ids: Vec<EntryId> = tx.entries(person.id)?.iter().map(|entry| entry.id).collect();
            assert!(!ids.contains(&note.id) && !ids.contains(&too_large.id), "a refused entry was written");
            assert_eq!(tx.entry_document(person.id, largest.id)?, Some(largest_file.clone()));
            Ok::<_, StoreError>(())
        })
        .unwrap();

    // A merge moves the files with their entries.
    write(store, |tx| tx.move_patient_data(person.id, other_person.id).map(|_| ()));
    store
        .read(|tx| {
            assert_eq!(tx.entry_document(other_person.id, letter.id)?, Some(file.clone()));
            assert_eq!(tx.entry_document(other_person.id, largest.id)?, Some(largest_file.clone()));
            assert_eq!(tx.entry_document(person.id, letter.id)?, None);
            Ok::<_, StoreError>(())
        })
        .unwrap();
}
