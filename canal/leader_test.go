package canal_test

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
)

// TestLeaderLeaseEndsBeforeTheNextLeaderLeads: the lock's holder leads only after the
// takeover wait, and when its lock connection is killed, it stops holding its lease
// before the next holder's takeover wait is over. The next holder says what it waits for
// meanwhile: the lock held by another, then its own takeover wait.
func TestLeaderLeaseEndsBeforeTheNextLeaderLeads(t *testing.T) {
	m := testutil.MySQLServer(t)
	name := testutil.Name("stocksync-test-lock-")
	log := zaptest.NewLogger(t)

	began := time.Now()
	first, err := canal.AcquireLeadership(t.Context(), m.Open(t, ""), name, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Release()
	if waited := time.Since(began); waited < canal.TakeoverWait {
		t.Errorf("the first holder led after %s, before the takeover wait of %s", waited, canal.TakeoverWait)
	}
	if !first.Held() {
		t.Fatal("the first holder does not hold its lease")
	}

	type acquired struct {
		l   *canal.Leadership
		err error
		at  time.Time
	}
	second := make(chan acquired, 1)
	waits := make(chan canal.LockWait, 100)
	go func() {
		l, err := canal.AcquireLeadership(t.Context(), m.Open(t, ""), name, log, func(w canal.LockWait) { waits <- w })
		second <- acquired{l, err, time.Now()}
	}()
	select {
	case w := <-waits:
		if w != (canal.LockWait{}) {
			t.Errorf("the second holder, the lock held by the first, waits for %+v, want another holder", w)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second holder did not say what it waits for")
	}

	admin := m.Open(t, "")
	var holder int64
	testutil.Eventually(t, 5*time.Second, "the lock to show its holder", func() bool {
		return admin.QueryRow("SELECT IS_USED_LOCK(?)", name).Scan(&holder) == nil && holder != 0
	})
	select {
	case got := <-second:
		t.Fatalf("a second holder led while the first held the lock: %v", got.err)
	default:
	}
	// Taken before the KILL: the lock is freed, and the second holder gets it, while the
	// KILL's answer is on its way back, so a time taken after it can be late by a few
	// milliseconds and the wait measured from it short by as much.
	killed := time.Now()
	testutil.Exec(t, admin, fmt.Sprintf("KILL %d", holder))

	var got acquired
	select {
	case got = <-second:
	case <-time.After(15 * time.Second):
		t.Fatal("the second daemon did not lead within 15 s of the first one's lock connection being killed")
	}
	if got.err != nil {
		t.Fatal(got.err)
	}
	var last canal.LockWait
	for len(waits) > 0 {
		last = <-waits
	}
	if !last.Taken || last.Unreachable != nil {
		t.Errorf("the second holder's last wait was for %+v, want its takeover wait", last)
	}
	defer got.l.Release()
	if first.Held() {
		t.Error("the first holder still holds its lease when the second one leads")
	}
	select {
	case <-first.Lost():
	default:
		t.Error("the first holder's Lost is not closed when the second one leads")
	}
	if waited := got.at.Sub(killed); waited < canal.TakeoverWait {
		t.Errorf("the second holder led %s after the lock was freed, before the takeover wait of %s", waited, canal.TakeoverWait)
	}
	if !got.l.Held() {
		t.Error("the second holder does not hold its lease")
	}
	got.l.Release()
	if got.l.Held() {
		t.Error("a released lease is still held")
	}
}

// TestLeaseIsRenewedThenRunsOut: confirmations keep the lease held past LeaseLength; once
// they stop (a stalled host, Lost not closed), Held turns false by itself within
// LeaseLength of the last one.
func TestLeaseIsRenewedThenRunsOut(t *testing.T) {
	m := testutil.MySQLServer(t)
	l, err := canal.AcquireLeadership(t.Context(), m.Open(t, ""), testutil.Name("stocksync-test-lock-"), zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	renewed := time.Now().Add(canal.LeaseLength + canal.LeaseCheckEvery)
	for time.Now().Before(renewed) {
		if !l.Held() {
			t.Fatal("the lease ran out while its lock was being confirmed")
		}
		time.Sleep(50 * time.Millisecond) // sampling Held over time: there is no event to await
	}
	canal.StopConfirming(l)
	stopped := time.Now()
	testutil.Eventually(t, 2*canal.LeaseLength, "the lease to run out without confirmations", func() bool { return !l.Held() })
	if took := time.Since(stopped); took > canal.LeaseLength+canal.LeaseCheckEvery {
		t.Errorf("the lease ran out %s after the confirmations stopped; want at most %s", took, canal.LeaseLength)
	}
	select {
	case <-l.Lost():
		t.Error("Lost is closed: the lease should have run out by itself")
	default:
	}
}
