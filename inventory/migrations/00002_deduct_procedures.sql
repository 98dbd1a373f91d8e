-- Two procedures that run a deduction's whole transaction in one call, so that the hot
-- shard's row lock is never held across a network round trip. deduct_batch could serve a
-- single order too, but reading its JSON costs the server enough that one-item orders
-- without merging ran 18% slower on 8 shards (2,376-2,458/s against 2,779-3,074/s).
--
-- deduct_one: the whole deduction of a one-item order from one sellable shard, in one call
-- (one round trip instead of five: begin, hold, log, conditional update, commit). The
-- Store calls it for single-item sellable orders when it knows the SKU's shard count; any
-- answer but 'ok' sends the order down the general path in Go, which decides exactly.
-- Answers one row: 'ok' (deducted and committed), 'exists' (the order is already there;
-- nothing written) or 'miss' (the shard does not hold qty; nothing written). Errors roll
-- back and are raised again.

-- +goose Up
-- +goose StatementBegin
CREATE PROCEDURE deduct_one(
    IN p_order_no   VARCHAR(64),
    IN p_sku_id     VARCHAR(64),
    IN p_qty        BIGINT,
    IN p_shard      INT,
    IN p_expires_at DATETIME(6),
    IN p_takes      VARCHAR(64)
)
MODIFIES SQL DATA
BEGIN
    DECLARE EXIT HANDLER FOR 1062
    BEGIN
        ROLLBACK;
        SELECT 'exists' AS outcome;
    END;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        ROLLBACK;
        RESIGNAL;
    END;
    START TRANSACTION;
    INSERT INTO hold (order_no, status, expires_at) VALUES (p_order_no, 'held', p_expires_at);
    INSERT INTO deduction_log (order_no, sku_id, kind, activity_id, qty, shard, shard_takes)
        VALUES (p_order_no, p_sku_id, 'sellable', '', p_qty, p_shard, p_takes);
    -- The shard's row lock last: held for the update and the commit only.
    UPDATE sellable_shard SET qty = qty - p_qty WHERE sku_id = p_sku_id AND shard = p_shard AND qty >= p_qty;
    IF ROW_COUNT() = 1 THEN
        COMMIT;
        SELECT 'ok' AS outcome;
    ELSE
        ROLLBACK;
        SELECT 'miss' AS outcome;
    END IF;
END;
-- +goose StatementEnd

-- deduct_batch: a merged batch (see inventory/merge.go): every order of p_orders, a JSON
-- array of {"o": order_no, "q": qty, "e": "expires_at"}, gets its hold row and log row, and
-- shard p_shard of p_sku gives the sum p_total, in one transaction; batches of one SKU may
-- run side by side, since they queue on the shard's row only for the update and commit. Answers 'ok',
-- 'exists' (some order is already there; nothing written) or 'miss' (the shard does not
-- hold the sum; nothing written).
-- +goose StatementBegin
CREATE PROCEDURE deduct_batch(
    IN p_sku_id VARCHAR(64),
    IN p_shard  INT,
    IN p_total  BIGINT,
    IN p_orders JSON
)
MODIFIES SQL DATA
BEGIN
    DECLARE n BIGINT;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        ROLLBACK;
        RESIGNAL;
    END;
    SET n = JSON_LENGTH(p_orders);
    START TRANSACTION;
    -- An existing order leaves its row alone and counts 0 rows.
    INSERT INTO hold (order_no, status, expires_at)
        SELECT o.order_no, 'held', o.expires_at
        FROM JSON_TABLE(p_orders, '$[*]' COLUMNS (
            order_no   VARCHAR(64) CHARACTER SET utf8mb4 PATH '$.o',
            expires_at DATETIME(6) PATH '$.e')) AS o
        ON DUPLICATE KEY UPDATE order_no = hold.order_no;
    IF ROW_COUNT() <> n THEN
        ROLLBACK;
        SELECT 'exists' AS outcome;
    ELSE
        INSERT INTO deduction_log (order_no, sku_id, kind, activity_id, qty, shard, shard_takes)
            SELECT o.order_no, p_sku_id, 'sellable', '', o.qty, p_shard, CONCAT(p_shard, ':', o.qty)
            FROM JSON_TABLE(p_orders, '$[*]' COLUMNS (
                order_no VARCHAR(64) CHARACTER SET utf8mb4 PATH '$.o',
                qty      BIGINT PATH '$.q')) AS o;
        -- The shard's row lock last: held for the update and the commit only, so that
        -- another batch of the same SKU writes its rows meanwhile.
        UPDATE sellable_shard SET qty = qty - p_total WHERE sku_id = p_sku_id AND shard = p_shard AND qty >= p_total;
        IF ROW_COUNT() = 1 THEN
            COMMIT;
            SELECT 'ok' AS outcome;
        ELSE
            ROLLBACK;
            SELECT 'miss' AS outcome;
        END IF;
    END IF;
END;
-- +goose StatementEnd

-- +goose Down
DROP PROCEDURE IF EXISTS deduct_batch;
DROP PROCEDURE IF EXISTS deduct_one;
