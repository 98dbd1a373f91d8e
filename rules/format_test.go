package rules

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/sinks"
)

// kindsTable has one column of every ColumnKind.
var kindsTable = &canal.Table{
	Schema: "shop",
	Name:   "kinds",
	Columns: []canal.Column{
		{Name: "id", Kind: canal.KindUint},
		{Name: "i", Kind: canal.KindInt},
		{Name: "f", Kind: canal.KindFloat},
		{Name: "d", Kind: canal.KindDecimal},
		{Name: "s", Kind: canal.KindString},
		{Name: "b", Kind: canal.KindBytes},
		{Name: "day", Kind: canal.KindDate},
		{Name: "at", Kind: canal.KindDateTime},
		{Name: "t", Kind: canal.KindTime},
		{Name: "j", Kind: canal.KindJSON},
		{Name: "e", Kind: canal.KindEnum},
		{Name: "set", Kind: canal.KindSet},
		{Name: "bit", Kind: canal.KindBit},
		{Name: "y", Kind: canal.KindYear},
		{Name: "n", Kind: canal.KindInt},
	},
	PrimaryKey: []int{0},
}

func kindsRow(i int64, s string) []any {
	return []any{uint64(math.MaxUint64), i, 1.5, "12.340", s, []byte{0, 1, 0xfe}, "2024-02-29", "2024-02-29T10:00:00Z", "10:00:00.5", []byte(`{"a":[1,2]}`), "red", "a,b", uint64(5), int64(2024), nil}
}

func TestFormatsEveryOpAndKind(t *testing.T) {
	cases := []struct {
		format string
		want   []string // insert, update, delete, read
	}{
		{"debezium", []string{
			`{"op":"c","before":null,"after":{"id":18446744073709551615,"i":-3,"f":1.5,"d":"12.340","s":"x\"\\\n\u0001é","b":"AAH+","day":"2024-02-29","at":"2024-02-29T10:00:00Z","t":"10:00:00.5","j":{"a":[1,2]},"e":"red","set":"a,b","bit":5,"y":2024,"n":null},"source":{"server_id":7,"gtid":"3e11fa47-71ca-11e1-9e33-c80aa9429562:23","file":"binlog.000003","pos":1234,"db":"shop","table":"kinds","ts_ms":1700000000000,"row":0},"ts_ms":1700000000999}`,
			`{"op":"u","before":{"id":18446744073709551615,"i":-3,"f":1.5,"d":"12.340","s":"x\"\\\n\u0001é","b":"AAH+","day":"2024-02-29","at":"2024-02-29T10:00:00Z","t":"10:00:00.5","j":{"a":[1,2]},"e":"red","set":"a,b","bit":5,"y":2024,"n":null},"after":{"id":18446744073709551615,"i":4,"f":1.5,"d":"12.340","s":"y","b":"AAH+","day":"2024-02-29","at":"2024-02-29T10:00:00Z","t":"10:00:00.5","j":{"a":[1,2]},"e":"red","set":"a,b","bit":5,"y":2024,"n":null},"source":{"server_id":7,"gtid":"3e11fa47-71ca-11e1-9e33-c80aa9429562:23","file":"binlog.000003","pos":1234,"db":"shop","table":"kinds","ts_ms":1700000000000,"row":1},"ts_ms":1700000000999}`,
			`{"op":"d","before":{"id":18446744073709551615,"i":4,"f":1.5,"d":"12.340","s":"y","b":"AAH+","day":"2024-02-29","at":"2024-02-29T10:00:00Z","t":"10:00:00.5","j":{"a":[1,2]},"e":"red","set":"a,b","bit":5,"y":2024,"n":null},"after":null,"source":{"server_id":7,"gtid":"3e11fa47-71ca-11e1-9e33-c80aa9429562:23","file":"binlog.000003","pos":1234,"db":"shop","table":"kinds","ts_ms":1700000000000,"row":2},"ts_ms":1700000000999}`,
			`{"op":"r","before":null,"after":{"id":18446744073709551615,"i":4,"f":1.5,"d":"12.340","s":"y","b":"AAH+","day":"2024-02-29","at":"2024-02-29T10:00:00Z","t":"10:00:00.5","j":{"a":[1,2]},"e":"red","set":"a,b","bit":5,"y":2024,"n":null},"source":{"server_id":7,"gtid":"3e11fa47-71ca-11e1-9e33-c80aa9429562:23","file":"binlog.000003","pos":1234,"db":"shop","table":"kinds","ts_ms":1700000000000,"row":3},"ts_ms":1700000000999}`,
		}},
		{"canal", []string{
			`{"data":[{"id":"18446744073709551615","i":"-3","f":"1.5","d":"12.340","s":"x\"\\\n\u0001é","b":"AAH+","day":"2024-02-29","at":"2024-02-29T10:00:00Z","t":"10:00:00.5","j":"{\"a\":[1,2]}","e":"red","set":"a,b","bit":"5","y":"2024","n":null}],"database":"shop","table":"kinds","type":"INSERT","old":null,"es":1700000000000,"ts":1700000000999,"isDdl":false,"pkNames":["id"]}`,
			`{"data":[{"id":"18446744073709551615","i":"4","f":"1.5","d":"12.340","s":"y","b":"AAH+","day":"2024-02-29","at":"2024-02-29T10:00:00Z","t":"10:00:00.5","j":"{\"a\":[1,2]}","e":"red","set":"a,b","bit":"5","y":"2024","n":null}],"database":"shop","table":"kinds","type":"UPDATE","old":[{"i":"-3","s":"x\"\\\n\u0001é"}],"es":1700000000000,"ts":1700000000999,"isDdl":false,"pkNames":["id"]}`,
			`{"data":[{"id":"18446744073709551615","i":"4","f":"1.5","d":"12.340","s":"y","b":"AAH+","day":"2024-02-29","at":"2024-02-29T10:00:00Z","t":"10:00:00.5","j":"{\"a\":[1,2]}","e":"red","set":"a,b","bit":"5","y":"2024","n":null}],"database":"shop","table":"kinds","type":"DELETE","old":null,"es":1700000000000,"ts":1700000000999,"isDdl":false,"pkNames":["id"]}`,
			`{"data":[{"id":"18446744073709551615","i":"4","f":"1.5","d":"12.340","s":"y","b":"AAH+","day":"2024-02-29","at":"2024-02-29T10:00:00Z","t":"10:00:00.5","j":"{\"a\":[1,2]}","e":"red","set":"a,b","bit":"5","y":"2024","n":null}],"database":"shop","table":"kinds","type":"INSERT","old":null,"es":1700000000000,"ts":1700000000999,"isDdl":false,"pkNames":["id"]}`,
		}},
		{"maxwell", []string{
			`{"database":"shop","table":"kinds","type":"insert","ts":1700000000,"xid":1234,"data":{"id":18446744073709551615,"i":-3,"f":1.5,"d":12.340,"s":"x\"\\\n\u0001é","b":"AAH+","day":"2024-02-29","at":"2024-02-29T10:00:00Z","t":"10:00:00.5","j":{"a":[1,2]},"e":"red","set":"a,b","bit":5,"y":2024,"n":null}}`,
			`{"database":"shop","table":"kinds","type":"update","ts":1700000000,"xid":1234,"data":{"id":18446744073709551615,"i":4,"f":1.5,"d":12.340,"s":"y","b":"AAH+","day":"2024-02-29","at":"2024-02-29T10:00:00Z","t":"10:00:00.5","j":{"a":[1,2]},"e":"red","set":"a,b","bit":5,"y":2024,"n":null},"old":{"i":-3,"s":"x\"\\\n\u0001é"}}`,
			`{"database":"shop","table":"kinds","type":"delete","ts":1700000000,"xid":1234,"data":{"id":18446744073709551615,"i":4,"f":1.5,"d":12.340,"s":"y","b":"AAH+","day":"2024-02-29","at":"2024-02-29T10:00:00Z","t":"10:00:00.5","j":{"a":[1,2]},"e":"red","set":"a,b","bit":5,"y":2024,"n":null}}`,
			`{"database":"shop","table":"kinds","type":"insert","ts":1700000000,"xid":1234,"data":{"id":18446744073709551615,"i":4,"f":1.5,"d":12.340,"s":"y","b":"AAH+","day":"2024-02-29","at":"2024-02-29T10:00:00Z","t":"10:00:00.5","j":{"a":[1,2]},"e":"red","set":"a,b","bit":5,"y":2024,"n":null}}`,
		}},
	}
	odd := "x\"\\\n\x01é"
	for _, tc := range cases {
		t.Run(tc.format, func(t *testing.T) {
			e := newTestEngine(mustParse(t, fmt.Sprintf("rules:\n  - {name: k, match: {table: shop.kinds}, topic: kinds, format: %s}\n", tc.format)))
			changes := []*canal.RowChange{
				{Op: canal.OpCreate, Table: kindsTable, After: kindsRow(-3, odd)},
				{Op: canal.OpUpdate, Table: kindsTable, Before: kindsRow(-3, odd), After: kindsRow(4, "y")},
				{Op: canal.OpDelete, Table: kindsTable, Before: kindsRow(4, "y")},
				{Op: canal.OpRead, Table: kindsTable, After: kindsRow(4, "y")},
			}
			var out recorder
			for i, c := range changes {
				c.Source = src(i)
				c.Source.GTID = "3e11fa47-71ca-11e1-9e33-c80aa9429562:23"
				if err := e.Row(t.Context(), c, &out); err != nil {
					t.Fatal(err)
				}
			}
			if len(out.msgs) != 4 {
				t.Fatalf("%d messages", len(out.msgs))
			}
			for i, m := range out.msgs {
				if string(m.Value) != tc.want[i] {
					t.Errorf("message %d:\n got %s\nwant %s", i, m.Value, tc.want[i])
				}
				if !json.Valid(m.Value) {
					t.Errorf("message %d is not valid JSON", i)
				}
				if string(m.Key) != `{"id":18446744073709551615}` {
					t.Errorf("key %s", m.Key)
				}
				if string(m.Headers[1].Value) != "3e11fa47-71ca-11e1-9e33-c80aa9429562:23" {
					t.Errorf("position header %s", m.Headers[1].Value)
				}
			}
		})
	}
}

// flagRule is a transition rule "flag" (sellable > 0 per sku_id over the shard table),
// as an item of a rules list.
func flagRule(topic, format string) string {
	return `
  - name: flag
    match: {table: "inventory.sellable_shard"}
    emit: transition
    group_by: [sku_id]
    sum: {sellable: qty}
    value: sellable > 0
    topic: "` + topic + `"
    format: ` + format + "\n"
}

func TestGroupFormats(t *testing.T) {
	for _, tc := range []struct{ format, want string }{
		{"canal", `{"data":[{"sku_id":"A1","sellable":"3","value":"true"}],"database":"inventory","table":"sellable_shard","type":"UPDATE","old":[{"sellable":"0","value":"false"}],"es":1700000000000,"ts":1700000000999,"isDdl":false,"pkNames":["sku_id"]}`},
		{"maxwell", `{"database":"inventory","table":"sellable_shard","type":"update","ts":1700000000,"xid":1234,"data":{"sku_id":"A1","sellable":3,"value":true},"old":{"sellable":0,"value":false}}`},
	} {
		e := newTestEngine(mustParse(t, "rules:\n"+flagRule("flags", tc.format)))
		got, _ := txn(t, e, ins("A1", 0, 3))
		if len(got) != 1 || !strings.HasSuffix(got[0], tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.format, got, tc.want)
		}
	}
}

// TestMaxwellGroupImageWritesDecimalsBare: an aggregate grouped by a DECIMAL column writes
// it in maxwell as a row message does, a bare number, and as a string in the key and in
// debezium; another column that holds text stays a string, and canal writes both as
// strings.
func TestMaxwellGroupImageWritesDecimalsBare(t *testing.T) {
	for _, tc := range []struct{ format, want string }{
		{"maxwell", `"data":{"d":12.340,"s":"7.5","units":-3}`},
		{"debezium", `"after":{"d":"12.340","s":"7.5","units":-3}`},
		{"canal", `"data":[{"d":"12.340","s":"7.5","units":"-3"}]`},
	} {
		e := newTestEngine(mustParse(t, fmt.Sprintf("rules:\n  - {name: g, match: {table: shop.kinds}, emit: aggregate, group_by: [d, s], sum: {units: i}, topic: g, format: %s}\n", tc.format)))
		var out recorder
		c := &canal.RowChange{Op: canal.OpCreate, Table: kindsTable, After: kindsRow(-3, "7.5"), Source: src(0)}
		if err := e.Row(t.Context(), c, &out); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 9999}, &out); err != nil {
			t.Fatal(err)
		}
		if len(out.msgs) != 1 || !strings.Contains(string(out.msgs[0].Value), tc.want) || string(out.msgs[0].Key) != `{"d":"12.340","s":"7.5"}` {
			t.Errorf("%s: %d messages, first %s; want one with %s, keyed {\"d\":\"12.340\",\"s\":\"7.5\"}", tc.format, len(out.msgs), out.msgs[0].Key, tc.want)
			continue
		}
		if !json.Valid(out.msgs[0].Value) {
			t.Errorf("%s: not valid JSON: %s", tc.format, out.msgs[0].Value)
		}
	}
}

// TestUpdatesWithNothingWrittenChanged: an update whose written fields or sums are all
// as they were (a column the rule leaves out changed; stock moved between two shards of
// one SKU) still carries old, as {}: Maxwell's and Canal's readers (Flink's) need it.
func TestUpdatesWithNothingWrittenChanged(t *testing.T) {
	for _, format := range []string{"maxwell", "canal"} {
		e := newTestEngine(mustParse(t, fmt.Sprintf(`
rules:
  - {name: rows, match: {table: inventory.sellable_shard}, fields: [sku_id, shard], topic: rows, format: %[1]s}
  - {name: total, match: {table: inventory.sellable_shard}, emit: aggregate, group_by: [sku_id], sum: {sellable: qty}, topic: total, format: %[1]s}
`, format)))
		txn(t, e, ins("A1", 0, 3), ins("A1", 1, 0))
		got, _ := txn(t, e, upd("A1", 0, 3, 2), upd("A1", 1, 0, 1))
		if len(got) != 3 {
			t.Fatalf("%s: %d messages, want 3: %v", format, len(got), got)
		}
		for _, m := range got {
			if !strings.Contains(m, `"old":{}`) && !strings.Contains(m, `"old":[{}]`) {
				t.Errorf("%s: %s has no empty old", format, m)
			}
		}
	}
}

// whTable is a stock table keyed by SKU and warehouse.
var whTable = &canal.Table{Schema: "shop", Name: "stock", Columns: []canal.Column{{Name: "sku_id", Kind: canal.KindString}, {Name: "warehouse", Kind: canal.KindString}, {Name: "qty", Kind: canal.KindInt}}, PrimaryKey: []int{0, 1}}

// TestUpdateThatMovesTheKeyDeletesTheOldKey: an update that changes a row message's key
// (a primary key column, a key template's column) or its topic is published as Debezium
// publishes a primary key's change, in every format: a delete of the row as it was under
// the old key and topic, then an insert under the new ones, so that a compacted topic
// keeps no row under a key that no longer has it. Any other update stays one u.
func TestUpdateThatMovesTheKeyDeletesTheOldKey(t *testing.T) {
	move := &canal.RowChange{Op: canal.OpUpdate, Table: whTable, Before: []any{"A1", "W1", int64(3)}, After: []any{"A1", "W2", int64(3)}, Source: src(4)}
	stay := &canal.RowChange{Op: canal.OpUpdate, Table: whTable, Before: []any{"A1", "W2", int64(3)}, After: []any{"A1", "W2", int64(2)}, Source: src(5)}
	const source = `"source":{"server_id":7,"gtid":null,"file":"binlog.000003","pos":1234,"db":"shop","table":"stock","ts_ms":1700000000000,"row":`
	type msg struct{ topic, key, value string }
	for _, tc := range []struct {
		name, rule string
		want       []msg // for move, then stay
	}{
		{"key template, debezium", `{name: r, match: {table: shop.stock}, topic: t, key: "{sku_id}:{warehouse}"}`, []msg{
			{"t", "A1:W1", `{"op":"d","before":{"sku_id":"A1","warehouse":"W1","qty":3},"after":null,` + source + `4},"ts_ms":1700000000999}`},
			{"t", "A1:W2", `{"op":"c","before":null,"after":{"sku_id":"A1","warehouse":"W2","qty":3},` + source + `4},"ts_ms":1700000000999}`},
			{"t", "A1:W2", `{"op":"u","before":{"sku_id":"A1","warehouse":"W2","qty":3},"after":{"sku_id":"A1","warehouse":"W2","qty":2},` + source + `5},"ts_ms":1700000000999}`},
		}},
		{"primary key, canal", `{name: r, match: {table: shop.stock}, topic: t, format: canal}`, []msg{
			{"t", `{"sku_id":"A1","warehouse":"W1"}`, `{"data":[{"sku_id":"A1","warehouse":"W1","qty":"3"}],"database":"shop","table":"stock","type":"DELETE","old":null,"es":1700000000000,"ts":1700000000999,"isDdl":false,"pkNames":["sku_id","warehouse"]}`},
			{"t", `{"sku_id":"A1","warehouse":"W2"}`, `{"data":[{"sku_id":"A1","warehouse":"W2","qty":"3"}],"database":"shop","table":"stock","type":"INSERT","old":null,"es":1700000000000,"ts":1700000000999,"isDdl":false,"pkNames":["sku_id","warehouse"]}`},
			{"t", `{"sku_id":"A1","warehouse":"W2"}`, `{"data":[{"sku_id":"A1","warehouse":"W2","qty":"2"}],"database":"shop","table":"stock","type":"UPDATE","old":[{"qty":"3"}],"es":1700000000000,"ts":1700000000999,"isDdl":false,"pkNames":["sku_id","warehouse"]}`},
		}},
		{"topic template, maxwell", `{name: r, match: {table: shop.stock}, topic: "stock.{warehouse}", key: [sku_id], format: maxwell}`, []msg{
			{"stock.W1", `{"sku_id":"A1"}`, `{"database":"shop","table":"stock","type":"delete","ts":1700000000,"xid":1234,"data":{"sku_id":"A1","warehouse":"W1","qty":3}}`},
			{"stock.W2", `{"sku_id":"A1"}`, `{"database":"shop","table":"stock","type":"insert","ts":1700000000,"xid":1234,"data":{"sku_id":"A1","warehouse":"W2","qty":3}}`},
			{"stock.W2", `{"sku_id":"A1"}`, `{"database":"shop","table":"stock","type":"update","ts":1700000000,"xid":1234,"data":{"sku_id":"A1","warehouse":"W2","qty":2},"old":{"qty":3}}`},
		}},
		// {op} is each half's; computed fields see the update, row being the half's image.
		{"op in the topic, computed fields", `{name: r, match: {table: shop.stock}, topic: "t.{op}", fields: {wh: warehouse, at: "row.warehouse", op: "$env.op"}}`, []msg{
			{"t.delete", `{"sku_id":"A1","warehouse":"W1"}`, `{"op":"d","before":{"wh":"W1","at":"W1","op":"update"},"after":null}`},
			{"t.insert", `{"sku_id":"A1","warehouse":"W2"}`, `{"op":"c","before":null,"after":{"wh":"W2","at":"W2","op":"update"}}`},
			{"t.update", `{"sku_id":"A1","warehouse":"W2"}`, `{"op":"u","before":{"wh":"W2","at":"W2","op":"update"},"after":{"wh":"W2","at":"W2","op":"update"}}`},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(mustParse(t, "rules:\n  - "+tc.rule+"\n"))
			var out recorder
			for _, c := range []*canal.RowChange{move, stay} {
				if err := e.Row(t.Context(), c, &out); err != nil {
					t.Fatal(err)
				}
			}
			var got []msg
			for _, m := range out.msgs {
				v := string(m.Value)
				if strings.Contains(tc.name, "computed") {
					v = afterOf(v)
				}
				got = append(got, msg{m.Topic, string(m.Key), v})
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestExpressions(t *testing.T) {
	e := newTestEngine(mustParse(t, `
rules:
  - name: low-stock
    match:
      table: [shop.stock_*]
      ops: [update]
      when: 'changed("qty") && after.qty < 3 && before.qty >= 3'
    fields:
      sku: sku_id
      left: qty
      urgent: "row.qty == 0"
      label: 'schema + "/" + table + ":" + op'
    topic: "alerts.{schema}.{sku_id}"
`))
	var out recorder
	changes := []*canal.RowChange{
		{Op: canal.OpUpdate, Table: stockTable, Before: []any{"A1", int64(5)}, After: []any{"A1", int64(4)}},
		{Op: canal.OpUpdate, Table: stockTable, Before: []any{"A1", int64(4)}, After: []any{"A1", int64(0)}},
		{Op: canal.OpUpdate, Table: stockTable, Before: []any{"A1", int64(0)}, After: []any{"A1", int64(0)}},
		{Op: canal.OpCreate, Table: stockTable, After: []any{"A1", int64(0)}},
	}
	for i, c := range changes {
		c.Source = src(i)
		if err := e.Row(t.Context(), c, &out); err != nil {
			t.Fatal(err)
		}
	}
	if len(out.msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(out.msgs))
	}
	m := out.msgs[0]
	want := `{"op":"u","before":{"sku":"A1","left":4,"urgent":false,"label":"shop/stock_1:update"},"after":{"sku":"A1","left":0,"urgent":true,"label":"shop/stock_1:update"}}`
	if got := afterOf(string(m.Value)); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if m.Topic != "alerts.shop.A1" {
		t.Errorf("topic %q", m.Topic)
	}
}

func TestSeveralRulesOneChange(t *testing.T) {
	e := newTestEngine(mustParse(t, `
rules:
  - {name: a, match: {table: "shop.*"}, topic: all}
  - {name: b, match: {table: "shop.stock_1"}, topic: "stock-{table}", format: maxwell}
  - {name: c, match: {table: "other.*"}, topic: none}
`))
	var out recorder
	if err := e.Row(t.Context(), &canal.RowChange{Op: canal.OpCreate, Table: stockTable, After: []any{"A1", int64(1)}, Source: src(0)}, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.msgs) != 2 || out.msgs[0].Topic != "all" || out.msgs[1].Topic != "stock-stock_1" || string(out.msgs[1].Headers[0].Value) != "b" {
		t.Errorf("got %+v", out.msgs)
	}
}

func TestMissingColumnAndNonNumericSum(t *testing.T) {
	for _, tc := range []struct{ rules, err string }{
		{"rules:\n  - {name: r, match: {table: shop.stock_1}, topic: t, key: [nope]}\n", `rule "r": table shop.stock_1 has no column "nope" (its columns: sku_id, qty)`},
		{"rules:\n  - {name: r, match: {table: shop.stock_1}, topic: t, key: [qyt]}\n", `rule "r": table shop.stock_1 has no column "qyt" (did you mean qty? its columns: sku_id, qty)`},
		{"rules:\n  - {name: r, match: {table: shop.stock_1}, topic: t, emit: aggregate, group_by: [qty], sum: {x: sku_id}}\n", `rule "r": sum.x: column shop.stock_1.sku_id is string, not a number`},
	} {
		e := newTestEngine(mustParse(t, tc.rules))
		err := e.Row(t.Context(), &canal.RowChange{Op: canal.OpCreate, Table: stockTable, After: []any{"A1", int64(1)}, Source: src(0)}, &recorder{})
		if err == nil || err.Error() != tc.err {
			t.Errorf("got %v, want %s", err, tc.err)
		}
	}
}

// TestInstallKeepsUnchangedState: a set installed between two transactions keeps the
// state of the stateful rules it leaves as they were.
func TestInstallKeepsUnchangedState(t *testing.T) {
	e := newTestEngine(mustParse(t, issueRules))
	txn(t, e, ins("A1", 0, 3))
	var out recorder
	if err := e.Row(t.Context(), &canal.RowChange{Op: canal.OpUpdate, Table: shardTable, Before: shardRow("A1", 0, 3), After: shardRow("A1", 0, 1), Source: src(0)}, &out); err != nil {
		t.Fatal(err)
	}
	next := mustParse(t, issueRules+`
  - {name: rows, match: {table: "inventory.*"}, topic: rows}
`)
	if _, err := e.Commit(t.Context(), canal.Position{File: "f", Pos: 1}, &out); err != nil {
		t.Fatal(err)
	}
	e.Install(next)
	got, _ := txn(t, e, upd("A1", 0, 1, 0))
	// the aggregate kept its state over the install: 1 -> 0 is a sell-out
	want := []string{
		`rows {"sku_id":"A1","shard":0} {"op":"u","before":{"sku_id":"A1","shard":0,"qty":1},"after":{"sku_id":"A1","shard":0,"qty":0}}`,
		`product.stock {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":1},"after":{"sku_id":"A1","sellable":0}}`,
		`search.availability {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":1,"value":true},"after":{"sku_id":"A1","sellable":0,"value":false}}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s", strings.Join(got, "\n"))
	}
}

// TestUnsignedAbove2To63InExpressions: a BIGINT UNSIGNED (or BIT(64)) value of 2^63 or
// more is not negative to a condition or a computed field, whichever way the condition
// runs (the closures, or expr's VM for a function call).
func TestUnsignedAbove2To63InExpressions(t *testing.T) {
	e := newTestEngine(mustParse(t, `
rules:
  - name: fast
    match: {table: shop.big, when: "after.u > 5"}
    topic: fast
    fields: {u: u, big: "row.u > 9000000000000000000", neg: "row.u < 0"}
  - name: vm
    match: {table: shop.big, when: "len(string(row.id)) > 0 && after.u > 5"}
    topic: vm
    fields: [u]
`))
	table := &canal.Table{Schema: "shop", Name: "big", Columns: []canal.Column{{Name: "id", Kind: canal.KindInt}, {Name: "u", Kind: canal.KindUint}}, PrimaryKey: []int{0}}
	var out recorder
	for i, u := range []uint64{1 << 63, math.MaxUint64 - 1} {
		c := &canal.RowChange{Op: canal.OpCreate, Table: table, After: []any{int64(i), u}, Source: src(i)}
		if err := e.Row(t.Context(), c, &out); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, m := range out.msgs {
		got = append(got, m.Topic+" "+afterOf(string(m.Value)))
	}
	want := []string{
		`fast {"op":"c","before":null,"after":{"u":9223372036854775808,"big":true,"neg":false}}`,
		`vm {"op":"c","before":null,"after":{"u":9223372036854775808}}`,
		`fast {"op":"c","before":null,"after":{"u":18446744073709551614,"big":true,"neg":false}}`,
		`vm {"op":"c","before":null,"after":{"u":18446744073709551614}}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// ownerTransition runs a transition rule over shop.lots grouped by its BIGINT UNSIGNED
// owner, with value and topic as given, through one transaction inserting a row of owner
// with qty 3, and returns the engine and the one message that transaction must emit
// (value false → true).
func ownerTransition(t *testing.T, value, topic string, owner uint64) (*Engine, sinks.Message) {
	t.Helper()
	e := newTestEngine(mustParse(t, fmt.Sprintf(`
rules:
  - name: big-owner
    match: {table: shop.lots}
    emit: transition
    group_by: [owner]
    sum: {units: qty}
    value: %q
    topic: %q
`, value, topic)))
	table := &canal.Table{Schema: "shop", Name: "lots", Columns: []canal.Column{{Name: "id", Kind: canal.KindInt}, {Name: "owner", Kind: canal.KindUint}, {Name: "qty", Kind: canal.KindInt}}, PrimaryKey: []int{0}}
	var out recorder
	c := &canal.RowChange{Op: canal.OpCreate, Table: table, After: []any{int64(1), owner, int64(3)}, Source: src(0)}
	if err := e.Row(t.Context(), c, &out); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 9999}, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.msgs) != 1 {
		t.Fatalf("got %d messages, want 1 (value false → true)", len(out.msgs))
	}
	return e, out.msgs[0]
}

// TestUnsignedAbove2To63InTransitionValue: a transition rule's value sees a group_by
// value of 2^63 or more as conditions do (float64, not negative), while its topic and
// key keep the exact value.
func TestUnsignedAbove2To63InTransitionValue(t *testing.T) {
	_, m := ownerTransition(t, "units > 0 && owner > 5", "lots.{owner}", math.MaxUint64-1)
	got := m.Topic + " " + string(m.Key) + " " + afterOf(string(m.Value))
	want := `lots.18446744073709551614 {"owner":18446744073709551614} {"op":"u","before":{"owner":18446744073709551614,"units":0,"value":false},"after":{"owner":18446744073709551614,"units":3,"value":true}}`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestTransitionEmptyValueSeesTheGroupColumns: a group's value before its first row is
// its value with every sum 0 over its own group_by columns, so a value that reads a group
// column first is false there, not a failed evaluation (null, counted as an error).
func TestTransitionEmptyValueSeesTheGroupColumns(t *testing.T) {
	e, m := ownerTransition(t, "owner > 5 && units > 0", "lots", 7)
	if n := e.EvalErrors(); n != 0 {
		t.Errorf("%d evaluation errors, want none", n)
	}
	want := `{"op":"u","before":{"owner":7,"units":0,"value":false},"after":{"owner":7,"units":3,"value":true}}`
	if got := afterOf(string(m.Value)); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
