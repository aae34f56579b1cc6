-- The uploaded file of a `document` entry (see the SQLite migration).
CREATE TABLE entry_documents (
    patient_id UUID NOT NULL,
    entry_id UUID NOT NULL,
    media_type TEXT NOT NULL CHECK (media_type IN ('application/pdf', 'image/png', 'image/jpeg')),
    file_name TEXT NOT NULL CHECK (char_length(file_name) BETWEEN 1 AND 100),
    size BIGINT NOT NULL CHECK (size BETWEEN 1 AND 10485760 AND size = octet_length(content)),
    sha256 BYTEA NOT NULL CHECK (octet_length(sha256) = 32),
    content BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (patient_id, entry_id),
    FOREIGN KEY (patient_id, entry_id) REFERENCES record_entries (patient_id, id)
);
