-- The forward extremities move into the rooms row, so that moving a room's
-- head after a batch of events is one UPDATE instead of three statements.
ALTER TABLE rooms ADD COLUMN forward_extremities TEXT NOT NULL DEFAULT '[]';
-- The old room_forward_extremities table is still read for rooms whose
-- column is empty (written before this migration).
