-- The feed's identity and trust boundaries (see the SQLite migration for the why).
ALTER TABLE hl7_messages DROP CONSTRAINT hl7_messages_status_check;
ALTER TABLE hl7_messages ADD CONSTRAINT hl7_messages_status_check
    CHECK (status IN ('accepted', 'rejected', 'error', 'held'));
ALTER TABLE hl7_messages ADD COLUMN conflict TEXT;
ALTER TABLE hl7_messages ADD COLUMN conflict_records TEXT;
ALTER TABLE hl7_messages ADD COLUMN resolution TEXT;

ALTER TABLE integrations ADD COLUMN revoked_at BIGINT;
ALTER TABLE integrations ADD COLUMN token_expires_at BIGINT;
ALTER TABLE integrations ADD COLUMN allowed_addresses TEXT NOT NULL DEFAULT '';
ALTER TABLE integrations ADD COLUMN client_certificate_sha256 BYTEA;
CREATE UNIQUE INDEX integrations_by_certificate ON integrations (client_certificate_sha256)
    WHERE client_certificate_sha256 IS NOT NULL;

DROP INDEX record_entries_by_source;
CREATE UNIQUE INDEX record_entries_by_source ON record_entries (patient_id, authored_team_id, source_key)
    WHERE source_key IS NOT NULL;

-- Records merged into a record: found when a merge moves them on, and when a merge is seen again.
CREATE INDEX patients_by_merged_into ON patients (merged_into) WHERE merged_into IS NOT NULL;
