-- The stock schema: sellable stock split over shard rows, reserved, physical per
-- warehouse, activity (campaign) stock, warehouses, and the order-driven logs.
-- Every quantity column is checked non-negative so that no bug can oversell silently.

-- +goose Up
CREATE TABLE sku (
    sku_id     VARCHAR(64) NOT NULL,
    shards     INT         NOT NULL DEFAULT 1,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (sku_id),
    CONSTRAINT sku_shards_positive CHECK (shards >= 1)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The logical sellable stock of a SKU is SUM(qty) over its shards 0..sku.shards-1.
CREATE TABLE sellable_shard (
    sku_id VARCHAR(64) NOT NULL,
    shard  INT         NOT NULL,
    qty    BIGINT      NOT NULL,
    PRIMARY KEY (sku_id, shard),
    CONSTRAINT sellable_shard_qty_nonnegative CHECK (qty >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Ordered and paid for, not yet shipped.
CREATE TABLE reserved (
    sku_id     VARCHAR(64) NOT NULL,
    qty        BIGINT      NOT NULL DEFAULT 0,
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (sku_id),
    CONSTRAINT reserved_qty_nonnegative CHECK (qty >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE warehouse (
    code       VARCHAR(32)  NOT NULL,
    name       VARCHAR(255) NOT NULL,
    address    VARCHAR(512) NOT NULL DEFAULT '',
    type       VARCHAR(32)  NOT NULL,
    updated_at DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (code)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Real units per SKU and warehouse, as the warehouse system (WMS) reports them.
CREATE TABLE physical_stock (
    sku_id         VARCHAR(64) NOT NULL,
    warehouse_code VARCHAR(32) NOT NULL,
    qty            BIGINT      NOT NULL,
    updated_at     DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (sku_id, warehouse_code),
    KEY physical_stock_warehouse (warehouse_code),
    CONSTRAINT physical_stock_qty_nonnegative CHECK (qty >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Stock set aside for a flash sale or campaign; deducted instead of sellable while active.
CREATE TABLE activity_stock (
    sku_id      VARCHAR(64) NOT NULL,
    activity_id VARCHAR(64) NOT NULL,
    qty         BIGINT      NOT NULL,
    starts_at   DATETIME(6) NOT NULL,
    ends_at     DATETIME(6) NOT NULL,
    updated_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (sku_id, activity_id),
    CONSTRAINT activity_stock_qty_nonnegative CHECK (qty >= 0),
    CONSTRAINT activity_stock_window CHECK (ends_at > starts_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per order: its state (held, confirmed, shipped, cancelled, expired) and hold expiry.
-- Its primary key is what makes a deduction idempotent on order_no.
CREATE TABLE hold (
    order_no   VARCHAR(64) NOT NULL,
    status     VARCHAR(16) NOT NULL,
    expires_at DATETIME(6) NOT NULL,
    warehouse  VARCHAR(32) NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (order_no),
    KEY hold_status_expiry (status, expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per granted item. kind is sellable or activity. Soft-deleted (deleted_at) when the
-- order is cancelled or its hold expires; shard is where the stock was taken first and
-- shard_takes lists every shard:qty taken.
CREATE TABLE deduction_log (
    id          BIGINT       NOT NULL AUTO_INCREMENT,
    order_no    VARCHAR(64)  NOT NULL,
    sku_id      VARCHAR(64)  NOT NULL,
    kind        VARCHAR(16)  NOT NULL,
    activity_id VARCHAR(64)  NOT NULL DEFAULT '',
    qty         BIGINT       NOT NULL,
    shard       INT          NOT NULL DEFAULT 0,
    shard_takes VARCHAR(8192) CHARACTER SET ascii NOT NULL DEFAULT '',
    created_at  DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    deleted_at  DATETIME(6)  NULL,
    PRIMARY KEY (id),
    UNIQUE KEY deduction_log_order_sku_kind (order_no, sku_id, kind),
    KEY deduction_log_sku (sku_id),
    CONSTRAINT deduction_log_qty_positive CHECK (qty > 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per item given back by a cancel or an expired hold; unique like the log so a
-- rollback happens once.
CREATE TABLE rollback_log (
    id          BIGINT      NOT NULL AUTO_INCREMENT,
    order_no    VARCHAR(64) NOT NULL,
    sku_id      VARCHAR(64) NOT NULL,
    kind        VARCHAR(16) NOT NULL,
    activity_id VARCHAR(64) NOT NULL DEFAULT '',
    qty         BIGINT      NOT NULL,
    reason      VARCHAR(16) NOT NULL,
    created_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    UNIQUE KEY rollback_log_order_sku_kind (order_no, sku_id, kind)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Operators' additions and removals of sellable stock, with their reason.
CREATE TABLE adjustment_log (
    id         BIGINT       NOT NULL AUTO_INCREMENT,
    sku_id     VARCHAR(64)  NOT NULL,
    delta      BIGINT       NOT NULL,
    reason     VARCHAR(255) NOT NULL,
    created_at DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    KEY adjustment_log_sku (sku_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- +goose Down
DROP TABLE adjustment_log;
DROP TABLE rollback_log;
DROP TABLE deduction_log;
DROP TABLE hold;
DROP TABLE activity_stock;
DROP TABLE physical_stock;
DROP TABLE warehouse;
DROP TABLE reserved;
DROP TABLE sellable_shard;
DROP TABLE sku;
