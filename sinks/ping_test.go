package sinks_test

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/stocksync/stocksync/config"
	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/sinks"
)

// silentListener accepts TCP connections and never says a word on them, as a port owned
// by something that is not Kafka (or a broker stuck starting) does. It returns its
// address; it closes when the test ends.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// closedPort is an address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Ping answers nil only for a broker that serves a Kafka request with the configured
// security, and otherwise says why, promptly.
func TestPing(t *testing.T) {
	certs := testutil.NewCerts(t)
	verifyFull := config.TLS{Mode: config.TLSVerifyFull, CAFile: certs.CAFile}
	saslSSL := testutil.Broker(t, kfake.TLS(certs.ServerConfig(false)), kfake.EnableSASL(),
		kfake.Superuser(config.SASLScramSHA512, "stocksync", "pw"))
	silent := silentListener(t)
	cases := []struct {
		name    string
		brokers []string
		sec     sinks.Security
		want    string // "": answers
	}{
		{"kfake", []string{testutil.Broker(t)}, sinks.Security{}, ""},
		{"kfake over SASL_SSL", []string{saslSSL},
			security(t, verifyFull, config.SASL{Mechanism: config.SASLScramSHA512, User: "stocksync", Password: "pw"}), ""},
		{"a dead broker first, a live one second", []string{closedPort(t), testutil.Broker(t)}, sinks.Security{}, ""},
		{"a port that accepts and never speaks", []string{silent}, sinks.Security{},
			"no answer to a metadata request within 2s (the port accepts connections but does not speak Kafka"},
		{"a port that accepts and never speaks, over TLS", []string{silent}, security(t, verifyFull, config.SASL{}),
			"TLS handshake with " + silent},
		{"nothing listening", []string{closedPort(t)}, sinks.Security{}, "connection refused"},
		{"a wrong password", []string{saslSSL},
			security(t, verifyFull, config.SASL{Mechanism: config.SASLScramSHA512, User: "stocksync", Password: "wrong"}),
			`refused SASL authentication as user "stocksync" with SCRAM-SHA-512`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			err := sinks.Ping(t.Context(), tc.brokers, tc.sec)
			took := time.Since(start)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Ping: %v; want an answer", err)
			case tc.want != "" && err == nil:
				t.Fatal("Ping answered; want an error")
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q\ndoes not say %q", err, tc.want)
			case took > 12*time.Second:
				t.Fatalf("Ping took %s, want a prompt answer: %v", took, err)
			}
			t.Logf("in %s: %v", took.Round(time.Millisecond), err)
		})
	}
}
