-- A patient's choices of how Kith tells them of events (kith_core::notify): by email, SMS,
-- both, or not at all. No row: the defaults. Emergency access cannot be turned off. The
-- time of the last "new entries" notice keeps a busy feed from sending one per result.
CREATE TABLE patient_notification_settings (
    patient_id UUID PRIMARY KEY REFERENCES patients (id),
    team_added TEXT NOT NULL CHECK (team_added IN ('email', 'sms', 'both', 'off')),
    new_entries TEXT NOT NULL CHECK (new_entries IN ('email', 'sms', 'both', 'off')),
    break_glass TEXT NOT NULL CHECK (break_glass IN ('email', 'sms', 'both')),
    last_new_entries_notice_at BIGINT,
    updated_at BIGINT NOT NULL
);
