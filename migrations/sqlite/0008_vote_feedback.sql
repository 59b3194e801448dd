-- The LangSmith feedback row this service submitted for a vote (interactive buttons, confirm
-- links), so `votes erase` can delete it there too; link-mode clicks went to LangSmith
-- directly and have none.
ALTER TABLE votes ADD COLUMN feedback_id TEXT;
-- `votes erase` finds one person's votes.
CREATE INDEX votes_voter ON votes (voter);

-- The channel id `chat.postMessage` answered, kept when the route names its channel by name
-- (`#support`), so a click is checked against the id Slack sends.
ALTER TABLE jobs ADD COLUMN sent_channel TEXT;
