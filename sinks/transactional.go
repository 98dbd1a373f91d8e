package sinks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// TransactionalConfig configures the exactly-once Kafka sink.
type TransactionalConfig struct {
	Brokers  []string
	ClientID string
	// TransactionalID is fixed per daemon: a restarted or second producer with the same id
	// fences the old one.
	TransactionalID string
	// CheckpointTopic receives the checkpoint records inside each transaction. It is
	// created if missing with 1 partition and cleanup.policy=compact, by NewTransactional
	// only: the producer never has the brokers create it (see newTransactionalSaramaConfig).
	CheckpointTopic string
	// Partitioner, Security and MaxMessageBytes are as in KafkaConfig.
	Partitioner     string
	Security        Security
	MaxMessageBytes int
	// MaxInFlight and MaxInFlightBytes are as in KafkaConfig: they bound the messages
	// handed to the producer and not yet acknowledged (acknowledged inside the open
	// transaction, not committed), in number and in bytes; Emit waits beyond either.
	// 0: transactionalMaxInFlight and DefaultMaxInFlightBytes.
	MaxInFlight      int
	MaxInFlightBytes int
	// TransactionTimeout is how long the brokers let a transaction stay open before they
	// abort it (kafka.transaction_timeout; at most their transaction.max.timeout.ms).
	// 0: DefaultTransactionTimeout.
	TransactionTimeout time.Duration
	Logger             *zap.Logger
}

// CheckpointRecord is one key of the checkpoint; a nil Value deletes the key (a tombstone).
type CheckpointRecord struct {
	Key   string
	Value []byte
}

// ErrFenced means another producer with the same transactional id has started: this
// process no longer owns the id and must stop. It is terminal, unlike ErrSinkFailed, and
// errors wrapping it do not wrap ErrSinkFailed (a restart would fence the other instance
// in turn).
var ErrFenced = errors.New("kafka producer fenced by a newer instance with the same transactional id")

// transactionalMaxInFlight bounds messages handed to the producer but not yet
// acknowledged (acknowledged inside the open transaction, not committed) when
// TransactionalConfig.MaxInFlight is 0.
const transactionalMaxInFlight = 100000

// DefaultTransactionTimeout is how long the brokers let a transaction stay open before
// they abort it (and bump this producer's epoch): Kafka's default
// transaction.max.timeout.ms, the most a broker allows unless told otherwise. The pipeline
// commits every checkpoint interval, far more often; what needs the time is a snapshot,
// one transaction until it has been open for half of it (then it commits in parts).
const DefaultTransactionTimeout = 15 * time.Minute

// ErrTransactionTimedOut means the brokers aborted the open transaction because it stayed
// open longer than the transaction timeout. Retrying would run into it again, so it is
// terminal, like ErrFenced, and names the setting.
var ErrTransactionTimedOut = errors.New("the brokers aborted the Kafka transaction: it was open longer than kafka.transaction_timeout")

// Transactional is the exactly-once sink: an idempotent, transactional sarama producer.
// Messages emitted between two Commits form one Kafka transaction together with the
// checkpoint records given to the second Commit, so a read_committed consumer sees all of
// them or none. The caller commits only at a MySQL transaction boundary; one Kafka
// transaction may carry many MySQL transactions.
//
// Emit, Flush and Commit are meant to be called from one goroutine; a mutex serialises
// them anyway. After any error other than a ctx error from Emit or Flush the sink is
// failed for good: Close it, create a new one (which aborts what is left and fences
// nothing but older producers) and resume from ReadCheckpoints.
type Transactional struct {
	client          sarama.Client
	producer        sarama.AsyncProducer
	log             *zap.Logger
	topic           string // the checkpoint topic
	maxMessageBytes int
	known           map[string]bool // topics Emit has had the brokers create if missing; guarded by mu
	timeout         time.Duration   // the transaction timeout the brokers enforce

	mu       sync.Mutex // serialises Emit, Flush, Commit and Close
	open     bool       // a Kafka transaction is open
	openedAt time.Time  // when it began
	broken   error      // set once the sink is unusable; guarded by mu
	busy     chan struct{}

	emitted atomic.Uint64 // messages handed to the producer; the next one gets this number
	acks    *ackWindow
	failed  atomic.Pointer[error] // the first delivery error of the open transaction

	closeOnce sync.Once
	closeErr  error
	done      chan struct{} // closed when the producer's channels are drained
}

var _ interface {
	Emit(context.Context, Message) error
	Flush(context.Context) error
} = (*Transactional)(nil)

// NewTransactional connects, creates the checkpoint topic if missing and initialises the
// transactional producer. Initialising fences any older producer with the same
// TransactionalID and makes the broker finish its open transaction (abort it, or complete
// a commit already decided), so ReadCheckpoints called after NewTransactional returns sees
// the final state. It blocks until all that is done or ctx ends.
func NewTransactional(ctx context.Context, cfg TransactionalConfig) (*Transactional, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	switch {
	case len(cfg.Brokers) == 0:
		return nil, errors.New("kafka.brokers: empty")
	case cfg.TransactionalID == "":
		return nil, errors.New("kafka.transactional_id: empty (needed for exactly_once)")
	case cfg.CheckpointTopic == "":
		return nil, errors.New("kafka.checkpoint_topic: empty (needed for exactly_once)")
	}
	sc, err := newTransactionalSaramaConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("checking transactional producer configuration: %w", err)
	}
	client, err := connect(ctx, cfg.Brokers, cfg.Security, sc)
	if err != nil {
		return nil, err
	}
	if err := ensureCheckpointTopic(ctx, client, cfg.CheckpointTopic); err != nil {
		client.Close()
		return nil, err
	}
	producer, err := runBlocking(ctx, func() (sarama.AsyncProducer, error) {
		return sarama.NewAsyncProducerFromClient(client)
	}, func(p sarama.AsyncProducer) { p.Close() })
	if err != nil {
		client.Close()
		switch {
		case errors.Is(err, sarama.ErrInvalidTransactionTimeout):
			return nil, fmt.Errorf("initialising transactional producer %q: the brokers refuse a transaction timeout of %s: "+
				"lower kafka.transaction_timeout to at most their transaction.max.timeout.ms (or raise that): %w",
				cfg.TransactionalID, sc.Producer.Transaction.Timeout, err)
		case isFencing(err):
			err = fmt.Errorf("%w: %w", ErrFenced, err)
		}
		return nil, fmt.Errorf("initialising transactional producer %q: %w", cfg.TransactionalID, err)
	}
	maxInFlight := cfg.MaxInFlight
	if maxInFlight <= 0 {
		maxInFlight = transactionalMaxInFlight
	}
	t := &Transactional{
		client: client, producer: producer, log: cfg.Logger, topic: cfg.CheckpointTopic, maxMessageBytes: sc.Producer.MaxMessageBytes,
		timeout: sc.Producer.Transaction.Timeout,
		known:   map[string]bool{}, acks: newAckWindow(maxInFlight, maxInFlightBytes(cfg.MaxInFlightBytes)),
		done: make(chan struct{}),
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); t.acks.collect(t.producer.Successes()) }()
	go func() { defer wg.Done(); t.collectErrors() }()
	go func() { wg.Wait(); close(t.done) }()
	cfg.Logger.Info("transactional producer ready", zap.String("transactional_id", cfg.TransactionalID),
		zap.String("checkpoint_topic", cfg.CheckpointTopic))
	return t, nil
}

func newTransactionalSaramaConfig(cfg TransactionalConfig) (*sarama.Config, error) {
	sc, err := newSaramaConfig(cfg.ClientID, cfg.Partitioner, cfg.MaxMessageBytes, cfg.Security)
	if err != nil {
		return nil, err
	}
	sc.Producer.Transaction.ID = cfg.TransactionalID
	sc.Producer.Transaction.Timeout = cfg.TransactionTimeout
	if sc.Producer.Transaction.Timeout <= 0 {
		sc.Producer.Transaction.Timeout = DefaultTransactionTimeout
	}
	// The producer never asks the brokers to create a topic: asked for the checkpoint
	// topic after the brokers lost it (a cluster rebuilt, the development broker restarted
	// without --data-dir), they would create it with their default cleanup.policy, delete,
	// which ensureCheckpointTopic then refuses at every restart. Only NewTransactional
	// creates it, compacted; Emit has the brokers create the topics rules write to
	// (createTopic).
	sc.Metadata.AllowAutoTopicCreation = false
	// Idempotent, acks=all and one request in flight come from newSaramaConfig; sarama
	// refuses a transactional id without them.
	return sc, nil
}

// runBlocking runs f in a goroutine and waits for it or ctx. If ctx ends first, the result
// f returns later is handed to discard.
func runBlocking[T any](ctx context.Context, f func() (T, error), discard func(T)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil && discard != nil {
				discard(r.v)
			}
		}()
		var zero T
		return zero, ctx.Err()
	}
}

// Emit adds m to the open Kafka transaction, beginning one if none is open, and returns
// without waiting for the broker. It blocks only while MaxInFlight messages, or
// MaxInFlightBytes of them, await acknowledgement (or until ctx is done). It fails (ErrSinkFailed) once any message of the
// transaction failed; the transaction can then only be aborted.
func (t *Transactional) Emit(ctx context.Context, m Message) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(); err != nil {
		return err
	}
	pm := toProducerMessage(m)
	size, err := checkSize(pm, t.maxMessageBytes)
	if err != nil {
		return err
	}
	if err := t.createTopic(ctx, m.Topic); err != nil {
		return err
	}
	if err := t.begin(); err != nil {
		return err
	}
	return t.send(ctx, pm, size)
}

// createTopic has the brokers create topic if it is missing (if their
// auto.create.topics.enable allows it), as the at-least-once producer's metadata requests
// do, the first time the sink sees topic; never the checkpoint topic. It blocks for a
// metadata round trip then, and waits until the topic's partitions have leaders. Called
// with mu held.
func (t *Transactional) createTopic(ctx context.Context, topic string) error {
	if t.known[topic] || topic == t.topic {
		return nil
	}
	_, err := runBlocking(ctx, func() (struct{}, error) {
		if b := t.client.LeastLoadedBroker(); b != nil {
			req := sarama.NewMetadataRequest(t.client.Config().Version, []string{topic})
			req.AllowAutoTopicCreation = true
			if _, err := b.GetMetadata(req); err != nil {
				return struct{}{}, err
			}
		}
		// The answer above may still lack leaders; the client's refresh waits for them.
		return struct{}{}, t.client.RefreshMetadata(topic)
	}, nil)
	switch {
	case err == nil:
		t.known[topic] = true
		return nil
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, sarama.ErrUnknownTopicOrPartition):
		return fmt.Errorf("%w: topic %s does not exist and the brokers do not create topics (auto.create.topics.enable=false): create it: %w",
			ErrSinkFailed, topic, err)
	}
	return fmt.Errorf("%w: asking the brokers for topic %s: %w", ErrSinkFailed, topic, err)
}

// Flush blocks until the broker has acknowledged every message emitted so far inside the
// open transaction, a message failed, or ctx is done. Acknowledged is not committed:
// nothing is visible to read_committed consumers, nor durable across a restart, before
// Commit returns. The pipeline need not call it; Commit waits by itself.
func (t *Transactional) Flush(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(); err != nil {
		return err
	}
	return t.waitAcked(ctx)
}

// Commit writes checkpoint into the open transaction (opening one for the checkpoint
// alone if none is open) and commits it. It blocks until the broker has committed, the
// commit failed, or ctx is done. On failure the transaction is aborted if possible and the
// error wraps ErrSinkFailed (restart from the last committed checkpoint), or ErrFenced
// (another instance owns the transactional id; stop). If ctx ends while the commit is
// under way, the outcome is unknown: the sink is failed and the next instance learns the
// truth from ReadCheckpoints.
func (t *Transactional) Commit(ctx context.Context, checkpoint []CheckpointRecord) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(); err != nil {
		return err
	}
	if err := t.begin(); err != nil {
		return err
	}
	for _, r := range checkpoint {
		pm := &sarama.ProducerMessage{Topic: t.topic, Key: sarama.StringEncoder(r.Key)}
		if r.Value != nil {
			pm.Value = sarama.ByteEncoder(r.Value)
		}
		if err := t.send(ctx, pm, pm.ByteSize(2)); err != nil {
			return t.fail(ctx, "writing checkpoint records", err)
		}
	}
	if err := t.waitAcked(ctx); err != nil {
		return t.fail(ctx, "waiting for the transaction's messages", err)
	}
	err := t.call(ctx, t.producer.CommitTxn)
	if err != nil {
		return t.fail(ctx, "committing Kafka transaction", err)
	}
	t.open = false
	return nil
}

// Close aborts an open transaction, stops the producer and disconnects. Safe to call
// twice; it blocks for at most about 20 seconds.
func (t *Transactional) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.busy != nil { // a commit or abort abandoned by its ctx is still running
			select {
			case <-t.busy:
			case <-time.After(10 * time.Second):
			}
		}
		if t.open && !errors.Is(t.broken, ErrFenced) {
			actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := t.call(actx, t.producer.AbortTxn); err != nil && !isFencing(err) {
				t.log.Warn("aborting the open Kafka transaction on close", zap.Error(err))
			}
			cancel()
			t.open = false
		}
		if t.broken == nil {
			t.broken = fmt.Errorf("%w: transactional sink closed", ErrSinkFailed)
		}
		t.producer.AsyncClose()
		select {
		case <-t.done:
		case <-time.After(10 * time.Second):
			t.closeErr = errors.New("closing transactional Kafka producer: timed out after 10s")
		}
		if err := t.client.Close(); err != nil && t.closeErr == nil && !errors.Is(err, sarama.ErrClosedClient) {
			t.closeErr = fmt.Errorf("closing Kafka client: %w", err)
		}
	})
	return t.closeErr
}

// usable returns the error that made the sink unusable, if any. Called with mu held.
func (t *Transactional) usable() error {
	if t.broken != nil {
		return t.broken
	}
	if t.busy != nil {
		select {
		case <-t.busy:
		default:
			return fmt.Errorf("%w: an abandoned commit or abort is still running", ErrSinkFailed)
		}
	}
	return nil
}

// begin opens a Kafka transaction unless one is open. Called with mu held.
func (t *Transactional) begin() error {
	if t.open {
		return nil
	}
	if err := t.producer.BeginTxn(); err != nil {
		t.broken = fmt.Errorf("%w: beginning Kafka transaction (state %s): %w", ErrSinkFailed, t.producer.TxnStatus(), err)
		return t.broken
	}
	t.failed.Store(nil)
	t.open = true
	t.openedAt = time.Now()
	return nil
}

// send hands pm, of size bytes, to the producer, waiting for room in the in-flight window.
// Called with mu held.
func (t *Transactional) send(ctx context.Context, pm *sarama.ProducerMessage, size int) error {
	if err := t.delivery(); err != nil {
		return err
	}
	return t.acks.enqueue(ctx, t.producer.Input(), pm, size, &t.emitted, t.failed.Load)
}

// waitAcked waits until every message handed to the producer is acknowledged. Called
// with mu held.
func (t *Transactional) waitAcked(ctx context.Context) error {
	return t.acks.waitDone(ctx, t.emitted.Load(), t.failed.Load)
}

// call runs a blocking transaction call (CommitTxn, AbortTxn), giving up waiting when ctx
// ends; the call then goes on in the background and the sink stays busy until it ends.
// Called with mu held.
func (t *Transactional) call(ctx context.Context, f func() error) error {
	busy := make(chan struct{})
	ch := make(chan error, 1)
	go func() {
		defer close(busy)
		ch <- f()
	}()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		t.busy = busy
		return ctx.Err()
	}
}

// fail aborts the open transaction if possible, marks the sink failed and returns the
// classified error. Called with mu held.
func (t *Transactional) fail(ctx context.Context, doing string, err error) error {
	if d := t.delivery(); d != nil {
		err = d // a message failure is the cause, not the wait or commit that saw it
	}
	fenced := isFencing(err)
	fenceCause := err
	if !fenced && t.open && (t.busy == nil || closed(t.busy)) {
		// AbortTxn waits for messages still in flight; bound it even if ctx is done.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		aerr := t.call(actx, t.producer.AbortTxn)
		cancel()
		switch {
		case aerr == nil:
			t.open = false
		case isFencing(aerr):
			// kfake refuses a zombie's produce with INVALID_TXN_STATE (the partition
			// left the transaction the newer producer aborted) where Kafka says
			// INVALID_PRODUCER_EPOCH; the abort's PRODUCER_FENCED tells us.
			fenced, fenceCause = true, aerr
		default:
			t.log.Warn("aborting Kafka transaction after an error", zap.Error(aerr),
				zap.Stringer("state", t.producer.TxnStatus()))
		}
	}
	switch {
	case fenced && t.open && time.Since(t.openedAt) >= t.timeout:
		// The brokers bump the epoch when they abort a transaction that outlived its
		// timeout: the same answers as a newer producer's fence.
		t.open = false
		t.broken = fmt.Errorf("%w (%s, open for %s): %s: raise kafka.transaction_timeout (up to the brokers' transaction.max.timeout.ms), "+
			"which a snapshot under exactly_once needs for half of it plus one chunk: %w",
			ErrTransactionTimedOut, t.timeout, time.Since(t.openedAt).Round(time.Second), doing, err)
		t.log.Error("kafka transaction timed out", zap.Error(t.broken))
	case fenced:
		t.open = false // the broker aborted it when the newer producer initialised
		t.log.Error("kafka producer fenced; another instance owns the transactional id", zap.Error(err))
		switch {
		case errors.Is(err, ErrFenced):
			t.broken = fmt.Errorf("%s: %w", doing, err)
		case errors.Is(err, ErrSinkFailed): // fenced, as the abort found out: not retryable
			t.broken = fmt.Errorf("%w: %s: %v; aborting: %w", ErrFenced, doing, err, fenceCause)
		default:
			t.broken = fmt.Errorf("%w: %s: %w", ErrFenced, doing, err)
		}
	case errors.Is(err, ErrSinkFailed):
		t.broken = fmt.Errorf("%s: %w", doing, err)
	default:
		t.broken = fmt.Errorf("%w: %s: %w", ErrSinkFailed, doing, err)
	}
	return t.broken
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// delivery is the first message failure in the open transaction, if any.
func (t *Transactional) delivery() error {
	if e := t.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// isFencing reports whether err says a newer producer epoch exists for our transactional
// id. INVALID_PRODUCER_EPOCH on a produce is fencing too (or a transaction timeout, which
// also bumps the epoch); sarama would answer it with an epoch bump of its own, which
// could fence the rightful owner, so it is terminal here.
func isFencing(err error) bool {
	return errors.Is(err, ErrFenced) || errors.Is(err, sarama.ErrProducerFenced) || errors.Is(err, sarama.ErrInvalidProducerEpoch)
}

func toProducerMessage(m Message) *sarama.ProducerMessage {
	o := &outgoing{}
	o.pm.Topic = m.Topic
	if m.Value != nil { // nil: a tombstone
		o.value = m.Value
		o.pm.Value = &o.value
	}
	if m.Key != nil {
		o.key = m.Key
		o.pm.Key = &o.key
	}
	if len(m.Headers) > 0 {
		hs := o.headers[:0]
		if len(m.Headers) > len(o.headers) {
			hs = make([]sarama.RecordHeader, 0, len(m.Headers))
		}
		for _, h := range m.Headers {
			hs = append(hs, sarama.RecordHeader{Key: headerKey(h.Key), Value: h.Value})
		}
		o.pm.Headers = hs
	}
	o.pm.Metadata = &o.track
	return &o.pm
}

// outgoing is a producer message with its key and value encoders, its first headers and
// what the ack window tracks of it (Metadata points at track) in one allocation: one
// message per row change goes through here.
type outgoing struct {
	pm         sarama.ProducerMessage
	key, value bytesEncoder
	headers    [2]sarama.RecordHeader
	track      tracking
}

// bytesEncoder is sarama.ByteEncoder behind a pointer, so that it does not allocate when
// stored in the message's Encoder fields.
type bytesEncoder []byte

func (b *bytesEncoder) Encode() ([]byte, error) { return *b, nil }
func (b *bytesEncoder) Length() int             { return len(*b) }

// headerKeys holds the bytes of the few header names in use, so that a message does not
// allocate them again (sarama never writes to a header's key).
var headerKeys sync.Map // string → []byte

func headerKey(k string) []byte {
	if b, ok := headerKeys.Load(k); ok {
		return b.([]byte)
	}
	b, _ := headerKeys.LoadOrStore(k, []byte(k))
	return b.([]byte)
}

func (t *Transactional) collectErrors() {
	for pe := range t.producer.Errors() {
		produceErrorsTotal.Inc()
		err := fmt.Errorf("%w: producing to %s in a transaction: %w%s", ErrSinkFailed, pe.Msg.Topic, pe.Err, missingTopicHint(pe.Err))
		if isFencing(pe.Err) {
			err = fmt.Errorf("%w: producing to %s: %w", ErrFenced, pe.Msg.Topic, pe.Err)
		}
		if t.failed.CompareAndSwap(nil, &err) {
			t.log.Error("kafka delivery failed inside a transaction", zap.String("topic", pe.Msg.Topic), zap.Error(pe.Err))
		}
		// The message is settled; count it so that the window does not stall. The
		// transaction cannot commit anyway.
		t.acks.settle(pe.Msg)
	}
}
