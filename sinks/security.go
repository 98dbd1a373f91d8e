package sinks

import (
	"crypto/tls"
	"fmt"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	xscram "github.com/xdg-go/scram"

	"github.com/stocksync/stocksync/config"
)

// Security is how every Kafka client of the daemon reaches the brokers: the producers,
// the checkpoint reader and Tail. The zero value is plaintext without authentication.
type Security struct {
	// TLS encrypts the connections; nil is plaintext. Leave its ServerName empty to have
	// each broker's certificate checked against the host dialled.
	TLS *tls.Config
	// SASL is kafka.sasl: its Mechanism "" is none.
	SASL config.SASL
}

// SecurityOf is kafka.tls and kafka.sasl as the Kafka clients take them. It reads the
// certificate files, so call it once per client set rather than once per connection.
func SecurityOf(tlsSettings config.TLS, saslSettings config.SASL) (Security, error) {
	// "": several brokers are dialled; under verify_full each must be named in its own
	// certificate.
	tlsConfig, err := tlsSettings.ClientConfig("")
	if err != nil {
		return Security{}, fmt.Errorf("kafka.tls: %w", err)
	}
	return Security{TLS: tlsConfig, SASL: saslSettings}, nil
}

// applyTo sets s on a sarama configuration: the one place sarama clients get their
// security.
func (s Security) applyTo(sc *sarama.Config) error {
	if s.TLS != nil {
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = s.TLS
	}
	switch s.SASL.Mechanism {
	case "":
		return nil
	case config.SASLPlain:
		sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case config.SASLScramSHA256:
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: xscram.SHA256} }
	case config.SASLScramSHA512:
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: xscram.SHA512} }
	default:
		return unknownMechanism(s.SASL.Mechanism)
	}
	// sarama's defaults send handshake v1, then SaslAuthenticate requests (Kafka 1.0 and
	// later): the broker answers a refusal with an error code instead of hanging up.
	sc.Net.SASL.Enable = true
	sc.Net.SASL.User = s.SASL.User
	sc.Net.SASL.Password = s.SASL.Password
	return nil
}

// kgoOpts are s as franz-go client options: the one place franz-go clients get their
// security.
func (s Security) kgoOpts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if s.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(s.TLS))
	}
	var mechanism sasl.Mechanism
	switch s.SASL.Mechanism {
	case "":
		return opts, nil
	case config.SASLPlain:
		mechanism = plain.Auth{User: s.SASL.User, Pass: s.SASL.Password}.AsMechanism()
	case config.SASLScramSHA256:
		mechanism = scram.Auth{User: s.SASL.User, Pass: s.SASL.Password}.AsSha256Mechanism()
	case config.SASLScramSHA512:
		mechanism = scram.Auth{User: s.SASL.User, Pass: s.SASL.Password}.AsSha512Mechanism()
	default:
		return nil, unknownMechanism(s.SASL.Mechanism)
	}
	return append(opts, kgo.SASL(mechanism)), nil
}

func unknownMechanism(m string) error {
	return fmt.Errorf("kafka.sasl.mechanism: %q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", m)
}

// scramClient is sarama's SCRAM conversation, which sarama leaves to the application.
type scramClient struct {
	hash xscram.HashGeneratorFcn
	conv *xscram.ClientConversation
}

func (c *scramClient) Begin(user, password, authzID string) error {
	client, err := c.hash.NewClient(user, password, authzID)
	if err != nil {
		return fmt.Errorf("preparing SCRAM credentials for user %q: %w", user, err)
	}
	c.conv = client.NewConversation()
	return nil
}

func (c *scramClient) Step(challenge string) (string, error) { return c.conv.Step(challenge) }

func (c *scramClient) Done() bool { return c.conv.Done() }
