package sinks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/stocksync/stocksync/config"
)

// KafkaConfig configures the at-least-once Kafka sink.
type KafkaConfig struct {
	Brokers  []string
	ClientID string
	// MaxInFlight bounds messages emitted but not yet acknowledged; Emit blocks beyond it.
	MaxInFlight int
	// MaxInFlightBytes bounds their size (key, value and headers, as the producer counts
	// it); Emit blocks beyond it, except for a message larger than it, which is handed
	// over alone once nothing else is outstanding. 0: DefaultMaxInFlightBytes. The count
	// alone let a stalled broker hold count × message size in memory.
	MaxInFlightBytes int
	// Partitioner names how a key picks its partition (see partitioners); "" is murmur2.
	Partitioner string
	// Security is TLS and SASL for the brokers; the zero value is plaintext.
	Security Security
	// MaxMessageBytes is the largest message the producer sends (0: 1,000,000, the
	// default of the broker's message.max.bytes); a larger one fails Emit (TooLargeError).
	MaxMessageBytes int
	// MayWrite, when set, is asked before every write to a broker; a write it refuses
	// fails the sink. A leader passes its lease: once the lease ran out (the process
	// frozen, its host stalled), what the producer still holds, handed over while the
	// lease was held, must not reach the brokers after the next leader's messages.
	MayWrite func() bool
	Logger   *zap.Logger
}

var (
	producedTotal = prometheus.NewCounter(prometheus.CounterOpts{Name: "stocksync_messages_produced_total",
		Help: "Messages the broker acknowledged."})
	produceErrorsTotal = prometheus.NewCounter(prometheus.CounterOpts{Name: "stocksync_produce_errors_total",
		Help: "Messages the producer failed to deliver after its retries."})
)

// Collectors are the sinks' metrics, for registering once per process.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{producedTotal, produceErrorsTotal}
}

// Kafka is an idempotent sarama producer with acks=all that keeps per-key order through
// retries. It tracks which emitted messages the broker acknowledged, so that Flush can
// say when everything emitted before it is durable.
type Kafka struct {
	client          sarama.Client
	producer        sarama.AsyncProducer
	log             *zap.Logger
	maxMessageBytes int

	emitted atomic.Uint64 // messages handed to the producer; the next one gets this number
	acks    *ackWindow

	failed    atomic.Pointer[error] // the first delivery error; the sink is unusable after it
	closeOnce sync.Once
	done      chan struct{}
}

// NewKafka connects to the brokers and starts the producer.
func NewKafka(ctx context.Context, cfg KafkaConfig) (*Kafka, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 100000
	}
	sc, err := newSaramaConfig(cfg.ClientID, cfg.Partitioner, cfg.MaxMessageBytes, cfg.Security)
	if err != nil {
		return nil, err
	}
	k := &Kafka{log: cfg.Logger, maxMessageBytes: sc.Producer.MaxMessageBytes,
		acks: newAckWindow(cfg.MaxInFlight, maxInFlightBytes(cfg.MaxInFlightBytes)), done: make(chan struct{})}
	// Once a message failed, what the producer still holds is read again from the
	// checkpoint: no retry of it should wait (sarama waits the back-off per message
	// when it finds no leader, so a closed client would drain 100,000 messages for
	// minutes).
	backoff := sc.Producer.Retry.Backoff
	sc.Producer.Retry.BackoffFunc = func(int, int) time.Duration {
		if k.failed.Load() != nil {
			return 0
		}
		return backoff
	}
	if cfg.MayWrite != nil {
		sc.Net.Proxy.Enable = true // sarama's hook for its own dialer; TLS still goes on top
		sc.Net.Proxy.Dialer = gatedDialer{dialer: &net.Dialer{Timeout: sc.Net.DialTimeout, KeepAlive: sc.Net.KeepAlive},
			mayWrite: cfg.MayWrite}
	}
	client, err := connect(ctx, cfg.Brokers, cfg.Security, sc)
	if err != nil {
		return nil, err
	}
	producer, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("starting Kafka producer: %w", err)
	}
	k.client, k.producer = client, producer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); k.acks.collect(k.producer.Successes()) }()
	go func() { defer wg.Done(); k.collectErrors() }()
	go func() { wg.Wait(); close(k.done) }()
	return k, nil
}

// ErrMayNotWrite is a write to a broker that KafkaConfig.MayWrite refused.
var ErrMayNotWrite = errors.New("writing to the broker refused: the leader lease is no longer held")

// gatedDialer opens connections whose every write asks mayWrite first.
type gatedDialer struct {
	dialer   *net.Dialer
	mayWrite func() bool
}

func (d gatedDialer) Dial(network, addr string) (net.Conn, error) {
	if !d.mayWrite() {
		return nil, ErrMayNotWrite
	}
	c, err := d.dialer.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	return gatedConn{Conn: c, mayWrite: d.mayWrite}, nil
}

type gatedConn struct {
	net.Conn
	mayWrite func() bool
}

func (c gatedConn) Write(b []byte) (int, error) {
	if !c.mayWrite() {
		return 0, ErrMayNotWrite
	}
	return c.Conn.Write(b)
}

// partitioners map the names of config.Partitioners (kafka.partitioner) to their hashes: where a keyed message goes,
// the way another client family would put the same key, so that stocksync's topics can be
// co-partitioned with topics those clients produce. A message without a key goes to a
// random partition.
var partitioners = map[string]sarama.PartitionerConstructor{
	"murmur2": sarama.NewMurmur2Partitioner,           // the Java client's default, and franz-go's
	"crc32":   sarama.NewConsistentCRCHashPartitioner, // librdkafka's "consistent"
	"fnv1a":   sarama.NewHashPartitioner,              // sarama's default
}

// newClientConfig is what every sarama client of the daemon shares: the protocol version,
// the dial timeout and the security.
func newClientConfig(clientID string, sec Security) (*sarama.Config, error) {
	sc := sarama.NewConfig()
	sc.ClientID = clientID
	sc.Version = sarama.V2_8_0_0
	sc.Net.DialTimeout = dialTimeout
	if err := sec.applyTo(sc); err != nil {
		return nil, err
	}
	return sc, nil
}

// defaultMaxMessageBytes is the broker's default message.max.bytes, rounded down.
const defaultMaxMessageBytes = 1000000

// newSaramaConfig is the producer configuration every mode shares: idempotent, acks=all,
// one request in flight per broker so retries keep per-partition (and so per-key) order,
// the named partitioner ("" is murmur2) and the largest message (0: the default).
func newSaramaConfig(clientID, partitioner string, maxMessageBytes int, sec Security) (*sarama.Config, error) {
	if partitioner == "" {
		partitioner = "murmur2"
	}
	newPartitioner, ok := partitioners[partitioner]
	if !ok {
		return nil, fmt.Errorf("kafka.partitioner: %q is not one of %s", partitioner, strings.Join(config.Partitioners, ", "))
	}
	sc, err := newClientConfig(clientID, sec)
	if err != nil {
		return nil, err
	}
	sc.Metadata.AllowAutoTopicCreation = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Retry.Max = 10
	sc.Producer.Retry.Backoff = 200 * time.Millisecond
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Partitioner = newPartitioner
	sc.Producer.Flush.Bytes = 512 << 10
	sc.Producer.Flush.Frequency = 2 * time.Millisecond
	if maxMessageBytes <= 0 {
		maxMessageBytes = defaultMaxMessageBytes
	}
	sc.Producer.MaxMessageBytes = maxMessageBytes // a whole batch must fit under the broker's message.max.bytes
	sc.ChannelBufferSize = 8192
	return sc, nil
}

// connect opens a sarama client; its errors name the setting to fix (see reach).
func connect(ctx context.Context, brokers []string, sec Security, sc *sarama.Config) (sarama.Client, error) {
	var client sarama.Client
	err := reach(ctx, brokers, sec, func() error {
		var err error
		client, err = runBlocking(ctx, func() (sarama.Client, error) {
			return sarama.NewClient(brokers, sc)
		}, func(c sarama.Client) { c.Close() })
		return err
	})
	return client, err
}

// DefaultMaxInFlightBytes bounds the size of the messages awaiting acknowledgement when
// the config sets no bound (kafka.max_in_flight_bytes): 256 MiB, which 100,000 messages of
// the product and search topics (a few hundred bytes each) stay well under, so it binds
// only rows with large columns.
const DefaultMaxInFlightBytes = 256 << 20

func maxInFlightBytes(n int) int64 {
	if n <= 0 {
		return DefaultMaxInFlightBytes
	}
	return int64(n)
}

// ErrSinkFailed marks a message the producer gave up on; the sink must be recreated and
// the stream resumed from the last checkpoint.
var ErrSinkFailed = errors.New("kafka delivery failed")

// Emit queues m and returns; it blocks only while MaxInFlight messages, or
// MaxInFlightBytes of them, await acknowledgement (or until ctx is done). It fails once
// any earlier message failed.
func (k *Kafka) Emit(ctx context.Context, m Message) error {
	if err := k.failure(); err != nil {
		return err
	}
	pm := toProducerMessage(m)
	size, err := checkSize(pm, k.maxMessageBytes)
	if err != nil {
		return err
	}
	return k.acks.enqueue(ctx, k.producer.Input(), pm, size, &k.emitted, k.failed.Load)
}

// TooLargeError is a message over kafka.max_message_bytes. No retry can deliver it, so it
// is not an ErrSinkFailed: the pipeline stops with it rather than restart into it again.
type TooLargeError struct {
	Topic       string
	Key         []byte
	Size, Limit int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the message for topic %s with key %s is %d bytes, over kafka.max_message_bytes (%d): raise it "+
		"(and the topic's max.message.bytes on the brokers), or leave the large columns out with the rule's fields",
		e.Topic, e.Key, e.Size, e.Limit)
}

// checkSize is pm's size as the producer counts it, with the record batch format (Kafka
// 0.11 and later); it refuses pm when the producer would.
func checkSize(pm *sarama.ProducerMessage, limit int) (int, error) {
	size := pm.ByteSize(2)
	if size > limit {
		var key []byte
		if pm.Key != nil {
			key, _ = pm.Key.Encode()
		}
		return 0, &TooLargeError{Topic: pm.Topic, Key: key, Size: size, Limit: limit}
	}
	return size, nil
}

// Flush blocks until every message emitted before the call is acknowledged, a message
// failed (ErrSinkFailed), or ctx is done.
func (k *Kafka) Flush(ctx context.Context) error {
	return k.acks.waitDone(ctx, k.emitted.Load(), k.failed.Load)
}

// Close stops the producer after delivering what it holds; safe to call twice. After a
// delivery failure what it holds will be read again from the checkpoint, so Close gives
// it up at once: the client is closed first, and the producer's retries fail without
// waiting.
func (k *Kafka) Close() error {
	var err error
	k.closeOnce.Do(func() {
		wait := 10 * time.Second
		if k.failure() != nil {
			wait = time.Second
			k.client.Close()
		}
		k.producer.AsyncClose()
		select {
		case <-k.done:
		case <-time.After(wait):
			if k.failure() == nil {
				err = fmt.Errorf("closing Kafka producer: timed out after %s", wait)
			}
		}
		if cerr := k.client.Close(); cerr != nil && err == nil && !errors.Is(cerr, sarama.ErrClosedClient) {
			err = fmt.Errorf("closing Kafka client: %w", cerr)
		}
	})
	return err
}

func (k *Kafka) failure() error {
	if e := k.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// missingTopicHint is what to do about a delivery that failed for want of its topic.
func missingTopicHint(err error) string {
	if !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return ""
	}
	return " (the brokers have no such topic and do not create topics on first use: create it, with the partitions " +
		"and cleanup.policy its consumers need, or set auto.create.topics.enable=true on the brokers)"
}

func (k *Kafka) collectErrors() {
	for pe := range k.producer.Errors() {
		produceErrorsTotal.Inc()
		err := fmt.Errorf("%w: producing to %s: %w%s", ErrSinkFailed, pe.Msg.Topic, pe.Err, missingTopicHint(pe.Err))
		if k.failed.CompareAndSwap(nil, &err) {
			k.log.Error("kafka delivery failed", zap.String("topic", pe.Msg.Topic), zap.Error(pe.Err))
		}
		k.acks.wake()
	}
}
