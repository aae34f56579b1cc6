-- Finding the last message to an address (a coordinator's view of whether an email arrived).
CREATE INDEX outbox_by_recipient ON outbox (recipient, created_at);
