-- Entries filed from feeds: a source key (a result's order number, a document's unique
-- number, an appointment's placer id) so that a later message finds the entry it corrects,
-- replaces or cancels; a status; every earlier version kept; a result's observations; and
-- each organisation's rules for the privacy label of incoming data.

ALTER TABLE record_entries ADD COLUMN source_key TEXT;
ALTER TABLE record_entries ADD COLUMN status TEXT;
ALTER TABLE record_entries ADD COLUMN source_message_id UUID;
CREATE UNIQUE INDEX record_entries_by_source ON record_entries (patient_id, source_key) WHERE source_key IS NOT NULL;

-- Earlier versions of an entry, as they were before being corrected or replaced.
CREATE TABLE record_entry_versions (
    patient_id UUID NOT NULL,
    entry_id UUID NOT NULL,
    version BIGINT NOT NULL,
    kind TEXT NOT NULL,
    label SMALLINT CHECK (label IS NULL OR label IN (1, 2, 4, 8)),
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT,
    effective_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    source_message_id UUID,
    PRIMARY KEY (patient_id, entry_id, version),
    FOREIGN KEY (patient_id, entry_id) REFERENCES record_entries (patient_id, id)
);

-- A result's observations (OBX), per version of the result.
CREATE TABLE observations (
    patient_id UUID NOT NULL,
    entry_id UUID NOT NULL,
    version BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    code TEXT NOT NULL,
    code_system TEXT NOT NULL,
    name TEXT NOT NULL,
    value_type TEXT NOT NULL,
    value TEXT NOT NULL,
    units TEXT NOT NULL,
    reference_range TEXT NOT NULL,
    flags TEXT NOT NULL,
    status TEXT NOT NULL,
    observed_at BIGINT,
    PRIMARY KEY (patient_id, entry_id, version, seq),
    FOREIGN KEY (patient_id, entry_id) REFERENCES record_entries (patient_id, id)
);

CREATE TABLE label_rules (
    organisation_id UUID NOT NULL REFERENCES organisations (id),
    field TEXT NOT NULL CHECK (field IN ('PV1-3', 'PV1-10', 'OBR-4', 'OBX-3', 'TXA-2', 'MSH-3')),
    value TEXT NOT NULL,
    label SMALLINT NOT NULL CHECK (label IN (1, 2, 4, 8)),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (organisation_id, field, value)
);
