package canal

import (
	"testing"
	"time"
)

// TestLagIsZeroOnceTheServerSaysNothingIsNewer: one change on a quiet source is as far
// behind as its age only until the server's next heartbeat says nothing newer is there,
// not for five seconds more (a heartbeat topic would carry the climb).
func TestLagIsZeroOnceTheServerSaysNothingIsNewer(t *testing.T) {
	changed := time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC) // the event's timestamp, whole seconds
	arrived := changed.Add(300 * time.Millisecond)
	for _, c := range []struct {
		what          string
		heartbeatLate time.Duration // after the event arrived; 0: none yet
		at            time.Duration // after the event arrived
		want          time.Duration
	}{
		{"just read", 0, 0, 300 * time.Millisecond},
		{"no heartbeat yet", 0, 700 * time.Millisecond, time.Second},
		{"a heartbeat after it", time.Second, 1500 * time.Millisecond, 0},
		{"nothing for over five seconds", 0, 6 * time.Second, 0},
	} {
		readAt := arrived
		if c.heartbeatLate > 0 {
			readAt = arrived.Add(c.heartbeatLate)
		}
		if got := lagAt(changed.Unix(), arrived.UnixNano(), readAt.UnixNano(), arrived.Add(c.at)); got != c.want {
			t.Errorf("%s: lag %v, want %v", c.what, got, c.want)
		}
	}
	if got := lagAt(0, 0, 0, arrived); got != 0 {
		t.Errorf("before any event: lag %v, want 0", got)
	}
}
