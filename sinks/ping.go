package sinks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// PingTimeout bounds the request Ping makes: a broker that does not answer within it is
// not serving, whatever its port does.
const PingTimeout = 2 * time.Second

// Ping reports whether one of brokers serves Kafka requests with sec: it opens a new
// connection (TLS and SASL login included, as a new producer would) and asks for the
// cluster's metadata, without topics. nil means a broker answered; an error says why
// none did, naming the setting to fix where it can tell (see reach): a port that accepts
// connections but does not speak Kafka, or a broker still starting, is "no answer within
// PingTimeout". It blocks for at most PingTimeout when a broker answers or refuses the
// connection, longer (up to about 10 s) only while it diagnoses a failure. It is cheap
// enough to call every few seconds.
func Ping(ctx context.Context, brokers []string, sec Security) error {
	opts, err := sec.kgoOpts()
	if err != nil {
		return err
	}
	opts = append(opts, kgo.SeedBrokers(brokers...), kgo.ClientID("stocksync-ping"), kgo.DialTimeout(PingTimeout),
		// franz-go bounds the connection's first requests (ApiVersions, the SASL login) by
		// this, not by the context.
		kgo.RequestTimeoutOverhead(PingTimeout))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("setting up a Kafka client to ping %v: %w", brokers, err)
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
