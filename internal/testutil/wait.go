package testutil

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// Eventually polls cond every 20 ms until it is true, failing the test with what after
// timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var serverIDs atomic.Uint32

// ServerID returns a replica server id unique to this process and call, so that tests
// running at once never share a binlog connection id (the server would drop one).
func ServerID() uint32 {
	return 100000 + uint32(os.Getpid()%20000)*100 + serverIDs.Add(1)%100
}

// Name is a short unique name for topics and the like.
func Name(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, time.Now().UnixNano()%1e10)
}
