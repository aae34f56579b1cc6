-- The uploaded file of a `document` entry (a letter as a PDF, a photograph of one). It
-- belongs to its entry, keyed like the entry's history, so the rule that decides who sees the
-- entry (its label, its author team, consent, break glass) decides who sees the file. The
-- type is what the content is (`kith_core::document::sniff_document`), never what the sender
-- declared; the name is kept as given, sanitised (`sanitise_file_name`); the size and the
-- SHA-256 are of `content`.
CREATE TABLE entry_documents (
    patient_id BLOB NOT NULL,
    entry_id BLOB NOT NULL,
    media_type TEXT NOT NULL CHECK (media_type IN ('application/pdf', 'image/png', 'image/jpeg')),
    file_name TEXT NOT NULL CHECK (length(file_name) BETWEEN 1 AND 100),
    size INTEGER NOT NULL CHECK (size BETWEEN 1 AND 10485760 AND size = length(content)),
    sha256 BLOB NOT NULL CHECK (length(sha256) = 32),
    content BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (patient_id, entry_id),
    FOREIGN KEY (patient_id, entry_id) REFERENCES record_entries (patient_id, id)
) STRICT;
