package main

import (
	"context"
	"fmt"

	"github.com/stocksync/stocksync/config"
	"github.com/stocksync/stocksync/sinks"
)

// kafkaSecurity is kafka.tls and kafka.sasl as the Kafka clients take them. It reads the
// certificate files, so call it once per client set rather than once per connection.
func kafkaSecurity(k config.Kafka) (sinks.Security, error) {
	// "": several brokers are dialled; under verify_full each must be named in its own
	// certificate.
	tlsConfig, err := k.TLS.ClientConfig("")
	if err != nil {
		return sinks.Security{}, fmt.Errorf("kafka.tls: %w", err)
	}
	return sinks.Security{TLS: tlsConfig, SASLMechanism: k.SASL.Mechanism, SASLUser: k.SASL.User, SASLPassword: k.SASL.Password}, nil
}

// readKafkaCheckpoints reads the exactly-once checkpoints from kafka.checkpoint_topic on
// brokers, with kafka.tls and kafka.sasl.
func readKafkaCheckpoints(ctx context.Context, k config.Kafka, brokers []string) (map[string][]byte, error) {
	sec, err := kafkaSecurity(k)
	if err != nil {
		return nil, err
	}
	return sinks.ReadCheckpoints(ctx, brokers, sec, k.CheckpointTopic)
}
