-- Web sign-in: sessions, failed attempts and single-use codes. Secrets are never stored:
-- a session cookie, a reset code or an invitation code is kept only as its SHA-256.

-- A signed-in browser. Idle for 30 minutes or older than 12 hours, it no longer works
-- (checked on each request); ended_at is set at sign-out and on a password change.
CREATE TABLE sessions (
    id_hash BYTEA PRIMARY KEY,
    account_id UUID NOT NULL REFERENCES accounts (id),
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT,
    team_id UUID REFERENCES teams (id)
);
CREATE INDEX sessions_by_account ON sessions (account_id);

-- Failed sign-ins in the last hour, by the SHA-256 of the normalised email, known or not,
-- so that the limit behaves the same whether or not an account exists.
CREATE TABLE sign_in_failures (
    email_hash BYTEA NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX sign_in_failures_by_email ON sign_in_failures (email_hash, at);

-- Single-use codes with an expiry: password resets, patient invitations, professional
-- activations.
CREATE TABLE one_time_codes (
    code_hash BYTEA PRIMARY KEY,
    purpose TEXT NOT NULL CHECK (purpose IN ('password_reset', 'patient_invitation', 'professional_activation')),
    account_id UUID REFERENCES accounts (id),
    patient_id UUID REFERENCES patients (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX one_time_codes_by_account ON one_time_codes (account_id);
CREATE INDEX one_time_codes_by_patient ON one_time_codes (patient_id);

-- Two-step verification. The TOTP key must be readable to check codes, so it cannot be
-- hashed; recovery codes can, and are. A session signed in with a password but not yet
-- with the second step has two_factor_pending = 1 and opens no page.
ALTER TABLE accounts ADD COLUMN totp_key TEXT;
ALTER TABLE accounts ADD COLUMN totp_pending_key TEXT;
ALTER TABLE accounts ADD COLUMN totp_last_step BIGINT;
ALTER TABLE sessions ADD COLUMN two_factor_pending BIGINT NOT NULL DEFAULT 0;
ALTER TABLE organisations ADD COLUMN require_two_factor BIGINT NOT NULL DEFAULT 0;
CREATE TABLE recovery_codes (
    account_id UUID NOT NULL REFERENCES accounts (id),
    code_hash BYTEA NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (account_id, code_hash)
);

-- Registration: a patient's postal address (for letter invitations), the Patient Record
-- Team's welcome message shown first in the walkthrough, and when the patient finished the
-- walkthrough of the teams already linked to their record.
ALTER TABLE patients ADD COLUMN address TEXT;
ALTER TABLE patients ADD COLUMN walkthrough_done_at BIGINT;
ALTER TABLE teams ADD COLUMN welcome_message TEXT;
