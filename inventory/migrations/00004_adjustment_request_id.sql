-- An optional idempotency key for adjustments. An adjust that names a request_id writes it
-- in its adjustment_log row, and the unique key lets that row be written once: a retried
-- or duplicated adjust finds it and answers without adding or removing stock again.
-- Adjustments without one keep NULL, which the unique key allows any number of times.
-- The column goes last, so that existing rows need no rewrite.

-- +goose Up
ALTER TABLE adjustment_log
    ADD COLUMN request_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    ADD UNIQUE KEY adjustment_log_request (request_id);

-- +goose Down
ALTER TABLE adjustment_log
    DROP KEY adjustment_log_request,
    DROP COLUMN request_id;
