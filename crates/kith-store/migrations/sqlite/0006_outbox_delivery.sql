-- Outbox delivery: the one-time code (a password-reset or invitation code) a message must
-- carry, kept only while the message waits to be delivered. It is set to NULL when the
-- message is sent or given up (dead), so the raw code lives in the database only for the
-- delivery window; the code's own table keeps nothing but its SHA-256.
ALTER TABLE outbox ADD COLUMN secret TEXT;
