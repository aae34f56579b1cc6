-- HL7 v2 feeds: integrations (a sending facility and its token), the organisation's
-- assigning authorities for local identifiers, and every inbound message with its ACK.

-- Whether any admission/registration ADT (A01, A04, A05, A08) may create a record, or only
-- the person-information messages A28 and A31.
ALTER TABLE organisations ADD COLUMN hl7_create_on_any_adt INTEGER NOT NULL DEFAULT 1 CHECK (hl7_create_on_any_adt IN (0, 1));

CREATE TABLE organisation_authorities (
    organisation_id BLOB NOT NULL REFERENCES organisations (id),
    authority TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (organisation_id, authority)
) STRICT;

CREATE TABLE integrations (
    id BLOB PRIMARY KEY,
    organisation_id BLOB NOT NULL REFERENCES organisations (id),
    name TEXT NOT NULL,
    -- MSH-4, the sending facility: how an MLLP connection's messages find their integration.
    facility TEXT NOT NULL UNIQUE,
    -- SHA-256 of the bearer token for POST /hl7/v2.
    token_hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE hl7_messages (
    id BLOB PRIMARY KEY,
    organisation_id BLOB NOT NULL REFERENCES organisations (id),
    integration_id BLOB REFERENCES integrations (id),
    sending_application TEXT NOT NULL,
    sending_facility TEXT NOT NULL,
    -- MSH-10; NULL when the message could not be read far enough to have one.
    control_id TEXT,
    message_type TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('accepted', 'rejected', 'error')),
    -- The acknowledgement sent, so that a repeat gets the same one.
    ack TEXT NOT NULL,
    -- Why it was rejected or failed (for operators; no patient data).
    error TEXT,
    raw BLOB NOT NULL,
    patient_id BLOB REFERENCES patients (id),
    received_at INTEGER NOT NULL,
    processed_at INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX hl7_messages_once ON hl7_messages (organisation_id, sending_application, sending_facility, control_id)
    WHERE control_id IS NOT NULL;
CREATE INDEX hl7_messages_by_status ON hl7_messages (organisation_id, status, received_at);
