package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/config"
	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/pipeline"
	"github.com/stocksync/stocksync/sinks"
)

// TestBrokerPingedAsAPipelineStarts: /readyz's broker check does not wait for the next
// tick once a pipeline runs (a reviewer saw "not asked while no pipeline runs" for 2 s
// after the stream had started). With ticks an hour apart, only the ping at the start
// can clear it.
func TestBrokerPingedAsAPipelineStarts(t *testing.T) {
	pinger, err := sinks.NewPinger([]string{startDevBroker(t)}, sinks.Security{})
	if err != nil {
		t.Fatal(err)
	}
	defer pinger.Close()
	d := &daemon{pinger: pinger, pingNow: make(chan struct{}, 1), pingEvery: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.pingBroker(ctx)
	testutil.Eventually(t, 10*time.Second, "the first ping, with no pipeline", func() bool { return d.brokerDown.Load() != nil })
	if why := *d.brokerDown.Load(); why == "" {
		t.Fatalf("broker answered with no pipeline running: want it not asked")
	}

	d.startedPipeline(pipeline.New(pipeline.Options{}))
	testutil.Eventually(t, 10*time.Second, "the broker asked as the pipeline started", func() bool {
		why := d.brokerDown.Load()
		return why != nil && *why == ""
	})
}

func oneRuleOn(topic string) string {
	return "rules:\n  - name: r\n    match: {table: shop.stock}\n    topic: " + topic + "\n"
}

// watchingDaemon runs watchRules over the rules file at path, the source unreachable (a
// reload then accepts the file unchecked, as serve does), and returns the daemon and its
// log. The watch is set up when it returns.
func watchingDaemon(t *testing.T, path string, alsoLogTo ...zapcore.Core) (*daemon, *observer.ObservedLogs) {
	t.Helper()
	file, err := readRulesFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	d := &daemon{cfg: config.Config{Rules: path}, log: zap.New(zapcore.NewTee(append(alsoLogTo, core)...)), source: canal.Config{Addr: "127.0.0.1:1", User: "x"},
		reloads: prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})}
	d.rules.Store(file.set)
	d.runningRules = file.digest
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	rw := d.startRulesWatch()
	if rw.files == nil {
		t.Fatal("the rules file's directory is not watched")
	}
	go func() { defer close(done); d.watchRules(ctx, rw) }()
	t.Cleanup(func() { cancel(); <-done })
	return d, logs
}

func runningTopic(d *daemon) string { return d.rules.Load().Rules()[0].Topic() }

// TestRulesReloadOnAnEditorsSave: an editor's save, a new file renamed over rules.yaml,
// reloads the rules; a change of another file of the directory before it reloads nothing
// and logs nothing.
func TestRulesReloadOnAnEditorsSave(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yaml")
	writeFile(t, path, oneRuleOn("t.one"))
	d, logs := watchingDaemon(t, path)
	writeFile(t, filepath.Join(dir, "stocksync.yaml"), "log: {level: info}\n")
	testutil.Eventually(t, 5*time.Second, "the file to be read again after the other file's change", func() bool {
		return logs.FilterMessageSnippet("rules file read again").Len() > 0
	})
	if n := logs.FilterMessageSnippet("nothing to reload").Len(); n != 0 {
		t.Errorf("the other file's change alone: %d lines saying there is nothing to reload; want none", n)
	}
	writeFile(t, path+".tmp", oneRuleOn("t.two"))
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the replaced file to be reloaded", func() bool { return runningTopic(d) == "t.two" })
	if logs.FilterMessageSnippet("rules reload accepted").Len() != 1 || logs.FilterMessageSnippet("nothing to reload").Len() != 0 {
		t.Errorf("want one accepted reload and nothing said of the other file: %v", logs.All())
	}
}

// TestALogBesideTheRulesFileDoesNotKeepItBeingRead: serve's log written to a file in the
// rules file's directory (serve > serve.log run beside rules.yaml) at log.level debug: a
// write to another file cannot change the rules, so the daemon's own "read again" line,
// written there, does not have the file read again, and again, every rulesSettle for ever.
func TestALogBesideTheRulesFileDoesNotKeepItBeingRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yaml")
	writeFile(t, path, oneRuleOn("t.one"))
	logFile, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	_, logs := watchingDaemon(t, path, zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(logFile), zapcore.DebugLevel))
	writeFile(t, filepath.Join(dir, "stocksync.yaml"), "log: {level: debug}\n") // a new file: read once
	readAgain := func() int { return logs.FilterMessageSnippet("rules file read again").Len() }
	testutil.Eventually(t, 5*time.Second, "the file to be read again after the new file", func() bool { return readAgain() > 0 })
	// The line just logged is written to serve.log; what follows it can only be absence,
	// so wait some settle periods and count.
	time.Sleep(5 * rulesSettle)
	if n := readAgain(); n != 1 {
		t.Errorf("the rules file was read again %d times; want once: its own log lines beside it had it read again", n)
	}
}

// TestRulesReloadOnAConfigMapUpdate: docs/rules.md: the daemon reads the rules again "when
// the file changes". A Kubernetes ConfigMap volume mounts rules.yaml as a link to
// ..data/rules.yaml and updates it by renaming a new ..data link, to a new directory, over
// the old: the file's contents change, and no event names rules.yaml.
func TestRulesReloadOnAConfigMapUpdate(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(dir, "..v1"), 0o755))
	writeFile(t, filepath.Join(dir, "..v1", "rules.yaml"), oneRuleOn("t.one"))
	must(os.Symlink("..v1", filepath.Join(dir, "..data")))
	must(os.Symlink("..data/rules.yaml", filepath.Join(dir, "rules.yaml")))
	path := filepath.Join(dir, "rules.yaml")
	d, _ := watchingDaemon(t, path)

	// What the kubelet does: a new directory, a new ..data link renamed over the old one,
	// the old directory removed.
	update := func(version, topic string) {
		must(os.Mkdir(filepath.Join(dir, version), 0o755))
		writeFile(t, filepath.Join(dir, version, "rules.yaml"), oneRuleOn(topic))
		must(os.Symlink(version, filepath.Join(dir, "..data_tmp")))
		must(os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	}
	update("..v2", "t.two")
	must(os.RemoveAll(filepath.Join(dir, "..v1")))
	testutil.Eventually(t, 5*time.Second, "the ConfigMap's update to be reloaded", func() bool { return runningTopic(d) == "t.two" })
	update("..v3", "t.three")
	must(os.RemoveAll(filepath.Join(dir, "..v2")))
	testutil.Eventually(t, 5*time.Second, "the ConfigMap's second update to be reloaded", func() bool { return runningTopic(d) == "t.three" })
}

// TestRulesReloadThroughALinkToAnotherDirectory: rules.yaml a link to a file in another
// directory, written there in place, reloads: the directory of the file the link resolves
// to is watched too.
func TestRulesReloadThroughALinkToAnotherDirectory(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	target := filepath.Join(elsewhere, "stock-rules.yaml")
	writeFile(t, target, oneRuleOn("t.one"))
	path := filepath.Join(dir, "rules.yaml")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	d, _ := watchingDaemon(t, path)
	writeFile(t, target, oneRuleOn("t.two"))
	testutil.Eventually(t, 5*time.Second, "the link's file, written in place, to be reloaded", func() bool { return runningTopic(d) == "t.two" })
}
