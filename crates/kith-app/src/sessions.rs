//! Signing in to the web application: sessions, the failed-attempt limit, sign-out, the
//! team switcher and password resets. Secrets (session cookies, reset codes) are random,
//! shown once and kept only as their SHA-256. Every outcome is audited with its precise
//! reason; callers only ever see "signed in" or "refused".

use std::sync::OnceLock;
use std::time::Duration;

use kith_core::access::{awaits_activation, is_active_account, is_active_membership};
use kith_core::audit::{Actor, Channel, Outcome};
use kith_core::model::{Account, Team};
use kith_core::team::{AccountStatus, MembershipRole};
use kith_core::text::{EmailAddress, Secret};
use kith_core::{AccountId, PatientId, TeamId, Timestamp};
use kith_store::{CodePurpose, StoreError, Tx};
use sha2::{Digest, Sha256};

use crate::outbox::Notice;
use crate::password::{hash_password, verify_password};
use crate::secrets::{new_secret, token_hash};
use crate::two_factor;
use crate::{App, AppError, AppResult, AuditBuilder};

/// A session unused this long has ended (the rule is `kith_core::access::SessionFacts`).
pub use kith_core::access::SESSION_IDLE;
/// A session ends this long after sign-in, however busy.
pub const SESSION_ABSOLUTE: Duration = Duration::from_secs(12 * 60 * 60);
/// Activity is written back at most this often per session.
const TOUCH_AFTER: Duration = Duration::from_secs(60);
/// At most this many failed sign-ins per email address in an hour.
pub const MAX_FAILED_SIGN_INS_PER_HOUR: i64 = 100;
const HOUR: Duration = Duration::from_secs(60 * 60);
/// A password-reset link works once, within this time.
pub const RESET_CODE_LIFETIME: Duration = HOUR;

/// The same words whatever made a reset link unusable (unknown, used, expired, replaced).
pub const UNUSABLE_LINK: &str = "This link has expired or has already been used. Ask for a new one.";

/// A session just created: the cookie value, shown once.
#[derive(Debug)]
pub struct NewSession {
    pub secret: Secret,
    pub account: Account,
}

/// The answer to a sign-in: one kind of refusal, whatever the reason.
#[derive(Debug)]
pub enum SignIn {
    SignedIn(NewSession),
    /// The password is right and the account uses two-step verification: the session
    /// opens no page until [`App::complete_second_step`].
    SecondStep(NewSession),
    Refused,
}

/// Words for a wrong second-step code (the same for a wrong, used or replayed code).
pub const WRONG_CODE: &str = "That code is not right. Enter the 6-digit code your app shows now, or a recovery code.";
/// A password-only session waiting for its second step lasts this long.
pub const SECOND_STEP_WINDOW: Duration = Duration::from_secs(10 * 60);

/// One of the signed-in account's active memberships.
#[derive(Clone, Debug)]
pub struct SessionTeam {
    pub team: Team,
    pub role: MembershipRole,
}

/// A live session and who it belongs to.
#[derive(Clone, Debug)]
pub struct WebSession {
    pub account: Account,
    /// The team the person acts through (the switcher's choice), when they have one.
    pub team: Option<TeamId>,
    pub teams: Vec<SessionTeam>,
    /// Their own record, when the account is a patient's.
    pub patient: Option<PatientId>,
    pub expires_at: Timestamp,
    pub two_factor_enabled: bool,
    /// An organisation they work in requires two-step verification and they have not set
    /// it up: every page sends them to set it up.
    pub must_enrol_two_factor: bool,
    /// A patient who registered and has not finished the walkthrough of their teams.
    pub walkthrough_pending: bool,
    /// The break-the-glass grants opened in this session and still open (every page's
    /// banner says so).
    pub break_glass: Vec<kith_core::model::BreakGlassGrant>,
}

impl WebSession {
    pub fn current_team(&self) -> Option<&SessionTeam> {
        self.team.and_then(|id| self.teams.iter().find(|team| team.team.id == id))
    }
}

/// The key failed sign-ins are counted under: the SHA-256 of the address as typed,
/// trimmed and lower-cased, whether or not an account has it.
fn email_key(email: &str) -> [u8; 32] {
    Sha256::digest(email.trim().to_lowercase().as_bytes()).into()
}

/// A hash checked when no account matches, so that an unknown address costs the same
/// Argon2id work as a known one.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        hash_password(&Secret::new("decoy password for unknown accounts".to_owned())).expect("the decoy hashes")
    })
}

fn sign_in_event(now: Timestamp, account: Option<AccountId>, action: &'static str) -> AuditBuilder {
    let actor = account.map_or(Actor::System, Actor::Account);
    let event = AuditBuilder::new(now, actor, Channel::Web, action);
    match account {
        Some(account) => event.subject(account),
        None => event,
    }
}

impl App {
    /// Signs in with an email and password. Unknown addresses, wrong passwords, accounts
    /// that are not active and addresses over the failed-attempt limit all get the same
    /// [`SignIn::Refused`]; the audit trail says which. Argon2id work: call it off the async
    /// executor.
    pub fn sign_in(&self, email: &str, password: &Secret) -> AppResult<SignIn> {
        let now = self.now();
        let key = email_key(email);
        let address = EmailAddress::parse(email).ok();
        let (failures, found) = self.store.read(|tx| {
            let failures = tx.sign_in_failures_since(&key, now.minus(HOUR))?;
            let found = match &address {
                Some(address) => match tx.account_by_email(address)? {
                    Some(account) => {
                        let hash = tx.password_hash(account.id)?;
                        Some((account, hash))
                    }
                    None => None,
                },
                None => None,
            };
            Ok::<_, AppError>((failures, found))
        })?;
        let account_id = found.as_ref().map(|(account, _)| account.id);
        if failures >= MAX_FAILED_SIGN_INS_PER_HOUR {
            self.store.write(|tx| {
                tx.audit(
                    sign_in_event(now, account_id, "account.sign_in")
                        .outcome(Outcome::Denied)
                        .reason("too many failed sign-ins for this address in the last hour")
                        .build(),
                );
                Ok::<_, AppError>(())
            })?;
            return Ok(SignIn::Refused);
        }
        let stored = found.as_ref().and_then(|(_, hash)| hash.as_deref());
        let matches = verify_password(password, stored.unwrap_or(decoy_hash())) && stored.is_some();
        let refusal = match &found {
            None => Some("no account has this email address".to_owned()),
            Some(_) if !matches => Some("wrong password".to_owned()),
            Some((account, _)) if !is_active_account(account.status) => {
                Some(format!("the account is {}", account.status.code()))
            }
            Some(_) => None,
        };
        if let Some(reason) = refusal {
            self.store.write(|tx| {
                tx.record_sign_in_failure(&key, now, now.minus(HOUR))?;
                tx.audit(
                    sign_in_event(now, account_id, "account.sign_in").outcome(Outcome::Denied).reason(&reason).build(),
                );
                Ok::<_, AppError>(())
            })?;
            return Ok(SignIn::Refused);
        }
        let (account, _) = found.expect("a matching password has an account");
        let secret = new_secret();
        let hash = token_hash(&secret);
        let second_step = self.store.write(|tx| {
            let second_step = tx.two_factor(account.id)?.key.is_some();
            if second_step {
                tx.insert_session(&hash, account.id, now, now.plus(SECOND_STEP_WINDOW), None, true)?;
                tx.audit(
                    sign_in_event(now, Some(account.id), "account.sign_in_password")
                        .reason("password accepted; waiting for the second step")
                        .build(),
                );
            } else {
                let team = active_teams(tx, account.id)?.first().map(|team| team.team.id);
                tx.insert_session(&hash, account.id, now, now.plus(SESSION_ABSOLUTE), team, false)?;
                tx.audit(sign_in_event(now, Some(account.id), "account.sign_in").build());
            }
            Ok::<_, AppError>(second_step)
        })?;
        let new = NewSession { secret: Secret::new(secret), account };
        Ok(if second_step { SignIn::SecondStep(new) } else { SignIn::SignedIn(new) })
    }

    /// The account a password-only session (waiting for its second step) belongs to.
    pub fn pending_second_step(&self, secret: &str) -> AppResult<Option<Account>> {
        let now = self.now();
        let hash = token_hash(secret);
        self.store.read(|tx| {
            let Some(row) = tx.session(&hash)? else { return Ok(None) };
            if !row.two_factor_pending || row.ended_at.is_some() || now >= row.expires_at {
                return Ok(None);
            }
            Ok(tx.account(row.account)?.filter(|account| is_active_account(account.status)))
        })
    }

    /// The second step: a current TOTP code (never one accepted before) or an unused
    /// recovery code. On success the password-only session ends and a full one begins
    /// (a new id); a wrong code counts as a failed sign-in.
    pub fn complete_second_step(&self, secret: &str, typed: &str) -> AppResult<Option<NewSession>> {
        let now = self.now();
        let pending_hash = token_hash(secret);
        let Some(account) = self.pending_second_step(secret)? else { return Ok(None) };
        let key = email_key(account.email.as_str());
        let new_secret = new_secret();
        let new_hash = token_hash(&new_secret);
        let accepted = self.store.write(|tx| {
            let event = sign_in_event(now, Some(account.id), "account.sign_in");
            if tx.sign_in_failures_since(&key, now.minus(HOUR))? >= MAX_FAILED_SIGN_INS_PER_HOUR {
                tx.audit(
                    event
                        .outcome(Outcome::Denied)
                        .reason("too many failed sign-ins for this address in the last hour")
                        .build(),
                );
                return Ok(false);
            }
            let state = tx.two_factor(account.id)?;
            let totp = state
                .key
                .as_deref()
                .and_then(|sealed| self.sealing.open(&account.id.to_string(), sealed))
                .and_then(|key| two_factor::from_base32(&key))
                .and_then(|secret| two_factor::verify(&secret, typed, now, state.last_step));
            let how = match totp {
                Some(step) if tx.accept_totp_step(account.id, step)? => "authenticator code",
                _ => {
                    let recovery = token_hash(&two_factor::normalise_recovery_code(typed));
                    if tx.use_recovery_code(account.id, &recovery, now)? {
                        "recovery code"
                    } else {
                        tx.record_sign_in_failure(&key, now, now.minus(HOUR))?;
                        tx.audit(event.outcome(Outcome::Denied).reason("wrong second-step code").build());
                        return Ok(false);
                    }
                }
            };
            tx.end_session(&pending_hash, now)?;
            let team = active_teams(tx, account.id)?.first().map(|team| team.team.id);
            tx.insert_session(&new_hash, account.id, now, now.plus(SESSION_ABSOLUTE), team, false)?;
            tx.audit(event.reason(format!("second step: {how}")).build());
            Ok::<_, AppError>(true)
        })?;
        Ok(accepted.then(|| NewSession { secret: Secret::new(new_secret), account }))
    }

    /// Starts setting up two-step verification: the key to show (as a QR code and as
    /// text). Asking again before confirming shows the same key.
    pub fn begin_two_factor(&self, account: AccountId) -> AppResult<String> {
        let context = account.to_string();
        self.store.write(|tx| {
            let state = tx.two_factor(account)?;
            if let Some(pending) = state.pending_key.and_then(|sealed| self.sealing.open(&context, &sealed)) {
                return Ok(pending);
            }
            let key = two_factor::base32(&crate::secrets::new_totp_key());
            tx.set_pending_totp_key(account, Some(&self.sealing.seal(&context, &key)))?;
            Ok(key)
        })
    }

    /// Confirms set-up with a code from the app: two-step verification is on, and the
    /// recovery codes (shown once; only their hashes are kept) are returned.
    pub fn confirm_two_factor(&self, account: AccountId, typed: &str) -> AppResult<Vec<String>> {
        let now = self.now();
        let codes: Vec<String> = (0..two_factor::RECOVERY_CODES).map(|_| crate::secrets::new_recovery_code()).collect();
        let hashes: Vec<[u8; 32]> =
            codes.iter().map(|code| token_hash(&two_factor::normalise_recovery_code(code))).collect();
        self.store.write(|tx| {
            let state = tx.two_factor(account)?;
            let Some(sealed) = state.pending_key else {
                return Ok(Err(AppError::Invalid("Start setting up two-step verification again.".to_owned())));
            };
            let Some(pending) = self.sealing.open(&account.to_string(), &sealed) else {
                return Ok(Err(AppError::Invalid("Start setting up two-step verification again.".to_owned())));
            };
            let secret = two_factor::from_base32(&pending).ok_or_else(|| StoreError::corrupt("stored TOTP key"))?;
            let Some(step) = two_factor::verify(&secret, typed, now, None) else {
                tx.audit(
                    sign_in_event(now, Some(account), "account.two_factor_enrol")
                        .outcome(Outcome::Denied)
                        .reason("wrong confirmation code")
                        .build(),
                );
                return Ok(Err(AppError::Invalid(
                    "That code is not right. Enter the 6-digit code your app shows now.".to_owned(),
                )));
            };
            tx.enable_totp(account, &sealed, step, now)?;
            tx.replace_recovery_codes(account, &hashes)?;
            tx.audit(sign_in_event(now, Some(account), "account.two_factor_enrol").build());
            Ok::<_, AppError>(Ok(codes.clone()))
        })?
    }

    /// Whether an organisation requires two-step verification of its professionals.
    pub fn set_two_factor_requirement(
        &self,
        operator: &crate::Operator,
        organisation: &kith_core::text::OrganisationCode,
        required: bool,
    ) -> AppResult<()> {
        let now = self.now();
        self.store.write(|tx| {
            let org = crate::organisations::organisation_by_code(tx, organisation)?;
            tx.set_require_two_factor(org.id, required)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "organisation.require_two_factor")
                    .organisation(org.id)
                    .reason(if required { "required" } else { "not required" })
                    .basis("administration")
                    .build(),
            );
            Ok(())
        })
    }

    /// The live session with this cookie value: not ended, not idle for
    /// [`SESSION_IDLE`], not older than [`SESSION_ABSOLUTE`], its account active.
    pub fn session(&self, secret: &str) -> AppResult<Option<WebSession>> {
        let now = self.now();
        let hash = token_hash(secret);
        let found = self.store.read(|tx| {
            let Some(row) = tx.session(&hash)? else { return Ok(None) };
            let live = !row.two_factor_pending && row.facts().is_live(now);
            if !live {
                return Ok(None);
            }
            let Some(account) = tx.account(row.account)? else { return Ok(None) };
            if !is_active_account(account.status) {
                return Ok(None);
            }
            let teams = active_teams(tx, account.id)?;
            let team = row.team.filter(|id| teams.iter().any(|team| team.team.id == *id));
            let patient = tx.patient_by_account(account.id)?.map(|record| record.id);
            let walkthrough_pending = match patient {
                Some(patient) => tx.walkthrough_done(patient)?.is_none(),
                None => false,
            };
            let touch = now >= row.last_seen_at.plus(TOUCH_AFTER);
            let two_factor_enabled = tx.two_factor(account.id)?.key.is_some();
            let must_enrol_two_factor = !two_factor_enabled && tx.two_factor_required(account.id)?;
            let break_glass = tx.open_break_glass_of_session(&hash, now)?;
            Ok::<_, AppError>(Some((
                WebSession {
                    account,
                    team,
                    teams,
                    patient,
                    expires_at: row.expires_at,
                    two_factor_enabled,
                    must_enrol_two_factor,
                    walkthrough_pending,
                    break_glass,
                },
                touch,
            )))
        })?;
        let Some((session, touch)) = found else { return Ok(None) };
        if touch {
            self.store.write(|tx| Ok::<_, AppError>(tx.touch_session(&hash, now)?))?;
        }
        Ok(Some(session))
    }

    /// Ends this session (signing out). Ending one that has ended already is no error.
    pub fn sign_out(&self, secret: &str) -> AppResult<()> {
        let now = self.now();
        let hash = token_hash(secret);
        self.store.write(|tx| {
            let Some(row) = tx.session(&hash)? else { return Ok(()) };
            if tx.end_session(&hash, now)? {
                tx.audit(sign_in_event(now, Some(row.account), "account.sign_out").build());
            }
            // Break-the-glass grants opened in this session end with it.
            let ended = tx.end_break_glass_of_session(&hash, now)?;
            crate::audit::audit_grants_ended(
                tx,
                &ended,
                now,
                Actor::Account(row.account),
                Channel::Web,
                "the session it was opened in was signed out",
            )?;
            Ok(())
        })
    }

    /// The team switcher: the session acts through `team`, one of the account's active
    /// memberships.
    pub fn switch_team(&self, secret: &str, team: TeamId) -> AppResult<()> {
        let hash = token_hash(secret);
        self.store.write(|tx| {
            let Some(row) = tx.session(&hash)? else { return Err(AppError::Denied) };
            if !active_teams(tx, row.account)?.iter().any(|member| member.team.id == team) {
                return Err(AppError::Denied);
            }
            tx.set_session_team(&hash, team)?;
            Ok(())
        })
    }

    /// Self-service reset: when an active account has this email, a single-use link valid
    /// for an hour is emailed to it (through the outbox) and older links stop working.
    /// Otherwise nothing is sent. The caller answers the same either way.
    pub fn request_password_reset(&self, email: &str) -> AppResult<()> {
        let now = self.now();
        let address = EmailAddress::parse(email).ok();
        self.store.write(|tx| {
            let account = match &address {
                Some(address) => tx.account_by_email(address)?,
                None => None,
            };
            let event =
                sign_in_event(now, account.as_ref().map(|account| account.id), "account.password_reset_request");
            let Some(account) = account.filter(|account| is_active_account(account.status)) else {
                tx.audit(event.outcome(Outcome::Denied).reason("no active account has this email address").build());
                return Ok(());
            };
            send_reset_link(tx, &account, now)?;
            tx.audit(event.build());
            Ok(())
        })
    }

    /// Whether a reset link can still be used (to show its form or say it cannot).
    pub fn password_reset_usable(&self, code: &str) -> AppResult<bool> {
        let now = self.now();
        let hash = token_hash(code);
        self.store.read(|tx| Ok(usable_reset(tx.code(&hash)?.as_ref(), now).is_some()))
    }

    /// Sets a new password with a reset link's code: once, within its hour. Every session of
    /// the account ends. A bad password is refused before the code is spent.
    pub fn reset_password(&self, code: &str, new_password: &Secret) -> AppResult<Account> {
        let password_hash = hash_password(new_password)?;
        let now = self.now();
        let hash = token_hash(code);
        self.store.write(|tx| {
            let row = tx.code(&hash)?;
            let Some(account_id) = usable_reset(row.as_ref(), now) else {
                let account = row.and_then(|row| row.account);
                tx.audit(
                    sign_in_event(now, account, "account.password_reset")
                        .outcome(Outcome::Denied)
                        .reason("the reset code is unknown, used or expired")
                        .build(),
                );
                return Ok(Err(AppError::Invalid(UNUSABLE_LINK.to_owned())));
            };
            let Some(account) = tx.account(account_id)?.filter(|account| is_active_account(account.status)) else {
                return Ok(Err(AppError::Invalid(UNUSABLE_LINK.to_owned())));
            };
            if !tx.use_code(&hash, now)? {
                return Ok(Err(AppError::Invalid(UNUSABLE_LINK.to_owned())));
            }
            tx.set_password(account.id, &password_hash, account.status, now)?;
            let ended = tx.end_sessions_of(account.id, now)?;
            tx.audit(
                sign_in_event(now, Some(account.id), "account.password_reset")
                    .reason(format!("sessions ended: {ended}"))
                    .build(),
            );
            Ok::<_, AppError>(Ok(account))
        })?
    }
}

impl App {
    /// Whether a professional's activation link can still be used.
    pub fn activation_usable(&self, code: &str) -> AppResult<bool> {
        let now = self.now();
        let hash = token_hash(code);
        self.store
            .read(|tx| Ok(usable_code(tx.code(&hash)?.as_ref(), CodePurpose::ProfessionalActivation, now).is_some()))
    }

    /// A professional invited by email (one at a time or from a CSV upload) sets their
    /// password with the emailed link: once, before it expires. The account becomes active
    /// and is signed in.
    pub fn activate_account(&self, code: &str, password: &Secret) -> AppResult<NewSession> {
        let password_hash = hash_password(password)?;
        let now = self.now();
        let hash = token_hash(code);
        let secret = new_secret();
        let session_hash = token_hash(&secret);
        self.store.write(|tx| {
            let row = tx.code(&hash)?;
            let account = usable_code(row.as_ref(), CodePurpose::ProfessionalActivation, now)
                .map(|account| tx.account(account))
                .transpose()?
                .flatten()
                .filter(|account| awaits_activation(account.status));
            let Some(account) = account else {
                tx.audit(
                    sign_in_event(now, row.and_then(|row| row.account), "account.activate")
                        .outcome(Outcome::Denied)
                        .reason("the activation code is unknown, used or expired, or the account is not waiting")
                        .build(),
                );
                return Ok(Err(AppError::Invalid(UNUSABLE_LINK.to_owned())));
            };
            if !tx.use_code(&hash, now)? {
                return Ok(Err(AppError::Invalid(UNUSABLE_LINK.to_owned())));
            }
            tx.set_password(account.id, &password_hash, AccountStatus::Active, now)?;
            let account = Account { status: AccountStatus::Active, ..account };
            // The invitations this link carried are accepted by activating (their email said so).
            crate::membership_invitations::accept_activated(tx, &account, &hash, now)?;
            let team = active_teams(tx, account.id)?.first().map(|team| team.team.id);
            tx.insert_session(&session_hash, account.id, now, now.plus(SESSION_ABSOLUTE), team, false)?;
            tx.audit(sign_in_event(now, Some(account.id), "account.activate").build());
            Ok::<_, AppError>(Ok(NewSession { secret: Secret::new(secret.clone()), account }))
        })?
    }
}

/// The account an unused, unexpired code of this purpose is for.
fn usable_code(row: Option<&kith_store::CodeRow>, purpose: CodePurpose, now: Timestamp) -> Option<AccountId> {
    let row = row?;
    (row.purpose == purpose && row.used_at.is_none() && now < row.expires_at).then_some(row.account).flatten()
}

impl App {
    /// A signed-in person changes their password, giving the current one: every session of
    /// the account ends, and a new one begins for this browser. A wrong current password
    /// counts as a failed sign-in.
    pub fn change_password(&self, secret: &str, current: &Secret, new_password: &Secret) -> AppResult<NewSession> {
        let new_hash = hash_password(new_password)?;
        self.with_password_again(
            secret,
            current,
            "account.password_change",
            "Your current password is not right.",
            |tx, account, now| Ok(tx.set_password(account.id, &new_hash, account.status, now)?),
        )
    }

    /// The person turns two-step verification off, giving their password: every session
    /// ends and a new one begins for this browser. (An organisation that requires it will
    /// ask them to set it up again.)
    pub fn disable_two_factor(&self, secret: &str, password: &Secret) -> AppResult<NewSession> {
        self.with_password_again(
            secret,
            password,
            "account.two_factor_disable",
            "Your password is not right.",
            |tx, account, now| Ok(tx.clear_two_factor(account.id, now)?),
        )
    }

    /// A change a signed-in person confirms with their password: a wrong password counts
    /// as a failed sign-in (audited with `action`, answered with `wrong`); otherwise
    /// `change` runs, every session of the account ends and a new one begins for this
    /// browser, in one transaction.
    fn with_password_again(
        &self,
        secret: &str,
        password: &Secret,
        action: &'static str,
        wrong: &str,
        change: impl Fn(&mut Tx<'_>, &Account, Timestamp) -> AppResult<()>,
    ) -> AppResult<NewSession> {
        let Some(session) = self.session(secret)? else { return Err(AppError::Denied) };
        let account = session.account;
        let stored = self.store.read(|tx| Ok::<_, AppError>(tx.password_hash(account.id)?))?;
        let matches = verify_password(password, stored.as_deref().unwrap_or(decoy_hash())) && stored.is_some();
        let now = self.now();
        let key = email_key(account.email.as_str());
        let fresh = new_secret();
        let fresh_hash = token_hash(&fresh);
        self.store.write(|tx| {
            let event = sign_in_event(now, Some(account.id), action);
            // Counted against the same limit as signing in: over it, even the right password
            // is refused until the hour has passed.
            if tx.sign_in_failures_since(&key, now.minus(HOUR))? >= MAX_FAILED_SIGN_INS_PER_HOUR {
                tx.audit(
                    event.outcome(Outcome::Denied).reason("too many failed attempts for this account in the last hour").build(),
                );
                return Ok(Err(AppError::Invalid(
                    "Too many wrong passwords in the last hour. Try again later, or reset your password from the sign-in page."
                        .to_owned(),
                )));
            }
            if !matches {
                tx.record_sign_in_failure(&key, now, now.minus(HOUR))?;
                tx.audit(event.outcome(Outcome::Denied).reason("wrong password").build());
                return Ok(Err(AppError::Invalid(wrong.to_owned())));
            }
            change(tx, &account, now)?;
            let ended = tx.end_sessions_of(account.id, now)?;
            let team = active_teams(tx, account.id)?.first().map(|team| team.team.id);
            tx.insert_session(&fresh_hash, account.id, now, now.plus(SESSION_ABSOLUTE), team, false)?;
            tx.audit(event.reason(format!("sessions ended: {ended}")).build());
            Ok::<_, AppError>(Ok(NewSession { secret: Secret::new(fresh.clone()), account: account.clone() }))
        })?
    }
}

impl App {
    /// Housekeeping, run by the outbox worker about once an hour: sessions dead for a day
    /// (ended, expired, or idle far past the idle limit), failed sign-ins older than the
    /// hour they count in, and single-use codes used or expired for 30 days are deleted.
    /// (Sign-ins, sign-outs and code uses stay in the audit trail.) How many of each.
    pub fn forget_stale_sign_in_state(&self) -> AppResult<(u64, u64, u64)> {
        let now = self.now();
        let day = Duration::from_secs(24 * 60 * 60);
        self.store
            .write(|tx| Ok(tx.forget_stale_sign_in_state(now.minus(day), now.minus(HOUR), now.minus(day * 30))?))
    }
}

/// Emails `account` a single-use reset link valid for an hour; older links stop working.
pub(crate) fn send_reset_link(tx: &mut Tx<'_>, account: &Account, now: Timestamp) -> AppResult<()> {
    send_reset_link_for(tx, account, None, now)
}

/// [`send_reset_link`], saying in the email that a coordinator of `team` asked for it (not
/// the account holder), when one did.
pub(crate) fn send_reset_link_for(
    tx: &mut Tx<'_>,
    account: &Account,
    team: Option<&kith_core::model::Team>,
    now: Timestamp,
) -> AppResult<()> {
    let code = new_secret();
    tx.retire_codes(account.id, CodePurpose::PasswordReset, now)?;
    tx.insert_code(
        &token_hash(&code),
        CodePurpose::PasswordReset,
        Some(account.id),
        None,
        now,
        now.plus(RESET_CODE_LIFETIME),
    )?;
    let team = team.map(|team| team.name.clone());
    tx.enqueue(&Notice::PasswordReset { account: account.id, team, code }.email(&account.email, now))?;
    Ok(())
}

/// The account a reset code may still reset.
fn usable_reset(row: Option<&kith_store::CodeRow>, now: Timestamp) -> Option<AccountId> {
    let row = row?;
    (row.purpose == CodePurpose::PasswordReset && row.used_at.is_none() && now < row.expires_at)
        .then_some(row.account)
        .flatten()
}

/// The account's active memberships with their teams, in a stable order.
fn active_teams(tx: &mut Tx<'_>, account: AccountId) -> AppResult<Vec<SessionTeam>> {
    let mut teams = Vec::new();
    for membership in tx.memberships_of(account)? {
        if !is_active_membership(membership.status) {
            continue;
        }
        if let Some(team) = tx.team(membership.team)? {
            teams.push(SessionTeam { team, role: membership.role });
        }
    }
    teams.sort_by(|a, b| a.team.name.as_str().cmp(b.team.name.as_str()));
    Ok(teams)
}
