// Package sinks delivers messages to Kafka. Emit queues a message and returns; Flush
// blocks until every message emitted before it has been acknowledged by the broker, which
// is what lets the pipeline move its checkpoint. Every Kafka client it makes gets its TLS
// and SASL from one Security value. The package is the only importer of sarama; it also
// runs franz-go's kfake as the embedded development broker.
package sinks
