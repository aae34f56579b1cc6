//! The test world the use-case, web and CLI suites share (feature `app`): one organisation
//! (RXH, Riverside Hospitals), two speciality teams, their coordinators and professionals,
//! and a patient with entries under all four labels; and the small helpers every suite
//! needs (an operator, parsed codes, aliases and addresses, a fake password hash, a clock
//! that starts at [`START`]).

use std::sync::Arc;

use crate::TestDatabase;
use kith_app::*;
use kith_core::audit::Channel;
use kith_core::model::{Entry, Patient};
use kith_core::patient::{Demographics, EntryKind, NhsNumber, Sex};
use kith_core::team::{MembershipRole, MembershipStatus};
use kith_core::text::{EmailAddress, Name, OrganisationCode, TeamAlias, Title};
use kith_core::{Date, LabelSet, PrivacyLabel, Timestamp};

pub const START: Timestamp = Timestamp::from_micros(1_795_000_000_000_000);
/// Not a real hash: tests do not sign in, and Argon2 in debug builds is slow.
pub const FAKE_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$dGVzdHNhbHQ$dGVzdGhhc2g";

pub fn operator() -> Operator {
    Operator { name: "test-operator".into() }
}

pub fn code() -> OrganisationCode {
    OrganisationCode::parse("RXH").unwrap()
}

pub fn alias(text: &str) -> TeamAlias {
    TeamAlias::parse(text).unwrap()
}

pub fn email(text: &str) -> EmailAddress {
    EmailAddress::parse(text).unwrap()
}

pub struct World {
    pub database: TestDatabase,
    pub app: App,
    pub clock: Arc<ManualClock>,
    pub patient: Patient,
    pub entries: Vec<Entry>,
}

impl World {
    pub fn context(&self, team: &str, who: &str) -> ProfessionalContext {
        self.app.professional_context(&code(), &alias(team), &email(who), Channel::Cli).unwrap()
    }

    pub fn add_member(&self, team: &str, who: &str, role: MembershipRole) -> AddedMember {
        self.add_member_in(code(), team, who, role)
    }

    /// `add_member` in another organisation's team.
    pub fn add_member_in(
        &self,
        organisation: OrganisationCode,
        team: &str,
        who: &str,
        role: MembershipRole,
    ) -> AddedMember {
        self.add_member_with_password(organisation, team, who, role, FAKE_HASH)
    }

    /// `add_member_in` with a real password's hash, for suites that sign in.
    pub fn add_member_with_password(
        &self,
        organisation: OrganisationCode,
        team: &str,
        who: &str,
        role: MembershipRole,
        password_hash: &str,
    ) -> AddedMember {
        self.app
            .add_member(
                &operator(),
                &NewMember {
                    organisation,
                    team: alias(team),
                    email: email(who),
                    name: Name::parse("name", who.split('@').next().unwrap()).unwrap(),
                    role,
                    password_hash: Some(password_hash.into()),
                },
            )
            .unwrap()
    }

    /// Deactivates `who`'s membership of the world organisation's `team`, as the operator.
    pub fn deactivate_member(&self, team: &str, who: &str) {
        self.app
            .set_membership_status(
                &operator(),
                &code(),
                &alias(team),
                &email(who),
                MembershipStatus::Deactivated,
                false,
            )
            .unwrap();
    }

    /// Patients' addresses a professionals' CSV may name: `patient@example.org`, the login
    /// of the world's patient (registered here), and `unregistered@example.org`, on the
    /// record of a patient who has not registered.
    pub fn add_patient_addresses(&self) {
        self.app
            .register_patient_account(&operator(), &code(), self.patient.id, &email("patient@example.org"), FAKE_HASH)
            .unwrap();
        self.app
            .create_patient(
                &operator(),
                &NewPatient {
                    organisation: code(),
                    demographics: Demographics {
                        email: Some(email("unregistered@example.org")),
                        ..demographics("Una")
                    },
                    nhs_number: None,
                    local_identifiers: vec![],
                    teams: vec![],
                },
            )
            .unwrap();
    }
}

pub fn app_on(database: &TestDatabase) -> (App, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START));
    (App::new(database.store(), clock.clone()), clock)
}

pub fn demographics(given: &str) -> Demographics {
    Demographics {
        family_name: Name::parse("family", "Okafor").unwrap(),
        given_name: Name::parse("given", given).unwrap(),
        birth_date: Date::parse("1971-09-14").unwrap(),
        sex: Sex::Female,
        email: None,
        mobile: None,
        address: None,
    }
}

/// Builds the world on `database`: team `mh` (general, mental health; live; coordinators
/// c1 and c2; professional pro@), team `gum` (general, sexual health; professional
/// gum@), a patient linked to `mh`, and four entries (one per label) written by the PRT.
pub fn world(database: TestDatabase) -> World {
    let (app, clock) = app_on(&database);
    let op = operator();
    app.create_organisation(
        &op,
        &NewOrganisation {
            code: code(),
            name: Name::parse("name", "Riverside Hospitals").unwrap(),
            break_glass_duration: None,
        },
    )
    .unwrap();
    app.create_team(
        &op,
        &code(),
        &Name::parse("n", "Mental Health").unwrap(),
        &alias("mh"),
        LabelSet::from_labels([PrivacyLabel::General, PrivacyLabel::MentalHealth]),
    )
    .unwrap();
    app.create_team(
        &op,
        &code(),
        &Name::parse("n", "Sexual Health").unwrap(),
        &alias("gum"),
        LabelSet::from_labels([PrivacyLabel::General, PrivacyLabel::SexualHealth]),
    )
    .unwrap();
    let world = World { database, app, clock, patient: placeholder_patient(), entries: Vec::new() };
    world.add_member("mh", "c1@example.org", MembershipRole::Coordinator);
    world.add_member("mh", "c2@example.org", MembershipRole::Coordinator);
    world.app.go_live(&op, &code(), &alias("mh")).unwrap();
    world.add_member("mh", "pro@example.org", MembershipRole::Professional);
    world.add_member("gum", "gum@example.org", MembershipRole::Professional);
    let patient = world
        .app
        .create_patient(
            &op,
            &NewPatient {
                organisation: code(),
                demographics: demographics("Ngozi"),
                nhs_number: Some(NhsNumber::parse("9434765919").unwrap()),
                local_identifiers: vec![],
                teams: vec![alias("mh")],
            },
        )
        .unwrap();
    let entries = PrivacyLabel::ALL
        .into_iter()
        .map(|label| {
            world
                .app
                .add_entry(
                    &EntryAuthor::Operator { operator: &op, organisation: &code(), team: &alias("prt") },
                    patient.id,
                    &NewEntry {
                        kind: EntryKind::Document,
                        label: Some(label),
                        title: Title::parse(label.code()).unwrap(),
                        body: String::new(),
                        effective_at: START,
                    },
                )
                .unwrap()
        })
        .collect();
    World { patient, entries, ..world }
}

fn placeholder_patient() -> Patient {
    Patient {
        id: kith_core::PatientId::from_uuid(uuid::Uuid::nil()),
        nhs_number: None,
        demographics: demographics("placeholder"),
        registration: kith_core::patient::RegistrationStatus::Unregistered,
        account: None,
        sharing_disabled: false,
        merged_into: None,
        created_at: START,
        updated_at: START,
    }
}

pub fn labels_seen(view: &RecordView) -> Vec<PrivacyLabel> {
    let mut labels: Vec<PrivacyLabel> = view.entries.iter().filter_map(|visible| visible.entry.label).collect();
    labels.sort();
    labels
}

/// `count` valid NHS numbers (modulus 11) starting with `prefix` (two digits), in order.
pub fn valid_nhs_numbers(prefix: &str, count: usize) -> Vec<String> {
    (0u32..)
        .map(|serial| format!("{prefix}{serial:07}"))
        .filter_map(|base| {
            let total: u32 = base.chars().zip((2..=10).rev()).map(|(d, w)| d.to_digit(10).unwrap() * w).sum();
            match 11 - total % 11 {
                10 => None,
                11 => Some(format!("{base}0")),
                check => Some(format!("{base}{check}")),
            }
        })
        .take(count)
        .collect()
}
