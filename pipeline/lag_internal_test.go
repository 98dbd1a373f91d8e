package pipeline

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// TestLagClock: the lag is what a reading stream last had; while no stream reads it grows
// on from there, a second per second, unless a pipeline says it is further behind (its
// broker's acknowledgements); a stream reading again sets it as it is, and a standby is
// behind nothing.
func TestLagClock(t *testing.T) {
	var c lagClock
	t0 := time.Unix(1700000000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	c.set(0, false, t0)
	if v := c.valueAt(at(time.Hour)); v != 0 {
		t.Errorf("before any stream read: %v, want 0", v)
	}
	c.set(time.Second, true, t0)
	if v := c.valueAt(at(5 * time.Second)); v != time.Second {
		t.Errorf("reading: %v, want the lag set, 1s", v)
	}
	c.set(0, false, at(2*time.Second)) // the stream stopped reading
	if v := c.valueAt(at(5 * time.Second)); v != 6*time.Second {
		t.Errorf("5 s after the last read: %v, want 1s + 5s", v)
	}
	c.set(10*time.Second, false, at(5*time.Second)) // unacknowledged changes 10 s old
	if v := c.valueAt(at(7 * time.Second)); v != 12*time.Second {
		t.Errorf("behind by unacknowledged changes: %v, want 10s + 2s", v)
	}
	c.stopped()
	c.set(0, true, at(8*time.Second)) // a new run reads, caught up
	if v := c.valueAt(at(20 * time.Second)); v != 0 {
		t.Errorf("reading again, caught up: %v, want 0", v)
	}
	c.stopped()
	c.standby()
	if v := c.valueAt(at(time.Hour)); v != 0 {
		t.Errorf("a standby: %v, want 0", v)
	}
}

// TestStandbyExportsNoBinlogRetention: stocksync_checkpoint_binlog_files_older, alerted on
// below 1, has no series in a process that never led nor in one that stands by again
// (it would say -1, or its last lead's count, for ever); a pipeline's start exports it,
// -1 until checked. The standby's lag is 0.
func TestStandbyExportsNoBinlogRetention(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	const name = "stocksync_checkpoint_binlog_files_older"
	if n, err := promtest.GatherAndCount(reg, name); err != nil || n != 0 {
		t.Errorf("never led: %d series (%v), want none", n, err)
	}
	m.leads()
	if v := promtest.ToFloat64(m.CheckpointBinlogsBehind); v != -1 {
		t.Errorf("leading, before the first check: %v, want -1", v)
	}
	m.CheckpointBinlogsBehind.Set(3)
	m.lag.set(5*time.Second, true, time.Now())
	if n, err := promtest.GatherAndCount(reg, name); err != nil || n != 1 {
		t.Errorf("leading: %d series (%v), want 1", n, err)
	}
	m.Standby()
	if n, err := promtest.GatherAndCount(reg, name); err != nil || n != 0 {
		t.Errorf("standing by again: %d series (%v), want none", n, err)
	}
	if v := m.lag.seconds(); v != 0 {
		t.Errorf("standing by again: lag %v, want 0", v)
	}
	m.leads()
	if v := promtest.ToFloat64(m.CheckpointBinlogsBehind); v != -1 {
		t.Errorf("leading again, before the first check: %v, want -1 (not the last lead's 3)", v)
	}
}
