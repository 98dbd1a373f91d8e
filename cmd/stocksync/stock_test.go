package main

import (
	"database/sql"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/inventory"
)

// stockCLI migrates a fresh database and returns run, which runs `stocksync ARGS…` on it
// and answers what the command printed on stdout and, when it failed, on stderr, and the
// database. Its config names a rules file that is not written yet: migrate and stock
// never read it, so they run.
func stockCLI(t *testing.T) (run func(args ...string) (string, error), db *sql.DB) {
	t.Helper()
	m := testutil.MySQLServer(t)
	name, db := m.FreshDatabase(t, "stockcli")
	env := append(os.Environ(), "STOCKSYNC_SOURCE_ADDR="+m.Addr, "STOCKSYNC_SOURCE_USER="+m.User,
		"STOCKSYNC_SOURCE_PASSWORD="+m.Password, "STOCKSYNC_INVENTORY_DATABASE="+name)
	config := filepath.Join(t.TempDir(), "stocksync.yaml")
	if err := os.WriteFile(config, []byte("rules: rules-to-come.yaml\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run = func(args ...string) (string, error) {
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
	if out, err := run("migrate", "up"); err != nil {
		t.Fatalf("stocksync migrate up: %v\n%s", err, out)
	}
	return run, db
}

// TestStockAdjustWithRequestIDAppliesOnce runs `stocksync stock adjust --request-id`
// twice and with another delta, as an operator retrying it would.
func TestStockAdjustWithRequestIDAppliesOnce(t *testing.T) {
	run, db := stockCLI(t)
	if out, err := run("stock", "set", "cli-1", "--sellable", "10", "--shards", "2"); err != nil {
		t.Fatalf("stocksync stock set: %v\n%s", err, out)
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

// TestStockAdjustOfASKUOnlyTheWMSReportedSaysToSetItFirst runs `stocksync stock adjust`
// and `reshard` on a SKU the WMS has reported but whose sellable stock was never set: each
// fails saying so and how to set it, where it said "not found" of a SKU `stock get` shows.
func TestStockAdjustOfASKUOnlyTheWMSReportedSaysToSetItFirst(t *testing.T) {
	run, _ := stockCLI(t)
	for _, args := range [][]string{{"stock", "warehouse", "W1", "--name", "Central", "--type", "central"},
		{"stock", "physical", "wms-1", "W1=5"}, {"stock", "get", "wms-1"}} {
		if out, err := run(args...); err != nil {
			t.Fatalf("stocksync %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	want := "sku wms-1 has no sellable stock set: set it with POST /v1/skus/wms-1/stock first (from the CLI: stocksync stock set)"
	for _, args := range [][]string{{"stock", "adjust", "wms-1", "--delta", "5", "--reason", "recount"}, {"stock", "reshard", "wms-1", "2"}} {
		if out, err := run(args...); err == nil || !strings.Contains(out, want) {
			t.Errorf("stocksync %s: %v\n%s\nwant it refused saying %q", strings.Join(args, " "), err, out, want)
		}
	}
}

// TestStockExtendAndWarehouses runs `stocksync stock extend` and `stocksync stock
// warehouses`, listing and showing one.
func TestStockExtendAndWarehouses(t *testing.T) {
	run, _ := stockCLI(t)
	for _, args := range [][]string{{"stock", "set", "cli-2", "--sellable", "5"}, {"stock", "deduct", "o-1", "cli-2:1", "--hold-ttl", "1m"},
		{"stock", "warehouse", "W1", "--name", "Central", "--type", "central"}} {
		if out, err := run(args...); err != nil {
			t.Fatalf("stocksync %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	answer := func(out string, err error, v any) {
		t.Helper()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("printed %q: %v", out, err)
		}
	}
	var order struct {
		Status    string    `json:"status"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	out, err := run("stock", "extend", "o-1", "--hold-ttl", "2h")
	answer(out, err, &order)
	if left := time.Until(order.ExpiresAt); order.Status != "held" || left < 110*time.Minute || left > 130*time.Minute {
		t.Fatalf("extend by 2h printed %s, want the order held about 2h from now", out)
	}
	if out, err := run("stock", "extend", "o-1"); err == nil || !strings.Contains(out, `"hold-ttl" not set`) {
		t.Fatalf("extend without --hold-ttl: %v\n%s\nwant it refused", err, out)
	}
	var list struct {
		Warehouses []struct {
			Code string `json:"code"`
		} `json:"warehouses"`
	}
	out, err = run("stock", "warehouses")
	answer(out, err, &list)
	if len(list.Warehouses) != 1 || list.Warehouses[0].Code != "W1" {
		t.Fatalf("stock warehouses printed %s, want W1", out)
	}
	var one struct {
		Code, Name string
	}
	out, err = run("stock", "warehouses", "W1")
	answer(out, err, &one)
	if one.Code != "W1" || one.Name != "Central" {
		t.Fatalf("stock warehouses W1 printed %s", out)
	}
	if out, err := run("stock", "warehouses", "W9"); err == nil || !strings.Contains(out, "warehouse W9: not found") {
		t.Fatalf("stock warehouses W9: %v\n%s\nwant not found", err, out)
	}
}

// TestStockOrdersPages runs `stocksync stock orders`: as a table by default, as JSON with
// --json, a page at a time with --after, filtered by --status and --sku; a bad --status
// is refused, naming it.
func TestStockOrdersPages(t *testing.T) {
	run, _ := stockCLI(t)
	for _, args := range [][]string{{"stock", "set", "cli-3", "--sellable", "9"}, {"stock", "set", "cli-4", "--sellable", "9"},
		{"stock", "deduct", "o-1", "cli-3:1"}, {"stock", "deduct", "o-2", "cli-4:2"}, {"stock", "deduct", "o-3", "cli-3:3", "cli-4:1"},
		{"stock", "confirm", "o-2"}} {
		if out, err := run(args...); err != nil {
			t.Fatalf("stocksync %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	var seen []string
	after := ""
	for page := 1; ; page++ {
		args := []string{"stock", "orders", "--limit", "2", "--json"}
		if after != "" {
			args = append(args, "--after", after)
		}
		out, err := run(args...)
		var p struct {
			Orders []struct {
				OrderNo string `json:"order_no"`
			} `json:"orders"`
			Next string `json:"next"`
		}
		if err != nil || json.Unmarshal([]byte(out), &p) != nil {
			t.Fatalf("stock orders page %d: %v\n%s", page, err, out)
		}
		for _, o := range p.Orders {
			seen = append(seen, o.OrderNo)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if strings.Join(seen, " ") != "o-3 o-2 o-1" {
		t.Fatalf("stock orders --json paged %v, want o-3 o-2 o-1 (newest first)", seen)
	}
	out, err := run("stock", "orders", "--status", "held", "--sku", "cli-4")
	if err != nil {
		t.Fatalf("stock orders --status held --sku cli-4: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ORDER") || !strings.HasPrefix(lines[1], "o-3 ") ||
		!strings.Contains(lines[1], "held") || !strings.HasSuffix(lines[1], "cli-3:3 cli-4:1") {
		t.Fatalf("stock orders --status held --sku cli-4 printed\n%s\nwant a header and o-3, held, with its items", out)
	}
	out, err = run("stock", "orders", "--limit", "1")
	if err != nil || !strings.Contains(out, "more: --limit 1 --after ") {
		t.Fatalf("stock orders --limit 1: %v\n%s\nwant the cursor of the next page", err, out)
	}
	// The hint is the next page's flags, the filters included: followed as printed, it
	// lists the next page (a held listing's cursor alone is refused).
	out, err = run("stock", "orders", "--status", "held", "--limit", "1")
	_, hint, found := strings.Cut(out, "more: ")
	if err != nil || !found {
		t.Fatalf("stock orders --status held --limit 1: %v\n%s\nwant a next page", err, out)
	}
	if !strings.HasPrefix(hint, "--status held --limit 1 --after ") {
		t.Errorf("next page hint %q lacks --status held", hint)
	}
	if out, err := run(append([]string{"stock", "orders"}, strings.Fields(hint)...)...); err != nil || !strings.Contains(out, "held") {
		t.Errorf("stock orders %s: %v\n%s\nwant the next page of held orders", hint, err, out)
	}
	if out, err := run("stock", "orders", "--status", "paid"); err == nil || !strings.Contains(out, "status: must be held, confirmed, shipped, cancelled or expired") {
		t.Fatalf("stock orders --status paid: %v\n%s\nwant it refused, naming status", err, out)
	}
}

// TestStockRefusesAnEmptyOptionalFlag: an optional flag given empty (or a --hold-ttl of
// 0) is refused naming it, as the API refuses an empty optional field, not read as the
// flag left out (every SKU, every status, the first page, the default hold).
func TestStockRefusesAnEmptyOptionalFlag(t *testing.T) {
	run, _ := stockCLI(t)
	if out, err := run("stock", "set", "cli-5", "--sellable", "9"); err != nil {
		t.Fatalf("stock set: %v\n%s", err, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"stock", "orders", "--sku", ""}, "--sku must not be empty (leave it out for every SKU)"},
		{[]string{"stock", "orders", "--status", ""}, "--status must not be empty (leave it out for every status)"},
		{[]string{"stock", "orders", "--after", ""}, "--after must not be empty (leave it out for the first page)"},
		{[]string{"stock", "deduct", "o-1", "cli-5:1", "--hold-ttl", "0"}, "--hold-ttl must be positive, got 0"},
	} {
		if out, err := run(c.args...); err == nil || !strings.Contains(out, c.want) {
			t.Errorf("stocksync %q: %v\n%s\nwant it refused saying %q", c.args, err, out, c.want)
		}
	}
	if out, err := run("stock", "get", "cli-5"); err != nil || !strings.Contains(out, `"sellable": 9`) {
		t.Fatalf("stock get cli-5 after the refused deduction: %v\n%s\nwant sellable 9", err, out)
	}
}

// TestStockActivitySetsACampaignsStockAndWindow runs `stocksync stock activity` as the
// API's PUT of an activity: it prints the activity as stored, in UTC, a deduction naming
// it takes from it within its window, and a restatement sets the stock left. Each of its
// three flags is needed, and an empty or unreadable time is refused naming its flag,
// before anything is written; so is a window that ends before it starts.
func TestStockActivitySetsACampaignsStockAndWindow(t *testing.T) {
	run, db := stockCLI(t)
	if out, err := run("stock", "set", "cli-act", "--sellable", "5"); err != nil {
		t.Fatalf("stock set: %v\n%s", err, out)
	}
	starts := time.Now().Add(-time.Hour).Truncate(time.Second)
	ends := starts.Add(24 * time.Hour)
	window := []string{"--starts-at", starts.In(time.FixedZone("", 8*3600)).Format(time.RFC3339), "--ends-at", ends.UTC().Format(time.RFC3339)}
	out, err := run(append([]string{"stock", "activity", "cli-act", "sale-11", "--qty", "50"}, window...)...)
	var stored inventory.Activity
	if err != nil || json.Unmarshal([]byte(out), &stored) != nil {
		t.Fatalf("stock activity: %v\n%s", err, out)
	}
	if stored.SKU != "cli-act" || stored.Activity != "sale-11" || stored.Qty != 50 || !stored.StartsAt.Equal(starts) || !stored.EndsAt.Equal(ends) ||
		!strings.Contains(out, starts.UTC().Format(time.RFC3339)) {
		t.Fatalf("stock activity printed\n%s\nwant sale-11 of cli-act, 50 units, from %s to %s in UTC", out, starts.UTC(), ends.UTC())
	}
	if out, err := run("stock", "deduct", "o-act", "cli-act:3@sale-11"); err != nil {
		t.Fatalf("stock deduct of the activity: %v\n%s", err, out)
	}
	activityQty := func() int64 {
		t.Helper()
		var n int64
		if err := db.QueryRow("SELECT qty FROM activity_stock WHERE sku_id = 'cli-act' AND activity_id = 'sale-11'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := activityQty(); n != 47 {
		t.Fatalf("the activity has %d units after a deduction of 3 from 50, want 47", n)
	}
	if out, err := run(append([]string{"stock", "activity", "cli-act", "sale-11", "--qty", "10"}, window...)...); err != nil || activityQty() != 10 {
		t.Fatalf("stock activity restating 10: %v\n%s\nleft %d units", err, out, activityQty())
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--qty", "5", window[0], window[1]}, `required flag(s) "ends-at" not set`},
		{[]string{"--starts-at", window[1], "--ends-at", window[3]}, `required flag(s) "qty" not set`},
		{[]string{"--qty", "5", "--starts-at", "", "--ends-at", window[3]}, "--starts-at must not be empty"},
		{[]string{"--qty", "5", "--starts-at", window[1], "--ends-at", "tomorrow"}, `--ends-at "tomorrow" is not an RFC 3339 time`},
		{[]string{"--qty", "5", "--starts-at", window[3], "--ends-at", window[1]}, "ends_at: must be after starts_at"},
		{[]string{"--qty", "-1", window[0], window[1], window[2], window[3]}, "qty: must be between 0 and"},
	} {
		args := append([]string{"stock", "activity", "cli-act", "sale-11"}, c.args...)
		if out, err := run(args...); err == nil || !strings.Contains(out, c.want) {
			t.Errorf("stocksync %q: %v\n%s\nwant it refused saying %q", args, err, out, c.want)
		}
	}
	if n := activityQty(); n != 10 {
		t.Errorf("the refused calls left the activity at %d units, want 10", n)
	}
	if out, err := run(append([]string{"stock", "activity", "nobody-knows", "sale-11", "--qty", "5"}, window...)...); err == nil || !strings.Contains(out, "not found") {
		t.Errorf("stock activity of a SKU nobody knows: %v\n%s\nwant not found", err, out)
	}
}

// An item argument is split where its QTY is, so SKUs and activity ids may hold ':' and
// '@'; one that reads as an item in more than one way is refused with its readings.
func TestParseItemFindsTheQuantityWhereverTheSKUHasColons(t *testing.T) {
	for _, c := range []struct {
		arg  string
		want inventory.Item
	}{
		{"sku-1:2", inventory.Item{SKU: "sku-1", Qty: 2}},
		{"APPLE:RED:2", inventory.Item{SKU: "APPLE:RED", Qty: 2}},
		{"APPLE:RED:2@1111", inventory.Item{SKU: "APPLE:RED", Qty: 2, Activity: "1111"}},
		{"a@b:3", inventory.Item{SKU: "a@b", Qty: 3}},
		{"a@b:3@sale@2030", inventory.Item{SKU: "a@b", Qty: 3, Activity: "sale@2030"}},
		{"a:b:c:10@x:y", inventory.Item{SKU: "a:b:c", Qty: 10, Activity: "x:y"}},
	} {
		got, err := parseItem(c.arg)
		if err != nil || got != c.want {
			t.Errorf("parseItem(%q) = %+v, %v; want %+v", c.arg, got, err, c.want)
		}
	}
	for _, c := range []struct{ arg, want string }{
		{"sku-1", "is not SKU:QTY or SKU:QTY@ACTIVITY"},
		{"sku-1:", "is not SKU:QTY"},
		{":2", "is not SKU:QTY"},
		{"sku-1:two", "is not SKU:QTY"},
		{"sku-1:-2", "is not SKU:QTY"},
		{"sku-1:2@", "is not SKU:QTY"},
		{"sku-1:99999999999999999999", "quantity 99999999999999999999 is too large"},
		{"x:1@y:2", `reads as SKU:QTY[@ACTIVITY] in 2 ways (SKU "x" QTY 1 ACTIVITY "y:2", or SKU "x:1@y" QTY 2)`},
	} {
		if got, err := parseItem(c.arg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseItem(%q) = %+v, %v; want an error saying %q", c.arg, got, err, c.want)
		}
	}
}

// A single-SKU physical sync from the CLI needs a WAREHOUSE=QTY or --zero-all: no
// arguments at all would set the SKU's stock to 0 in every warehouse.
func TestParseLevelsNeedsALevelOrZeroAll(t *testing.T) {
	got, err := parseLevels([]string{"SH=4", "W=1=2"}, false)
	if want := []inventory.PhysicalLevel{{Warehouse: "SH", Qty: 4}, {Warehouse: "W=1", Qty: 2}}; err != nil || !slices.Equal(got, want) {
		t.Errorf("parseLevels(SH=4 W=1=2) = %+v, %v; want %+v", got, err, want)
	}
	if got, err := parseLevels(nil, true); err != nil || got == nil || len(got) != 0 {
		t.Errorf("parseLevels(--zero-all) = %#v, %v; want no level", got, err)
	}
	for _, c := range []struct {
		args    []string
		zeroAll bool
		want    string
	}{
		{nil, false, "or --zero-all for 0 in every warehouse"},
		{[]string{"SH=1"}, true, "give it without WAREHOUSE=QTY"},
		{[]string{"SH"}, false, `"SH" is not WAREHOUSE=QTY`},
		{[]string{"=3"}, false, `"=3" is not WAREHOUSE=QTY`},
		{[]string{"SH=x"}, false, `"SH=x" is not WAREHOUSE=QTY`},
	} {
		if got, err := parseLevels(c.args, c.zeroAll); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseLevels(%q, zeroAll %v) = %+v, %v; want an error saying %q", c.args, c.zeroAll, got, err, c.want)
		}
	}
}

// TestStockPhysicalNeedsALevelOrZeroAll runs `stocksync stock physical` as an operator
// would: without a level it is refused and writes nothing, --zero-all zeroes the SKU in
// every warehouse.
func TestStockPhysicalNeedsALevelOrZeroAll(t *testing.T) {
	run, db := stockCLI(t)
	for _, args := range [][]string{{"stock", "set", "APPLE:RED", "--sellable", "5"},
		{"stock", "warehouse", "SH", "--name", "Shanghai", "--type", "central"},
		{"stock", "warehouse", "BJ", "--name", "Beijing", "--type", "central"},
		{"stock", "physical", "APPLE:RED", "SH=4", "BJ=3"}} {
		if out, err := run(args...); err != nil {
			t.Fatalf("stocksync %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	physical := func() int64 {
		t.Helper()
		var n int64
		if err := db.QueryRow("SELECT COALESCE(SUM(qty), 0) FROM physical_stock WHERE sku_id = 'APPLE:RED'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if out, err := run("stock", "physical", "APPLE:RED"); err == nil || !strings.Contains(out, "--zero-all") {
		t.Fatalf("stock physical APPLE:RED without levels: %v\n%s\nwant it refused, naming --zero-all", err, out)
	}
	if n := physical(); n != 7 {
		t.Fatalf("a refused sync left %d units of physical stock, want 7", n)
	}
	if out, err := run("stock", "physical", "APPLE:RED", "--zero-all"); err != nil || physical() != 0 {
		t.Fatalf("stock physical APPLE:RED --zero-all: %v\n%s\nleft %d units, want 0", err, out, physical())
	}
}

// TestStockDeductOfASKUWithColons deducts `APPLE:RED:2`: 2 of the SKU APPLE:RED.
func TestStockDeductOfASKUWithColons(t *testing.T) {
	run, _ := stockCLI(t)
	if out, err := run("stock", "set", "APPLE:RED", "--sellable", "5"); err != nil {
		t.Fatalf("stocksync stock set: %v\n%s", err, out)
	}
	out, err := run("stock", "deduct", "o-colon", "APPLE:RED:2")
	var order struct {
		Items []struct {
			SKU string `json:"sku"`
			Qty int64  `json:"qty"`
		} `json:"items"`
	}
	if err != nil || json.Unmarshal([]byte(out), &order) != nil || len(order.Items) != 1 || order.Items[0].SKU != "APPLE:RED" || order.Items[0].Qty != 2 {
		t.Fatalf("stock deduct o-colon APPLE:RED:2: %v\n%s\nwant 2 of APPLE:RED", err, out)
	}
}
