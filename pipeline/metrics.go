package pipeline

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the pipeline's Prometheus metrics. Create them once per process and hand
// them to every Pipeline the process runs (a restart builds a new Pipeline). Readiness is
// the daemon's to report (stocksync_ready), as it also asks the broker: see Ready.
type Metrics struct {
	EventsRead      prometheus.Counter
	EventsSkipped   prometheus.Counter
	Transactions    prometheus.Counter
	MessagesEmitted prometheus.Counter
	Heartbeats      prometheus.Counter
	CheckpointFile  prometheus.Gauge
	CheckpointPos   prometheus.Gauge
	CheckpointSaved prometheus.Gauge
	Lag             prometheus.GaugeFunc // of lag, which the running pipeline sets
	Restarts        prometheus.Counter
	RuleEvalErrors  *prometheus.GaugeVec

	SnapshotRowsDone        prometheus.Gauge
	SnapshotRowsEstimated   prometheus.Gauge
	SnapshotETA             prometheus.Gauge
	CheckpointBinlogsBehind prometheus.Gauge

	RereadRunning prometheus.Gauge
	RereadChunks  prometheus.Gauge

	// RuleMessages counts MessagesEmitted by the rule that made them.
	RuleMessages *prometheus.CounterVec

	lag lagClock
	// leading is set when a pipeline of this process starts, cleared by Standby:
	// CheckpointBinlogsBehind is exported only while it is set (leaderOnly).
	leading atomic.Bool
}

// Standby records that this process no longer leads (ha: its lease ran out or its lock's
// connection dropped; without ha: it lost its lock and waits to take it again), until a
// pipeline starts again: it reads nothing and so is behind nothing (lag 0), and has no
// checkpoint of its own whose binlogs could be purged, so stocksync_checkpoint_binlog_files_older
// is not exported, and an alert on it (< 1) does not fire on a healthy standby. The daemon
// calls it each time leadership ends, however it ended.
func (m *Metrics) Standby() {
	m.leading.Store(false)
	m.lag.standby()
	m.CheckpointBinlogsBehind.Set(-1) // not checked yet, when it leads again
}

// leads records that a pipeline of this process starts: it leads (Standby).
func (m *Metrics) leads() { m.leading.Store(true) }

// leaderOnly collects its metric only while leading is set.
type leaderOnly struct {
	prometheus.Collector
	leading *atomic.Bool
}

func (c leaderOnly) Collect(ch chan<- prometheus.Metric) {
	if c.leading.Load() {
		c.Collector.Collect(ch)
	}
}

// lagClock is stocksync_source_lag_seconds over the pipelines a process runs one after
// another: the lag as of when a stream last read, and while none reads (stopped on a
// change it refuses, reconnecting, restarting, waiting for a seed), that lag growing with
// the time since.
type lagClock struct {
	mu      sync.Mutex
	lag     time.Duration
	at      time.Time // when lag was; zero: no stream has read yet
	reading bool
}

// set records a pipeline's lag at now, and whether its stream reads. While it does not,
// the clock grows on from when it last did, unless lag says it is further behind.
func (c *lagClock) set(lag time.Duration, reading bool, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if reading || lag > c.valueAt(now) {
		c.lag, c.at = lag, now
	}
	c.reading = reading
}

// stopped records that the pipeline's stream no longer reads (it ended).
func (c *lagClock) stopped() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reading = false
}

// standby records that the process no longer leads (ha): it reads nothing and is behind
// nothing, 0 until a stream of its own reads again.
func (c *lagClock) standby() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lag, c.at, c.reading = 0, time.Time{}, false
}

func (c *lagClock) seconds() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.valueAt(time.Now()).Seconds()
}

func (c *lagClock) valueAt(now time.Time) time.Duration {
	if c.reading || c.at.IsZero() {
		return c.lag
	}
	return c.lag + max(0, now.Sub(c.at))
}

// NewMetrics creates the metrics and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		EventsRead: prometheus.NewCounter(prometheus.CounterOpts{Name: "stocksync_events_read_total",
			Help: "Row changes read from the binlog for tables some rule matches."}),
		EventsSkipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "stocksync_binlog_rows_events_skipped_total",
			Help: "Binlog rows events of tables no rule matches, skipped without decoding their values."}),
		Transactions: prometheus.NewCounter(prometheus.CounterOpts{Name: "stocksync_transactions_total",
			Help: "Committed transactions read from the binlog."}),
		MessagesEmitted: prometheus.NewCounter(prometheus.CounterOpts{Name: "stocksync_messages_emitted_total",
			Help: "Messages handed to the sink (acknowledged ones: stocksync_messages_produced_total)."}),
		Heartbeats: prometheus.NewCounter(prometheus.CounterOpts{Name: "stocksync_heartbeats_total",
			Help: "Heartbeats handed to the sink for kafka.heartbeat_topic (also counted in stocksync_messages_emitted_total)."}),
		CheckpointFile: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stocksync_checkpoint_binlog_file_number",
			Help: "Number of the binlog file of the last saved checkpoint (binlog.000042 is 42)."}),
		CheckpointPos: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stocksync_checkpoint_binlog_position",
			Help: "Offset within that file of the last saved checkpoint."}),
		CheckpointSaved: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stocksync_checkpoint_saved_timestamp_seconds",
			Help: "When the last checkpoint was saved, or loaded at the start (Unix time)."}),
		Restarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "stocksync_pipeline_restarts_total",
			Help: "Times the pipeline restarted from its checkpoint after a retryable failure."}),
		RuleEvalErrors: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "stocksync_rule_eval_errors",
			Help: "Rule evaluations that failed at run time since the pipeline started, by rule (a failed when is false, a failed field or value null, a refused topic not published)."}, []string{"rule"}),
		SnapshotRowsDone: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stocksync_snapshot_rows_done",
			Help: "Rows read by the current or last snapshot."}),
		SnapshotRowsEstimated: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stocksync_snapshot_rows_estimated",
			Help: "The server's estimate of the rows the snapshot reads (InnoDB's, can be off by tens of percent)."}),
		SnapshotETA: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stocksync_snapshot_eta_seconds",
			Help: "Expected time to the end of the running snapshot; 0 when none runs or unknown."}),
		CheckpointBinlogsBehind: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stocksync_checkpoint_binlog_files_older",
			Help: "Binlog files the server keeps that are older than the one holding the checkpoint (placed by GTID on MariaDB); 0 means the next purge loses undelivered changes; -1 that it cannot be told (not checked yet, the checkpoint's changes already purged, or its file not listed on MySQL). Exported only while this daemon leads: a standby has no series."}),
		RereadRunning: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stocksync_reread_running",
			Help: "1 while a resync re-reads the tables of row rules (also one that went on after a restart), else 0."}),
		RereadChunks: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stocksync_reread_chunks_published",
			Help: "Chunks the running or last re-read has published, counted over its restarts."}),
		RuleMessages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stocksync_rule_messages_total",
			Help: "Messages handed to the producer, by the rule that made them (a rule not seen since the daemon started has no series)."},
			[]string{"rule"}),
	}
	m.Lag = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stocksync_source_lag_seconds",
		Help: "How far behind the source's clock what the broker acknowledged is: the oldest change read and not yet acknowledged and checkpointed, else the last event read; 0 when caught up. While the stream does not read (stopped, reconnecting), it grows on from its last value."},
		m.lag.seconds)
	m.CheckpointBinlogsBehind.Set(-1) // unknown until the first check
	if reg != nil {
		reg.MustRegister(m.EventsRead, m.EventsSkipped, m.Transactions, m.MessagesEmitted, m.Heartbeats, m.CheckpointFile, m.CheckpointPos,
			m.CheckpointSaved, m.Lag, m.Restarts, m.RuleEvalErrors,
			m.SnapshotRowsDone, m.SnapshotRowsEstimated, m.SnapshotETA, leaderOnly{m.CheckpointBinlogsBehind, &m.leading},
			m.RereadRunning, m.RereadChunks, m.RuleMessages)
	}
	return m
}
