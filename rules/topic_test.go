package rules

import (
	"strings"
	"testing"

	"github.com/stocksync/stocksync/canal"
)

// TestRulesTopicValidation: validate refuses a topic Kafka would refuse whatever the
// placeholders hold, and placeholders an aggregate or transition rule has no one value
// for; each at the topic.
func TestRulesTopicValidation(t *testing.T) {
	row := func(topic string) string {
		return "rules:\n  - name: r\n    match: {table: shop.stock}\n    topic: " + topic + "\n"
	}
	group := func(emit, topic string) string {
		value := ""
		if emit == "transition" {
			value = "    value: sellable > 0\n"
		}
		return "rules:\n  - name: g\n    match: {table: inventory.sellable_shard}\n    emit: " + emit + "\n    group_by: [sku_id, shard]\n    sum: {sellable: qty}\n" + value + "    topic: " + topic + "\n"
	}
	long := strings.Repeat("x", 250)
	for _, tc := range []struct{ name, src, want string }{
		{"space and slash", row(`"bad topic/{sku_id}"`), `rules.yaml:4:12: rule "r": topic: "bad topic/{sku_id}": ' ' is not allowed in a Kafka topic name (letters, digits, '.', '_' and '-' only)`},
		{"not ASCII", row(`"stock.é"`), `rules.yaml:4:12: rule "r": topic: "stock.é": 'é' is not allowed in a Kafka topic name`},
		{"literal text too long", row(long + ".{sku_id}"), `rules.yaml:4:12: rule "r": topic: its literal text is 251 characters, over Kafka's limit of 249 for a topic name`},
		{"dot dot", row(`".."`), `rules.yaml:4:12: rule "r": topic: ".." is not a legal Kafka topic name`},
		{"aggregate", group("aggregate", `"agg.{table}.{op}.{q}.{sku_id}"`), `rules.yaml:7:12: rule "g": topic: {table}, {op}, {q}: an emit: aggregate rule sends one message per group, so its topic may hold only its group_by columns (here {sku_id}, {shard})`},
		{"transition", group("transition", `"flag.{schema}"`), `rules.yaml:8:12: rule "g": topic: {schema}: an emit: transition rule sends one message per group, so its topic may hold only its group_by columns (here {sku_id}, {shard})`},
	} {
		_, err := Parse("rules.yaml", []byte(tc.src))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: got %v\nwant %s", tc.name, err, tc.want)
		}
	}
	for _, src := range []string{
		row(strings.Repeat("x", 249)),
		row(`"a-b_c.{schema}.{table}.{op}.{sku_id}"`),
		group("aggregate", `"agg.{sku_id}.{shard}"`),
		group("transition", "flags"),
		"rules:\n  - name: r\n    match: {table: shop.stock}\n    topic: t\n    key: \"{sku_id} / {op}\"\n", // a key may hold anything
	} {
		if _, err := Parse("rules.yaml", []byte(src)); err != nil {
			t.Errorf("%s: %v", src, err)
		}
	}
}

// TestRulesTopicAtRunTime: a message whose topic would be no legal Kafka topic name (a
// placeholder NULL, empty or holding a forbidden character, the name too long) is not
// published; the failure is counted and logged as an expression's is, and the stream
// goes on. A group's topic holds its group_by values.
func TestRulesTopicAtRunTime(t *testing.T) {
	e := newTestEngine(mustParse(t, `
rules:
  - {name: rows, match: {table: shop.stock_1}, topic: "stock.{sku_id}"}
  - {name: totals, match: {table: shop.stock_1}, emit: aggregate, group_by: [sku_id], sum: {n: qty}, topic: "total.{sku_id}"}
`))
	for _, tc := range []struct {
		sku    any
		topics string
	}{
		{"A1", "stock.A1 total.A1"},
		{nil, ""},
		{"", ""},
		{"a b", ""},
		{strings.Repeat("x", 244), ""},
		{"B-2", "stock.B-2 total.B-2"},
	} {
		before := e.EvalErrors()
		var out recorder
		if err := e.Row(t.Context(), &canal.RowChange{Op: canal.OpCreate, Table: stockTable, After: []any{tc.sku, int64(1)}, Source: src(0)}, &out); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Commit(t.Context(), canal.Position{File: "f", Pos: 1}, &out); err != nil {
			t.Fatal(err)
		}
		var topics []string
		for _, m := range out.msgs {
			topics = append(topics, m.Topic)
		}
		wantErrors := int64(0)
		if tc.topics == "" {
			wantErrors = 2
		}
		if got := strings.Join(topics, " "); got != tc.topics || e.EvalErrors()-before != wantErrors {
			t.Errorf("sku_id %v: topics %q and %d failures, want %q and %d", tc.sku, got, e.EvalErrors()-before, tc.topics, wantErrors)
		}
	}
}

// TestGroupTopicIsTheColumnAsARowRuleWritesIt: {code} in an aggregate's or transition's
// topic is the text a row rule's {code} is for the same column value: a binary column's
// bytes, not the base64 its key holds ("QUI=", whose '=' no topic may hold), and a float
// as the key writes it, 1e20 in full (not "1e+20"). A group restored from saved state
// fills its topic so in a resync, before any row of it is seen again.
func TestGroupTopicIsTheColumnAsARowRuleWritesIt(t *testing.T) {
	for _, tc := range []struct {
		kind  canal.ColumnKind
		value any
		text  string
	}{
		{canal.KindBytes, []byte("AB"), "AB"},
		{canal.KindFloat, 1e20, "100000000000000000000"},
		{canal.KindFloat, 2.5, "2.5"},
		{canal.KindDecimal, "12.340", "12.340"},
		{canal.KindUint, uint64(18446744073709551615), "18446744073709551615"},
	} {
		set := mustParse(t, `
rules:
  - {name: rows, match: {table: shop.s}, topic: "rows.{code}"}
  - {name: sums, match: {table: shop.s}, emit: aggregate, group_by: [code], sum: {n: qty}, topic: "sums.{code}"}
  - {name: flags, match: {table: shop.s}, emit: transition, group_by: [code], sum: {n: qty}, value: "n > 0", topic: "flags.{code}"}
`)
		tbl := &canal.Table{Schema: "shop", Name: "s", PrimaryKey: []int{0}, Columns: []canal.Column{
			{Name: "id", Kind: canal.KindInt}, {Name: "code", Kind: tc.kind}, {Name: "qty", Kind: canal.KindInt}}}
		e := newTestEngine(set)
		e.MarkSeeded(e.Unseeded(), canal.Position{})
		var out recorder
		if err := e.Row(t.Context(), &canal.RowChange{Op: canal.OpCreate, Table: tbl, After: []any{int64(1), tc.value, int64(3)}, Source: src(0)}, &out); err != nil {
			t.Fatal(err)
		}
		saved, err := e.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 2000}, &out)
		if err != nil {
			t.Fatal(err)
		}
		var topics []string
		for _, m := range out.msgs {
			topics = append(topics, m.Topic)
		}
		want := "rows." + tc.text + " sums." + tc.text + " flags." + tc.text
		if got := strings.Join(topics, " "); got != want || e.EvalErrors() != 0 {
			t.Errorf("%s %v: topics %q (%d failures), want %q", tc.kind, tc.value, got, e.EvalErrors(), want)
		}

		restored := newTestEngine(set)
		if err := restored.Restore(saved); err != nil {
			t.Fatal(err)
		}
		resynced, _ := resyncAll(t, restored)
		topics = topics[:0]
		for _, m := range resynced {
			topics = append(topics, strings.Fields(m)[0])
		}
		if got := strings.Join(topics, " "); got != "sums."+tc.text+" flags."+tc.text || restored.EvalErrors() != 0 {
			t.Errorf("%s %v: restored, a resync's topics %q (%d failures), want sums.%s flags.%s", tc.kind, tc.value, got, restored.EvalErrors(), tc.text, tc.text)
		}
		if tc.kind != canal.KindBytes {
			continue
		}
		// State saved before groups kept "binary": the group's next row tells.
		var old []StateEntry
		for _, ent := range saved {
			if ent.Key != seedKey && !strings.Contains(string(ent.Value), `,"binary":["code"]`) {
				t.Errorf("saved state of %s %s lacks its binary column: %s", ent.Rule, ent.Key, ent.Value)
			}
			ent.Value = []byte(strings.Replace(string(ent.Value), `,"binary":["code"]`, "", 1))
			old = append(old, ent)
		}
		upgraded := newTestEngine(set)
		if err := upgraded.Restore(old); err != nil {
			t.Fatal(err)
		}
		out = recorder{}
		if err := upgraded.Row(t.Context(), &canal.RowChange{Op: canal.OpUpdate, Table: tbl, Before: []any{int64(1), tc.value, int64(3)}, After: []any{int64(1), tc.value, int64(0)}, Source: src(0)}, &out); err != nil {
			t.Fatal(err)
		}
		if _, err := upgraded.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 3000}, &out); err != nil {
			t.Fatal(err)
		}
		topics = topics[:0]
		for _, m := range out.msgs {
			topics = append(topics, m.Topic)
		}
		if got := strings.Join(topics, " "); got != "rows.AB sums.AB flags.AB" || upgraded.EvalErrors() != 0 {
			t.Errorf("restored from state saved without binary columns, the next row's topics %q (%d failures)", got, upgraded.EvalErrors())
		}
	}
}
