package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/config"
	"github.com/stocksync/stocksync/internal/sqlconn"
	"github.com/stocksync/stocksync/pipeline"
	"github.com/stocksync/stocksync/rules"
	"github.com/stocksync/stocksync/sinks"
)

func newServeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Stream the binlog through the rules to Kafka, and serve the inventory API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			log, err := newLogger(cfg.Log)
			if err != nil {
				return err
			}
			defer log.Sync()
			sqlconn.SetDriverLogger(log) // before any handle is opened: each copies it
			file, err := readRulesFile(cfg.Rules, reservedTopics(cfg))
			if err != nil {
				return fmt.Errorf("loading rules:\n%w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return serve(ctx, cfg, file, log)
		},
	}
}

// daemon is what serve runs: the HTTP endpoints and the supervised pipeline.
type daemon struct {
	cfg     config.Config
	log     *zap.Logger
	metrics *pipeline.Metrics
	reloads prometheus.Counter
	rules   atomic.Pointer[rules.Set]
	current atomic.Pointer[pipeline.Pipeline]
	leader  atomic.Bool // this daemon holds the checkpoint's lock and leads
	leaderG prometheus.Gauge
	brokers []string
	source  canal.Config   // how to reach cfg.Source, TLS included
	kafka   sinks.Security // how to reach the brokers: kafka.tls and kafka.sasl, files read once
	pinger  *sinks.Pinger  // asks the brokers whether they serve, on connections it keeps
	// brokerDown is why the last ping of the brokers failed; "" when one answered, nil
	// before the first ping.
	brokerDown atomic.Pointer[string]
	// notLeading is why this daemon, not leading, does not lead yet, as awaitLock last
	// learnt it (another daemon holds the lock, the source does not answer, the takeover
	// wait), for /readyz; nil before awaitLock first ran.
	notLeading atomic.Pointer[string]
	// pingNow asks pingBroker for a ping at once: a pipeline started, and /readyz should
	// not wait for the next 2 s tick to learn the broker answers.
	pingNow   chan struct{}
	pingEvery time.Duration // 2 s
	// checkpoint is the last exactly-once checkpoint any run loaded or committed, so that
	// a run finding the checkpoint topic emptied stops (pipeline.ErrCheckpointLost).
	checkpoint atomic.Pointer[canal.Position]
	// stopped is why the last run of the pipeline stopped, which /readyz gives while no
	// run streams; nil before any stopped.
	stopped atomic.Pointer[string]
	// stopFailure is why the current run, stopped, could not save its last checkpoint (nil
	// when it could, or before a stop), for exitIfTheStopOverruns to say.
	stopFailure atomic.Pointer[string]
	// runningRules is the digest of the rules file the running rules were read from, and
	// rejectedRules that of the last file a reload rejected (nil when the last reload was
	// accepted). Only watchRules uses them, after serve set runningRules.
	runningRules  [sha256.Size]byte
	rejectedRules *[sha256.Size]byte
}

func serve(ctx context.Context, cfg config.Config, file rulesFile, log *zap.Logger) (err error) {
	defer func() {
		if stoppedBySignal(ctx, err) {
			log.Info("stopped", zap.String("interrupted", err.Error()))
			err = nil
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(sinks.Collectors()...)
	d := &daemon{cfg: cfg, log: log, metrics: pipeline.NewMetrics(reg), brokers: cfg.Kafka.Brokers, pingNow: make(chan struct{}, 1),
		pingEvery: 2 * time.Second,
		reloads: prometheus.NewCounter(prometheus.CounterOpts{Name: "stocksync_rules_reload_failures_total",
			Help: "Rules files a reload rejected (invalid, or not fitting the source's tables), each counted once however often it was tried again unchanged; the running rules stayed."})}
	d.leaderG = prometheus.NewGauge(prometheus.GaugeOpts{Name: "stocksync_leader",
		Help: "1 while this daemon holds the checkpoint's lock and leads: with ha, 0 while it is the standby; without, 0 only while it takes the lock again after losing it."})
	// stocksync_ready is read at each scrape from the check /readyz answers with, so the
	// two never disagree.
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stocksync_ready",
		Help: "1 while /readyz answers 200: holding the checkpoint's lock (with ha: leading), the start position fixed, the binlog stream open and the broker answering."},
		func() float64 {
			if d.notReady() != "" {
				return 0
			}
			return 1
		})
	reg.MustRegister(d.reloads, d.leaderG, ready, buildInfoGauge())
	d.rules.Store(file.set)
	d.runningRules = file.digest
	// Bound the stop, whatever it waits for: the deferred closes below included.
	returned := make(chan struct{})
	defer close(returned)
	go d.exitIfTheStopOverruns(ctx, returned)

	if len(d.brokers) == 0 {
		b, err := sinks.StartDevBroker(cfg.Kafka.DevBrokerAddr, "", sinks.DevBrokerSecurity{})
		if err != nil {
			return err
		}
		defer b.Close()
		d.brokers = b.Addrs()
		log.Warn("kafka.brokers is empty: using the embedded development broker, which keeps nothing across restarts",
			zap.Strings("addr", d.brokers))
	}

	// Check the source first: its address and binlog settings are the likeliest mistakes,
	// and the error names the setting to change.
	if d.source, err = sourceConfig(cfg); err != nil {
		return err
	}
	if d.kafka, err = sinks.SecurityOf(cfg.Kafka.TLS, cfg.Kafka.SASL); err != nil {
		return err
	}
	if d.pinger, err = sinks.NewPinger(d.brokers, d.kafka); err != nil {
		return err
	}
	defer d.pinger.Close()
	server, err := canal.Connect(ctx, d.source)
	if err != nil {
		return err
	}
	err = server.CheckServerID(ctx, d.source, log)
	server.Close()
	if err != nil {
		return err
	}
	// Then the rules against the source's tables: a column no table has would stop the
	// stream at its first row, and a table source.user may not read would seed empty.
	if err := d.rulesFitSource(ctx, file.set); err != nil {
		return err
	}
	// Then the checkpoint's lock: without ha, a second daemon on the checkpoint does not
	// start (with ha, it waits for the lock, in lead).
	var held *heldLock
	if !cfg.HA {
		if held, err = d.takeLockAtStart(ctx); err != nil {
			return err
		}
		defer held.release() // when serve returns before lead runs (lead releases it too)
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", d.readyz)
	d.mountAdmin(mux)
	closeInventory, err := mountInventory(ctx, cfg, mux, reg, log)
	if err != nil {
		return err
	}
	defer closeInventory()

	var srv *http.Server
	if cfg.HTTP.Addr != "" {
		ln, err := net.Listen("tcp", cfg.HTTP.Addr)
		if err != nil {
			return fmt.Errorf("listening on http.addr %s: %w", cfg.HTTP.Addr, err)
		}
		srv = newHTTPServer(withAPIPaths(mux), log)
		go srv.Serve(ln)
		log.Info("http listening", zap.String("addr", ln.Addr().String()))
		if host, _, _ := net.SplitHostPort(ln.Addr().String()); cfg.HTTP.Token == "" && !net.ParseIP(host).IsLoopback() {
			log.Warn("http.token is empty and http.addr is reachable from other hosts: anyone who reaches it can change stock (/v1) and ask for resyncs (/admin); set http.token (STOCKSYNC_HTTP_TOKEN)",
				zap.String("addr", ln.Addr().String()))
		}
	}

	go d.watchRules(ctx, d.startRulesWatch())
	go d.pingBroker(ctx)
	err = d.lead(ctx, held)
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		srv.Shutdown(sctx)
		cancel()
	}
	return err
}

// The HTTP server's limits: a client that sends its request slowly, or never finishes
// its body (a 401 is written only after it), or keeps an idle connection, holds a file
// descriptor the daemon also needs for the database and the brokers, token or not.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpReadTimeout       = 30 * time.Second // the whole request, body included
	httpIdleTimeout       = 2 * time.Minute  // a keep-alive connection between requests
	httpMaxHeaderBytes    = 64 << 10
)

// newHTTPServer is serve's server for handler: bounded in how long a client may take and
// how much header it may send, its own errors (a failed accept: too many open files)
// logged through log as JSON like every other line.
func newHTTPServer(handler http.Handler, log *zap.Logger) *http.Server {
	errorLog, err := zap.NewStdLogAt(log.Named("http"), zap.WarnLevel)
	if err != nil {
		errorLog = nil // only for a level zap does not know; net/http then logs to stderr
	}
	return &http.Server{Handler: handler, ReadHeaderTimeout: httpReadHeaderTimeout, ReadTimeout: httpReadTimeout,
		IdleTimeout: httpIdleTimeout, MaxHeaderBytes: httpMaxHeaderBytes, ErrorLog: errorLog}
}

// stoppedBySignal reports whether err, which ends serve, only says that a SIGTERM or
// SIGINT (ctx done) cut short what the daemon was doing: taking the checkpoint's lock,
// its takeover wait, a seed or snapshot before the stream opened. That is a stop like
// any other, exit 0, which a service manager must not record as a failure. A stop that
// could not save the last checkpoint fails otherwise (its own deadline, not ctx), and
// still exits 1.
func stoppedBySignal(ctx context.Context, err error) bool {
	return err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled)
}

func (d *daemon) readyz(w http.ResponseWriter, r *http.Request) {
	if why := d.notReady(); why != "" {
		http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// notReady is why the daemon is not ready, or "" when it is: the one definition that
// /readyz and the stocksync_ready gauge both report. Ready is leading (ha), with a
// pipeline whose start position is fixed and binlog stream open, and a broker that
// answered the last ping (a Kafka request, see sinks.Pinger).
func (d *daemon) notReady() string {
	p := d.current.Load()
	switch {
	case d.cfg.HA && !d.leader.Load():
		return "standby: " + d.whyNotLeading()
	case !d.leader.Load():
		return "not holding the checkpoint's lock: taking it again after losing it (ha: false): " + d.whyNotLeading()
	case p == nil || !p.Ready():
		if why := d.stopped.Load(); why != nil {
			return "binlog stream not open: the last run stopped: " + *why
		}
		return "binlog stream not open"
	}
	if why := d.brokerDown.Load(); why == nil {
		return "Kafka broker does not answer: not asked yet"
	} else if *why != "" {
		return "Kafka broker does not answer: " + *why
	}
	return ""
}

// whyNotLeading is why the daemon does not lead yet, as awaitLock last learnt it.
func (d *daemon) whyNotLeading() string {
	if why := d.notLeading.Load(); why != nil {
		return *why
	}
	return "connecting to the source"
}

// waitingFor records why the daemon does not lead yet, for /readyz.
func (d *daemon) waitingFor(why string) { d.notLeading.Store(&why) }

// lockWaitReason is what /readyz says of a wait for the checkpoint's lock (canal.LockWait).
func lockWaitReason(w canal.LockWait) string {
	switch {
	case w.Unreachable != nil:
		return "source unreachable: " + w.Unreachable.Error()
	case w.Taken:
		return fmt.Sprintf("holding the leader lock, waiting out the previous leader's lease (%s) before leading", canal.TakeoverWait)
	}
	return "another stocksync holds the leader lock"
}

// lead runs the pipeline while this daemon holds the checkpoint's lock, and waits to
// take the lock again when it loses it. Only the holder publishes. With ha, lead waits
// for the lock from the start, as the standby, and takes over a few seconds after the
// leader's death (canal.TakeoverWait after the server drops the dead leader's lock).
// Without ha, serve took the lock at the start (held), and lead waits for it only after
// losing it: when its connection to the source dropped (a restarted server, a network
// cut), or when the daemon was frozen for longer than the lock's idle timeout.
func (d *daemon) lead(ctx context.Context, held *heldLock) error {
	defer func() { held.release() }() // the one held when ctx is done
	for first := true; ctx.Err() == nil; first = false {
		if held == nil {
			if held = d.awaitLock(ctx); held == nil {
				return nil // ctx is done
			}
		}
		d.log.Info("leading: this daemon holds the leader lock", zap.String("lock", held.name))
		d.leader.Store(true)
		d.leaderG.Set(1)
		lctx, cancel := context.WithCancel(ctx)
		go func(lost <-chan struct{}) {
			select {
			case <-lost:
				cancel()
			case <-lctx.Done():
			}
		}(held.lead.Lost())
		// A failure of the daemon's first run, before it read anything, is taken for a
		// setting to fix and ends the daemon, while whoever started it is watching. Not
		// so for a standby that took over from another daemon: the leader may have gone
		// down with the very outage this run meets, and the standby is what is left to
		// wait it out, retrying as a leader does.
		err := d.supervise(lctx, held.lead, first && !held.tookOver)
		cancel()
		d.leader.Store(false)
		d.leaderG.Set(0)
		d.metrics.Standby() // behind nothing, no checkpoint of its own to watch
		lostLead := !held.lead.Held()
		held.release()
		held = nil
		switch {
		case ctx.Err() != nil:
			return err // a stop: nil, or why its last checkpoint could not be saved
		case (lostLead || errors.Is(err, pipeline.ErrLeaseLost)) && d.cfg.HA:
			d.log.Warn("no longer leading: back to standby", zap.Error(err))
		case lostLead || errors.Is(err, pipeline.ErrLeaseLost):
			why := "lost the checkpoint's lock; taking it again before streaming on"
			d.stopped.Store(&why)
			d.metrics.Restarts.Inc()
			d.log.Warn("the pipeline stopped: "+why, zap.String("lock", checkpointLockName(d.cfg)), zap.Error(err))
		case err != nil:
			return err
		}
	}
	return nil
}

// heldLock is the checkpoint's lock (see checkpointLockName), held on a connection of its
// own to the source.
type heldLock struct {
	name   string
	server *canal.Server
	lead   *canal.Leadership
	// tookOver: another connection held the lock when this daemon began to wait for it.
	tookOver bool
}

// release gives the lock up and closes its connection; it does nothing on nil, or when
// called again.
func (h *heldLock) release() {
	if h == nil || h.server == nil {
		return
	}
	h.lead.Release()
	h.server.Close()
	h.server = nil
}

// checkpointLockName is the named lock (GET_LOCK, on the source server) that the daemon
// streaming cfg's checkpoint holds, with ha or without, as the server knows it
// (canal.LockName), so that the start asks the server about the very lock it takes.
func checkpointLockName(cfg config.Config) string {
	return canal.LockName("stocksync/" + cfg.Checkpoint.Table + "/" + cfg.Checkpoint.Name)
}

// awaitLock waits until this daemon holds the checkpoint's lock, connecting to the
// source as often as it must; nil when ctx is done first. What it waits for, it records
// for /readyz (waitingFor): a standby whose source does not answer must not send whoever
// reads /readyz looking for another daemon that leads.
func (d *daemon) awaitLock(ctx context.Context) *heldLock {
	name := checkpointLockName(d.cfg)
	d.waitingFor("connecting to the source")
	for ctx.Err() == nil {
		server, err := canal.Connect(ctx, d.source)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			d.waitingFor(lockWaitReason(canal.LockWait{Unreachable: err}))
			if d.cfg.HA {
				d.log.Warn("standby cannot reach the source", zap.Error(err))
			} else {
				d.log.Warn("cannot reach the source to take the checkpoint's lock again", zap.Error(err))
			}
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
			continue
		}
		// Without ha, until the server notices that the lost connection is gone, that
		// connection may hold the lock itself (up to canal.LockIdleTimeout). After a
		// restart of the server nobody holds it: that is said, not a holder named "".
		holder, _, herr := lockHolder(ctx, server.DB, name)
		if holder != "" {
			d.waitingFor(lockWaitReason(canal.LockWait{}) + " (" + holder + ")")
		}
		switch {
		case herr != nil:
			d.log.Warn("taking the checkpoint's lock: could not ask the source who holds it", zap.String("lock", name), zap.Error(herr))
		case holder == "" && d.cfg.HA:
			d.log.Info("standby: taking the leader lock: no connection holds it", zap.String("lock", name))
		case holder == "":
			d.log.Info("taking the checkpoint's lock again: no connection holds it", zap.String("lock", name))
		case d.cfg.HA:
			d.log.Info("standby: waiting for the leader lock", zap.String("lock", name), zap.String("held_by", holder))
		default:
			d.log.Warn("waiting to take the checkpoint's lock again; nothing is published meanwhile (ha: false)",
				zap.String("lock", name), zap.String("held_by", holder))
		}
		lead, err := canal.AcquireLeadership(ctx, server.DB, name, d.log, func(w canal.LockWait) {
			why := lockWaitReason(w)
			if w.Unreachable == nil && !w.Taken {
				if holder, _, _ := lockHolder(ctx, server.DB, name); holder != "" { // it may have changed hands
					why += " (" + holder + ")"
				}
			}
			d.waitingFor(why)
		})
		if err != nil {
			server.Close()
			if ctx.Err() != nil {
				return nil
			}
			d.waitingFor("taking the leader lock: " + err.Error())
			d.log.Warn("waiting for the leader lock", zap.Error(err))
			continue
		}
		return &heldLock{name: name, server: server, lead: lead, tookOver: holder != ""}
	}
	return nil
}

// lockAtStartWithin bounds how long a daemon without ha tries to take the checkpoint's
// lock at its start, once the server said no one held it: the takeover wait, and a
// GET_LOCK of canal's (2 s) with a second to spare. Only another daemon taking the lock in
// between makes it run out.
const lockAtStartWithin = canal.TakeoverWait + 3*time.Second

// takeLockAtStart takes the checkpoint's lock for a daemon without ha, without waiting
// for another daemon to give it up: with another holding it, the daemon does not start.
func (d *daemon) takeLockAtStart(ctx context.Context) (*heldLock, error) {
	name := checkpointLockName(d.cfg)
	server, err := canal.Connect(ctx, d.source)
	if err != nil {
		return nil, err
	}
	holder, command, err := lockHolder(ctx, server.DB, name)
	if err != nil {
		server.Close()
		return nil, fmt.Errorf("asking the source who holds the checkpoint's lock %q: %w", name, err)
	}
	if holder != "" {
		server.Close()
		return nil, d.lockTaken(name, holder, command)
	}
	actx, cancel := context.WithTimeout(ctx, lockAtStartWithin)
	defer cancel()
	lead, err := canal.AcquireLeadership(actx, server.DB, name, d.log, nil)
	if err != nil {
		defer server.Close()
		if ctx.Err() == nil && actx.Err() != nil {
			holder, command, _ := lockHolder(ctx, server.DB, name)
			return nil, d.lockTaken(name, holder, command)
		}
		return nil, fmt.Errorf("taking the checkpoint's lock %q: %w", name, err)
	}
	return &heldLock{name: name, server: server, lead: lead}, nil
}

// lockTaken is the error of a daemon without ha whose checkpoint's lock another holds
// (lockHolder: holder, and whether it is the checkpoint command).
func (d *daemon) lockTaken(name, holder string, command bool) error {
	if holder == "" {
		holder = "a connection that has since closed"
	}
	if command {
		return fmt.Errorf("checkpoint %q in %s is being changed: %s holds its lock %q on the source; start the daemon again once it has finished",
			d.cfg.Checkpoint.Name, d.cfg.Checkpoint.Table, holder, name)
	}
	return fmt.Errorf("checkpoint %q in %s is in use: another stocksync holds its lock %q on the source (%s). "+
		"Two daemons on one checkpoint would both publish every change. Stop the other daemon, "+
		"or set ha: true on both for this one to wait as its standby",
		d.cfg.Checkpoint.Name, d.cfg.Checkpoint.Table, name, holder)
}

// lockHolder says which connection holds the named lock on db's server, "" when none
// does (canal.HolderOf), and whether it is `stocksync checkpoint` changing the checkpoint
// (its connection also holds checkpointCommandTag).
func lockHolder(ctx context.Context, db *sql.DB, name string) (holder string, command bool, err error) {
	h, held, err := canal.HolderOf(ctx, db, name)
	if err != nil || !held {
		return "", false, err
	}
	if command, err = h.HoldsToo(ctx, db, checkpointCommandTag(name)); command {
		return "the stocksync checkpoint command, changing the checkpoint, on " + h.String(), true, err
	}
	return h.String(), false, err
}

// checkpointCommandTag is the lock `stocksync checkpoint set|delete` holds beside the
// checkpoint's lock (named lock), so that a daemon refused the lock can say who has it.
func checkpointCommandTag(lock string) string { return lock + "/checkpoint-command" }

// supervise runs the pipeline and restarts it from its checkpoint after a retryable
// failure (a lost source or broker), backing off from 1 s, doubling to 30 s. The back-off
// starts again from 1 s only after a run that streamed for a minute: a run that fails
// soon after it streams (an event it cannot get past, a DDL stop, another daemon with its
// server id) is retried ever more slowly, not every second. The first start fails fast
// instead when failFast, so a wrong address or setting is reported at once.
func (d *daemon) supervise(ctx context.Context, lease pipeline.Lease, failFast bool) error {
	backoff := time.Second
	for attempt := 0; ; attempt++ {
		started := time.Now()
		ran, err := d.runOnce(ctx, lease)
		if ctx.Err() != nil {
			return err
		}
		if err == nil {
			return nil
		}
		if failFast && attempt == 0 && !ran || !pipeline.Retryable(err) {
			return err
		}
		if ran && time.Since(started) >= steadyRun {
			backoff = time.Second
		}
		why := err.Error()
		d.stopped.Store(&why)
		d.metrics.Restarts.Inc()
		log := d.log.Warn // an outage the next run may well get past
		if backoff >= 30*time.Second {
			log = d.log.Error // every run for minutes stopped: something needs a person
		}
		log("pipeline stopped; restarting from the checkpoint", zap.Error(err), zap.Duration("after", backoff))
		if !d.backOff(ctx, backoff) {
			return nil
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// stopWithin bounds a stop, from SIGTERM or SIGINT to the exit. A clean stop takes well
// under a second. A broker that stopped answering makes it long: the pipeline waits up to
// 8 s for it to acknowledge what was handed to the producer before it saves the last
// checkpoint, and closing the producer then waits for the broker again (at-least-once up
// to 10 s, exactly-once over 30 s). Past stopWithin the daemon exits 1 where it stands:
// what the broker did not acknowledge comes after the saved checkpoint, and the next start
// publishes it again, as after a kill -9.
const stopWithin = 15 * time.Second

// exitIfTheStopOverruns ends the process, exit 1, when serve has not returned (returned
// closed) stopWithin after ctx is done: after SIGTERM or SIGINT.
func (d *daemon) exitIfTheStopOverruns(ctx context.Context, returned <-chan struct{}) {
	select {
	case <-returned:
		return
	case <-ctx.Done():
	}
	overrun := time.NewTimer(stopWithin)
	defer overrun.Stop()
	select {
	case <-returned:
	case <-overrun.C:
		fields := []zap.Field{zap.Stringer("after", stopWithin)}
		if why := d.stopFailure.Load(); why != nil {
			fields = append(fields, zap.String("last_checkpoint_not_saved", *why))
		}
		d.log.Error("stopping took too long: exiting now, without waiting for the broker; the checkpoint stays at the last one saved, and the next start publishes again what came after it", fields...)
		d.log.Sync()
		os.Exit(1)
	}
}

// steadyRun is how long a run must stream for the back-off to start again from 1 s.
const steadyRun = time.Minute

// backOff waits for d, or less when the broker was down and answers again (a broker back
// from an outage should not wait out a long back-off). It returns false when ctx is done.
func (d *daemon) backOff(ctx context.Context, wait time.Duration) bool {
	brokerWasDown := d.pinger.Ping(ctx) != nil
	timer := time.NewTimer(wait)
	defer timer.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-tick.C:
			if brokerWasDown && d.pinger.Ping(ctx) == nil {
				d.log.Info("the broker answers again; restarting now")
				return true
			}
		}
	}
}

// runOnce builds a sink and a pipeline and runs them; ran says the stream got going.
func (d *daemon) runOnce(ctx context.Context, lease pipeline.Lease) (ran bool, err error) {
	sink, checkpoints, err := newDelivery(ctx, d.cfg, d.brokers, d.kafka, lease, d.log)
	if err != nil {
		return false, err
	}
	if kc, ok := checkpoints.(*pipeline.KafkaCheckpoints); ok {
		kc.Last = &d.checkpoint
		if len(d.cfg.Kafka.Brokers) > 0 { // the embedded development broker keeps nothing on purpose
			kc.MirrorTable = d.cfg.Checkpoint.Table
		}
	}
	var readCheckpointTopic func(context.Context) (map[string][]byte, error)
	if !d.cfg.Kafka.ExactlyOnce && len(d.cfg.Kafka.Brokers) > 0 {
		// To take over an exactly-once checkpoint after kafka.exactly_once was switched off.
		readCheckpointTopic = func(ctx context.Context) (map[string][]byte, error) {
			return sinks.ReadCheckpoints(ctx, d.brokers, d.kafka, d.cfg.Kafka.CheckpointTopic)
		}
	}
	defer func() {
		if cerr := sink.Close(); cerr != nil {
			d.log.Warn("closing the Kafka sink", zap.Error(cerr))
		}
	}()
	p := pipeline.New(pipeline.Options{
		Source:              d.source,
		CheckpointTable:     d.cfg.Checkpoint.Table,
		CheckpointName:      d.cfg.Checkpoint.Name,
		CheckpointInterval:  d.cfg.Checkpoint.Interval,
		Checkpoints:         checkpoints,
		ReadCheckpointTopic: readCheckpointTopic,
		ExactlyOnce:         d.cfg.Kafka.ExactlyOnce,
		Snapshot:            d.cfg.Snapshot,
		SnapshotChunkSize:   d.cfg.SnapshotChunkSize,
		SnapshotPartAfter:   d.cfg.Kafka.TransactionTimeout / 2,
		Rules:               d.rules.Load(),
		Sink:                sink,
		Logger:              d.log,
		Metrics:             d.metrics,
		Lease:               lease,
		Heartbeat:           pipeline.Heartbeat{Topic: d.cfg.Kafka.HeartbeatTopic, Interval: d.cfg.Kafka.HeartbeatInterval},
	})
	d.startedPipeline(p)
	defer d.current.Store(nil)
	d.stopFailure.Store(nil)
	err = p.Run(ctx)
	if err != nil && ctx.Err() != nil {
		why := err.Error()
		d.stopFailure.Store(&why) // closing the sink, next, may wait for the broker past stopWithin
	}
	return p.Streamed() || errors.Is(err, sinks.ErrSinkFailed), err
}

// deliverySink is what a pipeline delivers through and the daemon closes.
type deliverySink interface {
	pipeline.Sink
	Close() error
}

// newDelivery connects the sink the config asks for. At-least-once: the idempotent
// producer, checkpoints in the source's checkpoint table (nil Checkpointer). Exactly-once:
// the transactional producer (fencing any older one with the same transactional id), and
// checkpoints read from its topic only after that, so a transaction the old producer
// left open is settled first. With a lease (ha), the at-least-once producer writes
// nothing to the brokers once it is not held (exactly-once, the next leader's producer
// fences this one).
func newDelivery(ctx context.Context, cfg config.Config, brokers []string, sec sinks.Security, lease pipeline.Lease, log *zap.Logger) (deliverySink, pipeline.Checkpointer, error) {
	if !cfg.Kafka.ExactlyOnce {
		kc := sinks.KafkaConfig{Brokers: brokers, ClientID: cfg.Kafka.ClientID,
			MaxInFlight: cfg.Kafka.MaxInFlight, MaxInFlightBytes: cfg.Kafka.MaxInFlightBytes, Partitioner: cfg.Kafka.Partitioner,
			MaxMessageBytes: cfg.Kafka.MaxMessageBytes, Security: sec, Logger: log}
		if lease != nil {
			kc.MayWrite = lease.Held
		}
		sink, err := sinks.NewKafka(ctx, kc)
		if err != nil {
			return nil, nil, pipeline.MarkRetryable(err)
		}
		return sink, nil, nil
	}
	tx, err := sinks.NewTransactional(ctx, sinks.TransactionalConfig{Brokers: brokers, ClientID: cfg.Kafka.ClientID,
		TransactionalID: cfg.Kafka.TransactionalID, CheckpointTopic: cfg.Kafka.CheckpointTopic,
		Partitioner: cfg.Kafka.Partitioner, MaxMessageBytes: cfg.Kafka.MaxMessageBytes, MaxInFlight: cfg.Kafka.MaxInFlight,
		MaxInFlightBytes: cfg.Kafka.MaxInFlightBytes, TransactionTimeout: cfg.Kafka.TransactionTimeout, Security: sec, Logger: log})
	if err != nil {
		return nil, nil, pipeline.MarkRetryable(err)
	}
	loaded, err := sinks.ReadCheckpoints(ctx, brokers, sec, cfg.Kafka.CheckpointTopic)
	if err != nil {
		tx.Close()
		return nil, nil, pipeline.MarkRetryable(fmt.Errorf("reading checkpoints from %s: %w", cfg.Kafka.CheckpointTopic, err))
	}
	return tx, &pipeline.KafkaCheckpoints{Name: cfg.Checkpoint.Name, Sink: tx, Loaded: loaded}, nil
}

// sourceConfig is how canal reaches cfg's source, TLS included.
func sourceConfig(cfg config.Config) (canal.Config, error) {
	tlsConfig, err := cfg.Source.ClientTLS()
	if err != nil {
		return canal.Config{}, err
	}
	return canal.Config{Addr: cfg.Source.Addr, User: cfg.Source.User, Password: cfg.Source.Password,
		ServerID: cfg.Source.ServerID, Flavor: cfg.Source.Flavor, TLS: tlsConfig, Checkpoint: checkpointLockName(cfg),
		RenamedAwayWait: cfg.Source.RenamedTableWait}, nil
}

// startedPipeline makes p the running pipeline, and asks pingBroker for a ping at once.
func (d *daemon) startedPipeline(p *pipeline.Pipeline) {
	d.current.Store(p)
	select {
	case d.pingNow <- struct{}{}:
	default: // one is asked for already
	}
}

// pingBroker keeps d.brokerDown current for /readyz while a pipeline runs: as a pipeline
// starts (d.pingNow), then every 2 s, it asks the brokers a Kafka request with kafka.tls and kafka.sasl (d.pinger, whose
// connection stays open between pings, so it logs in once rather than every 2 s), so a
// port that accepts connections but does not serve (a TLS or SASL mismatch, a broker
// still starting, another program) is not taken for a broker.
func (d *daemon) pingBroker(ctx context.Context) {
	for {
		why := "not asked while no pipeline runs"
		if d.current.Load() != nil {
			why = ""
			if err := d.pinger.Ping(ctx); err != nil {
				why = err.Error()
			}
		}
		if ctx.Err() != nil {
			return
		}
		d.brokerDown.Store(&why)
		select {
		case <-ctx.Done():
			return
		case <-d.pingNow:
		case <-time.After(d.pingEvery):
		}
	}
}

// rulesSettle is how long the rules file's directory must be quiet after an event naming
// the file before the file is read: a save is often several events (truncate, write,
// rename), and the file is never read half-written.
const rulesSettle = 300 * time.Millisecond

// rulesWatch is what watchRules listens to: SIGHUP, and the directories of the rules file
// (startRulesWatch).
type rulesWatch struct {
	hup   chan os.Signal
	files *fsnotify.Watcher // nil when the directory cannot be watched: SIGHUP alone
	// target is the directory of the file the rules path resolves to when that is not the
	// path's own directory (a symbolic link to a file elsewhere), watched too.
	target string
}

// startRulesWatch starts listening for SIGHUP and for changes in the rules file's
// directory; watchRules then acts on them. When it returns, a change is seen.
func (d *daemon) startRulesWatch() *rulesWatch {
	rw := &rulesWatch{hup: make(chan os.Signal, 1)}
	signal.Notify(rw.hup, syscall.SIGHUP)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		d.log.Warn("rules file not watched: the rules reload on SIGHUP only", zap.Error(err))
		return rw
	}
	// Watch the directory, not the file: editors replace files rather than write them in
	// place, and a Kubernetes ConfigMap volume changes rules.yaml, a link through ..data,
	// by renaming a new ..data link over the old, an event that names ..data alone.
	if err := w.Add(filepath.Dir(d.cfg.Rules)); err != nil {
		w.Close()
		d.log.Warn("rules file not watched: the rules reload on SIGHUP only", zap.String("dir", filepath.Dir(d.cfg.Rules)), zap.Error(err))
		return rw
	}
	rw.files = w
	rw.followTarget(d.cfg.Rules)
	return rw
}

// followTarget watches the directory of the file path resolves to, when it differs from
// path's own and from the one watched so far (a link moved to another directory).
func (rw *rulesWatch) followTarget(path string) {
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return
	}
	dir := filepath.Dir(resolved)
	if own, err := filepath.EvalSymlinks(filepath.Dir(path)); err == nil && own == dir || dir == rw.target {
		return
	}
	if rw.target != "" {
		_ = rw.files.Remove(rw.target) // gone already when the kubelet removed it
	}
	rw.target = ""
	if rw.files.Add(dir) == nil {
		rw.target = dir
	}
}

// mayChangeRules reports whether ev, in a watched directory, may change what the rules
// path reads: a file created, removed or renamed (an editor's save, a ConfigMap's new
// ..data link), or a write to the file itself or to the one it resolves to. A write to
// another file cannot: a log written beside the rules file, which at log.level debug
// would otherwise have the file read again for each of its own "read again" lines, for
// ever.
func mayChangeRules(ev fsnotify.Event, path string) bool {
	if ev.Op&^(fsnotify.Write|fsnotify.Chmod) != 0 || sameFile(ev.Name, path) {
		return true
	}
	resolved, err := filepath.EvalSymlinks(path)
	return err != nil || sameFile(ev.Name, resolved)
}

func (rw *rulesWatch) close() {
	signal.Stop(rw.hup)
	if rw.files != nil {
		rw.files.Close()
	}
}

// watchRules reloads the rules on SIGHUP and when the file changes, until ctx is done,
// then closes rw. A file that does not load is logged with its errors and counted; the
// running rules stay. An event in the watched directories that may change the file
// (mayChangeRules: not a write to another file) has it read again once
// they settle (rulesSettle; events naming the file itself put the read off until it is
// quiet, others do not, so a busy neighbour, a log written beside it, cannot put it off
// for ever), and it is reloaded only when its contents differ from the running rules'
// and from the last rejected file's: one save is often met by both the watcher and a
// SIGHUP from whoever saved it, and the directory's other files change too. A rejected
// file is counted once however often it is tried (a SIGHUP always tries it again: the
// source it is checked against, its grants or its tables, may have changed).
func (d *daemon) watchRules(ctx context.Context, rw *rulesWatch) {
	defer rw.close()
	var changed <-chan fsnotify.Event
	var failed <-chan error
	if rw.files != nil {
		changed, failed = rw.files.Events, rw.files.Errors
	}
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	pending := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-rw.hup:
			d.reloadRules("SIGHUP", true)
		case ev := <-changed:
			if !mayChangeRules(ev, d.cfg.Rules) {
				continue
			}
			if !pending || sameFile(ev.Name, d.cfg.Rules) {
				settle.Reset(rulesSettle)
				pending = true
			}
		case err := <-failed:
			// Events may have been lost (the kernel's queue overflowed): read the file.
			d.log.Warn("watching the rules file", zap.Error(err))
			settle.Reset(rulesSettle)
			pending = true
		case <-settle.C:
			pending = false
			d.log.Debug("rules file read again after a change in its directory", zap.String("file", d.cfg.Rules))
			d.reloadRules("file changed", false)
			rw.followTarget(d.cfg.Rules)
		}
	}
}

// errRulesMisfit is a rules file that does not fit the source's tables.
var errRulesMisfit = errors.New("the rules do not fit the source's tables")

// rulesFitSource checks set against the source's live tables (rulesOnSource, not strict):
// errRulesMisfit with the problems, or the error of the check itself. When set fits it
// logs the warnings at WARN, once for each start and each reload that runs this check.
func (d *daemon) rulesFitSource(ctx context.Context, set *rules.Set) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	found, err := rulesOnSource(ctx, d.source, d.cfg.Checkpoint.Table, set, false)
	if err != nil {
		return fmt.Errorf("checking the rules against the source's tables: %w", err)
	}
	if len(found.problems) > 0 {
		return fmt.Errorf("%w:\n%w", errRulesMisfit, errors.Join(found.problems...))
	}
	for _, c := range found.cascades {
		c.log(d.log)
	}
	return nil
}

// reloadRules reads the rules file and installs it when it loads and fits the source.
// A file with the running rules' contents is left alone, and so is the last rejected
// file unless asked: a SIGHUP, which tries a rejected file again (the source it is
// checked against may have changed) and says when there is nothing to reload. The
// watcher's reads, after any change in the file's directory, are quiet about a file
// that did not change. A file that cannot be read counts as one of no contents
// (rulesFile's digest), so that it is rejected, and said, once.
func (d *daemon) reloadRules(why string, asked bool) {
	data, readErr := os.ReadFile(d.cfg.Rules)
	if readErr != nil {
		data = nil
	}
	digest := sha256.Sum256(data)
	rejectedBefore := d.rejectedRules != nil && *d.rejectedRules == digest
	switch {
	case readErr == nil && digest == d.runningRules:
		if asked {
			d.log.Info("rules reload: the file is the one the running rules were read from; nothing to reload", zap.String("trigger", why))
		}
		return
	case rejectedBefore && !asked:
		return
	}
	file, err := parseRulesFile(d.cfg.Rules, data, readErr, reservedTopics(d.cfg))
	if err == nil {
		// A source that does not answer now does not hold the reload back: the stream
		// would meet the same problems, and says so.
		if err = d.rulesFitSource(context.Background(), file.set); err != nil && !errors.Is(err, errRulesMisfit) {
			d.log.Warn("rules reload: the source could not be checked; accepting the file", zap.Error(err))
			err = nil
		}
	}
	if err != nil {
		d.log.Error("rules reload rejected; the running rules stay", zap.String("trigger", why), zap.String("file", d.cfg.Rules),
			zap.Bool("counted_before", rejectedBefore), zap.Error(err))
		if !rejectedBefore {
			d.reloads.Inc() // after the log: who sees the count finds the reason logged
		}
		d.rejectedRules = &file.digest
		return
	}
	d.rules.Store(file.set)
	d.runningRules, d.rejectedRules = file.digest, nil
	if p := d.current.Load(); p != nil {
		p.Reload(file.set)
	}
	d.log.Info("rules reload accepted: the next transaction read goes through the new rules", zap.String("trigger", why), zap.Int("rules", len(file.set.Rules())))
}

// rulesFile is a rules file as read once: its rules, and the SHA-256 of its contents
// (of no contents when it could not be read), by which a reload tells whether it changed.
type rulesFile struct {
	set    *rules.Set
	digest [sha256.Size]byte
}

// readRulesFile reads and compiles the rules file at path, as rules.Load does, keeping
// the digest of what it read, and refuses a rule that publishes to one of the daemon's
// own topics, reserved (reservedTopics).
func readRulesFile(path string, reserved []rules.ReservedTopic) (rulesFile, error) {
	data, err := os.ReadFile(path)
	return parseRulesFile(path, data, err, reserved)
}

// parseRulesFile is readRulesFile of data, read from path with readErr.
func parseRulesFile(path string, data []byte, readErr error, reserved []rules.ReservedTopic) (rulesFile, error) {
	if readErr != nil {
		return rulesFile{digest: sha256.Sum256(nil)}, fmt.Errorf("reading rules: %w", readErr)
	}
	set, err := rules.Parse(path, data)
	if err == nil {
		if err = set.CheckReservedTopics(reserved); err != nil {
			set = nil
		}
	}
	return rulesFile{set: set, digest: sha256.Sum256(data)}, err
}

// reservedTopics are the topics the daemon writes its own records to under cfg, which no
// rule may publish to: kafka.heartbeat_topic, and kafka.checkpoint_topic exactly-once.
func reservedTopics(cfg config.Config) []rules.ReservedTopic {
	reserved := []rules.ReservedTopic{{Topic: cfg.Kafka.HeartbeatTopic, Key: "kafka.heartbeat_topic"}}
	if cfg.Kafka.ExactlyOnce {
		reserved = append(reserved, rules.ReservedTopic{Topic: cfg.Kafka.CheckpointTopic, Key: "kafka.checkpoint_topic"})
	}
	return reserved
}

// sameFile reports whether two paths name the same file.
func sameFile(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}
