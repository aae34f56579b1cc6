//! Reading records: professionals through the one rule, break glass, patients themselves,
//! the access log, and the privacy officer's lock-down.

use kith_core::access::{
    BreakGlassRequestFacts, MembershipFacts, RecordScope, decide_break_glass, decide_demographics, decide_self_access,
    decide_sharing_lockdown, record_scope,
};
use kith_core::audit::{Actor, Channel, Outcome};
use kith_core::consent::LinkBasis;
use kith_core::model::{BreakGlassGrant, Entry, Observation, Patient};
use kith_core::patient::EntryKind;
use kith_core::team::TeamKind;
use kith_core::text::Reason;
use kith_core::{AccountId, Basis, BreakGlassId, Decision, DenyReason, EntryId, PatientId};
use kith_store::{RecordReadFacts, Tx};

use crate::audit::{AccessLogEntry, access_log_entry};
use crate::outbox::Notice;
use crate::patients::{entry_facts, notify_patient, summarise};
use crate::{App, AppError, AppResult, AuditBuilder, ProfessionalContext, new_uuid};

/// An entry as shown to a reader, with the basis on which they see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VisibleEntry {
    pub entry: Entry,
    pub basis: Basis,
}

/// What a reader sees of a patient's record.
#[derive(Clone, Debug)]
pub struct RecordView {
    pub patient: Patient,
    pub entries: Vec<VisibleEntry>,
    /// The basis the read was audited under (the strongest used).
    pub basis: Basis,
    /// Some entries exist that the reader may not see. Never how many, nor their labels.
    pub some_hidden: bool,
    /// The observations (HL7 OBX) of each visible result, read in the same transaction.
    pub observations: std::collections::HashMap<kith_core::EntryId, Vec<kith_core::model::Observation>>,
    /// The files of the visible documents that have one, read in the same transaction.
    pub documents: std::collections::HashMap<kith_core::EntryId, crate::DocumentSummary>,
    /// The earlier versions of corrected entries (a corrected result's first values), oldest
    /// first, each with its observations: those the reader may see.
    pub history: std::collections::HashMap<kith_core::EntryId, Vec<EarlierVersion>>,
}

/// An earlier version of a corrected entry, with the observations it had.
pub type EarlierVersion = (Entry, Vec<Observation>);

impl App {
    /// A professional reads a patient's record through one of their teams: filtered by the
    /// rule in the database, each entry checked against the rule again, and audited with
    /// the basis — or denied, audited with the precise reason, and answered generically.
    pub fn read_record(&self, context: &ProfessionalContext, patient: PatientId) -> AppResult<RecordView> {
        let now = self.now();
        self.store
            .read_audited(|tx| {
                let deny = |tx: &mut Tx<'_>, reason: DenyReason| {
                    tx.audit(
                        AuditBuilder::professional(now, context, "record.read", patient)
                            .outcome(Outcome::Denied)
                            .reason(reason)
                            .build(),
                    );
                    Ok(Err(AppError::Denied))
                };
                let Some(RecordReadFacts { access: facts, demographics, patient: record }) =
                    tx.record_read_facts(context.account, context.team, patient, now)?
                else {
                    return deny(tx, DenyReason::NoRelationshipWithPatient);
                };
                let scope = record_scope(&facts);
                if let RecordScope::Denied(reason) = scope {
                    return deny(tx, reason);
                }
                let demographics_basis = match decide_demographics(&demographics.through_team(context.team)) {
                    Decision::Allow(basis) => basis,
                    Decision::Deny(reason) => return deny(tx, reason),
                };
                let (entries, basis) = read_through_scopes(
                    tx,
                    patient,
                    &[scope],
                    |_| true,
                    ReadAudit {
                        event: AuditBuilder::professional(now, context, "record.read", patient),
                        demographics: demographics_basis,
                        teams: ReadTeams::One,
                    },
                )?;
                let total = tx.count_entries(patient)?;
                let some_hidden = total > entries.len() as i64;
                let observations = shown_observations(tx, patient, &entries)?;
                let documents = shown_documents(tx, patient, &entries)?;
                let history =
                    shown_history(tx, patient, &entries, |version| scope.decide(&entry_facts(version)).is_allowed())?;
                Ok(Ok(RecordView { patient: record, entries, basis, some_hidden, observations, documents, history }))
            })
            .and_then(|outcome| outcome)
    }

    /// Breaks the glass: the professional sees all of the patient's record until the grant
    /// expires (the organisation's setting) or they end it. Audited with the reason; the
    /// patient (if registered) and the organisation's privacy officers are told.
    pub fn open_break_glass(
        &self,
        context: &ProfessionalContext,
        patient: PatientId,
        reason: &Reason,
    ) -> AppResult<BreakGlassGrant> {
        self.open_break_glass_bound(context, None, patient, reason)
    }

    /// Breaks the glass from a web page: through the team the session acts through, bound
    /// to the session, so that the grant ends at sign-out (or when the session times out)
    /// as well as at its expiry. A session that is not live, or acts through no team, is
    /// refused like any other denied attempt.
    pub fn open_break_glass_in_session(
        &self,
        session_secret: &str,
        patient: PatientId,
        reason: &Reason,
    ) -> AppResult<BreakGlassGrant> {
        let session = self.session(session_secret)?.ok_or(AppError::Denied)?;
        let team = session.team.ok_or_else(|| {
            AppError::Forbidden("breaking the glass is for professionals acting through a team".to_owned())
        })?;
        let organisation = self
            .store
            .read(|tx| Ok::<_, AppError>(tx.team(team)?.map(|team| team.organisation)))?
            .ok_or(AppError::Denied)?;
        let context = ProfessionalContext { account: session.account.id, team, organisation, channel: Channel::Web };
        self.open_break_glass_bound(&context, Some(crate::secrets::token_hash(session_secret)), patient, reason)
    }

    pub(crate) fn open_break_glass_bound(
        &self,
        context: &ProfessionalContext,
        session: Option<[u8; 32]>,
        patient: PatientId,
        reason: &Reason,
    ) -> AppResult<BreakGlassGrant> {
        let now = self.now();
        self.store
            .write(|tx| {
                let organisation = tx
                    .organisation(context.organisation)?
                    .ok_or_else(|| AppError::NotFound("the acting team's organisation does not exist".to_owned()))?;
                let account = tx.account(context.account)?;
                let membership = tx.membership(context.account, context.team)?;
                let record = tx.patient(patient)?;
                let patient_in_organisation = tx.patient_in_organisation(patient, organisation.id)?;
                let decision = match (&account, &record) {
                    (Some(account), Some(record)) => decide_break_glass(&BreakGlassRequestFacts {
                        account_status: account.status,
                        membership: membership.map(|m| MembershipFacts { role: m.role, status: m.status }),
                        patient_in_organisation,
                        sharing_disabled: record.sharing_disabled,
                    }),
                    _ => Err(DenyReason::NoRelationshipWithPatient),
                };
                let event = AuditBuilder::professional(now, context, "break_glass.open", patient);
                if let Err(deny_reason) = decision {
                    tx.audit(
                        event
                            .outcome(Outcome::Denied)
                            .reason(format!("{deny_reason}; stated reason: {reason}"))
                            .build(),
                    );
                    return Ok(Err(AppError::Denied));
                }
                let record = record.expect("checked above");
                let grant = BreakGlassGrant {
                    id: BreakGlassId::from_uuid(new_uuid()),
                    patient,
                    account: context.account,
                    team: context.team,
                    reason: reason.clone(),
                    started_at: now,
                    expires_at: now.plus(organisation.break_glass_duration),
                    ended_at: None,
                };
                tx.insert_break_glass(&grant, session.as_ref())?;
                tx.audit(event.basis("break_glass").subject(grant.id).reason(reason).build());
                notify_patient(
                    tx,
                    &record,
                    kith_core::notify::PatientEvent::BreakGlass,
                    Notice::BreakGlassPatient,
                    now,
                )?;
                for officer in tx.privacy_officers(organisation.id)? {
                    let notice = Notice::BreakGlassPrivacyOfficer { grant: grant.id, patient };
                    tx.enqueue(&notice.email(&officer.email, now))?;
                }
                Ok(Ok(grant))
            })
            .and_then(|outcome| outcome)
    }

    /// Ends the professional's open break-the-glass grants on the patient early.
    pub fn end_break_glass(&self, context: &ProfessionalContext, patient: PatientId) -> AppResult<u64> {
        let now = self.now();
        self.store.write(|tx| {
            let ended = tx.end_break_glass(context.account, patient, now)?;
            if ended == 0 {
                return Err(AppError::Conflict("there is no open break-the-glass grant to end".to_owned()));
            }
            tx.audit(AuditBuilder::professional(now, context, "break_glass.end", patient).basis("break_glass").build());
            Ok(ended)
        })
    }

    /// A patient reads their own record: everything in it, audited with the basis `self`.
    pub fn read_own_record(&self, account: AccountId, channel: Channel) -> AppResult<RecordView> {
        let now = self.now();
        self.store
            .read_audited(|tx| {
                let Some(account_row) = tx.account(account)? else { return Ok(Err(AppError::Denied)) };
                let record = tx.patient_by_account(account)?;
                match decide_self_access(account_row.status, record.is_some()) {
                    Decision::Allow(basis) => {
                        let record = record.expect("decided on it");
                        let entries: Vec<VisibleEntry> =
                            tx.entries(record.id)?.into_iter().map(|entry| VisibleEntry { entry, basis }).collect();
                        let (kinds, labels) = summarise(entries.iter().map(|visible| &visible.entry));
                        tx.audit(
                            AuditBuilder::new(now, Actor::Account(account), channel, "record.read")
                                .patient(record.id)
                                .basis(basis.code())
                                .data(kinds, labels)
                                .build(),
                        );
                        let observations = shown_observations(tx, record.id, &entries)?;
                        let documents = shown_documents(tx, record.id, &entries)?;
                        let history = shown_history(tx, record.id, &entries, |_| true)?;
                        Ok(Ok(RecordView {
                            patient: record,
                            entries,
                            basis,
                            some_hidden: false,
                            observations,
                            documents,
                            history,
                        }))
                    }
                    Decision::Deny(reason) => {
                        let mut event = AuditBuilder::new(now, Actor::Account(account), channel, "record.read")
                            .outcome(Outcome::Denied)
                            .reason(reason);
                        if let Some(record) = &record {
                            event = event.patient(record.id);
                        }
                        tx.audit(event.build());
                        Ok(Err(AppError::Denied))
                    }
                }
            })
            .and_then(|outcome| outcome)
    }

    /// A patient's access log: who looked at or changed their record, newest first. Their
    /// own actions are left out unless `include_own`; `before` pages back (the `seq` of
    /// the last event of the page before). Reading it is audited too.
    pub fn access_log(
        &self,
        account: AccountId,
        include_own: bool,
        before: Option<i64>,
        limit: i64,
        channel: Channel,
    ) -> AppResult<Vec<AccessLogEntry>> {
        let now = self.now();
        self.store
            .read_audited(|tx| {
                let Some(account_row) = tx.account(account)? else { return Ok(Err(AppError::Denied)) };
                let record = tx.patient_by_account(account)?;
                let (Decision::Allow(basis), Some(record)) =
                    (decide_self_access(account_row.status, record.is_some()), record)
                else {
                    return Ok(Err(AppError::Denied));
                };
                let events = tx.audit_events_for_patient(
                    record.id,
                    (!include_own).then_some(account),
                    before,
                    limit.clamp(1, 1000),
                )?;
                let log = events.iter().map(|event| access_log_entry(tx, event)).collect::<AppResult<Vec<_>>>()?;
                tx.audit(
                    AuditBuilder::new(now, Actor::Account(account), channel, "access_log.read")
                        .patient(record.id)
                        .basis(basis.code())
                        .build(),
                );
                Ok(Ok(log))
            })
            .and_then(|outcome| outcome)
    }

    /// The break-the-glass events of the organisations the account is a privacy officer
    /// of (about one patient, or all), newest first: the grants and every access under them.
    /// An account that is no organisation's privacy officer is refused outright. Reading
    /// them is audited.
    pub fn break_glass_log(
        &self,
        account: AccountId,
        patient: Option<PatientId>,
        limit: i64,
        channel: Channel,
    ) -> AppResult<Vec<AccessLogEntry>> {
        let now = self.now();
        self.store
            .read_audited(|tx| {
                if !tx.is_privacy_officer(account)? {
                    return Ok(Err(AppError::Forbidden(
                        "the break-the-glass log is for organisations' privacy officers".to_owned(),
                    )));
                }
                let events =
                    tx.officer_events(account, kith_store::OfficerEvents::BreakGlass, patient, limit.clamp(1, 1000))?;
                let log = events.iter().map(|event| access_log_entry(tx, event)).collect::<AppResult<Vec<_>>>()?;
                let mut event = AuditBuilder::new(now, Actor::Account(account), channel, "break_glass_log.read")
                    .basis("administration");
                if let Some(patient) = patient {
                    event = event.patient(patient);
                }
                tx.audit(event.build());
                Ok(Ok(log))
            })
            .and_then(|outcome| outcome)
    }

    /// Whether the account is the patient's own (for interfaces that offer the access log).
    pub fn is_own_record(&self, account: AccountId, patient: PatientId) -> AppResult<bool> {
        self.store.read(|tx| {
            Ok(tx.patient(patient)?.is_some_and(|record| kith_core::access::is_own_record(record.account, account)))
        })
    }

    /// A privacy officer disables sharing on a record (lock-down): every team is
    /// discharged except the Patient Record Teams, which lose their labels; break glass
    /// and new links are refused until sharing is enabled again.
    pub fn set_sharing_disabled(
        &self,
        officer: AccountId,
        patient: PatientId,
        disabled: bool,
        reason: &Reason,
    ) -> AppResult<Patient> {
        let now = self.now();
        self.store
            .write(|tx| {
                let action = if disabled { "sharing.disable" } else { "sharing.enable" };
                let event = AuditBuilder::new(now, Actor::Account(officer), Channel::Cli, action).patient(patient);
                let status = tx.account(officer)?.map(|account| account.status);
                let is_officer = tx.is_privacy_officer_for(officer, patient)?;
                let (Some(status), Some(mut record)) = (status, tx.patient(patient)?) else {
                    tx.audit(event.outcome(Outcome::Denied).reason(DenyReason::NoRelationshipWithPatient).build());
                    return Ok(Err(AppError::Denied));
                };
                if let Err(deny_reason) = decide_sharing_lockdown(status, is_officer) {
                    tx.audit(event.outcome(Outcome::Denied).reason(deny_reason).build());
                    return Ok(Err(AppError::Denied));
                }
                if record.sharing_disabled == disabled {
                    return Err(AppError::Conflict(format!(
                        "sharing is already {}",
                        if disabled { "disabled" } else { "enabled" }
                    )));
                }
                if disabled {
                    for mut link in tx.care_links(patient)?.into_iter().filter(|link| link.is_active()) {
                        let kind = tx.team(link.team)?.map(|team| team.kind);
                        if kind == Some(TeamKind::PatientRecord) {
                            link.labels = kith_core::LabelSet::EMPTY;
                        } else {
                            link.discharged_at = Some(now);
                        }
                        link.basis = LinkBasis::OnBehalfOfPatient;
                        link.changed_by = Some(officer);
                        link.updated_at = now;
                        tx.put_care_link(&link)?;
                    }
                    tx.end_all_break_glass(patient, now)?;
                }
                record.sharing_disabled = disabled;
                record.updated_at = now;
                tx.put_patient(&record)?;
                tx.audit(event.basis("administration").reason(reason).build());
                if disabled {
                    notify_patient(
                        tx,
                        &record,
                        kith_core::notify::PatientEvent::SharingChanged,
                        Notice::SharingDisabledPatient,
                        now,
                    )?;
                }
                Ok(Ok(record))
            })
            .and_then(|outcome| outcome)
    }
}

/// How a read through scopes is audited.
pub(crate) struct ReadAudit<'a> {
    /// The `record.read` event with its actor, channel and patient (and, through one team,
    /// the team and its organisation).
    pub(crate) event: AuditBuilder,
    /// The basis on which the reader sees who the patient is.
    pub(crate) demographics: Basis,
    pub(crate) teams: ReadTeams<'a>,
}

/// Through how many teams a record is read.
pub(crate) enum ReadTeams<'a> {
    /// The one team the reader acts through (a page, the CLI): one event, on the strongest of
    /// the demographics' basis and every entry's.
    One,
    /// Each of an account's teams, with its organisation (an API token): one event per team
    /// that contributed, on that team's strongest basis; when none did, one event on the
    /// demographics' basis naming its team.
    Each(&'a [(kith_core::TeamId, kith_core::OrganisationId)]),
}

/// The one way a professional's read of a record goes: each scope filters the record in the
/// database (`Tx::entries_in_scope`), every row is checked again with the rule
/// ([`RecordScope::decide`]: the rule wins, a disagreement is logged without identifiers),
/// an entry already seen through an earlier scope is not taken again, and the read is
/// audited as `audit` says. `admits` selects entries (by kind, one entry). Returns the
/// entries in scope order and the strongest basis used.
pub(crate) fn read_through_scopes(
    tx: &mut Tx<'_>,
    patient: PatientId,
    scopes: &[RecordScope],
    admits: impl Fn(&Entry) -> bool,
    audit: ReadAudit<'_>,
) -> AppResult<(Vec<VisibleEntry>, Basis)> {
    let mut entries: Vec<VisibleEntry> = Vec::new();
    let mut seen: std::collections::HashSet<kith_core::EntryId> = std::collections::HashSet::new();
    // Each contributing team, the strongest basis it used, and its entries (by index).
    let mut contributed: Vec<(kith_core::TeamId, Basis, Vec<usize>)> = Vec::new();
    for scope in scopes {
        let RecordScope::Visible { team, .. } = *scope else { continue };
        for entry in tx.entries_in_scope(patient, scope)? {
            if !admits(&entry) || seen.contains(&entry.id) {
                continue;
            }
            match scope.decide(&entry_facts(&entry)) {
                Decision::Allow(basis) => {
                    seen.insert(entry.id);
                    let index = entries.len();
                    entries.push(VisibleEntry { entry, basis });
                    match contributed.iter_mut().find(|(t, ..)| *t == team) {
                        Some((_, strongest, indexes)) => {
                            *strongest = strongest.strongest(basis);
                            indexes.push(index);
                        }
                        None => contributed.push((team, basis, vec![index])),
                    }
                }
                // The SQL filter and the rule are tested to agree; if they ever do not, the
                // rule wins and the disagreement is logged (no identifiers).
                Decision::Deny(_) => tracing::error!("the entry filter admitted an entry the access rule denies"),
            }
        }
    }
    let ReadAudit { event, demographics, teams } = audit;
    let strongest = entries.iter().map(|visible| visible.basis).fold(demographics, Basis::strongest);
    match teams {
        ReadTeams::One => {
            let (kinds, labels) = summarise(entries.iter().map(|visible| &visible.entry));
            let mut event = event.basis(strongest.code()).data(kinds, labels);
            if let Basis::BreakGlass { grant } = strongest {
                event = event.subject(grant);
            }
            tx.audit(event.build());
        }
        ReadTeams::Each(organisations) => {
            if contributed.is_empty() {
                let event = with_basis(tx, event.clone(), demographics)?.build();
                tx.audit(event);
            }
            for (team, basis, indexes) in contributed {
                let (kinds, labels) = summarise(indexes.iter().map(|&index| &entries[index].entry));
                let organisation =
                    organisations.iter().find(|(t, _)| *t == team).map(|(_, organisation)| *organisation);
                let mut event = event.clone().team(team).basis(basis.code()).data(kinds, labels);
                if let Some(organisation) = organisation {
                    event = event.organisation(organisation);
                }
                if let Basis::BreakGlass { grant } = basis {
                    event = event.subject(grant);
                }
                tx.audit(event.build());
            }
        }
    }
    Ok((entries, strongest))
}

/// The event with its basis, and the team and organisation the basis names (for a grant,
/// the team it was opened through), so that privacy officers find break-glass events.
pub(crate) fn with_basis(tx: &mut Tx<'_>, event: AuditBuilder, basis: Basis) -> AppResult<AuditBuilder> {
    let team = match basis {
        Basis::Consent { team } | Basis::OwnTeamData { team } => Some(team),
        Basis::BreakGlass { grant } => tx.break_glass_team(grant)?,
        Basis::SelfAccess | Basis::Administration => None,
    };
    let mut event = event.basis(basis.code());
    if let Basis::BreakGlass { grant } = basis {
        event = event.subject(grant);
    }
    if let Some(team) = team {
        event = event.team(team);
        if let Some(team) = tx.team(team)? {
            event = event.organisation(team.organisation);
        }
    }
    Ok(event)
}

/// The observations (HL7 OBX) of the versions of the results among `entries` (the
/// entries a read shows), by entry: read in the read's transaction.
pub(crate) fn shown_observations(
    tx: &mut Tx<'_>,
    patient: PatientId,
    entries: &[VisibleEntry],
) -> AppResult<std::collections::HashMap<EntryId, Vec<Observation>>> {
    let mut observations: std::collections::HashMap<EntryId, Vec<Observation>> = std::collections::HashMap::new();
    let shown: std::collections::HashMap<EntryId, i64> = entries
        .iter()
        .filter(|visible| visible.entry.kind == EntryKind::Result)
        .map(|visible| (visible.entry.id, visible.entry.version))
        .collect();
    if !shown.is_empty() {
        for (entry, version, observation) in tx.patient_observations(patient)? {
            if shown.get(&entry) == Some(&version) {
                observations.entry(entry).or_default().push(observation);
            }
        }
    }
    Ok(observations)
}

/// The file of a document entry a read shows: its type, name and size (not its content).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentSummary {
    pub media_type: &'static str,
    pub file_name: String,
    pub size: i64,
}

/// The files of the documents among `entries` (the entries a read shows), by entry.
pub(crate) fn shown_documents(
    tx: &mut Tx<'_>,
    patient: PatientId,
    entries: &[VisibleEntry],
) -> AppResult<std::collections::HashMap<EntryId, DocumentSummary>> {
    if !entries.iter().any(|visible| visible.entry.kind == EntryKind::Document) {
        return Ok(std::collections::HashMap::new());
    }
    Ok(tx
        .document_summaries(patient)?
        .into_iter()
        .filter(|(entry, ..)| entries.iter().any(|visible| visible.entry.id == *entry))
        .map(|(entry, kind, file_name, size)| {
            (entry, DocumentSummary { media_type: kind.media_type(), file_name, size })
        })
        .collect())
}

/// The earlier versions of the corrected entries among `entries` that `admits` (the
/// reader's scope) lets through, oldest first, each with the observations it had.
pub(crate) fn shown_history(
    tx: &mut Tx<'_>,
    patient: PatientId,
    entries: &[VisibleEntry],
    admits: impl Fn(&Entry) -> bool,
) -> AppResult<std::collections::HashMap<EntryId, Vec<EarlierVersion>>> {
    let mut history: std::collections::HashMap<EntryId, Vec<EarlierVersion>> = std::collections::HashMap::new();
    if !entries.iter().any(|visible| visible.entry.version > 1) {
        return Ok(history);
    }
    // Two statements for the whole record, however many entries were corrected.
    let corrected: std::collections::HashSet<EntryId> =
        entries.iter().filter(|visible| visible.entry.version > 1).map(|visible| visible.entry.id).collect();
    for version in tx.patient_entry_history(patient)? {
        if corrected.contains(&version.id) && admits(&version) {
            history.entry(version.id).or_default().push((version, Vec::new()));
        }
    }
    if !history.is_empty() {
        for (entry, number, observation) in tx.patient_observations(patient)? {
            if let Some(versions) = history.get_mut(&entry)
                && let Some((_, observations)) = versions.iter_mut().find(|(version, _)| version.version == number)
            {
                observations.push(observation);
            }
        }
    }
    Ok(history)
}
