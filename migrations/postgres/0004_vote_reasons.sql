-- The reasons picked with a negative choice (`[[keys]] reasons`), as a JSON array of strings;
-- NULL for votes without reasons, as every row stored before this migration.
ALTER TABLE votes ADD COLUMN reasons TEXT;
