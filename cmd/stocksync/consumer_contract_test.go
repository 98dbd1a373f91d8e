package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stocksync/stocksync/internal/testutil"
)

// The teams that consume stocksync, as they would write their side: the legacy product
// system keeps one stock number per SKU from product.stock, the search index an in-stock
// flag per SKU from search.availability. Both read with franz-go directly and know only
// docs/topics.md; the daemon runs the rules the store ships (examples/rules.yaml).

// TestConsumersOfTheShippedRulesEndEqualToTheDatabase drives orders through the inventory
// API (concurrent deductions over sharded SKUs, cancels, ships, expiring holds, restocks,
// reshards), kills the daemon with SIGKILL twice in the middle of it, deletes two SKUs'
// rows by hand while it is down, and rebuilds a second product system and search index
// from a resync asked while orders go on; at-least-once, and exactly-once with a third
// product system reading read_uncommitted. At the end every view equals the database: the
// SUM of a SKU's shard rows, and in stock when that sum is over 0. On the way each message
// is checked against what topics.md promises: key, headers, partition, ops, repeats,
// positions, the seed and the resync, and every value following on from the one before.
func TestConsumersOfTheShippedRulesEndEqualToTheDatabase(t *testing.T) {
	t.Run("at-least-once", func(t *testing.T) { consumersEndEqualToTheDatabase(t, false) })
	t.Run("exactly-once", func(t *testing.T) { consumersEndEqualToTheDatabase(t, true) })
}

// consumersEndEqualToTheDatabase runs it with the daemon in either delivery mode; the
// consumers read exactly-once topics read_committed, as topics.md says.
func consumersEndEqualToTheDatabase(t *testing.T, exactlyOnce bool) {
	broker := startDevBroker(t)
	s := newSetup(t, broker)
	useShippedRules(t, s)
	if exactlyOnce {
		s.editConfig(t, "kafka:\n", fmt.Sprintf("kafka:\n  exactly_once: true\n  transactional_id: %s\n  checkpoint_topic: %s.checkpoints\n", s.topic, s.topic))
	}
	s.editConfig(t, "rules: rules.yaml\n", fmt.Sprintf("rules: rules.yaml\ninventory:\n  database: %s\n  sweep_interval: 100ms\n", s.db))
	heartbeatTopic := s.topic + ".heartbeat"
	s.editConfig(t, "kafka:\n", fmt.Sprintf("kafka:\n  heartbeat_topic: %s\n  heartbeat_interval: 1s\n", heartbeatTopic))
	runStocksync(t, s, "migrate", "up")
	// Set before the daemon first starts: the first start seeds the sums from the table.
	runStocksync(t, s, "stock", "set", "seeded", "--sellable", "30", "--shards", "3")
	d := s.start(t)
	db := s.mysql.Open(t, s.db)

	kills := soakKills(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute+time.Duration(kills)*30*time.Second)
	defer cancel()
	product, search := newProductSystem(s.db), newSearchIndex(s.db)
	follow(t, ctx, broker, exactlyOnce, productTopic, nil, product.apply)
	follow(t, ctx, broker, exactlyOnce, searchTopic, nil, search.apply)
	// Exactly-once, a reader with the Java client's default read_uncommitted also sees
	// transactions aborted at a kill: at-least-once again, repeats dropped by source.
	uncommitted := newProductSystem(s.db)
	follow(t, ctx, broker, false, productTopic, nil, uncommitted.apply)

	api := inventoryClient{addr: s.httpAddr}
	// The daemon's router hands a path it would clean to the API as sent: a JSON 404.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp, err := noRedirect.Post("http://"+s.httpAddr+"/v1/skus//stock", "application/json", strings.NewReader(`{"sellable": 1}`)); err != nil {
		t.Errorf("POST /v1/skus//stock: %v", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"code":"not_found"`) {
			t.Errorf("POST /v1/skus//stock: %d %s; want the API's JSON 404", resp.StatusCode, body)
		}
	}
	hot := []string{"hot-0", "hot-1", "hot-2"}
	low := []string{"low-0", "low-1", "low-2", "low-3"}
	ordered := append(append([]string{"seeded"}, hot...), low...)
	for i, sku := range hot {
		api.mustCall(t, ctx, "POST", "/v1/skus/"+sku+"/stock", map[string]any{"sellable": 300 + i, "shards": 8})
	}
	for _, sku := range low {
		api.mustCall(t, ctx, "POST", "/v1/skus/"+sku+"/stock", map[string]any{"sellable": 4, "shards": 2})
	}
	api.mustCall(t, ctx, "POST", "/v1/skus/gone/stock", map[string]any{"sellable": 9, "shards": 3})
	api.mustCall(t, ctx, "POST", "/v1/skus/back/stock", map[string]any{"sellable": 5, "shards": 2})
	api.mustCall(t, ctx, "POST", "/v1/skus/empty/stock", map[string]any{"sellable": 0, "shards": 2})
	api.mustCall(t, ctx, "POST", "/v1/skus/quiet/stock", map[string]any{"sellable": 11, "shards": 4})
	all := append(slices.Clone(ordered), "gone", "back", "empty", "quiet")
	api.mustCall(t, ctx, "PUT", "/v1/warehouses/WH-1", map[string]any{"name": "central", "type": "central"})
	var levels []map[string]any
	for _, sku := range ordered {
		levels = append(levels, map[string]any{"sku": sku, "warehouse": "WH-1", "qty": 1000000})
	}
	api.mustCall(t, ctx, "POST", "/v1/physical", levels)

	// Shoppers: one- and two-item orders, then a cancel, a payment and a shipment, a
	// payment alone, or nothing; some holds expire within a second (the sweeper gives
	// them back). The merchant restocks and reshards meanwhile.
	var orders atomic.Int64 // placed, not short
	stopped := make(chan struct{})
	stop := sync.OnceFunc(func() { close(stopped) })
	var traffic sync.WaitGroup
	t.Cleanup(func() { stop(); traffic.Wait() }) // none reports after the test, even a failed one
	for w := range 4 {
		traffic.Add(1)
		go func() {
			defer traffic.Done()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			for n := 0; ; n++ {
				select {
				case <-stopped:
					return
				case <-ctx.Done():
					return
				default:
				}
				if shop(t, ctx, api, rng, fmt.Sprintf("w%d-%d", w, n), ordered) {
					orders.Add(1)
				}
			}
		}()
	}
	traffic.Add(1)
	go func() {
		defer traffic.Done()
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 99))
		for n := 0; ; n++ {
			select {
			case <-stopped:
				return
			case <-ctx.Done():
				return
			case <-time.After(30 * time.Millisecond): // a merchant's pace, not a flood
			}
			switch n % 3 {
			case 0:
				api.mustCall(t, ctx, "POST", "/v1/skus/"+hot[rng.IntN(len(hot))]+"/reshard", map[string]any{"shards": 1 + rng.IntN(8)})
			case 1:
				api.mustCall(t, ctx, "POST", "/v1/skus/"+ordered[rng.IntN(len(ordered))]+"/adjust",
					map[string]any{"delta": 1 + rng.IntN(20), "reason": "restock", "request_id": fmt.Sprintf("restock-%d", n)})
			case 2:
				api.mustCall(t, ctx, "POST", "/v1/skus/"+low[rng.IntN(len(low))]+"/stock", map[string]any{"sellable": rng.IntN(3)})
			}
		}
	}()
	awaitOrders := func(n int64) {
		t.Helper()
		testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%d orders", n), func() bool { return orders.Load() >= n })
	}

	// A reshard of a SKU nothing else touches: the sum stays, and is sent anyway.
	api.mustCall(t, ctx, "POST", "/v1/skus/quiet/reshard", map[string]any{"shards": 2})

	awaitOrders(40)
	// Killed before its first checkpoint, the daemon would start over and seed again (a
	// first start); this kill is meant for the middle of a stream.
	testutil.Eventually(t, 10*time.Second, "the first checkpoint", func() bool {
		return metric(t, s.httpAddr, "stocksync_checkpoint_saved_timestamp_seconds") > 0
	})
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
	// A DBA removes two SKUs' rows by hand while the daemon is down: the restart reads the
	// deletes from the binlog and the groups go; one is set again afterwards.
	testutil.Exec(t, db, "DELETE FROM sellable_shard WHERE sku_id IN ('gone', 'back')")
	d = s.start(t)
	api.mustCall(t, ctx, "POST", "/v1/skus/back/stock", map[string]any{"sellable": 6})
	awaitOrders(orders.Load() + 40)
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
	d = s.start(t)
	awaitOrders(orders.Load() + 20)
	// make soak: more stops at random moments of the orders, a deploy's SIGTERM now and then.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for round := range kills {
		awaitOrders(orders.Load() + 5 + int64(rng.IntN(60)))
		sig := syscall.SIGKILL
		if round%3 == 2 {
			sig = syscall.SIGTERM
		}
		d.cmd.Process.Signal(sig)
		<-d.done
		d = s.start(t)
	}

	// A product system and a search index that lost everything rebuild from a resync while
	// orders go on: they read from the topics' ends as they were before asking.
	from := endOffsets(t, ctx, broker, exactlyOnce, productTopic, searchTopic)
	rebuiltProduct, rebuiltSearch := newProductSystem(s.db), newSearchIndex(s.db)
	rebuiltProduct.rebuilt, rebuiltSearch.rebuilt = true, true
	follow(t, ctx, broker, exactlyOnce, productTopic, from[productTopic], rebuiltProduct.apply)
	follow(t, ctx, broker, exactlyOnce, searchTopic, from[searchTopic], rebuiltSearch.apply)
	out := runStocksync(t, s, "resync")
	// Every SKU but "gone", whose rows were deleted, has a group.
	if want := fmt.Sprintf("product-stock: %[1]d messages\nsearch-in-stock: %[1]d messages\n", len(all)-1); !strings.HasPrefix(out, want) {
		t.Errorf("stocksync resync printed %q, want it to start %q", out, want)
	}
	awaitOrders(orders.Load() + 40)
	stop()
	traffic.Wait()
	// Holds of a second still running expire now; the truth is taken after them.
	testutil.Eventually(t, 10*time.Second, "short holds to expire", func() bool {
		var n int
		err := db.QueryRow("SELECT COUNT(*) FROM hold WHERE status = 'held' AND expires_at < NOW(6) + INTERVAL 1 MINUTE").Scan(&n)
		return err == nil && n == 0
	})
	truth := sellableTruth(t, db, all)

	consumers := []struct {
		name string
		view func([]string) map[string]int64
		want map[string]int64
	}{
		{"product system", product.view, truth},
		{"rebuilt product system", rebuiltProduct.view, truth},
		{"search index", search.view, inStock(truth)},
		{"rebuilt search index", rebuiltSearch.view, inStock(truth)},
		{"product system reading read_uncommitted", uncommitted.view, truth},
	}
	for _, c := range consumers {
		testutil.Eventually(t, 30*time.Second, c.name+" to equal the database", func() bool {
			return fmt.Sprint(c.view(all)) == fmt.Sprint(c.want)
		})
	}
	cancel()
	// What operators see of the same traffic (docs/operations.md, Metrics).
	_, exposition := httpGet(s.httpAddr, "/metrics")
	for _, want := range []string{`stocksync_inventory_requests_total{code="",route="POST /v1/deductions",status="201"} `,
		`stocksync_inventory_request_duration_seconds_count{route="POST /v1/orders/{order_no}/confirm"} `,
		`go_sql_max_open_connections{db_name="inventory"} 32`} {
		if !strings.Contains(exposition, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Heartbeats came all along, keyed by the checkpoint's name (topics.md, Heartbeats).
	for _, r := range testutil.Consume(t, broker, []string{heartbeatTopic}, 3, 30*time.Second, testutil.ConsumeOptions{ReadCommitted: exactlyOnce}) {
		var hb struct {
			Name string `json:"name"`
			File string `json:"file"`
			Pos  uint32 `json:"pos"`
			TsMs int64  `json:"ts_ms"`
		}
		if err := json.Unmarshal([]byte(r.Value), &hb); err != nil || r.Key != "default" || hb.Name != "default" || hb.File == "" || hb.Pos == 0 || hb.TsMs == 0 {
			t.Errorf("heartbeat key %q value %s (%v); want topics.md's heartbeat of checkpoint default", r.Key, r.Value, err)
		}
	}

	partitions := len(endOffsets(t, t.Context(), broker, exactlyOnce, productTopic)[productTopic])
	groups := len(all) - 1 // the resync sends every SKU but "gone", whose rows were deleted
	for _, g := range []*groupConsumer{&product.groupConsumer, &rebuiltProduct.groupConsumer, &search.groupConsumer, &rebuiltSearch.groupConsumer, &uncommitted.groupConsumer} {
		topic := productTopic
		if g.rule == "search-in-stock" {
			topic = searchTopic
		}
		g.checkPartitions(topic, partitions)
		g.checkResyncs(groups)
		for _, problem := range g.problems() {
			t.Error(problem)
		}
	}
	for _, g := range []*groupConsumer{&product.groupConsumer, &search.groupConsumer} {
		g.mu.Lock()
		defer g.mu.Unlock()
	}
	for _, c := range []struct{ what, ops, want string }{
		{"product.stock, the SKU set before the first start (its seed first)", product.ops["seeded"], "^c"},
		{"product.stock, the SKU whose rows were deleted", product.ops["gone"], "^cd$"},
		{"product.stock, the SKU whose rows were deleted, then set again", product.ops["back"], "^cdcr$"},
		{"search.availability, the SKU whose rows were deleted, then set again", search.ops["back"], "^uuur$"},
		{"product.stock, the SKU only resharded", product.ops["quiet"], "^cur$"},
		{"search.availability, the SKU set before the first start (its seed first)", search.ops["seeded"], "^u"},
		{"search.availability, the SKU set with none", search.ops["empty"], "^r$"},
		{"search.availability, the SKU resharded with stock", search.ops["quiet"], "^ur$"},
	} {
		if !regexp.MustCompile(c.want).MatchString(c.ops) {
			t.Errorf("%s: ops %q, want %s", c.what, c.ops, c.want)
		}
	}
	// Only "seeded" had rows at the first start.
	if fmt.Sprint(product.seeds, search.seeds) != "[seeded c] [seeded u]" {
		t.Errorf("messages with source.snapshot on product.stock %v and search.availability %v, want the seed of SKU seeded (c, u)", product.seeds, search.seeds)
	}
	if !product.equalU["quiet"] {
		t.Error("product.stock: no u with equal sums for the SKU only resharded")
	}
	if exactlyOnce && (product.repeats > 0 || search.dropped > 0) {
		t.Errorf("read_committed, exactly-once: %d repeats on product.stock, %d older messages on search.availability", product.repeats, search.dropped)
	}
	uncommitted.mu.Lock()
	defer uncommitted.mu.Unlock()
	t.Logf("%d stops of the daemon, %d orders; product system: %d messages, %d repeats dropped (read_uncommitted: %d, %d); search index: %d messages, %d older dropped",
		2+kills, orders.Load(), product.count, product.repeats, uncommitted.count, uncommitted.repeats, search.count, search.dropped)
}

// soakKills is STOCKSYNC_TEST_SOAK_KILLS (make soak): how many times, beyond its own two, the
// consumer contract test stops the daemon in the middle of the orders; 0 when unset.
func soakKills(t *testing.T) int {
	raw := os.Getenv("STOCKSYNC_TEST_SOAK_KILLS")
	if raw == "" {
		return 0
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 0 {
		t.Fatalf("STOCKSYNC_TEST_SOAK_KILLS=%q: want a whole number of stops, 0 or more", raw)
	}
	return n
}

// The topics of examples/rules.yaml.
const (
	productTopic = "product.stock"
	searchTopic  = "search.availability"
)

// useShippedRules writes examples/rules.yaml as the setup's rules, reading the setup's
// database instead of "inventory".
func useShippedRules(t *testing.T, s *setup) {
	t.Helper()
	shipped, err := os.ReadFile(filepath.Join("..", "..", "examples", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rules := strings.ReplaceAll(string(shipped), `"inventory.`, `"`+s.db+".")
	if rules == string(shipped) {
		t.Fatal(`examples/rules.yaml no longer matches tables of "inventory."`)
	}
	writeFile(t, filepath.Join(filepath.Dir(s.config), "rules.yaml"), rules)
}

// runStocksync runs the binary with args and the setup's config and returns its output.
func runStocksync(t *testing.T, s *setup, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), binary, append(args, "--config", s.config)...).CombinedOutput()
	if err != nil {
		t.Fatalf("stocksync %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// shop places one order and takes it on to one of its ends; false when it was short.
func shop(t *testing.T, ctx context.Context, api inventoryClient, rng *rand.Rand, orderNo string, skus []string) bool {
	items := []map[string]any{}
	for _, i := range rng.Perm(len(skus))[:1+rng.IntN(2)] {
		items = append(items, map[string]any{"sku": skus[i], "qty": 1 + rng.IntN(2)})
	}
	order := map[string]any{"order_no": orderNo, "items": items}
	short := rng.IntN(10) == 0
	if short {
		order["hold_ttl"] = "1s"
	}
	status, body, err := api.call(ctx, "POST", "/v1/deductions", order)
	switch {
	case err != nil: // the test is ending
		return false
	case status == http.StatusConflict && bytes.Contains(body, []byte("insufficient_stock")):
		return false
	case short && status == http.StatusConflict && bytes.Contains(body, []byte("hold_expired")):
		// A retry (the daemon stopped under the first try) after the 1 s hold ran out:
		// deducted, then given back, as the contract says.
		return true
	case status != http.StatusCreated && status != http.StatusOK:
		t.Errorf("deduction %s: %d %s", orderNo, status, body)
		return false
	}
	if short {
		return true
	}
	path := "/v1/orders/" + orderNo
	switch rng.IntN(10) {
	case 0, 1, 2:
		api.mustCall(t, ctx, "POST", path+"/cancel", nil)
	case 3, 4, 5:
		api.mustCall(t, ctx, "POST", path+"/confirm", nil)
		api.mustCall(t, ctx, "POST", path+"/ship", map[string]any{"warehouse": "WH-1"})
	case 6, 7:
		api.mustCall(t, ctx, "POST", path+"/confirm", nil)
	}
	return true
}

// inventoryClient calls the inventory API as docs/api.md's Retrying asks: a call that gets
// no answer or a 5xx is repeated unchanged until it is answered, through a daemon killed
// and started again.
type inventoryClient struct{ addr string }

// call sends body as JSON (none when nil) and returns the first answer that is not a 5xx;
// an error only when ctx ends first.
func (c inventoryClient) call(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return 0, nil, fmt.Errorf("encoding %s %s: %w", method, path, err)
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, method, "http://"+c.addr+path, bytes.NewReader(payload))
		if err != nil {
			return 0, nil, fmt.Errorf("building %s %s: %w", method, path, err)
		}
		req.Header.Set("Content-Type", "application/json")
		if resp, err := client.Do(req); err == nil {
			answer, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode < 500 {
				return resp.StatusCode, answer, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, nil, fmt.Errorf("calling %s %s: %w", method, path, ctx.Err())
		case <-time.After(20 * time.Millisecond): // the daemon is down or restarting
		}
	}
}

// mustCall is call for a request that must succeed; it reports anything else.
func (c inventoryClient) mustCall(t *testing.T, ctx context.Context, method, path string, body any) {
	status, answer, err := c.call(ctx, method, path, body)
	if err == nil && status/100 != 2 {
		t.Errorf("%s %s: %d %s", method, path, status, answer)
	}
}

// sellableTruth is each SKU's SUM(qty) over its shard rows; 0 for a SKU without rows.
func sellableTruth(t *testing.T, db *sql.DB, skus []string) map[string]int64 {
	t.Helper()
	truth := map[string]int64{}
	for _, sku := range skus {
		var sum int64
		if err := db.QueryRow("SELECT COALESCE(SUM(qty), 0) FROM sellable_shard WHERE sku_id = ?", sku).Scan(&sum); err != nil {
			t.Fatalf("summing the shards of %s: %v", sku, err)
		}
		truth[sku] = sum
	}
	return truth
}

// inStock is the search index's truth: 1 for a SKU whose sum is over 0, else 0.
func inStock(truth map[string]int64) map[string]int64 {
	flags := map[string]int64{}
	for sku, sum := range truth {
		flags[sku] = 0
		if sum > 0 {
			flags[sku] = 1
		}
	}
	return flags
}

// follow reads topic with its own franz-go client, from its start or from the offsets
// given, handing each record to apply (one at a time) until ctx ends.
func follow(t *testing.T, ctx context.Context, broker string, readCommitted bool, topic string, from map[int32]kgo.Offset, apply func(*kgo.Record)) {
	t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(broker), kgo.FetchMaxWait(200 * time.Millisecond), kgo.MetadataMinAge(100 * time.Millisecond)}
	if readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	if from == nil {
		opts = append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	} else {
		opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))
	}
	cl := testutil.KafkaClient(t, opts...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(apply)
		}
	}()
	t.Cleanup(func() { <-done; cl.Close() }) // t.Context() ends before cleanups run
}

// endOffsets asks the broker where each partition of topics ends now (read_committed:
// the last stable offset).
func endOffsets(t *testing.T, ctx context.Context, broker string, readCommitted bool, topics ...string) map[string]map[int32]kgo.Offset {
	t.Helper()
	cl := testutil.KafkaClient(t, kgo.SeedBrokers(broker))
	defer cl.Close()
	meta := kmsg.NewPtrMetadataRequest()
	for _, topic := range topics {
		mt := kmsg.NewMetadataRequestTopic()
		mt.Topic = kmsg.StringPtr(topic)
		meta.Topics = append(meta.Topics, mt)
	}
	metaResp, err := meta.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("asking for the partitions of %v: %v", topics, err)
	}
	list := kmsg.NewPtrListOffsetsRequest()
	if readCommitted {
		list.IsolationLevel = 1
	}
	for _, mt := range metaResp.Topics {
		if err := kerr.ErrorForCode(mt.ErrorCode); err != nil || len(mt.Partitions) == 0 {
			t.Fatalf("the partitions of %s: %v (%d partitions)", *mt.Topic, err, len(mt.Partitions))
		}
		lt := kmsg.NewListOffsetsRequestTopic()
		lt.Topic = *mt.Topic
		for _, p := range mt.Partitions {
			lp := kmsg.NewListOffsetsRequestTopicPartition()
			lp.Partition, lp.Timestamp = p.Partition, -1 // the end
			lt.Partitions = append(lt.Partitions, lp)
		}
		list.Topics = append(list.Topics, lt)
	}
	resp, err := list.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("asking where %v end: %v", topics, err)
	}
	ends := map[string]map[int32]kgo.Offset{}
	for _, lt := range resp.Topics {
		ends[lt.Topic] = map[int32]kgo.Offset{}
		for _, p := range lt.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				t.Fatalf("where %s/%d ends: %v", lt.Topic, p.Partition, err)
			}
			ends[lt.Topic][p.Partition] = kgo.NewOffset().At(p.Offset)
		}
	}
	return ends
}

// groupMessage is a debezium message of an aggregate or transition rule, every field
// topics.md names and no other.
type groupMessage struct {
	Op     string      `json:"op"`
	Before *groupImage `json:"before"`
	After  *groupImage `json:"after"`
	Source groupSource `json:"source"`
	TsMs   *int64      `json:"ts_ms"`
}

type groupImage struct {
	SkuID    string `json:"sku_id"`
	Sellable *int64 `json:"sellable"`
	Value    *bool  `json:"value"`
}

type groupSource struct {
	ServerID uint32  `json:"server_id"`
	GTID     *string `json:"gtid"`
	File     string  `json:"file"`
	Pos      uint64  `json:"pos"`
	DB       string  `json:"db"`
	Table    string  `json:"table"`
	TsMs     int64   `json:"ts_ms"`
	Row      int     `json:"row"`
	Snapshot bool    `json:"snapshot"`
}

// groupConsumer is what the product system and the search index share: reading a record
// as topics.md describes every message, and keeping what does not fit it.
type groupConsumer struct {
	rule, db string
	// rebuilt: started from nothing at a resync, so a SKU's first message may follow on
	// from one it never read.
	rebuilt bool

	mu         sync.Mutex
	count      int
	partitions map[string]int32 // key → the partition it came on
	positions  map[string]streamPosition
	ops        map[string]string // SKU → the ops applied, in order (not repeats)
	reads      []resyncRead
	seeds      []string // "SKU op" of the messages of a snapshot: the first start's seed
	issues     []string
}

// resyncRead is one message of a resync.
type resyncRead struct {
	key, point string
	row        int
}

func newGroupConsumer(rule, db string) groupConsumer {
	return groupConsumer{rule: rule, db: db, partitions: map[string]int32{}, positions: map[string]streamPosition{}, ops: map[string]string{}}
}

func (g *groupConsumer) problem(format string, args ...any) {
	if len(g.issues) < 20 {
		g.issues = append(g.issues, g.rule+": "+fmt.Sprintf(format, args...))
	}
}

// read decodes r and checks what every message of the topic promises; it returns the
// message, its row image (after, or before for a delete), its position, and false for a
// record that could not be read.
func (g *groupConsumer) read(r *kgo.Record) (groupMessage, *groupImage, streamPosition, bool) {
	g.count++
	var m groupMessage
	dec := json.NewDecoder(bytes.NewReader(r.Value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		g.problem("decoding %s: %v", r.Value, err)
		return m, nil, streamPosition{}, false
	}
	headers := map[string]string{}
	for _, h := range r.Headers {
		headers[h.Key] = string(h.Value)
	}
	if headers["stocksync-rule"] != g.rule {
		g.problem("header stocksync-rule %q on %s", headers["stocksync-rule"], r.Value)
	}
	pos, err := parsePosition(headers["stocksync-position"])
	if err != nil {
		g.problem("header stocksync-position of %s: %v", r.Value, err)
		return m, nil, pos, false
	}
	img := m.After
	if m.Op == "d" {
		img = m.Before
	}
	if img == nil || img.Sellable == nil || m.TsMs == nil {
		g.problem("no row image, sum or production time: %s", r.Value)
		return m, nil, pos, false
	}
	sku, _ := json.Marshal(img.SkuID)
	if want := `{"sku_id":` + string(sku) + `}`; string(r.Key) != want {
		g.problem("key %s on %s, want %s", r.Key, r.Value, want)
	}
	if p, ok := g.partitions[string(r.Key)]; ok && p != r.Partition {
		g.problem("key %s on partitions %d and %d", r.Key, p, r.Partition)
	}
	g.partitions[string(r.Key)] = r.Partition
	if m.Source.DB != g.db || m.Source.Table != "sellable_shard" || m.Source.ServerID == 0 || m.Source.File == "" {
		g.problem("source %+v of %s", m.Source, r.Value)
	}
	if m.Op == "r" && !m.Source.Snapshot {
		g.problem("op r without source.snapshot")
	}
	if !m.Source.Snapshot && m.Source.TsMs%1000 != 0 { // the binlog keeps a commit's time in seconds
		g.problem("source.ts_ms %d of a streamed change is not whole seconds", m.Source.TsMs)
	}
	// The header is the transaction's GTID, or for a resync the GTID set at its point,
	// which source.gtid carries too.
	if m.Source.GTID != nil && *m.Source.GTID != pos.raw {
		g.problem("header stocksync-position %s, source.gtid %s", pos, *m.Source.GTID)
	}
	if m.Source.Snapshot && m.Op != "r" {
		g.seeds = append(g.seeds, img.SkuID+" "+m.Op)
	}
	if m.Op == "r" {
		g.reads = append(g.reads, resyncRead{key: string(r.Key), point: pos.raw, row: m.Source.Row})
	}
	return m, img, pos, true
}

// checkPartitions checks every key came on the partition the Java client's default
// partitioner picks for it among partitions.
func (g *groupConsumer) checkPartitions(topic string, partitions int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	murmur2 := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	for key, p := range g.partitions {
		if want := murmur2.Partition(&kgo.Record{Key: []byte(key)}, partitions); int32(want) != p {
			g.problem("key %s on partition %d, murmur2 picks %d of %d", key, p, want, partitions)
		}
	}
}

func (g *groupConsumer) problems() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.issues)
}

// productSystem is the legacy product system's stock column: one number per SKU from
// product.stock. It drops repeats by source, as topics.md says.
type productSystem struct {
	groupConsumer
	stock   map[string]int64 // SKUs with rows
	known   map[string]bool
	sources map[string]string // dedup key of a source → the message, without its production time
	equalU  map[string]bool   // SKU → a u whose before and after sums were equal came
	repeats int
}

func newProductSystem(db string) *productSystem {
	return &productSystem{groupConsumer: newGroupConsumer("product-stock", db), stock: map[string]int64{}, known: map[string]bool{},
		sources: map[string]string{}, equalU: map[string]bool{}}
}

func (p *productSystem) apply(r *kgo.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, img, pos, ok := p.read(r)
	if !ok {
		return
	}
	// A repeat is byte-identical but for the production time, and has the same source.
	src := fmt.Sprintf("%d %s %d %s %s %d %v", m.Source.ServerID, m.Source.File, m.Source.Pos, m.Source.DB, m.Source.Table, m.Source.Row, m.Source.Snapshot)
	body := string(r.Key) + " " + withoutProductionTime(r.Value)
	if prev, seen := p.sources[src]; seen {
		if prev != body {
			p.problem("two messages with source %s: %s and %s", src, prev, body)
		}
		p.repeats++
		return
	}
	p.sources[src] = body

	sku := img.SkuID
	prev, hasRows := p.stock[sku]
	known := p.known[sku] || !p.rebuilt
	if last, ok := p.positions[sku]; ok && pos.before(last) {
		p.problem("%s: %s at %s came after %s (not a repeat)", sku, m.Op, pos, last)
	}
	p.positions[sku] = pos
	switch m.Op {
	case "c":
		if m.Before != nil || m.After == nil || known && hasRows {
			p.problem("%s: c (before %v) for a group with rows %v", sku, m.Before, hasRows)
		}
	case "u", "d":
		if m.Before == nil || (m.After == nil) != (m.Op == "d") || m.Before.Sellable == nil {
			p.problem("%s: %s with before %v, after %v", sku, m.Op, m.Before, m.After)
			break
		}
		if known && (!hasRows || prev != *m.Before.Sellable) {
			p.problem("%s: %s from %d, but the last value was %d (rows: %v)", sku, m.Op, *m.Before.Sellable, prev, hasRows)
		}
		if m.Op == "u" && *m.Before.Sellable == *m.After.Sellable {
			p.equalU[sku] = true
		}
	case "r":
		if m.Before != nil || known && (!hasRows || prev != *img.Sellable) {
			p.problem("%s: a resync's r of %d (before %v), but the last value was %d (rows: %v)", sku, *img.Sellable, m.Before, prev, hasRows)
		}
	default:
		p.problem("%s: op %q", sku, m.Op)
	}
	if img.Value != nil {
		p.problem("%s: a value in an aggregate message", sku)
	}
	p.ops[sku] += m.Op
	p.known[sku] = true
	if m.Op == "d" {
		delete(p.stock, sku) // a consumer that wants a number reads 0
	} else {
		p.stock[sku] = *img.Sellable
	}
}

// view is the stock column of skus: 0 for a SKU without rows or never heard of.
func (p *productSystem) view(skus []string) map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return viewOf(skus, p.stock, func(n int64) int64 { return n })
}

// checkResyncs checks each resync sent every group with rows, each once, in key order.
func (g *groupConsumer) checkResyncs(groups int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	byPoint := map[string][]resyncRead{}
	for _, r := range g.reads {
		byPoint[r.point] = append(byPoint[r.point], r)
	}
	if len(byPoint) == 0 {
		g.problem("no resync read")
	}
	for point, reads := range byPoint {
		slices.SortFunc(reads, func(a, b resyncRead) int { return a.row - b.row })
		for i, r := range reads {
			if r.row != i || i > 0 && reads[i-1].key >= r.key {
				g.problem("resync at %s: %s is its row %d, after %v", point, r.key, r.row, reads[:i])
				break
			}
		}
		if len(reads) != groups {
			g.problem("resync at %s sent %d groups, want %d", point, len(reads), groups)
		}
	}
}

// searchIndex is the search index's in-stock flag per SKU from search.availability. It
// keeps, per SKU, the highest stocksync-position and drops what is older, as topics.md
// says a consumer that must never step back may.
type searchIndex struct {
	groupConsumer
	flags   map[string]bool // a SKU never heard of has the empty group's value: false
	dropped int
}

func newSearchIndex(db string) *searchIndex {
	return &searchIndex{groupConsumer: newGroupConsumer("search-in-stock", db), flags: map[string]bool{}}
}

func (x *searchIndex) apply(r *kgo.Record) {
	x.mu.Lock()
	defer x.mu.Unlock()
	m, img, pos, ok := x.read(r)
	if !ok {
		return
	}
	sku := img.SkuID
	last, seen := x.positions[sku]
	if seen && pos.before(last) {
		x.dropped++
		return
	}
	x.positions[sku] = pos
	for _, i := range []*groupImage{m.Before, m.After} {
		if i != nil && (i.Value == nil || i.Sellable == nil || *i.Value != (*i.Sellable > 0)) {
			x.problem("%s: value %v for sellable %v", sku, i.Value, i.Sellable)
			return
		}
	}
	// The same position again is a repeat or a resync at that point: its value is the
	// one already kept.
	samePosition := seen && !last.before(pos)
	switch {
	case m.Op == "u" && m.Before != nil && m.Before.Value != nil && *m.Before.Value != *img.Value:
		if !samePosition && (!x.rebuilt || seen) && *m.Before.Value != x.flags[sku] {
			x.problem("%s: a transition from %v, but the last value was %v", sku, *m.Before.Value, x.flags[sku])
		}
	case m.Op == "r" && m.Before == nil:
		if seen && *img.Value != x.flags[sku] {
			x.problem("%s: a resync's r of %v, but the last value was %v", sku, *img.Value, x.flags[sku])
		}
	default:
		x.problem("%s: %s with before %v, after %v (want a change of value)", sku, m.Op, m.Before, m.After)
	}
	if !samePosition || m.Op != "u" { // one transaction changes a value once: the same u again is a repeat
		x.ops[sku] += m.Op
	}
	x.flags[sku] = *img.Value
}

// view is 1 for each of skus in stock, else 0.
func (x *searchIndex) view(skus []string) map[string]int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return viewOf(skus, x.flags, func(in bool) int64 {
		if in {
			return 1
		}
		return 0
	})
}

// viewOf is a consumer's view: each of skus, 0 unless known, and every SKU of known as
// value makes it a number, listed or not (one the consumer should not have is seen).
func viewOf[V any](skus []string, known map[string]V, value func(V) int64) map[string]int64 {
	v := make(map[string]int64, len(skus))
	for _, sku := range skus {
		v[sku] = 0
	}
	for sku, x := range known {
		v[sku] = value(x)
	}
	return v
}

// withoutProductionTime is a debezium message without its top-level ts_ms, the one field
// a repeat may change, keys sorted.
func withoutProductionTime(value []byte) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(value, &m); err != nil {
		return string(value)
	}
	delete(m, "ts_ms")
	b, _ := json.Marshal(m)
	return string(b)
}

// streamPosition is a stocksync-position header, compared as topics.md says: with GTIDs
// by the sequence number within a domain, otherwise by binlog file, then offset.
type streamPosition struct {
	raw  string
	seqs map[string]uint64 // GTID domain → sequence number
	file string
	pos  uint64
}

func (p streamPosition) String() string { return p.raw }

// parsePosition reads a MariaDB GTID (domain-server-seq) or GTID set (comma-separated), a
// MySQL GTID (uuid:seq), or file:pos.
func parsePosition(h string) (streamPosition, error) {
	p := streamPosition{raw: h}
	if h == "" {
		return p, fmt.Errorf("missing")
	}
	if file, pos, ok := strings.Cut(h, ":"); ok {
		n, err := strconv.ParseUint(pos, 10, 64)
		if err != nil {
			return p, fmt.Errorf("%q: %w", h, err)
		}
		if len(file) == 36 && strings.Count(file, "-") == 4 { // a MySQL server uuid
			p.seqs = map[string]uint64{file: n}
		} else {
			p.file, p.pos = file, n
		}
		return p, nil
	}
	p.seqs = map[string]uint64{}
	for gtid := range strings.SplitSeq(h, ",") {
		parts := strings.Split(gtid, "-")
		if len(parts) != 3 {
			return p, fmt.Errorf("%q is neither a GTID nor file:pos", h)
		}
		n, err := strconv.ParseUint(parts[2], 10, 64)
		if err != nil {
			return p, fmt.Errorf("%q: %w", h, err)
		}
		p.seqs[parts[0]] = n
	}
	return p, nil
}

// before says whether p is older than q.
func (p streamPosition) before(q streamPosition) bool {
	if p.seqs != nil && q.seqs != nil {
		for domain, n := range p.seqs {
			if m, ok := q.seqs[domain]; ok && n != m {
				return n < m
			}
		}
		return false
	}
	return p.file < q.file || p.file == q.file && p.pos < q.pos
}
