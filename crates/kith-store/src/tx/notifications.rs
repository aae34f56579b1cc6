//! Queries for a patient's notification choices.

use kith_core::notify::{NotificationSettings, NotifyBy};
use kith_core::{PatientId, Timestamp};

use super::rows::coded;
use super::transaction::Tx;
use crate::error::StoreError;

fn choice(code: &str) -> Result<NotifyBy, StoreError> {
    coded("notification choice", code, NotifyBy::from_code)
}

impl Tx<'_> {
    /// The patient's choices (the defaults when they have made none), and when they were
    /// last sent a "new entries" notice.
    pub fn notification_settings(
        &mut self,
        patient: PatientId,
    ) -> Result<(NotificationSettings, Option<Timestamp>), StoreError> {
        let row = self.one(
            "SELECT team_added, new_entries, break_glass, last_new_entries_notice_at
             FROM patient_notification_settings WHERE patient_id = ?",
            &[patient.into()],
            |row| {
                Ok((
                    NotificationSettings {
                        team_added: choice(row.text(0)?)?,
                        new_entries: choice(row.text(1)?)?,
                        break_glass: choice(row.text(2)?)?,
                    },
                    row.opt_timestamp(3)?,
                ))
            },
        )?;
        Ok(row.unwrap_or_default())
    }

    /// Stores the patient's choices.
    pub fn put_notification_settings(
        &mut self,
        patient: PatientId,
        settings: &NotificationSettings,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO patient_notification_settings (patient_id, team_added, new_entries, break_glass, updated_at)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (patient_id) DO UPDATE SET team_added = excluded.team_added,
             new_entries = excluded.new_entries, break_glass = excluded.break_glass, updated_at = excluded.updated_at",
            &[
                patient.into(),
                settings.team_added.code().into(),
                settings.new_entries.code().into(),
                settings.break_glass.code().into(),
                now.into(),
            ],
        )?;
        Ok(())
    }

    /// Notes that the patient was sent a "new entries" notice at `at`.
    pub fn note_new_entries_notice(&mut self, patient: PatientId, at: Timestamp) -> Result<(), StoreError> {
        let defaults = NotificationSettings::default();
        self.conn.execute(
            "INSERT INTO patient_notification_settings
                 (patient_id, team_added, new_entries, break_glass, last_new_entries_notice_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (patient_id) DO UPDATE SET last_new_entries_notice_at = excluded.last_new_entries_notice_at",
            &[
                patient.into(),
                defaults.team_added.code().into(),
                defaults.new_entries.code().into(),
                defaults.break_glass.code().into(),
                at.into(),
                at.into(),
            ],
        )?;
        Ok(())
    }
}
