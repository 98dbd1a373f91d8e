package sinks

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stocksync/stocksync/internal/testutil"
)

func TestAckWindowOutOfOrder(t *testing.T) {
	w := newAckWindow(4)
	for _, seq := range []uint64{2, 1} {
		w.ack(seq)
	}
	if got := w.low(); got != 0 {
		t.Fatalf("low = %d before 0 is acked, want 0", got)
	}
	w.ack(0)
	if got := w.low(); got != 3 {
		t.Fatalf("low = %d after 0,1,2 acked, want 3", got)
	}
	w.ack(3)
	w.ack(4) // wraps around the ring
	if got := w.low(); got != 5 {
		t.Fatalf("low = %d, want 5", got)
	}
}

func TestAckWindowWaitRoomBlocksUntilAck(t *testing.T) {
	w := newAckWindow(2)
	noFail := func() *error { return nil }
	if err := w.waitRoom(t.Context(), 1, noFail); err != nil {
		t.Fatalf("waitRoom(1) with room: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- w.waitRoom(t.Context(), 2, noFail) }()
	select {
	case err := <-done:
		t.Fatalf("waitRoom(2) returned %v with a full window", err)
	case <-time.After(50 * time.Millisecond):
	}
	w.ack(0)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waitRoom(2) after ack: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitRoom(2) still blocked after 0 was acked")
	}
}

func TestAckWindowWaitDone(t *testing.T) {
	w := newAckWindow(8)
	noFail := func() *error { return nil }
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	if err := w.waitDone(ctx, 1, noFail); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waitDone with nothing acked = %v, want a deadline error", err)
	}
	done := make(chan error, 1)
	go func() { done <- w.waitDone(t.Context(), 3, noFail) }()
	w.ack(1)
	w.ack(2)
	w.ack(0)
	if err := <-done; err != nil {
		t.Fatalf("waitDone: %v", err)
	}

	failure := errors.New("boom")
	failed := func() *error { return &failure }
	if err := w.waitDone(t.Context(), 5, failed); !errors.Is(err, failure) {
		t.Fatalf("waitDone on a failed sink = %v, want the failure", err)
	}
}

// Flush may have several callers at once (the checkpoint loop and a resync): one move of
// the watermark releases them all.
func TestAckWindowWaitDoneWakesEveryWaiter(t *testing.T) {
	w := newAckWindow(8)
	noFail := func() *error { return nil }
	done := make(chan error, 4)
	for range 4 {
		go func() { done <- w.waitDone(t.Context(), 2, noFail) }()
	}
	testutil.Eventually(t, 5*time.Second, "4 goroutines waiting", func() bool { return w.doneWaiters.Load() >= 4 })
	w.ack(1)
	w.ack(0) // one move, from 0 to 2
	for range 4 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a waiter was not woken by the move it waited for")
		}
	}
}
