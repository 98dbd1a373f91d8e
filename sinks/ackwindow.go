package sinks

import (
	"context"
	"math"
	"sync"
	"sync/atomic"

	"github.com/IBM/sarama"
)

// ackWindow tracks acknowledgements of sequence-numbered messages that may arrive out of
// order (different partitions). done is the low watermark: every message below it is
// acknowledged. At most size messages are outstanding, and at most maxBytes of them:
// while the brokers stall, what waits for them is held in memory, and a count alone lets
// rows with large columns (a JSON blob, a description) pile up to count × their size.
type ackWindow struct {
	mu    sync.Mutex // guards acked; done is written under it and read without it
	acked []bool
	done  atomic.Uint64
	// held is the size (sarama's ByteSize) of the messages handed to the producer and not
	// yet settled. It falls at each message's own acknowledgement, not with the
	// watermark: an acknowledged message is no longer held, whatever waits before it.
	held     atomic.Int64
	maxBytes int64
	// wakeRoom is signalled (without blocking) when done moves, or when held falls while
	// roomWaiter is set: its one waiter is the emitting goroutine. roomWaiter spares the
	// acknowledging goroutine a channel operation per message while nobody waits.
	wakeRoom   chan struct{}
	roomWaiter atomic.Bool
	// doneMoved is closed and replaced when done moves (or the sink fails) while any
	// goroutine waits in waitDone: Flush may have several callers at once (the
	// checkpoint loop, a resync).
	doneWaiters atomic.Int32
	doneMu      sync.Mutex
	doneMoved   chan struct{}
}

// newAckWindow bounds the messages outstanding to size and their bytes to maxBytes (0: no
// bound in bytes). A message larger than maxBytes is handed over alone, once nothing else
// is outstanding, so that it never waits for good.
func newAckWindow(size int, maxBytes int64) *ackWindow {
	if maxBytes <= 0 {
		maxBytes = math.MaxInt64
	}
	return &ackWindow{acked: make([]bool, size), maxBytes: maxBytes, wakeRoom: make(chan struct{}, 1),
		doneMoved: make(chan struct{})}
}

// ack settles message seq, of size bytes.
func (w *ackWindow) ack(seq uint64, size int64) {
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
	// Released before the emitter is woken, which then sees it. (The emitter sets
	// roomWaiter before it looks at held again, so one of the two sees the other.)
	w.held.Add(-size)
	if moved {
		w.wake()
	} else if w.roomWaiter.Load() {
		w.wakeEmitter()
	}
}

// wake tells every waiter that done moved or the sink failed.
func (w *ackWindow) wake() {
	w.wakeEmitter()
	if w.doneWaiters.Load() > 0 {
		w.doneMu.Lock()
		close(w.doneMoved)
		w.doneMoved = make(chan struct{})
		w.doneMu.Unlock()
	}
}

func (w *ackWindow) wakeEmitter() {
	select {
	case w.wakeRoom <- struct{}{}:
	default:
	}
}

// moved is the channel the next move of done closes.
func (w *ackWindow) moved() <-chan struct{} {
	w.doneMu.Lock()
	defer w.doneMu.Unlock()
	return w.doneMoved
}

func (w *ackWindow) low() uint64 { return w.done.Load() }

// hasRoom reports whether message seq, of size bytes, fits in the window: its number
// within size of the watermark, and its bytes within maxBytes of what is held, unless
// nothing is held.
func (w *ackWindow) hasRoom(seq uint64, size int64) bool {
	if seq-w.low() >= uint64(len(w.acked)) {
		return false
	}
	held := w.held.Load()
	return held == 0 || held <= w.maxBytes-size
}

// waitRoom blocks until message seq, of size bytes, fits in the window.
func (w *ackWindow) waitRoom(ctx context.Context, seq uint64, size int64, failed func() *error) error {
	if w.hasRoom(seq, size) {
		return nil
	}
	w.roomWaiter.Store(true)
	defer w.roomWaiter.Store(false)
	for !w.hasRoom(seq, size) {
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

// tracking is what the window knows of a message handed to the producer: its sequence
// number and its size. A producer message's Metadata points at it (toProducerMessage
// allocates it with the message), so that the acknowledgement names both.
type tracking struct {
	seq  uint64
	size int64
}

// enqueue numbers pm, of size bytes, with the next sequence number, waits for room in the
// window and hands pm to the producer's input; emitted counts what was handed over.
func (w *ackWindow) enqueue(ctx context.Context, input chan<- *sarama.ProducerMessage, pm *sarama.ProducerMessage, size int,
	emitted *atomic.Uint64, failed func() *error) error {
	seq := emitted.Load()
	if err := w.waitRoom(ctx, seq, int64(size), failed); err != nil {
		return err
	}
	p, ok := pm.Metadata.(*tracking)
	if !ok {
		p = new(tracking)
		pm.Metadata = p
	}
	p.seq, p.size = seq, int64(size)
	w.held.Add(p.size) // before the producer has it, so that its acknowledgement never comes first
	select {
	case input <- pm:
		emitted.Store(seq + 1)
		return nil
	case <-ctx.Done():
		w.held.Add(-p.size)
		return ctx.Err()
	}
}

// settle acknowledges pm in the window, if enqueue numbered it.
func (w *ackWindow) settle(pm *sarama.ProducerMessage) {
	if p, ok := pm.Metadata.(*tracking); ok {
		w.ack(p.seq, p.size)
	}
}

// collect acknowledges each message the producer reports delivered, until it closes
// successes.
func (w *ackWindow) collect(successes <-chan *sarama.ProducerMessage) {
	for m := range successes {
		producedTotal.Inc()
		w.settle(m)
	}
}
