package sinks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// PingTimeout bounds the request a ping makes: a broker that does not answer within it is
// not serving, whatever its port does.
const PingTimeout = 2 * time.Second

// Pinger reports whether the brokers serve Kafka requests with the configured security.
// It keeps its connections between pings, so that a ping every few seconds logs in (TLS
// handshake, SASL authentication) once per connection rather than once per ping; only a
// failed ping opens new ones, to say why. Safe for concurrent use.
type Pinger struct {
	brokers []string
	sec     Security
	cl      *kgo.Client
}

// NewPinger returns a Pinger for brokers with sec. It connects at its first Ping.
func NewPinger(brokers []string, sec Security) (*Pinger, error) {
	cl, err := pingClient(brokers, sec)
	if err != nil {
		return nil, err
	}
	return &Pinger{brokers: brokers, sec: sec, cl: cl}, nil
}

// Close closes the Pinger's connections.
func (p *Pinger) Close() { p.cl.Close() }

// Ping asks for the cluster's metadata, without topics. nil means a broker answered
// within PingTimeout; an error says why none did, naming the setting to fix where it can
// tell (see reach): a port that accepts connections but does not speak Kafka, or a broker
// still starting, is "no answer within PingTimeout". It blocks for at most PingTimeout
// while the brokers answer, longer (up to about 12 s) only while it diagnoses a failure.
func (p *Pinger) Ping(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, PingTimeout)
	err := p.cl.Ping(pctx)
	cancel()
	if err == nil || ctx.Err() != nil {
		return err
	}
	// Ask again on new connections, checking TLS first, and say why it fails.
	return Ping(ctx, p.brokers, p.sec)
}

// Ping is one ping on new connections (TLS handshake and SASL login included, as a new
// producer would), closed afterwards: a one-off check, and how a Pinger says why its own
// ping failed.
func Ping(ctx context.Context, brokers []string, sec Security) error {
	cl, err := pingClient(brokers, sec)
	if err != nil {
		return err
	}
	defer cl.Close()
	return reach(ctx, brokers, sec, func() error {
		pctx, cancel := context.WithTimeout(ctx, PingTimeout)
		defer cancel()
		err := cl.Ping(pctx)
		var netErr net.Error
		if err != nil && ctx.Err() == nil && (pctx.Err() != nil || errors.As(err, &netErr) && netErr.Timeout()) {
			return fmt.Errorf("no answer to a metadata request within %s (the port accepts connections but does not speak Kafka, or the broker is still starting): %w",
				PingTimeout, err)
		}
		return err
	})
}

// pingClient is the Kafka client of a ping.
func pingClient(brokers []string, sec Security) (*kgo.Client, error) {
	opts, err := sec.kgoOpts()
	if err != nil {
		return nil, err
	}
	opts = append(opts, kgo.SeedBrokers(brokers...), kgo.ClientID("stocksync-ping"), kgo.DialTimeout(PingTimeout),
		// franz-go bounds the connection's first requests (ApiVersions, the SASL login) by
		// this, not by the context.
		kgo.RequestTimeoutOverhead(PingTimeout))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("setting up a Kafka client to ping %v: %w", brokers, err)
	}
	return cl, nil
}
