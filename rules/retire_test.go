package rules

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stocksync/stocksync/canal"
)

// seedTxn seeds the engine's unseeded rules with reads of rows, as the pipeline's seeding
// snapshot does, and commits the next transaction (one without changes of theirs),
// returning its messages and state entries.
func seedTxn(t *testing.T, e *Engine, rows ...[]any) ([]string, []StateEntry) {
	t.Helper()
	names := e.Unseeded()
	for i, row := range rows {
		read := &canal.RowChange{Op: canal.OpRead, Table: shardTable, After: row,
			Source: canal.Source{Snapshot: true, File: "binlog.000003", Pos: 9000, TsMs: 1700000001000, Row: i}}
		if err := e.Seed(read, names); err != nil {
			t.Fatal(err)
		}
	}
	e.MarkSeeded(names, canal.Position{File: "binlog.000003", Pos: 9000})
	return txn(t, e)
}

// deletedKeys are the keys of rule whose entries are deleted.
func deletedKeys(entries []StateEntry, rule string) []string {
	var out []string
	for _, ent := range entries {
		if ent.Rule == rule && ent.Value == nil && ent.Key != seedKey {
			out = append(out, ent.Key)
		}
	}
	return out
}

// TestChangedRuleRetractsWhatItNoLongerPublishes: a stateful rule whose definition
// changes (here its tables) is seeded again, and each group its old definition published
// that the seed does not publish is retracted before the seed's groups, in key order, as a
// group whose rows are all gone is published: the aggregate's B1 and C1 (which had a row,
// of qty 0) a d with their last sums; the transition's B1, and D1 whose rows the seed has
// but with no stock, a false with their last sums before (C1 was false already: nothing
// at a reload). The old entries are deleted by the same Commit, and the groups the seed
// has saved after that. A restart with the changed file publishes the same, and C1's false
// again too: its saved false is the checkpoint's, and the old definition may have
// published it in stock after that. A removed rule's groups go without a message.
func TestChangedRuleRetractsWhatItNoLongerPublishes(t *testing.T) {
	before := mustParse(t, strings.ReplaceAll(issueRules, `"inventory.sellable_shard"`, `"inventory.sellable_*"`))
	changed := mustParse(t, issueRules)
	old := newTestEngine(before)
	var saved []StateEntry
	_, ents := seedTxn(t, old, shardRow("A1", 0, 3), shardRow("B1", 0, 2), shardRow("C1", 0, 0), shardRow("D1", 0, 4))
	saved = append(saved, ents...)

	want := []string{
		`product.stock {"sku_id":"B1"} {"op":"d","before":{"sku_id":"B1","sellable":2},"after":null}`,
		`product.stock {"sku_id":"C1"} {"op":"d","before":{"sku_id":"C1","sellable":0},"after":null}`,
		`product.stock {"sku_id":"A1"} {"op":"c","before":null,"after":{"sku_id":"A1","sellable":5}}`,
		`product.stock {"sku_id":"D1"} {"op":"c","before":null,"after":{"sku_id":"D1","sellable":0}}`,
		`search.availability {"sku_id":"B1"} {"op":"u","before":{"sku_id":"B1","sellable":2,"value":true},"after":{"sku_id":"B1","sellable":0,"value":false}}`,
		`search.availability {"sku_id":"D1"} {"op":"u","before":{"sku_id":"D1","sellable":4,"value":true},"after":{"sku_id":"D1","sellable":0,"value":false}}`,
		`search.availability {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":0,"value":false},"after":{"sku_id":"A1","sellable":5,"value":true}}`,
	}
	check := func(how string, got []string, entries []StateEntry, want []string) {
		t.Helper()
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: published\n%s\nwant\n%s", how, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for _, rule := range []string{"product-stock", "search-in-stock"} {
			if d := deletedKeys(entries, rule); !slices.Equal(d, []string{`{"sku_id":"A1"}`, `{"sku_id":"B1"}`, `{"sku_id":"C1"}`, `{"sku_id":"D1"}`}) {
				t.Errorf("%s: %s deleted %v, want every old group", how, rule, d)
			}
		}
		// A1 (and D1, which has rows) saved after their deletion.
		last := map[string][]byte{}
		for _, ent := range entries {
			last[ent.Rule+" "+ent.Key] = ent.Value
		}
		if last[`product-stock {"sku_id":"A1"}`] == nil || last[`product-stock {"sku_id":"B1"}`] != nil || last[`search-in-stock {"sku_id":"D1"}`] == nil {
			t.Errorf("%s: the last entries %q: want A1 and D1 saved, B1 deleted", how, last)
		}
	}

	// A reload: the seed comes before the next Commit.
	old.Install(changed)
	if _, entries := txn(t, old); len(deletedKeys(entries, "product-stock")) != 0 {
		t.Fatalf("a Commit before the seed deleted the old groups %v: a crash then would lose their retraction", deletedKeys(entries, "product-stock"))
	}
	got, entries := seedTxn(t, old, shardRow("A1", 0, 5), shardRow("D1", 0, 0))
	check("reload", got, entries, want)
	if again, _ := txn(t, old, ins("E1", 0, 1)); len(again) != 2 {
		t.Errorf("the next transaction published %v, want only E1's two messages", again)
	}

	// A restart with the changed file, from the checkpoint saved before it.
	restarted := newTestEngine(changed)
	if err := restarted.Restore(saved); err != nil {
		t.Fatal(err)
	}
	got, entries = seedTxn(t, restarted, shardRow("A1", 0, 5), shardRow("D1", 0, 0))
	fromCheckpoint := slices.Insert(slices.Clone(want), 5,
		`search.availability {"sku_id":"C1"} {"op":"u","before":{"sku_id":"C1","sellable":0,"value":false},"after":{"sku_id":"C1","sellable":0,"value":false}}`)
	check("restart", got, entries, fromCheckpoint)

	// The rule removed: its groups go, with no message.
	removed := newTestEngine(mustParse(t, "rules:\n  - name: rows\n    match: {table: \"inventory.*\"}\n    topic: rows\n"))
	if err := removed.Restore(saved); err != nil {
		t.Fatal(err)
	}
	var out recorder
	entries, err := removed.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 9999}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.msgs) != 0 || len(deletedKeys(entries, "product-stock")) != 4 {
		t.Errorf("a removed rule published %d messages and deleted %v; want none, and its 4 groups", len(out.msgs), deletedKeys(entries, "product-stock"))
	}
}

// TestRetractionUnderAnotherGroupBy: a group_by changed makes every old key one the rule
// no longer publishes: each is retracted with its old key and image, on the topic it was
// published on (saved with it), whatever the rule's topic is now. State saved before
// groups kept their topic is retracted on the rule's topic filled in from the key's
// columns; where the topic names a column the old key lacks, it cannot be placed, and is
// counted as the rule's failure instead.
func TestRetractionUnderAnotherGroupBy(t *testing.T) {
	old := newTestEngine(mustParse(t, issueRules))
	_, saved := seedTxn(t, old, shardRow("A1", 0, 3), shardRow("B1", 1, 2))
	byShard := strings.ReplaceAll(issueRules, "group_by: [sku_id]", "group_by: [sku_id, shard]")

	e := newTestEngine(mustParse(t, byShard))
	if err := e.Restore(saved); err != nil {
		t.Fatal(err)
	}
	got, _ := seedTxn(t, e, shardRow("A1", 0, 3))
	want := []string{
		`product.stock {"sku_id":"A1"} {"op":"d","before":{"sku_id":"A1","sellable":3},"after":null}`,
		`product.stock {"sku_id":"B1"} {"op":"d","before":{"sku_id":"B1","sellable":2},"after":null}`,
		`product.stock {"sku_id":"A1","shard":0} {"op":"c","before":null,"after":{"sku_id":"A1","shard":0,"sellable":3}}`,
		`search.availability {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":3,"value":true},"after":{"sku_id":"A1","sellable":0,"value":false}}`,
		`search.availability {"sku_id":"B1"} {"op":"u","before":{"sku_id":"B1","sellable":2,"value":true},"after":{"sku_id":"B1","sellable":0,"value":false}}`,
		`search.availability {"sku_id":"A1","shard":0} {"op":"u","before":{"sku_id":"A1","shard":0,"sellable":0,"value":false},"after":{"sku_id":"A1","shard":0,"sellable":3,"value":true}}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("published\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	byShardTopic := newTestEngine(mustParse(t, strings.ReplaceAll(byShard, "topic: product.stock", `topic: "stock.{shard}"`)))
	if err := byShardTopic.Restore(saved); err != nil {
		t.Fatal(err)
	}
	got, _ = seedTxn(t, byShardTopic, shardRow("A1", 0, 3))
	if len(got) != 6 || got[0] != want[0] || got[1] != want[1] || !strings.HasPrefix(got[2], `stock.0 {"sku_id":"A1","shard":0} {"op":"c"`) {
		t.Errorf("with {shard} in the topic: %v, want A1 and B1 taken back on product.stock, where they were, then the seed's A1 on stock.0", got)
	}

	// Saved before groups kept their topic.
	var legacy []StateEntry
	for _, ent := range saved {
		if v, _, ok := bytes.Cut(ent.Value, []byte(`,"topic":`)); ok {
			ent.Value = append(bytes.Clone(v), '}')
		}
		legacy = append(legacy, ent)
	}
	byShardTopic = newTestEngine(mustParse(t, strings.ReplaceAll(byShard, "topic: product.stock", `topic: "stock.{shard}"`)))
	if err := byShardTopic.Restore(legacy); err != nil {
		t.Fatal(err)
	}
	got, _ = seedTxn(t, byShardTopic, shardRow("A1", 0, 3))
	if len(got) != 4 || !strings.HasPrefix(got[0], `stock.0 {"sku_id":"A1","shard":0} {"op":"c"`) {
		t.Errorf("with {shard} in the topic, state without topics: %v, want the seed's A1 on stock.0 and no retraction of product-stock", got)
	}
	if n := byShardTopic.EvalErrorsByRule()["product-stock"]; n != 2 {
		t.Errorf("%d failures of product-stock counted, want one per old group that cannot be placed", n)
	}
}

// TestReseedOfAGroupSavedWithoutItsTable: a group restored from state saved before groups
// named their table, which a new snapshot (Reseed) does not fill again, is published as
// deleted with empty db and table, as a resync names it, instead of failing.
func TestReseedOfAGroupSavedWithoutItsTable(t *testing.T) {
	set := mustParse(t, issueRules)
	e := newTestEngine(set)
	saved := []StateEntry{{Rule: "product-stock", Key: `{"sku_id":"A1"}`, Value: []byte(`{"count":1,"sums":{"sellable":5}}`)}}
	for _, r := range set.Rules() {
		saved = append(saved, StateEntry{Rule: r.Name(), Key: seedKey, Value: []byte(r.Signature())})
	}
	if err := e.Restore(saved); err != nil {
		t.Fatal(err)
	}
	e.Reseed()
	var out recorder
	if _, err := e.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 100}, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.msgs) != 1 || !strings.Contains(string(out.msgs[0].Value), `"op":"d","before":{"sku_id":"A1","sellable":5}`) ||
		!strings.Contains(string(out.msgs[0].Value), `"db":"","table":""`) {
		t.Errorf("published %v, want A1 deleted, naming no table", out.msgs)
	}
}

// TestRetractionOfAnotherKind: a rule changed from aggregate to transition (or back),
// under the same name, takes back every group its old definition published in the old
// kind's terms, on the topic and under the key the old one published it (an aggregate
// group a d with its last sums; a transition group the old value's empty value, where it
// had another), before the new kind's seed, by a reload as by a restart with the changed
// file; every old entry is deleted by the same Commit. With the topic unchanged, and with
// group_by changed too, the old kind's groups are taken back all the same.
func TestRetractionOfAnotherKind(t *testing.T) {
	const aggregate = `
rules:
  - name: flip
    match: {table: "inventory.sellable_shard"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: product.stock
`
	const transition = `
rules:
  - name: flip
    match: {table: "inventory.sellable_shard"}
    emit: transition
    group_by: [sku_id]
    sum: {sellable: qty}
    value: "sellable > 0"
    topic: search.availability
`
	sameTopic := func(s string) string {
		s = strings.ReplaceAll(s, "topic: product.stock", "topic: stock")
		return strings.ReplaceAll(s, "topic: search.availability", "topic: stock")
	}
	byShard := func(s string) string { return strings.ReplaceAll(s, "group_by: [sku_id]", "group_by: [sku_id, shard]") }
	oldRows := [][]any{shardRow("A1", 0, 3), shardRow("B1", 0, 0), shardRow("C1", 0, 2)}
	for _, tc := range []struct {
		name, from, to string
		want           []string
	}{
		{"aggregate to transition", aggregate, transition, []string{
			`product.stock {"sku_id":"A1"} {"op":"d","before":{"sku_id":"A1","sellable":3},"after":null}`,
			`product.stock {"sku_id":"B1"} {"op":"d","before":{"sku_id":"B1","sellable":0},"after":null}`,
			`product.stock {"sku_id":"C1"} {"op":"d","before":{"sku_id":"C1","sellable":2},"after":null}`,
			`search.availability {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":0,"value":false},"after":{"sku_id":"A1","sellable":5,"value":true}}`,
		}},
		{"transition to aggregate", transition, aggregate, []string{
			// B1 (false) was saved as nothing: the consumers hold the empty value.
			`search.availability {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":3,"value":true},"after":{"sku_id":"A1","sellable":0,"value":false}}`,
			`search.availability {"sku_id":"C1"} {"op":"u","before":{"sku_id":"C1","sellable":2,"value":true},"after":{"sku_id":"C1","sellable":0,"value":false}}`,
			`product.stock {"sku_id":"A1"} {"op":"c","before":null,"after":{"sku_id":"A1","sellable":5}}`,
		}},
		{"aggregate to transition on the same topic", sameTopic(aggregate), sameTopic(transition), []string{
			`stock {"sku_id":"A1"} {"op":"d","before":{"sku_id":"A1","sellable":3},"after":null}`,
			`stock {"sku_id":"B1"} {"op":"d","before":{"sku_id":"B1","sellable":0},"after":null}`,
			`stock {"sku_id":"C1"} {"op":"d","before":{"sku_id":"C1","sellable":2},"after":null}`,
			`stock {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":0,"value":false},"after":{"sku_id":"A1","sellable":5,"value":true}}`,
		}},
		{"transition to aggregate on the same topic, by shard", sameTopic(transition), byShard(sameTopic(aggregate)), []string{
			`stock {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":3,"value":true},"after":{"sku_id":"A1","sellable":0,"value":false}}`,
			`stock {"sku_id":"C1"} {"op":"u","before":{"sku_id":"C1","sellable":2,"value":true},"after":{"sku_id":"C1","sellable":0,"value":false}}`,
			`stock {"sku_id":"A1","shard":0} {"op":"c","before":null,"after":{"sku_id":"A1","shard":0,"sellable":5}}`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, to := mustParse(t, tc.from), mustParse(t, tc.to)
			check := func(how string, got []string, entries []StateEntry) {
				t.Helper()
				if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
					t.Errorf("%s: published\n%s\nwant\n%s", how, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
				}
				deleted := deletedKeys(entries, "flip")
				for _, k := range []string{`{"sku_id":"A1"}`, `{"sku_id":"C1"}`} {
					if !slices.Contains(deleted, k) {
						t.Errorf("%s: deleted %v, want every old group's entry", how, deleted)
					}
				}
			}
			old := newTestEngine(from)
			_, saved := seedTxn(t, old, oldRows...)

			old.Install(to)
			got, entries := seedTxn(t, old, shardRow("A1", 0, 5))
			check("reload", got, entries)

			restarted := newTestEngine(to)
			if err := restarted.Restore(saved); err != nil {
				t.Fatal(err)
			}
			got, entries = seedTxn(t, restarted, shardRow("A1", 0, 5))
			check("restart", got, entries)
		})
	}
}

// searchRule is a transition rule named NAME on TOPIC, in stock above THRESHOLD.
const searchRule = `
  - name: NAME
    match: {table: "inventory.sellable_shard"}
    emit: transition
    group_by: [sku_id]
    sum: {sellable: qty}
    value: "sellable > THRESHOLD"
    topic: TOPIC
`

// searchRules is a set of searchRule, each given as name, topic and threshold.
func searchRules(t *testing.T, rules ...[3]string) *Set {
	t.Helper()
	yaml := "rules:"
	for _, r := range rules {
		yaml += strings.NewReplacer("NAME", r[0], "TOPIC", r[1], "THRESHOLD", r[2]).Replace(searchRule)
	}
	return mustParse(t, yaml)
}

// TestRuleChangedAtARestartTakesBackEvenTheValueSavedAtTheCheckpoint: a checkpoint holds
// each group as it was there, and at least once the old definition may have published a
// later value after it (X1 in stock, its save lost to a kill -9; the restart's changed
// rule skips that change, which its seed holds). So a restart with a changed transition
// rule takes back every saved group its seed does not publish to the new value, even one
// whose saved value is that value (X1: saved false, false under the new threshold too):
// a repeat, rather than a search index that keeps X1 in stock. A reload knows what it
// published, and repeats nothing.
func TestRuleChangedAtARestartTakesBackEvenTheValueSavedAtTheCheckpoint(t *testing.T) {
	before := searchRules(t, [3]string{"search-in-stock", "search.availability", "0"})
	raised := searchRules(t, [3]string{"search-in-stock", "search.availability", "5"})
	old := newTestEngine(before)
	_, saved := seedTxn(t, old, shardRow("X1", 0, 0), shardRow("Y1", 0, 10))

	restarted := newTestEngine(raised)
	if err := restarted.Restore(saved); err != nil {
		t.Fatal(err)
	}
	got, _ := seedTxn(t, restarted, shardRow("X1", 0, 3), shardRow("Y1", 0, 10))
	want := []string{
		`search.availability {"sku_id":"X1"} {"op":"u","before":{"sku_id":"X1","sellable":0,"value":false},"after":{"sku_id":"X1","sellable":3,"value":false}}`,
		`search.availability {"sku_id":"Y1"} {"op":"u","before":{"sku_id":"Y1","sellable":0,"value":false},"after":{"sku_id":"Y1","sellable":10,"value":true}}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("restart: published\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	old.Install(raised)
	got, _ = seedTxn(t, old, shardRow("X1", 0, 3), shardRow("Y1", 0, 10))
	if strings.Join(got, "\n") != want[1] {
		t.Errorf("reload: published\n%s\nwant only\n%s", strings.Join(got, "\n"), want[1])
	}
}

// TestRenamedRuleTakesBackWhatItsOldNamePublished: a stateful rule renamed (in the file
// of a restart, or by a reload), on the same topic and of the same kind, takes over the
// old name's groups: a change made meanwhile (B1 sold out, C1's row deleted, while the
// daemon was down) is published against what the consumers hold of the old name, as a
// changed rule's take-back is, and the old name's entries (groups and marker) are deleted
// by the same Commit. The takeover is logged, naming both rules.
func TestRenamedRuleTakesBackWhatItsOldNamePublished(t *testing.T) {
	rename := strings.NewReplacer("name: product-stock", "name: product-totals", "name: search-in-stock", "name: search-availability")
	renamed := mustParse(t, rename.Replace(issueRules))
	want := []string{
		`product.stock {"sku_id":"C1"} {"op":"d","before":{"sku_id":"C1","sellable":0},"after":null}`,
		`product.stock {"sku_id":"A1"} {"op":"c","before":null,"after":{"sku_id":"A1","sellable":3}}`,
		`product.stock {"sku_id":"B1"} {"op":"c","before":null,"after":{"sku_id":"B1","sellable":0}}`,
		`search.availability {"sku_id":"B1"} {"op":"u","before":{"sku_id":"B1","sellable":2,"value":true},"after":{"sku_id":"B1","sellable":0,"value":false}}`,
		// Restart only: C1's false as saved, which the old name may have changed since.
		`search.availability {"sku_id":"C1"} {"op":"u","before":{"sku_id":"C1","sellable":0,"value":false},"after":{"sku_id":"C1","sellable":0,"value":false}}`,
		`search.availability {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":0,"value":false},"after":{"sku_id":"A1","sellable":3,"value":true}}`,
	}
	check := func(how string, e *Engine, logs *observer.ObservedLogs, want []string) {
		t.Helper()
		got, entries := seedTxn(t, e, shardRow("A1", 0, 3), shardRow("B1", 0, 0))
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: published\n%s\nwant\n%s", how, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for _, rule := range []string{"product-stock", "search-in-stock"} {
			if d := deletedKeys(entries, rule); !slices.Equal(d, []string{`{"sku_id":"A1"}`, `{"sku_id":"B1"}`, `{"sku_id":"C1"}`}) {
				t.Errorf("%s: deleted %v of %s, want its every group", how, d, rule)
			}
			if !slices.ContainsFunc(entries, func(ent StateEntry) bool { return ent.Rule == rule && ent.Key == seedKey && ent.Value == nil }) {
				t.Errorf("%s: %s's seed marker not deleted", how, rule)
			}
		}
		taken := map[string]string{}
		for _, entry := range logs.FilterMessageSnippet("taken as renamed").All() {
			fields := entry.ContextMap()
			taken[fields["removed_rule"].(string)] = fields["rule"].(string)
		}
		if taken["product-stock"] != "product-totals" || taken["search-in-stock"] != "search-availability" {
			t.Errorf("%s: logged the takeovers %v", how, taken)
		}
		if again, _ := txn(t, e, ins("E1", 0, 1)); len(again) != 2 {
			t.Errorf("%s: the next transaction published %v, want only E1's two messages", how, again)
		}
	}
	old := newTestEngine(mustParse(t, issueRules))
	_, saved := seedTxn(t, old, shardRow("A1", 0, 3), shardRow("B1", 0, 2), shardRow("C1", 0, 0))

	restarted := newTestEngine(renamed)
	core, logs := observer.New(zapcore.InfoLevel)
	restarted.SetLogger(zap.New(core))
	if err := restarted.Restore(saved); err != nil {
		t.Fatal(err)
	}
	check("restart", restarted, logs, want)

	core, logs = observer.New(zapcore.InfoLevel)
	old.SetLogger(zap.New(core))
	old.Install(renamed)
	check("reload", old, logs, slices.Delete(slices.Clone(want), 4, 5))
}

// TestRemovedRuleTakenOverOnlyByOneNewRuleOfItsKindAndTopic: a removed rule's groups go
// to a new rule only when it is plain which: of the same kind, on the same topic, the
// only new rule that could, for no other removed rule. Two new rules that could (or two
// removed rules one could) are not guessed between: nothing is taken back, the removed
// rules' entries go, and a warning names the rules and the resync that republishes what
// they hold. A new rule on another topic, or of another kind, takes nothing, silently.
func TestRemovedRuleTakenOverOnlyByOneNewRuleOfItsKindAndTopic(t *testing.T) {
	for _, tc := range []struct {
		name     string
		from, to *Set
		warning  map[string]any // the warning's fields; nil: none
	}{
		{"two new rules could", searchRules(t, [3]string{"search-in-stock", "flags", "0"}),
			searchRules(t, [3]string{"search-a", "flags", "0"}, [3]string{"search-b", "flags", "5"}),
			map[string]any{"removed_rule": "search-in-stock", "rules": []any{"search-a", "search-b"}, "resync": "stocksync resync search-a search-b"}},
		{"one new rule could, for two removed ones", searchRules(t, [3]string{"search-a", "flags", "0"}, [3]string{"search-b", "flags", "5"}),
			searchRules(t, [3]string{"search-in-stock", "flags", "0"}),
			map[string]any{"rule": "search-in-stock", "removed_rules": []any{"search-a", "search-b"}, "resync": "stocksync resync search-in-stock"}},
		{"another topic", searchRules(t, [3]string{"search-in-stock", "flags", "0"}),
			searchRules(t, [3]string{"search-availability", "other.flags", "0"}), nil},
		{"another kind", searchRules(t, [3]string{"search-in-stock", "flags", "0"}),
			mustParse(t, strings.ReplaceAll(issueRules, "topic: search.availability", "topic: flags")), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := newTestEngine(tc.from)
			_, saved := seedTxn(t, old, shardRow("A1", 0, 3), shardRow("B1", 0, 7))
			removed := map[string]bool{}
			for _, r := range tc.from.rules {
				if tc.to.Rule(r.name) == nil {
					removed[r.name] = true
				}
			}
			check := func(how string, e *Engine, logs *observer.ObservedLogs) {
				t.Helper()
				got, entries := seedTxn(t, e, shardRow("A1", 0, 0), shardRow("B1", 0, 0))
				if slices.ContainsFunc(got, func(m string) bool { return strings.HasPrefix(m, "flags ") }) {
					t.Errorf("%s: took back on the removed rules' topic:\n%s", how, strings.Join(got, "\n"))
				}
				for name := range removed {
					if d := deletedKeys(entries, name); len(d) != 2 {
						t.Errorf("%s: deleted %v of %s, want its 2 groups", how, d, name)
					}
				}
				if n := logs.FilterMessageSnippet("taken as renamed").Len(); n != 0 {
					t.Errorf("%s: logged %d takeovers", how, n)
				}
				warnings := logs.FilterLevelExact(zapcore.WarnLevel).All()
				switch {
				case tc.warning == nil && len(warnings) != 0:
					t.Errorf("%s: warned %q", how, warnings[0].Message)
				case tc.warning != nil && (len(warnings) != 1 || !reflect.DeepEqual(warnings[0].ContextMap(), tc.warning)):
					t.Errorf("%s: warned %v, want one warning with %v", how, warnings, tc.warning)
				}
			}
			restarted := newTestEngine(tc.to)
			core, logs := observer.New(zapcore.InfoLevel)
			restarted.SetLogger(zap.New(core))
			if err := restarted.Restore(saved); err != nil {
				t.Fatal(err)
			}
			check("restart", restarted, logs)

			core, logs = observer.New(zapcore.InfoLevel)
			old.SetLogger(zap.New(core))
			old.Install(tc.to)
			check("reload", old, logs)
		})
	}
}

// TestRenamedRuleOfATopicTemplateTakesOverWhereItFillsTheSameTopics: a rule whose topic
// names a group_by column is the renamed one where its template, filled in from each old
// group's key, gives the topic the group was published on; another template is not.
func TestRenamedRuleOfATopicTemplateTakesOverWhereItFillsTheSameTopics(t *testing.T) {
	for _, tc := range []struct {
		topic string
		want  []string
	}{
		{"flags.{sku_id}", []string{
			`flags.B1 {"sku_id":"B1"} {"op":"u","before":{"sku_id":"B1","sellable":2,"value":true},"after":{"sku_id":"B1","sellable":0,"value":false}}`,
			`flags.A1 {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":0,"value":false},"after":{"sku_id":"A1","sellable":3,"value":true}}`,
		}},
		{"other.{sku_id}", []string{
			`other.A1 {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":0,"value":false},"after":{"sku_id":"A1","sellable":3,"value":true}}`,
		}},
	} {
		t.Run(tc.topic, func(t *testing.T) {
			old := newTestEngine(searchRules(t, [3]string{"search-in-stock", "flags.{sku_id}", "0"}))
			_, saved := seedTxn(t, old, shardRow("A1", 0, 3), shardRow("B1", 0, 2))
			restarted := newTestEngine(searchRules(t, [3]string{"search-availability", tc.topic, "0"}))
			if err := restarted.Restore(saved); err != nil {
				t.Fatal(err)
			}
			got, _ := seedTxn(t, restarted, shardRow("A1", 0, 3), shardRow("B1", 0, 0))
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("published\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
