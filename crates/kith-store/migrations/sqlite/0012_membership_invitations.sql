-- Coordinators stay inside their organisation (issue 15). A coordinator who adds an address
-- that is not an account of their organisation alone (a new address, another
-- organisation's professional, a patient's address) makes an invitation, not a membership:
-- it grants nothing, and the membership is made only when the address's holder accepts it
-- (a new account: when it is activated with the code the invitation carried). The name,
-- job title and registration number are as the coordinator typed them, so that their team
-- page shows the same row whoever holds the address.
CREATE TABLE membership_invitations (
    id BLOB PRIMARY KEY,
    team_id BLOB NOT NULL REFERENCES teams (id),
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('professional', 'coordinator')),
    job_title TEXT,
    registration_number TEXT,
    invited_by BLOB NOT NULL REFERENCES accounts (id),
    -- The outbox message that carried it, and the SHA-256 of the activation code it carried
    -- (a new account, or one that never set a password).
    message_id BLOB NOT NULL,
    activation_code_hash BLOB,
    created_at INTEGER NOT NULL,
    answer TEXT CHECK (answer IN ('accepted', 'declined', 'withdrawn')),
    answered_at INTEGER,
    CHECK ((answer IS NULL) = (answered_at IS NULL))
) STRICT;
-- One open invitation per team and address.
CREATE UNIQUE INDEX membership_invitations_open ON membership_invitations (team_id, email) WHERE answer IS NULL;
CREATE INDEX membership_invitations_by_email ON membership_invitations (email) WHERE answer IS NULL;
CREATE INDEX membership_invitations_by_code ON membership_invitations (activation_code_hash)
    WHERE activation_code_hash IS NOT NULL;
