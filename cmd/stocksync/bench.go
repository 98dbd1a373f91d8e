package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/config"
	"github.com/stocksync/stocksync/pipeline"
	"github.com/stocksync/stocksync/rules"
	"github.com/stocksync/stocksync/sinks"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Reproducible benchmarks"}
	cmd.AddCommand(newBenchCatchupCmd())
	return cmd
}

const benchSchema = "stocksync_bench"

// plainBenchRules is the one plain rule of the catch-up benchmark.
const plainBenchRules = `rules:
  - name: bench-rows
    match: {table: "stocksync_bench.bench_stock"}
    topic: bench.stock
    key: [sku_id]
`

func newBenchCatchupCmd() *cobra.Command {
	var txns, rowsPerTxn, runs int
	var rulesFile string
	var reuse bool
	var cpuProfile string
	var exactlyOnce, discard bool
	cmd := &cobra.Command{
		Use:   "catchup",
		Short: "Catch-up throughput: a binlog of row changes read from the start to broker-acknowledged",
		Long: `Writes TXNS transactions of ROWS-row inserts, then TXNS of ROWS-row updates, into
stocksync_bench.bench_stock on the configured source (default 500 x 1000 x 2 = 1,000,000 row
changes), then, RUNS times, measures:
  bare:      go-mysql's binlog loop parsing the same range, counting rows, nothing else;
  stocksync: the full pipeline over the same range, with its rules, to an embedded kfake
             broker, until every message is acknowledged and the checkpoint is saved.
Prints rows/s per run, the medians and the ratio stocksync/bare.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfigWithoutRules(cmd)
			if err != nil {
				return err
			}
			rulesYAML := plainBenchRules
			if rulesFile != "" {
				b, err := os.ReadFile(rulesFile)
				if err != nil {
					return fmt.Errorf("reading --rules: %w", err)
				}
				rulesYAML = string(b)
			}
			cfg.Kafka.ExactlyOnce = exactlyOnce
			return benchCatchup(cmd.Context(), cmd, cfg, rulesYAML, txns, rowsPerTxn, runs, reuse, discard, cpuProfile)
		},
	}
	cmd.Flags().IntVar(&txns, "txns", 500, "transactions of inserts, and as many of updates")
	cmd.Flags().IntVar(&rowsPerTxn, "rows", 1000, "rows per transaction")
	cmd.Flags().IntVar(&runs, "runs", 3, "measured runs (medians are reported)")
	cmd.Flags().StringVar(&rulesFile, "rules", "", "rules file to run instead of the one plain rule (tables: stocksync_bench.bench_stock)")
	cmd.Flags().BoolVar(&discard, "discard", false, "drop the messages instead of producing them: reading, rules and encoding alone")
	cmd.Flags().BoolVar(&exactlyOnce, "exactly-once", false, "deliver in Kafka transactions with the checkpoint (kafka.exactly_once)")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the last run's pipeline (not the bare loop) here")
	cmd.Flags().BoolVar(&reuse, "reuse", false, "reuse the binlog range written by the last run (kept in stocksync_bench.range)")
	return cmd
}

func benchCatchup(ctx context.Context, cmd *cobra.Command, cfg config.Config, rulesYAML string, txns, rowsPerTxn, runs int, reuse, discard bool, cpuProfile string) error {
	out := cmd.OutOrStdout()
	src, err := sourceConfig(cfg)
	if err != nil {
		return err
	}
	server, err := canal.Connect(ctx, src)
	if err != nil {
		return err
	}
	defer server.Close()
	dir, err := os.MkdirTemp("", "stocksync-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rulesPath := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesPath, []byte(rulesYAML), 0o644); err != nil {
		return err
	}
	set, err := rules.Load(rulesPath)
	if err != nil {
		return fmt.Errorf("loading bench rules:\n%w", err)
	}

	from, to, total, err := benchRange(ctx, server, txns, rowsPerTxn, reuse, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "binlog range %s .. %s: %d row changes\n\n", from, to, total)

	var bare, full []float64
	fmt.Fprintf(out, "%-8s %14s %18s %8s\n", "run", "bare rows/s", "stocksync rows/s", "ratio")
	for run := 1; run <= runs; run++ {
		src.ServerID = cfg.Source.ServerID + uint32(run)
		t0 := time.Now()
		n, err := canal.CountRowsBare(ctx, src, server.Flavor, benchSchema+".bench_stock", from, to)
		if err != nil {
			return err
		}
		if n != total {
			return fmt.Errorf("bare loop counted %d rows, want %d", n, total)
		}
		b := float64(n) / time.Since(t0).Seconds()

		stopProfile := func() {}
		if run == runs && cpuProfile != "" {
			if stopProfile, err = startCPUProfile(cpuProfile); err != nil {
				return err
			}
		}
		d, err := benchPipeline(ctx, cfg, server, src, set, from, to, run, discard)
		stopProfile()
		if err != nil {
			return err
		}
		f := float64(total) / d.Seconds()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(cmd.ErrOrStderr(), "after run %d: heap in use %d MB\n", run, ms.HeapInuse>>20)
		bare, full = append(bare, b), append(full, f)
		fmt.Fprintf(out, "%-8d %14.0f %18.0f %8.3f\n", run, b, f, f/b)
	}
	mb, mf := median(bare), median(full)
	fmt.Fprintf(out, "%-8s %14.0f %18.0f %8.3f\n", "median", mb, mf, mf/mb)
	return nil
}

// startCPUProfile starts a CPU profile into path; the function returned stops it.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating --cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting the CPU profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// benchRange writes the benchmark's transactions (or reuses the last ones) and returns
// the binlog range holding them.
func benchRange(ctx context.Context, server *canal.Server, txns, rowsPerTxn int, reuse bool, out interface{ Write([]byte) (int, error) }) (from, to canal.Position, total int, err error) {
	db := server.DB
	exec := func(q string, args ...any) {
		if err == nil {
			if _, e := db.ExecContext(ctx, q, args...); e != nil {
				err = fmt.Errorf("preparing benchmark data (%s): %w", strings.Fields(q)[0], e)
			}
		}
	}
	exec("CREATE DATABASE IF NOT EXISTS " + benchSchema)
	exec("CREATE TABLE IF NOT EXISTS " + benchSchema + ".`range` (id INT PRIMARY KEY, from_file VARCHAR(255), from_pos BIGINT, to_file VARCHAR(255), to_pos BIGINT, total BIGINT)")
	if err != nil {
		return
	}
	if reuse {
		var fp, tp int64
		e := db.QueryRowContext(ctx, "SELECT from_file, from_pos, to_file, to_pos, total FROM "+benchSchema+".`range` WHERE id = 1").
			Scan(&from.File, &fp, &to.File, &tp, &total)
		if e == nil {
			from.Pos, to.Pos = uint32(fp), uint32(tp)
			return
		}
	}
	exec("DROP TABLE IF EXISTS " + benchSchema + ".bench_stock")
	exec("CREATE TABLE " + benchSchema + ".bench_stock (id BIGINT PRIMARY KEY, sku_id VARCHAR(32) NOT NULL, warehouse VARCHAR(8) NOT NULL, " +
		"qty INT NOT NULL, price DECIMAL(12,2) NOT NULL, updated_at DATETIME(3) NOT NULL) DEFAULT CHARSET=utf8mb4")
	if err != nil {
		return
	}
	if from, err = server.CurrentPosition(ctx); err != nil {
		return
	}
	from.GTIDSet = "" // the benchmark streams by file and position
	t0 := time.Now()
	var q strings.Builder
	for t := 0; t < txns && err == nil; t++ {
		q.Reset()
		q.WriteString("INSERT INTO " + benchSchema + ".bench_stock VALUES ")
		for r := 0; r < rowsPerTxn; r++ {
			id := t*rowsPerTxn + r
			if r > 0 {
				q.WriteByte(',')
			}
			fmt.Fprintf(&q, "(%d,'SKU-%07d','W%d',%d,%d.%02d,'2026-11-22 10:00:00.000')", id, id%50000, id%4, id%100, id%1000, id%100)
		}
		exec(q.String())
	}
	for t := 0; t < txns && err == nil; t++ {
		exec("UPDATE "+benchSchema+".bench_stock SET qty = qty + 1, updated_at = NOW(3) WHERE id >= ? AND id < ?", t*rowsPerTxn, (t+1)*rowsPerTxn)
	}
	if err != nil {
		return
	}
	if to, err = server.CurrentPosition(ctx); err != nil {
		return
	}
	to.GTIDSet = ""
	total = 2 * txns * rowsPerTxn
	fmt.Fprintf(out, "wrote %d row changes in %s\n", total, time.Since(t0).Round(time.Millisecond))
	exec("REPLACE INTO "+benchSchema+".`range` VALUES (1, ?, ?, ?, ?, ?)", from.File, from.Pos, to.File, to.Pos, total)
	return
}

// benchPipeline runs the full pipeline from `from` until `to` is acknowledged and
// checkpointed, against a fresh embedded broker; discard drops the messages instead.
func benchPipeline(ctx context.Context, cfg config.Config, server *canal.Server, src canal.Config, set *rules.Set, from, to canal.Position, run int, discard bool) (time.Duration, error) {
	broker, err := sinks.StartDevBroker("127.0.0.1:0", "", sinks.DevBrokerSecurity{})
	if err != nil {
		return 0, err
	}
	defer broker.Close()
	name := fmt.Sprintf("bench-%d-%d", os.Getpid(), run)
	cfg.Checkpoint.Name = name
	cfg.Kafka.TransactionalID = name
	var sink deliverySink = discardSink{}
	var checkpoints pipeline.Checkpointer
	if !discard {
		// The bench's own broker: plaintext, whatever the config says of real brokers.
		if sink, checkpoints, err = newDelivery(ctx, cfg, broker.Addrs(), sinks.Security{}, nil, zap.NewNop()); err != nil {
			return 0, err
		}
	}
	defer sink.Close()
	store, err := canal.NewCheckpointStore(ctx, server.DB, benchSchema+".checkpoint", name)
	if err != nil {
		return 0, err
	}
	if checkpoints == nil {
		checkpoints = store
	}
	// Start from `from`, where the table was just created, empty: aggregate rules start
	// seeded with empty state there.
	var empty []canal.StateRow
	for _, e := range set.EmptyState() {
		empty = append(empty, canal.StateRow{Scope: e.Rule, Key: e.Key, Value: e.Value})
	}
	if err := checkpoints.Save(ctx, from, empty); err != nil {
		return 0, err
	}
	if kc, ok := checkpoints.(*pipeline.KafkaCheckpoints); ok {
		if kc.Loaded, err = sinks.ReadCheckpoints(ctx, broker.Addrs(), sinks.Security{}, cfg.Kafka.CheckpointTopic); err != nil {
			return 0, err
		}
	}
	p := pipeline.New(pipeline.Options{Source: src, CheckpointTable: benchSchema + ".checkpoint", CheckpointName: name,
		CheckpointInterval: time.Second, Checkpoints: checkpoints, ExactlyOnce: cfg.Kafka.ExactlyOnce,
		Rules: set, Sink: sink, Logger: zap.NewNop(), StopAt: to})
	t0 := time.Now()
	if err := p.Run(ctx); err != nil {
		return 0, fmt.Errorf("benchmark pipeline run %d: %w", run, err)
	}
	d := time.Since(t0)
	if !cfg.Kafka.ExactlyOnce {
		pos, _, _, err := store.Load(ctx)
		if err != nil {
			return 0, err
		}
		if pos.Compare(to) < 0 {
			return 0, fmt.Errorf("benchmark run %d ended with checkpoint %s before %s", run, pos, to)
		}
	}
	return d, store.Reset(ctx)
}

// discardSink drops every message: what the pipeline costs without delivery.
type discardSink struct{}

func (discardSink) Emit(context.Context, sinks.Message) error { return nil }
func (discardSink) Flush(context.Context) error               { return nil }
func (discardSink) Close() error                              { return nil }

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
