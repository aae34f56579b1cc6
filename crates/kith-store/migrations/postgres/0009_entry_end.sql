-- When an entry's period ends, where it has one: an appointment's end (SIU SCH-11.5, or its
-- start plus SCH-9/SCH-10 or AIS-7/AIS-8). Kept for earlier versions too.
ALTER TABLE record_entries ADD COLUMN ends_at BIGINT;
ALTER TABLE record_entry_versions ADD COLUMN ends_at BIGINT;
