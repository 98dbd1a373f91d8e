package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stocksync/stocksync/internal/testutil"
)

// TestResyncCommandRepublishesState runs the daemon exactly-once with a token, asks for a
// resync with `stocksync resync`, and reads the topics read_committed with an independent
// client: each SKU's total and flag are there as reads once the command returns, and
// --key picks SKUs, naming those without rows. A wrong rule name, a key that is not JSON,
// a request without the token and a malformed body are refused and publish nothing.
func TestResyncCommandRepublishesState(t *testing.T) {
	s := newSetup(t, startDevBroker(t))
	s.editConfig(t, "kafka:\n", fmt.Sprintf("kafka:\n  exactly_once: true\n  transactional_id: %s\n  checkpoint_topic: %s.checkpoints\n", s.topic, s.topic))
	s.editConfig(t, "http:\n", "http:\n  token: s3cret\n")
	product, search := s.topic+".product", s.topic+".search"
	writeFile(t, filepath.Join(filepath.Dir(s.config), "rules.yaml"), fmt.Sprintf(`rules:
  - name: stock-rows
    match: {table: "%[1]s.stock_*"}
    topic: %[2]s
    key: [sku_id]
  - name: product-stock
    match: {table: "%[1]s.shard_s"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: %[3]s
  - name: search-in-stock
    match: {table: "%[1]s.shard_s"}
    emit: transition
    group_by: [sku_id]
    sum: {sellable: qty}
    value: "sellable > 0"
    topic: %[4]s
`, s.db, s.topic, product, search))
	db := s.mysql.Open(t, s.db)
	testutil.Exec(t, db, "CREATE TABLE shard_s (sku_id VARCHAR(8), shard INT, qty BIGINT, PRIMARY KEY (sku_id, shard))")
	d := s.start(t)
	testutil.Exec(t, db, "INSERT INTO shard_s VALUES ('A', 0, 5), ('A', 1, 7), ('B', 0, 2)", "UPDATE shard_s SET qty = 0 WHERE sku_id = 'B'")
	committed := testutil.ConsumeOptions{ReadCommitted: true}
	// product: A c, B c, B u; search: A true, B true, B false.
	testutil.Consume(t, s.broker, []string{product, search}, 6, 20*time.Second, committed)

	resync := func(args ...string) (string, error) {
		out, err := exec.Command(binary, append([]string{"resync", "--config", s.config}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := resync("product-stock", "stock-rows", "--key", `{"sku_id":"A"}`); err == nil || !strings.Contains(out, `rule "stock-rows" emits rows: keys pick groups`) {
		t.Errorf("keys with a row rule: %v, %s", err, out)
	}
	for _, tc := range []struct {
		token, body string
		want        int
	}{
		{"", `{}`, http.StatusUnauthorized},
		{"s3cret", `{"rule": ["product-stock"]}`, http.StatusBadRequest},
		{"s3cret", `{"rules": ["nope"]}`, http.StatusUnprocessableEntity},
		{"s3cret", `{"rules": ["` + strings.Repeat("x", 70<<10) + `"]}`, http.StatusRequestEntityTooLarge},
	} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+s.httpAddr+"/admin/resync", strings.NewReader(tc.body))
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var refusal struct{ Code, Message string }
		json.NewDecoder(resp.Body).Decode(&refusal)
		resp.Body.Close()
		if resp.StatusCode != tc.want || refusal.Code == "" || refusal.Message == "" {
			t.Errorf("%.60q with token %q: %d %+v, want %d with a code and a message", tc.body, tc.token, resp.StatusCode, refusal, tc.want)
		}
	}

	if out, err := resync("--key", "B"); err == nil || !strings.Contains(out, "--key B is not JSON") {
		t.Errorf("a key that is not JSON: %v, %s", err, out)
	}
	out, err := resync("search-in-stock", "--key", `{"sku_id":"B"}`, "--key", `{"sku_id":"Z"}`)
	if err != nil || !strings.Contains(out, "search-in-stock: 1 message") || !strings.Contains(out, `search-in-stock: no group {"sku_id":"Z"}`) {
		t.Errorf("a resync of two keys, one without rows: %v\n%s", err, out)
	}
	out, err = resync()
	if err != nil {
		t.Fatalf("stocksync resync: %v\n%s", err, out)
	}
	for _, want := range []string{"product-stock: 2 messages", "search-in-stock: 2 messages", "acknowledged by the broker"} {
		if !strings.Contains(out, want) {
			t.Errorf("stocksync resync printed %q, want a line %q", out, want)
		}
	}
	// Committed by the time the command returned: no waiting here.
	recs := testutil.Consume(t, s.broker, []string{product, search}, 0, 3*time.Second, committed)
	reads := map[string]string{}
	for _, r := range recs {
		var m struct {
			Op    string         `json:"op"`
			After map[string]any `json:"after"`
		}
		if err := json.Unmarshal([]byte(r.Value), &m); err != nil {
			t.Fatal(err)
		}
		if m.Op == "r" {
			v, _ := json.Marshal(m.After)
			reads[strings.TrimPrefix(r.Topic, s.topic)+" "+r.Key] = string(v)
		}
	}
	want := map[string]string{
		`.product {"sku_id":"A"}`: `{"sellable":12,"sku_id":"A"}`,
		`.product {"sku_id":"B"}`: `{"sellable":0,"sku_id":"B"}`,
		`.search {"sku_id":"A"}`:  `{"sellable":12,"sku_id":"A","value":true}`,
		`.search {"sku_id":"B"}`:  `{"sellable":0,"sku_id":"B","value":false}`,
	}
	if len(recs) != 6+1+4 || fmt.Sprint(reads) != fmt.Sprint(want) {
		t.Errorf("%d committed messages (want 11), reads %v, want %v", len(recs), reads, want)
	}

	// A row rule's tables are re-read, and committed when the command returns.
	testutil.Exec(t, db, "CREATE TABLE stock_x (sku_id VARCHAR(8) PRIMARY KEY, qty BIGINT)", "INSERT INTO stock_x VALUES ('A', 1), ('B', 2)")
	testutil.Consume(t, s.broker, []string{s.topic}, 2, 20*time.Second, committed)
	out, err = resync("stock-rows")
	if err != nil || !strings.Contains(out, "stock-rows: 2 messages") || !strings.Contains(out, "."+"stock_x) re-read in 1 chunk, from ") {
		t.Errorf("a re-read: %v\n%s", err, out)
	}
	history := map[string]string{} // per key, in partition order
	for _, r := range testutil.Consume(t, s.broker, []string{s.topic}, 0, 3*time.Second, committed) {
		var m struct{ Op string }
		json.Unmarshal([]byte(r.Value), &m)
		history[r.Key] += m.Op
	}
	if got := fmt.Sprint(history); got != `map[{"sku_id":"A"}:cr {"sku_id":"B"}:cr]` {
		t.Errorf("the row rule's topic: %s", got)
	}
	if out, err := resync("--status"); err != nil || out != "no re-read is running\n" {
		t.Errorf("resync --status after the re-read: %v, %q", err, out)
	}
	if out, err := resync("--status", "stock-rows"); err == nil || !strings.Contains(out, "--status asks how the running re-read goes") {
		t.Errorf("resync --status with a rule: %v, %q", err, out)
	}
	d.terminate(t, 10*time.Second)
}

// TestRereadGoesOnAfterKill9 asks an exactly-once daemon to re-read a 200,000-row table in
// 100 chunks, kills it (kill -9) a quarter of the way, and starts it again: the new daemon
// says it goes on where the re-read stopped (not from the start), and a read_committed
// reader sees every row once, as a read.
func TestRereadGoesOnAfterKill9(t *testing.T) {
	s := newSetup(t, startDevBroker(t))
	s.editConfig(t, "kafka:\n", fmt.Sprintf("kafka:\n  exactly_once: true\n  transactional_id: %s\n  checkpoint_topic: %s.checkpoints\n", s.topic, s.topic))
	s.editConfig(t, "rules: rules.yaml\n", "rules: rules.yaml\nsnapshot_chunk_size: 2000\n")
	writeFile(t, filepath.Join(filepath.Dir(s.config), "rules.yaml"), fmt.Sprintf(`rules:
  - name: stock-rows
    match: {table: "%s.stock_*"}
    topic: %s
    key: [sku_id]
`, s.db, s.topic))
	const rows = 200000
	db := s.mysql.Open(t, s.db)
	// Written before the first start, which streams from the current position: only the
	// re-read publishes these rows.
	testutil.Exec(t, db, "CREATE TABLE stock_big (sku_id INT PRIMARY KEY, qty INT NOT NULL)",
		fmt.Sprintf("INSERT INTO stock_big SELECT seq, seq %% 7 FROM seq_1_to_%d", rows))
	d := s.start(t)
	resync := exec.Command(binary, "resync", "--config", s.config, "stock-rows")
	if err := resync.Start(); err != nil {
		t.Fatal(err)
	}
	defer resync.Wait()
	testutil.Eventually(t, 60*time.Second, "a quarter of the re-read's chunks", func() bool {
		return metric(t, s.httpAddr, "stocksync_reread_chunks_published") >= 25
	})
	if n := metric(t, s.httpAddr, "stocksync_reread_running"); n != 1 {
		t.Fatalf("the re-read ended (stocksync_reread_running %v) before the kill: nothing to go on with", n)
	}
	status, err := exec.Command(binary, "resync", "--config", s.config, "--status").CombinedOutput()
	if err != nil || !regexp.MustCompile(`^re-reading the tables of stock-rows \(\S+\.stock_big\): \d+ chunks, \d+ rows published; begun \d+s ago\n$`).Match(status) {
		t.Errorf("stocksync resync --status during the re-read: %v, %q", err, status)
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done

	d = s.start(t)
	testutil.Eventually(t, 60*time.Second, "the restarted daemon's re-read to end", func() bool {
		return metric(t, s.httpAddr, "stocksync_reread_running") == 0 && strings.Contains(d.output.String(), `"resync published"`)
	})
	went := regexp.MustCompile(`going on with the re-read.*"chunks_done":(\d+)`).FindStringSubmatch(d.output.String())
	if went == nil || went[1] == "0" {
		t.Errorf("the restarted daemon logged %q; want it to go on after the chunks committed before the kill", went)
	}
	opt := testutil.ConsumeOptions{ReadCommitted: true}
	testutil.Consume(t, s.broker, []string{s.topic}, rows, 60*time.Second, opt)
	seen := map[string]int{}
	for _, r := range testutil.Consume(t, s.broker, []string{s.topic}, 0, 3*time.Second, opt) {
		if !strings.Contains(r.Value, `"op":"r"`) {
			t.Fatalf("a message that is no read: %s", r.Value)
		}
		seen[r.Key]++
	}
	for i := 1; i <= rows; i++ {
		if n := seen[fmt.Sprintf(`{"sku_id":%d}`, i)]; n != 1 {
			t.Errorf("row %d committed %d times, want once", i, n)
			break
		}
	}
	if len(seen) != rows {
		t.Errorf("%d rows committed, want %d", len(seen), rows)
	}
}

// TestResyncNamesTheURLWithoutItsPassword: a --url with a password in it is named with
// the password written as xxxxx when the daemon cannot be reached.
func TestResyncNamesTheURLWithoutItsPassword(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "stocksync.yaml"), "source: {addr: 127.0.0.1:1, user: x}\nkafka: {brokers: [127.0.0.1:1]}\nrules: rules.yaml\n")
	writeFile(t, filepath.Join(dir, "rules.yaml"), "rules:\n  - name: r\n    match: {table: \"x.y\"}\n    topic: t\n")
	closed := testutil.FreeAddr(t)
	out, err := exec.Command(binary, "resync", "--config", filepath.Join(dir, "stocksync.yaml"), "--url", "http://ops:hunter2@"+closed, "r").CombinedOutput()
	if err == nil || strings.Contains(string(out), "hunter2") || !strings.Contains(string(out), "calling the daemon at http://ops:xxxxx@"+closed) {
		t.Errorf("resync to a daemon not listening: %v\n%s\nwant an error naming the URL with its password hidden", err, out)
	}
}

// TestResyncNamesATokenItCannotSend: an http.token with a trailing newline (a secret made
// from a file) is refused when resync loads the config, naming the variable and the key,
// instead of net/http's `invalid header field value for "Authorization"`, which named
// neither; and a warning of the config (SASL PLAIN without TLS) is printed, as a misspelt
// variable is.
func TestResyncNamesATokenItCannotSend(t *testing.T) {
	config := filepath.Join(t.TempDir(), "stocksync.yaml")
	writeFile(t, config, "kafka: {brokers: [k:9092], sasl: {mechanism: PLAIN, user: u}}\nhttp: {addr: \"127.0.0.1:1\"}\n")
	resync := func() (string, error) {
		var errOut bytes.Buffer
		root := newRootCmd()
		root.SetArgs([]string{"resync", "--config", config, "--timeout", "5s"})
		root.SetOut(io.Discard)
		root.SetErr(&errOut)
		err := root.Execute()
		return errOut.String(), err
	}
	t.Setenv("STOCKSYNC_HTTP_TOKEN", "s3cret\n")
	if _, err := resync(); err == nil || !strings.HasPrefix(err.Error(), "STOCKSYNC_HTTP_TOKEN: http.token: ends with a newline") {
		t.Errorf("a token ending with a newline: %v", err)
	}
	t.Setenv("STOCKSYNC_HTTP_TOKEN", "s3cret")
	stderr, err := resync()
	if err == nil || !strings.Contains(err.Error(), "calling the daemon at") {
		t.Errorf("with a token it can send, resync calls the daemon: %v", err)
	}
	if want := "stocksync: warning: " + config + ":1:46: kafka.sasl.mechanism: PLAIN sends kafka.sasl.password to the brokers in clear text"; !strings.Contains(stderr, want) {
		t.Errorf("stderr %q lacks %q", stderr, want)
	}
}
