//! The outbox: every message Kith sends ([`Notice`]: its stored name, its payload and its
//! wording, pure) and the delivery use case ([`App::deliver_outbox`]) that claims due
//! messages, hands them to a [`Transport`] outside any transaction, and records each
//! outcome with back-off. A new message is a new [`Notice`] variant; nothing else in Kith
//! names templates (kith-store keeps the name as text, the CLI and pages only show it).
//!
//! No subject and no SMS body carries health information — no team a patient is in, no
//! label, no diagnosis: a message says that something happened and links to Kith, where the
//! person signs in to read the details. Only professionals' emails name their own team.

use std::time::Duration;

use kith_core::text::{EmailAddress, Name};
use kith_core::{AccountId, BreakGlassId, Date, PatientId, Timestamp};
use kith_store::{OUTBOX_STATUSES, OutboxCount, OutboxMessage, OutboxRow};
use uuid::Uuid;

use crate::{App, AppError, AppResult};

/// How long a claimed message is held by one worker before another may try it: longer than
/// a batch of sends with the transports' timeouts.
pub const DELIVERY_LEASE: Duration = Duration::from_secs(5 * 60);
/// Attempts after which a message is given up (`dead`).
pub const MAX_DELIVERY_ATTEMPTS: i64 = 8;
/// The first retry's delay; each further one doubles it, up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(30);
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60 * 60);
/// The longest failure description stored.
const MAX_ERROR_CHARS: usize = 200;

/// How a message reaches its recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryChannel {
    Email,
    Sms,
}

impl DeliveryChannel {
    pub fn code(self) -> &'static str {
        match self {
            DeliveryChannel::Email => "email",
            DeliveryChannel::Sms => "sms",
        }
    }
}

/// A message ready to send: plain text. An SMS has only the text (the subject is empty).
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
}

/// Never prints the text, which may carry a one-time code.
impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered").field("subject", &self.subject).finish_non_exhaustive()
    }
}

/// Why a stored message cannot be rendered: Kith wrote something it cannot read back. The
/// message names no content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("no wording for template {0}")]
    UnknownTemplate(String),
    #[error("the payload lacks a valid {0}")]
    Payload(&'static str),
    #[error("the message needs a one-time code and has none (or not a URL-safe one)")]
    Secret,
}

/// Every message Kith sends, with what it carries: the one place a message is defined.
/// A new message is a new variant; the compiler then asks for its stored name
/// ([`Notice::template`], the outbox's `template` column), its payload (identifiers, and the
/// names of an organisation or team where its wording needs them — never health
/// information), how it is read back ([`Notice::read`]) and its wording ([`Notice::render`]).
/// The stored names and payloads are those Kith has always written, so stored messages
/// still read.
#[derive(Clone, PartialEq, Eq)]
pub enum Notice {
    /// To a registered patient: a professional broke the glass on their record.
    BreakGlassPatient(PatientId),
    /// To each privacy officer of the organisation: a grant to review.
    BreakGlassPrivacyOfficer { grant: BreakGlassId, patient: PatientId },
    /// To each privacy officer: a professional reached the limit of look-ups that matched no
    /// patient.
    PatientLookupLimitPrivacyOfficer { account: AccountId },
    /// To a registered patient: a speciality team was linked to their record.
    TeamAddedPatient(PatientId),
    /// To a registered patient who asked for it: new entries in their record (at most one
    /// an hour, however busy the feed).
    NewEntriesPatient(PatientId),
    /// To a registered patient: their sharing choices were changed on their behalf.
    ConsentChangedPatient(PatientId),
    /// To a registered patient: sharing of their record was turned off.
    SharingDisabledPatient(PatientId),
    /// A password-reset link; `team` when a coordinator of it asked.
    PasswordReset { account: AccountId, team: Option<Name>, code: String },
    /// A patient's invitation to register, by email, SMS or letter.
    PatientInvitation { patient: PatientId, organisation: Name, expires: Date, code: String },
    /// A new professional's link to activate their account and join `team`.
    ProfessionalActivation { account: AccountId, team: Name, expires: Date, code: String },
    /// An existing account was added to `team` at once.
    ProfessionalAdded { account: AccountId, team: Name },
    /// To each active coordinator of `team`: a patient changed what the team may see of
    /// their record (which patient is not said: the coordinator has no clinical access).
    ConsentChangedCoordinator { account: AccountId, team: Name },
    /// An existing account is invited to join `team`, to accept or decline signed in.
    MembershipInvitation { account: AccountId, team: Name, organisation: Name },
    /// An address a coordinator gave for a professional is a patient's.
    ProfessionalAddressUnusable { organisation: Name },
    /// Two-step verification was turned off; `team` when a coordinator of it did it, else
    /// the operator.
    TwoFactorReset { account: AccountId, team: Option<Name> },
}

/// Never prints the one-time code a notice may carry.
impl std::fmt::Debug for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notice").field("template", &self.template()).finish_non_exhaustive()
    }
}

impl Notice {
    /// Every stored template name, one per variant.
    pub const TEMPLATES: [&'static str; 15] = [
        "break_glass_patient",
        "break_glass_privacy_officer",
        "patient_lookup_limit_privacy_officer",
        "team_added_patient",
        "new_entries_patient",
        "consent_changed_patient",
        "sharing_disabled_patient",
        "password_reset",
        "patient_invitation",
        "professional_activation",
        "professional_added",
        "consent_changed_coordinator",
        "membership_invitation",
        "professional_address_unusable",
        "two_factor_reset",
    ];

    /// The name stored in the outbox's `template` column.
    pub fn template(&self) -> &'static str {
        match self {
            Notice::BreakGlassPatient(_) => "break_glass_patient",
            Notice::BreakGlassPrivacyOfficer { .. } => "break_glass_privacy_officer",
            Notice::PatientLookupLimitPrivacyOfficer { .. } => "patient_lookup_limit_privacy_officer",
            Notice::TeamAddedPatient(_) => "team_added_patient",
            Notice::NewEntriesPatient(_) => "new_entries_patient",
            Notice::ConsentChangedPatient(_) => "consent_changed_patient",
            Notice::SharingDisabledPatient(_) => "sharing_disabled_patient",
            Notice::PasswordReset { .. } => "password_reset",
            Notice::PatientInvitation { .. } => "patient_invitation",
            Notice::ProfessionalActivation { .. } => "professional_activation",
            Notice::ProfessionalAdded { .. } => "professional_added",
            Notice::ConsentChangedCoordinator { .. } => "consent_changed_coordinator",
            Notice::MembershipInvitation { .. } => "membership_invitation",
            Notice::ProfessionalAddressUnusable { .. } => "professional_address_unusable",
            Notice::TwoFactorReset { .. } => "two_factor_reset",
        }
    }

    /// The stored payload: a JSON object of identifiers and names.
    fn payload(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Notice::BreakGlassPatient(patient)
            | Notice::TeamAddedPatient(patient)
            | Notice::NewEntriesPatient(patient)
            | Notice::ConsentChangedPatient(patient)
            | Notice::SharingDisabledPatient(patient) => json!({ "patient": patient.to_string() }),
            Notice::BreakGlassPrivacyOfficer { grant, patient } => {
                json!({ "grant": grant.to_string(), "patient": patient.to_string() })
            }
            Notice::PatientLookupLimitPrivacyOfficer { account } => json!({ "account": account.to_string() }),
            Notice::PasswordReset { account, team, code: _ } | Notice::TwoFactorReset { account, team } => match team {
                None => json!({ "account": account.to_string() }),
                Some(team) => json!({ "account": account.to_string(), "team": team.as_str() }),
            },
            Notice::PatientInvitation { patient, organisation, expires, code: _ } => json!({
                "patient": patient.to_string(),
                "organisation": organisation.as_str(),
                "expires": expires.to_string(),
            }),
            Notice::ProfessionalActivation { account, team, expires, code: _ } => json!({
                "account": account.to_string(), "team": team.as_str(), "expires": expires.to_string(),
            }),
            Notice::ProfessionalAdded { account, team } | Notice::ConsentChangedCoordinator { account, team } => {
                json!({ "account": account.to_string(), "team": team.as_str() })
            }
            Notice::MembershipInvitation { account, team, organisation } => json!({
                "account": account.to_string(),
                "team": team.as_str(),
                "organisation": organisation.as_str(),
            }),
            Notice::ProfessionalAddressUnusable { organisation } => json!({ "organisation": organisation.as_str() }),
        }
    }

    /// The one-time code the message carries, kept in the outbox until it is sent.
    fn code(&self) -> Option<&str> {
        match self {
            Notice::PasswordReset { code, .. }
            | Notice::PatientInvitation { code, .. }
            | Notice::ProfessionalActivation { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The outbox message that sends this notice to `recipient` by `channel` (`email`,
    /// `sms` or `letter`), written in the transaction of the change that causes it.
    pub fn message(&self, channel: &'static str, recipient: String, now: Timestamp) -> OutboxMessage {
        OutboxMessage {
            id: crate::new_uuid(),
            channel,
            template: self.template().to_owned(),
            recipient,
            payload: self.payload().to_string(),
            secret: self.code().map(str::to_owned),
            created_at: now,
        }
    }

    /// [`Notice::message`] by email.
    pub fn email(&self, recipient: &EmailAddress, now: Timestamp) -> OutboxMessage {
        self.message("email", recipient.to_string(), now)
    }

    /// A stored message read back: its template, payload and one-time code.
    pub fn read(template: &str, payload: &str, secret: Option<&str>) -> Result<Notice, RenderError> {
        let payload: serde_json::Value =
            serde_json::from_str(payload).map_err(|_| RenderError::Payload("JSON object"))?;
        let code = || secret.filter(|code| is_url_safe(code)).map(str::to_owned).ok_or(RenderError::Secret);
        let text = |field: &'static str| payload.get(field).and_then(serde_json::Value::as_str);
        let name = |field: &'static str| {
            text(field).and_then(|text| Name::parse(field, text).ok()).ok_or(RenderError::Payload(field))
        };
        let optional_name = |field: &'static str| payload.get(field).map(|_| name(field)).transpose();
        let date = |field: &'static str| {
            text(field).and_then(|text| Date::parse(text).ok()).ok_or(RenderError::Payload(field))
        };
        let uuid = |field: &'static str| {
            text(field).and_then(|text| Uuid::parse_str(text).ok()).ok_or(RenderError::Payload(field))
        };
        let account = || uuid("account").map(AccountId::from_uuid);
        let patient = || uuid("patient").map(PatientId::from_uuid);
        Ok(match template {
            "break_glass_patient" => Notice::BreakGlassPatient(patient()?),
            "break_glass_privacy_officer" => {
                Notice::BreakGlassPrivacyOfficer { grant: BreakGlassId::from_uuid(uuid("grant")?), patient: patient()? }
            }
            "patient_lookup_limit_privacy_officer" => Notice::PatientLookupLimitPrivacyOfficer { account: account()? },
            "team_added_patient" => Notice::TeamAddedPatient(patient()?),
            "new_entries_patient" => Notice::NewEntriesPatient(patient()?),
            "consent_changed_patient" => Notice::ConsentChangedPatient(patient()?),
            "sharing_disabled_patient" => Notice::SharingDisabledPatient(patient()?),
            "password_reset" => {
                let account = account()?;
                let code = code()?;
                Notice::PasswordReset { account, team: optional_name("team")?, code }
            }
            "patient_invitation" => Notice::PatientInvitation {
                patient: patient()?,
                organisation: name("organisation")?,
                expires: date("expires")?,
                code: code()?,
            },
            "professional_activation" => Notice::ProfessionalActivation {
                account: account()?,
                team: name("team")?,
                expires: date("expires")?,
                code: code()?,
            },
            "professional_added" => Notice::ProfessionalAdded { account: account()?, team: name("team")? },
            "consent_changed_coordinator" => {
                Notice::ConsentChangedCoordinator { account: account()?, team: name("team")? }
            }
            "membership_invitation" => Notice::MembershipInvitation {
                account: account()?,
                team: name("team")?,
                organisation: name("organisation")?,
            },
            "professional_address_unusable" => {
                Notice::ProfessionalAddressUnusable { organisation: name("organisation")? }
            }
            "two_factor_reset" => Notice::TwoFactorReset { account: account()?, team: optional_name("team")? },
            other => return Err(RenderError::UnknownTemplate(other.to_owned())),
        })
    }

    /// What the message says by `channel`; `public_url` is where people reach Kith (e.g.
    /// `https://kith.example.org`).
    pub fn render(&self, channel: DeliveryChannel, public_url: &str) -> Rendered {
        let url = public_url.trim_end_matches('/');
        let (subject, email, sms) = match self {
            Notice::BreakGlassPatient(_) => (
                "Someone used emergency access to your Kith record".to_owned(),
                format!(
                    "A professional used emergency access (\"breaking the glass\") to see your Kith record.\n\n\
                     Emergency access is for urgent care when the usual permissions are not enough. \
                     Every use is recorded, with its reason, and reviewed.\n\n\
                     Sign in to Kith to see who looked at your record, when, and why:\n{url}/my/access-log\n"
                ),
                format!(
                    "Kith: someone used emergency access to your record. Sign in to see who and why: {url}/my/access-log"
                ),
            ),
            Notice::BreakGlassPrivacyOfficer { grant, patient: _ } => (
                "Emergency access was used in your organisation".to_owned(),
                format!(
                    "A professional in your organisation used emergency access (\"breaking the glass\") to a \
                     patient's record.\n\nPlease review it in Kith:\n{url}/\n\nReference: {grant}\n"
                ),
                format!("Kith: emergency access was used in your organisation. Please review it: {url}/"),
            ),
            Notice::PatientLookupLimitPrivacyOfficer { account } => (
                "Many patient look-ups matched no one in your organisation".to_owned(),
                format!(
                    "A professional in your organisation has reached the limit of patient look-ups that matched \
                     no one (bringing a patient into a team, or checking a patient's identity to reset their \
                     password or remind them to register). Further look-ups are refused for an hour.\n\n\
                     Please review their attempts in Kith:\n{url}/\n\nReference: Practitioner/{account}\n"
                ),
                format!(
                    "Kith: a professional reached the patient look-up limit in your organisation. Please review: {url}/"
                ),
            ),
            Notice::TeamAddedPatient(_) => (
                "A care team was added to your Kith record".to_owned(),
                format!(
                    "A care team can now see parts of your Kith record.\n\n\
                     Sign in to Kith to see which teams can see your record and to change what they can see:\n{url}/my/sharing\n"
                ),
                format!("Kith: a care team was added to your record. Sign in to see it: {url}/my/sharing"),
            ),
            Notice::NewEntriesPatient(_) => (
                "There is new information in your Kith record".to_owned(),
                format!(
                    "A care team has added new information to your Kith record.\n\n\
                     Sign in to Kith to see it:\n{url}/my/record\n\n\
                     You chose to be told of new information. To change that, sign in and open \
                     Notifications: {url}/my/notifications\n"
                ),
                format!("Kith: there is new information in your record. Sign in to see it: {url}/my/record"),
            ),
            Notice::ConsentChangedPatient(_) => (
                "Your Kith sharing choices were changed".to_owned(),
                format!(
                    "The choices about who can see your Kith record were changed.\n\n\
                     Sign in to Kith to see what changed and who changed it:\n{url}/my/sharing\n"
                ),
                format!("Kith: your sharing choices were changed. Sign in to see what changed: {url}/my/sharing"),
            ),
            Notice::SharingDisabledPatient(_) => (
                "Sharing of your Kith record was turned off".to_owned(),
                format!(
                    "Sharing of your Kith record between care teams was turned off: each team now sees only \
                     what it wrote itself.\n\nSign in to Kith to see the details:\n{url}/my/sharing\n"
                ),
                format!("Kith: sharing of your record was turned off. Sign in to see the details: {url}/my/sharing"),
            ),
            Notice::PasswordReset { account: _, team, code } => {
                // A coordinator's reset names their team; a self-service one does not.
                let who = match team {
                    Some(team) => format!(
                        "A coordinator of {team} asked Kith to send you a link to reset the password of your Kith \
                         account."
                    ),
                    None => "Someone asked to reset the password of your Kith account.".to_owned(),
                };
                (
                    "Reset your Kith password".to_owned(),
                    format!(
                        "{who}\n\n\
                         To choose a new password, open this link:\n{url}/password-reset/{code}\n\n\
                         The link works once, within one hour.\n\n\
                         If you did not ask for this, ignore this message: your password stays as it is.\n"
                    ),
                    format!(
                        "Kith: to reset your password open {url}/password-reset/{code} (works once, within one hour). \
                         Did not ask? Ignore this."
                    ),
                )
            }
            Notice::PatientInvitation { patient: _, organisation, expires, code } => {
                // The same two codes a letter prints, for typing them in instead of following the link.
                let (invitation, activation) = crate::secrets::split_codes(code);
                (
                    format!("Your invitation to Kith from {organisation}"),
                    format!(
                        "{organisation} invites you to Kith, where you can see your health record and choose who \
                         can see it.\n\nYour invitation code: {invitation}\nYour activation code: {activation}\n\n\
                         To register, open this link:\n{url}/register?code={code}\n\n\
                         You will be asked for your date of birth, to check that the invitation reached the right \
                         person. The invitation expires on {expires}.\n\n\
                         If you were not expecting it, ignore this message.\n"
                    ),
                    format!("{organisation} invites you to Kith. Register by {expires}: {url}/register?code={code}"),
                )
            }
            Notice::ProfessionalActivation { account: _, team, expires, code } => (
                "Activate your Kith account".to_owned(),
                format!(
                    "You have been invited to join {team} in Kith.\n\n\
                     To accept, activate your account and choose a password with this link:\n{url}/activate/{code}\n\n\
                     The link works once, until {expires}.\n\n\
                     If you were not expecting this, ignore this message.\n"
                ),
                format!("Kith: activate your account by {expires}: {url}/activate/{code}"),
            ),
            Notice::ProfessionalAdded { account: _, team } => (
                "You were added to a team in Kith".to_owned(),
                format!("You have been added to {team} in Kith.\n\nSign in to start working with the team:\n{url}/\n"),
                format!("Kith: you were added to a team. Sign in: {url}/"),
            ),
            Notice::ConsentChangedCoordinator { account: _, team } => (
                format!("A patient changed what {team} can see"),
                format!(
                    "A patient of {team} changed which parts of their Kith record the team can see. It applies \
                     at once: the team's professionals see the record as the patient now allows.\n\n\
                     This message names no patient. Sign in to Kith for your team:\n{url}/\n"
                ),
                format!("Kith: a patient changed what {team} can see of their record. {url}/"),
            ),
            Notice::MembershipInvitation { account: _, team, organisation } => (
                "You are invited to join a team in Kith".to_owned(),
                format!(
                    "{organisation} invites you to join {team} in Kith.\n\n\
                     Sign in to Kith to accept or decline the invitation on your home page:\n{url}/\n\n\
                     Until you accept, you are not a member of the team and it cannot act on your account.\n\n\
                     If you were not expecting this, decline it or ignore this message.\n"
                ),
                format!("Kith: {organisation} invites you to join a team. Sign in to accept or decline: {url}/"),
            ),
            Notice::ProfessionalAddressUnusable { organisation } => (
                "Your email address was given to Kith".to_owned(),
                format!(
                    "{organisation} tried to add this email address to one of its teams in Kith, as a \
                     professional's address.\n\n\
                     It cannot be used for that: Kith uses this address for a patient's record. If you work \
                     for {organisation}, give them your work email address instead.\n\n\
                     If you were not expecting this, ignore this message: nothing has changed.\n"
                ),
                format!("Kith: {organisation} tried to add this address to a team. It cannot be used: {url}/"),
            ),
            Notice::TwoFactorReset { account: _, team } => {
                let who = match team {
                    Some(team) => format!("A coordinator of {team}"),
                    None => "The Kith operator".to_owned(),
                };
                (
                    "Two-step verification was turned off on your Kith account".to_owned(),
                    format!(
                        "{who} turned off two-step verification on your Kith account (as when a phone is lost), \
                         and you were signed out everywhere.\n\n\
                         Sign in with your password and set it up again:\n{url}/\n\n\
                         If you did not ask for this, tell your organisation's coordinator or IT security team at \
                         once, and change your password.\n"
                    ),
                    format!("Kith: two-step verification was turned off on your account. Sign in to set it up: {url}/"),
                )
            }
        };
        match channel {
            DeliveryChannel::Email => Rendered {
                subject,
                text: wrap(&format!("{email}\n-- \nThis message was sent by Kith. Replies are not read.\n")),
            },
            DeliveryChannel::Sms => Rendered { subject: String::new(), text: sms },
        }
    }
}

/// What a stored message says: [`Notice::read`], then [`Notice::render`]. `payload` is the
/// stored JSON, `secret` the one-time code the message carries, and `public_url` where
/// people reach Kith (e.g. `https://kith.example.org`).
pub fn render(
    template: &str,
    channel: DeliveryChannel,
    payload: &str,
    secret: Option<&str>,
    public_url: &str,
) -> Result<Rendered, RenderError> {
    Ok(Notice::read(template, payload, secret)?.render(channel, public_url))
}

/// The longest line of an email's text, so that it travels as plain 7-bit text.
const EMAIL_LINE_WIDTH: usize = 72;

/// Breaks lines longer than [`EMAIL_LINE_WIDTH`] at spaces; a longer word (a link) keeps a
/// line of its own.
fn wrap(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / EMAIL_LINE_WIDTH);
    for (index, line) in text.split('\n').enumerate() {
        if index > 0 {
            out.push('\n');
        }
        let mut width = 0;
        for (position, word) in line.split(' ').enumerate() {
            let length = word.chars().count();
            if position > 0 {
                if width + 1 + length > EMAIL_LINE_WIDTH {
                    out.push('\n');
                    width = 0;
                } else {
                    out.push(' ');
                    width += 1;
                }
            }
            out.push_str(word);
            width += length;
        }
    }
    out
}

/// Codes go into paths and query strings as they are, so they must need no escaping.
fn is_url_safe(code: &str) -> bool {
    !code.is_empty() && code.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// One message handed to a transport: who it goes to, and what identifies it (for a file
/// name or an email's Message-ID).
#[derive(Clone, Copy)]
pub struct Envelope<'a> {
    pub id: Uuid,
    pub created_at: Timestamp,
    pub to: &'a str,
}

/// Sends email and SMS. Implementations must keep recipients, codes and message text out of
/// their errors.
pub trait Transport {
    fn send_email(&self, envelope: &Envelope<'_>, subject: &str, text: &str) -> Result<(), DeliveryError>;
    fn send_sms(&self, envelope: &Envelope<'_>, text: &str) -> Result<(), DeliveryError>;
}

/// Why a send failed: permanent (e.g. SMTP 5xx, HTTP 4xx — trying again will not help) or
/// not. The message is short and names no recipient and no content, e.g. "SMTP 550
/// permanent failure".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    pub permanent: bool,
    pub message: String,
}

impl DeliveryError {
    pub fn permanent(message: impl Into<String>) -> Self {
        Self { permanent: true, message: message.into() }
    }
    pub fn transient(message: impl Into<String>) -> Self {
        Self { permanent: false, message: message.into() }
    }
}

/// What one round of delivery did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub claimed: usize,
    pub sent: usize,
    /// Failed, to be tried again later.
    pub retrying: usize,
    /// Given up.
    pub dead: usize,
}

/// How long to wait before trying again a message that had failed `attempts_before` times
/// before the attempt that just failed: 30 s × 2^`attempts_before`, at most an hour.
pub fn retry_delay(attempts_before: i64) -> Duration {
    let doublings = u32::try_from(attempts_before.clamp(0, 16)).unwrap_or(16);
    FIRST_RETRY_DELAY.saturating_mul(1 << doublings).min(MAX_RETRY_DELAY)
}

fn short(error: &str) -> String {
    error.chars().take(MAX_ERROR_CHARS).collect()
}

impl App {
    /// Delivers up to `limit` due email and SMS messages: claims them (one short
    /// transaction), sends each through `transport` outside any transaction, and records
    /// each outcome at once (one short transaction each). A failure is retried after
    /// 30 s × 2^(earlier attempts), at most an hour; after [`MAX_DELIVERY_ATTEMPTS`], or on
    /// a permanent error, the message is dead. Sent and dead messages forget their code.
    pub fn deliver_outbox(&self, transport: &dyn Transport, public_url: &str, limit: i64) -> AppResult<DeliveryReport> {
        let claimed = self.store.write(|tx| tx.claim_due_outbox(self.now(), DELIVERY_LEASE, limit))?;
        let mut report = DeliveryReport { claimed: claimed.len(), ..DeliveryReport::default() };
        for row in claimed {
            let message = &row.message;
            let attempt = row.attempts + 1;
            let outcome = if row.attempts >= MAX_DELIVERY_ATTEMPTS {
                // Workers stopped mid-send often enough: give up without sending again.
                Err(DeliveryError::permanent(format!("gave up after {} interrupted attempts", row.attempts)))
            } else {
                send(transport, &row, public_url)
            };
            let now = self.now();
            match outcome {
                Ok(()) => {
                    self.store.write(|tx| tx.mark_outbox_sent(message.id, now))?;
                    tracing::info!(id = %message.id, channel = message.channel, attempt, "outbox message sent");
                    report.sent += 1;
                }
                Err(error) => {
                    let next = (!error.permanent && attempt < MAX_DELIVERY_ATTEMPTS)
                        .then(|| now.plus(retry_delay(row.attempts)));
                    let description = short(&error.message);
                    // Logged before the failure is stored: whoever sees it stored (a test,
                    // an operator's `kith outbox list`) finds it in the log too.
                    tracing::warn!(
                        id = %message.id,
                        channel = message.channel,
                        attempt,
                        permanent = error.permanent,
                        error = %description,
                        gave_up = next.is_none(),
                        "outbox message not delivered"
                    );
                    self.store.write(|tx| tx.mark_outbox_failed(message.id, now, &description, next))?;
                    if next.is_some() {
                        report.retrying += 1;
                    } else {
                        report.dead += 1;
                    }
                }
            }
        }
        Ok(report)
    }

    /// The newest `limit` outbox messages, newest first, of one status (pending, sending,
    /// sent, failed, dead) or all — for operators. They carry recipients and codes: show
    /// neither.
    pub fn outbox_messages(&self, status: Option<&str>, limit: i64) -> AppResult<Vec<OutboxRow>> {
        if let Some(status) = status
            && !OUTBOX_STATUSES.contains(&status)
        {
            return Err(AppError::Invalid(format!("status: must be one of {}", OUTBOX_STATUSES.join(", "))));
        }
        Ok(self.store.read(|tx| tx.recent_outbox(status, limit))?)
    }

    /// How many messages there are per channel and status.
    pub fn outbox_counts(&self) -> AppResult<Vec<OutboxCount>> {
        Ok(self.store.read(|tx| tx.outbox_counts())?)
    }
}

/// Renders and sends one claimed message.
fn send(transport: &dyn Transport, row: &OutboxRow, public_url: &str) -> Result<(), DeliveryError> {
    let message = &row.message;
    let channel = match message.channel {
        "email" => DeliveryChannel::Email,
        "sms" => DeliveryChannel::Sms,
        other => return Err(DeliveryError::permanent(format!("channel {other} is not delivered by this worker"))),
    };
    let rendered = render(&message.template, channel, &message.payload, message.secret.as_deref(), public_url)
        .map_err(|error| DeliveryError::permanent(format!("cannot render {}: {error}", message.template)))?;
    let envelope = Envelope { id: message.id, created_at: message.created_at, to: &message.recipient };
    match channel {
        DeliveryChannel::Email => transport.send_email(&envelope, &rendered.subject, &rendered.text),
        DeliveryChannel::Sms => transport.send_sms(&envelope, &rendered.text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://kith.example.org/";
    const CODE: &str = "0123456789abcdef0123456789abcdef";
    const ACCOUNT: &str = "01900000-0000-7000-8000-000000000001";
    const PATIENT: &str = "01900000-0000-7000-8000-000000000002";
    const GRANT: &str = "01900000-0000-7000-8000-000000000003";

    fn both(template: &str, payload: &str, secret: Option<&str>) -> (Rendered, Rendered) {
        (
            render(template, DeliveryChannel::Email, payload, secret, URL).unwrap(),
            render(template, DeliveryChannel::Sms, payload, secret, URL).unwrap(),
        )
    }

    /// No identifier, date or code from the payload in a subject or SMS beyond what is listed.
    fn assert_discreet(rendered: &Rendered, allowed: &[&str]) {
        for secret_thing in [ACCOUNT, PATIENT, GRANT, "2026-07-01", CODE, "Sexual Health"] {
            if !allowed.contains(&secret_thing) {
                assert!(!rendered.subject.contains(secret_thing), "{secret_thing} in {:?}", rendered.subject);
            }
        }
    }

    #[test]
    fn a_password_reset_carries_its_link_once() {
        let (email, sms) = both("password_reset", &format!(r#"{{"account":"{ACCOUNT}"}}"#), Some(CODE));
        assert_eq!(email.subject, "Reset your Kith password");
        let link = format!("https://kith.example.org/password-reset/{CODE}");
        assert!(email.text.contains(&link) && sms.text.contains(&link), "{}", email.text);
        assert!(email.text.contains("works once, within one hour") && email.text.contains("did not ask"));
        // A 64-digit code makes it two SMS segments at most.
        assert!(sms.subject.is_empty() && sms.text.len() <= 306, "{}", sms.text.len());
        assert!(!email.text.contains(ACCOUNT));
        assert_discreet(&email, &[]);
        // Without its code, or with one that would need escaping, it cannot be sent.
        let payload = format!(r#"{{"account":"{ACCOUNT}"}}"#);
        assert_eq!(render("password_reset", DeliveryChannel::Email, &payload, None, URL), Err(RenderError::Secret));
        assert_eq!(
            render("password_reset", DeliveryChannel::Email, &payload, Some("a b&c"), URL),
            Err(RenderError::Secret)
        );
    }

    #[test]
    fn a_patient_invitation_gives_the_code_and_the_link() {
        let payload =
            format!(r#"{{"patient":"{PATIENT}","organisation":"Riverside Hospitals","expires":"2026-07-01"}}"#);
        let (email, sms) = both("patient_invitation", &payload, Some(CODE));
        assert_eq!(email.subject, "Your invitation to Kith from Riverside Hospitals");
        let link = format!("https://kith.example.org/register?code={CODE}");
        let (invitation, activation) = crate::secrets::split_codes(CODE);
        assert!(
            email.text.contains(&format!("Your invitation code: {invitation}\nYour activation code: {activation}"))
        );
        assert!(
            email.text.contains(&link) && email.text.contains("date of birth") && email.text.contains("2026-07-01")
        );
        assert!(sms.text.contains(&link) && sms.text.starts_with("Riverside Hospitals invites you"));
        assert!(sms.text.len() <= 306, "{}", sms.text);
        assert!(!email.text.contains(PATIENT) && !sms.text.contains(PATIENT));
        assert_discreet(&email, &[]);
        assert_eq!(
            render("patient_invitation", DeliveryChannel::Email, r#"{"patient":"x"}"#, Some(CODE), URL),
            Err(RenderError::Payload("patient"))
        );
    }

    #[test]
    fn a_professional_activation_names_the_team_in_the_body_only() {
        let payload = format!(r#"{{"account":"{ACCOUNT}","team":"Sexual Health","expires":"2026-07-01"}}"#);
        let (email, sms) = both("professional_activation", &payload, Some(CODE));
        assert_eq!(email.subject, "Activate your Kith account");
        let link = format!("https://kith.example.org/activate/{CODE}");
        assert!(
            email.text.contains(&link) && email.text.contains("Sexual Health") && email.text.contains("2026-07-01")
        );
        assert!(sms.text.contains(&link) && !sms.text.contains("Sexual Health"));
        assert_discreet(&email, &[]);
    }

    #[test]
    fn a_coordinators_reset_and_two_step_reset_say_who_asked() {
        let by_coordinator = format!(r#"{{"account":"{ACCOUNT}","team":"Cardiology"}}"#);
        let (email, _) = both("password_reset", &by_coordinator, Some(CODE));
        assert!(email.text.replace('\n', " ").starts_with("A coordinator of Cardiology asked Kith"), "{}", email.text);
        let (email, sms) = both("two_factor_reset", &by_coordinator, None);
        assert_eq!(email.subject, "Two-step verification was turned off on your Kith account");
        assert!(email.text.replace('\n', " ").starts_with("A coordinator of Cardiology turned off"), "{}", email.text);
        assert!(!sms.text.contains("Cardiology"));
        let by_operator = format!(r#"{{"account":"{ACCOUNT}"}}"#);
        assert!(both("two_factor_reset", &by_operator, None).0.text.starts_with("The Kith operator turned off"));
        assert_discreet(&email, &[]);
    }

    #[test]
    fn an_invitation_to_join_a_team_asks_for_an_answer_and_an_unusable_address_is_told_why() {
        let payload =
            format!(r#"{{"account":"{ACCOUNT}","team":"Sexual Health","organisation":"Riverside Hospitals"}}"#);
        let (email, sms) = both("membership_invitation", &payload, None);
        assert_eq!(email.subject, "You are invited to join a team in Kith");
        let text = email.text.replace('\n', " ");
        assert!(text.contains("Riverside Hospitals invites you to join Sexual Health"), "{text}");
        assert!(text.contains("accept or decline") && !sms.text.contains("Sexual Health"));
        assert_discreet(&email, &[]);
        let (email, _) = both("professional_address_unusable", r#"{"organisation":"Riverside Hospitals"}"#, None);
        let text = email.text.replace('\n', " ");
        assert!(text.contains("patient's record") && text.contains("work email address"), "{text}");
        assert!(!email.text.contains("Sexual Health"));
    }

    #[test]
    fn a_professional_added_to_a_team_is_told_where_to_sign_in() {
        let payload = format!(r#"{{"account":"{ACCOUNT}","team":"Sexual Health"}}"#);
        let (email, sms) = both("professional_added", &payload, None);
        assert_eq!(email.subject, "You were added to a team in Kith");
        assert!(email.text.contains("Sexual Health") && email.text.contains("https://kith.example.org/\n"));
        assert!(!sms.text.contains("Sexual Health") && sms.text.ends_with("https://kith.example.org/"));
        assert_discreet(&email, &[]);
    }

    #[test]
    fn patient_notices_say_what_happened_and_link_to_kith() {
        let patient = format!(r#"{{"patient":"{PATIENT}"}}"#);
        // Each links to the page it promises: who looked, or who sees what.
        for (template, subject, page) in [
            ("break_glass_patient", "Someone used emergency access to your Kith record", "my/access-log"),
            ("team_added_patient", "A care team was added to your Kith record", "my/sharing"),
            ("new_entries_patient", "There is new information in your Kith record", "my/record"),
            ("consent_changed_patient", "Your Kith sharing choices were changed", "my/sharing"),
            ("sharing_disabled_patient", "Sharing of your Kith record was turned off", "my/sharing"),
        ] {
            let (email, sms) = both(template, &patient, None);
            assert_eq!(email.subject, subject);
            let link = format!("https://kith.example.org/{page}");
            assert!(email.text.contains(&format!("{link}\n")) && sms.text.ends_with(&link), "{template}");
            assert!(!email.text.contains(PATIENT) && !sms.text.contains(PATIENT), "{template}");
            assert!(sms.text.len() <= 160, "{template}: {}", sms.text);
            assert_discreet(&email, &[]);
        }
        let lookups = format!(r#"{{"account":"{ACCOUNT}"}}"#);
        let (email, sms) = both("patient_lookup_limit_privacy_officer", &lookups, None);
        assert!(email.text.contains(&format!("Reference: Practitioner/{ACCOUNT}")), "{}", email.text);
        assert!(!sms.text.contains(ACCOUNT) && sms.text.len() <= 160, "{}", sms.text);
        assert_discreet(&email, &[]);
        let officer = format!(r#"{{"grant":"{GRANT}","patient":"{PATIENT}"}}"#);
        let (email, sms) = both("break_glass_privacy_officer", &officer, None);
        assert_eq!(email.subject, "Emergency access was used in your organisation");
        assert!(email.text.contains(&format!("Reference: {GRANT}")) && !email.text.contains(PATIENT));
        assert!(!sms.text.contains(GRANT) && !sms.text.contains(PATIENT));
        assert_discreet(&email, &[]);
    }

    #[test]
    fn every_known_template_has_wording_and_unknown_ones_are_refused() {
        let payload = format!(
            r#"{{"account":"{ACCOUNT}","patient":"{PATIENT}","grant":"{GRANT}","organisation":"Riverside Hospitals","team":"Cardiology","expires":"2026-07-01"}}"#
        );
        for template in Notice::TEMPLATES {
            assert!(render(template, DeliveryChannel::Email, &payload, Some(CODE), URL).is_ok(), "{template}");
        }
        assert_eq!(
            render("nope", DeliveryChannel::Sms, "{}", None, URL),
            Err(RenderError::UnknownTemplate("nope".into()))
        );
        assert_eq!(
            render("team_added_patient", DeliveryChannel::Sms, "not json", None, URL),
            Err(RenderError::Payload("JSON object"))
        );
    }

    /// One notice of every kind: each is stored under its own name and reads back as itself.
    #[test]
    fn every_notice_reads_back_as_written() {
        let account = AccountId::from_uuid(Uuid::parse_str(ACCOUNT).unwrap());
        let patient = PatientId::from_uuid(Uuid::parse_str(PATIENT).unwrap());
        let grant = BreakGlassId::from_uuid(Uuid::parse_str(GRANT).unwrap());
        let name = |text: &str| Name::parse("name", text).unwrap();
        let expires = Date::parse("2026-07-01").unwrap();
        let notices = [
            Notice::BreakGlassPatient(patient),
            Notice::BreakGlassPrivacyOfficer { grant, patient },
            Notice::PatientLookupLimitPrivacyOfficer { account },
            Notice::TeamAddedPatient(patient),
            Notice::NewEntriesPatient(patient),
            Notice::ConsentChangedPatient(patient),
            Notice::SharingDisabledPatient(patient),
            Notice::PasswordReset { account, team: None, code: CODE.into() },
            Notice::PasswordReset { account, team: Some(name("Cardiology")), code: CODE.into() },
            Notice::PatientInvitation {
                patient,
                organisation: name("Riverside Hospitals"),
                expires,
                code: CODE.into(),
            },
            Notice::ProfessionalActivation { account, team: name("Cardiology"), expires, code: CODE.into() },
            Notice::ProfessionalAdded { account, team: name("Cardiology") },
            Notice::ConsentChangedCoordinator { account, team: name("Cardiology") },
            Notice::MembershipInvitation {
                account,
                team: name("Cardiology"),
                organisation: name("Riverside Hospitals"),
            },
            Notice::ProfessionalAddressUnusable { organisation: name("Riverside Hospitals") },
            Notice::TwoFactorReset { account, team: None },
            Notice::TwoFactorReset { account, team: Some(name("Cardiology")) },
        ];
        let mut names: Vec<&str> = notices.iter().map(Notice::template).collect();
        names.dedup();
        assert_eq!(names, Notice::TEMPLATES, "one notice of each kind, in the order of TEMPLATES");
        for notice in notices {
            let message = notice.email(&EmailAddress::parse("ngozi@example.org").unwrap(), Timestamp::from_micros(0));
            assert_eq!(message.template, notice.template());
            assert_eq!(message.secret.as_deref(), notice.code());
            let read = Notice::read(&message.template, &message.payload, message.secret.as_deref());
            assert_eq!(read.as_ref(), Ok(&notice), "{}: {}", notice.template(), message.payload);
            assert!(!format!("{notice:?}").contains(CODE), "a notice's code never prints");
        }
    }

    #[test]
    fn email_lines_are_short_but_links_stay_whole() {
        let payload =
            format!(r#"{{"patient":"{PATIENT}","organisation":"Riverside Hospitals","expires":"2026-07-01"}}"#);
        let email = render("patient_invitation", DeliveryChannel::Email, &payload, Some(CODE), URL).unwrap();
        for line in email.text.lines() {
            assert!(line.chars().count() <= EMAIL_LINE_WIDTH || !line.contains(' '), "{line:?}");
        }
        assert!(email.text.lines().any(|line| line == format!("https://kith.example.org/register?code={CODE}")));
        assert!(email.text.contains("\n-- \nThis message was sent by Kith."));
        assert_eq!(wrap("a b\n\nc"), "a b\n\nc");
    }

    #[test]
    fn retries_back_off_to_an_hour() {
        let delays: Vec<u64> = (0..9).map(|attempts| retry_delay(attempts).as_secs()).collect();
        assert_eq!(delays, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(retry_delay(1000), MAX_RETRY_DELAY);
    }
}
