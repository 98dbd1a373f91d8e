package rules

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/stocksync/canal"
)

// resyncAll runs a resync at a position and returns "topic key value" per message.
func resyncAll(t *testing.T, e *Engine, names ...string) ([]string, []ResyncCount) {
	t.Helper()
	return resyncOf(t, e, ResyncRequest{Rules: names})
}

func resyncOf(t *testing.T, e *Engine, req ResyncRequest) ([]string, []ResyncCount) {
	t.Helper()
	var out recorder
	counts, err := e.Resync(t.Context(), req, canal.Source{ServerID: 7, File: "binlog.000004", Pos: 777}, &out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range out.msgs {
		got = append(got, m.Topic+" "+string(m.Key)+" "+string(m.Value))
	}
	return got, counts
}

// A resync sends every group's current state, a sold-out SKU's false flag included, as
// reads at the position, in key order; a restored engine, whose groups no change has
// touched since, sends the same bytes.
func TestResyncSendsEveryGroupAsARead(t *testing.T) {
	set := mustParse(t, issueRules)
	e := newTestEngine(set)
	e.MarkSeeded(e.Unseeded(), canal.Position{})
	var saved []StateEntry
	for _, changes := range [][]*canal.RowChange{
		{ins("B2", 0, 4), ins("A1", 0, 2), ins("A1", 1, 3)},
		{upd("B2", 0, 4, 0)}, // B2 sells out
		{ins("C3", 0, 1)},
		{del("C3", 0, 1)}, // C3's rows are gone: no group left
	} {
		_, ents := txn(t, e, changes...)
		saved = mergeEntries(saved, ents)
	}
	got, counts := resyncAll(t, e)
	want := []string{
		`product.stock {"sku_id":"A1"} {"op":"r","before":null,"after":{"sku_id":"A1","sellable":5},"source":{"server_id":7,"gtid":null,"file":"binlog.000004","pos":777,"db":"inventory","table":"sellable_shard","ts_ms":1700000000999,"row":0,"snapshot":true},"ts_ms":1700000000999}`,
		`product.stock {"sku_id":"B2"} {"op":"r","before":null,"after":{"sku_id":"B2","sellable":0},"source":{"server_id":7,"gtid":null,"file":"binlog.000004","pos":777,"db":"inventory","table":"sellable_shard","ts_ms":1700000000999,"row":1,"snapshot":true},"ts_ms":1700000000999}`,
		`search.availability {"sku_id":"A1"} {"op":"r","before":null,"after":{"sku_id":"A1","sellable":5,"value":true},"source":{"server_id":7,"gtid":null,"file":"binlog.000004","pos":777,"db":"inventory","table":"sellable_shard","ts_ms":1700000000999,"row":0,"snapshot":true},"ts_ms":1700000000999}`,
		`search.availability {"sku_id":"B2"} {"op":"r","before":null,"after":{"sku_id":"B2","sellable":0,"value":false},"source":{"server_id":7,"gtid":null,"file":"binlog.000004","pos":777,"db":"inventory","table":"sellable_shard","ts_ms":1700000000999,"row":1,"snapshot":true},"ts_ms":1700000000999}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("resync:\n got %s\nwant %s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if fmt.Sprint(counts) != "[{product-stock 2 []} {search-in-stock 2 []}]" {
		t.Errorf("counts %+v", counts)
	}

	restored := newTestEngine(set)
	if err := restored.Restore(saved); err != nil {
		t.Fatal(err)
	}
	again, _ := resyncAll(t, restored)
	if strings.Join(again, "\n") != strings.Join(want, "\n") {
		t.Errorf("resync after a restore:\n got %s\nwant %s", strings.Join(again, "\n"), strings.Join(want, "\n"))
	}

	// The resync leaves the stream as it was: the next transaction reports its change
	// against the state before it, at its own time.
	e.SetClock(func() time.Time { return time.UnixMilli(1700000005000) })
	var out recorder
	c := upd("B2", 0, 0, 6)
	c.Source = src(0)
	if err := e.Row(t.Context(), c, &out); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Commit(t.Context(), canal.Position{File: "binlog.000004", Pos: 900}, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.msgs) != 2 || !strings.Contains(string(out.msgs[1].Value), `"before":{"sku_id":"B2","sellable":0,"value":false},"after":{"sku_id":"B2","sellable":6,"value":true}`) ||
		!strings.HasSuffix(string(out.msgs[1].Value), `"ts_ms":1700000005000}`) {
		t.Errorf("after the resync: %d messages, the last %s", len(out.msgs), out.msgs[len(out.msgs)-1].Value)
	}
}

func TestResyncFormatsAndOneRule(t *testing.T) {
	for _, tc := range []struct{ format, want string }{
		{"canal", `{"data":[{"sku_id":"A1","sellable":"3","value":"true"}],"database":"inventory","table":"sellable_shard","type":"INSERT","old":null,"es":1700000000999,"ts":1700000000999,"isDdl":false,"pkNames":["sku_id"]}`},
		{"maxwell", `{"database":"inventory","table":"sellable_shard","type":"insert","ts":1700000000,"xid":777,"data":{"sku_id":"A1","sellable":3,"value":true}}`},
	} {
		e := newTestEngine(mustParse(t, issueRules+flagRule("flags", tc.format)))
		txn(t, e, ins("A1", 0, 3))
		got, counts := resyncAll(t, e, "flag")
		if len(got) != 1 || got[0] != `flags {"sku_id":"A1"} `+tc.want || len(counts) != 1 || counts[0].Rule != "flag" {
			t.Errorf("%s:\n got %v %+v\nwant %s", tc.format, got, counts, tc.want)
		}
	}
}

func TestResyncRefusesWrongNamesAndSendsNothing(t *testing.T) {
	withReads := strings.Replace(spineRules, ", ops: [insert, update, delete]", "", 1) // a re-read publishes reads
	e := newTestEngine(mustParse(t, issueRules+withReads[len("\nrules:\n"):]))
	txn(t, e, ins("A1", 0, 3))
	var out recorder
	_, err := e.Resync(t.Context(), ResyncRequest{Rules: []string{"product-stock", "stock-rows", "nope"}, Keys: []json.RawMessage{[]byte(`{"sku_id":"A1"}`)}},
		canal.Source{File: "binlog.000004", Pos: 4}, &out)
	if err == nil || len(out.msgs) != 0 {
		t.Fatalf("want an error and no message, got %v and %d messages", err, len(out.msgs))
	}
	for _, part := range []string{`rule "stock-rows" emits rows: keys pick groups`, `no rule is named "nope" (the rules: product-stock, search-in-stock, stock-rows)`} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q lacks %q", err, part)
		}
	}
	// Without keys a row rule is the caller's to re-read; the state of the others is sent.
	rowRules, err := e.set.CheckResync(ResyncRequest{Rules: []string{"stock-rows", "product-stock"}})
	if err != nil || fmt.Sprint(rowRules) != "[stock-rows]" {
		t.Errorf("row rules to re-read: %v, %v", rowRules, err)
	}
	got, _ := resyncAll(t, e, "stock-rows", "product-stock")
	if len(got) != 1 || !strings.HasPrefix(got[0], "product.stock ") {
		t.Errorf("a resync of a row rule and an aggregate: %v", got)
	}
	if _, err := mustParse(t, spineRules).CheckResync(ResyncRequest{}); err == nil || !strings.Contains(err.Error(), "no aggregate or transition rule") {
		t.Errorf("a set of row rules: %v", err)
	}
	noReads := mustParse(t, `
rules:
  - name: changes-only
    match: {table: "inventory.sellable_shard", ops: [insert, update, delete]}
    topic: changes
`)
	if _, err := noReads.CheckResync(ResyncRequest{Rules: []string{"changes-only"}}); err == nil ||
		!strings.Contains(err.Error(), `rule "changes-only" leaves read out of its match.ops`) {
		t.Errorf("a re-read for a rule that publishes no reads: %v", err)
	}
}

// A re-read row goes to the named row rules alone and folds into no aggregate; the
// stream's changes then go to every rule as before.
func TestRereadThenStream(t *testing.T) {
	e := newTestEngine(mustParse(t, issueRules+`
  - name: shard-rows
    match: {table: "inventory.sellable_shard"}
    topic: rows
  - name: other-rows
    match: {table: "inventory.sellable_shard"}
    topic: other
`))
	e.MarkSeeded(e.Unseeded(), canal.Position{})
	var out recorder
	read := &canal.RowChange{Op: canal.OpRead, Table: shardTable, After: shardRow("A1", 0, 3),
		Source: canal.Source{File: "binlog.000004", Pos: 500, Snapshot: true}}
	if err := e.Reread(t.Context(), read, []string{"shard-rows"}, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.msgs) != 1 || out.msgs[0].Topic != "rows" || !strings.HasPrefix(string(out.msgs[0].Value), `{"op":"r"`) {
		t.Fatalf("the re-read: %d messages, %v", len(out.msgs), out.msgs)
	}
	if _, err := e.Commit(t.Context(), canal.Position{}, &out); err != nil || len(out.msgs) != 1 {
		t.Fatalf("a re-read touched the aggregates: %v, %d messages", err, len(out.msgs))
	}
	out = recorder{}
	c := ins("A1", 1, 2)
	c.Source = canal.Source{File: "binlog.000004", Pos: 600}
	if err := e.Row(t.Context(), c, &out); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Commit(t.Context(), canal.Position{File: "binlog.000004", Pos: 601}, &out); err != nil {
		t.Fatal(err)
	}
	var topics []string
	for _, m := range out.msgs {
		topics = append(topics, m.Topic)
	}
	if got := fmt.Sprint(topics); got != "[rows other product.stock search.availability]" {
		t.Errorf("a change after the re-read: %s", got)
	}
}

// State saved before groups remembered their table resyncs with empty table names (a
// group's topic cannot name the table).
func TestResyncOfStateWithoutTableNames(t *testing.T) {
	old := []StateEntry{{Rule: "flag", Key: seedKey}, {Rule: "flag", Key: `{"sku_id":"A1"}`, Value: []byte(`{"count":1,"sums":{"sellable":3},"value":true}`)}}
	set := mustParse(t, "rules:\n"+flagRule("flags", "debezium"))
	old[0].Value = []byte(set.Rule("flag").signature)
	e := newTestEngine(set)
	if err := e.Restore(old); err != nil {
		t.Fatal(err)
	}
	var out recorder
	if _, err := e.Resync(t.Context(), ResyncRequest{}, canal.Source{ServerID: 7, File: "binlog.000004", Pos: 777}, &out); err != nil {
		t.Fatal(err)
	}
	const want = `"after":{"sku_id":"A1","sellable":3,"value":true},"source":{"server_id":7,"gtid":null,"file":"binlog.000004","pos":777,"db":"","table":"",`
	if len(out.msgs) != 1 || !strings.Contains(string(out.msgs[0].Value), want) {
		t.Errorf("got %v, want one message with %s", out.msgs, want)
	}
}

// Keys pick groups, in the order asked, whatever the spacing or field order; a key with
// no group is reported missing; a key that does not fit the rule's group_by is refused.
func TestResyncOfSomeKeys(t *testing.T) {
	e := newTestEngine(mustParse(t, issueRules+`
  - name: per-shard
    match: {table: "inventory.sellable_shard"}
    emit: aggregate
    group_by: [shard, sku_id]
    sum: {sellable: qty}
    topic: per.shard
`))
	txn(t, e, ins("A1", 0, 2), ins("B2", 1, 4), ins(`q"<`, 0, 1))
	got, counts := resyncOf(t, e, ResyncRequest{Rules: []string{"search-in-stock"},
		Keys: []json.RawMessage{[]byte(`{ "sku_id" : "B2" }`), []byte(`{"sku_id":"Z9"}`), []byte(`{"sku_id":"q\"<"}`), []byte(`{"sku_id":"B2"}`)}})
	if len(got) != 2 || !strings.HasPrefix(got[0], `search.availability {"sku_id":"B2"} `) || !strings.HasPrefix(got[1], `search.availability {"sku_id":"q\"<"} `) {
		t.Errorf("messages %v", got)
	}
	if c, _ := json.Marshal(counts); string(c) != `[{"rule":"search-in-stock","messages":2,"missing":[{"sku_id":"Z9"}]}]` {
		t.Errorf("counts %s", c)
	}
	got, _ = resyncOf(t, e, ResyncRequest{Rules: []string{"per-shard"}, Keys: []json.RawMessage{[]byte(`{"sku_id":"B2","shard":1}`)}})
	if len(got) != 1 || !strings.HasPrefix(got[0], `per.shard {"shard":1,"sku_id":"B2"} `) {
		t.Errorf("a two-column key: %v", got)
	}

	var out recorder
	_, err := e.Resync(t.Context(), ResyncRequest{Keys: []json.RawMessage{[]byte(`{"sku_id":"A1"}`), []byte(`["A1"]`), []byte(`{"sku_id":{"a":1}}`)}}, canal.Source{}, &out)
	if err == nil || len(out.msgs) != 0 {
		t.Fatalf("bad keys: %v, %d messages", err, len(out.msgs))
	}
	for _, part := range []string{`rule "per-shard": key {"sku_id":"A1"}: the rule groups by [shard sku_id]`, `rule "product-stock": key ["A1"]: not a JSON object`, `sku_id: {"a":1} is not a column value`} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q lacks %q", err, part)
		}
	}
}
