-- Kith core schema (SQLite). Identifiers are UUIDs stored as 16-byte BLOBs (the UUID's bytes
-- in order, so they sort as the UUIDs do), instants are microseconds since the Unix epoch
-- (UTC), privacy labels are bits (general 1, sexual_health 2, mental_health 4, social_care 8;
-- a set is their sum). Patient-scoped tables lead their keys with patient_id.

CREATE TABLE organisations (
    id BLOB PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    break_glass_seconds INTEGER NOT NULL DEFAULT 14400 CHECK (break_glass_seconds > 0),
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE teams (
    id BLOB PRIMARY KEY,
    organisation_id BLOB NOT NULL REFERENCES organisations (id),
    kind TEXT NOT NULL CHECK (kind IN ('patient_record', 'speciality')),
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('setup', 'live', 'closed')),
    default_labels INTEGER NOT NULL CHECK (default_labels BETWEEN 0 AND 15),
    created_at INTEGER NOT NULL,
    UNIQUE (organisation_id, alias)
) STRICT;
-- Exactly one Patient Record Team per organisation (created in the same transaction).
CREATE UNIQUE INDEX teams_one_patient_record_team ON teams (organisation_id) WHERE kind = 'patient_record';

CREATE TABLE accounts (
    id BLOB PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('invited', 'active', 'locked', 'disabled')),
    password_hash TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE memberships (
    account_id BLOB NOT NULL REFERENCES accounts (id),
    team_id BLOB NOT NULL REFERENCES teams (id),
    role TEXT NOT NULL CHECK (role IN ('professional', 'coordinator')),
    status TEXT NOT NULL CHECK (status IN ('active', 'deactivated')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, team_id)
) STRICT;
CREATE INDEX memberships_by_team ON memberships (team_id);

CREATE TABLE privacy_officers (
    organisation_id BLOB NOT NULL REFERENCES organisations (id),
    account_id BLOB NOT NULL REFERENCES accounts (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (organisation_id, account_id)
) STRICT;

CREATE TABLE patients (
    id BLOB PRIMARY KEY,
    nhs_number TEXT UNIQUE CHECK (nhs_number IS NULL OR length(nhs_number) = 10),
    family_name TEXT NOT NULL,
    given_name TEXT NOT NULL,
    birth_date TEXT NOT NULL CHECK (length(birth_date) = 10),
    sex TEXT NOT NULL CHECK (sex IN ('female', 'male', 'other', 'unknown')),
    email TEXT UNIQUE,
    mobile TEXT,
    registration TEXT NOT NULL CHECK (registration IN ('unregistered', 'invited', 'registered')),
    account_id BLOB UNIQUE REFERENCES accounts (id),
    sharing_disabled INTEGER NOT NULL DEFAULT 0 CHECK (sharing_disabled IN (0, 1)),
    merged_into BLOB REFERENCES patients (id),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE patient_identifiers (
    patient_id BLOB NOT NULL REFERENCES patients (id),
    organisation_id BLOB NOT NULL REFERENCES organisations (id),
    authority TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (patient_id, organisation_id, authority, value),
    UNIQUE (organisation_id, authority, value)
) STRICT;

CREATE TABLE care_links (
    patient_id BLOB NOT NULL REFERENCES patients (id),
    team_id BLOB NOT NULL REFERENCES teams (id),
    labels INTEGER NOT NULL CHECK (labels BETWEEN 0 AND 15),
    basis TEXT NOT NULL,
    changed_by BLOB REFERENCES accounts (id),
    linked_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    discharged_at INTEGER,
    PRIMARY KEY (patient_id, team_id)
) STRICT;
CREATE INDEX care_links_by_team ON care_links (team_id, patient_id);

CREATE TABLE record_entries (
    patient_id BLOB NOT NULL REFERENCES patients (id),
    id BLOB NOT NULL,
    kind TEXT NOT NULL,
    -- One label bit, or NULL for an entry with no label (visible only with all four).
    label INTEGER CHECK (label IS NULL OR label IN (1, 2, 4, 8)),
    authored_team_id BLOB NOT NULL REFERENCES teams (id),
    author_account_id BLOB REFERENCES accounts (id),
    effective_at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (patient_id, id)
) STRICT;
CREATE INDEX record_entries_by_author ON record_entries (patient_id, authored_team_id);
-- A record read lists the entries newest first: walking this index needs no sort.
CREATE INDEX record_entries_by_time ON record_entries (patient_id, effective_at DESC, id);

CREATE TABLE break_glass_grants (
    patient_id BLOB NOT NULL REFERENCES patients (id),
    id BLOB NOT NULL,
    account_id BLOB NOT NULL REFERENCES accounts (id),
    team_id BLOB NOT NULL REFERENCES teams (id),
    reason TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ended_at INTEGER,
    review_outcome TEXT,
    reviewed_by BLOB REFERENCES accounts (id),
    reviewed_at INTEGER,
    PRIMARY KEY (patient_id, id)
) STRICT;
CREATE INDEX break_glass_by_account ON break_glass_grants (patient_id, account_id, started_at);

-- Messages to deliver (email, SMS, letter), written with the change that causes them.
CREATE TABLE outbox (
    id BLOB PRIMARY KEY,
    channel TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'letter')),
    template TEXT NOT NULL,
    recipient TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    sent_at INTEGER,
    last_error TEXT
) STRICT;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- The audit trail: append-only, hash-chained. No foreign keys: it outlives what it names.
CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_account_id BLOB,
    actor_name TEXT,
    channel TEXT NOT NULL,
    organisation_id BLOB,
    acting_team_id BLOB,
    patient_id BLOB,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    basis TEXT,
    entry_kinds TEXT NOT NULL,
    labels INTEGER NOT NULL,
    subject TEXT,
    reason TEXT,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
) STRICT;
CREATE INDEX audit_events_by_patient ON audit_events (patient_id, seq);

CREATE TRIGGER audit_events_append_only_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
CREATE TRIGGER audit_events_append_only_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;

-- The last event of the chain, so that removing events from the end is detected too.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL
) STRICT;
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));
