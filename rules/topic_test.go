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
