-- Consent on the patient's behalf: the privacy labels an organisation lets the data-quality
-- staff of its Patient Record Team add to that team's care links on a patient's behalf
-- (bits, as for care links: general 1, sexual_health 2, mental_health 4, social_care 8).
-- General health only unless the operator changes it (`kith org set --on-behalf-labels`).
ALTER TABLE organisations ADD COLUMN on_behalf_labels INTEGER NOT NULL DEFAULT 1
    CHECK (on_behalf_labels BETWEEN 0 AND 15);
