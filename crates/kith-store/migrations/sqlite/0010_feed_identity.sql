-- The feed's identity and trust boundaries.
--
-- Held messages: a message the matching rule cannot apply safely waits, with its reason,
-- for the organisation's data-quality staff ('held'); `conflict` is the rule's code,
-- `conflict_records` the records a person chooses between (space-separated ids), and
-- `resolution` what a person decided. SQLite cannot change a CHECK constraint, so the
-- table is made anew.
CREATE TABLE hl7_messages_new (
    id BLOB PRIMARY KEY,
    organisation_id BLOB NOT NULL REFERENCES organisations (id),
    integration_id BLOB REFERENCES integrations (id),
    sending_application TEXT NOT NULL,
    sending_facility TEXT NOT NULL,
    control_id TEXT,
    message_type TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('accepted', 'rejected', 'error', 'held')),
    ack TEXT NOT NULL,
    -- Why it was rejected, failed or held; for an accepted message, what was not applied.
    error TEXT,
    raw BLOB NOT NULL,
    patient_id BLOB REFERENCES patients (id),
    received_at INTEGER NOT NULL,
    processed_at INTEGER NOT NULL,
    conflict TEXT,
    conflict_records TEXT,
    resolution TEXT
) STRICT;
INSERT INTO hl7_messages_new (id, organisation_id, integration_id, sending_application, sending_facility, control_id,
    message_type, status, ack, error, raw, patient_id, received_at, processed_at)
SELECT id, organisation_id, integration_id, sending_application, sending_facility, control_id,
    message_type, status, ack, error, raw, patient_id, received_at, processed_at
FROM hl7_messages;
DROP TABLE hl7_messages;
ALTER TABLE hl7_messages_new RENAME TO hl7_messages;
CREATE UNIQUE INDEX hl7_messages_once ON hl7_messages (organisation_id, sending_application, sending_facility, control_id)
    WHERE control_id IS NOT NULL;
CREATE INDEX hl7_messages_by_status ON hl7_messages (organisation_id, status, received_at);

-- Integrations: a token can be revoked or expire; an MLLP connection is bound to an
-- integration by its source address (a space-separated list of CIDR ranges) or by its TLS
-- client certificate (the SHA-256 of the certificate, DER).
ALTER TABLE integrations ADD COLUMN revoked_at INTEGER;
ALTER TABLE integrations ADD COLUMN token_expires_at INTEGER;
ALTER TABLE integrations ADD COLUMN allowed_addresses TEXT NOT NULL DEFAULT '';
ALTER TABLE integrations ADD COLUMN client_certificate_sha256 BLOB;
CREATE UNIQUE INDEX integrations_by_certificate ON integrations (client_certificate_sha256)
    WHERE client_certificate_sha256 IS NOT NULL;

-- A feed's result, document and appointment numbers are its organisation's: the same
-- filler order number from two organisations names two entries. Feed entries are written
-- by the organisation's Patient Record Team, so the key includes the authoring team.
DROP INDEX record_entries_by_source;
CREATE UNIQUE INDEX record_entries_by_source ON record_entries (patient_id, authored_team_id, source_key)
    WHERE source_key IS NOT NULL;

-- Records merged into a record: found when a merge moves them on, and when a merge is seen again.
CREATE INDEX patients_by_merged_into ON patients (merged_into) WHERE merged_into IS NOT NULL;
