//! The professional's workspace in the browser: a team's patient list, and breaking the
//! glass on a patient looked up by what the professional knows of them.
//!
//! Who may work in a team's workspace is [`decide_workspace`]'s answer; who each listed
//! patient is, [`decide_demographics`] through the team. Every patient listed is audited
//! `patient.list` with its basis, so that the patient's access log shows the list.

use kith_core::access::{
    DemographicsFacts, MembershipFacts, decide_demographics, decide_self_access, decide_workspace,
};
use kith_core::audit::{Actor, Channel, Outcome};
use kith_core::consent::{BreakGlassLookupRefusal, LookupResult, decide_break_glass_lookup};
use kith_core::model::{BreakGlassGrant, Patient};
use kith_core::team::AccountStatus;
use kith_core::text::Reason;
use kith_core::{AccountId, Basis, Date, Decision, PatientId, TeamId, Timestamp};
use kith_store::{TeamPatientFilter, Tx};

use crate::access::with_basis;
use crate::lookups::{LookupBudget, candidate};
use crate::{App, AppError, AppResult, AuditBuilder, PatientQuery, ProfessionalContext};

/// The most patients one page of a team's list shows.
pub const TEAM_LIST_PAGE: i64 = 25;

/// A patient in a team's list, as the professional may see them.
#[derive(Clone, Debug)]
pub struct TeamPatientRow {
    pub patient: Patient,
    /// When the patient was brought into the team.
    pub linked_at: Timestamp,
    /// The basis the professional sees who the patient is on.
    pub basis: Basis,
}

/// One page of a team's patient list.
#[derive(Clone, Debug)]
pub struct TeamPatientPage {
    pub patients: Vec<TeamPatientRow>,
    /// The last patient of the page, when another page follows.
    pub next: Option<PatientId>,
}

/// The membership facts of `account` in `team`, for the rule.
fn membership_facts(tx: &mut Tx<'_>, account: AccountId, team: TeamId) -> AppResult<Option<MembershipFacts>> {
    Ok(tx.membership(account, team)?.map(|m| MembershipFacts { role: m.role, status: m.status }))
}

impl App {
    /// One page of `team`'s patients that `filter` admits, in name order, after the patient
    /// `after` (the last of the page before; ignored unless that patient is in the team, so
    /// that a guessed id tells nothing). A caller the rule does not let work in the team —
    /// and a team that does not exist — is [`AppError::Denied`], audited.
    pub fn team_patients_as(
        &self,
        account: AccountId,
        channel: Channel,
        team: TeamId,
        filter: &TeamPatientFilter,
        after: Option<PatientId>,
    ) -> AppResult<TeamPatientPage> {
        let now = self.now();
        self.store
            .read_audited(|tx| {
                let status = tx.account(account)?.map_or(AccountStatus::Disabled, |row| row.status);
                let membership = membership_facts(tx, account, team)?;
                let event = || AuditBuilder::new(now, Actor::Account(account), channel, "patient.list");
                if let Err(reason) = decide_workspace(status, membership) {
                    tx.audit(event().outcome(Outcome::Denied).reason(reason).build());
                    return Ok(Err(AppError::Denied));
                }
                let after = match after {
                    Some(id) if tx.care_link(id, team)?.is_some_and(|link| link.is_active()) => tx.patient(id)?,
                    _ => None,
                };
                let rows = tx.team_patients(team, filter, after.as_ref(), TEAM_LIST_PAGE + 1)?;
                let more = rows.len() as i64 > TEAM_LIST_PAGE;
                let mut patients = Vec::new();
                for row in rows.into_iter().take(TEAM_LIST_PAGE as usize) {
                    let facts =
                        tx.account_access_facts(account, status, row.patient.id, row.patient.sharing_disabled, now)?;
                    let demographics: DemographicsFacts = facts.demographics.through_team(team);
                    match decide_demographics(&demographics) {
                        Decision::Allow(basis) => {
                            let listed = with_basis(tx, event().patient(row.patient.id), basis)?;
                            tx.audit(listed.build());
                            patients.push(TeamPatientRow { patient: row.patient, linked_at: row.linked_at, basis });
                        }
                        Decision::Deny(reason) => {
                            tx.audit(event().patient(row.patient.id).outcome(Outcome::Denied).reason(reason).build())
                        }
                    }
                }
                let next = if more { patients.last().map(|row| row.patient.id) } else { None };
                Ok(Ok(TeamPatientPage { patients, next }))
            })
            .and_then(|outcome| outcome)
    }

    /// Breaks the glass from a web page on the patient an exact identifier and date of
    /// birth name (never by browsing), through the team the session acts through and bound
    /// to the session (see [`App::open_break_glass_in_session`]). No record, another date of
    /// birth, a record outside the team's organisation and every refusal of the rule are
    /// the one answer [`AppError::Denied`] ([`decide_break_glass_lookup`]); a miss (sharing
    /// disabled included) is audited with the patient when there is one and counts against
    /// the professional's look-up allowance, as `$add-patient`'s do; a caller the rule refuses
    /// whatever the record never counts, so that the allowance tells nothing of the record.
    pub fn break_glass_by_lookup_in_session(
        &self,
        session_secret: &str,
        identifier: &PatientQuery,
        birth_date: Date,
        reason: &Reason,
    ) -> AppResult<BreakGlassGrant> {
        let now = self.now();
        let session = self.session(session_secret)?.ok_or(AppError::Denied)?;
        let Some(team) = session.team else { return Err(AppError::Denied) };
        let account = session.account.id;
        let budget = LookupBudget::AddPatientMisses;
        let found = self
            .store
            .write(|tx| {
                let (_, organisation, event) =
                    match budget.start(tx, account, Channel::Web, team, "break_glass.open", now)? {
                        Ok(started) => started,
                        Err(refusal) => return Ok(Err(refusal)),
                    };
                let account_status = tx.account(account)?.map_or(AccountStatus::Disabled, |row| row.status);
                let membership = membership_facts(tx, account, team)?;
                // The same work whether or not a record is found (on a nil id when none).
                let record = candidate(tx, identifier, &organisation)?;
                let probe = record.as_ref().map_or(PatientId::from_uuid(uuid::Uuid::nil()), |record| record.id);
                let patient_in_organisation = tx.patient_in_organisation(probe, organisation.id)?;
                let found = match &record {
                    None => LookupResult::NoRecord,
                    Some(record) if record.demographics.birth_date != birth_date => LookupResult::BirthDateDiffers,
                    Some(record) => LookupResult::Found {
                        patient_in_organisation,
                        sharing_disabled: record.sharing_disabled,
                        in_team: false,
                    },
                };
                let event = match &record {
                    Some(record) => event.patient(record.id),
                    None => event,
                };
                let why = match (decide_break_glass_lookup(account_status, membership, found), record) {
                    (Ok(()), Some(record)) => return Ok(Ok(record.id)),
                    (Ok(()), None) => return Ok(Err(AppError::Denied)),
                    (Err(BreakGlassLookupRefusal::Caller(deny)), _) => deny.to_string(),
                    (Err(BreakGlassLookupRefusal::NoMatch(why)), _) => {
                        budget.spend(tx, account, Channel::Web, organisation.id, now)?;
                        format!("no match: {why}")
                    }
                };
                tx.audit(event.outcome(Outcome::Denied).reason(format!("{why}; stated reason: {reason}")).build());
                Ok(Err(AppError::Denied))
            })
            .and_then(|outcome: AppResult<PatientId>| outcome)?;
        let organisation = self
            .store
            .read(|tx| Ok::<_, AppError>(tx.team(team)?.map(|team| team.organisation)))?
            .ok_or(AppError::Denied)?;
        let context = ProfessionalContext { account, team, organisation, channel: Channel::Web };
        self.open_break_glass_bound(&context, Some(crate::secrets::token_hash(session_secret)), found, reason)
    }
}

/// A team as pages name it: its name and its organisation's.
#[derive(Clone, Debug)]
pub struct TeamName {
    pub team: String,
    pub organisation: String,
    pub kind: kith_core::team::TeamKind,
}

impl App {
    /// The names of these teams and their organisations (directory information, as the
    /// FHIR `Organisation` resources give it), by id; an unknown id is left out.
    pub fn team_names(&self, ids: &[TeamId]) -> AppResult<std::collections::HashMap<TeamId, TeamName>> {
        self.store.read(|tx| {
            let mut names = std::collections::HashMap::new();
            for id in ids {
                if names.contains_key(id) {
                    continue;
                }
                if let Some(team) = tx.team(*id)?
                    && let Some(organisation) = tx.organisation(team.organisation)?
                {
                    names.insert(
                        *id,
                        TeamName {
                            team: team.name.to_string(),
                            organisation: organisation.name.to_string(),
                            kind: team.kind,
                        },
                    );
                }
            }
            Ok(names)
        })
    }
}

impl App {
    /// A patient gives an entry of their own record another label: every version of it, at
    /// once, so that teams see it (or stop seeing it) by the new label. Decided by
    /// [`decide_self_access`]; an entry that is not in the caller's own record is
    /// [`AppError::Denied`], the same answer as one that does not exist. Audited
    /// `entry.relabel` with the old and new labels.
    pub fn relabel_own_entry(
        &self,
        account: AccountId,
        channel: Channel,
        entry: kith_core::EntryId,
        label: kith_core::PrivacyLabel,
    ) -> AppResult<()> {
        let now = self.now();
        self.store
            .write(|tx| {
                let status = tx.account(account)?.map_or(AccountStatus::Disabled, |row| row.status);
                let record = tx.patient_by_account(account)?;
                let event = AuditBuilder::new(now, Actor::Account(account), channel, "entry.relabel");
                let patient = match (decide_self_access(status, record.is_some()), record) {
                    (Decision::Allow(_), Some(record)) => record.id,
                    (Decision::Deny(reason), _) => {
                        tx.audit(event.outcome(Outcome::Denied).reason(reason).build());
                        return Ok(Err(AppError::Denied));
                    }
                    (Decision::Allow(_), None) => return Ok(Err(AppError::Denied)),
                };
                let event = event.patient(patient).basis(Basis::SelfAccess.code());
                let Some(current) = tx.entries(patient)?.into_iter().find(|e| e.id == entry) else {
                    tx.audit(event.outcome(Outcome::Denied).reason("no such entry in their record").build());
                    return Ok(Err(AppError::Denied));
                };
                tx.relabel_entry(patient, entry, Some(label))?;
                let from = current.label.map_or("none", |label| label.code());
                tx.audit(event.subject(entry).reason(format!("label {from} -> {}", label.code())).build());
                Ok(Ok(()))
            })
            .and_then(|outcome| outcome)
    }
}

/// What a patient's notification page shows: their choices, and how Kith can reach them.
#[derive(Clone, Debug)]
pub struct OwnNotifications {
    pub settings: kith_core::notify::NotificationSettings,
    pub has_email: bool,
    pub has_mobile: bool,
}

impl App {
    /// The patient's own record, when the account may act on it ([`decide_self_access`]).
    fn own_record(tx: &mut Tx<'_>, account: AccountId) -> AppResult<Option<Patient>> {
        let status = tx.account(account)?.map_or(AccountStatus::Disabled, |row| row.status);
        let record = tx.patient_by_account(account)?;
        Ok(match decide_self_access(status, record.is_some()) {
            Decision::Allow(_) => record,
            Decision::Deny(_) => None,
        })
    }

    /// A patient's notification choices (the defaults until they choose).
    pub fn own_notifications(&self, account: AccountId) -> AppResult<OwnNotifications> {
        self.store.read(|tx| {
            let record = Self::own_record(tx, account)?.ok_or(AppError::Denied)?;
            let (settings, _) = tx.notification_settings(record.id)?;
            Ok(OwnNotifications {
                settings,
                has_email: record.demographics.email.is_some(),
                has_mobile: record.demographics.mobile.is_some(),
            })
        })
    }

    /// A patient changes how Kith tells them of events. Emergency access cannot be turned
    /// off. Audited `notifications.change`.
    pub fn set_own_notifications(
        &self,
        account: AccountId,
        channel: Channel,
        settings: &kith_core::notify::NotificationSettings,
    ) -> AppResult<()> {
        if settings.break_glass == kith_core::notify::NotifyBy::Off {
            return Err(AppError::Invalid(
                "You are always told when someone uses emergency access to your record: choose email, text message \
                 or both."
                    .to_owned(),
            ));
        }
        let now = self.now();
        self.store.write(|tx| {
            let record = Self::own_record(tx, account)?.ok_or(AppError::Denied)?;
            tx.put_notification_settings(record.id, settings, now)?;
            tx.audit(
                AuditBuilder::new(now, Actor::Account(account), channel, "notifications.change")
                    .patient(record.id)
                    .basis(Basis::SelfAccess.code())
                    .subject(format!(
                        "team_added={} new_entries={} break_glass={}",
                        settings.team_added, settings.new_entries, settings.break_glass
                    ))
                    .build(),
            );
            Ok(())
        })
    }
}

/// A patient named on a home page: who, and what is new about them.
#[derive(Clone, Debug)]
pub struct NewsPatient {
    pub patient: PatientId,
    pub name: String,
    /// New entries the team may see (0 for a patient just added).
    pub new_entries: usize,
}

/// What is new in one of a professional's teams since their last visit.
#[derive(Clone, Debug)]
pub struct TeamNews {
    pub team: TeamId,
    pub team_name: String,
    pub organisation: String,
    /// The team's welcome message for its professionals.
    pub welcome: Option<String>,
    /// Whether they work in the team's clinical workspace (a coordinator does not).
    pub clinical: bool,
    pub added: Vec<NewsPatient>,
    pub with_new_entries: Vec<NewsPatient>,
}

/// What is new in a patient's record since their last visit, and their teams' welcomes.
#[derive(Clone, Debug, Default)]
pub struct OwnNews {
    pub new_entries: usize,
    /// Teams added (team, organisation).
    pub teams_added: Vec<(String, String)>,
    /// Views and changes of their record by others.
    pub looks: usize,
    /// Welcome messages: (team, organisation, message), the Patient Record Teams' first.
    pub welcomes: Vec<(String, String, String)>,
}

/// The most patients a home page names per team and list.
const NEWS_PATIENTS: usize = 20;

impl App {
    /// What is new in each of the account's teams since `since` (their previous visit): the
    /// patients added and those with new entries the team may see ([`decide_entry`] on each
    /// entry, [`decide_demographics`] through the team on each patient named, audited
    /// `patient.list`), with each team's welcome message for professionals.
    pub fn team_news_as(&self, account: AccountId, channel: Channel, since: Timestamp) -> AppResult<Vec<TeamNews>> {
        let now = self.now();
        self.store.read_audited(|tx| {
            let status = tx.account(account)?.map_or(AccountStatus::Disabled, |row| row.status);
            let mut news = Vec::new();
            for membership in tx.memberships_of(account)? {
                let Some(team) = tx.team(membership.team)? else { continue };
                let Some(organisation) = tx.organisation(team.organisation)? else { continue };
                let facts = Some(MembershipFacts { role: membership.role, status: membership.status });
                let clinical = decide_workspace(status, facts).is_ok();
                if !clinical && !kith_core::access::is_active_membership(membership.status) {
                    continue;
                }
                let mut item = TeamNews {
                    team: team.id,
                    team_name: team.name.to_string(),
                    organisation: organisation.name.to_string(),
                    welcome: tx.professional_welcome(team.id)?,
                    clinical,
                    added: Vec::new(),
                    with_new_entries: Vec::new(),
                };
                if clinical {
                    for row in tx.team_patients_added_since(team.id, since, NEWS_PATIENTS as i64)? {
                        if let Some(name) = named(tx, account, channel, status, team.id, &row.patient, now)? {
                            item.added.push(NewsPatient { patient: row.patient.id, name, new_entries: 0 });
                        }
                    }
                    let mut counts: Vec<(PatientId, usize)> = Vec::new();
                    // The rule's facts once per patient, however many of their entries are new.
                    let mut scopes: std::collections::HashMap<PatientId, Option<kith_core::access::RecordScope>> =
                        std::collections::HashMap::new();
                    for entry in tx.team_entries_since(team.id, since, 500)? {
                        let scope = match scopes.get(&entry.patient) {
                            Some(scope) => *scope,
                            None => {
                                let facts = tx.record_access_facts(account, team.id, entry.patient, now)?;
                                let scope = facts.as_ref().map(kith_core::access::record_scope);
                                scopes.insert(entry.patient, scope);
                                scope
                            }
                        };
                        let Some(scope) = scope else { continue };
                        let visible = scope
                            .decide(&kith_core::access::EntryFacts {
                                label: entry.label,
                                authored_by: entry.authored_by,
                            })
                            .is_allowed();
                        if visible {
                            match counts.iter_mut().find(|(patient, _)| *patient == entry.patient) {
                                Some((_, count)) => *count += 1,
                                None => counts.push((entry.patient, 1)),
                            }
                        }
                    }
                    for (patient, count) in counts.into_iter().take(NEWS_PATIENTS) {
                        let Some(record) = tx.patient(patient)? else { continue };
                        if let Some(name) = named(tx, account, channel, status, team.id, &record, now)? {
                            item.with_new_entries.push(NewsPatient { patient, name, new_entries: count });
                        }
                    }
                }
                news.push(item);
            }
            Ok(news)
        })
    }

    /// What is new in the patient's own record since `since`, and the welcome messages of
    /// the teams their record is in (read on the basis `self`, audited).
    pub fn own_news(&self, account: AccountId, channel: Channel, since: Option<Timestamp>) -> AppResult<OwnNews> {
        let now = self.now();
        self.store
            .read_audited(|tx| {
                let Some(record) = Self::own_record(tx, account)? else { return Ok(Err(AppError::Denied)) };
                let mut news = OwnNews::default();
                let links = tx.care_links(record.id)?;
                let mut teams = Vec::new();
                for link in links.iter().filter(|link| link.discharged_at.is_none()) {
                    if let Some(team) = tx.team(link.team)?
                        && let Some(organisation) = tx.organisation(team.organisation)?
                    {
                        teams.push((team, organisation.name.to_string(), link.linked_at));
                    }
                }
                teams.sort_by_key(|(team, ..)| team.kind != kith_core::team::TeamKind::PatientRecord);
                for (team, organisation, linked_at) in &teams {
                    if let Some(message) = tx.welcome_message(team.id)? {
                        news.welcomes.push((team.name.to_string(), organisation.clone(), message));
                    }
                    if since.is_some_and(|since| *linked_at > since) {
                        news.teams_added.push((team.name.to_string(), organisation.clone()));
                    }
                }
                if let Some(since) = since {
                    news.new_entries = tx.entries(record.id)?.iter().filter(|entry| entry.recorded_at > since).count();
                    news.looks = tx
                        .audit_events_for_patient(record.id, Some(account), None, 1000)?
                        .iter()
                        .filter(|event| event.record.at > since)
                        .count();
                }
                tx.audit(
                    AuditBuilder::new(now, Actor::Account(account), channel, "record.summary")
                        .patient(record.id)
                        .basis(Basis::SelfAccess.code())
                        .build(),
                );
                Ok(Ok(news))
            })
            .and_then(|outcome| outcome)
    }

    /// The account's previous visit (its sign-in before this one), for "since your last visit".
    pub fn previous_visit(&self, account: AccountId) -> AppResult<Option<Timestamp>> {
        Ok(self.store.read(|tx| tx.previous_sign_in(account))?)
    }

    /// A coordinator sets (or clears) their team's welcome message for its professionals.
    pub fn set_professional_welcome_as(&self, coordinator: AccountId, team: TeamId, text: &str) -> AppResult<()> {
        let text = text.trim();
        if text.chars().count() > 4000 {
            return Err(AppError::Invalid("The welcome message is too long: at most 4,000 characters".to_owned()));
        }
        let now = self.now();
        self.store
            .write(|tx| {
                let (organisation, team) =
                    match crate::coordination::coordinated(tx, coordinator, team, "team.welcome_message", now)? {
                        Ok(found) => found,
                        Err(refused) => return Ok(Err(refused)),
                    };
                tx.set_professional_welcome(team.id, (!text.is_empty()).then_some(text))?;
                tx.audit(
                    AuditBuilder::new(now, Actor::Account(coordinator), Channel::Web, "team.welcome_message")
                        .organisation(organisation.id)
                        .team(team.id)
                        .basis("administration")
                        .subject("for professionals")
                        .build(),
                );
                Ok(Ok(()))
            })
            .and_then(|outcome| outcome)
    }
}

/// The patient's name when the account may see who they are through `team`, audited
/// `patient.list` with the basis; `None` (audited as denied) otherwise.
fn named(
    tx: &mut Tx<'_>,
    account: AccountId,
    channel: Channel,
    status: AccountStatus,
    team: TeamId,
    patient: &Patient,
    now: Timestamp,
) -> AppResult<Option<String>> {
    let facts = tx.account_access_facts(account, status, patient.id, patient.sharing_disabled, now)?;
    let event = AuditBuilder::new(now, Actor::Account(account), channel, "patient.list").patient(patient.id);
    match decide_demographics(&facts.demographics.through_team(team)) {
        Decision::Allow(basis) => {
            let event = with_basis(tx, event, basis)?;
            tx.audit(event.build());
            Ok(Some(format!("{} {}", patient.demographics.given_name, patient.demographics.family_name)))
        }
        Decision::Deny(reason) => {
            tx.audit(event.outcome(Outcome::Denied).reason(reason).build());
            Ok(None)
        }
    }
}

impl App {
    /// A team's welcome message for its professionals (directory information).
    pub fn professional_welcome(&self, team: TeamId) -> AppResult<Option<String>> {
        Ok(self.store.read(|tx| tx.professional_welcome(team))?)
    }
}
