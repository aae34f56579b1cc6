-- HL7 v2 feeds: integrations (a sending facility and its token), the organisation's
-- assigning authorities for local identifiers, and every inbound message with its ACK.

-- Whether any admission/registration ADT (A01, A04, A05, A08) may create a record, or only
-- the person-information messages A28 and A31.
ALTER TABLE organisations ADD COLUMN hl7_create_on_any_adt BOOLEAN NOT NULL DEFAULT TRUE;

CREATE TABLE organisation_authorities (
    organisation_id UUID NOT NULL REFERENCES organisations (id),
    authority TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (organisation_id, authority)
);

CREATE TABLE integrations (
    id UUID PRIMARY KEY,
    organisation_id UUID NOT NULL REFERENCES organisations (id),
    name TEXT NOT NULL,
    -- MSH-4, the sending facility: how an MLLP connection's messages find their integration.
    facility TEXT NOT NULL UNIQUE,
    -- SHA-256 of the bearer token for POST /hl7/v2.
    token_hash BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE hl7_messages (
    id UUID PRIMARY KEY,
    organisation_id UUID NOT NULL REFERENCES organisations (id),
    integration_id UUID REFERENCES integrations (id),
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
    raw BYTEA NOT NULL,
    patient_id UUID REFERENCES patients (id),
    received_at BIGINT NOT NULL,
    processed_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX hl7_messages_once ON hl7_messages (organisation_id, sending_application, sending_facility, control_id)
    WHERE control_id IS NOT NULL;
CREATE INDEX hl7_messages_by_status ON hl7_messages (organisation_id, status, received_at);
