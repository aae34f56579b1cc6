//! Consent on the patient's behalf, around the rule ([`kith_core::consent::decide_consent_change`]):
//! the organisation's setting of which labels its data-quality staff may add, the list of
//! changes made on a patient's behalf that the patient sees when they register, and what an
//! organisation's privacy officer reviews.

use kith_core::audit::{ChainedEvent, Channel};
use kith_core::text::OrganisationCode;
use kith_core::{AccountId, LabelSet, PatientId, Timestamp};
use kith_store::Tx;

use crate::audit::{AccessLogEntry, access_log_entry};
use crate::organisations::organisation_by_code;
use crate::{App, AppError, AppResult, AuditBuilder, Operator};

/// One change made to a patient's consent on their behalf, as the patient is shown it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnBehalfChange {
    pub at: Timestamp,
    /// The professional's name.
    pub who: String,
    pub team: String,
    pub organisation: String,
    /// What the team saw before (unknown only for events Kith cannot read back).
    pub before: Option<LabelSet>,
    pub after: LabelSet,
    pub reason: String,
}

/// What a privacy officer reviews besides break glass ([`App::break_glass_log`]), by the
/// audit action (the FHIR AuditEvent `subtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfficerReview {
    /// Consent changed (or attempted) on patients' behalf by the organisation's
    /// professionals — and by anyone else on its teams' links.
    OnBehalfConsent,
    /// Patients brought into the organisation's teams, and look-ups that matched no one.
    AddPatient,
    /// Professionals who reached a look-up limit.
    LookupLimit,
    /// Patient Record Team coordinators' identity checks: password resets and reminders.
    PatientPasswordReset,
    PatientInvite,
}

impl OfficerReview {
    pub const ALL: [OfficerReview; 5] = [
        OfficerReview::OnBehalfConsent,
        OfficerReview::AddPatient,
        OfficerReview::LookupLimit,
        OfficerReview::PatientPasswordReset,
        OfficerReview::PatientInvite,
    ];

    /// The audit action reviewed.
    pub const fn action(self) -> &'static str {
        match self {
            OfficerReview::OnBehalfConsent => "consent.change",
            OfficerReview::AddPatient => "care_link.create",
            OfficerReview::LookupLimit => "patient.lookup_limit",
            OfficerReview::PatientPasswordReset => "patient.password_reset_request",
            OfficerReview::PatientInvite => "patient.invite",
        }
    }

    pub fn from_action(action: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|review| review.action() == action)
    }
}

/// An audit event as a privacy officer reviews it: the access-log line, with the
/// organisation, the reason given (or the reason for a refusal) and what changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewedEvent {
    pub entry: AccessLogEntry,
    pub organisation: Option<String>,
    pub reason: Option<String>,
    pub subject: Option<String>,
}

/// `labels A -> B`, as consent changes are audited.
fn labels_changed(subject: Option<&str>) -> Option<(LabelSet, LabelSet)> {
    let (before, after) = subject?.strip_prefix("labels ")?.split_once(" -> ")?;
    Some((LabelSet::parse_list(before).ok()?, LabelSet::parse_list(after).ok()?))
}

/// The changes made on the patient's behalf to their consent, oldest first.
pub(crate) fn changes_made_on_behalf(tx: &mut Tx<'_>, patient: PatientId) -> AppResult<Vec<OnBehalfChange>> {
    let mut changes = Vec::new();
    for event in tx.audit_events_for_patient(patient, None, None, 1000)?.into_iter().rev() {
        let record = &event.record;
        if record.action != "consent.change"
            || record.outcome != "allowed"
            || record.basis.as_deref() != Some("on_behalf_of_patient")
        {
            continue;
        }
        let line = access_log_entry(tx, &event)?;
        let organisation = match record.organisation {
            Some(id) => tx.organisation(id)?.map(|organisation| organisation.name.to_string()),
            None => None,
        };
        let changed = labels_changed(record.subject.as_deref());
        changes.push(OnBehalfChange {
            at: record.at,
            who: line.who,
            team: line.team.unwrap_or_default(),
            organisation: organisation.unwrap_or_default(),
            before: changed.map(|(before, _)| before),
            after: changed.map_or(line.label_set, |(_, after)| after),
            reason: record.reason.clone().unwrap_or_default(),
        });
    }
    Ok(changes)
}

fn reviewed(tx: &mut Tx<'_>, event: &ChainedEvent) -> AppResult<ReviewedEvent> {
    let organisation = match event.record.organisation {
        Some(id) => tx.organisation(id)?.map(|organisation| organisation.name.to_string()),
        None => None,
    };
    Ok(ReviewedEvent {
        entry: access_log_entry(tx, event)?,
        organisation,
        reason: event.record.reason.clone(),
        subject: event.record.subject.clone(),
    })
}

impl App {
    /// Which labels the organisation's Patient Record Team's data-quality staff may add to
    /// that team's care links on a patient's behalf (general health unless changed; the
    /// empty set stops it altogether). Audited.
    pub fn set_on_behalf_labels(
        &self,
        operator: &Operator,
        organisation: &OrganisationCode,
        allowed: LabelSet,
    ) -> AppResult<()> {
        let now = self.now();
        self.store.write(|tx| {
            let org = organisation_by_code(tx, organisation)?;
            let before = tx.on_behalf_labels(org.id)?;
            tx.set_on_behalf_labels(org.id, allowed)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "organisation.on_behalf_labels")
                    .organisation(org.id)
                    .basis("administration")
                    .data(String::new(), allowed)
                    .subject(format!("labels {before} -> {allowed}"))
                    .build(),
            );
            Ok(())
        })
    }

    /// The labels the organisation's data-quality staff may add on a patient's behalf.
    pub fn on_behalf_labels(&self, organisation: &OrganisationCode) -> AppResult<LabelSet> {
        self.store.read(|tx| {
            let org = organisation_by_code(tx, organisation)?;
            Ok(tx.on_behalf_labels(org.id)?)
        })
    }

    /// What a privacy officer reviews of one kind (about one patient, or all), in the
    /// organisations they are privacy officer of, newest first, with each event's reason.
    /// An account that is no organisation's privacy officer is refused outright. Reading it
    /// is audited.
    pub fn officer_review(
        &self,
        officer: AccountId,
        review: OfficerReview,
        patient: Option<PatientId>,
        limit: i64,
        channel: Channel,
    ) -> AppResult<Vec<ReviewedEvent>> {
        let now = self.now();
        self.store
            .read_audited(|tx| {
                if !tx.is_privacy_officer(officer)? {
                    return Ok(Err(AppError::Forbidden(
                        "this review is for organisations' privacy officers".to_owned(),
                    )));
                }
                let events = tx.officer_events(
                    officer,
                    kith_store::OfficerEvents::Action(review.action()),
                    patient,
                    limit.clamp(1, 1000),
                )?;
                let log = events.iter().map(|event| reviewed(tx, event)).collect::<AppResult<Vec<_>>>()?;
                let mut event =
                    AuditBuilder::new(now, kith_core::audit::Actor::Account(officer), channel, "officer_review.read")
                        .basis("administration")
                        .subject(review.action());
                if let Some(patient) = patient {
                    event = event.patient(patient);
                }
                tx.audit(event.build());
                Ok(Ok(log))
            })
            .and_then(|outcome| outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_changes_read_back_from_their_audit_subject() {
        let general = LabelSet::parse_list("general").unwrap();
        assert_eq!(labels_changed(Some("labels  -> general")), Some((LabelSet::EMPTY, general)));
        assert_eq!(
            labels_changed(Some("labels general,mental_health -> ")),
            Some((LabelSet::parse_list("general,mental_health").unwrap(), LabelSet::EMPTY))
        );
        assert_eq!(labels_changed(Some("something else")), None);
        assert_eq!(labels_changed(None), None);
        for review in OfficerReview::ALL {
            assert_eq!(OfficerReview::from_action(review.action()), Some(review));
        }
    }
}
