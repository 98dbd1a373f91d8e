package sinks

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// DevBroker is franz-go's kfake, a Kafka-protocol broker in this process, for development,
// demos and tests. Without a data dir it keeps nothing across restarts.
type DevBroker struct {
	cluster *kfake.Cluster
}

// DevBrokerSecurity is what the development broker asks of its clients, so that a
// daemon's kafka.tls and kafka.sasl can be tried against it. The zero value is plaintext
// without a login.
type DevBrokerSecurity struct {
	CertFile, KeyFile string // PEM server certificate and key: TLS on the one listener
	// SASL: one user, a superuser, with Mechanism PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512;
	// every client must log in.
	Mechanism, User, Password string
}

// StartDevBroker listens on addr (host:port; port 0 picks one). dataDir, when not empty,
// keeps the topics on disk.
func StartDevBroker(addr, dataDir string, sec DevBrokerSecurity) (*DevBroker, error) {
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("parsing development broker address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("parsing development broker port %q: %w", portStr, err)
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3),
		// Small segments: in memory, kfake grows a segment by copying it whole, and a
		// segment that stays within the CPU's cache is copied cheaply (256 KiB against
		// 8 MiB: +11% catch-up throughput, docs/BENCHMARKS.md).
		kfake.BrokerConfigs(map[string]string{"log.segment.bytes": strconv.Itoa(256 << 10)})}
	if dataDir != "" {
		opts = append(opts, kfake.DataDir(dataDir))
	}
	if sec.CertFile != "" || sec.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(sec.CertFile, sec.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading the development broker's certificate %s and key %s: %w", sec.CertFile, sec.KeyFile, err)
		}
		opts = append(opts, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	}
	if sec.Mechanism != "" {
		opts = append(opts, kfake.EnableSASL(), kfake.Superuser(sec.Mechanism, sec.User, sec.Password))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("starting development broker on %s: %w", addr, err)
	}
	return &DevBroker{cluster: c}, nil
}

// Addrs are the addresses clients connect to.
func (d *DevBroker) Addrs() []string { return d.cluster.ListenAddrs() }

// Close stops the broker.
func (d *DevBroker) Close() { d.cluster.Close() }
