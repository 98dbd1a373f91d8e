package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stocksync/stocksync/internal/testutil"
)

// TestStopWithAStalledBrokerEndsWithinItsBound: SIGTERM while the broker accepts
// connections but answers nothing (frozen with SIGSTOP), with rows handed to the producer
// that it has not acknowledged. The daemon cannot save its last checkpoint: it exits 1
// within stopWithin of the signal, whatever it was waiting for, saying so, and the next
// start publishes those rows again from the checkpoint left where it was.
func TestStopWithAStalledBrokerEndsWithinItsBound(t *testing.T) {
	for _, exactlyOnce := range []bool{false, true} {
		t.Run(map[bool]string{false: "at-least-once", true: "exactly-once"}[exactlyOnce], func(t *testing.T) {
			broker := runDevBroker(t, "127.0.0.1:0", t.TempDir())
			s := newSetup(t, broker.addr)
			if exactlyOnce {
				s.editConfig(t, "kafka:\n", fmt.Sprintf("kafka:\n  exactly_once: true\n  transactional_id: %s\n  checkpoint_topic: %s.checkpoints\n", s.topic, s.topic))
			}
			db := s.mysql.Open(t, s.db)
			testutil.Exec(t, db, "CREATE TABLE stock_stall (sku_id INT PRIMARY KEY, qty INT)")
			d := s.start(t)
			insertRows(t, db, "stock_stall", 0, 10)
			consumeEveryRow(t, s.broker, s.topic, 10)
			emitted := metric(t, s.httpAddr, "stocksync_messages_emitted_total")

			freeze(t, broker.cmd.Process)
			insertRows(t, db, "stock_stall", 10, 20)
			// At least one of them handed to the producer, unacknowledged. Not all ten:
			// exactly-once, a Kafka commit due at one of their transactions' ends waits for
			// the frozen broker, and holds the rest back.
			testutil.Eventually(t, 10*time.Second, "the daemon to hand a row of 10..19 to the producer", func() bool {
				return metric(t, s.httpAddr, "stocksync_messages_emitted_total") >= emitted+1
			})
			signalled := time.Now()
			d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(stopWithin + 30*time.Second):
				t.Fatalf("still running %s after SIGTERM", stopWithin+30*time.Second)
			}
			took := time.Since(signalled)
			t.Logf("exited %d %s after SIGTERM", d.cmd.ProcessState.ExitCode(), took.Round(10*time.Millisecond))
			if took > stopWithin+time.Second {
				t.Errorf("exited %s after SIGTERM, over the bound of %s", took.Round(10*time.Millisecond), stopWithin)
			}
			if code := d.cmd.ProcessState.ExitCode(); code != 1 {
				t.Errorf("exit %d with the last checkpoint not saved, want 1", code)
			}
			if !strings.Contains(d.output.String(), "the next start publishes again what came after it") {
				t.Errorf("the output does not say that the checkpoint stayed:\n%s", d.output.String())
			}

			// The next start, the broker answering again, publishes rows 10..19.
			broker.cmd.Process.Signal(syscall.SIGCONT)
			s.start(t)
			insertRows(t, db, "stock_stall", 20, 21)
			consumeEveryRow(t, s.broker, s.topic, 21)
		})
	}
}
