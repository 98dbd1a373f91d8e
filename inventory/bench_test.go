package inventory

import (
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkHotSKU measures deductions per second on ONE SKU from 64 concurrent callers
// through the Go API, the hold and deduction log rows included, for M = 1, 8 and 32
// shards, each without and with merging. Run it on durable settings: `make bench-inventory`.
// After each run it checks that nothing was oversold: the shards lost exactly what the log
// records, and every call was granted once.
func BenchmarkHotSKU(b *testing.B) {
	const callers = 64
	const initial = int64(1) << 50
	// One database for every sub-benchmark (each round deducts from a SKU of its own), made
	// by the parent: a sub-benchmark's function runs several times and cleans up each time.
	unmerged, _ := newTestStore(b, Options{DisableMerging: true})
	merging := New(unmerged.db, Options{MergeWorkers: mergeWorkersForBench()})
	runBenchSQL(b, unmerged.db)
	var round atomic.Int64
	for _, merge := range []bool{false, true} {
		for _, m := range []int{1, 8, 32} {
			store := unmerged
			if merge {
				store = merging
			}
			b.Run(fmt.Sprintf("M=%d/merge=%v", m, merge), func(b *testing.B) {
				ctx := b.Context()
				sku := fmt.Sprintf("hot-%d", round.Add(1))
				if _, err := store.SetStock(ctx, sku, initial, m); err != nil {
					b.Fatal(err)
				}
				batches0, merged0 := store.MergeStats()
				var seq atomic.Int64
				b.SetParallelism((callers + 1) / max(1, testingProcs()))
				b.ResetTimer()
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						order := fmt.Sprintf("%s-%d", sku, seq.Add(1))
						if _, err := store.Deduct(ctx, DeductRequest{OrderNo: order, Items: []Item{{SKU: sku, Qty: 1}}}); err != nil {
							b.Error(err)
							return
						}
					}
				})
				elapsed := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deductions/s")
				if batches, merged := store.MergeStats(); batches > batches0 {
					b.ReportMetric(float64(merged-merged0)/float64(batches-batches0), "orders/batch")
				}
				left := queryInt(b, store.db, "SELECT SUM(qty) FROM sellable_shard WHERE sku_id = ?", sku)
				logged := queryInt(b, store.db, "SELECT COUNT(*) FROM deduction_log WHERE sku_id = ?", sku)
				negative := queryInt(b, store.db, "SELECT COUNT(*) FROM sellable_shard WHERE sku_id = ? AND qty < 0", sku)
				if initial-left != logged || logged != int64(b.N) || negative != 0 {
					b.Fatalf("oversold or lost: initial %d − left %d ≠ %d log rows for %d calls (%d negative shards)",
						initial, left, logged, b.N, negative)
				}
			})
		}
	}
}

// mergeWorkersForBench lets a benchmark run try another MergeWorkers
// (STOCKSYNC_BENCH_MERGE_WORKERS); 0 keeps the default.
func mergeWorkersForBench() int {
	n, _ := strconv.Atoi(os.Getenv("STOCKSYNC_BENCH_MERGE_WORKERS"))
	return n
}

// runBenchSQL runs STOCKSYNC_BENCH_SQL's statements (separated by ';') on the benchmark's
// database before it starts, so that a schema variant can be measured with the same
// command: dropping indexes no deduction needs, say (docs/BENCHMARKS.md).
func runBenchSQL(b *testing.B, db *sql.DB) {
	for stmt := range strings.SplitSeq(os.Getenv("STOCKSYNC_BENCH_SQL"), ";") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := db.Exec(stmt); err != nil {
			b.Fatalf("STOCKSYNC_BENCH_SQL: %s: %v", stmt, err)
		}
	}
}
