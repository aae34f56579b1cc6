//! Finding a patient by what a professional knows of them — an identifier and a date of
//! birth (`$add-patient`), or a Patient Record Team coordinator's identity check — without
//! making Kith an existence oracle: every answer that depends on the record is the same
//! whether or not it exists, after the same statements; every miss is audited with the
//! patient when there is one (so they see it in their access log); and each account's
//! look-ups are limited, the organisation's privacy officers told when the limit is reached.
//!
//! The limits reuse the sign-in throttle's table (`sign_in_failures`), each under its own
//! key, as invitations do (`invitations::failure_key`).

use std::time::Duration;

use kith_core::audit::{Actor, Channel, Outcome};
use kith_core::consent::{AddPatientFacts, AddPatientRefusal, LookupResult, decide_add_patient};
use kith_core::model::CareLink;
use kith_core::team::AccountStatus;
use kith_core::{AccountId, Date, OrganisationId, PatientId, TeamId, Timestamp};
use kith_store::Tx;
use sha2::{Digest, Sha256};

use crate::account_access::resolve;
use crate::outbox::Notice;
use crate::patients::{professional_link_basis, write_link};
use crate::{App, AppError, AppResult, AuditBuilder, LinkActor, PatientQuery, ProfessionalContext};

/// `$add-patient` look-ups that matched no one, per professional, in an hour. Matches do not
/// count: their answer (the new link) shows the patient anyway.
pub const MAX_LOOKUP_MISSES_PER_HOUR: i64 = 10;
/// Identity checks (the reset and remind forms) per coordinator in an hour, matched or not:
/// their answer is the same either way, and a limit that counted only misses would itself
/// tell one from the other.
pub const MAX_IDENTITY_CHECKS_PER_HOUR: i64 = 30;
const HOUR: Duration = Duration::from_secs(60 * 60);

/// A per-account allowance of look-ups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LookupBudget {
    /// `$add-patient` misses.
    AddPatientMisses,
    /// Coordinators' identity checks.
    IdentityChecks,
}

impl LookupBudget {
    fn key(self, account: AccountId) -> [u8; 32] {
        let kind: &[u8] = match self {
            LookupBudget::AddPatientMisses => b"add_patient_miss\0",
            LookupBudget::IdentityChecks => b"identity_check\0",
        };
        Sha256::new()
            .chain_update(b"patient_lookup\0")
            .chain_update(kind)
            .chain_update(account.as_uuid())
            .finalize()
            .into()
    }

    pub(crate) fn limit(self) -> i64 {
        match self {
            LookupBudget::AddPatientMisses => MAX_LOOKUP_MISSES_PER_HOUR,
            LookupBudget::IdentityChecks => MAX_IDENTITY_CHECKS_PER_HOUR,
        }
    }

    /// What the caller is told once the allowance is spent (nothing about any patient).
    pub(crate) fn refusal(self) -> AppError {
        AppError::TooManyAttempts(match self {
            LookupBudget::AddPatientMisses => format!(
                "You have made {MAX_LOOKUP_MISSES_PER_HOUR} look-ups in the last hour that matched no patient. Try \
                 again later; your organisation's privacy officer has been told."
            ),
            LookupBudget::IdentityChecks => format!(
                "You have checked {MAX_IDENTITY_CHECKS_PER_HOUR} patients' identities in the last hour. Try again \
                 later; your organisation's privacy officer has been told."
            ),
        })
    }

    /// Whether `account` has spent its allowance for the last hour.
    pub(crate) fn spent(self, tx: &mut Tx<'_>, account: AccountId, now: Timestamp) -> AppResult<bool> {
        Ok(tx.sign_in_failures_since(&self.key(account), now.minus(HOUR))? >= self.limit())
    }

    /// Starts a look-up through `team`: the team, its organisation and the look-up's audit
    /// event (`action`), once [`LookupBudget::admit`] lets `account` look up again. An unknown
    /// team is [`AppError::Denied`] (teams are directory information: it says nothing about a
    /// patient).
    pub(crate) fn start(
        self,
        tx: &mut Tx<'_>,
        account: AccountId,
        channel: Channel,
        team: TeamId,
        action: &'static str,
        now: Timestamp,
    ) -> AppResult<Result<(kith_core::model::Team, kith_core::model::Organisation, AuditBuilder), AppError>> {
        let Some(team_row) = tx.team(team)? else { return Ok(Err(AppError::Denied)) };
        let Some(organisation) = tx.organisation(team_row.organisation)? else { return Ok(Err(AppError::Denied)) };
        let event =
            AuditBuilder::new(now, Actor::Account(account), channel, action).organisation(organisation.id).team(team);
        Ok(self.admit(tx, account, now, event)?.map(|event| (team_row, organisation, event)))
    }

    /// Gives `event` back when `account` may look up again; once the allowance is spent,
    /// audits `event` as refused (nothing is looked up) and answers the refusal.
    pub(crate) fn admit(
        self,
        tx: &mut Tx<'_>,
        account: AccountId,
        now: Timestamp,
        event: AuditBuilder,
    ) -> AppResult<Result<AuditBuilder, AppError>> {
        if !self.spent(tx, account, now)? {
            return Ok(Ok(event));
        }
        tx.audit(
            event
                .outcome(Outcome::Denied)
                .reason("too many look-ups that matched no patient in the last hour; not looked up")
                .build(),
        );
        Ok(Err(self.refusal()))
    }

    /// Counts one look-up against `account`'s allowance. The one that reaches the limit is
    /// audited and tells `organisation`'s privacy officers (outbox), once.
    pub(crate) fn spend(
        self,
        tx: &mut Tx<'_>,
        account: AccountId,
        channel: Channel,
        organisation: OrganisationId,
        now: Timestamp,
    ) -> AppResult<()> {
        let key = self.key(account);
        tx.record_sign_in_failure(&key, now, now.minus(HOUR))?;
        if tx.sign_in_failures_since(&key, now.minus(HOUR))? != self.limit() {
            return Ok(());
        }
        tx.audit(
            AuditBuilder::new(now, Actor::Account(account), channel, "patient.lookup_limit")
                .organisation(organisation)
                .basis("administration")
                .outcome(Outcome::Denied)
                .reason(match self {
                    LookupBudget::AddPatientMisses => {
                        format!("{MAX_LOOKUP_MISSES_PER_HOUR} look-ups that matched no patient in an hour")
                    }
                    LookupBudget::IdentityChecks => {
                        format!("{MAX_IDENTITY_CHECKS_PER_HOUR} patient identity checks in an hour")
                    }
                })
                .build(),
        );
        for officer in tx.privacy_officers(organisation)? {
            tx.enqueue(&Notice::PatientLookupLimitPrivacyOfficer { account }.email(&officer.email, now))?;
        }
        Ok(())
    }
}

/// How a professional who brings a patient into their team says they may.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddBasis {
    /// The patient has explicitly agreed.
    ExplicitConsent,
    /// A referral: the patient's implied consent.
    Referral,
    /// Another basis, stated (kept in the audit event; the link's basis is implied consent).
    Other(kith_core::text::Reason),
}

/// The record an exact identifier names: the NHS number, or a local identifier of
/// `organisation` (another organisation's identifiers name nothing here); a merged record
/// is followed to its survivor. The same statements run whatever is found.
pub(crate) fn candidate(
    tx: &mut Tx<'_>,
    identifier: &PatientQuery,
    organisation: &kith_core::model::Organisation,
) -> AppResult<Option<kith_core::model::Patient>> {
    let candidate = match identifier {
        PatientQuery::NhsNumber(number) => tx.patient_by_nhs_number(number)?,
        PatientQuery::Local { organisation: code, identifier } if *code == organisation.code => {
            tx.patient_by_local_identifier(organisation.id, identifier)?
        }
        _ => None,
    };
    Ok(match candidate {
        Some(record) if record.merged_into.is_some() => resolve(tx, record.id)?,
        other => other,
    })
}

impl App {
    /// A professional of `team` brings a patient into it by exact identifier (the NHS
    /// number, or a local identifier of the team's organisation) and date of birth — never
    /// by browsing — with the team's default labels, on implied consent (a referral).
    ///
    /// [`decide_add_patient`] decides. A caller who may not add to the team, and every
    /// answer about a record the caller may not know of (none, another date of birth, not
    /// in the team's organisation, sharing disabled), is [`AppError::Denied`], after the
    /// same statements whatever the record; a miss is audited with the patient when there is
    /// one and counts against the professional's [`MAX_LOOKUP_MISSES_PER_HOUR`]; past it,
    /// every look-up is refused ([`AppError::TooManyAttempts`]) without looking. `basis` is
    /// what the professional says entitles them (FHIR's `$add-patient`: a referral).
    pub fn add_patient_to_team_as(
        &self,
        account: AccountId,
        channel: Channel,
        team: TeamId,
        identifier: &PatientQuery,
        birth_date: Date,
        basis: &AddBasis,
    ) -> AppResult<CareLink> {
        let now = self.now();
        let budget = LookupBudget::AddPatientMisses;
        self.store
            .write(|tx| {
                // Teams are directory information: an unknown one says nothing about a patient.
                let (team_row, organisation, event) =
                    match budget.start(tx, account, channel, team, "care_link.create", now)? {
                        Ok(started) => started,
                        Err(refusal) => return Ok(Err(refusal)),
                    };
                let account_status = tx.account(account)?.map_or(AccountStatus::Disabled, |row| row.status);
                let membership = tx
                    .membership(account, team)?
                    .map(|m| kith_core::access::MembershipFacts { role: m.role, status: m.status });
                // The same work whether or not a record is found: the look-up, the
                // organisation and the team's link (on a nil id when none); a merged record
                // is followed to its survivor (rare, and only when one was found).
                let record = candidate(tx, identifier, &organisation)?;
                let probe = record.as_ref().map_or(PatientId::from_uuid(uuid::Uuid::nil()), |record| record.id);
                let patient_in_organisation = tx.patient_in_organisation(probe, organisation.id)?;
                let in_team = tx.care_link(probe, team)?.is_some_and(|link| link.is_active());
                let found = match &record {
                    None => LookupResult::NoRecord,
                    Some(record) if record.demographics.birth_date != birth_date => LookupResult::BirthDateDiffers,
                    Some(record) => LookupResult::Found {
                        patient_in_organisation,
                        sharing_disabled: record.sharing_disabled,
                        in_team,
                    },
                };
                let decision = decide_add_patient(&AddPatientFacts {
                    account_status,
                    membership,
                    team_kind: team_row.kind,
                    team_status: team_row.status,
                    found,
                });
                let event = match &record {
                    Some(record) => event.patient(record.id),
                    None => event,
                };
                let refusal = match decision {
                    Ok(()) => {
                        let record = record.expect("the rule adds only a record it found");
                        let context = ProfessionalContext { account, team, organisation: organisation.id, channel };
                        let explicit_consent = *basis == AddBasis::ExplicitConsent;
                        let actor = LinkActor::Professional { context: &context, explicit_consent };
                        let link_basis = professional_link_basis(explicit_consent);
                        let link =
                            write_link(tx, &actor, &record, &team_row, team_row.default_labels, link_basis, now)?;
                        if let AddBasis::Other(stated) = basis {
                            tx.audit(
                                AuditBuilder::new(now, Actor::Account(account), channel, "care_link.basis")
                                    .organisation(organisation.id)
                                    .team(team)
                                    .patient(record.id)
                                    .basis("administration")
                                    .reason(format!("brought in on another basis: {stated}"))
                                    .build(),
                            );
                        }
                        return Ok(Ok(link));
                    }
                    Err(refusal) => refusal,
                };
                let (reason, answer) = match refusal {
                    AddPatientRefusal::Caller(deny) => (deny.to_string(), AppError::Denied),
                    AddPatientRefusal::TeamClosed => {
                        ("the team is closed".to_owned(), kith_core::consent::ConsentRefusal::TeamClosed.into())
                    }
                    AddPatientRefusal::NoMatch(why) => {
                        budget.spend(tx, account, channel, organisation.id, now)?;
                        (format!("no match: {why}"), AppError::Denied)
                    }
                    AddPatientRefusal::AlreadyInTeam => (
                        "the patient is in the team already".to_owned(),
                        AppError::Conflict(format!("the patient is already in team {}", team_row.alias)),
                    ),
                };
                tx.audit(event.outcome(Outcome::Denied).reason(reason).build());
                Ok(Err(answer))
            })
            .and_then(|outcome: AppResult<CareLink>| outcome)
    }
}
