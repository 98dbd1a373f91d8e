-- deduct_one and deduct_batch of migration 00002 again, with the character set of their
-- string parameters stated. A parameter declared without one takes the database's default
-- character set at creation: in a database created latin1 (MariaDB's built-in default, or
-- a DBA's CREATE DATABASE before `migrate up`) an order number or SKU outside latin1 was
-- refused by deduct_one (error 1366, answered 500 on every retry) or, without strict
-- sql_mode, turned into '?', so that two such orders named one hold row. The tables are
-- utf8mb4 whatever the database's default; so are the parameters now. Nothing else changes.

-- +goose Up
-- deduct_one as in 00002. The ascii shard takes are digits, ':' and ','.
DROP PROCEDURE IF EXISTS deduct_one;
-- +goose StatementBegin
CREATE PROCEDURE deduct_one(
    IN p_order_no   VARCHAR(64) CHARACTER SET utf8mb4,
    IN p_sku_id     VARCHAR(64) CHARACTER SET utf8mb4,
    IN p_qty        BIGINT,
    IN p_shard      INT,
    IN p_expires_at DATETIME(6),
    IN p_takes      VARCHAR(64) CHARACTER SET ascii
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

-- deduct_batch as in 00002 (see there for both procedures' answers).
DROP PROCEDURE IF EXISTS deduct_batch;
-- +goose StatementBegin
CREATE PROCEDURE deduct_batch(
    IN p_sku_id VARCHAR(64) CHARACTER SET utf8mb4,
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
-- The procedures above are those of 00002 with their parameters' character set stated:
-- they are right for that version too, so there is nothing to undo.
