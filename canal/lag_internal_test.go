package canal

import (
	"testing"
	"time"
)

// TestLagIsZeroOnceTheServerSaysNothingIsNewer: one change on a quiet source is as far
// behind as its age only until the server's next heartbeat, read promptly, says nothing
// newer is there, not for five seconds more (a heartbeat topic would carry the climb).
// A heartbeat read late, after the reader stalled, says nothing of what came since: it
// does not count.
func TestLagIsZeroOnceTheServerSaysNothingIsNewer(t *testing.T) {
	changed := time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC) // the event's timestamp, whole seconds
	arrived := changed.Add(300 * time.Millisecond)
	for _, c := range []struct {
		what          string
		heartbeatLate time.Duration // a prompt heartbeat, after the event arrived; 0: none yet
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
	second := int64(time.Second)
	if !readPromptly(arrived.UnixNano()+second, arrived.UnixNano()) {
		t.Error("a heartbeat read a second after the event: not prompt; want it to say the stream is caught up")
	}
	if readPromptly(arrived.UnixNano()+4*second+6*second/10, arrived.UnixNano()) {
		t.Error("a heartbeat read 4.6 s after the event before it (the reader stalled meanwhile): prompt; want it not to count")
	}
	if got := lagAt(0, 0, 0, arrived); got != 0 {
		t.Errorf("before any event: lag %v, want 0", got)
	}
}
