//! Documents uploaded to a record, on both backends: a professional adds a PDF or an image
//! through their team and reads it back byte for byte; what a file is comes from its
//! content; a refused upload writes nothing; who may read the file is exactly who may see its
//! entry — the same answer for an entry they may not see, one that does not exist and one
//! that is not a document — and every read is audited with its basis.

mod support;

use kith_app::*;
use kith_core::audit::{ChainedEvent, Channel};
use kith_core::document::{DocumentRefusal, MAX_DOCUMENT_BYTES};
use kith_core::model::Entry;
use kith_core::patient::EntryKind;
use kith_core::team::MembershipRole;
use kith_core::text::{Name, OrganisationCode, Title};
use kith_core::{AccountId, Basis, EntryId, LabelSet, PrivacyLabel, TeamId};
use kith_test_support::{Engine, TestDatabase, on_each_engine};
use support::*;

/// A small PDF with bytes of every value after its header (as real PDFs have).
fn pdf() -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n".to_vec();
    bytes.extend((0..=255u8).cycle().take(2048));
    bytes.extend_from_slice(b"\n%%EOF\n");
    bytes
}

fn png() -> Vec<u8> {
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec()
}

fn title(text: &str) -> Title {
    Title::parse(text).unwrap()
}

fn team_id(world: &World, organisation: OrganisationCode, team: &str) -> TeamId {
    world
        .app
        .store()
        .read(|tx| {
            let organisation = tx.organisation_by_code(&organisation)?.unwrap();
            tx.team_by_alias(organisation.id, &alias(team))
        })
        .unwrap()
        .unwrap()
        .id
}

fn account_of(world: &World, who: &str) -> AccountId {
    world.app.store().read(|tx| tx.account_by_email(&email(who))).unwrap().unwrap().id
}

fn entry_count(world: &World) -> i64 {
    world.app.store().read(|tx| tx.count_entries(world.patient.id)).unwrap()
}

/// pro@ of `mh` adds a mental-health clinic letter (a PDF) to the world's patient.
fn upload_letter(world: &World) -> Entry {
    world
        .app
        .add_document_as(
            account_of(world, "pro@example.org"),
            Channel::Web,
            world.patient.id,
            team_id(world, code(), "mh"),
            Some(PrivacyLabel::MentalHealth),
            title("Clinic letter"),
            "C:\\fakepath\\Clinic letter (March).pdf",
            &pdf(),
        )
        .unwrap()
}

/// The answer and its message, for comparing refusals: the same variant, the same words.
fn answer(result: AppResult<Document>) -> String {
    match result {
        Ok(document) => panic!("the document was read: {:?}", document.entry),
        Err(error @ AppError::Denied) => error.to_string(),
        Err(other) => panic!("not the generic refusal: {other:?}"),
    }
}

fn reads_of(world: &World, account: AccountId) -> Vec<ChainedEvent> {
    world
        .app
        .audit_events(Some(world.patient.id), 1000)
        .unwrap()
        .into_iter()
        .filter(|event| event.record.action == "record.read" && event.record.actor_account == Some(account))
        .collect()
}

on_each_engine!(a_professional_uploads_a_pdf_and_reads_it_back_byte_for_byte);
fn a_professional_uploads_a_pdf_and_reads_it_back_byte_for_byte(database: TestDatabase) {
    let world = world(database);
    let app = &world.app;
    let pro = account_of(&world, "pro@example.org");
    let mh = team_id(&world, code(), "mh");
    let before = entry_count(&world);
    let entry = upload_letter(&world);
    assert_eq!(entry_count(&world), before + 1);
    assert_eq!(entry.kind, EntryKind::Document);
    assert_eq!(entry.authored_by, mh);
    assert_eq!(entry.author_account, Some(pro));
    assert_eq!(entry.label, Some(PrivacyLabel::MentalHealth));

    let document = app.read_document_as(pro, Channel::Web, entry.id).unwrap();
    assert_eq!(document.bytes, pdf(), "byte for byte");
    assert_eq!(document.media_type, "application/pdf");
    assert_eq!(document.file_name, "Clinic letter March.pdf", "the last part of the path, sanitised");
    assert_eq!(document.entry, entry);
    assert!(matches!(document.basis, Basis::Consent { team } | Basis::OwnTeamData { team } if team == mh));

    // The write went through the rule for the team and is audited with its basis.
    let events = app.audit_events(Some(world.patient.id), 1000).unwrap();
    let created = events
        .iter()
        .find(|event| event.record.action == "entry.create" && event.record.subject == Some(entry.id.to_string()))
        .expect("the upload is audited");
    assert_eq!(created.record.actor_account, Some(pro));
    assert_eq!(created.record.acting_team, Some(mh));
    assert_eq!(created.record.basis.as_deref(), Some("consent"));
    assert_eq!(created.record.entry_kinds, "document");

    // The type comes from the content: PNG bytes named .pdf are a PNG image.
    let photo = app
        .add_document_as(
            pro,
            Channel::Web,
            world.patient.id,
            mh,
            None,
            title("Photograph of a letter"),
            "letter.pdf",
            &png(),
        )
        .unwrap();
    let document = app.read_document_as(pro, Channel::Fhir, photo.id).unwrap();
    assert_eq!(document.media_type, "image/png");
    assert_eq!(document.bytes, png());
    assert_eq!(document.file_name, "letter.pdf", "the name is kept as given");
}

on_each_engine!(uploads_that_are_not_documents_are_refused_with_a_clear_message_and_write_nothing);
fn uploads_that_are_not_documents_are_refused_with_a_clear_message_and_write_nothing(database: TestDatabase) {
    let world = world(database);
    let app = &world.app;
    let pro = account_of(&world, "pro@example.org");
    let mh = team_id(&world, code(), "mh");
    let before = entry_count(&world);
    let events_before = app.audit_events(None, 100_000).unwrap().len();
    let mut oversized = pdf();
    oversized.resize(MAX_DOCUMENT_BYTES + 1, b' ');
    let rows: Vec<(&str, &str, Vec<u8>, DocumentRefusal)> = vec![
        ("text named .pdf", "x.pdf", b"Discharge summary: all well.\n".to_vec(), DocumentRefusal::NotAllowedType),
        ("HTML named .png", "x.png", b"<html><script>alert(1)</script>".to_vec(), DocumentRefusal::NotAllowedType),
        ("nothing", "x.pdf", Vec::new(), DocumentRefusal::Empty),
        ("a PDF over the limit", "big.pdf", oversized, DocumentRefusal::TooLarge { limit: MAX_DOCUMENT_BYTES }),
    ];
    for (name, file_name, bytes, refusal) in rows {
        let result = app.add_document_as(
            pro,
            Channel::Web,
            world.patient.id,
            mh,
            Some(PrivacyLabel::General),
            title("Upload"),
            file_name,
            &bytes,
        );
        match result {
            Err(AppError::Invalid(message)) => assert_eq!(message, refusal.to_string(), "{name}"),
            other => panic!("{name}: not refused as invalid: {other:?}"),
        }
    }
    assert_eq!(
        DocumentRefusal::NotAllowedType.to_string(),
        "The file is not a PDF, PNG or JPEG image: save or scan the document as one of those and upload it again."
    );
    assert_eq!(entry_count(&world), before, "a refused upload writes no entry");
    assert_eq!(app.audit_events(None, 100_000).unwrap().len(), events_before, "nor anything else");
}

on_each_engine!(only_an_active_professional_of_the_team_may_upload_through_it);
fn only_an_active_professional_of_the_team_may_upload_through_it(database: TestDatabase) {
    let world = world(database);
    let app = &world.app;
    let mh = team_id(&world, code(), "mh");
    let gum = team_id(&world, code(), "gum");
    let before = entry_count(&world);
    let upload = |account: AccountId, team: TeamId| {
        app.add_document_as(account, Channel::Web, world.patient.id, team, None, title("Letter"), "l.pdf", &pdf())
    };
    // A coordinator of the patient's team (no clinical access), a professional naming a team
    // they are not in, one whose team does not hold the patient, a team that does not exist,
    // and a deactivated professional: each refused, audited, nothing written.
    let coordinator = account_of(&world, "c1@example.org");
    let gum_professional = account_of(&world, "gum@example.org");
    let pro = account_of(&world, "pro@example.org");
    assert!(matches!(upload(coordinator, mh), Err(AppError::Denied)));
    assert!(matches!(upload(gum_professional, mh), Err(AppError::Denied)));
    assert!(matches!(upload(gum_professional, gum), Err(AppError::Denied)));
    assert!(matches!(upload(pro, TeamId::from_uuid(uuid::Uuid::now_v7())), Err(AppError::Denied)));
    world.deactivate_member("mh", "pro@example.org");
    assert!(matches!(upload(pro, mh), Err(AppError::Denied)));
    assert_eq!(entry_count(&world), before);
    let denied = app
        .audit_events(Some(world.patient.id), 1000)
        .unwrap()
        .into_iter()
        .filter(|event| event.record.action == "entry.create" && event.record.outcome == "denied")
        .count();
    assert_eq!(denied, 5, "every refused upload is audited");
}

on_each_engine!(whoever_may_not_see_the_entry_gets_the_same_answer_as_for_no_entry);
fn whoever_may_not_see_the_entry_gets_the_same_answer_as_for_no_entry(database: TestDatabase) {
    let world = world(database);
    let app = &world.app;
    let entry = upload_letter(&world);
    let pro = account_of(&world, "pro@example.org");
    let no_such_entry = EntryId::from_uuid(uuid::Uuid::now_v7());
    let generic = answer(app.read_document_as(pro, Channel::Web, no_such_entry));

    // A professional of another team of the organisation, which holds the patient but
    // without consent for mental health.
    app.link_patient(&LinkActor::Operator(&operator()), world.patient.id, &code(), &alias("gum"), None).unwrap();
    let gum_professional = account_of(&world, "gum@example.org");
    assert_eq!(answer(app.read_document_as(gum_professional, Channel::Web, entry.id)), generic);
    assert_eq!(answer(app.read_document_as(gum_professional, Channel::Web, no_such_entry)), generic);

    // A professional of another organisation.
    let hillside = OrganisationCode::parse("HSH").unwrap();
    app.create_organisation(
        &operator(),
        &NewOrganisation {
            code: hillside.clone(),
            name: Name::parse("name", "Hillside Health").unwrap(),
            break_glass_duration: None,
        },
    )
    .unwrap();
    app.create_team(
        &operator(),
        &hillside,
        &Name::parse("n", "Emergency Department").unwrap(),
        &alias("ed"),
        LabelSet::ALL,
    )
    .unwrap();
    let elsewhere = world.add_member_in(hillside, "ed", "ed@example.org", MembershipRole::Professional).account.id;
    assert_eq!(answer(app.read_document_as(elsewhere, Channel::Fhir, entry.id)), generic);
    assert_eq!(answer(app.read_document_as(elsewhere, Channel::Fhir, no_such_entry)), generic);

    // An entry the professional may see that is not an uploaded document: a note, and a
    // document entry without a file (as a feed files them).
    let note = app
        .record_entry_as(
            pro,
            Channel::Web,
            world.patient.id,
            None,
            &NewEntry {
                kind: EntryKind::Note,
                label: Some(PrivacyLabel::General),
                title: title("Seen in clinic"),
                body: "Well.".into(),
                effective_at: START,
            },
        )
        .unwrap();
    assert!(app.read_entry_as(pro, Channel::Web, note.id).is_ok(), "the note itself is visible");
    assert_eq!(answer(app.read_document_as(pro, Channel::Web, note.id)), generic);
    let without_file = world.entries.iter().find(|entry| entry.label == Some(PrivacyLabel::General)).unwrap();
    assert!(app.read_entry_as(pro, Channel::Web, without_file.id).is_ok());
    assert_eq!(answer(app.read_document_as(pro, Channel::Web, without_file.id)), generic);

    // Each refusal is audited as a denied read, or a read that found nothing to show.
    assert!(!reads_of(&world, gum_professional).is_empty());
    assert!(
        app.audit_events(None, 100_000)
            .unwrap()
            .iter()
            .any(|event| event.record.actor_account == Some(elsewhere) && event.record.outcome == "denied"),
        "the other organisation's attempt is audited"
    );
}

on_each_engine!(the_patient_reads_their_own_document);
fn the_patient_reads_their_own_document(database: TestDatabase) {
    let world = world(database);
    world.add_patient_addresses();
    let entry = upload_letter(&world);
    let patient_account = account_of(&world, "patient@example.org");
    let document = world.app.read_document_as(patient_account, Channel::Web, entry.id).unwrap();
    assert_eq!(document.bytes, pdf());
    assert_eq!(document.basis, Basis::SelfAccess);
    let reads = reads_of(&world, patient_account);
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].record.basis.as_deref(), Some("self"));
    assert_eq!(reads[0].record.entry_kinds, "document");
}

on_each_engine!(a_team_whose_consent_for_the_label_is_removed_loses_the_document_at_once);
fn a_team_whose_consent_for_the_label_is_removed_loses_the_document_at_once(database: TestDatabase) {
    let world = world(database);
    let app = &world.app;
    world.add_patient_addresses();
    let entry = upload_letter(&world);
    let patient_account = account_of(&world, "patient@example.org");
    let gum = team_id(&world, code(), "gum");
    let gum_professional = account_of(&world, "gum@example.org");
    app.link_patient(&LinkActor::Operator(&operator()), world.patient.id, &code(), &alias("gum"), None).unwrap();
    let with_mental_health = LabelSet::from_labels([PrivacyLabel::General, PrivacyLabel::MentalHealth]);
    app.change_consent_as(patient_account, Channel::Web, world.patient.id, gum, with_mental_health, None).unwrap();
    let document = app.read_document_as(gum_professional, Channel::Web, entry.id).unwrap();
    assert_eq!(document.basis, Basis::Consent { team: gum });
    assert_eq!(document.bytes, pdf());

    let general_only = LabelSet::from_labels([PrivacyLabel::General]);
    app.change_consent_as(patient_account, Channel::Web, world.patient.id, gum, general_only, None).unwrap();
    assert!(matches!(app.read_document_as(gum_professional, Channel::Web, entry.id), Err(AppError::Denied)));
}

on_each_engine!(reads_are_audited_with_their_basis);
fn reads_are_audited_with_their_basis(database: TestDatabase) {
    let world = world(database);
    let app = &world.app;
    let entry = upload_letter(&world);
    let pro = account_of(&world, "pro@example.org");
    let mh = team_id(&world, code(), "mh");
    app.read_document_as(pro, Channel::Fhir, entry.id).unwrap();
    let reads = reads_of(&world, pro);
    assert_eq!(reads.len(), 1, "{reads:?}");
    let read = &reads[0].record;
    assert_eq!(read.outcome, "allowed");
    assert!(matches!(read.basis.as_deref(), Some("consent" | "own_team_data")), "{read:?}");
    assert_eq!(read.acting_team, Some(mh));
    assert_eq!(read.entry_kinds, "document");
    assert_eq!(read.labels, LabelSet::from_labels([PrivacyLabel::MentalHealth]).bits());
    assert_eq!(read.channel, "fhir");

    // A denied read is audited too, with its reason.
    let gum_professional = account_of(&world, "gum@example.org");
    assert!(matches!(app.read_document_as(gum_professional, Channel::Web, entry.id), Err(AppError::Denied)));
    let denied = reads_of(&world, gum_professional);
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].record.outcome, "denied");
    assert!(denied[0].record.reason.is_some());
}

on_each_engine!(a_stored_file_that_was_changed_is_never_served);
fn a_stored_file_that_was_changed_is_never_served(database: TestDatabase) {
    let world = world(database);
    let entry = upload_letter(&world);
    let pro = account_of(&world, "pro@example.org");
    let zero_hash = match world.database.engine {
        Engine::Sqlite => "UPDATE entry_documents SET sha256 = zeroblob(32)",
        Engine::Postgres => "UPDATE entry_documents SET sha256 = decode(repeat('00', 32), 'hex')",
    };
    world.database.execute_raw(zero_hash).unwrap();
    assert!(matches!(world.app.read_document_as(pro, Channel::Web, entry.id), Err(AppError::Store(_))));
}

on_each_engine!(a_break_glass_grant_opens_the_document_until_it_ends);
fn a_break_glass_grant_opens_the_document_until_it_ends(database: TestDatabase) {
    let world = world(database);
    let app = &world.app;
    let entry = upload_letter(&world);
    // gum@'s team does not hold the patient; the patient is in gum's organisation.
    let context = world.context("gum", "gum@example.org");
    assert!(matches!(app.read_document_as(context.account, Channel::Web, entry.id), Err(AppError::Denied)));
    let reason = kith_core::text::Reason::parse("Unconscious on arrival in the emergency department").unwrap();
    let grant = app.open_break_glass(&context, world.patient.id, &reason).unwrap();
    let document = app.read_document_as(context.account, Channel::Web, entry.id).unwrap();
    assert_eq!(document.basis, Basis::BreakGlass { grant: grant.id });
    assert_eq!(document.bytes, pdf());
    let reads = reads_of(&world, context.account);
    let read = reads.last().unwrap();
    assert_eq!(read.record.basis.as_deref(), Some("break_glass"));
    assert_eq!(read.record.subject, Some(grant.id.to_string()));
    assert_eq!(read.record.acting_team, Some(context.team));

    app.end_break_glass(&context, world.patient.id).unwrap();
    assert!(matches!(app.read_document_as(context.account, Channel::Web, entry.id), Err(AppError::Denied)));
}

on_each_engine!(a_patient_adds_a_document_to_their_own_record);
fn a_patient_adds_a_document_to_their_own_record(database: TestDatabase) {
    let world = world(database);
    let app = &world.app;
    world.add_patient_addresses();
    let patient_account = account_of(&world, "patient@example.org");
    let jpeg = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0\xFF\xD9".to_vec();
    let before = entry_count(&world);
    let refused =
        app.add_own_document(patient_account, Channel::Web, None, title("Scan"), "scan.jpg", b"not an image at all");
    assert!(
        matches!(refused, Err(AppError::Invalid(message)) if message == DocumentRefusal::NotAllowedType.to_string())
    );
    assert_eq!(entry_count(&world), before);

    let entry = app
        .add_own_document(patient_account, Channel::Web, Some(PrivacyLabel::General), title("Scan"), "scan.jpg", &jpeg)
        .unwrap();
    assert_eq!(entry.kind, EntryKind::Document);
    assert_eq!(entry.author_account, Some(patient_account));
    assert_eq!(entry.authored_by, team_id(&world, code(), "prt"));
    let own = app.read_document_as(patient_account, Channel::Web, entry.id).unwrap();
    assert_eq!((own.media_type, own.bytes.as_slice(), own.basis), ("image/jpeg", jpeg.as_slice(), Basis::SelfAccess));
    // Teams see it through the labels the patient gave them.
    let pro = account_of(&world, "pro@example.org");
    let seen = app.read_document_as(pro, Channel::Web, entry.id).unwrap();
    assert_eq!(seen.basis, Basis::Consent { team: team_id(&world, code(), "mh") });
    let gum_professional = account_of(&world, "gum@example.org");
    assert!(matches!(app.read_document_as(gum_professional, Channel::Web, entry.id), Err(AppError::Denied)));
    // A professional has no own record to add to.
    assert!(matches!(
        app.add_own_document(pro, Channel::Web, None, title("Scan"), "scan.jpg", &jpeg),
        Err(AppError::Denied)
    ));
}
