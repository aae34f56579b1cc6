-- "Since your last visit": when each account last signed in (a session that is not waiting
-- for its second step), and the time before that, which home pages count from.
ALTER TABLE accounts ADD COLUMN last_sign_in_at INTEGER;
ALTER TABLE accounts ADD COLUMN previous_sign_in_at INTEGER;
-- A team's welcome message for its professionals (welcome_message is the patients' one).
ALTER TABLE teams ADD COLUMN professional_welcome TEXT;
CREATE INDEX record_entries_by_recorded ON record_entries (patient_id, recorded_at);
