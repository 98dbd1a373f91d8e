package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stocksync/stocksync/internal/testutil"
)

// TestStockAdjustWithRequestIDAppliesOnce runs `stocksync stock adjust --request-id`
// twice and with another delta, as an operator retrying it would. Its config names a
// rules file that is not written yet: migrate and stock never read it, so they run.
func TestStockAdjustWithRequestIDAppliesOnce(t *testing.T) {
	m := testutil.MySQLServer(t)
	name, db := m.FreshDatabase(t, "stockcli")
	env := append(os.Environ(), "STOCKSYNC_SOURCE_ADDR="+m.Addr, "STOCKSYNC_SOURCE_USER="+m.User,
		"STOCKSYNC_SOURCE_PASSWORD="+m.Password, "STOCKSYNC_INVENTORY_DATABASE="+name)
	config := filepath.Join(t.TempDir(), "stocksync.yaml")
	if err := os.WriteFile(config, []byte("rules: rules-to-come.yaml\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// run answers what the command printed on stdout and, when it failed, on stderr.
	run := func(args ...string) (string, error) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), binary, append(args, "--config", config)...)
		cmd.Env = env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return string(out) + stderr.String(), err
		}
		return string(out), nil
	}
	for _, args := range [][]string{{"migrate", "up"}, {"stock", "set", "cli-1", "--sellable", "10", "--shards", "2"}} {
		if out, err := run(args...); err != nil {
			t.Fatalf("stocksync %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	adjust := []string{"stock", "adjust", "cli-1", "--delta", "-3", "--reason", "damaged", "--request-id", "op-7"}
	for i, wantReplayed := range []bool{false, true} {
		out, err := run(adjust...)
		if err != nil {
			t.Fatalf("adjust %d: %v\n%s", i+1, err, out)
		}
		var answer struct {
			Sellable int64 `json:"sellable"`
			Replayed bool  `json:"replayed"`
		}
		if err := json.Unmarshal([]byte(out), &answer); err != nil {
			t.Fatalf("adjust %d printed %q: %v", i+1, out, err)
		}
		if answer.Sellable != 7 || answer.Replayed != wantReplayed {
			t.Fatalf("adjust %d printed %+v, want sellable 7, replayed %v", i+1, answer, wantReplayed)
		}
	}
	out, err := run("stock", "adjust", "cli-1", "--delta", "-4", "--reason", "damaged", "--request-id", "op-7")
	if err == nil || !strings.Contains(out, "request_id op-7 adjusted cli-1 by -3") {
		t.Fatalf("adjust by another delta under a used request_id: %v\n%s\nwant a failure naming the first adjustment", err, out)
	}
	out, err = run("stock", "adjust", "cli-1", "--delta", "-1", "--reason", "damaged", "--request-id", "")
	if err == nil || !strings.Contains(out, "--request-id must not be empty") {
		t.Fatalf("adjust with an empty --request-id: %v\n%s\nwant it refused", err, out)
	}
	if sellable := sellableTruth(t, db, []string{"cli-1"})["cli-1"]; sellable != 7 {
		t.Fatalf("sellable = %d after the adjusts, want 7", sellable)
	}
}
