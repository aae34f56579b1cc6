-- Kith core schema (PostgreSQL). Identifiers are UUIDs, instants are microseconds since the
-- Unix epoch (UTC), privacy labels are bits (general 1, sexual_health 2, mental_health 4,
-- social_care 8; a set is their sum). Patient-scoped tables lead their keys with patient_id.

CREATE TABLE organisations (
    id UUID PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    break_glass_seconds BIGINT NOT NULL DEFAULT 14400 CHECK (break_glass_seconds > 0),
    created_at BIGINT NOT NULL
);

CREATE TABLE teams (
    id UUID PRIMARY KEY,
    organisation_id UUID NOT NULL REFERENCES organisations (id),
    kind TEXT NOT NULL CHECK (kind IN ('patient_record', 'speciality')),
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('setup', 'live', 'closed')),
    default_labels SMALLINT NOT NULL CHECK (default_labels BETWEEN 0 AND 15),
    created_at BIGINT NOT NULL,
    UNIQUE (organisation_id, alias)
);
-- Exactly one Patient Record Team per organisation (created in the same transaction).
CREATE UNIQUE INDEX teams_one_patient_record_team ON teams (organisation_id) WHERE kind = 'patient_record';

CREATE TABLE accounts (
    id UUID PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('invited', 'active', 'locked', 'disabled')),
    password_hash TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE memberships (
    account_id UUID NOT NULL REFERENCES accounts (id),
    team_id UUID NOT NULL REFERENCES teams (id),
    role TEXT NOT NULL CHECK (role IN ('professional', 'coordinator')),
    status TEXT NOT NULL CHECK (status IN ('active', 'deactivated')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, team_id)
);
CREATE INDEX memberships_by_team ON memberships (team_id);

CREATE TABLE privacy_officers (
    organisation_id UUID NOT NULL REFERENCES organisations (id),
    account_id UUID NOT NULL REFERENCES accounts (id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (organisation_id, account_id)
);

CREATE TABLE patients (
    id UUID PRIMARY KEY,
    nhs_number TEXT UNIQUE CHECK (nhs_number IS NULL OR length(nhs_number) = 10),
    family_name TEXT NOT NULL,
    given_name TEXT NOT NULL,
    birth_date TEXT NOT NULL CHECK (length(birth_date) = 10),
    sex TEXT NOT NULL CHECK (sex IN ('female', 'male', 'other', 'unknown')),
    email TEXT UNIQUE,
    mobile TEXT,
    registration TEXT NOT NULL CHECK (registration IN ('unregistered', 'invited', 'registered')),
    account_id UUID UNIQUE REFERENCES accounts (id),
    sharing_disabled BOOLEAN NOT NULL DEFAULT FALSE,
    merged_into UUID REFERENCES patients (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE patient_identifiers (
    patient_id UUID NOT NULL REFERENCES patients (id),
    organisation_id UUID NOT NULL REFERENCES organisations (id),
    authority TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (patient_id, organisation_id, authority, value),
    UNIQUE (organisation_id, authority, value)
);

CREATE TABLE care_links (
    patient_id UUID NOT NULL REFERENCES patients (id),
    team_id UUID NOT NULL REFERENCES teams (id),
    labels SMALLINT NOT NULL CHECK (labels BETWEEN 0 AND 15),
    basis TEXT NOT NULL,
    changed_by UUID REFERENCES accounts (id),
    linked_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    discharged_at BIGINT,
    PRIMARY KEY (patient_id, team_id)
);
CREATE INDEX care_links_by_team ON care_links (team_id, patient_id);

CREATE TABLE record_entries (
    patient_id UUID NOT NULL REFERENCES patients (id),
    id UUID NOT NULL,
    kind TEXT NOT NULL,
    -- One label bit, or NULL for an entry with no label (visible only with all four).
    label SMALLINT CHECK (label IS NULL OR label IN (1, 2, 4, 8)),
    authored_team_id UUID NOT NULL REFERENCES teams (id),
    author_account_id UUID REFERENCES accounts (id),
    effective_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (patient_id, id)
);
CREATE INDEX record_entries_by_author ON record_entries (patient_id, authored_team_id);
-- The record, newest first, without a sort.
CREATE INDEX record_entries_by_time ON record_entries (patient_id, effective_at DESC, id);

CREATE TABLE break_glass_grants (
    patient_id UUID NOT NULL REFERENCES patients (id),
    id UUID NOT NULL,
    account_id UUID NOT NULL REFERENCES accounts (id),
    team_id UUID NOT NULL REFERENCES teams (id),
    reason TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT,
    review_outcome TEXT,
    reviewed_by UUID REFERENCES accounts (id),
    reviewed_at BIGINT,
    PRIMARY KEY (patient_id, id)
);
CREATE INDEX break_glass_by_account ON break_glass_grants (patient_id, account_id, started_at);

-- Messages to deliver (email, SMS, letter), written with the change that causes them.
CREATE TABLE outbox (
    id UUID PRIMARY KEY,
    channel TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'letter')),
    template TEXT NOT NULL,
    recipient TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'dead')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    last_error TEXT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- The audit trail: append-only, hash-chained. No foreign keys: it outlives what it names.
CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_account_id UUID,
    actor_name TEXT,
    channel TEXT NOT NULL,
    organisation_id UUID,
    acting_team_id UUID,
    patient_id UUID,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    basis TEXT,
    entry_kinds TEXT NOT NULL,
    labels SMALLINT NOT NULL,
    subject TEXT,
    reason TEXT,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
CREATE INDEX audit_events_by_patient ON audit_events (patient_id, seq);

CREATE FUNCTION kith_audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END;
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION kith_audit_events_append_only();

-- The last event of the chain, so that removing events from the end is detected too.
CREATE TABLE audit_head (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));
