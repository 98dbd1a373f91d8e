package sinks

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/stocksync/stocksync/internal/testutil"
)

func TestAckWindowOutOfOrder(t *testing.T) {
	w := newAckWindow(4, 0)
	for _, seq := range []uint64{2, 1} {
		w.ack(seq, 0)
	}
	if got := w.low(); got != 0 {
		t.Fatalf("low = %d before 0 is acked, want 0", got)
	}
	w.ack(0, 0)
	if got := w.low(); got != 3 {
		t.Fatalf("low = %d after 0,1,2 acked, want 3", got)
	}
	w.ack(3, 0)
	w.ack(4, 0) // wraps around the ring
	if got := w.low(); got != 5 {
		t.Fatalf("low = %d, want 5", got)
	}
}

func TestAckWindowWaitRoomBlocksUntilAck(t *testing.T) {
	w := newAckWindow(2, 0)
	noFail := func() *error { return nil }
	if err := w.waitRoom(t.Context(), 1, 0, noFail); err != nil {
		t.Fatalf("waitRoom(1) with room: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- w.waitRoom(t.Context(), 2, 0, noFail) }()
	select {
	case err := <-done:
		t.Fatalf("waitRoom(2) returned %v with a full window", err)
	case <-time.After(50 * time.Millisecond):
	}
	w.ack(0, 0)
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
	w := newAckWindow(8, 0)
	noFail := func() *error { return nil }
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	if err := w.waitDone(ctx, 1, noFail); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waitDone with nothing acked = %v, want a deadline error", err)
	}
	done := make(chan error, 1)
	go func() { done <- w.waitDone(t.Context(), 3, noFail) }()
	w.ack(1, 0)
	w.ack(2, 0)
	w.ack(0, 0)
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
	w := newAckWindow(8, 0)
	noFail := func() *error { return nil }
	done := make(chan error, 4)
	for range 4 {
		go func() { done <- w.waitDone(t.Context(), 2, noFail) }()
	}
	testutil.Eventually(t, 5*time.Second, "4 goroutines waiting", func() bool { return w.doneWaiters.Load() >= 4 })
	w.ack(1, 0)
	w.ack(0, 0) // one move, from 0 to 2
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

// handOver enqueues a message of size bytes into w, whose producer input is input.
func handOver(t *testing.T, ctx context.Context, w *ackWindow, input chan *sarama.ProducerMessage, emitted *atomic.Uint64,
	size int) (*sarama.ProducerMessage, error) {
	t.Helper()
	pm := &sarama.ProducerMessage{Topic: "t"}
	return pm, w.enqueue(ctx, input, pm, size, emitted, func() *error { return nil })
}

// The window bounds the bytes outstanding as well as their number: once they reach the
// budget the next message waits, and the acknowledgement of any message (here one out of
// order, which leaves the watermark where it was) frees its bytes and lets it go.
func TestAckWindowHoldsTheNextMessageOnceItsBytesAreUsed(t *testing.T) {
	w := newAckWindow(100, 1000)
	input := make(chan *sarama.ProducerMessage, 100)
	var emitted atomic.Uint64
	first, err := handOver(t, t.Context(), w, input, &emitted, 600)
	if err != nil {
		t.Fatal(err)
	}
	second, err := handOver(t, t.Context(), w, input, &emitted, 400)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := handOver(t, t.Context(), w, input, &emitted, 1)
		done <- err
	}()
	testutil.Eventually(t, 5*time.Second, "the third message to wait for room", w.roomWaiter.Load)
	select {
	case err := <-done:
		t.Fatalf("a message over the byte budget was handed over (%v) with 1000 of 1000 bytes outstanding", err)
	case <-time.After(50 * time.Millisecond):
	}
	w.settle(second) // out of order: the watermark stays at 0
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the third message still waits after 400 bytes were acknowledged")
	}
	if got := w.held.Load(); got != 601 {
		t.Fatalf("held = %d bytes, want 601", got)
	}
	w.settle(first)
	if got, want := w.low(), uint64(2); got != want || len(input) != 3 {
		t.Fatalf("low = %d with %d handed over, want %d and 3", got, len(input), want)
	}
}

// A message larger than the whole budget is handed over alone, once nothing else is
// outstanding: it never waits for good, and nothing joins it until it is acknowledged.
func TestAckWindowHandsOverAMessageLargerThanTheBudgetAlone(t *testing.T) {
	w := newAckWindow(100, 1000)
	input := make(chan *sarama.ProducerMessage, 100)
	var emitted atomic.Uint64
	small, err := handOver(t, t.Context(), w, input, &emitted, 10)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := handOver(t, t.Context(), w, input, &emitted, 5000)
		done <- err
	}()
	testutil.Eventually(t, 5*time.Second, "the large message to wait for room", w.roomWaiter.Load)
	w.settle(small)
	if err := <-done; err != nil {
		t.Fatalf("the large message, with nothing else outstanding: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := handOver(t, ctx, w, input, &emitted, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a message after the large one, before its acknowledgement: %v, want it to wait", err)
	}
	if got := w.held.Load(); got != 5000 {
		t.Fatalf("held = %d bytes after a message that waited in vain, want 5000", got)
	}
}
