-- Indexes for listing orders newest first (GET /v1/orders): by creation, with or without a
-- status. hold_status_expiry (status, expires_at) serves the listing of held orders, by
-- expiry. InnoDB appends the primary key (order_no) to each, which breaks ties of
-- created_at in the listing's keyset order. Added online: reads and writes of hold go on
-- while the indexes are built.

-- +goose Up
ALTER TABLE hold
    ADD KEY hold_created (created_at),
    ADD KEY hold_status_created (status, created_at),
    ALGORITHM = INPLACE, LOCK = NONE;

-- +goose Down
ALTER TABLE hold
    DROP KEY hold_status_created,
    DROP KEY hold_created;
