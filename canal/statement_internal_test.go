package canal

import "testing"

func TestStatementChangeReadsTheTableWritten(t *testing.T) {
	for _, tc := range []struct {
		q, schema, table string
		rowChange        bool
	}{
		{"INSERT INTO t VALUES (1)", "db", "t", true},
		{"insert low_priority ignore into `s`.`t x` (a) values (1)", "s", "t x", true},
		{"/* app */ REPLACE shop.orders SELECT * FROM x", "shop", "orders", true},
		{"UPDATE inventory.sellable_shard SET qty=777 WHERE sku_id='K1'", "inventory", "sellable_shard", true},
		{"UPDATE a, b SET a.x = b.x", "", "", true},
		{"UPDATE a JOIN b ON a.id = b.id SET a.x = 1", "", "", true},
		{"DELETE FROM `we``ird` WHERE id = 1", "db", "we`ird", true},
		{"DELETE t1 FROM t1 JOIN t2", "", "", true},
		{"DELETE FROM t1 USING t1 JOIN t2", "", "", true},
		{"LOAD DATA INFILE '/x' INTO TABLE s.t", "s", "t", true},
		{"WITH c AS (SELECT 1) UPDATE t SET x = 1", "", "", true},
		{"CREATE TABLE t (id INT)", "", "", false},
		{"ALTER TABLE t ADD c INT", "", "", false},
		{"TRUNCATE TABLE t", "", "", false},
		{"# comment\nDROP TABLE t", "", "", false},
	} {
		schema, table, rowChange := statementChange(tc.q, "db")
		if schema != tc.schema || table != tc.table || rowChange != tc.rowChange {
			t.Errorf("statementChange(%q) = %q, %q, %v; want %q, %q, %v", tc.q, schema, table, rowChange, tc.schema, tc.table, tc.rowChange)
		}
	}
}
