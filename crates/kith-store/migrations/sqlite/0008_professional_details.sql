-- A professional's job title and registration number (GMC, NMC, HCPC…), from the CSV upload
-- or an invitation; shown to the team's coordinators.
ALTER TABLE accounts ADD COLUMN job_title TEXT;
ALTER TABLE accounts ADD COLUMN registration_number TEXT;
