//! Reading through an account rather than one chosen team: what an API token sees.
//!
//! A token acts with its account's memberships as they are at the request. For a patient's
//! record, the account sees the union of what each of its teams sees under the one rule
//! (`kith_core::access`), each entry attributed to the first team (in a fixed order) that
//! may see it; the read is audited once per team that contributed, naming the basis. When
//! the account is the patient's own, it sees the whole record on the basis `self`.
//! A denied read is audited with the precise reason and answered [`AppError::Denied`].

use std::collections::HashMap;

use kith_core::access::{
    BreakGlassRequestFacts, ConsentReader, RecordScope, TeamMembership, break_glass_team, decide_demographics,
    decide_self_access, is_own_record, may_break_glass_somewhere, record_scope, sees_care_link,
};
use kith_core::audit::{Actor, Channel, Outcome};
use kith_core::directory::{DirectoryMembership, directory_teams as teams_to_look_up, lists_member, shows_role};
use kith_core::model::{
    Account, BreakGlassGrant, CareLink, Entry, Membership, Observation, Organisation, Patient, Team,
};
use kith_core::patient::{EntryKind, LocalIdentifier, NhsNumber};
use kith_core::team::AccountStatus;
use kith_core::text::{OrganisationCode, Reason};
use kith_core::{AccountId, Basis, Date, Decision, DenyReason, EntryId, OrganisationId, PatientId, TeamId, Timestamp};
use kith_store::{Audited, Tx};

use crate::access::{ReadAudit, ReadTeams, VisibleEntry, read_through_scopes, with_basis};
use crate::patients::summarise;
use crate::{App, AppError, AppResult, AuditBuilder, ConsentActor, ProfessionalContext};

/// How many patients one search may return at most.
pub const MAX_PATIENT_MATCHES: i64 = 100;
/// Pages of candidates a family-name search reads at most, looking for visible patients.
const MAX_CANDIDATE_PAGES: usize = 50;

/// A patient with their local identifiers, each under its organisation's code.
#[derive(Clone, Debug)]
pub struct PatientDetails {
    pub patient: Patient,
    pub identifiers: Vec<(OrganisationCode, LocalIdentifier)>,
    /// The basis on which the caller sees who the patient is.
    pub basis: Basis,
}

/// How a caller looks for patients: by exact identifier, or by family name and birth date.
#[derive(Clone, Debug)]
pub enum PatientQuery {
    NhsNumber(NhsNumber),
    Local { organisation: OrganisationCode, identifier: LocalIdentifier },
    FamilyAndBirthDate { family: String, birth_date: Date },
}

/// Which of a record's entries a read is for.
#[derive(Clone, Copy, Debug)]
pub enum EntrySelection<'a> {
    /// Every entry of these kinds.
    Kinds(&'a [EntryKind]),
    /// One entry, whatever its kind.
    One(EntryId),
}

impl EntrySelection<'_> {
    fn admits(&self, entry: &Entry) -> bool {
        match self {
            EntrySelection::Kinds(kinds) => kinds.contains(&entry.kind),
            EntrySelection::One(id) => entry.id == *id,
        }
    }
}

/// What an account sees of a patient's record.
#[derive(Clone, Debug)]
pub struct AccountRecordView {
    pub patient: Patient,
    /// Newest first.
    pub entries: Vec<VisibleEntry>,
    /// Some selected entries exist that the caller may not see. Never how many, nor their
    /// labels.
    pub some_hidden: bool,
    /// The observations (HL7 OBX) of each visible result, read in the same transaction.
    pub observations: HashMap<EntryId, Vec<Observation>>,
}

/// Who an account is to a record: its owner, or a professional seeing it through these
/// teams' scopes on this demographics basis.
enum Reader {
    Owner,
    /// `organisations`: each of the professional's teams with its organisation.
    Professional {
        demographics: Basis,
        scopes: Vec<RecordScope>,
        organisations: Vec<(TeamId, OrganisationId)>,
    },
}

impl App {
    /// The patient, when the account may see who they are (their own record, or the rule's
    /// demographics clause); audited `patient.read`.
    pub fn read_patient_as(
        &self,
        account: AccountId,
        channel: Channel,
        patient: PatientId,
    ) -> AppResult<PatientDetails> {
        let now = self.now();
        self.store
            .read_audited(|tx| {
                let event = AuditBuilder::new(now, Actor::Account(account), channel, "patient.read");
                match record_and_reader(tx, account, None, patient, now)? {
                    Ok((record, reader)) => {
                        let basis = reader.demographics_basis();
                        let event = with_basis(tx, event.patient(record.id), basis)?.build();
                        tx.audit(event);
                        Ok(Ok(details(tx, record, basis)?))
                    }
                    Err((record, reason)) => {
                        tx.audit(denied(event, record, reason));
                        Ok(Err(AppError::Denied))
                    }
                }
            })
            .and_then(|outcome| outcome)
    }

    /// The patients matching the query whose demographics the account may see. Each match
    /// returned is audited `patient.search` with its basis; a match the account may not see
    /// is left out and audited as denied, so that the patient's access log shows the search.
    pub fn find_patients_as(
        &self,
        account: AccountId,
        channel: Channel,
        query: &PatientQuery,
    ) -> AppResult<Vec<PatientDetails>> {
        let now = self.now();
        self.store.read_audited(|tx| {
            let candidates = match query {
                PatientQuery::NhsNumber(number) => tx.patient_by_nhs_number(number)?.into_iter().collect(),
                PatientQuery::Local { organisation, identifier } => match tx.organisation_by_code(organisation)? {
                    Some(organisation) => {
                        tx.patient_by_local_identifier(organisation.id, identifier)?.into_iter().collect()
                    }
                    None => Vec::new(),
                },
                PatientQuery::FamilyAndBirthDate { family, birth_date } => {
                    // The limit counts the patients the account may see, not the candidates:
                    // candidates are read page by page until enough are visible (at most
                    // MAX_CANDIDATE_PAGES pages, so that a broad query stays bounded).
                    let mut found = Vec::new();
                    let mut after: Option<kith_core::model::Patient> = None;
                    for _ in 0..MAX_CANDIDATE_PAGES {
                        let page = tx.patients_by_family_and_birth_date(
                            family,
                            &birth_date.to_string(),
                            after.as_ref(),
                            MAX_PATIENT_MATCHES,
                        )?;
                        let full = page.len() as i64 == MAX_PATIENT_MATCHES;
                        after = page.last().cloned();
                        for candidate in page {
                            if found.len() as i64 >= MAX_PATIENT_MATCHES {
                                break;
                            }
                            see_candidate(tx, account, channel, candidate, now, &mut found)?;
                        }
                        if !full || found.len() as i64 >= MAX_PATIENT_MATCHES {
                            break;
                        }
                    }
                    return Ok(found);
                }
            };
            let mut found = Vec::new();
            for candidate in candidates {
                see_candidate(tx, account, channel, candidate, now, &mut found)?;
            }
            Ok(found)
        })
    }
}

/// Adds a search candidate to `found` when the account may see who it is (audited
/// `patient.search` with the basis), or audits the search as denied on the patient.
fn see_candidate(
    tx: &mut Tx<'_>,
    account: AccountId,
    channel: Channel,
    candidate: kith_core::model::Patient,
    now: Timestamp,
    found: &mut Vec<PatientDetails>,
) -> AppResult<()> {
    let Some(record) = resolve(tx, candidate.id)? else { return Ok(()) };
    if found.iter().any(|details: &PatientDetails| details.patient.id == record.id) {
        return Ok(());
    }
    let event = AuditBuilder::new(now, Actor::Account(account), channel, "patient.search").patient(record.id);
    match reader(tx, account, None, &record, now)? {
        Ok(reader) => {
            let basis = reader.demographics_basis();
            let event = with_basis(tx, event, basis)?.build();
            tx.audit(event);
            found.push(details(tx, record, basis)?);
        }
        Err(reason) => tx.audit(event.outcome(Outcome::Denied).reason(reason).build()),
    }
    Ok(())
}

impl App {
    /// The selected entries of the patient's record that the account may see, newest first,
    /// audited `record.read` once per team that contributed (or once on the demographics
    /// basis when nothing selected is visible).
    pub fn read_entries_as(
        &self,
        account: AccountId,
        channel: Channel,
        patient: PatientId,
        selection: EntrySelection<'_>,
    ) -> AppResult<AccountRecordView> {
        self.read_entries_then_audit(account, channel, patient, selection)?.wait()?
    }

    /// [`App::read_entries_as`] for an async caller: the answer (a view, or
    /// [`AppError::Denied`], audited either way) is held until its audit events are
    /// durable, which the caller awaits without blocking ([`Audited::durable`]).
    pub fn read_entries_then_audit(
        &self,
        account: AccountId,
        channel: Channel,
        patient: PatientId,
        selection: EntrySelection<'_>,
    ) -> AppResult<Audited<AppResult<AccountRecordView>>> {
        let now = self.now();
        self.store.read_then_audit(|tx| read_entries_in(tx, account, None, channel, patient, selection, now))
    }

    /// [`App::read_entries_then_audit`] for the holder of an API token, checked in the same
    /// read transaction (one snapshot, one transaction): `None` inside when the token does
    /// not authenticate, in which case nothing was read and there is nothing to audit.
    pub fn read_entries_by_token_then_audit(
        &self,
        token: &str,
        channel: Channel,
        patient: PatientId,
        selection: EntrySelection<'_>,
    ) -> AppResult<Audited<Option<AppResult<AccountRecordView>>>> {
        let now = self.now();
        let hash = crate::tokens::presented_token_hash(token);
        self.store.read_then_audit(|tx| {
            let Some(hash) = &hash else { return Ok(None) };
            let Some(account) = crate::tokens::token_account(tx, hash, now)? else { return Ok(None) };
            // token_account found the account active, in this same snapshot.
            read_entries_in(tx, account, Some(AccountStatus::Active), channel, patient, selection, now).map(Some)
        })
    }
}

/// The body of [`App::read_entries_then_audit`], inside its read transaction.
/// `known_status` is the account's status when the caller has just read it in the same
/// transaction (it is not read again).
pub(crate) fn read_entries_in(
    tx: &mut Tx<'_>,
    account: AccountId,
    known_status: Option<AccountStatus>,
    channel: Channel,
    patient: PatientId,
    selection: EntrySelection<'_>,
    now: Timestamp,
) -> AppResult<AppResult<AccountRecordView>> {
    let (record, reader) = match record_and_reader(tx, account, known_status, patient, now)? {
        Ok(found) => found,
        Err((record, reason)) => {
            let event = AuditBuilder::new(now, Actor::Account(account), channel, "record.read");
            tx.audit(denied(event, record, reason));
            return Ok(Err(AppError::Denied));
        }
    };
    let base = AuditBuilder::new(now, Actor::Account(account), channel, "record.read").patient(record.id);
    let (entries, selected_total) = match &reader {
        Reader::Owner => {
            let entries: Vec<VisibleEntry> = tx
                .entries(record.id)?
                .into_iter()
                .filter(|entry| selection.admits(entry))
                .map(|entry| VisibleEntry { entry, basis: Basis::SelfAccess })
                .collect();
            let (kinds, labels) = summarise(entries.iter().map(|visible| &visible.entry));
            tx.audit(base.basis(Basis::SelfAccess.code()).data(kinds, labels).build());
            let total = entries.len();
            (entries, total)
        }
        Reader::Professional { demographics, scopes, organisations } => {
            let (mut entries, _) = read_through_scopes(
                tx,
                record.id,
                scopes,
                |entry| selection.admits(entry),
                ReadAudit { event: base, demographics: *demographics, teams: ReadTeams::Each(organisations) },
            )?;
            let selected_total = match selection {
                EntrySelection::One(id) => usize::from(tx.entry_exists(record.id, id)?),
                EntrySelection::Kinds(kinds) => {
                    usize::try_from(tx.count_entries_of_kinds(record.id, kinds)?).unwrap_or(usize::MAX)
                }
            };
            entries.sort_by(|a, b| b.entry.effective_at.cmp(&a.entry.effective_at).then(a.entry.id.cmp(&b.entry.id)));
            (entries, selected_total)
        }
    };
    let some_hidden = selected_total > entries.len();
    let observations = crate::access::shown_observations(tx, record.id, &entries)?;
    Ok(Ok(AccountRecordView { patient: record, entries, some_hidden, observations }))
}

impl App {
    /// One entry by its identifier, when the account may see it; audited like
    /// [`App::read_entries_as`]. Not there and not visible are the same answer.
    pub fn read_entry_as(&self, account: AccountId, channel: Channel, entry: EntryId) -> AppResult<AccountRecordView> {
        let patient = self.store.read(|tx| Ok::<_, AppError>(tx.entry_patient(entry)?))?;
        let Some(patient) = patient else {
            // Audited like any other denied read, without a patient to file it under.
            let now = self.now();
            self.store.read_audited(|tx| {
                tx.audit(
                    AuditBuilder::new(now, Actor::Account(account), channel, "record.read")
                        .outcome(Outcome::Denied)
                        .reason(DenyReason::NoRelationshipWithPatient)
                        .build(),
                );
                Ok::<_, AppError>(())
            })?;
            return Err(AppError::Denied);
        };
        let view = self.read_entries_as(account, channel, patient, EntrySelection::One(entry))?;
        if view.entries.is_empty() { Err(AppError::Denied) } else { Ok(view) }
    }

    /// Breaks the glass through the account's first team (in a fixed order) that may break
    /// it on this patient — an active professional membership of a team of an organisation
    /// the patient is in — or through `team` when the caller names one.
    pub fn break_glass_as(
        &self,
        account: AccountId,
        channel: Channel,
        patient: PatientId,
        team: Option<TeamId>,
        reason: &Reason,
    ) -> AppResult<BreakGlassGrant> {
        let memberships = self.store.read(|tx| Ok::<_, AppError>(tx.memberships_of(account)?))?;
        let held: Vec<_> = memberships.iter().map(Membership::facts).collect();
        if !may_break_glass_somewhere(&held) {
            return Err(AppError::Forbidden("breaking the glass is for professionals of a team".to_owned()));
        }
        let chosen = self.store.read(|tx| {
            let Some(record) = tx.patient(patient)? else { return Ok::<_, AppError>(None) };
            let Some(account_status) = tx.account(account)?.map(|account| account.status) else { return Ok(None) };
            let mut teams = Vec::new();
            let mut candidates = Vec::new();
            for membership in memberships.iter().filter(|m| team.is_none_or(|team| team == m.team)) {
                let Some(team) = tx.team(membership.team)? else { continue };
                candidates.push((
                    team.id,
                    BreakGlassRequestFacts {
                        account_status,
                        membership: Some(membership.facts()),
                        patient_in_organisation: tx.patient_in_organisation(record.id, team.organisation)?,
                        sharing_disabled: record.sharing_disabled,
                    },
                ));
                teams.push(team);
            }
            Ok(break_glass_team(&candidates).and_then(|chosen| teams.into_iter().find(|team| team.id == chosen)))
        })?;
        // Without a team that may break it, the attempt goes through the first membership
        // (or the named team) so that the denial is audited with its precise reason.
        let team = match chosen {
            Some(team) => team,
            None => {
                let fallback = team.or_else(|| memberships.first().map(|m| m.team)).ok_or(AppError::Denied)?;
                match self.store.read(|tx| Ok::<_, AppError>(tx.team(fallback)?))? {
                    Some(team) => team,
                    None => return Err(AppError::Denied),
                }
            }
        };
        let context = ProfessionalContext { account, team: team.id, organisation: team.organisation, channel };
        self.open_break_glass(&context, patient, reason)
    }

    /// The patient's care links the account may see, with their labels: all of them for
    /// the patient; for a professional, only those of teams they are an active professional
    /// of (another team's link would say which services the patient uses). Audited
    /// `consent.read`.
    pub fn care_links_as(&self, account: AccountId, channel: Channel, patient: PatientId) -> AppResult<Vec<CareLink>> {
        let now = self.now();
        self.store
            .read_audited(|tx| {
                let event = AuditBuilder::new(now, Actor::Account(account), channel, "consent.read");
                let (record, reader) = match record_and_reader(tx, account, None, patient, now)? {
                    Ok(found) => found,
                    Err((record, reason)) => {
                        tx.audit(denied(event, record, reason));
                        return Ok(Err(AppError::Denied));
                    }
                };
                let links = tx.care_links(record.id)?;
                let memberships: Vec<TeamMembership> = match &reader {
                    Reader::Owner => Vec::new(),
                    Reader::Professional { .. } => tx
                        .memberships_of(account)?
                        .iter()
                        .map(|m| TeamMembership { team: m.team, membership: m.facts() })
                        .collect(),
                };
                let consent_reader = match &reader {
                    Reader::Owner => ConsentReader::Owner,
                    Reader::Professional { .. } => ConsentReader::Professional { memberships: &memberships },
                };
                let links: Vec<CareLink> =
                    links.into_iter().filter(|link| sees_care_link(consent_reader, link.team)).collect();
                let event = with_basis(tx, event.patient(record.id), reader.demographics_basis())?.build();
                tx.audit(event);
                Ok(Ok(links))
            })
            .and_then(|outcome| outcome)
    }

    /// Changes the labels a team sees: the patient for themselves, or a professional of
    /// that team on the patient's behalf with a reason (see [`App::change_consent`]).
    pub fn change_consent_as(
        &self,
        account: AccountId,
        channel: Channel,
        patient: PatientId,
        team: TeamId,
        labels: kith_core::LabelSet,
        reason: Option<&Reason>,
    ) -> AppResult<CareLink> {
        let (owner, organisation) = self.store.read(|tx| {
            // The caller's own record, not the one asked about: the same work whether or not
            // that one exists (no existence oracle).
            let owner = tx.patient_by_account(account)?.is_some_and(|record| record.id == patient);
            let organisation = tx.team(team)?.map(|team| team.organisation);
            Ok::<_, AppError>((owner, organisation))
        })?;
        if owner {
            return self.change_consent(&ConsentActor::Patient { account, channel }, patient, team, labels);
        }
        let Some(organisation) = organisation else { return Err(AppError::Denied) };
        let context = ProfessionalContext { account, team, organisation, channel };
        self.change_consent(&ConsentActor::Professional { context: &context, reason }, patient, team, labels)
    }

    /// The organisations, for naming identifier systems.
    pub fn organisation_by_id(&self, id: kith_core::OrganisationId) -> AppResult<Option<Organisation>> {
        self.store.read(|tx| Ok(tx.organisation(id)?))
    }
}

impl Reader {
    fn demographics_basis(&self) -> Basis {
        match self {
            Reader::Owner => Basis::SelfAccess,
            Reader::Professional { demographics, .. } => *demographics,
        }
    }
}

/// The record (after any merge) and how the account relates to it; or, denied, the record
/// if there is one and the reason.
#[allow(clippy::type_complexity)]
fn record_and_reader(
    tx: &mut Tx<'_>,
    account: AccountId,
    known_status: Option<AccountStatus>,
    patient: PatientId,
    now: Timestamp,
) -> AppResult<Result<(Patient, Reader), (Option<PatientId>, DenyReason)>> {
    let Some(record) = resolve(tx, patient)? else {
        return Ok(Err((None, DenyReason::NoRelationshipWithPatient)));
    };
    Ok(match reader(tx, account, known_status, &record, now)? {
        Ok(reader) => Ok((record, reader)),
        Err(reason) => Err((Some(record.id), reason)),
    })
}

fn denied(event: AuditBuilder, patient: Option<PatientId>, reason: DenyReason) -> kith_core::audit::AuditRecord {
    let event = match patient {
        Some(patient) => event.patient(patient),
        None => event,
    };
    event.outcome(Outcome::Denied).reason(reason).build()
}

/// The record, following a merge to its survivor.
pub(crate) fn resolve(tx: &mut Tx<'_>, patient: PatientId) -> AppResult<Option<Patient>> {
    let mut current = tx.patient(patient)?;
    for _ in 0..8 {
        match current.as_ref().and_then(|record| record.merged_into) {
            Some(survivor) => current = tx.patient(survivor)?,
            None => return Ok(current),
        }
    }
    Ok(None)
}

/// How the account relates to the record: its owner, a professional with at least the
/// demographics clause of the rule, or denied with the reason.
fn reader(
    tx: &mut Tx<'_>,
    account: AccountId,
    known_status: Option<AccountStatus>,
    record: &Patient,
    now: Timestamp,
) -> AppResult<Result<Reader, DenyReason>> {
    let status = match known_status {
        Some(status) => status,
        None => match tx.account(account)? {
            Some(row) => row.status,
            None => return Ok(Err(DenyReason::NoRelationshipWithPatient)),
        },
    };
    if is_own_record(record.account, account) {
        return Ok(match decide_self_access(status, true) {
            Decision::Allow(_) => Ok(Reader::Owner),
            Decision::Deny(reason) => Err(reason),
        });
    }
    let facts = tx.account_access_facts(account, status, record.id, record.sharing_disabled, now)?;
    let demographics = match decide_demographics(&facts.demographics) {
        Decision::Allow(basis) => basis,
        Decision::Deny(reason) => return Ok(Err(reason)),
    };
    let scopes =
        facts.access.iter().map(record_scope).filter(|scope| matches!(scope, RecordScope::Visible { .. })).collect();
    Ok(Ok(Reader::Professional { demographics, scopes, organisations: facts.organisations }))
}

fn details(tx: &mut Tx<'_>, patient: Patient, basis: Basis) -> AppResult<PatientDetails> {
    let mut identifiers = Vec::new();
    let organisations = tx.organisations()?;
    for identifier in tx.patient_identifiers(patient.id)? {
        if let Some(organisation) = organisations.iter().find(|o| o.id == identifier.organisation) {
            identifiers.push((organisation.code.clone(), identifier.identifier));
        }
    }
    Ok(PatientDetails { patient, identifiers, basis })
}

/// A team as the directory shows it: its organisation and active members.
#[derive(Clone, Debug)]
pub struct TeamDirectory {
    pub team: Team,
    pub organisation: Organisation,
    pub members: Vec<(Membership, Account)>,
}

/// A professional as the directory shows them: their account and the memberships the
/// caller may see.
#[derive(Clone, Debug)]
pub struct PractitionerDirectory {
    pub account: Account,
    pub roles: Vec<(Membership, Team)>,
}

/// The teams an account may look up in the directory
/// ([`kith_core::directory::directory_teams`]): the facts loaded, the rule asked.
fn directory_teams(tx: &mut Tx<'_>, account: AccountId) -> AppResult<Vec<TeamId>> {
    let memberships: Vec<DirectoryMembership> = tx
        .memberships_of(account)?
        .into_iter()
        .map(|membership| DirectoryMembership { team: membership.team, status: membership.status })
        .collect();
    let own_record_links: Vec<TeamId> = match tx.patient_by_account(account)? {
        Some(record) => tx.care_links(record.id)?.into_iter().map(|link| link.team).collect(),
        None => Vec::new(),
    };
    Ok(teams_to_look_up(&memberships, &own_record_links))
}

fn team_directory(tx: &mut Tx<'_>, team: TeamId) -> AppResult<Option<TeamDirectory>> {
    let Some(team) = tx.team(team)? else { return Ok(None) };
    let Some(organisation) = tx.organisation(team.organisation)? else { return Ok(None) };
    let members =
        tx.team_members(team.id)?.into_iter().filter(|(membership, _)| lists_member(membership.status)).collect();
    Ok(Some(TeamDirectory { team, organisation, members }))
}

impl App {
    /// The teams the account may look up (see [`directory_teams`]).
    pub fn teams_as(&self, account: AccountId) -> AppResult<Vec<TeamDirectory>> {
        self.store.read(|tx| {
            let mut out = Vec::new();
            for team in directory_teams(tx, account)? {
                out.extend(team_directory(tx, team)?);
            }
            Ok(out)
        })
    }

    /// One team, when the account may look it up; otherwise [`AppError::Denied`].
    pub fn team_as(&self, account: AccountId, team: TeamId) -> AppResult<TeamDirectory> {
        self.store.read(|tx| {
            if !directory_teams(tx, account)?.contains(&team) {
                return Err(AppError::Denied);
            }
            team_directory(tx, team)?.ok_or(AppError::Denied)
        })
    }

    /// A professional, when they are the account itself or an active member of a team the
    /// account may look up; only those teams' roles are shown.
    pub fn practitioner_as(&self, account: AccountId, practitioner: AccountId) -> AppResult<PractitionerDirectory> {
        self.store.read(|tx| {
            let Some(found) = tx.account(practitioner)? else { return Err(AppError::Denied) };
            let visible = directory_teams(tx, account)?;
            let mut roles = Vec::new();
            for membership in tx.memberships_of(practitioner)? {
                let role = DirectoryMembership { team: membership.team, status: membership.status };
                if shows_role(account, practitioner, role, &visible)
                    && let Some(team) = tx.team(membership.team)?
                {
                    roles.push((membership, team));
                }
            }
            if roles.is_empty() {
                return Err(AppError::Denied);
            }
            Ok(PractitionerDirectory { account: found, roles })
        })
    }

    /// An organisation: public directory information for any signed-in caller.
    pub fn organisation_directory(&self, id: kith_core::OrganisationId) -> AppResult<Organisation> {
        self.store.read(|tx| tx.organisation(id)?.ok_or(AppError::Denied))
    }
}

impl App {
    /// A professional records an entry for a patient through one of their teams (the team
    /// is the author): `team` when named, otherwise the first of their teams (in a fixed
    /// order) that may write to the record under the rule (`decide_write`). Without such a
    /// team the attempt is audited and answered [`AppError::Denied`].
    pub fn record_entry_as(
        &self,
        account: AccountId,
        channel: Channel,
        patient: PatientId,
        team: Option<TeamId>,
        new: &crate::NewEntry,
    ) -> AppResult<Entry> {
        let now = self.now();
        let (chosen, fallback) = self.store.read(|tx| {
            let memberships: Vec<Membership> =
                tx.memberships_of(account)?.into_iter().filter(|m| team.is_none_or(|team| team == m.team)).collect();
            if memberships.is_empty() && team.is_none() {
                return Ok::<_, AppError>((None, None));
            }
            let fallback = memberships.first().map(|m| m.team).or(team);
            for membership in &memberships {
                if let Some(facts) = tx.record_access_facts(account, membership.team, patient, now)?
                    && kith_core::access::decide_write(&facts).is_allowed()
                {
                    return Ok((Some(membership.team), fallback));
                }
            }
            Ok((None, fallback))
        })?;
        let Some(team) = chosen.or(fallback) else {
            return Err(AppError::Forbidden("recording entries is for professionals of a team".to_owned()));
        };
        let organisation = self
            .store
            .read(|tx| Ok::<_, AppError>(tx.team(team)?.map(|team| team.organisation)))?
            .ok_or(AppError::Denied)?;
        let context = ProfessionalContext { account, team, organisation, channel };
        self.add_entry(&crate::EntryAuthor::Professional(&context), patient, new)
    }
}

impl App {
    /// A patient records an entry in their own record (a measurement they took). It is filed
    /// under the Patient Record Team of an organisation the record is in — the record's home,
    /// as for hospital feeds — with the patient's account as its author, audited on the basis
    /// `self`. Teams see it, like any entry, through the labels the patient gave them.
    pub fn record_own_entry(&self, account: AccountId, channel: Channel, new: &crate::NewEntry) -> AppResult<Entry> {
        let now = self.now();
        self.store
            .write(|tx| record_own_entry_in(tx, account, channel, new, now, &|tx, entry| Ok(tx.insert_entry(entry)?)))
            .and_then(|outcome| outcome)
    }
}

/// The body of [`App::record_own_entry`], inside its write transaction: the entry is written
/// with `insert` (alone, or with what comes with it, such as a document's file). A denial is
/// audited and answered `Ok(Err(AppError::Denied))`, so that the event commits.
pub(crate) fn record_own_entry_in(
    tx: &mut Tx<'_>,
    account: AccountId,
    channel: Channel,
    new: &crate::NewEntry,
    now: Timestamp,
    insert: &dyn Fn(&mut Tx<'_>, &Entry) -> AppResult<()>,
) -> AppResult<AppResult<Entry>> {
    let Some(account_row) = tx.account(account)? else { return Ok(Err(AppError::Denied)) };
    let record = tx.patient_by_account(account)?;
    let event = AuditBuilder::new(now, Actor::Account(account), channel, "entry.create");
    let record = match (decide_self_access(account_row.status, record.is_some()), record) {
        (Decision::Allow(_), Some(record)) => record,
        (decision, record) => {
            let reason = match decision {
                Decision::Deny(reason) => reason,
                Decision::Allow(_) => DenyReason::NotTheirRecord,
            };
            tx.audit(denied(event, record.map(|record| record.id), reason));
            return Ok(Err(AppError::Denied));
        }
    };
    let mut home = None;
    for link in tx.care_links(record.id)?.into_iter().filter(CareLink::is_active) {
        if let Some(team) = tx.team(link.team)?
            && team.kind == kith_core::team::TeamKind::PatientRecord
        {
            home = Some(team);
            break;
        }
    }
    let Some(home) = home else {
        return Ok(Err(AppError::Forbidden(
            "your record is not held by an organisation yet, so it cannot take entries".to_owned(),
        )));
    };
    let entry = new.to_entry(record.id, home.id, Some(account), now);
    insert(tx, &entry)?;
    let (kinds, labels) = summarise([&entry]);
    tx.audit(
        event
            .patient(record.id)
            .organisation(home.organisation)
            .basis(Basis::SelfAccess.code())
            .data(kinds, labels)
            .subject(entry.id)
            .build(),
    );
    Ok(Ok(entry))
}
