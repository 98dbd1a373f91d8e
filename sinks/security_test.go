package sinks_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/stocksync/stocksync/config"
	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/sinks"
)

// security is what the daemon builds from kafka.tls and kafka.sasl.
func security(t testing.TB, tlsSettings config.TLS, saslSettings config.SASL) sinks.Security {
	t.Helper()
	sec, err := sinks.SecurityOf(tlsSettings, saslSettings)
	if err != nil {
		t.Fatalf("building the Kafka security: %v", err)
	}
	return sec
}

// independentOpts are franz-go options for a test client of a secured broker, built
// without the code under test: tlsConfig nil is plaintext, mechanism nil no SASL.
func independentOpts(broker string, tlsConfig *tls.Config, mechanism sasl.Mechanism) []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(broker), kgo.AllowAutoTopicCreation()}
	if tlsConfig != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsConfig))
	}
	if mechanism != nil {
		opts = append(opts, kgo.SASL(mechanism))
	}
	return opts
}

// readBack reads want records of topic from the start with an independent client and
// returns their values, sorted.
func readBack(t testing.TB, topic string, want int, readCommitted bool, opts []kgo.Opt) []string {
	t.Helper()
	opts = append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl := testutil.KafkaClient(t, opts...)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	var got []string
	for len(got) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s back: got %d of %d records: %v", topic, len(got), want, fs.Errors())
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	slices.Sort(got)
	return got
}

// produceAndReadBack sends n messages through NewKafka with sec, flushes, and checks an
// independent reader sees exactly them.
func produceAndReadBack(t *testing.T, broker string, sec sinks.Security, reader []kgo.Opt) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	k, err := sinks.NewKafka(ctx, sinks.KafkaConfig{Brokers: []string{broker}, ClientID: "test", Security: sec})
	if err != nil {
		t.Fatalf("NewKafka: %v", err)
	}
	defer k.Close()
	const n = 50
	var want []string
	for i := range n {
		v := fmt.Sprintf("v%02d", i)
		want = append(want, v)
		if err := k.Emit(ctx, sinks.Message{Topic: "secured", Key: fmt.Appendf(nil, "k%d", i%5), Value: []byte(v)}); err != nil {
			t.Fatalf("Emit %d: %v", i, err)
		}
	}
	if err := k.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if got := readBack(t, "secured", n, false, reader); !slices.Equal(got, want) {
		t.Fatalf("read back %v, want %v", got, want)
	}
}

// The producer reaches a TLS listener under each checking mode, showing a client
// certificate when the broker requires one.
func TestKafkaOverTLS(t *testing.T) {
	certs := testutil.NewCerts(t)
	for _, tc := range []struct {
		name          string
		requireClient bool
		settings      config.TLS
	}{
		{"verify_full", false, config.TLS{Mode: config.TLSVerifyFull, CAFile: certs.CAFile}},
		{"verify_ca", false, config.TLS{Mode: config.TLSVerifyCA, CAFile: certs.CAFile}},
		{"client certificate", true, config.TLS{Mode: config.TLSVerifyFull, CAFile: certs.CAFile,
			CertFile: certs.ClientCert, KeyFile: certs.ClientKey}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			broker := testutil.Broker(t, kfake.TLS(certs.ServerConfig(tc.requireClient)))
			produceAndReadBack(t, broker, security(t, tc.settings, config.SASL{}),
				independentOpts(broker, certs.ClientConfig(), nil))
		})
	}
}

// The producer logs in with each SASL mechanism, over TLS (SASL_SSL) for SCRAM-SHA-256.
func TestKafkaOverSASL(t *testing.T) {
	certs := testutil.NewCerts(t)
	for _, tc := range []struct {
		mechanism string
		overTLS   bool
		reader    sasl.Mechanism
	}{
		{config.SASLPlain, false, plain.Auth{User: "alice", Pass: "s3cret"}.AsMechanism()},
		{config.SASLScramSHA256, true, scram.Auth{User: "alice", Pass: "s3cret"}.AsSha256Mechanism()},
		{config.SASLScramSHA512, false, scram.Auth{User: "alice", Pass: "s3cret"}.AsSha512Mechanism()},
	} {
		t.Run(tc.mechanism, func(t *testing.T) {
			t.Parallel()
			opts := []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(tc.mechanism, "alice", "s3cret")}
			var tlsSettings config.TLS
			var readerTLS *tls.Config
			if tc.overTLS {
				opts = append(opts, kfake.TLS(certs.ServerConfig(false)))
				tlsSettings = config.TLS{Mode: config.TLSVerifyFull, CAFile: certs.CAFile}
				readerTLS = certs.ClientConfig()
			}
			broker := testutil.Broker(t, opts...)
			sec := security(t, tlsSettings, config.SASL{Mechanism: tc.mechanism, User: "alice", Password: "s3cret"})
			produceAndReadBack(t, broker, sec, independentOpts(broker, readerTLS, tc.reader))
		})
	}
}

// saslSSLBroker is a broker that wants TLS and a SCRAM-SHA-512 login, with the daemon's
// security for it and the options of an independent client.
func saslSSLBroker(t *testing.T) (broker string, sec sinks.Security, reader []kgo.Opt) {
	certs := testutil.NewCerts(t)
	broker = testutil.Broker(t, kfake.TLS(certs.ServerConfig(false)), kfake.EnableSASL(),
		kfake.Superuser(config.SASLScramSHA512, "stocksync", "pw"))
	sec = security(t, config.TLS{Mode: config.TLSVerifyFull, CAFile: certs.CAFile},
		config.SASL{Mechanism: config.SASLScramSHA512, User: "stocksync", Password: "pw"})
	reader = independentOpts(broker, certs.ClientConfig(), scram.Auth{User: "stocksync", Pass: "pw"}.AsSha512Mechanism())
	return broker, sec, reader
}

// A principal the brokers' ACLs do not let create topics runs exactly-once with a
// checkpoint topic made beforehand (compacted) by an administrator: the daemon asks
// whether the topic exists before it would create it, and asking to create it would be
// refused (TOPIC_AUTHORIZATION_FAILED) though it exists.
func TestTransactionalWithPrecreatedCheckpointTopicNeedsNoCreateACL(t *testing.T) {
	allow := func(res kmsg.ACLResourceType, name string, ops ...kmsg.ACLOperation) []kfake.ACL {
		var out []kfake.ACL
		for _, op := range ops {
			out = append(out, kfake.ACL{Resource: res, Name: name, Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: op, Allow: true})
		}
		return out
	}
	var acls []kfake.ACL
	acls = append(acls, allow(kmsg.ACLResourceTypeTopic, "cp-acl", kmsg.ACLOperationDescribe, kmsg.ACLOperationWrite,
		kmsg.ACLOperationRead, kmsg.ACLOperationDescribeConfigs)...)
	acls = append(acls, allow(kmsg.ACLResourceTypeTransactionalId, "tx-acl", kmsg.ACLOperationDescribe, kmsg.ACLOperationWrite)...)
	acls = append(acls, allow(kmsg.ACLResourceTypeCluster, "kafka-cluster", kmsg.ACLOperationIdempotentWrite)...)
	broker := testutil.Broker(t, kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser(config.SASLPlain, "admin", "pw"), kfake.User(config.SASLPlain, "app", "pw", acls...))

	admin := testutil.KafkaClient(t, independentOpts(broker, nil, plain.Auth{User: "admin", Pass: "pw"}.AsMechanism())...)
	defer admin.Close()
	create := kmsg.NewPtrCreateTopicsRequest()
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = "cp-acl", 1, 1
	cfg := kmsg.NewCreateTopicsRequestTopicConfig()
	cfg.Name, cfg.Value = "cleanup.policy", kmsg.StringPtr("compact")
	ct.Configs = append(ct.Configs, cfg)
	create.Topics = append(create.Topics, ct)
	resp, err := create.RequestWith(t.Context(), admin)
	if err == nil && resp.Topics[0].ErrorCode != 0 {
		err = fmt.Errorf("error code %d", resp.Topics[0].ErrorCode)
	}
	if err != nil {
		t.Fatalf("creating cp-acl as the administrator: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	sec := security(t, config.TLS{}, config.SASL{Mechanism: config.SASLPlain, User: "app", Password: "pw"})
	tx, err := sinks.NewTransactional(ctx, sinks.TransactionalConfig{Brokers: []string{broker}, ClientID: "test",
		TransactionalID: "tx-acl", CheckpointTopic: "cp-acl", Security: sec})
	if err != nil {
		t.Fatalf("NewTransactional without the Create ACL, the topic made beforehand: %v", err)
	}
	defer tx.Close()
	if err := tx.Commit(ctx, []sinks.CheckpointRecord{{Key: "position", Value: []byte("bin.1:7")}}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	cp, err := sinks.ReadCheckpoints(ctx, []string{broker}, sec, "cp-acl")
	if err != nil || string(cp["position"]) != "bin.1:7" {
		t.Fatalf("ReadCheckpoints = %q, %v; want position=bin.1:7", cp, err)
	}
}

// Exactly-once over SASL_SSL: the transactional producer commits, and ReadCheckpoints
// reads the checkpoint back through the same security.
func TestTransactionalOverTLSAndSASL(t *testing.T) {
	broker, sec, reader := saslSSLBroker(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	tx, err := sinks.NewTransactional(ctx, sinks.TransactionalConfig{Brokers: []string{broker}, ClientID: "test",
		TransactionalID: "tx-secured", CheckpointTopic: "cp-secured", Security: sec})
	if err != nil {
		t.Fatalf("NewTransactional: %v", err)
	}
	defer tx.Close()
	for i := range 10 {
		if err := tx.Emit(ctx, sinks.Message{Topic: "orders", Key: []byte("k"), Value: fmt.Appendf(nil, "o%d", i)}); err != nil {
			t.Fatalf("Emit %d: %v", i, err)
		}
	}
	if err := tx.Commit(ctx, []sinks.CheckpointRecord{{Key: "position", Value: []byte("bin.1:42")}}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if got := readBack(t, "orders", 10, true, reader); len(got) != 10 {
		t.Fatalf("read committed %v, want 10 records", got)
	}
	cp, err := sinks.ReadCheckpoints(ctx, []string{broker}, sec, "cp-secured")
	if err != nil {
		t.Fatalf("ReadCheckpoints: %v", err)
	}
	if string(cp["position"]) != "bin.1:42" || len(cp) != 1 {
		t.Fatalf("checkpoints %q, want position=bin.1:42", cp)
	}
}

// Tail reads over SASL_SSL what an independent client produced.
func TestTailOverTLSAndSASL(t *testing.T) {
	broker, sec, opts := saslSSLBroker(t)
	producer := testutil.KafkaClient(t, opts...)
	defer producer.Close()
	want := []string{"a", "b", "c"}
	for _, v := range want {
		if err := producer.ProduceSync(t.Context(), &kgo.Record{Topic: "tailed", Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("producing %s: %v", v, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	var got []string
	err := sinks.Tail(ctx, []string{broker}, sec, []string{"tailed"}, true, func(r sinks.Record) {
		got = append(got, string(r.Value))
		if len(got) == len(want) {
			cancel()
		}
	})
	if err != nil {
		t.Fatalf("Tail: %v", err)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("Tail read %q, want %q", got, want)
	}
}

// A wrong password, an untrusted certificate or one for another host, a missing client
// certificate and either side of a TLS mismatch each fail every client promptly, with an
// error naming the cause.
func TestSecurityRefusals(t *testing.T) {
	certs := testutil.NewCerts(t)
	verifyFull := config.TLS{Mode: config.TLSVerifyFull, CAFile: certs.CAFile}
	// Parallel subtests finish before the parent's cleanup stops these brokers.
	plainBroker := testutil.Broker(t)
	tlsBroker := testutil.Broker(t, kfake.TLS(certs.ServerConfig(false)))
	clientCertBroker := testutil.Broker(t, kfake.TLS(certs.ServerConfig(true)))
	saslBroker := testutil.Broker(t, kfake.TLS(certs.ServerConfig(false)), kfake.EnableSASL(),
		kfake.Superuser(config.SASLScramSHA256, "stocksync", "right"))
	cases := []struct {
		name   string
		broker string
		sec    sinks.Security
		want   string
	}{
		{"wrong password", saslBroker,
			security(t, verifyFull, config.SASL{Mechanism: config.SASLScramSHA256, User: "stocksync", Password: "wrong"}),
			`refused SASL authentication as user "stocksync" with SCRAM-SHA-256 (kafka.sasl.user, kafka.sasl.password, kafka.sasl.mechanism)`},
		{"certificate from another CA", tlsBroker,
			security(t, config.TLS{Mode: config.TLSVerifyCA, CAFile: certs.OtherCAFile}, config.SASL{}),
			"the broker's certificate is not signed by a CA the daemon trusts (kafka.tls.ca_file"},
		{"no client certificate", clientCertBroker, security(t, verifyFull, config.SASL{}),
			"the broker refused the TLS connection; if it requires a client certificate, set kafka.tls.cert_file and kafka.tls.key_file"},
		{"certificate for another host", tlsBroker,
			security(t, config.TLS{Mode: config.TLSVerifyFull, CAFile: certs.CAFile, ServerName: "kafka.example"}, config.SASL{}),
			"the broker's certificate does not name the host dialled (kafka.brokers, kafka.tls.server_name)"},
		{"plaintext to a TLS listener", tlsBroker, sinks.Security{},
			"speaks TLS, but kafka.tls.mode is disabled"},
		{"TLS to a plaintext listener", plainBroker, security(t, verifyFull, config.SASL{}),
			"answers without TLS: its listener is plaintext, but kafka.tls.mode asks for TLS"},
	}
	clients := map[string]func(ctx context.Context, broker string, sec sinks.Security) error{
		"NewKafka": func(ctx context.Context, broker string, sec sinks.Security) error {
			k, err := sinks.NewKafka(ctx, sinks.KafkaConfig{Brokers: []string{broker}, Security: sec})
			if err == nil {
				k.Close()
			}
			return err
		},
		"ReadCheckpoints": func(ctx context.Context, broker string, sec sinks.Security) error {
			_, err := sinks.ReadCheckpoints(ctx, []string{broker}, sec, "cp")
			return err
		},
		"Tail": func(ctx context.Context, broker string, sec sinks.Security) error {
			return sinks.Tail(ctx, []string{broker}, sec, []string{"t"}, true, func(sinks.Record) {})
		},
		"Ping": func(ctx context.Context, broker string, sec sinks.Security) error {
			return sinks.Ping(ctx, []string{broker}, sec)
		},
	}
	for _, tc := range cases {
		for client, connect := range clients {
			t.Run(tc.name+"/"+client, func(t *testing.T) {
				t.Parallel()
				const limit = 20 * time.Second
				ctx, cancel := context.WithTimeout(t.Context(), limit)
				defer cancel()
				start := time.Now()
				err := connect(ctx, tc.broker, tc.sec)
				took := time.Since(start)
				switch {
				case err == nil:
					t.Fatal("connected; want a refusal")
				case ctx.Err() != nil:
					t.Fatalf("still trying after %s: %v", limit, err)
				case took > 10*time.Second:
					t.Fatalf("refused after %s, want within 10s: %v", took, err)
				case !strings.Contains(err.Error(), tc.want):
					t.Fatalf("error %q\ndoes not say %q", err, tc.want)
				}
				t.Logf("refused in %s: %v", took.Round(time.Millisecond), err)
			})
		}
	}
}
