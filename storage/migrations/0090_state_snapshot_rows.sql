-- Snapshots are deltas on their parent until the chain of deltas since the
-- last full copy holds as many rows as that copy (storage/state.go):
-- chain_rows counts the chain's rows, base_rows the full copy's.
-- Existing snapshots start counting from 0.
ALTER TABLE state_snapshots ADD COLUMN chain_rows BIGINT NOT NULL DEFAULT 0;
ALTER TABLE state_snapshots ADD COLUMN base_rows BIGINT NOT NULL DEFAULT 0;
