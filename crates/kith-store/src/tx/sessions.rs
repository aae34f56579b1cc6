//! Queries for web sign-in: sessions, failed attempts and single-use codes. Every secret is
//! looked up by its SHA-256; none is stored.

use kith_core::access::SessionFacts;
use kith_core::{AccountId, OrganisationId, PatientId, TeamId, Timestamp};

use super::transaction::Tx;
use crate::error::StoreError;

/// A stored web session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub account: AccountId,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub team: Option<TeamId>,
    /// Signed in with a password, waiting for the second step: opens no page.
    pub two_factor_pending: bool,
}

impl SessionRow {
    /// What the access rule needs to know of the session (is it live?).
    pub fn facts(&self) -> SessionFacts {
        SessionFacts {
            created_at: self.created_at,
            last_seen_at: self.last_seen_at,
            expires_at: self.expires_at,
            ended: self.ended_at.is_some(),
        }
    }
}

/// The delivery state of the last message sent to an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageState {
    pub template: String,
    /// `pending`, `sending`, `sent`, `failed` or `dead`.
    pub status: String,
    pub attempts: i64,
    pub created_at: Timestamp,
}

/// A letter in the outbox, not yet printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingLetter {
    pub id: uuid::Uuid,
    /// The patient's id (letters are addressed from the record when printed).
    pub recipient: String,
    pub secret: Option<String>,
}

/// An account's two-step verification state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TwoFactorRow {
    /// The TOTP key (base32) once enrolment is confirmed.
    pub key: Option<String>,
    /// A key shown for enrolment, not yet confirmed with a code.
    pub pending_key: Option<String>,
    /// The last TOTP step accepted (a code is never accepted twice).
    pub last_step: Option<i64>,
}

/// What a single-use code is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodePurpose {
    PasswordReset,
    PatientInvitation,
    ProfessionalActivation,
}

impl CodePurpose {
    pub const fn code(self) -> &'static str {
        match self {
            CodePurpose::PasswordReset => "password_reset",
            CodePurpose::PatientInvitation => "patient_invitation",
            CodePurpose::ProfessionalActivation => "professional_activation",
        }
    }
}

/// A stored single-use code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeRow {
    pub purpose: CodePurpose,
    pub account: Option<AccountId>,
    pub patient: Option<PatientId>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

impl Tx<'_> {
    pub fn insert_session(
        &mut self,
        id_hash: &[u8; 32],
        account: AccountId,
        now: Timestamp,
        expires_at: Timestamp,
        team: Option<TeamId>,
        two_factor_pending: bool,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO sessions (id_hash, account_id, created_at, last_seen_at, expires_at, team_id, two_factor_pending)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            &[
                id_hash.as_slice().into(),
                account.into(),
                now.into(),
                now.into(),
                expires_at.into(),
                team.into(),
                i64::from(two_factor_pending).into(),
            ],
        )?;
        if !two_factor_pending {
            // A visit: the last sign-in becomes the one before.
            self.conn.execute(
                "UPDATE accounts SET previous_sign_in_at = last_sign_in_at, last_sign_in_at = ? WHERE id = ?",
                &[now.into(), account.into()],
            )?;
        }
        Ok(())
    }

    /// When the account signed in before this visit (none on a first visit).
    pub fn previous_sign_in(&mut self, account: AccountId) -> Result<Option<Timestamp>, StoreError> {
        Ok(self
            .one("SELECT previous_sign_in_at FROM accounts WHERE id = ?", &[account.into()], |row| {
                row.opt_timestamp(0)
            })?
            .flatten())
    }

    pub fn session(&mut self, id_hash: &[u8; 32]) -> Result<Option<SessionRow>, StoreError> {
        self.one(
            "SELECT account_id, created_at, last_seen_at, expires_at, ended_at, team_id, two_factor_pending
             FROM sessions WHERE id_hash = ?",
            &[id_hash.as_slice().into()],
            |row| {
                Ok(SessionRow {
                    account: AccountId::from_uuid(row.uuid(0)?),
                    created_at: row.timestamp(1)?,
                    last_seen_at: row.timestamp(2)?,
                    expires_at: row.timestamp(3)?,
                    ended_at: row.opt_timestamp(4)?,
                    team: row.opt_uuid(5)?.map(TeamId::from_uuid),
                    two_factor_pending: row.int(6)? != 0,
                })
            },
        )
    }

    /// Records activity on a live session.
    pub fn touch_session(&mut self, id_hash: &[u8; 32], now: Timestamp) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE sessions SET last_seen_at = ? WHERE id_hash = ? AND ended_at IS NULL",
            &[now.into(), id_hash.as_slice().into()],
        )?;
        Ok(())
    }

    pub fn set_session_team(&mut self, id_hash: &[u8; 32], team: TeamId) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE sessions SET team_id = ? WHERE id_hash = ?", &[team.into(), id_hash.as_slice().into()])?;
        Ok(())
    }

    /// Ends one session; whether it was live.
    pub fn end_session(&mut self, id_hash: &[u8; 32], now: Timestamp) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE sessions SET ended_at = ? WHERE id_hash = ? AND ended_at IS NULL",
            &[now.into(), id_hash.as_slice().into()],
        )? > 0)
    }

    /// Ends every live session of an account; how many there were.
    pub fn end_sessions_of(&mut self, account: AccountId, now: Timestamp) -> Result<u64, StoreError> {
        self.conn.execute(
            "UPDATE sessions SET ended_at = ? WHERE account_id = ? AND ended_at IS NULL",
            &[now.into(), account.into()],
        )
    }

    /// Failed sign-ins for this email hash since `since`.
    pub fn sign_in_failures_since(&mut self, email_hash: &[u8; 32], since: Timestamp) -> Result<i64, StoreError> {
        self.one(
            "SELECT COUNT(*) FROM sign_in_failures WHERE email_hash = ? AND at >= ?",
            &[email_hash.as_slice().into(), since.into()],
            |row| row.int(0),
        )
        .map(Option::unwrap_or_default)
    }

    /// Records a failed sign-in and forgets this email's failures older than `forget_before`.
    pub fn record_sign_in_failure(
        &mut self,
        email_hash: &[u8; 32],
        now: Timestamp,
        forget_before: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM sign_in_failures WHERE email_hash = ? AND at < ?",
            &[email_hash.as_slice().into(), forget_before.into()],
        )?;
        self.conn.execute(
            "INSERT INTO sign_in_failures (email_hash, at) VALUES (?, ?)",
            &[email_hash.as_slice().into(), now.into()],
        )?;
        Ok(())
    }

    pub fn insert_code(
        &mut self,
        code_hash: &[u8; 32],
        purpose: CodePurpose,
        account: Option<AccountId>,
        patient: Option<PatientId>,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO one_time_codes (code_hash, purpose, account_id, patient_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            &[
                code_hash.as_slice().into(),
                purpose.code().into(),
                account.into(),
                patient.into(),
                now.into(),
                expires_at.into(),
            ],
        )?;
        Ok(())
    }

    pub fn code(&mut self, code_hash: &[u8; 32]) -> Result<Option<CodeRow>, StoreError> {
        self.one(
            "SELECT purpose, account_id, patient_id, created_at, expires_at, used_at FROM one_time_codes WHERE code_hash = ?",
            &[code_hash.as_slice().into()],
            |row| {
                let purpose = row.text(0)?;
                Ok(CodeRow {
                    purpose: [CodePurpose::PasswordReset, CodePurpose::PatientInvitation, CodePurpose::ProfessionalActivation]
                        .into_iter()
                        .find(|known| known.code() == purpose)
                        .ok_or_else(|| StoreError::corrupt(format!("stored code purpose {purpose:?} is unknown")))?,
                    account: row.opt_uuid(1)?.map(AccountId::from_uuid),
                    patient: row.opt_uuid(2)?.map(PatientId::from_uuid),
                    created_at: row.timestamp(3)?,
                    expires_at: row.timestamp(4)?,
                    used_at: row.opt_timestamp(5)?,
                })
            },
        )
    }

    /// Marks a code used; false when it was used already (so a racing second use fails).
    pub fn use_code(&mut self, code_hash: &[u8; 32], now: Timestamp) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE one_time_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL",
            &[now.into(), code_hash.as_slice().into()],
        )? > 0)
    }

    /// Retires an account's unused codes for one purpose (a new reset link replaces older ones).
    pub fn retire_codes(
        &mut self,
        account: AccountId,
        purpose: CodePurpose,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.conn.execute(
            "UPDATE one_time_codes SET used_at = ? WHERE account_id = ? AND purpose = ? AND used_at IS NULL",
            &[now.into(), account.into(), purpose.code().into()],
        )
    }

    pub fn two_factor(&mut self, account: AccountId) -> Result<TwoFactorRow, StoreError> {
        self.one(
            "SELECT totp_key, totp_pending_key, totp_last_step FROM accounts WHERE id = ?",
            &[account.into()],
            |row| {
                Ok(TwoFactorRow {
                    key: row.opt_text(0)?.map(str::to_owned),
                    pending_key: row.opt_text(1)?.map(str::to_owned),
                    last_step: row.opt_int(2)?,
                })
            },
        )
        .map(Option::unwrap_or_default)
    }

    pub fn set_pending_totp_key(&mut self, account: AccountId, key: Option<&str>) -> Result<(), StoreError> {
        self.conn.execute("UPDATE accounts SET totp_pending_key = ? WHERE id = ?", &[key.into(), account.into()])?;
        Ok(())
    }

    /// Turns two-step verification on with a confirmed key.
    pub fn enable_totp(&mut self, account: AccountId, key: &str, step: i64, at: Timestamp) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE accounts SET totp_key = ?, totp_pending_key = NULL, totp_last_step = ?, updated_at = ? WHERE id = ?",
            &[key.into(), step.into(), at.into(), account.into()],
        )?;
        Ok(())
    }

    /// Records the step of an accepted code; false when a later or equal one was accepted
    /// already (a racing replay).
    pub fn accept_totp_step(&mut self, account: AccountId, step: i64) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE accounts SET totp_last_step = ? WHERE id = ? AND (totp_last_step IS NULL OR totp_last_step < ?)",
            &[step.into(), account.into(), step.into()],
        )? > 0)
    }

    /// Replaces an account's recovery codes (only their hashes are kept).
    pub fn replace_recovery_codes(&mut self, account: AccountId, hashes: &[[u8; 32]]) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM recovery_codes WHERE account_id = ?", &[account.into()])?;
        for hash in hashes {
            self.conn.execute(
                "INSERT INTO recovery_codes (account_id, code_hash) VALUES (?, ?)",
                &[account.into(), hash.as_slice().into()],
            )?;
        }
        Ok(())
    }

    /// Spends a recovery code; false when it is not one of the account's unused codes.
    pub fn use_recovery_code(
        &mut self,
        account: AccountId,
        hash: &[u8; 32],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE recovery_codes SET used_at = ? WHERE account_id = ? AND code_hash = ? AND used_at IS NULL",
            &[now.into(), account.into(), hash.as_slice().into()],
        )? > 0)
    }

    /// Whether an organisation the account works in (an active membership) requires
    /// two-step verification of its professionals.
    pub fn two_factor_required(&mut self, account: AccountId) -> Result<bool, StoreError> {
        Ok(self
            .one(
                "SELECT 1 FROM memberships m JOIN teams t ON t.id = m.team_id JOIN organisations o ON o.id = t.organisation_id
                 WHERE m.account_id = ? AND m.status = 'active' AND o.require_two_factor <> 0 LIMIT 1",
                &[account.into()],
                |row| row.int(0),
            )?
            .is_some())
    }

    pub fn set_require_two_factor(&mut self, organisation: OrganisationId, required: bool) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE organisations SET require_two_factor = ? WHERE id = ?",
            &[i64::from(required).into(), organisation.into()],
        )? > 0)
    }

    /// Retires a patient's unused codes for one purpose (a new invitation replaces older ones).
    pub fn retire_patient_codes(
        &mut self,
        patient: PatientId,
        purpose: CodePurpose,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.conn.execute(
            "UPDATE one_time_codes SET used_at = ? WHERE patient_id = ? AND purpose = ? AND used_at IS NULL",
            &[now.into(), patient.into(), purpose.code().into()],
        )
    }

    pub fn welcome_message(&mut self, team: TeamId) -> Result<Option<String>, StoreError> {
        Ok(self
            .one("SELECT welcome_message FROM teams WHERE id = ?", &[team.into()], |row| {
                Ok(row.opt_text(0)?.map(str::to_owned))
            })?
            .flatten())
    }

    pub fn set_welcome_message(&mut self, team: TeamId, text: &str) -> Result<(), StoreError> {
        self.conn.execute("UPDATE teams SET welcome_message = ? WHERE id = ?", &[text.into(), team.into()])?;
        Ok(())
    }

    /// The team's welcome message for its professionals.
    pub fn professional_welcome(&mut self, team: TeamId) -> Result<Option<String>, StoreError> {
        Ok(self
            .one("SELECT professional_welcome FROM teams WHERE id = ?", &[team.into()], |row| {
                Ok(row.opt_text(0)?.map(str::to_owned))
            })?
            .flatten())
    }

    /// Sets (or, with `None`, clears) the team's welcome message for its professionals.
    pub fn set_professional_welcome(&mut self, team: TeamId, text: Option<&str>) -> Result<(), StoreError> {
        self.conn.execute("UPDATE teams SET professional_welcome = ? WHERE id = ?", &[text.into(), team.into()])?;
        Ok(())
    }

    pub fn walkthrough_done(&mut self, patient: PatientId) -> Result<Option<Timestamp>, StoreError> {
        Ok(self
            .one("SELECT walkthrough_done_at FROM patients WHERE id = ?", &[patient.into()], |row| {
                row.opt_timestamp(0)
            })?
            .flatten())
    }

    pub fn set_walkthrough_done(&mut self, patient: PatientId, at: Timestamp) -> Result<(), StoreError> {
        self.conn.execute("UPDATE patients SET walkthrough_done_at = ? WHERE id = ?", &[at.into(), patient.into()])?;
        Ok(())
    }

    /// Letters waiting to be printed, oldest first.
    pub fn pending_letters(&mut self) -> Result<Vec<PendingLetter>, StoreError> {
        self.all(
            "SELECT id, recipient, secret FROM outbox WHERE channel = 'letter' AND status = 'pending'
             ORDER BY created_at, id",
            &[],
            |row| {
                Ok(PendingLetter {
                    id: row.uuid(0)?,
                    recipient: row.text(1)?.to_owned(),
                    secret: row.opt_text(2)?.map(str::to_owned),
                })
            },
        )
    }

    /// A letter went to print: it counts as sent, and its code leaves the database.
    pub fn mark_letter_printed(&mut self, id: uuid::Uuid, now: Timestamp) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?, secret = NULL, attempts = attempts + 1
             WHERE id = ? AND channel = 'letter' AND status = 'pending'",
            &[now.into(), id.into()],
        )?;
        Ok(())
    }

    /// A letter that must not be printed (its invitation was replaced or has expired).
    pub fn cancel_letter(&mut self, id: uuid::Uuid, reason: &str, now: Timestamp) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET status = 'dead', secret = NULL, last_error = ?, next_attempt_at = ?
             WHERE id = ? AND channel = 'letter' AND status = 'pending'",
            &[reason.into(), now.into(), id.into()],
        )?;
        Ok(())
    }

    /// The last message to this recipient and how its delivery went (for coordinators).
    pub fn last_message_to(&mut self, recipient: &str) -> Result<Option<MessageState>, StoreError> {
        self.one(
            "SELECT template, status, attempts, created_at FROM outbox WHERE recipient = ?
             ORDER BY created_at DESC, id DESC LIMIT 1",
            &[recipient.into()],
            |row| {
                Ok(MessageState {
                    template: row.text(0)?.to_owned(),
                    status: row.text(1)?.to_owned(),
                    attempts: row.int(2)?,
                    created_at: row.timestamp(3)?,
                })
            },
        )
    }

    /// Turns two-step verification off: the key, any pending key, the last step and the
    /// recovery codes go.
    pub fn clear_two_factor(&mut self, account: AccountId, at: Timestamp) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE accounts SET totp_key = NULL, totp_pending_key = NULL, totp_last_step = NULL, updated_at = ? WHERE id = ?",
            &[at.into(), account.into()],
        )?;
        self.conn.execute("DELETE FROM recovery_codes WHERE account_id = ?", &[account.into()])?;
        Ok(())
    }

    /// Forgets what no longer matters: sessions ended or expired before `sessions_before`,
    /// failed sign-ins before `failures_before`, and single-use codes used or expired before
    /// `codes_before`. How many of each went.
    pub fn forget_stale_sign_in_state(
        &mut self,
        sessions_before: Timestamp,
        failures_before: Timestamp,
        codes_before: Timestamp,
    ) -> Result<(u64, u64, u64), StoreError> {
        let sessions = self.conn.execute(
            "DELETE FROM sessions WHERE (ended_at IS NOT NULL AND ended_at < ?) OR expires_at < ?
             OR last_seen_at < ?",
            &[sessions_before.into(), sessions_before.into(), sessions_before.into()],
        )?;
        let failures = self.conn.execute("DELETE FROM sign_in_failures WHERE at < ?", &[failures_before.into()])?;
        let codes = self.conn.execute(
            "DELETE FROM one_time_codes WHERE (used_at IS NOT NULL AND used_at < ?) OR expires_at < ?",
            &[codes_before.into(), codes_before.into()],
        )?;
        Ok((sessions, failures, codes))
    }
}
