package inventory

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// listAll pages through GET /v1/orders with query (limit included) and returns every
// order listed, in order, calling between(page) after each page but the last.
func listAll(t *testing.T, srv *httptest.Server, query url.Values, between func(page int)) []Order {
	t.Helper()
	var all []Order
	for page := 1; ; page++ {
		var p OrderPage
		get(t, srv, "/v1/orders?"+query.Encode(), &p)
		all = append(all, p.Orders...)
		if p.Next == "" {
			return all
		}
		if page > 1000 {
			t.Fatal("listing does not end")
		}
		if between != nil {
			between(page)
		}
		query.Set("after", p.Next)
	}
}

// get answers GET path, which must answer 200, decoded into out.
func get(t *testing.T, srv *httptest.Server, path string, out any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e apiError
		json.NewDecoder(resp.Body).Decode(&e)
		t.Fatalf("GET %s = %d %+v", path, resp.StatusCode, e)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// listingStore has orders in every status but shipped, of SKUs l1 and l2: held-N (held,
// hold lasting N minutes), conf-N (confirmed), canc-N (cancelled), exp-N (expired by the
// sweeper). It returns the store, its check pool and the order numbers by status.
func listingStore(t *testing.T) (*Store, *httptest.Server, map[OrderStatus][]string) {
	t.Helper()
	store, _ := newTestStore(t, Options{DisableMerging: true})
	clock := useFakeClock(store, time.Now().UTC())
	seedStore(t, store, seed{stock: []SKUStock{{SKU: "l1", Sellable: 1000, Shards: 2}, {SKU: "l2", Sellable: 1000, Shards: 1}}})
	ctx := t.Context()
	byStatus := map[OrderStatus][]string{}
	deduct := func(no string, ttl time.Duration, skus ...string) {
		t.Helper()
		req := DeductRequest{OrderNo: no, HoldTTL: ttl}
		for _, sku := range skus {
			req.Items = append(req.Items, Item{SKU: sku, Qty: 1})
		}
		if _, err := store.Deduct(ctx, req); err != nil {
			t.Fatalf("deducting %s: %v", no, err)
		}
	}
	for i := range 6 {
		skus := []string{"l1"}
		if i%3 == 1 {
			skus = []string{"l2"}
		} else if i%3 == 2 {
			skus = []string{"l1", "l2"}
		}
		held, conf, canc, exp := fmt.Sprintf("held-%d", i), fmt.Sprintf("conf-%d", i), fmt.Sprintf("canc-%d", i), fmt.Sprintf("exp-%d", i)
		deduct(held, time.Duration(60-i)*time.Minute, skus...) // the later, the sooner it expires
		deduct(conf, time.Hour, skus...)
		deduct(canc, time.Hour, skus...)
		deduct(exp, time.Second, skus...)
		if _, err := store.Confirm(ctx, conf); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Cancel(ctx, canc); err != nil {
			t.Fatal(err)
		}
		byStatus[StatusHeld] = append(byStatus[StatusHeld], held)
		byStatus[StatusConfirmed] = append(byStatus[StatusConfirmed], conf)
		byStatus[StatusCancelled] = append(byStatus[StatusCancelled], canc)
		byStatus[StatusExpired] = append(byStatus[StatusExpired], exp)
	}
	clock.advance(2 * time.Second)
	if n, err := store.SweepExpired(ctx); err != nil || n != 6 {
		t.Fatalf("sweeping: %d released, %v; want 6", n, err)
	}
	srv := httptest.NewServer(store.Handler())
	t.Cleanup(srv.Close)
	return store, srv, byStatus
}

// Paging through every order, and through the held ones, lists each order there was at the
// start exactly once, in the listing's order, while orders are deducted between pages;
// each as GET /v1/orders/{order_no} answers it.
func TestListOrdersPagesCoverEveryOrderOnce(t *testing.T) {
	store, srv, byStatus := listingStore(t)
	ctx := t.Context()
	var before []string
	for _, nos := range byStatus {
		before = append(before, nos...)
	}
	added := 0
	between := func(int) {
		added++
		if _, err := store.Deduct(ctx, DeductRequest{OrderNo: fmt.Sprintf("new-%d", added), HoldTTL: 90 * time.Minute,
			Items: []Item{{SKU: "l1", Qty: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	all := listAll(t, srv, url.Values{"limit": {"5"}}, between)
	seen := map[string]int{}
	for i, o := range all {
		seen[o.OrderNo]++
		want, err := store.GetOrder(ctx, o.OrderNo)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(o, want) {
			t.Errorf("listed %+v, GET answers %+v", o, want)
		}
		if i > 0 {
			var prev, cur time.Time
			q := "SELECT created_at FROM hold WHERE order_no = ?"
			store.db.QueryRow(q, all[i-1].OrderNo).Scan(&prev)
			store.db.QueryRow(q, o.OrderNo).Scan(&cur)
			if cur.After(prev) || (cur.Equal(prev) && o.OrderNo > all[i-1].OrderNo) {
				t.Errorf("%s (created %s) listed after %s (created %s): not newest first", o.OrderNo, cur, all[i-1].OrderNo, prev)
			}
		}
	}
	for _, no := range before {
		if seen[no] != 1 {
			t.Errorf("order %s listed %d times, want once", no, seen[no])
		}
	}
	for no, n := range seen {
		if n != 1 {
			t.Errorf("order %s listed %d times", no, n)
		}
	}
	if added < 4 {
		t.Fatalf("only %d pages: the test pages too little", added+1)
	}

	// Held orders, soonest expiry first; those deducted between pages expire later and
	// are listed at the end.
	startAdded := added
	held := listAll(t, srv, url.Values{"status": {"held"}, "limit": {"2"}}, between)
	var got []string
	for _, o := range held {
		got = append(got, o.OrderNo)
		if o.Status != StatusHeld {
			t.Errorf("status=held listed %s %s", o.OrderNo, o.Status)
		}
	}
	var want []string
	for i := 5; i >= 0; i-- {
		want = append(want, fmt.Sprintf("held-%d", i))
	}
	for i := 1; i <= startAdded; i++ {
		want = append(want, fmt.Sprintf("new-%d", i))
	}
	if len(got) < len(want) || !reflect.DeepEqual(got[:len(want)], want) {
		t.Fatalf("status=held listed %v, want %v first", got, want)
	}
	seen = map[string]int{}
	for _, no := range got {
		if seen[no]++; seen[no] > 1 {
			t.Errorf("status=held listed %s twice", no)
		}
	}
}

// A held listing goes on by expiry from its cursor: a hold deducted between its pages is
// on a later page when it expires after the last order listed, and on none when it
// expires before it (a shorter hold_ttl than those listed), as docs/api.md says.
func TestHeldListingShowsAHoldDeductedMeanwhileOnlyIfItExpiresAfterTheCursor(t *testing.T) {
	store, _ := newTestStore(t, Options{})
	ctx := t.Context()
	seedStore(t, store, seed{stock: []SKUStock{{SKU: "s", Sellable: 100, Shards: 1}}})
	deduct := func(orderNo string, ttl time.Duration) {
		t.Helper()
		if _, err := store.Deduct(ctx, DeductRequest{OrderNo: orderNo, Items: []Item{{SKU: "s", Qty: 1}}, HoldTTL: ttl}); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range []string{"a", "b", "c"} {
		deduct(o, 15*time.Minute)
	}
	page, err := store.ListOrders(ctx, OrderQuery{Status: StatusHeld, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	deduct("late-short", time.Minute)   // expires before a, the cursor
	deduct("late-long", 30*time.Minute) // expires after every hold listed so far
	listed := []string{page.Orders[0].OrderNo}
	for after := page.Next; after != ""; {
		p, err := store.ListOrders(ctx, OrderQuery{Status: StatusHeld, Limit: 1, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range p.Orders {
			listed = append(listed, o.OrderNo)
		}
		after = p.Next
	}
	if want := []string{"a", "b", "c", "late-long"}; !slices.Equal(listed, want) {
		t.Errorf("held listing paged %v, want %v: late-long after the cursor, late-short (expiring before it) on no page", listed, want)
	}
}

// Filters by status and SKU select exactly the orders in that status or with an item of
// that SKU.
func TestListOrdersFilters(t *testing.T) {
	store, srv, byStatus := listingStore(t)
	names := func(q url.Values) []string {
		var out []string
		for _, o := range listAll(t, srv, q, nil) {
			out = append(out, o.OrderNo)
		}
		return out
	}
	set := func(nos []string) map[string]bool {
		m := map[string]bool{}
		for _, n := range nos {
			m[n] = true
		}
		return m
	}
	for _, st := range []OrderStatus{StatusConfirmed, StatusCancelled, StatusExpired, StatusShipped} {
		got := names(url.Values{"status": {string(st)}, "limit": {"4"}})
		if !reflect.DeepEqual(set(got), set(byStatus[st])) || len(got) != len(byStatus[st]) {
			t.Errorf("status=%s listed %v, want %v", st, got, byStatus[st])
		}
	}
	// l2: orders i%3 in {1, 2}, i.e. i = 1, 2, 4, 5 of each status.
	var want []string
	for _, nos := range byStatus {
		for i, no := range nos {
			if i%3 != 0 {
				want = append(want, no)
			}
		}
	}
	if got := names(url.Values{"sku": {"l2"}, "limit": {"3"}}); !reflect.DeepEqual(set(got), set(want)) || len(got) != len(want) {
		t.Errorf("sku=l2 listed %v, want %v", got, want)
	}
	if got := names(url.Values{"sku": {"l2"}, "status": {"held"}}); !reflect.DeepEqual(got, []string{"held-5", "held-4", "held-2", "held-1"}) {
		t.Errorf("sku=l2&status=held listed %v, want held-5, held-4, held-2, held-1", got)
	}
	if got := names(url.Values{"sku": {"nobody"}}); len(got) != 0 {
		t.Errorf("sku=nobody listed %v", got)
	}
	var p OrderPage
	get(t, srv, "/v1/orders", &p)
	if len(p.Orders) != 24 || p.Next != "" {
		t.Errorf("default listing: %d orders, next %q; want all 24 on one page", len(p.Orders), p.Next)
	}
	// Go API: the same.
	page, err := store.ListOrders(t.Context(), OrderQuery{Status: StatusConfirmed, Limit: 1000})
	if err != nil || len(page.Orders) != 6 {
		t.Errorf("ListOrders(confirmed) = %d orders, %v; want 6", len(page.Orders), err)
	}
}

// Every parameter is checked: a bad one answers 400 naming it, and nothing is written.
func TestListOrdersRefusesBadParameters(t *testing.T) {
	store, srv, _ := listingStore(t)
	var first OrderPage
	get(t, srv, "/v1/orders?limit=1", &first)
	var heldPage OrderPage
	get(t, srv, "/v1/orders?status=held&limit=1", &heldPage)
	before := snapshot(t, store.db)
	for _, c := range []struct{ query, field string }{
		{"statuss=held", "statuss"},
		{"status=paid", "status"},
		{"status=", "status"},
		{"status=HELD", "status"},
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=-1", "limit"},
		{"limit=ten", "limit"},
		{"limit=1&limit=2", "limit"},
		{"sku=", "sku"},
		{"sku=a%20", "sku"},
		{"sku=" + strings.Repeat("x", 65), "sku"},
		{"after=", "after"},
		{"after=not-a-cursor", "after"},
		{"after=" + url.QueryEscape(first.Next[:len(first.Next)-2]), "after"},
		{"status=held&after=" + first.Next, "after"},         // a newest-first cursor for the listing by expiry
		{"status=confirmed&after=" + heldPage.Next, "after"}, // and the other way round
	} {
		status, e := send(t, srv, "GET", "/v1/orders?"+c.query, "")
		if status != http.StatusBadRequest || e.Code != "invalid_request" || !strings.HasPrefix(e.Message, c.field+": ") {
			t.Errorf("GET /v1/orders?%s = %d %+v, want 400 invalid_request naming %s", c.query, status, e, c.field)
		}
	}
	if after := snapshot(t, store.db); after != before {
		t.Error("a refused listing changed the tables")
	}
	if status, e := send(t, srv, "POST", "/v1/orders", ""); status != http.StatusMethodNotAllowed {
		t.Errorf("POST /v1/orders = %d %+v, want 405", status, e)
	}
}

// A query string that does not parse whole (an invalid %-escape, a ';' between pairs) is
// refused 400 naming the pair, instead of being listed as if the pair were not there,
// which would list orders of every SKU or status.
func TestListOrdersRefusesAQueryStringThatDoesNotParse(t *testing.T) {
	_, srv, _ := listingStore(t)
	for _, c := range []struct{ query, field, problem string }{
		{"sku=l1%ZZ", "sku", `invalid URL escape "%ZZ"`},
		{"status=confirmed;limit=1", "status", "invalid semicolon separator"},
		{"status=held&sku=%E0%A4%A", "sku", `invalid URL escape "%A"`},
		{"limit=1&st%atus=held", "st%atus", `invalid URL escape "%at"`},
	} {
		status, e := send(t, srv, "GET", "/v1/orders?"+c.query, "")
		if status != http.StatusBadRequest || e.Code != "invalid_request" || !strings.HasPrefix(e.Message, c.field+": ") || !strings.Contains(e.Message, c.problem) {
			t.Errorf("GET /v1/orders?%s = %d %+v, want 400 invalid_request naming %s and saying %s", c.query, status, e, c.field, c.problem)
		}
	}
}

// Each listing reads hold along an index, without sorting it, on a table of 20,000 orders
// of 200 SKUs in every status.
func TestListOrdersUsesIndexes(t *testing.T) {
	store, check := newTestStore(t, Options{})
	for _, stmt := range []string{
		`INSERT INTO hold (order_no, status, expires_at, created_at)
			SELECT CONCAT('o-', seq), ELT(1 + seq % 5, 'held', 'confirmed', 'shipped', 'cancelled', 'expired'),
				NOW(6) + INTERVAL seq SECOND, NOW(6) - INTERVAL seq SECOND FROM seq_1_to_20000`,
		`INSERT INTO deduction_log (order_no, sku_id, kind, qty, shard_takes)
			SELECT CONCAT('o-', seq), CONCAT('sku-', seq % 200), 'sellable', 1, '0:1' FROM seq_1_to_20000`,
		"ANALYZE TABLE hold, deduction_log",
	} {
		if _, err := check.ExecContext(t.Context(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	after := listCursor{Order: newestFirst, At: time.Now().UTC(), OrderNo: "x"}.String()
	afterHeld := listCursor{Order: soonestExpiry, At: time.Now().UTC(), OrderNo: "x"}.String()
	for _, c := range []struct {
		q        OrderQuery
		key      string
		sortFree bool
	}{
		{OrderQuery{}, "hold_created", true},
		{OrderQuery{After: after}, "hold_created", true},
		{OrderQuery{Status: StatusConfirmed, After: after}, "hold_status_created", true},
		{OrderQuery{Status: StatusHeld, After: afterHeld}, "hold_status_expiry", true},
		// A SKU's orders: its log rows along the SKU's index in the listing's order from the
		// cursor on, their orders by primary key, nothing sorted.
		{OrderQuery{SKU: "sku-7"}, "PRIMARY", true},
		{OrderQuery{SKU: "sku-7", After: after}, "PRIMARY", true},
		{OrderQuery{SKU: "sku-7", Status: StatusShipped, After: after}, "PRIMARY", true},
		// Held or confirmed, a semi-join: here the SKU's few log rows by its index, their
		// orders by primary key, and those (a SKU's, not the table's) sorted.
		{OrderQuery{Status: StatusHeld, SKU: "sku-7"}, "PRIMARY", false},
		{OrderQuery{Status: StatusConfirmed, SKU: "sku-7", After: after}, "PRIMARY", false},
	} {
		order, after, err := checkOrderQuery(c.q)
		if err != nil {
			t.Fatal(err)
		}
		text, args, err := store.listQuery(t.Context(), c.q, order, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := store.db.QueryContext(t.Context(), "EXPLAIN "+text, args...)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		var plan []string
		holdKey, holdType, extra := "", "", ""
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			row := map[string]string{}
			for i, col := range cols {
				if b, ok := vals[i].([]byte); ok {
					row[col] = string(b)
				} else if vals[i] != nil {
					row[col] = fmt.Sprint(vals[i])
				}
			}
			plan = append(plan, fmt.Sprint(row))
			switch row["table"] {
			case "h":
				holdKey, holdType, extra = row["key"], row["type"], row["Extra"]
			case "d":
				if row["key"] != "deduction_log_sku_created" {
					t.Errorf("%+v: deduction_log read by key %q, want deduction_log_sku_created", c.q, row["key"])
				}
			}
			if c.sortFree && strings.Contains(row["Extra"], "temporary") {
				t.Errorf("%+v: a temporary table; plan %v", c.q, plan)
			}
			if row["type"] == "ALL" && !strings.HasPrefix(row["table"], "<") { // not a materialized subquery
				t.Errorf("%+v: a full scan of %s: %v", c.q, row["table"], plan)
			}
		}
		rows.Close()
		if holdKey != c.key {
			t.Errorf("%+v: hold read by key %q (%s), want %s; plan %v", c.q, holdKey, holdType, c.key, plan)
		}
		if c.sortFree && strings.Contains(extra+fmt.Sprint(plan), "filesort") {
			t.Errorf("%+v: sorted (%s); plan %v", c.q, extra, plan)
		}
	}
}

// A page of a SKU's orders reads as many rows as the page has, however many orders the
// SKU has had, so that listing a best-selling SKU's orders does not get slower as they
// accumulate (hold and deduction_log keep every order): 4,000 orders of a SKU, older than
// 4,000 of another, one in 500 with a sellable and an activity row of it. Its first page,
// the next, and its shipped orders each read under 300 rows (the session's Handler_read
// counters) and list the right orders, each once; reading every order of the SKU, or every
// order since the page, would take over 4,000.
func TestListingASKUsOrdersReadsOnlyThePage(t *testing.T) {
	store, check := newTestStore(t, Options{DisableMerging: true})
	store.db.SetMaxOpenConns(1) // one session, whose counters are the listing's reads
	for _, stmt := range []string{
		`INSERT INTO hold (order_no, status, expires_at, created_at)
			SELECT CONCAT('hot-', LPAD(seq, 5, '0')), ELT(1 + seq % 2, 'shipped', 'cancelled'),
				TIMESTAMP'2026-01-01 00:00:00' + INTERVAL seq SECOND, TIMESTAMP'2026-01-01 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_4000`,
		`INSERT INTO deduction_log (order_no, sku_id, kind, qty, created_at)
			SELECT CONCAT('hot-', LPAD(seq, 5, '0')), 'hot', 'sellable', 1, TIMESTAMP'2026-01-01 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_4000`,
		`INSERT INTO deduction_log (order_no, sku_id, kind, activity_id, qty, created_at)
			SELECT CONCAT('hot-', LPAD(seq, 5, '0')), 'hot', 'activity', 'a1', 1, TIMESTAMP'2026-01-01 00:00:00' + INTERVAL seq SECOND
			FROM seq_1_to_4000 WHERE seq % 500 = 0`,
		`INSERT INTO hold (order_no, status, expires_at, created_at)
			SELECT CONCAT('cold-', LPAD(seq, 5, '0')), 'shipped', TIMESTAMP'2026-01-02 00:00:00' + INTERVAL seq SECOND,
				TIMESTAMP'2026-01-02 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_4000`,
		`INSERT INTO deduction_log (order_no, sku_id, kind, qty, created_at)
			SELECT CONCAT('cold-', LPAD(seq, 5, '0')), 'cold', 'sellable', 1, TIMESTAMP'2026-01-02 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_4000`,
		"ANALYZE TABLE hold, deduction_log",
	} {
		if _, err := check.ExecContext(t.Context(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	reads := func() int {
		t.Helper()
		var n int
		if err := store.db.QueryRowContext(t.Context(), `SELECT SUM(VARIABLE_VALUE) FROM information_schema.SESSION_STATUS
			WHERE VARIABLE_NAME LIKE 'HANDLER\_READ\_%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	hot := func(seqs ...int) []string {
		var nos []string
		for _, n := range seqs {
			nos = append(nos, fmt.Sprintf("hot-%05d", n))
		}
		return nos
	}
	first, err := store.ListOrders(t.Context(), OrderQuery{SKU: "hot", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		q    OrderQuery
		want []string
	}{
		{OrderQuery{SKU: "hot", Limit: 10}, hot(4000, 3999, 3998, 3997, 3996, 3995, 3994, 3993, 3992, 3991)},
		{OrderQuery{SKU: "hot", Limit: 10, After: first.Next}, hot(3990, 3989, 3988, 3987, 3986, 3985, 3984, 3983, 3982, 3981)},
		{OrderQuery{SKU: "hot", Status: StatusShipped, Limit: 10}, hot(4000, 3998, 3996, 3994, 3992, 3990, 3988, 3986, 3984, 3982)},
	} {
		calibrate := reads()
		before := reads()
		page, err := store.ListOrders(t.Context(), c.q)
		if err != nil {
			t.Fatal(err)
		}
		n := reads() - before - (before - calibrate)
		var got []string
		for _, o := range page.Orders {
			got = append(got, o.OrderNo)
		}
		if !slices.Equal(got, c.want) || page.Next == "" {
			t.Errorf("%+v listed %v (next %q), want %v and a next page", c.q, got, page.Next, c.want)
		}
		t.Logf("%+v: %d rows read", c.q, n)
		if n > 300 {
			t.Errorf("%+v read %d rows for a page of %d", c.q, n, len(page.Orders))
		}
	}
}
