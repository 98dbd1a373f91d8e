package pipeline_test

// Take-backs of a changed or renamed aggregate/transition rule across a restart, seen as
// a search index sees them: one in-stock flag per SKU, kept from a transition topic's
// messages as docs/topics.md says.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/pipeline"
)

// freezableCheckpoints saves through to the test's table until frozen; then it answers
// every save without saving, so the checkpoint stays where a kill -9 would find it. It
// remembers the state keys it saved, as "rule key".
type freezableCheckpoints struct {
	pipeline.Checkpointer
	frozen atomic.Bool
	mu     sync.Mutex
	saved  map[string]bool
}

func (f *freezableCheckpoints) Save(ctx context.Context, pos canal.Position, state []canal.StateRow) error {
	if f.frozen.Load() {
		return nil
	}
	if err := f.Checkpointer.Save(ctx, pos, state); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, row := range state {
		f.saved[row.Scope+" "+row.Key] = row.Value != nil
	}
	return nil
}

// holds reports whether the last save of the rule's group key left it saved.
func (f *freezableCheckpoints) holds(rule, key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.saved[rule+" "+key]
}

// withFreezableCheckpoints is a tweak that keeps the checkpoint in the test's table, as
// the default store does, through f.
func (e *env) withFreezableCheckpoints(f *freezableCheckpoints) func(*pipeline.Options) {
	return func(o *pipeline.Options) {
		store, err := canal.NewCheckpointStore(context.Background(), e.mysql.Open(e.t, e.db), o.CheckpointTable, o.CheckpointName)
		if err != nil {
			e.t.Fatal(err)
		}
		f.Checkpointer = store
		if f.saved == nil {
			f.saved = map[string]bool{}
		}
		o.Checkpoints = f
	}
}

// searchFlags applies a transition topic as a search index does: per key, after.value
// of each message in order (repeats apply again; the last one is the latest value). It
// returns the flags and the messages, "key op value", in order.
func searchFlags(t *testing.T, e *env, topic string) (map[string]bool, []string) {
	t.Helper()
	flags := map[string]bool{}
	var log []string
	for _, rec := range testutil.Consume(t, e.broker, []string{topic}, 0, 20*time.Second, testutil.ConsumeOptions{ReadCommitted: e.exactlyOnce}) {
		var m struct {
			Op    string `json:"op"`
			After struct {
				Value *bool `json:"value"`
			} `json:"after"`
		}
		if err := json.Unmarshal([]byte(rec.Value), &m); err != nil {
			t.Fatal(err)
		}
		v := m.After.Value != nil && *m.After.Value
		flags[rec.Key] = v
		log = append(log, fmt.Sprintf("%s %s %v", rec.Key, m.Op, v))
	}
	return flags, log
}

// awaitFlag waits until the search index of topic holds want for key, and fails the test
// with the messages it read when it does not within 15 s.
func awaitFlag(t *testing.T, e *env, topic, key string, want bool, why string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		flags, log := searchFlags(t, e, topic)
		if flags[key] == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the search index holds %s in stock = %v, want %v: %s\nmessages:\n%s", key, flags[key], want, why, strings.Join(log, "\n"))
		}
	}
}

const searchRuleYAML = `
rules:
  - name: search-in-stock
    match: {table: "DB.sellable_shard"}
    emit: transition
    group_by: [sku_id]
    sum: {sellable: qty}
    value: "VALUE"
    topic: TOPIC.search
`

// searchRule is searchRuleYAML with its value, and its name when one is given.
func searchRule(value string, name ...string) string {
	yaml := strings.ReplaceAll(searchRuleYAML, "VALUE", value)
	if len(name) > 0 {
		yaml = strings.ReplaceAll(yaml, "name: search-in-stock", "name: "+name[0])
	}
	return yaml
}

// TestChangedTransitionAfterAKillTakesBackWhatWasPublishedSinceTheCheckpoint: at least
// once, the old definition published X in stock after its last checkpoint (which holds
// X with no stock), and the daemon was killed (-9) before the next save. It restarts with
// the threshold raised (sellable > 5) while X holds 3, so X is not in stock under the new
// rule; the restart's rule skips the change it already published (its seed holds it), and
// the checkpoint's X was false too: the take-back must still tell the search index false
// (topics.md: a changed rule takes back what it no longer publishes).
func TestChangedTransitionAfterAKillTakesBackWhatWasPublishedSinceTheCheckpoint(t *testing.T) {
	e := newEnv(t)
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE sellable_shard (sku_id VARCHAR(8), shard INT, qty BIGINT, PRIMARY KEY (sku_id, shard))",
		"INSERT INTO sellable_shard VALUES ('X', 0, 0), ('Y', 0, 10)")
	id := testutil.ServerID()
	var cp freezableCheckpoints
	r := e.start(e.rules(searchRule("sellable > 0")), id, e.withFreezableCheckpoints(&cp))
	testutil.Eventually(t, 10*time.Second, "a checkpoint holding X with no stock", func() bool {
		return cp.holds("search-in-stock", `{"sku_id":"X"}`)
	})
	cp.frozen.Store(true)
	testutil.Exec(t, db, "UPDATE sellable_shard SET qty = 3 WHERE sku_id = 'X'")
	awaitFlag(t, e, e.topic+".search", `{"sku_id":"X"}`, true, "X holds 3, and the rule is sellable > 0")
	r.stop(t) // its last save is lost, as at a kill -9 just after the message went out

	cp.frozen.Store(false)
	e.start(e.rules(searchRule("sellable > 5")), id, e.withFreezableCheckpoints(&cp))
	awaitFlag(t, e, e.topic+".search", `{"sku_id":"X"}`, false, "X holds 3, and the changed rule is sellable > 5")
}

// TestRuleRenamedAtARestartPublishesTheChangesMadeWhileDown: the search rule is renamed
// in the file of a deploy (a clean stop, the file changed, a start), on the same topic,
// with the same definition, and X sold out while the daemon was down. The renamed rule
// takes over the old name's groups, so its seed's take-back tells the search index X is
// out of stock, in both delivery modes.
func TestRuleRenamedAtARestartPublishesTheChangesMadeWhileDown(t *testing.T) {
	inBothDeliveryModes(t, func(t *testing.T, e *env) {
		db := e.mysql.Open(t, e.db)
		testutil.Exec(t, db, "CREATE TABLE sellable_shard (sku_id VARCHAR(8), shard INT, qty BIGINT, PRIMARY KEY (sku_id, shard))",
			"INSERT INTO sellable_shard VALUES ('X', 0, 3), ('Y', 0, 10)")
		id := testutil.ServerID()
		r := e.start(e.rules(searchRule("sellable > 0")), id)
		awaitFlag(t, e, e.topic+".search", `{"sku_id":"X"}`, true, "X holds 3, and the rule is sellable > 0")
		r.stop(t) // SIGTERM: flushed and checkpointed
		testutil.Exec(t, db, "UPDATE sellable_shard SET qty = 0 WHERE sku_id = 'X'")
		e.start(e.rules(searchRule("sellable > 0", "search-availability")), id)
		awaitFlag(t, e, e.topic+".search", `{"sku_id":"X"}`, false, "X sold out while the daemon was down")
	})
}
