//! Patient invitations and registration. An invitation is two short codes — an invitation
//! code and an activation code, 80 random bits together — single-use, with an expiry, kept
//! only as a hash. It goes by email (a link carrying both codes), SMS (the same link) or
//! letter (both codes printed; see [`App::export_letters`]). Registering takes the codes and
//! the patient's date of birth (never printed or sent), then an email and password; the
//! patient then walks through the Patient Record Team's welcome and each team already
//! linked to their record, confirming or changing what each sees.

use std::time::Duration;

use kith_core::audit::{Actor, Channel, Outcome};
use kith_core::model::{Account, Organisation, Patient, Team};
use kith_core::patient::{NhsNumber, RegistrationStatus};
use kith_core::team::{AccountStatus, TeamKind};
use kith_core::text::{EmailAddress, Name, OrganisationCode, Secret};
use kith_core::{AccountId, Date, LabelSet, PatientId, Timestamp};
use kith_store::{CodePurpose, Tx};
use sha2::{Digest, Sha256};

use crate::organisations::organisation_by_code;
use crate::outbox::Notice;
use crate::password::hash_password;
pub use crate::secrets::split_codes;
use crate::secrets::{new_invitation_secret, new_secret, token_hash};
use crate::sessions::{NewSession, SESSION_ABSOLUTE};
use crate::{App, AppError, AppResult, AuditBuilder, Operator, new_uuid};

/// How long an invitation's codes work.
pub const INVITATION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Wrong dates of birth accepted per invitation per hour before it stops answering.
pub const MAX_REGISTRATION_FAILURES_PER_HOUR: i64 = 5;

/// The one answer to codes or a date of birth that do not match, whatever the reason.
pub const NO_MATCH: &str = "The codes and date of birth do not match an invitation that is still open. Check them \
     and try again. If your invitation has expired, ask your care team to send a new one.";

/// How an invitation is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InviteChannel {
    Email,
    Sms,
    Letter,
}

impl InviteChannel {
    pub const fn code(self) -> &'static str {
        match self {
            InviteChannel::Email => "email",
            InviteChannel::Sms => "sms",
            InviteChannel::Letter => "letter",
        }
    }
    pub fn from_code(code: &str) -> Option<Self> {
        [InviteChannel::Email, InviteChannel::Sms, InviteChannel::Letter].into_iter().find(|c| c.code() == code)
    }
}

/// An invitation just sent.
#[derive(Clone, Debug)]
pub struct Invitation {
    pub patient: PatientId,
    pub channel: InviteChannel,
    pub expires_at: Timestamp,
}

/// The codes as typed: case, spaces and dashes ignored.
pub fn normalise_invitation_code(typed: &str) -> String {
    typed.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

fn failure_key(normalised: &str) -> [u8; 32] {
    Sha256::new().chain_update(b"invitation\0").chain_update(normalised.as_bytes()).finalize().into()
}

/// Sends a new invitation (older unused ones stop working), in the caller's transaction.
pub(crate) fn send_invitation(
    tx: &mut Tx<'_>,
    actor: Actor,
    channel: Channel,
    organisation: &Organisation,
    patient: &mut Patient,
    how: InviteChannel,
    now: Timestamp,
) -> AppResult<Invitation> {
    if patient.registration == RegistrationStatus::Registered {
        return Err(AppError::Conflict("the patient has registered already".to_owned()));
    }
    let recipient = match how {
        InviteChannel::Email => patient.demographics.email.as_ref().map(|email| email.to_string()),
        InviteChannel::Sms => patient.demographics.mobile.as_ref().map(|mobile| mobile.to_string()),
        InviteChannel::Letter => patient.demographics.address.as_ref().map(|_| patient.id.to_string()),
    }
    .ok_or_else(|| {
        AppError::Invalid(format!(
            "channel: the record has no {} to send the invitation to",
            match how {
                InviteChannel::Email => "email address",
                InviteChannel::Sms => "mobile number",
                InviteChannel::Letter => "postal address",
            }
        ))
    })?;
    let secret = new_invitation_secret();
    let expires_at = now.plus(INVITATION_LIFETIME);
    tx.retire_patient_codes(patient.id, CodePurpose::PatientInvitation, now)?;
    tx.insert_code(&token_hash(&secret), CodePurpose::PatientInvitation, None, Some(patient.id), now, expires_at)?;
    let notice = Notice::PatientInvitation {
        patient: patient.id,
        organisation: organisation.name.clone(),
        expires: expires_at.date(),
        code: secret,
    };
    tx.enqueue(&notice.message(how.code(), recipient, now))?;
    patient.registration = RegistrationStatus::Invited;
    patient.updated_at = now;
    tx.put_patient(patient)?;
    tx.audit(
        AuditBuilder::new(now, actor, channel, "patient.invite")
            .organisation(organisation.id)
            .patient(patient.id)
            .basis("administration")
            .reason(format!("by {}", how.code()))
            .build(),
    );
    Ok(Invitation { patient: patient.id, channel: how, expires_at })
}

/// Invites by email when an unregistered record gets a new email address (from a feed, the
/// CLI or the web).
pub(crate) fn invite_on_new_email(
    tx: &mut Tx<'_>,
    actor: Actor,
    channel: Channel,
    organisation: &Organisation,
    previous: Option<&EmailAddress>,
    patient: &mut Patient,
    now: Timestamp,
) -> AppResult<()> {
    let new_email = patient.demographics.email.as_ref().is_some_and(|email| Some(email) != previous);
    if new_email && patient.registration != RegistrationStatus::Registered && patient.merged_into.is_none() {
        send_invitation(tx, actor, channel, organisation, patient, InviteChannel::Email, now)?;
    }
    Ok(())
}

/// What the registration form learns once codes and date of birth match.
#[derive(Clone, Debug)]
pub struct InvitationMatch {
    pub patient: PatientId,
    pub given_name: String,
    pub email: Option<EmailAddress>,
}

/// One step of the walkthrough: a team linked to the record and what it sees.
#[derive(Clone, Debug)]
pub struct WalkthroughTeam {
    pub team: Team,
    pub labels: LabelSet,
}

/// The walkthrough after registering.
#[derive(Clone, Debug)]
pub struct Walkthrough {
    pub organisation: String,
    pub welcome: String,
    pub teams: Vec<WalkthroughTeam>,
    /// Every change made to the patient's consent on their behalf (who, team, organisation,
    /// labels, reason, when), oldest first: shown before the teams.
    pub on_behalf: Vec<crate::OnBehalfChange>,
    pub done: bool,
}

/// The welcome shown when a Patient Record Team has not written its own.
pub fn default_welcome(organisation: &str) -> String {
    format!(
        "Welcome to Kith. {organisation} keeps your record here. You decide which of your care teams see \
         which kinds of information, and you can see who has looked at your record. Next, we show you the \
         teams already caring for you and what each can see. You can change any of it, now or later."
    )
}

impl App {
    /// `kith patient invite`: invites the patient with this NHS number, by the channel
    /// given or else the first the record allows (email, then SMS, then letter).
    pub fn invite_patient(
        &self,
        operator: &Operator,
        organisation: &OrganisationCode,
        nhs_number: &NhsNumber,
        how: Option<InviteChannel>,
    ) -> AppResult<Invitation> {
        let now = self.now();
        self.store.write(|tx| {
            let org = organisation_by_code(tx, organisation)?;
            let mut patient = tx
                .patient_by_nhs_number(nhs_number)?
                .filter(|patient| patient.merged_into.is_none())
                .ok_or_else(|| AppError::NotFound(format!("no patient has NHS number {}", nhs_number.formatted())))?;
            if !tx.patient_in_organisation(patient.id, org.id)? {
                return Err(AppError::NotFound(format!(
                    "no patient with NHS number {} is in {}",
                    nhs_number.formatted(),
                    org.code
                )));
            }
            let d = &patient.demographics;
            let how = how
                .or_else(|| d.email.as_ref().map(|_| InviteChannel::Email))
                .or_else(|| d.mobile.as_ref().map(|_| InviteChannel::Sms))
                .or_else(|| d.address.as_ref().map(|_| InviteChannel::Letter))
                .ok_or_else(|| {
                    AppError::Invalid("the record has no email, mobile number or postal address to invite".to_owned())
                })?;
            send_invitation(tx, operator.actor(), Channel::Cli, &org, &mut patient, how, now)
        })
    }

    /// Checks invitation codes and a date of birth. Wrong answers count against the
    /// invitation (at most five an hour) and are audited; every refusal is the same.
    pub fn check_invitation(&self, codes: &str, birth_date: Option<Date>) -> AppResult<Option<InvitationMatch>> {
        let now = self.now();
        let normalised = normalise_invitation_code(codes);
        let hash = token_hash(&normalised);
        let key = failure_key(&normalised);
        self.store.write(|tx| {
            let Some(patient) = open_invitation(tx, &hash, now)? else { return Ok(None) };
            let failures = tx.sign_in_failures_since(&key, now.minus(Duration::from_secs(3600)))?;
            let event =
                AuditBuilder::new(now, Actor::System, Channel::Web, "patient.register_check").patient(patient.id);
            if failures >= MAX_REGISTRATION_FAILURES_PER_HOUR {
                tx.audit(
                    event.outcome(Outcome::Denied).reason("too many wrong dates of birth in the last hour").build(),
                );
                return Ok(None);
            }
            if birth_date != Some(patient.demographics.birth_date) {
                tx.record_sign_in_failure(&key, now, now.minus(Duration::from_secs(3600)))?;
                tx.audit(event.outcome(Outcome::Denied).reason("the date of birth does not match").build());
                return Ok(None);
            }
            Ok(Some(InvitationMatch {
                patient: patient.id,
                given_name: patient.demographics.given_name.to_string(),
                email: patient.demographics.email.clone(),
            }))
        })
    }

    /// Registers: with matching codes and date of birth, creates the patient's account (or
    /// refuses an email another account or record has), spends the invitation and signs in.
    pub fn register_patient(
        &self,
        codes: &str,
        birth_date: Option<Date>,
        email: &EmailAddress,
        password: &Secret,
    ) -> AppResult<NewSession> {
        let password_hash = hash_password(password)?;
        let Some(found) = self.check_invitation(codes, birth_date)? else {
            return Err(AppError::Invalid(NO_MATCH.to_owned()));
        };
        let now = self.now();
        let hash = token_hash(&normalise_invitation_code(codes));
        let secret = new_secret();
        let session_hash = token_hash(&secret);
        self.store.write(|tx| {
            let Some(mut patient) = open_invitation(tx, &hash, now)?.filter(|patient| patient.id == found.patient)
            else {
                return Ok(Err(AppError::Invalid(NO_MATCH.to_owned())));
            };
            if patient.account.is_some() {
                return Ok(Err(AppError::Invalid(NO_MATCH.to_owned())));
            }
            if tx.account_by_email(email)?.is_some()
                || tx.patient_by_email(email)?.is_some_and(|other| other.id != patient.id)
            {
                return Ok(Err(AppError::Conflict(
                    "An account already uses this email address. Use another, or sign in with that account.".to_owned(),
                )));
            }
            if !tx.use_code(&hash, now)? {
                return Ok(Err(AppError::Invalid(NO_MATCH.to_owned())));
            }
            let d = &patient.demographics;
            let account = Account {
                id: AccountId::from_uuid(new_uuid()),
                email: email.clone(),
                name: Name::parse("name", &format!("{} {}", d.given_name, d.family_name))?,
                status: AccountStatus::Active,
                created_at: now,
            };
            tx.insert_account(&account, Some(&password_hash))?;
            patient.account = Some(account.id);
            patient.registration = RegistrationStatus::Registered;
            patient.demographics.email = Some(email.clone());
            patient.updated_at = now;
            tx.put_patient(&patient)?;
            tx.insert_session(&session_hash, account.id, now, now.plus(SESSION_ABSOLUTE), None, false)?;
            tx.audit(
                AuditBuilder::new(now, Actor::Account(account.id), Channel::Web, "patient.register")
                    .patient(patient.id)
                    .subject(account.id)
                    .basis("self")
                    .build(),
            );
            Ok::<_, AppError>(Ok(NewSession { secret: Secret::new(secret.clone()), account }))
        })?
    }

    /// The walkthrough for a patient's account: the welcome, then each team linked to the
    /// record (the Patient Record Teams first) with what it sees now.
    pub fn walkthrough(&self, account: AccountId) -> AppResult<Walkthrough> {
        let now = self.now();
        self.store.write(|tx| {
            let patient = tx.patient_by_account(account)?.ok_or(AppError::Denied)?;
            let mut teams = Vec::new();
            let mut welcome = None;
            let mut organisation = None;
            for link in tx.care_links(patient.id)? {
                if link.discharged_at.is_some() {
                    continue;
                }
                let Some(team) = tx.team(link.team)? else { continue };
                if team.kind == TeamKind::PatientRecord && welcome.is_none() {
                    let org = tx.organisation(team.organisation)?;
                    organisation = org.as_ref().map(|org| org.name.to_string());
                    welcome = Some(tx.welcome_message(team.id)?.unwrap_or_else(|| {
                        default_welcome(organisation.as_deref().unwrap_or("Your care organisation"))
                    }));
                }
                teams.push(WalkthroughTeam { team, labels: link.labels });
            }
            teams.sort_by_key(|step| (step.team.kind != TeamKind::PatientRecord, step.team.name.to_string()));
            let done = tx.walkthrough_done(patient.id)?.is_some();
            let on_behalf = crate::on_behalf::changes_made_on_behalf(tx, patient.id)?;
            tx.audit(
                AuditBuilder::new(now, Actor::Account(account), Channel::Web, "consent.read")
                    .patient(patient.id)
                    .basis("self")
                    .reason("registration walkthrough")
                    .build(),
            );
            Ok(Walkthrough {
                organisation: organisation.clone().unwrap_or_default(),
                welcome: welcome.unwrap_or_else(|| default_welcome("Your care organisation")),
                teams,
                on_behalf,
                done,
            })
        })
    }

    /// The end of the walkthrough: the patient reaches their home page from now on.
    pub fn finish_walkthrough(&self, account: AccountId) -> AppResult<()> {
        let now = self.now();
        self.store.write(|tx| {
            let patient = tx.patient_by_account(account)?.ok_or(AppError::Denied)?;
            if tx.walkthrough_done(patient.id)?.is_none() {
                tx.set_walkthrough_done(patient.id, now)?;
                tx.audit(
                    AuditBuilder::new(now, Actor::Account(account), Channel::Web, "patient.walkthrough_done")
                        .patient(patient.id)
                        .basis("self")
                        .build(),
                );
            }
            Ok(())
        })
    }

    /// Sets a Patient Record Team's welcome message (shown first in the walkthrough).
    pub fn set_welcome_message(
        &self,
        operator: &Operator,
        organisation: &OrganisationCode,
        text: &str,
    ) -> AppResult<()> {
        let now = self.now();
        let text = text.trim();
        if text.is_empty() || text.chars().count() > 4000 {
            return Err(AppError::Invalid("welcome message: must be 1 to 4,000 characters".to_owned()));
        }
        self.store.write(|tx| {
            let org = organisation_by_code(tx, organisation)?;
            let prt = tx
                .patient_record_team(org.id)?
                .ok_or_else(|| AppError::NotFound(format!("organisation {} has no Patient Record Team", org.code)))?;
            tx.set_welcome_message(prt.id, text)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "team.welcome_message")
                    .organisation(org.id)
                    .team(prt.id)
                    .basis("administration")
                    .build(),
            );
            Ok(())
        })
    }
}

/// A letter invitation ready to print.
#[derive(Clone, Debug)]
pub struct LetterInvitation {
    pub message: uuid::Uuid,
    pub organisation: String,
    pub name: String,
    pub address: Vec<String>,
    pub invitation_code: String,
    pub activation_code: String,
    pub expires: String,
}

impl App {
    /// `kith letters export`: hands the organisation's pending letter invitations to
    /// `print` (which writes the PDF) and, when it succeeds, marks them printed in the same
    /// transaction, so that a failed export leaves them pending. Returns how many.
    pub fn export_letters(
        &self,
        operator: &Operator,
        organisation: &OrganisationCode,
        print: &mut dyn FnMut(&[LetterInvitation]) -> Result<(), String>,
    ) -> AppResult<usize> {
        let now = self.now();
        self.store.write(|tx| {
            let org = organisation_by_code(tx, organisation)?;
            let mut letters = Vec::new();
            let mut patients = Vec::new();
            for pending in tx.pending_letters()? {
                let (message, secret) = (pending.id, pending.secret);
                let Ok(patient) = pending.recipient.parse::<uuid::Uuid>().map(PatientId::from_uuid) else { continue };
                if !tx.patient_in_organisation(patient, org.id)? {
                    continue;
                }
                let (Some(secret), Some(record)) = (secret, tx.patient(patient)?) else { continue };
                let Some(address) = record.demographics.address.as_ref() else { continue };
                // Only a letter whose codes still work is printed; one replaced by a newer
                // invitation, used or expired is given up.
                let code = tx.code(&token_hash(&secret))?;
                let Some(code) = code.filter(|code| code.used_at.is_none() && now < code.expires_at) else {
                    tx.cancel_letter(message, "the invitation was replaced, used or expired before printing", now)?;
                    continue;
                };
                let expires = code.expires_at.date().to_string();
                let (invitation_code, activation_code) = split_codes(&secret);
                letters.push(LetterInvitation {
                    message,
                    organisation: org.name.to_string(),
                    name: format!("{} {}", record.demographics.given_name, record.demographics.family_name),
                    address: address.lines().to_vec(),
                    invitation_code,
                    activation_code,
                    expires,
                });
                patients.push(patient);
            }
            print(&letters).map_err(|error| AppError::Invalid(format!("the letters could not be written: {error}")))?;
            for (letter, patient) in letters.iter().zip(&patients) {
                tx.mark_letter_printed(letter.message, now)?;
                tx.audit(
                    AuditBuilder::new(now, operator.actor(), Channel::Cli, "patient.invitation_letter_printed")
                        .organisation(org.id)
                        .patient(*patient)
                        .basis("administration")
                        .build(),
                );
            }
            Ok(letters.len())
        })
    }
}

/// The patient an unused, unexpired invitation with this hash is for.
fn open_invitation(tx: &mut Tx<'_>, hash: &[u8; 32], now: Timestamp) -> AppResult<Option<Patient>> {
    let Some(row) = tx.code(hash)? else { return Ok(None) };
    if row.purpose != CodePurpose::PatientInvitation || row.used_at.is_some() || now >= row.expires_at {
        return Ok(None);
    }
    let Some(patient) = row.patient else { return Ok(None) };
    Ok(tx.patient(patient)?.filter(|patient| patient.merged_into.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::INVITATION_ALPHABET;

    #[test]
    fn codes_are_sixteen_unambiguous_symbols_and_read_forgivingly() {
        let secret = new_invitation_secret();
        assert_eq!(secret.len(), 16);
        assert!(secret.bytes().all(|b| INVITATION_ALPHABET.contains(&b)));
        let (invitation, activation) = split_codes(&secret);
        assert_eq!(invitation.len(), 9);
        assert_eq!(normalise_invitation_code(&format!("{} {}", invitation.to_lowercase(), activation)), secret);
        assert_ne!(new_invitation_secret(), secret);
    }
}
