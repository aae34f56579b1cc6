//! Patients: their records, identifiers, care links, consent and entries.

use kith_core::access::{EntryFacts, decide_team_discharge, decide_team_link, decide_write};
use kith_core::audit::{Actor, AuditRecord, Channel, Outcome};
use kith_core::consent::{
    ConsentChangeFacts, ConsentChanger, ConsentRefusal, LinkBasis, LinkState, NewLinkFacts, check_new_link,
    decide_consent_change,
};
use kith_core::model::{Account, CareLink, Entry, Patient};
use kith_core::patient::{Demographics, EntryKind, LocalIdentifier, NhsNumber, RegistrationStatus};
use kith_core::team::{AccountStatus, TeamKind};
use kith_core::text::{EmailAddress, Name, OrganisationCode, Reason, TeamAlias, Title};
use kith_core::{AccountId, Decision, DenyReason, EntryId, LabelSet, PatientId, PrivacyLabel, TeamId, Timestamp};
use kith_store::Tx;

use crate::organisations::{organisation_by_code, professional_actor, team_by_alias};
use crate::outbox::Notice;
use crate::{App, AppError, AppResult, AuditBuilder, Operator, ProfessionalContext, new_uuid};
use kith_core::notify::{PatientEvent, notification_reach};

/// A new patient record, created in an organisation.
#[derive(Clone, Debug)]
pub struct NewPatient {
    pub organisation: OrganisationCode,
    pub demographics: Demographics,
    pub nhs_number: Option<NhsNumber>,
    pub local_identifiers: Vec<LocalIdentifier>,
    /// Speciality teams to link besides the Patient Record Team, with their default labels.
    pub teams: Vec<TeamAlias>,
}

/// Changes to a patient's record; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct PatientChanges {
    pub family_name: Option<Name>,
    pub given_name: Option<Name>,
    pub birth_date: Option<kith_core::Date>,
    pub sex: Option<kith_core::patient::Sex>,
    pub email: Option<EmailAddress>,
    pub mobile: Option<kith_core::text::MobileNumber>,
    pub address: Option<kith_core::text::PostalAddress>,
    pub nhs_number: Option<NhsNumber>,
    pub add_local_identifiers: Vec<LocalIdentifier>,
}

/// A new record entry.
#[derive(Clone, Debug)]
pub struct NewEntry {
    pub kind: EntryKind,
    pub label: Option<PrivacyLabel>,
    pub title: Title,
    pub body: String,
    pub effective_at: Timestamp,
}

impl NewEntry {
    /// An uploaded document's entry: its file is stored with it.
    pub fn document(label: Option<PrivacyLabel>, title: Title, now: Timestamp) -> Self {
        NewEntry { kind: EntryKind::Document, label, title, body: String::new(), effective_at: now }
    }

    /// The first version of the entry, authored by `team` (and `author`, a person).
    pub(crate) fn to_entry(
        &self,
        patient: PatientId,
        team: TeamId,
        author: Option<AccountId>,
        now: Timestamp,
    ) -> Entry {
        Entry {
            id: EntryId::from_uuid(new_uuid()),
            patient,
            kind: self.kind,
            label: self.label,
            authored_by: team,
            author_account: author,
            effective_at: self.effective_at,
            recorded_at: now,
            title: self.title.clone(),
            body: self.body.clone(),
            version: 1,
            status: None,
            source_key: None,
            source_message: None,
            ends_at: None,
        }
    }
}

/// Who brings a patient into a team, or discharges them.
#[derive(Clone, Debug)]
pub enum LinkActor<'a> {
    Operator(&'a Operator),
    /// An organisation's HL7 feed (or the operator importing its messages).
    Feed(Actor),
    /// A professional of the team, with the consent they record.
    Professional {
        context: &'a ProfessionalContext,
        explicit_consent: bool,
    },
}

/// Who writes an entry.
#[derive(Clone, Debug)]
pub enum EntryAuthor<'a> {
    /// Loaded by the operator on behalf of one of the organisation's teams (set-up, data
    /// loads): the team is the author.
    Operator { operator: &'a Operator, organisation: &'a OrganisationCode, team: &'a TeamAlias },
    /// A professional acting through their team: the team is the author.
    Professional(&'a ProfessionalContext),
}

/// Who changes a team's labels for a patient.
#[derive(Clone, Debug)]
pub enum ConsentActor<'a> {
    /// The patient, signed in to their own record.
    Patient { account: AccountId, channel: Channel },
    /// A professional of the team, on the patient's behalf, with a reason.
    Professional { context: &'a ProfessionalContext, reason: Option<&'a Reason> },
}

/// Kinds and labels of a set of entries, for an audit event.
pub(crate) fn summarise<'e>(entries: impl IntoIterator<Item = &'e Entry>) -> (String, LabelSet) {
    let mut kinds: Vec<EntryKind> = Vec::new();
    let mut labels = LabelSet::EMPTY;
    for entry in entries {
        if !kinds.contains(&entry.kind) {
            kinds.push(entry.kind);
        }
        if let Some(label) = entry.label {
            labels = labels.with(label);
        }
    }
    kinds.sort();
    (kinds.iter().map(|kind| kind.code()).collect::<Vec<_>>().join(","), labels)
}

impl App {
    /// Creates a patient record in an organisation (linked to its Patient Record Team) and
    /// links the listed speciality teams with their default labels.
    pub fn create_patient(&self, operator: &Operator, new: &NewPatient) -> AppResult<Patient> {
        let now = self.now();
        self.store.write(|tx| {
            let organisation = organisation_by_code(tx, &new.organisation)?;
            let prt = tx.patient_record_team(organisation.id)?.ok_or_else(|| {
                AppError::NotFound(format!("organisation {} has no Patient Record Team", organisation.code))
            })?;
            let mut teams = Vec::new();
            for alias in &new.teams {
                let team = team_by_alias(tx, &organisation, alias)?;
                if team.kind == TeamKind::Speciality && !teams.iter().any(|t: &kith_core::model::Team| t.id == team.id)
                {
                    teams.push(team);
                }
            }
            let operator_actor = LinkActor::Operator(operator);
            let patient = insert_patient_record(
                tx,
                &operator_actor,
                &organisation,
                &prt,
                &new.demographics,
                new.nhs_number.as_ref(),
                &new.local_identifiers,
                IdentifierCheck::Needed,
                now,
            )?;
            for team in &teams {
                write_link(tx, &operator_actor, &patient, team, team.default_labels, LinkBasis::AddedByOperator, now)?;
            }
            Ok(patient)
        })
    }

    /// Changes a patient's record in an organisation: the fields given replace the stored
    /// ones, and local identifiers are added under the organisation's authorities. An NHS
    /// number, email or local identifier that belongs to another record is refused, and
    /// nothing is changed.
    pub fn update_patient(
        &self,
        operator: &Operator,
        organisation: &OrganisationCode,
        patient: PatientId,
        changes: &PatientChanges,
    ) -> AppResult<Patient> {
        let now = self.now();
        self.store.write(|tx| {
            let org = organisation_by_code(tx, organisation)?;
            let mut record =
                tx.patient(patient)?.ok_or_else(|| AppError::NotFound(format!("no patient has the id {patient}")))?;
            if !tx.patient_in_organisation(patient, org.id)? {
                return Err(AppError::Invalid(format!("the patient is not in organisation {}", org.code)));
            }
            let mut changed = Vec::new();
            let previous_email = record.demographics.email.clone();
            let d = &mut record.demographics;
            if let Some(family) = &changes.family_name {
                d.family_name = family.clone();
                changed.push("family_name");
            }
            if let Some(given) = &changes.given_name {
                d.given_name = given.clone();
                changed.push("given_name");
            }
            if let Some(birth_date) = changes.birth_date {
                d.birth_date = birth_date;
                changed.push("birth_date");
            }
            if let Some(sex) = changes.sex {
                d.sex = sex;
                changed.push("sex");
            }
            if let Some(mobile) = &changes.mobile {
                d.mobile = Some(mobile.clone());
                changed.push("mobile");
            }
            if let Some(address) = &changes.address {
                d.address = Some(address.clone());
                changed.push("address");
            }
            if let Some(email) = &changes.email {
                ensure_email_free(tx, email, Some(patient))?;
                d.email = Some(email.clone());
                changed.push("email");
            }
            if let Some(nhs_number) = &changes.nhs_number {
                if tx.patient_by_nhs_number(nhs_number)?.is_some_and(|other| other.id != patient) {
                    return Err(AppError::Conflict(format!(
                        "another patient record has NHS number {}",
                        nhs_number.formatted()
                    )));
                }
                record.nhs_number = Some(nhs_number.clone());
                changed.push("nhs_number");
            }
            for identifier in &changes.add_local_identifiers {
                match tx.patient_by_local_identifier(org.id, identifier)? {
                    Some(other) if other.id == patient => continue,
                    Some(_) => {
                        return Err(AppError::Conflict(format!(
                            "another patient record has the identifier {identifier} in {}",
                            org.code
                        )));
                    }
                    None => tx.insert_patient_identifier(patient, org.id, identifier, now)?,
                }
                changed.push("local_identifier");
            }
            if changed.is_empty() {
                return Err(AppError::Invalid("nothing to change: give at least one field".to_owned()));
            }
            record.updated_at = now;
            tx.put_patient(&record)?;
            changed.dedup();
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "patient.update")
                    .organisation(org.id)
                    .patient(patient)
                    .basis("administration")
                    .subject(changed.join(","))
                    .build(),
            );
            crate::invitations::invite_on_new_email(
                tx,
                operator.actor(),
                Channel::Cli,
                &org,
                previous_email.as_ref(),
                &mut record,
                now,
            )?;
            Ok(record)
        })
    }

    /// Finds a patient by NHS number (operator paths).
    pub fn patient_by_nhs_number(&self, nhs_number: &NhsNumber) -> AppResult<Patient> {
        self.store.read(|tx| {
            tx.patient_by_nhs_number(nhs_number)?
                .ok_or_else(|| AppError::NotFound(format!("no patient has NHS number {}", nhs_number.formatted())))
        })
    }

    /// Brings a patient into a team. Labels default to the team's; a professional may
    /// choose others with the patient's explicit consent.
    pub fn link_patient(
        &self,
        actor: &LinkActor<'_>,
        patient: PatientId,
        organisation: &OrganisationCode,
        alias: &TeamAlias,
        labels: Option<LabelSet>,
    ) -> AppResult<CareLink> {
        let now = self.now();
        self.store
            .write(|tx| {
                let org = organisation_by_code(tx, organisation)?;
                let team = team_by_alias(tx, &org, alias)?;
                let Some(record) = tx.patient(patient)? else {
                    return match actor {
                        LinkActor::Operator(_) | LinkActor::Feed(_) => {
                            Err(AppError::NotFound(format!("no patient has the id {patient}")))
                        }
                        LinkActor::Professional { .. } => Ok(Err(AppError::Denied)),
                    };
                };
                let basis = match actor {
                    LinkActor::Operator(_) => LinkBasis::AddedByOperator,
                    LinkActor::Feed(_) => LinkBasis::Hl7ImpliedConsent,
                    LinkActor::Professional { context, explicit_consent } => {
                        let decision = match tx.record_access_facts(context.account, team.id, patient, now)? {
                            _ if context.team != team.id => Err(DenyReason::NotAMemberOfTeam),
                            Some(facts) => decide_team_link(&facts),
                            None => Err(DenyReason::NoRelationshipWithPatient),
                        };
                        if let Err(reason) = decision {
                            tx.audit(
                                AuditBuilder::professional(now, context, "care_link.create", patient)
                                    .team(team.id)
                                    .outcome(Outcome::Denied)
                                    .reason(reason)
                                    .build(),
                            );
                            return Ok(Err(AppError::Denied));
                        }
                        professional_link_basis(*explicit_consent)
                    }
                };
                let patient_in_organisation = tx.patient_in_organisation(patient, org.id)?;
                check_new_link(&NewLinkFacts {
                    team_kind: team.kind,
                    team_status: team.status,
                    sharing_disabled: record.sharing_disabled,
                    patient_in_organisation,
                    by_professional: matches!(actor, LinkActor::Professional { .. }),
                })?;
                let labels = match (actor, labels) {
                    (LinkActor::Professional { explicit_consent: false, .. }, Some(_)) => {
                        return Err(AppError::Invalid(
                            "labels other than the team's defaults need the patient's explicit consent".to_owned(),
                        ));
                    }
                    (_, Some(labels)) => labels,
                    (_, None) => team.default_labels,
                };
                Ok(Ok(write_link(tx, actor, &record, &team, labels, basis, now)?))
            })
            .and_then(|outcome| outcome)
    }

    /// Discharges a patient from a team: the team keeps seeing only what it wrote.
    pub fn discharge_patient(
        &self,
        actor: &LinkActor<'_>,
        patient: PatientId,
        organisation: &OrganisationCode,
        alias: &TeamAlias,
    ) -> AppResult<CareLink> {
        let now = self.now();
        self.store
            .write(|tx| {
                let org = organisation_by_code(tx, organisation)?;
                let team = team_by_alias(tx, &org, alias)?;
                let (actor_audit, channel) = match actor {
                    LinkActor::Operator(operator) => (operator.actor(), Channel::Cli),
                    LinkActor::Feed(feed) => (feed.clone(), Channel::Hl7),
                    LinkActor::Professional { context, .. } => {
                        let decision = match tx.record_access_facts(context.account, team.id, patient, now)? {
                            _ if context.team != team.id => Err(DenyReason::NotAMemberOfTeam),
                            Some(facts) => decide_team_discharge(&facts),
                            None => Err(DenyReason::NoRelationshipWithPatient),
                        };
                        if let Err(reason) = decision {
                            tx.audit(
                                AuditBuilder::professional(now, context, "care_link.discharge", patient)
                                    .team(team.id)
                                    .outcome(Outcome::Denied)
                                    .reason(reason)
                                    .build(),
                            );
                            return Ok(Err(AppError::Denied));
                        }
                        (professional_actor(context), context.channel)
                    }
                };
                let Some(mut link) = tx.care_link(patient, team.id)?.filter(CareLink::is_active) else {
                    return Err(AppError::Conflict(format!("the patient is not in team {alias}")));
                };
                if team.kind == TeamKind::PatientRecord {
                    return Err(AppError::Invalid(
                        "a patient is not discharged from the Patient Record Team: it is their record in the organisation".to_owned(),
                    ));
                }
                link.discharged_at = Some(now);
                link.updated_at = now;
                tx.put_care_link(&link)?;
                tx.audit(
                    AuditBuilder::new(now, actor_audit, channel, "care_link.discharge")
                        .organisation(org.id)
                        .team(team.id)
                        .patient(patient)
                        .basis("administration")
                        .build(),
                );
                Ok(Ok(link))
            })
            .and_then(|outcome| outcome)
    }

    /// Changes the labels a team sees of a patient's record: by the patient, or on the
    /// patient's behalf, with a reason, as [`decide_consent_change`] allows — the Patient
    /// Record Team's data-quality staff may add to their own team the labels the
    /// organisation allows ([`App::set_on_behalf_labels`]), and any team's professionals may
    /// remove labels from their own team. A registered patient is told at once (outbox); an
    /// unregistered one is shown every change made on their behalf when they register (the
    /// walkthrough). Every attempt is audited, a professional's under the team's
    /// organisation (its privacy officer lists them: [`App::officer_review`]); a
    /// professional refused for anything about the record gets the same answer, after the
    /// same work, whether or not the record exists.
    pub fn change_consent(
        &self,
        actor: &ConsentActor<'_>,
        patient: PatientId,
        team: TeamId,
        labels: LabelSet,
    ) -> AppResult<CareLink> {
        let now = self.now();
        self.store
            .write(|tx| {
                // The same statements whether or not the record, the team or the link exist.
                let record = tx.patient(patient)?;
                let team_row = tx.team(team)?;
                let on_behalf_labels = tx.on_behalf_labels(
                    team_row
                        .as_ref()
                        .map_or(kith_core::OrganisationId::from_uuid(uuid::Uuid::nil()), |t| t.organisation),
                )?;
                let link = tx.care_link(patient, team)?;
                let (changer, event, reason) = match actor {
                    ConsentActor::Patient { account, channel } => {
                        let status = tx.account(*account)?.map(|row| row.status);
                        let event =
                            AuditBuilder::new(now, Actor::Account(*account), *channel, "consent.change").team(team);
                        match (status, &record) {
                            (Some(account_status), Some(record))
                                if kith_core::access::is_own_record(record.account, *account) =>
                            {
                                (ConsentChanger::Patient { account_status }, event, None)
                            }
                            _ => {
                                let event = match &record {
                                    Some(record) => event.patient(record.id),
                                    None => event,
                                };
                                tx.audit(
                                    event.outcome(Outcome::Denied).reason("not the account of this patient").build(),
                                );
                                return Ok(Err(AppError::Denied));
                            }
                        }
                    }
                    ConsentActor::Professional { context, reason } => {
                        let status = tx.account(context.account)?.map(|row| row.status);
                        let membership = if context.team == team {
                            tx.membership(context.account, team)?
                                .map(|m| kith_core::access::MembershipFacts { role: m.role, status: m.status })
                        } else {
                            None
                        };
                        let organisation = team_row.as_ref().map_or(context.organisation, |t| t.organisation);
                        let event =
                            AuditBuilder::new(now, professional_actor(context), context.channel, "consent.change")
                                .organisation(organisation)
                                .team(team);
                        let changer = ConsentChanger::Professional {
                            // An account that no longer exists is refused like a disabled one.
                            account_status: status.unwrap_or(AccountStatus::Disabled),
                            membership,
                            reason: *reason,
                        };
                        (changer, event, reason.map(|reason| reason.to_string()))
                    }
                };
                let event = match &record {
                    Some(record) => event.patient(record.id),
                    None => event,
                };
                let state = match (&record, &link) {
                    (None, _) => LinkState::NoRecord,
                    (Some(_), None) => LinkState::NotLinked,
                    (Some(_), Some(link)) if !link.is_active() => LinkState::Discharged,
                    (Some(_), Some(link)) => LinkState::Active { labels: link.labels },
                };
                let facts = ConsentChangeFacts {
                    team_kind: team_row.as_ref().map_or(TeamKind::Speciality, |t| t.kind),
                    on_behalf_labels,
                    link: state,
                    requested: labels,
                    sharing_disabled: record.as_ref().is_some_and(|record| record.sharing_disabled),
                };
                let basis = match decide_consent_change(&changer, &facts) {
                    Ok(basis) => basis,
                    Err(refusal) => {
                        let why = match &refusal {
                            ConsentRefusal::Denied(deny) => deny.to_string(),
                            other => other.to_string(),
                        };
                        let why = match &reason {
                            Some(stated) => format!("{why}; labels asked: {labels}; stated reason: {stated}"),
                            None => format!("{why}; labels asked: {labels}"),
                        };
                        tx.audit(event.outcome(Outcome::Denied).reason(why).build());
                        return Ok(Err(refusal.into()));
                    }
                };
                let (Some(record), Some(mut link)) = (record, link) else {
                    unreachable!("the rule allows a change only on an active link of a record")
                };
                let previous = link.labels;
                link.labels = labels;
                link.basis = basis;
                link.changed_by = match actor {
                    ConsentActor::Patient { account, .. } => Some(*account),
                    ConsentActor::Professional { context, .. } => Some(context.account),
                };
                link.updated_at = now;
                tx.put_care_link(&link)?;
                let mut event = event
                    .basis(basis.code())
                    .data(String::new(), labels)
                    .subject(format!("labels {previous} -> {labels}"));
                if let Some(reason) = reason {
                    event = event.reason(reason);
                }
                tx.audit(event.build());
                if basis == LinkBasis::OnBehalfOfPatient && previous != labels {
                    notify_patient(tx, &record, PatientEvent::SharingChanged, Notice::ConsentChangedPatient, now)?;
                }
                if basis == LinkBasis::PatientChoice
                    && previous != labels
                    && let Some(team_row) = &team_row
                {
                    // The team's coordinators are told that a patient changed what it sees.
                    for (membership, account) in tx.team_members(team_row.id)? {
                        if kith_core::coordination::check_coordinator(
                            account.status,
                            Some(kith_core::access::MembershipFacts {
                                role: membership.role,
                                status: membership.status,
                            }),
                        )
                        .is_ok()
                        {
                            let notice =
                                Notice::ConsentChangedCoordinator { account: account.id, team: team_row.name.clone() };
                            tx.enqueue(&notice.email(&account.email, now))?;
                        }
                    }
                }
                Ok(Ok(link))
            })
            .and_then(|outcome| outcome)
    }

    /// Adds an entry to a patient's record, authored by a team.
    pub fn add_entry(&self, author: &EntryAuthor<'_>, patient: PatientId, new: &NewEntry) -> AppResult<Entry> {
        let now = self.now();
        self.store
            .write(|tx| add_entry_in(tx, author, patient, new, now, &|tx, entry| Ok(tx.insert_entry(entry)?)))
            .and_then(|outcome| outcome)
    }

    /// Assisted registration: gives a patient record in `organisation` an active account (the
    /// operator, after checking identity). The web registration flow comes with invitations.
    pub fn register_patient_account(
        &self,
        operator: &Operator,
        organisation: &OrganisationCode,
        patient: PatientId,
        email: &EmailAddress,
        password_hash: &str,
    ) -> AppResult<Account> {
        let now = self.now();
        self.store.write(|tx| {
            let mut record =
                tx.patient(patient)?.ok_or_else(|| AppError::NotFound(format!("no patient has the id {patient}")))?;
            let org = organisation_by_code(tx, organisation)?;
            if !tx.patient_in_organisation(patient, org.id)? {
                return Err(AppError::Invalid(format!("the patient is not in organisation {}", org.code)));
            }
            if record.account.is_some() {
                return Err(AppError::Conflict("the patient already has an account".to_owned()));
            }
            ensure_email_free(tx, email, Some(patient))?;
            let account = match tx.account_by_email(email)? {
                Some(existing) => {
                    if tx.patient_by_account(existing.id)?.is_some() {
                        return Err(AppError::Conflict(format!("the account {email} already holds a patient record")));
                    }
                    existing
                }
                None => {
                    let account = Account {
                        id: AccountId::from_uuid(new_uuid()),
                        email: email.clone(),
                        name: Name::parse(
                            "name",
                            &format!("{} {}", record.demographics.given_name, record.demographics.family_name),
                        )?,
                        status: AccountStatus::Active,
                        created_at: now,
                    };
                    tx.insert_account(&account, Some(password_hash))?;
                    account
                }
            };
            record.account = Some(account.id);
            record.registration = RegistrationStatus::Registered;
            record.demographics.email = Some(email.clone());
            record.updated_at = now;
            tx.put_patient(&record)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "patient.register")
                    .patient(patient)
                    .subject(account.id)
                    .basis("administration")
                    .build(),
            );
            Ok(account)
        })
    }
}

/// The body of [`App::add_entry`], inside its write transaction: decides (a professional's
/// write with `decide_write` for their team), makes the entry, writes it with `insert` (the
/// entry alone, or with what comes with it, such as a document's file) and audits it. A
/// denial is audited and answered `Ok(Err(AppError::Denied))`, so that the event commits.
pub(crate) fn add_entry_in(
    tx: &mut Tx<'_>,
    author: &EntryAuthor<'_>,
    patient: PatientId,
    new: &NewEntry,
    now: Timestamp,
    insert: &dyn Fn(&mut Tx<'_>, &Entry) -> AppResult<()>,
) -> AppResult<AppResult<Entry>> {
    let (team, author_account, actor, channel, basis) = match author {
        EntryAuthor::Operator { operator, organisation, team } => {
            let org = organisation_by_code(tx, organisation)?;
            let team = team_by_alias(tx, &org, team)?;
            if tx.patient(patient)?.is_none() {
                return Err(AppError::NotFound(format!("no patient has the id {patient}")));
            }
            if !tx.patient_in_organisation(patient, org.id)? {
                return Err(AppError::Invalid(format!("the patient is not in organisation {}", org.code)));
            }
            (team.id, None, operator.actor(), Channel::Cli, "administration")
        }
        EntryAuthor::Professional(context) => {
            let decision = match tx.record_access_facts(context.account, context.team, patient, now)? {
                Some(facts) => decide_write(&facts),
                None => Decision::Deny(kith_core::DenyReason::NoRelationshipWithPatient),
            };
            match decision {
                Decision::Allow(basis) => {
                    (context.team, Some(context.account), professional_actor(context), context.channel, basis.code())
                }
                Decision::Deny(reason) => {
                    tx.audit(
                        AuditBuilder::professional(now, context, "entry.create", patient)
                            .outcome(Outcome::Denied)
                            .reason(reason)
                            .build(),
                    );
                    return Ok(Err(AppError::Denied));
                }
            }
        }
    };
    let entry = new.to_entry(patient, team, author_account, now);
    insert(tx, &entry)?;
    if let Some(record) = tx.patient(patient)? {
        notify_new_entries(tx, &record, now)?;
    }
    let (kinds, labels) = summarise([&entry]);
    tx.audit(
        AuditBuilder::new(now, actor, channel, "entry.create")
            .team(team)
            .patient(patient)
            .basis(basis)
            .data(kinds, labels)
            .subject(entry.id)
            .build(),
    );
    Ok(Ok(entry))
}

/// One email belongs to one record: refuses `email` when a record other than `own_record`
/// has it.
pub(crate) fn ensure_email_free(tx: &mut Tx<'_>, email: &EmailAddress, own_record: Option<PatientId>) -> AppResult<()> {
    if tx.patient_by_email(email)?.is_some_and(|other| Some(other.id) != own_record) {
        return Err(AppError::Conflict(format!(
            "another patient record already has the email {email} (one email belongs to one record)"
        )));
    }
    Ok(())
}

/// Who a link change is audited as, through which channel, and the account that made it.
pub(crate) fn link_actor(actor: &LinkActor<'_>) -> (Actor, Channel, Option<AccountId>) {
    match actor {
        LinkActor::Operator(operator) => (operator.actor(), Channel::Cli, None),
        LinkActor::Feed(feed) => (feed.clone(), Channel::Hl7, None),
        LinkActor::Professional { context, .. } => {
            (professional_actor(context), context.channel, Some(context.account))
        }
    }
}

/// Whether [`insert_patient_record`] must first check that no record has the identifiers,
/// or the caller has just looked them up in the same transaction (the HL7 feed) and found
/// none. The database's unique constraints back either way.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum IdentifierCheck {
    Needed,
    DoneByCaller,
}

/// Creates a patient record in an organisation: refuses an NHS number, email or local
/// identifier that another record has, writes the record and its identifiers, audits it,
/// and links it to the organisation's Patient Record Team. The identifiers are not looked
/// up again when the caller has just done so ([`IdentifierCheck::DoneByCaller`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn insert_patient_record(
    tx: &mut Tx<'_>,
    who: &LinkActor<'_>,
    organisation: &kith_core::model::Organisation,
    prt: &kith_core::model::Team,
    demographics: &Demographics,
    nhs_number: Option<&NhsNumber>,
    local_identifiers: &[LocalIdentifier],
    identifiers: IdentifierCheck,
    now: Timestamp,
) -> AppResult<Patient> {
    if identifiers == IdentifierCheck::Needed {
        if let Some(nhs_number) = nhs_number
            && tx.patient_by_nhs_number(nhs_number)?.is_some()
        {
            return Err(AppError::Conflict(format!(
                "a patient with NHS number {} already exists",
                nhs_number.formatted()
            )));
        }
        for identifier in local_identifiers {
            if tx.patient_by_local_identifier(organisation.id, identifier)?.is_some() {
                return Err(AppError::Conflict(format!(
                    "a patient with the identifier {identifier} already exists in {}",
                    organisation.code
                )));
            }
        }
    }
    if let Some(email) = &demographics.email {
        ensure_email_free(tx, email, None)?;
    }
    let mut patient = new_patient_record(demographics, nhs_number, now);
    tx.put_patient(&patient)?;
    for identifier in local_identifiers {
        tx.insert_patient_identifier(patient.id, organisation.id, identifier, now)?;
    }
    let (actor, channel, _) = link_actor(who);
    tx.audit(patient_created_event(actor, channel, organisation, prt, patient.id, now));
    put_link(tx, who, &patient, prt, prt.default_labels, LinkBasis::OrganisationRecord, None, now)?;
    let (actor, channel, _) = link_actor(who);
    crate::invitations::invite_on_new_email(tx, actor, channel, organisation, None, &mut patient, now)?;
    Ok(patient)
}

/// A new, unregistered patient record (not yet written).
pub(crate) fn new_patient_record(
    demographics: &Demographics,
    nhs_number: Option<&NhsNumber>,
    now: Timestamp,
) -> Patient {
    Patient {
        id: PatientId::from_uuid(new_uuid()),
        nhs_number: nhs_number.cloned(),
        demographics: demographics.clone(),
        registration: RegistrationStatus::Unregistered,
        account: None,
        sharing_disabled: false,
        merged_into: None,
        created_at: now,
        updated_at: now,
    }
}

/// The audit event of a new record created in an organisation (through its PRT).
pub(crate) fn patient_created_event(
    actor: Actor,
    channel: Channel,
    organisation: &kith_core::model::Organisation,
    prt: &kith_core::model::Team,
    patient: PatientId,
    now: Timestamp,
) -> AuditRecord {
    AuditBuilder::new(now, actor, channel, "patient.create")
        .organisation(organisation.id)
        .team(prt.id)
        .patient(patient)
        .basis("administration")
        .build()
}

/// A new, active care link (not yet written).
pub(crate) fn new_link(
    patient: PatientId,
    team: &kith_core::model::Team,
    labels: LabelSet,
    basis: LinkBasis,
    changed_by: Option<AccountId>,
    now: Timestamp,
) -> CareLink {
    CareLink { patient, team: team.id, labels, basis, changed_by, linked_at: now, updated_at: now, discharged_at: None }
}

/// The audit event of a care link made (or made again after a discharge).
pub(crate) fn link_created_event(
    actor: Actor,
    channel: Channel,
    link: &CareLink,
    team: &kith_core::model::Team,
    relinked: bool,
) -> AuditRecord {
    AuditBuilder::new(link.updated_at, actor, channel, "care_link.create")
        .organisation(team.organisation)
        .team(team.id)
        .patient(link.patient)
        .basis(link.basis.code())
        .data(String::new(), link.labels)
        .reason(if relinked { "re-linked after discharge" } else { "new link" })
        .build()
}

/// Writes a care link and its audit event (and tells a registered patient of a new team).
/// The basis of a link a professional makes: the patient's explicit consent, or implied
/// consent (a referral).
pub(crate) fn professional_link_basis(explicit_consent: bool) -> LinkBasis {
    if explicit_consent { LinkBasis::ProfessionalExplicitConsent } else { LinkBasis::ProfessionalImpliedConsent }
}

pub(crate) fn write_link(
    tx: &mut Tx<'_>,
    actor: &LinkActor<'_>,
    patient: &Patient,
    team: &kith_core::model::Team,
    labels: LabelSet,
    basis: LinkBasis,
    now: Timestamp,
) -> AppResult<CareLink> {
    let existing = tx.care_link(patient.id, team.id)?;
    if existing.as_ref().is_some_and(CareLink::is_active) {
        return Err(AppError::Conflict(format!("the patient is already in team {}", team.alias)));
    }
    put_link(tx, actor, patient, team, labels, basis, existing.as_ref(), now)
}

/// Writes a care link over `existing` (none for a new record) and its audit event.
#[allow(clippy::too_many_arguments)]
fn put_link(
    tx: &mut Tx<'_>,
    actor: &LinkActor<'_>,
    patient: &Patient,
    team: &kith_core::model::Team,
    labels: LabelSet,
    basis: LinkBasis,
    existing: Option<&CareLink>,
    now: Timestamp,
) -> AppResult<CareLink> {
    let (audit_actor, channel, changed_by) = link_actor(actor);
    let link = new_link(patient.id, team, labels, basis, changed_by, now);
    tx.put_care_link(&link)?;
    tx.audit(link_created_event(audit_actor, channel, &link, team, existing.is_some()));
    if team.kind == TeamKind::Speciality {
        notify_patient(tx, patient, PatientEvent::TeamAdded, Notice::TeamAddedPatient, now)?;
    }
    Ok(link)
}

/// Tells a registered patient of `event` (`notice`, e.g. `Notice::TeamAddedPatient`, made
/// with the patient's id) by the channels [`notification_reach`] gives for their choices.
/// The message carries no health information.
pub(crate) fn notify_patient(
    tx: &mut Tx<'_>,
    patient: &Patient,
    event: PatientEvent,
    notice: fn(PatientId) -> Notice,
    now: Timestamp,
) -> AppResult<()> {
    if patient.registration != RegistrationStatus::Registered {
        return Ok(());
    }
    let (settings, _) = tx.notification_settings(patient.id)?;
    let (email, mobile) = (&patient.demographics.email, &patient.demographics.mobile);
    let reach = notification_reach(event, &settings, email.is_some(), mobile.is_some());
    let notice = notice(patient.id);
    if let (true, Some(email)) = (reach.email, email) {
        tx.enqueue(&notice.email(email, now))?;
    }
    if let (true, Some(mobile)) = (reach.sms, mobile) {
        tx.enqueue(&notice.message("sms", mobile.to_string(), now))?;
    }
    Ok(())
}

/// How long after one "new entries" notice the next may go: a feed that files a dozen
/// results in a morning sends one.
const NEW_ENTRIES_NOTICE_GAP: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// Tells a registered patient who asked for it that their record has new entries, at most
/// once per [`NEW_ENTRIES_NOTICE_GAP`]. Their own entries tell them nothing.
pub(crate) fn notify_new_entries(tx: &mut Tx<'_>, patient: &Patient, now: Timestamp) -> AppResult<()> {
    if patient.registration != RegistrationStatus::Registered {
        return Ok(());
    }
    let (settings, last) = tx.notification_settings(patient.id)?;
    if settings.new_entries == kith_core::notify::NotifyBy::Off
        || last.is_some_and(|last| now < last.plus(NEW_ENTRIES_NOTICE_GAP))
    {
        return Ok(());
    }
    notify_patient(tx, patient, PatientEvent::NewEntries, Notice::NewEntriesPatient, now)?;
    tx.note_new_entries_notice(patient.id, now)?;
    Ok(())
}

/// The access rule's view of one entry.
pub(crate) fn entry_facts(entry: &Entry) -> EntryFacts {
    EntryFacts { label: entry.label, authored_by: entry.authored_by }
}
