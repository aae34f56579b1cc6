-- Consent on the patient's behalf: the privacy labels an organisation lets the data-quality
-- staff of its Patient Record Team add on a patient's behalf (see the SQLite migration).
ALTER TABLE organisations ADD COLUMN on_behalf_labels SMALLINT NOT NULL DEFAULT 1
    CHECK (on_behalf_labels BETWEEN 0 AND 15);
