package sinks

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/IBM/sarama"
)

// ackWindow tracks acknowledgements of sequence-numbered messages that may arrive out of
// order (different partitions). done is the low watermark: every message below it is
// acknowledged. At most size messages are outstanding.
type ackWindow struct {
	mu    sync.Mutex // guards acked; done is written under it and read without it
	acked []bool
	done  atomic.Uint64
	// wakeRoom is signalled (without blocking) when done moves: its one waiter is the
	// emitting goroutine.
	wakeRoom chan struct{}
	// doneMoved is closed and replaced when done moves (or the sink fails) while any
	// goroutine waits in waitDone: Flush may have several callers at once (the
	// checkpoint loop, a resync).
	doneWaiters atomic.Int32
	doneMu      sync.Mutex
	doneMoved   chan struct{}
}

func newAckWindow(size int) *ackWindow {
	return &ackWindow{acked: make([]bool, size), wakeRoom: make(chan struct{}, 1), doneMoved: make(chan struct{})}
}

func (w *ackWindow) ack(seq uint64) {
	w.mu.Lock()
	n := uint64(len(w.acked))
	w.acked[seq%n] = true
	done := w.done.Load()
	start := done
	for w.acked[done%n] {
		w.acked[done%n] = false
		done++
	}
	moved := done != start
	if moved {
		w.done.Store(done)
	}
	w.mu.Unlock()
	if moved {
		w.wake()
	}
}

func (w *ackWindow) wake() {
	select {
	case w.wakeRoom <- struct{}{}:
	default:
	}
	if w.doneWaiters.Load() > 0 {
		w.doneMu.Lock()
		close(w.doneMoved)
		w.doneMoved = make(chan struct{})
		w.doneMu.Unlock()
	}
}

// moved is the channel the next move of done closes.
func (w *ackWindow) moved() <-chan struct{} {
	w.doneMu.Lock()
	defer w.doneMu.Unlock()
	return w.doneMoved
}

func (w *ackWindow) low() uint64 { return w.done.Load() }

// waitRoom blocks until message seq fits in the window.
func (w *ackWindow) waitRoom(ctx context.Context, seq uint64, failed func() *error) error {
	for seq-w.low() >= uint64(len(w.acked)) {
		if e := failed(); e != nil {
			return *e
		}
		select {
		case <-w.wakeRoom:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// waitDone blocks until every message below target is acknowledged.
// Any number of goroutines may wait at once. (A waiter registers before it reads done,
// and ack stores done before wake reads the count, so no move goes unseen.)
func (w *ackWindow) waitDone(ctx context.Context, target uint64, failed func() *error) error {
	w.doneWaiters.Add(1)
	defer w.doneWaiters.Add(-1)
	for {
		moved := w.moved()
		if w.low() >= target {
			return nil
		}
		if e := failed(); e != nil {
			return *e
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// enqueue numbers pm with the next sequence number (in Metadata, a *uint64, which
// toProducerMessage allocates with the message), waits for room in the window and hands
// pm to the producer's input; emitted counts what was handed over.
func (w *ackWindow) enqueue(ctx context.Context, input chan<- *sarama.ProducerMessage, pm *sarama.ProducerMessage,
	emitted *atomic.Uint64, failed func() *error) error {
	seq := emitted.Load()
	if err := w.waitRoom(ctx, seq, failed); err != nil {
		return err
	}
	p, ok := pm.Metadata.(*uint64)
	if !ok {
		p = new(uint64)
		pm.Metadata = p
	}
	*p = seq
	select {
	case input <- pm:
		emitted.Store(seq + 1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// collect acknowledges each message the producer reports delivered, until it closes
// successes.
func (w *ackWindow) collect(successes <-chan *sarama.ProducerMessage) {
	for m := range successes {
		producedTotal.Inc()
		if seq, ok := sequence(m); ok {
			w.ack(seq)
		}
	}
}
