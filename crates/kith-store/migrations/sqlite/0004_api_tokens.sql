-- API tokens: bearer secrets for the FHIR API, one account each. Only the SHA-256 of a
-- token is stored. A token acts with its account's memberships as they are at each request.
CREATE TABLE api_tokens (
    id BLOB PRIMARY KEY,
    account_id BLOB NOT NULL REFERENCES accounts (id),
    name TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
) STRICT;

-- One live token per (account, name); revoked ones are kept for the audit trail.
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (account_id, name) WHERE revoked_at IS NULL;

-- Finding patients by family name and date of birth (FHIR Patient search).
CREATE INDEX patients_birth_date ON patients (birth_date, family_name);

-- Reading one entry by its identifier (FHIR Observation/{id} and the like).
CREATE INDEX record_entries_by_id ON record_entries (id);
