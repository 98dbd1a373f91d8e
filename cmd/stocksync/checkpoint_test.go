package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/config"
	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/pipeline"
	"github.com/stocksync/stocksync/sinks"
)

// runCheckpointCLI runs `stocksync checkpoint ARGS… --config config` in this process and
// returns its stdout and error.
// otherTestsXA lets a test's `checkpoint set` through while XA transactions are prepared
// on the shared server: another package's XA tests hold some prepared for a moment, and
// the refusal has a test of its own (TestCheckpointSetRefusesWhileXATransactionsArePrepared).
const otherTestsXA = "--allow-prepared-xa"

func runCheckpointCLI(t *testing.T, config string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetArgs(append(append([]string{"checkpoint"}, args...), "--config", config))
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.Execute()
	return out.String(), err
}

// TestCheckpointCommandMovesTheCheckpointUnlessADaemonHoldsIt: `checkpoint show` says
// there is none, `set` of a file the server lacks is refused with nothing written,
// `set --current` and `set --file --pos` move it (the second deletes the
// seed marker saved with it and keeps the group, and says so), `show --json` reports it held by the binlogs;
// while another connection holds the checkpoint's lock (a daemon), `delete` is refused,
// naming the lock, and nothing changes; then it deletes. Exactly-once, `show` reads the
// checkpoint topic and `set` is refused, naming what to do instead. `serve` with the
// source's own server_id does not start.
func TestCheckpointCommandMovesTheCheckpointUnlessADaemonHoldsIt(t *testing.T) {
	m := testutil.MySQLServer(t)
	schema, db := m.FreshDatabase(t, "ckptcli")
	dir := t.TempDir()
	conf := filepath.Join(dir, "stocksync.yaml")
	writeFile(t, conf, fmt.Sprintf("source: {addr: %q, user: %q, password: %q, server_id: %d}\ncheckpoint: {table: %s.checkpoint, name: cli}\n",
		m.Addr, m.User, m.Password, testutil.ServerID(), schema))
	writeFile(t, filepath.Join(dir, "rules.yaml"), "rules:\n  - {name: rows, match: {table: "+schema+".none}, topic: rows}\n")

	out, err := runCheckpointCLI(t, conf, "show")
	if err != nil || !strings.Contains(out, `checkpoint "cli": none saved`) || !strings.Contains(out, "start from the server's current position") {
		t.Fatalf("show before any checkpoint: %v\n%s", err, out)
	}
	if out, err := runCheckpointCLI(t, conf, "show", "--json"); err != nil || !strings.Contains(out, `"found": false`) || strings.Contains(out, `"held"`) {
		t.Errorf("show --json before any checkpoint: %v\n%s; want found false and no held", err, out)
	}
	// A bad value is refused before anything is written: not even the tables are made.
	if _, err := runCheckpointCLI(t, conf, "set", "--file", "binlog.999999", "--pos", "4", otherTestsXA); err == nil || !strings.Contains(err.Error(), "--file binlog.999999") {
		t.Errorf("set --file of a binlog the server does not have: %v; want a refusal naming it", err)
	}
	var tables int
	if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", schema).Scan(&tables); err != nil || tables != 0 {
		t.Errorf("the refused set left %d tables (%v); want none", tables, err)
	}
	if out, err := runCheckpointCLI(t, conf, "set", "--current", otherTestsXA); err != nil || !strings.Contains(out, "moved from none to") {
		t.Fatalf("set --current: %v\n%s", err, out)
	}
	testutil.Exec(t, db, "INSERT INTO checkpoint_state (name, scope, k, v) VALUES ('cli', 'total', '{\"sku_id\":\"A1\"}', '1'), "+
		"('cli', 'total', CONCAT(CHAR(0), 'seeded'), 'sig')")
	var file string
	var pos uint64
	if err := db.QueryRow("SELECT file, pos FROM checkpoint WHERE name = 'cli'").Scan(&file, &pos); err != nil {
		t.Fatal(err)
	}
	out, err = runCheckpointCLI(t, conf, "set", "--file", file, "--pos", fmt.Sprint(pos), otherTestsXA)
	if err != nil || !strings.Contains(out, "1 rule state rows deleted") || !strings.Contains(out, "1 group rows kept") ||
		!strings.Contains(out, "seeded again at the next start") {
		t.Fatalf("set --file %s --pos %d over a checkpoint with state: %v\n%s", file, pos, err, out)
	}
	var keys string
	if err := db.QueryRow("SELECT GROUP_CONCAT(k) FROM checkpoint_state WHERE name = 'cli'").Scan(&keys); err != nil || keys != `{"sku_id":"A1"}` {
		t.Fatalf("state rows left after set: %q (%v); want the group alone, without its rule's seed marker", keys, err)
	}
	var shown checkpointReport
	if out, err := runCheckpointCLI(t, conf, "show", "--json"); err != nil || json.Unmarshal([]byte(out), &shown) != nil {
		t.Fatalf("show --json: %v\n%s", err, out)
	}
	if !shown.Found || shown.Kept != "table" || shown.File != file || uint64(shown.Pos) != pos || shown.GTID == "" || shown.Held == nil || !*shown.Held || shown.SavedAt == nil {
		t.Errorf("show --json = %+v; want %s:%d with its GTIDs, saved, held by the binlogs", shown, file, pos)
	}

	lockName := checkpointLockName(config.Config{Checkpoint: config.Checkpoint{Table: schema + ".checkpoint", Name: "cli"}})
	daemon, err := canal.TryLock(t.Context(), m.Open(t, ""), lockName)
	if err != nil || daemon == nil {
		t.Fatalf("taking the checkpoint's lock as a daemon would: %v", err)
	}
	out, err = runCheckpointCLI(t, conf, "delete")
	if err == nil || !strings.Contains(err.Error(), "is in use") || !strings.Contains(err.Error(), lockName) {
		t.Errorf("delete while a daemon holds the lock: %v\n%s; want a refusal naming the lock", err, out)
	}
	daemon.Release()
	var left int
	if err := db.QueryRow("SELECT COUNT(*) FROM checkpoint WHERE name = 'cli'").Scan(&left); err != nil || left != 1 {
		t.Errorf("the refused delete left %d checkpoint rows (%v); want it untouched", left, err)
	}
	if out, err := runCheckpointCLI(t, conf, "delete"); err != nil || !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if out, err := runCheckpointCLI(t, conf, "show"); err != nil || !strings.Contains(out, "none saved") {
		t.Errorf("show after delete: %v\n%s", err, out)
	}

	// Exactly-once: the checkpoint is in the topic.
	broker := testutil.Broker(t)
	eo := filepath.Join(dir, "exactly-once.yaml")
	writeFile(t, eo, fmt.Sprintf("source: {addr: %q, user: %q, password: %q, server_id: %d}\ncheckpoint: {table: %s.checkpoint, name: cli}\n"+
		"kafka: {brokers: [%q], exactly_once: true, transactional_id: ckpt-cli, checkpoint_topic: cli.checkpoints}\n",
		m.Addr, m.User, m.Password, testutil.ServerID(), schema, broker))
	tx, err := sinks.NewTransactional(t.Context(), sinks.TransactionalConfig{Brokers: []string{broker}, TransactionalID: "ckpt-cli", CheckpointTopic: "cli.checkpoints"})
	if err != nil {
		t.Fatal(err)
	}
	at := canal.Position{File: file, Pos: uint32(pos)}
	err = (&pipeline.KafkaCheckpoints{Name: "cli", Sink: tx}).Save(t.Context(), at, []canal.StateRow{{Scope: "total", Key: "k", Value: []byte("1")}})
	tx.Close()
	if err != nil {
		t.Fatal(err)
	}
	shown = checkpointReport{}
	if out, err := runCheckpointCLI(t, eo, "show", "--json"); err != nil || json.Unmarshal([]byte(out), &shown) != nil {
		t.Fatalf("show --json, exactly-once: %v\n%s", err, out)
	}
	if !shown.Found || shown.Kept != "checkpoint_topic" || shown.File != file || uint64(shown.Pos) != pos || shown.StateRows != 1 {
		t.Errorf("show --json, exactly-once = %+v; want %s from the topic with 1 state row", shown, at)
	}
	if _, err := runCheckpointCLI(t, eo, "set", "--current", otherTestsXA); err == nil || !strings.Contains(err.Error(), "new checkpoint.name") {
		t.Errorf("set, exactly-once: %v; want a refusal naming what to do instead", err)
	}

	// serve with the source's own id: refused at its start.
	var own uint32
	if err := db.QueryRow("SELECT @@server_id").Scan(&own); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "serve", "--config", conf)
	cmd.Env = append(os.Environ(), fmt.Sprintf("STOCKSYNC_SOURCE_SERVER_ID=%d", own), "STOCKSYNC_HTTP_ADDR=127.0.0.1:0")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), fmt.Sprintf("source.server_id %d is the source server's own @@server_id", own)) {
		t.Errorf("serve with the source's own server_id: %v\n%s; want it refused at the start", err, out)
	}

	// serve while the command holds the lock (as set and delete do, for a moment): it
	// says so, not that another daemon runs.
	command, err := canal.TryLock(t.Context(), m.Open(t, ""), lockName)
	if err != nil || command == nil {
		t.Fatalf("taking the checkpoint's lock as the command does: %v", err)
	}
	defer command.Release()
	if err := command.Tag(t.Context(), checkpointCommandTag(lockName)); err != nil {
		t.Fatal(err)
	}
	cmd = exec.CommandContext(ctx, binary, "serve", "--config", conf)
	cmd.Env = append(os.Environ(), "STOCKSYNC_HTTP_ADDR=127.0.0.1:0")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), `checkpoint "cli" in `+schema+`.checkpoint is being changed: the stocksync checkpoint command, changing the checkpoint, on connection `) {
		t.Errorf("serve while the checkpoint command holds the lock: %v\n%s; want it refused, naming the command", err, out)
	}
}

// TestCheckpointSetRefusesWhileXATransactionsArePrepared: an XA transaction prepared before
// the position and committed after it would never be published, so `set` refuses while
// XA RECOVER lists one, naming its xid and the flag that moves it anyway.
func TestCheckpointSetRefusesWhileXATransactionsArePrepared(t *testing.T) {
	m := testutil.MySQLServer(t)
	schema, db := m.FreshDatabase(t, "ckptxa")
	dir := t.TempDir()
	conf := filepath.Join(dir, "stocksync.yaml")
	writeFile(t, conf, fmt.Sprintf("source: {addr: %q, user: %q, password: %q, server_id: %d}\ncheckpoint: {table: %s.checkpoint, name: cli}\n",
		m.Addr, m.User, m.Password, testutil.ServerID(), schema))
	writeFile(t, filepath.Join(dir, "rules.yaml"), "rules:\n  - {name: rows, match: {table: "+schema+".orders}, topic: rows}\n")
	testutil.Exec(t, db, "CREATE TABLE orders (id INT PRIMARY KEY)")
	xid := testutil.Name("xa")
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{"XA START '" + xid + "'", "INSERT INTO orders VALUES (1)", "XA END '" + xid + "'", "XA PREPARE '" + xid + "'"} {
		if _, err := conn.ExecContext(t.Context(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	t.Cleanup(func() { db.Exec("XA ROLLBACK '" + xid + "'") })

	_, err = runCheckpointCLI(t, conf, "set", "--current")
	if err == nil || !strings.Contains(err.Error(), "'"+xid+"'") || !strings.Contains(err.Error(), "--allow-prepared-xa") {
		t.Fatalf("set --current while %s is prepared: %v; want a refusal naming it and --allow-prepared-xa", xid, err)
	}
	var rows int
	if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'checkpoint'", schema).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("the refused set made the checkpoint table (%v); want nothing written", err)
	}
	if out, err := runCheckpointCLI(t, conf, "set", "--current", "--allow-prepared-xa"); err != nil || !strings.Contains(out, "moved from none to") {
		t.Errorf("set --current --allow-prepared-xa: %v\n%s", err, out)
	}
	conn.Close() // MariaDB keeps the transaction prepared
}

// TestCheckpointShowAfterResetMasterMeasuresNoDistance: after RESET MASTER the checkpoint
// is not a point of the server's binlog history, whether its file is gone (newer than the
// newest) or back under its name but shorter than its position, or (without GTIDs) with
// no event beginning there. `show` says so, in the words of the start's check, and gives
// no distance to the server's position: no "0 bytes" or "0 transactions" behind, and no
// "behind" in --json.
func TestCheckpointShowAfterResetMasterMeasuresNoDistance(t *testing.T) {
	m := testutil.StartPrivateMariaDB(t, "")
	admin := m.Open(t, "")
	schema := "ckptreset"
	testutil.Exec(t, admin, "CREATE DATABASE "+schema, "CREATE TABLE "+schema+".t (id INT PRIMARY KEY, n INT)", "INSERT INTO "+schema+".t VALUES (1, 0)")
	conf := filepath.Join(t.TempDir(), "stocksync.yaml")
	writeFile(t, conf, fmt.Sprintf("source: {addr: %q, user: %q, password: %q, server_id: %d}\ncheckpoint: {table: %s.checkpoint, name: cli}\n",
		m.Addr, m.User, m.Password, testutil.ServerID(), schema))
	for range 2 {
		testutil.Exec(t, admin, "FLUSH BINARY LOGS", "UPDATE "+schema+".t SET n = n + 1")
	}
	if out, err := runCheckpointCLI(t, conf, "set", "--current"); err != nil {
		t.Fatalf("set --current: %v\n%s", err, out)
	}
	for range 20 { // the checkpoint well inside its file, past where the new history's file of its name ends
		testutil.Exec(t, admin, "UPDATE "+schema+".t SET n = n + 1")
	}
	if out, err := runCheckpointCLI(t, conf, "set", "--current"); err != nil {
		t.Fatalf("set --current: %v\n%s", err, out)
	}
	var file string
	if err := admin.QueryRow("SELECT file FROM " + schema + ".checkpoint WHERE name = 'cli'").Scan(&file); err != nil || !strings.HasSuffix(file, ".000003") {
		t.Fatalf("the checkpoint is in %q (%v); want the third binlog", file, err)
	}
	if out, err := runCheckpointCLI(t, conf, "show"); err != nil || !strings.Contains(out, "hold every change after it") || !strings.Contains(out, "behind:     ") {
		t.Fatalf("show before the reset: %v\n%s", err, out)
	}
	shows := func(what string, why string) {
		t.Helper()
		out, err := runCheckpointCLI(t, conf, "show")
		if err != nil {
			t.Fatalf("%s: show: %v\n%s", what, err, out)
		}
		for _, want := range []string{"binlogs:    DO NOT hold it: not a position in the server's binlog history: " + why, "RESET MASTER",
			"behind:     unknown: the checkpoint is not a position in the server's binlog history (binlogs, above)"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: show lacks %q:\n%s", what, want, out)
			}
		}
		if strings.Contains(out, "0 bytes") || strings.Contains(out, "0 transactions") {
			t.Errorf("%s: show measures a distance to a position of another history:\n%s", what, out)
		}
		var shown checkpointReport
		out, err = runCheckpointCLI(t, conf, "show", "--json")
		if err != nil || json.Unmarshal([]byte(out), &shown) != nil || shown.Held == nil || *shown.Held || shown.Behind != nil {
			t.Errorf("%s: show --json: %v\n%s\nwant held false and no behind", what, err, out)
		}
	}
	testutil.Exec(t, admin, "RESET MASTER", "UPDATE "+schema+".t SET n = n + 1")
	shows("its file gone", "its file "+file+" is newer than the server's newest binlog")
	testutil.Exec(t, admin, "FLUSH BINARY LOGS", "FLUSH BINARY LOGS")
	shows("its file back, shorter", "the server's binlog "+file+" has no event that ends at")
	testutil.Exec(t, admin, "UPDATE "+schema+".checkpoint SET gtid_set = '' WHERE name = 'cli'") // as a server without GTIDs keeps it
	shows("its file back, shorter, without GTIDs", "the server's binlog "+file+" ends at")
}
