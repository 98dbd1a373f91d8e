package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/inventory"
)

// The failure tests of issue 5: the broker gone and back, the source restarted, ALTER
// TABLE in the middle of a stream (running and stopped), one transaction of a million
// rows within 512 MB, and a checkpoint whose binlog the server purged; then a row too
// large for Kafka. Each runs the built binary against real parts: MariaDB, the devbroker
// as its own process, and franz-go reading what was published.

// TestBrokerOutageWaitsAndCatchesUp stops the broker while changes keep being committed,
// checks the daemon says so (/readyz 503, restarts counted) without growing, and that
// everything arrives once the broker is back on the same port and data dir.
//
// The outage lasts ~12 s; the "a minute" takes the same code path (sink fails,
// supervisor backs off up to 30 s between attempts, nothing is read meanwhile), only
// with more back-off steps.
func TestBrokerOutageWaitsAndCatchesUp(t *testing.T) {
	addr := testutil.FreeAddr(t)
	dataDir := t.TempDir()
	broker := runDevBroker(t, addr, dataDir)
	s := newSetup(t, addr)
	db := s.mysql.Open(t, s.db)
	testutil.Exec(t, db, "CREATE TABLE stock_o (sku_id INT PRIMARY KEY, qty INT NOT NULL)")
	d := s.start(t)
	pid := d.cmd.Process.Pid

	next := 0
	write := func(n int) {
		t.Helper()
		for end := next + n; next < end; next++ {
			testutil.Exec(t, db, fmt.Sprintf("INSERT INTO stock_o VALUES (%d, %d)", next, next))
		}
	}
	write(200)
	testutil.Consume(t, addr, []string{s.topic}, 200, 30*time.Second)
	// At least once, the checkpoint follows the acknowledgements: it passes the last
	// insert before the outage, so a restart replays little.
	endFile, endPos := binlogEnd(t, db)
	awaitCheckpointPast(t, db, endFile, endPos)
	restartsBefore := metric(t, s.httpAddr, "stocksync_pipeline_restarts_total")

	broker.stop(t)
	down := time.Now()
	// Keep committing while the broker is away; the daemon must notice and say so.
	peakRSS := int64(0)
	for time.Since(down) < 12*time.Second {
		write(25)
		peakRSS = max(peakRSS, procStatusKB(t, pid, "VmRSS"))
		time.Sleep(250 * time.Millisecond) // a steady trickle of orders during the outage
	}
	if code := httpStatus(s.httpAddr, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d with the broker down for %s, want 503", code, time.Since(down).Round(time.Second))
	}
	restarts := metric(t, s.httpAddr, "stocksync_pipeline_restarts_total")
	if restarts <= restartsBefore {
		t.Errorf("stocksync_pipeline_restarts_total = %v with the broker down, want more than %v", restarts, restartsBefore)
	}
	select {
	case <-d.done:
		t.Fatalf("the daemon exited while the broker was down:\n%s", d.output.String())
	default:
	}

	runDevBroker(t, addr, dataDir)
	up := time.Now()
	testutil.Eventually(t, 60*time.Second, "/readyz to answer 200 after the broker came back", func() bool {
		return httpStatus(s.httpAddr, "/readyz") == http.StatusOK
	})
	t.Logf("broker down %s, %d restarts counted, ready again %s after it came back",
		up.Sub(down).Round(100*time.Millisecond), int(restarts-restartsBefore), time.Since(up).Round(100*time.Millisecond))
	write(100)
	keys := map[string]int{}
	countRecords(t, addr, s.topic, 60*time.Second, func(r *kgo.Record) bool {
		keys[string(r.Key)]++
		return len(keys) >= next
	})
	for i := 0; i < next; i++ {
		if keys[fmt.Sprintf(`{"sku_id":%d}`, i)] == 0 {
			t.Errorf("row %d committed but never published", i)
		}
	}
	hwm := procStatusKB(t, pid, "VmHWM")
	t.Logf("%d rows committed, all published; daemon RSS peak during the outage %d MB, VmHWM %d MB", next, peakRSS>>10, hwm>>10)
	if hwm > 256<<10 {
		t.Errorf("daemon VmHWM %d MB over a small stream and an outage, want under 256 MB", hwm>>10)
	}
}

// TestMySQLRestartReconnectsAndResumes streams from a second private MariaDB (never the
// shared one: other packages' tests use it at the same time), stops and restarts it,
// and checks the daemon says it is not ready meanwhile, reconnects on its own and loses
// nothing.
func TestMySQLRestartReconnectsAndResumes(t *testing.T) {
	src, s, db := setupOnPrivateMariaDB(t, "")
	broker := s.broker
	testutil.Exec(t, db, "CREATE TABLE stock_r (sku_id INT PRIMARY KEY, qty INT NOT NULL)")
	d := s.start(t)
	for i := 0; i < 100; i++ {
		testutil.Exec(t, db, fmt.Sprintf("INSERT INTO stock_r VALUES (%d, 1)", i))
	}
	testutil.Consume(t, broker, []string{s.topic}, 100, 30*time.Second)
	restartsBefore := metric(t, s.httpAddr, "stocksync_pipeline_restarts_total")

	src.Stop(t)
	down := time.Now()
	testutil.Eventually(t, 20*time.Second, "/readyz to answer 503 with the source down", func() bool {
		return httpStatus(s.httpAddr, "/readyz") == http.StatusServiceUnavailable
	})
	t.Logf("/readyz 503 %s after the source stopped", time.Since(down).Round(100*time.Millisecond))
	// Keep it down a while: reconnecting fails meanwhile, and the daemon must keep
	// retrying with back-off, not give up, and keep saying it is not ready.
	for time.Since(down) < 6*time.Second {
		if code := httpStatus(s.httpAddr, "/readyz"); code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz = %d %s after the source stopped, want 503", code, time.Since(down).Round(100*time.Millisecond))
		}
		select {
		case <-d.done:
			t.Fatalf("the daemon exited while the source was down:\n%s", d.output.String())
		case <-time.After(200 * time.Millisecond): // polling /readyz through the outage
		}
	}
	src.Start(t)
	up := time.Now()
	testutil.Eventually(t, 60*time.Second, "/readyz to answer 200 after the source came back", func() bool {
		return httpStatus(s.httpAddr, "/readyz") == http.StatusOK
	})
	t.Logf("source down %s; daemon ready again %s after it came back", up.Sub(down).Round(100*time.Millisecond), time.Since(up).Round(100*time.Millisecond))
	if r := metric(t, s.httpAddr, "stocksync_pipeline_restarts_total"); r <= restartsBefore {
		t.Errorf("stocksync_pipeline_restarts_total = %v after the source restarted, want more than %v", r, restartsBefore)
	}
	select {
	case <-d.done:
		t.Fatalf("the daemon exited:\n%s", d.output.String())
	default:
	}
	// The restart dropped the lock with its connection: the daemon says that nobody
	// holds it as it takes it again, not that it waits for a holder named "".
	if log := d.output.String(); !strings.Contains(log, "taking the checkpoint's lock again: no connection holds it") || strings.Contains(log, `"held_by":""`) {
		t.Errorf("the daemon's log of taking its lock again after the restart:\n%s\nwant it to say no connection held it, and no empty held_by", log)
	}
	db = s.mysql.Open(t, s.db) // the old pool's connections died with the server
	for i := 100; i < 200; i++ {
		testutil.Exec(t, db, fmt.Sprintf("INSERT INTO stock_r VALUES (%d, 2)", i))
	}
	keys := map[string]bool{}
	countRecords(t, broker, s.topic, 60*time.Second, func(r *kgo.Record) bool {
		keys[string(r.Key)] = true
		return len(keys) >= 200
	})
	for i := 0; i < 200; i++ {
		if !keys[fmt.Sprintf(`{"sku_id":%d}`, i)] {
			t.Errorf("row %d committed but never published", i)
		}
	}
}

// TestAlterTableMidStreamMapsColumnsRight changes a table's shape between writes, with
// the daemon running and with it stopped, and checks every message carries each value
// under the name the column had when the row was written.
func TestAlterTableMidStreamMapsColumnsRight(t *testing.T) {
	s := newSetup(t, startDevBroker(t))
	db := s.mysql.Open(t, s.db)
	testutil.Exec(t, db, "CREATE TABLE stock_a (sku_id INT PRIMARY KEY, qty INT NOT NULL, note VARCHAR(20))")
	d := s.start(t)

	// want holds "op before after" of every change, images as canonical JSON.
	want := map[string]bool{}
	img := func(kv ...any) string {
		if len(kv) == 0 {
			return "null"
		}
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	expect := func(op, before, after string) { want[op+" "+before+" "+after] = true }
	exec := func(q string) { t.Helper(); testutil.Exec(t, db, q) }

	// While running. Shape: sku_id, qty, note.
	exec("INSERT INTO stock_a VALUES (1, 10, 'one')")
	expect("c", "null", img("sku_id", 1, "qty", 10, "note", "one"))
	exec("ALTER TABLE stock_a ADD COLUMN color VARCHAR(10) NOT NULL DEFAULT 'red'") // sku_id, qty, note, color
	exec("INSERT INTO stock_a VALUES (2, 20, 'two', 'blue')")
	expect("c", "null", img("sku_id", 2, "qty", 20, "note", "two", "color", "blue"))
	exec("UPDATE stock_a SET qty = 11 WHERE sku_id = 1")
	expect("u", img("sku_id", 1, "qty", 10, "note", "one", "color", "red"), img("sku_id", 1, "qty", 11, "note", "one", "color", "red"))
	exec("ALTER TABLE stock_a DROP COLUMN note") // sku_id, qty, color
	exec("INSERT INTO stock_a VALUES (3, 30, 'green')")
	expect("c", "null", img("sku_id", 3, "qty", 30, "color", "green"))
	exec("UPDATE stock_a SET qty = 21 WHERE sku_id = 2")
	expect("u", img("sku_id", 2, "qty", 20, "color", "blue"), img("sku_id", 2, "qty", 21, "color", "blue"))
	exec("ALTER TABLE stock_a ADD COLUMN shelf INT NOT NULL DEFAULT 7 FIRST") // shelf, sku_id, qty, color
	exec("INSERT INTO stock_a VALUES (4, 4, 40, 'black')")
	expect("c", "null", img("shelf", 4, "sku_id", 4, "qty", 40, "color", "black"))
	exec("DELETE FROM stock_a WHERE sku_id = 3")
	expect("d", img("shelf", 7, "sku_id", 3, "qty", 30, "color", "green"), "null")
	got := testutil.Consume(t, s.broker, []string{s.topic}, len(want), 30*time.Second)
	checkImages(t, got, want)

	// While stopped: the restart reads these from the binlog, the table already in its
	// last shape. The same number of columns as an older shape, on purpose.
	d.terminate(t, 15*time.Second)
	exec("INSERT INTO stock_a VALUES (5, 5, 50, 'white')")
	expect("c", "null", img("shelf", 5, "sku_id", 5, "qty", 50, "color", "white"))
	exec("ALTER TABLE stock_a DROP COLUMN color") // shelf, sku_id, qty
	exec("UPDATE stock_a SET shelf = 1 WHERE sku_id = 5")
	expect("u", img("shelf", 5, "sku_id", 5, "qty", 50), img("shelf", 1, "sku_id", 5, "qty", 50))
	exec("ALTER TABLE stock_a ADD COLUMN note VARCHAR(20) NOT NULL DEFAULT '-' AFTER shelf") // shelf, note, sku_id, qty
	exec("INSERT INTO stock_a VALUES (6, 'six', 6, 60)")
	expect("c", "null", img("shelf", 6, "note", "six", "sku_id", 6, "qty", 60))
	exec("ALTER TABLE stock_a MODIFY qty INT NOT NULL AFTER shelf") // shelf, qty, note, sku_id
	exec("DELETE FROM stock_a WHERE sku_id = 4")
	expect("d", img("shelf", 4, "qty", 40, "note", "-", "sku_id", 4), "null")
	s.start(t)
	got = testutil.Consume(t, s.broker, []string{s.topic}, len(want), 30*time.Second)
	got = append(got, testutil.Consume(t, s.broker, []string{s.topic}, 0, 3*time.Second)...)
	checkImages(t, got, want)
}

// checkImages fails for every message whose before/after is not one of want's, and for
// every wanted change no message carries.
func checkImages(t *testing.T, got []testutil.Record, want map[string]bool) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range got {
		var e struct {
			Op     string          `json:"op"`
			Before json.RawMessage `json:"before"`
			After  json.RawMessage `json:"after"`
		}
		if err := json.Unmarshal([]byte(r.Value), &e); err != nil {
			t.Fatalf("decoding %s: %v", r.Value, err)
		}
		c := e.Op + " " + canonical(t, e.Before) + " " + canonical(t, e.After)
		if !want[c] {
			t.Errorf("published a change never made (columns mapped wrongly?): %s", c)
		}
		seen[c] = true
	}
	var missing []string
	for c := range want {
		if !seen[c] {
			missing = append(missing, c)
		}
	}
	sort.Strings(missing)
	for _, c := range missing {
		t.Errorf("change never published: %s", c)
	}
}

func canonical(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	if len(raw) == 0 {
		return "null"
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// TestMillionRowTransactionStaysUnder512MB commits one transaction of 1,000,000 rows and
// checks all arrive while the daemon's peak RSS stays under 512 MB.
func TestMillionRowTransactionStaysUnder512MB(t *testing.T) {
	if testing.Short() {
		t.Skip("a million rows")
	}
	const rows = 1000000
	s := newSetup(t, startDevBroker(t))
	db := s.mysql.Open(t, s.db)
	testutil.Exec(t, db, "CREATE TABLE stock_m (sku_id INT PRIMARY KEY, qty INT NOT NULL, warehouse VARCHAR(16) NOT NULL)")
	d := s.start(t)
	pid := d.cmd.Process.Pid

	t0 := time.Now()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(fmt.Sprintf("INSERT INTO stock_m SELECT seq, seq %% 97, CONCAT('wh-', seq %% 7) FROM seq_1_to_%d", rows)); err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	committed := time.Since(t0)

	// Sample RSS while it streams; VmHWM is the kernel's own peak.
	var mu sync.Mutex
	peak := int64(0)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if kb, ok := readProcStatusKB(pid, "VmRSS"); ok {
				mu.Lock()
				peak = max(peak, kb)
				mu.Unlock()
			}
		}
	}()
	seen := make([]bool, rows+1)
	distinct, total := 0, 0
	countRecords(t, s.broker, s.topic, 150*time.Second, func(r *kgo.Record) bool {
		total++
		var k struct {
			SkuID int `json:"sku_id"`
		}
		if json.Unmarshal(r.Key, &k) == nil && k.SkuID >= 1 && k.SkuID <= rows && !seen[k.SkuID] {
			seen[k.SkuID] = true
			distinct++
		}
		return distinct >= rows
	})
	close(stop)
	<-sampled
	hwm := procStatusKB(t, pid, "VmHWM")
	t.Logf("1,000,000-row transaction: committed in %s, all %d rows published (%d messages) %s after the commit; daemon RSS peak sampled %d MB, VmHWM %d MB",
		committed.Round(100*time.Millisecond), distinct, total, (time.Since(t0) - committed).Round(100*time.Millisecond), peak>>10, hwm>>10)
	if distinct != rows {
		t.Errorf("%d of %d rows published", distinct, rows)
	}
	if hwm >= 512<<10 {
		t.Errorf("daemon VmHWM %d MB, want under 512 MB", hwm>>10)
	}
}

// binlogEnd is where the server's binlog ends now.
func binlogEnd(t *testing.T, db *sql.DB) (file string, pos uint64) {
	t.Helper()
	rows, err := db.Query("SHOW MASTER STATUS")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ignore1, ignore2 sql.RawBytes
	if !rows.Next() {
		t.Fatal("SHOW MASTER STATUS: no row")
	}
	if err := rows.Scan(&file, &pos, &ignore1, &ignore2); err != nil {
		t.Fatal(err)
	}
	return file, pos
}

// awaitCheckpointPast waits until the daemon's saved checkpoint (table checkpoint in db)
// is at or after file:pos.
func awaitCheckpointPast(t *testing.T, db *sql.DB, file string, pos uint64) {
	t.Helper()
	var savedFile string
	var saved uint64
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("the checkpoint to pass %s:%d", file, pos), func() bool {
		err := db.QueryRow("SELECT file, pos FROM checkpoint WHERE name = 'default'").Scan(&savedFile, &saved)
		return err == nil && (savedFile > file || savedFile == file && saved >= pos)
	})
}

// countRecords reads topic from the start with franz-go, independent of the code under
// test, handing each record to each until it returns true; it fails the test when
// timeout passes first. It keeps nothing itself, so a million records cost little.
func countRecords(t *testing.T, broker, topic string, timeout time.Duration, each func(*kgo.Record) bool) {
	t.Helper()
	cl := testutil.KafkaClient(t, kgo.SeedBrokers(broker), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	n := 0
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consuming %s: condition not met after %d records within %s", topic, n, timeout)
		}
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			n++
			if !done && each(r) {
				done = true
			}
		})
		if done {
			return
		}
	}
}

// TestReadyGaugeFollowsReadyz: stocksync_ready says what /readyz says. With the broker
// stopped and the binlog stream still open (nothing to deliver, so the pipeline runs on),
// /readyz answers 503 for the broker, and the gauge is 0 too, not 1 for the open stream.
func TestReadyGaugeFollowsReadyz(t *testing.T) {
	addr := testutil.FreeAddr(t)
	broker := runDevBroker(t, addr, "")
	s := newSetup(t, addr)
	s.start(t)
	testutil.Eventually(t, 10*time.Second, "/readyz 200 with stocksync_ready 1", func() bool {
		code, _ := httpGet(s.httpAddr, "/readyz")
		return code == http.StatusOK && metric(t, s.httpAddr, "stocksync_ready") == 1
	})
	broker.stop(t)
	testutil.Eventually(t, 20*time.Second, "/readyz 503 for the broker with stocksync_ready 0", func() bool {
		code, body := httpGet(s.httpAddr, "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "Kafka broker does not answer") &&
			metric(t, s.httpAddr, "stocksync_ready") == 0
	})
}

// TestAStopEveryRunMeetsBacksOff: a change the stream cannot get past (an UPDATE logged
// as a statement) stops every run a moment after it streams. The daemon stays up, is
// retried with a back-off that grows (1 s, 2 s, 4 s), not every second, and /readyz says
// why it is not ready.
func TestAStopEveryRunMeetsBacksOff(t *testing.T) {
	s := newSetup(t, startDevBroker(t))
	db := s.mysql.Open(t, s.db)
	testutil.Exec(t, db, "CREATE TABLE stock_r (sku_id INT PRIMARY KEY, qty INT)", "INSERT INTO stock_r VALUES (1, 1)")
	d := s.start(t)
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"SET SESSION binlog_format = 'STATEMENT'", "UPDATE stock_r SET qty = 2", "SET SESSION binlog_format = 'ROW'"} {
		if _, err := conn.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	testutil.Eventually(t, 30*time.Second, "the third restart to wait 4s", func() bool {
		return strings.Contains(d.output.String(), `"after":4}`) // the log writes a duration in seconds
	})
	if n := strings.Count(d.output.String(), `"after":1}`); n != 1 {
		t.Errorf("%d restarts after 1s, want 1: the back-off went back to 1 s after runs that stopped at once", n)
	}
	code, body := httpGet(s.httpAddr, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "the last run stopped") || !strings.Contains(body, "as a statement") {
		t.Errorf("/readyz: %d %q, want 503 giving the last run's error", code, body)
	}
}

// TestReadyzAsksTheBrokerAKafkaRequest: a port that accepts TCP connections but does not
// speak Kafka (here: the broker's port taken over by a silent listener) is not a broker
// that answers. /readyz says 503 and why, stocksync_ready is 0; with a broker on the port
// again, both are back to ready.
func TestReadyzAsksTheBrokerAKafkaRequest(t *testing.T) {
	addr := testutil.FreeAddr(t)
	broker := runDevBroker(t, addr, "")
	s := newSetup(t, addr)
	s.start(t)
	broker.stop(t)
	silent, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("taking over the broker's port: %v", err)
	}
	accepted := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			accepted <- c // held open, never written to
		}
	}()
	testutil.Eventually(t, 20*time.Second, "/readyz 503 naming a broker that does not answer Kafka, stocksync_ready 0", func() bool {
		code, body := httpGet(s.httpAddr, "/readyz")
		return code == http.StatusServiceUnavailable &&
			strings.Contains(body, "Kafka broker does not answer: ") && strings.Contains(body, "no answer to a metadata request") &&
			metric(t, s.httpAddr, "stocksync_ready") == 0
	})
	if len(accepted) == 0 {
		t.Fatal("the readiness check never connected to the silent port")
	}
	silent.Close()
	for len(accepted) > 0 {
		(<-accepted).Close()
	}
	runDevBroker(t, addr, "")
	testutil.Eventually(t, 60*time.Second, "/readyz 200 and stocksync_ready 1 with a broker on the port again", func() bool {
		code, _ := httpGet(s.httpAddr, "/readyz")
		return code == http.StatusOK && metric(t, s.httpAddr, "stocksync_ready") == 1
	})
}

// TestReadyzSaysWhyAStandbyDoesNotLead: with ha, /readyz says why the daemon does not
// lead: during the 3 s takeover wait after it took the lock, that wait; while the source
// does not answer (no connection holds the lock), that the source is unreachable and why,
// never that another stocksync holds the lock, which sends a DBA looking for a leader
// that does not exist.
func TestReadyzSaysWhyAStandbyDoesNotLead(t *testing.T) {
	src, s, _ := setupOnPrivateMariaDB(t, "")
	s.editConfig(t, "rules: rules.yaml\n", "rules: rules.yaml\nha: true\n")
	d := s.launch(t, s.config)
	testutil.Eventually(t, 10*time.Second, "the lock to be taken", func() bool {
		return strings.Contains(d.output.String(), "waiting out any previous leader's lease")
	})
	if code, body := httpGet(s.httpAddr, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting out the previous leader's lease") {
		t.Errorf("/readyz during the takeover wait: %d %q, want 503 saying it waits out the previous leader's lease", code, strings.TrimSpace(body))
	}
	waitHTTP(t, d, s.httpAddr, "/readyz")

	src.Stop(t)
	defer src.Start(t)
	var body string
	testutil.Eventually(t, 30*time.Second, "/readyz to say the source is unreachable", func() bool {
		var code int
		code, body = httpGet(s.httpAddr, "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "not ready: standby: source unreachable: ")
	})
	for range 3 { // and it stays so, whatever awaitLock tries meanwhile
		if _, body = httpGet(s.httpAddr, "/readyz"); strings.Contains(body, "another stocksync holds") || !strings.Contains(body, "source unreachable") {
			t.Fatalf("with the source down (no one holds the lock) /readyz says %q", strings.TrimSpace(body))
		}
		time.Sleep(time.Second)
	}
}

// httpGet returns path's status and body on addr; 0 if it does not answer.
func httpGet(addr, path string) (int, string) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestBrokerLosingEverythingStopsExactlyOnceNamingIt: exactly-once, the broker restarts
// without its data (the development broker without --data-dir; a rebuilt cluster). The
// failing producer must not have the broker create the checkpoint topic with its default
// cleanup.policy=delete (every restart then refused it: the daemon retried forever). The
// daemon creates it again, compacted, and stops with an error saying the checkpoint is
// gone; so does a daemon that was stopped while the broker lost it, since the source's
// checkpoint table remembers the last commit (NAME/exactly-once). Once that row is
// deleted, it begins as on a first start and publishes new rows.
func TestBrokerLosingEverythingStopsExactlyOnceNamingIt(t *testing.T) {
	addr := testutil.FreeAddr(t)
	broker := runDevBroker(t, addr, "")
	s := newSetup(t, addr)
	cpTopic := s.topic + ".checkpoints"
	s.editConfig(t, "kafka:\n", fmt.Sprintf("kafka:\n  exactly_once: true\n  transactional_id: %s\n  checkpoint_topic: %s\n", s.topic, cpTopic))
	db := s.mysql.Open(t, s.db)
	testutil.Exec(t, db, "CREATE TABLE stock_l (sku_id INT PRIMARY KEY, qty INT NOT NULL)")
	d := s.start(t)
	insertRows(t, db, "stock_l", 0, 10)
	// Committed, so the checkpoint covering them is too (the same Kafka transaction).
	testutil.Consume(t, addr, []string{s.topic}, 10, 30*time.Second, testutil.ConsumeOptions{ReadCommitted: true})
	lost := []string{"the exactly-once checkpoint is gone from the checkpoint topic", `checkpoint "default" was at`,
		fmt.Sprintf("DELETE FROM %s.checkpoint WHERE name = 'default/exactly-once'", s.db)}
	stoppedNaming := func(d *daemonProc, what string) {
		t.Helper()
		select {
		case <-d.done:
		case <-time.After(60 * time.Second):
			t.Fatalf("the daemon still runs 60 s after %s:\n%s", what, d.output.String())
		}
		if d.cmd.ProcessState.ExitCode() == 0 {
			t.Errorf("exit 0 after %s", what)
		}
		for _, w := range lost {
			if !strings.Contains(d.output.String(), w) {
				t.Errorf("after %s, the output lacks %q:\n%s", what, w, d.output.String())
			}
		}
	}

	// Lost while the daemon was stopped.
	d.terminate(t, 30*time.Second)
	broker.stop(t)
	broker = runDevBroker(t, addr, "")
	insertRows(t, db, "stock_l", 10, 12)
	stoppedNaming(s.launch(t, s.config), "starting on a broker that lost the checkpoint while the daemon was stopped")

	// The operator begins afresh: a first start, from the server's current position.
	testutil.Exec(t, db, "DELETE FROM checkpoint WHERE name = 'default/exactly-once'")
	d = s.start(t)
	insertRows(t, db, "stock_l", 20, 25)
	got := testutil.Consume(t, addr, []string{s.topic}, 5, 30*time.Second, testutil.ConsumeOptions{ReadCommitted: true})
	for _, r := range got {
		if r.Key < `{"sku_id":20}` {
			t.Errorf("row %s from before the restart published after a first start", r.Key)
		}
	}

	// Lost while the daemon runs: it finds out at its next Kafka transaction.
	broker.stop(t)
	runDevBroker(t, addr, "")
	insertRows(t, db, "stock_l", 30, 31)
	stoppedNaming(d, "the broker lost its data under the running daemon")
	if strings.Contains(d.output.String(), "cleanup.policy=delete") {
		t.Errorf("the checkpoint topic was auto-created with cleanup.policy=delete:\n%s", d.output.String())
	}
	if policy := testutil.CleanupPolicy(t, addr, cpTopic); policy != "compact" {
		t.Errorf("cleanup.policy of %s = %q after the daemon stopped, want compact", cpTopic, policy)
	}
}

// brokerProc is a devbroker subprocess.
type brokerProc struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

// runDevBroker starts `stocksync devbroker` on addr (port 0: any free port) keeping topics
// in dataDir ("" keeps nothing), with more flags when given, and waits until it prints its
// address (it listens by then).
func runDevBroker(t *testing.T, addr, dataDir string, flags ...string) *brokerProc {
	t.Helper()
	args := append([]string{"devbroker", "--addr", addr, "--data-dir", dataDir}, flags...)
	b := &brokerProc{cmd: exec.Command(binary, args...), done: make(chan struct{})}
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	b.cmd.Stderr = &stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	go func() { b.cmd.Wait(); close(b.done) }()
	t.Cleanup(func() { b.cmd.Process.Kill(); <-b.done })
	if err != nil {
		t.Fatalf("reading the devbroker's address: %v\n%s", err, stderr.String())
	}
	b.addr = strings.TrimSpace(line)
	if !strings.HasSuffix(addr, ":0") && b.addr != addr {
		t.Fatalf("devbroker listens on %s, want %s", b.addr, addr)
	}
	return b
}

// stop ends the broker with SIGTERM and waits for it.
func (b *brokerProc) stop(t *testing.T) {
	t.Helper()
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(15 * time.Second):
		t.Fatal("devbroker still running 15 s after SIGTERM")
	}
}

// setupOnPrivateMariaDB starts a private MariaDB with args and a devbroker, and returns
// the MariaDB, a setup whose source it is, and a handle on the setup's database.
func setupOnPrivateMariaDB(t *testing.T, args string) (*testutil.PrivateMariaDB, *setup, *sql.DB) {
	t.Helper()
	m := testutil.StartPrivateMariaDB(t, args)
	s := newSetupOnServer(t, m.MySQL, startDevBroker(t))
	return m, s, s.mysql.Open(t, s.db)
}

// newSetupOnServer is newSetup with the source on m instead of the shared MariaDB: the
// database newSetup named is created on m as well, and the config points at m.
func newSetupOnServer(t *testing.T, m testutil.MySQL, broker string) *setup {
	t.Helper()
	s := newSetup(t, broker)
	admin := m.Open(t, "")
	if _, err := admin.Exec("CREATE DATABASE " + s.db); err != nil {
		t.Fatalf("creating database %s on %s: %v", s.db, m.Addr, err)
	}
	s.editConfig(t, "addr: "+s.mysql.Addr+"\n", "addr: "+m.Addr+"\n")
	s.mysql = m
	return s
}

// procStatusKB reads a kB field (VmRSS, VmHWM) of /proc/PID/status.
func procStatusKB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	kb, ok := readProcStatusKB(pid, field)
	if !ok {
		t.Fatalf("no %s in /proc/%d/status", field, pid)
	}
	return kb
}

func readProcStatusKB(pid int, field string) (int64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// TestServerWithoutColumnNamesIsRefused: a server whose binlog carries no column names
// (binlog_row_metadata=MINIMAL) cannot be read safely across an ALTER TABLE that keeps the
// column count (a value would land under another column's name), so the daemon refuses
// it at start, naming the setting, rather than guess.
func TestServerWithoutColumnNamesIsRefused(t *testing.T) {
	src := testutil.StartPrivateMariaDB(t, "--binlog-row-metadata=MINIMAL")
	s := newSetupOnServer(t, src.MySQL, startDevBroker(t))
	out, err := exec.Command(binary, "serve", "--config", s.config).CombinedOutput()
	if err == nil {
		t.Fatalf("exit 0 against a binlog without column names:\n%s", out)
	}
	if !strings.Contains(string(out), "binlog_row_metadata is MINIMAL: set binlog_row_metadata=FULL") {
		t.Errorf("the error does not name the setting:\n%s", out)
	}
}

// TestRestartAfterOnlyItsOwnSaveWasPurgedResumes: a daemon stopped cleanly is caught up,
// but its last checkpoint is always followed by its own save. A rotation and purge of the
// binlogs then takes that save alone: `checkpoint show` says the binlogs hold every change
// after it but that save, and the restart moves the checkpoint past it and streams on,
// losing nothing, instead of stopping with "the checkpoint's binlog was purged".
func TestRestartAfterOnlyItsOwnSaveWasPurgedResumes(t *testing.T) {
	_, s, db := setupOnPrivateMariaDB(t, "")
	testutil.Exec(t, db, "CREATE TABLE stock_p (sku_id INT PRIMARY KEY, qty INT)")
	d := s.start(t)
	insertRows(t, db, "stock_p", 0, 10)
	consumeEveryRow(t, s.broker, s.topic, 10)
	d.terminate(t, 20*time.Second)
	testutil.PurgeBinlogs(t, db)
	if out, err := runCheckpointCLI(t, s.config, "show"); err != nil || !strings.Contains(out, "hold every change after it but its own save, purged") ||
		!strings.Contains(out, "caught up: the 1 transactions after it are the daemon's own checkpoint saves") {
		t.Errorf("checkpoint show after the purge of the daemon's last save (%v):\n%s", err, out)
	}

	again := s.launch(t, s.config)
	waitHTTP(t, again, s.httpAddr, "/readyz")
	if !strings.Contains(again.output.String(), "it held only the checkpoint's own save: the checkpoint moves past it") {
		t.Errorf("the restart does not say it moved the checkpoint past its own purged save:\n%s", again.output.String())
	}
	insertRows(t, db, "stock_p", 10, 20)
	consumeEveryRow(t, s.broker, s.topic, 20)
}

// TestPurgedBinlogStopsTheDaemonNamingTheFix: the daemon stops with its checkpoint saved;
// while it is down, the server really purges the binlog that holds the checkpoint (on a
// private MariaDB, so that no other test loses binlogs it reads). The restart refuses to
// run, naming the purged file, the oldest file left and the fixes, and publishes nothing.
func TestPurgedBinlogStopsTheDaemonNamingTheFix(t *testing.T) {
	_, s, db := setupOnPrivateMariaDB(t, "")
	broker := s.broker
	testutil.Exec(t, db, "CREATE TABLE stock_p (sku_id INT PRIMARY KEY, qty INT NOT NULL)")
	d := s.start(t)
	testutil.Exec(t, db, "INSERT INTO stock_p VALUES (1, 1)")
	testutil.Consume(t, broker, []string{s.topic}, 1, 30*time.Second)
	d.terminate(t, 10*time.Second)
	var checkpointFile string
	if err := db.QueryRow("SELECT file FROM checkpoint WHERE name = 'default'").Scan(&checkpointFile); err != nil {
		t.Fatalf("reading the checkpoint saved at SIGTERM: %v", err)
	}

	testutil.Exec(t, db, "INSERT INTO stock_p VALUES (2, 2)", "FLUSH BINARY LOGS", "INSERT INTO stock_p VALUES (3, 3)", "FLUSH BINARY LOGS")
	oldest, _ := binlogEnd(t, db)
	// The server keeps a binlog until its transactions are checkpointed in InnoDB, which
	// happens in the background: purge until it has gone.
	testutil.Eventually(t, 20*time.Second, "PURGE BINARY LOGS to remove "+checkpointFile, func() bool {
		testutil.Exec(t, db, fmt.Sprintf("PURGE BINARY LOGS TO '%s'", oldest))
		var first string
		var size sql.RawBytes
		rows, err := db.Query("SHOW BINARY LOGS")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		return rows.Next() && rows.Scan(&first, &size) == nil && first == oldest
	})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "serve", "--config", s.config).CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("want a non-zero exit on a purged checkpoint binlog, got %v:\n%s", err, out)
	}
	for _, w := range []string{"checkpoint " + checkpointFile, "oldest binlog the server still has is " + oldest, "snapshot: when_needed", "keep binlogs longer"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if more := testutil.Consume(t, broker, []string{s.topic}, 0, 2*time.Second); len(more) != 1 {
		t.Errorf("%d messages on the topic, want only the one published before the purge", len(more))
	}
}

// TestOversizedRowStopsTheDaemonNamingIt: a row whose message is over
// kafka.max_message_bytes stops the daemon (rather than restarting into it forever) with
// an error naming the table, the key and the setting; with the limit raised, it resumes
// from its checkpoint and the row is published, nothing lost.
func TestOversizedRowStopsTheDaemonNamingIt(t *testing.T) {
	s := newSetup(t, startDevBroker(t))
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	withLimit := func(limit int) string {
		return strings.Replace(string(cfg), "kafka:\n", fmt.Sprintf("kafka:\n  max_message_bytes: %d\n", limit), 1)
	}
	writeFile(t, s.config, withLimit(2048))
	db := s.mysql.Open(t, s.db)
	testutil.Exec(t, db, "CREATE TABLE stock_big (sku_id INT PRIMARY KEY, qty INT, note TEXT)")
	d := s.start(t)
	testutil.Exec(t, db, "INSERT INTO stock_big VALUES (0, 1, 'small')", "INSERT INTO stock_big VALUES (1, 1, REPEAT('x', 5000))")
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the daemon still runs 30 s after an oversized row:\n%s", d.output.String())
	}
	if d.cmd.ProcessState.ExitCode() == 0 {
		t.Errorf("exit 0 after an oversized row")
	}
	for _, w := range []string{"stock_big", `with key {"sku_id":1}`, "kafka.max_message_bytes (2048)"} {
		if !strings.Contains(d.output.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, d.output.String())
		}
	}
	testutil.Exec(t, db, "INSERT INTO stock_big VALUES (2, 1, 'after')")
	writeFile(t, s.config, withLimit(100000))
	s.start(t)
	consumeEveryRow(t, s.broker, s.topic, 3)
}

// TestAFailureWithoutConfigSaysNoneWasGiven: without --config the defaults apply, and a
// connection refused on 127.0.0.1:3306 would not say why that address was tried.
func TestAFailureWithoutConfigSaysNoneWasGiven(t *testing.T) {
	cmd := exec.Command(binary, "migrate", "up")
	cmd.Env = append(os.Environ(), "STOCKSYNC_SOURCE_ADDR=127.0.0.1:1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no --config was given: the defaults and STOCKSYNC_* variables were used") {
		t.Fatalf("migrate up without --config against a closed port: %v\n%s\nwant the failure to say no --config was given", err, out)
	}
}

// TestMigrateStatusOfAMissingDatabaseListsEveryMigrationPending: `migrate status` of an
// inventory.database that does not exist lists every embedded migration as pending and
// exits 1 saying the database does not exist and that `migrate up` creates it, which it
// then does.
func TestMigrateStatusOfAMissingDatabaseListsEveryMigrationPending(t *testing.T) {
	m := testutil.MySQLServer(t)
	name, _ := m.FreshDatabase(t, "migstatus") // dropped below; dropped again at the end, once migrate up made it
	testutil.Exec(t, m.Open(t, ""), "DROP DATABASE "+name)
	env := append(os.Environ(), "STOCKSYNC_SOURCE_ADDR="+m.Addr, "STOCKSYNC_SOURCE_USER="+m.User,
		"STOCKSYNC_SOURCE_PASSWORD="+m.Password, "STOCKSYNC_INVENTORY_DATABASE="+name)
	status := func() (stdout, stderr string, err error) {
		t.Helper()
		cmd := exec.Command(binary, "migrate", "status")
		cmd.Env = env
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err = cmd.Run()
		return out.String(), errOut.String(), err
	}
	migrations, err := inventory.Migrations()
	if err != nil || len(migrations) == 0 {
		t.Fatalf("the embedded migrations: %v, %v", migrations, err)
	}
	out, errOut, err := status()
	if err == nil || !strings.HasPrefix(out, "VERSION") || strings.Count(out, "pending") != len(migrations) {
		t.Fatalf("migrate status of a missing database: %v\n%s%s\nwant exit 1 and the %d migrations listed, each pending", err, out, errOut, len(migrations))
	}
	for _, mig := range migrations {
		if !strings.Contains(out, fmt.Sprintf("%d", mig.Version)) || !strings.Contains(out, mig.Name) {
			t.Errorf("migrate status lacks migration %d %s:\n%s", mig.Version, mig.Name, out)
		}
	}
	for _, w := range []string{"inventory database " + name + " does not exist on " + m.Addr, "`stocksync migrate up` creates it"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("migrate status of a missing database said\n%s\nwant %q", errOut, w)
		}
	}
	up := exec.Command(binary, "migrate", "up")
	up.Env = env
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("migrate up: %v\n%s", err, out)
	}
	if out, errOut, err := status(); err != nil || strings.Contains(out, "pending") {
		t.Fatalf("migrate status after migrate up: %v\n%s%s\nwant exit 0, nothing pending", err, out, errOut)
	}
}

// TestSetGlobalBinlogFormatWhileStreamingKeepsTheDaemonUp: a DBA's SET GLOBAL
// binlog_format=STATEMENT while the daemon streams, then a write of a matched table in a
// new session. The stream stops at that change, and each restart finds the setting wrong:
// the daemon stays up (its HTTP API with it), /readyz names the setting to change, and
// once it is set back /readyz names the change the stream cannot get past. Only a first
// start refuses such a server and exits (TestServerWithoutColumnNamesIsRefused).
func TestSetGlobalBinlogFormatWhileStreamingKeepsTheDaemonUp(t *testing.T) {
	m, s, db := setupOnPrivateMariaDB(t, "")
	testutil.Exec(t, db, "CREATE TABLE stock_g (sku_id INT PRIMARY KEY, qty INT NOT NULL)")
	d := s.start(t)
	testutil.Exec(t, db, "INSERT INTO stock_g VALUES (1, 1)")
	testutil.Consume(t, s.broker, []string{s.topic}, 1, 30*time.Second)

	testutil.Exec(t, db, "SET GLOBAL binlog_format = 'STATEMENT'")
	t.Cleanup(func() { db.Exec("SET GLOBAL binlog_format = 'ROW'") })
	testutil.Exec(t, m.Open(t, s.db), "INSERT INTO stock_g VALUES (2, 2)") // a session opened after it
	readyzSays := func(what string) func() bool {
		return func() bool {
			select {
			case <-d.done:
				t.Fatalf("the daemon exited:\n%s", d.output.String())
			default:
			}
			code, body := httpGet(s.httpAddr, "/readyz")
			return code == http.StatusServiceUnavailable && strings.Contains(body, what)
		}
	}
	testutil.Eventually(t, 30*time.Second, "/readyz 503 naming binlog_format", readyzSays("binlog_format is STATEMENT: set binlog_format=ROW"))
	if code := httpStatus(s.httpAddr, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d while the setting is wrong, want 200 (the daemon is up)", code)
	}

	testutil.Exec(t, db, "SET GLOBAL binlog_format = 'ROW'")
	testutil.Eventually(t, 60*time.Second, "/readyz 503 naming the statement-logged change", readyzSays("statement-logged change"))
}
