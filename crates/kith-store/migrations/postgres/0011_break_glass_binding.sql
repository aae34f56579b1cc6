-- A break-the-glass grant opened in a web session ends with that session (sign-out, idle,
-- expiry): the SHA-256 of the session's cookie value, as the sessions table keys it.
ALTER TABLE break_glass_grants ADD COLUMN session_hash BYTEA;

-- Grants are ended by account (account disabled), by account and team (membership
-- deactivated) and by session (sign-out).
CREATE INDEX break_glass_grants_by_account ON break_glass_grants (account_id, team_id) WHERE ended_at IS NULL;
CREATE INDEX break_glass_grants_by_session ON break_glass_grants (session_hash) WHERE session_hash IS NOT NULL;
