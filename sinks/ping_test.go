package sinks_test

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

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
		{"a dead broker first, a live one second", []string{testutil.FreeAddr(t), testutil.Broker(t)}, sinks.Security{}, ""},
		{"a port that accepts and never speaks", []string{silent}, sinks.Security{},
			"no answer to a metadata request within 2s (the port accepts connections but does not speak Kafka"},
		{"a port that accepts and never speaks, over TLS", []string{silent}, security(t, verifyFull, config.SASL{}),
			"TLS handshake with " + silent},
		{"nothing listening", []string{testutil.FreeAddr(t)}, sinks.Security{}, "connection refused"},
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

// A Pinger logs in once and keeps its connection: pinging every few seconds must not
// authenticate every time (each SCRAM login costs the broker, and its audit log a line).
// One-off pings log in each time, which is what shows the count counts.
func TestPingerLogsInOnce(t *testing.T) {
	certs := testutil.NewCerts(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(certs.ServerConfig(false)), kfake.EnableSASL(),
		kfake.Superuser(config.SASLScramSHA512, "stocksync", "pw"))
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	var logins atomic.Int64
	c.ControlKey(int16(kmsg.SASLHandshake), func(kmsg.Request) (kmsg.Response, error, bool) {
		logins.Add(1)
		return nil, nil, false // counted, then handled as usual
	})
	brokers := c.ListenAddrs()
	sec := security(t, config.TLS{Mode: config.TLSVerifyFull, CAFile: certs.CAFile},
		config.SASL{Mechanism: config.SASLScramSHA512, User: "stocksync", Password: "pw"})

	for range 3 {
		if err := sinks.Ping(t.Context(), brokers, sec); err != nil {
			t.Fatalf("one-off Ping: %v", err)
		}
	}
	if n := logins.Load(); n < 3 {
		t.Fatalf("3 one-off pings logged in %d times; the count does not see logins", n)
	}

	logins.Store(0)
	p, err := sinks.NewPinger(brokers, sec)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 20 {
		if err := p.Ping(t.Context()); err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
	}
	// franz-go keeps a connection to the seed broker and one to the broker it learns
	// from the metadata, though here they are one process.
	if n := logins.Load(); n > 2 {
		t.Errorf("20 pings of one Pinger logged in %d times, want at most 2", n)
	}

	// A failed ping still says why, as a one-off ping does.
	wrong := security(t, config.TLS{Mode: config.TLSVerifyFull, CAFile: certs.CAFile},
		config.SASL{Mechanism: config.SASLScramSHA512, User: "stocksync", Password: "wrong"})
	refused, err := sinks.NewPinger(brokers, wrong)
	if err != nil {
		t.Fatal(err)
	}
	defer refused.Close()
	if err := refused.Ping(t.Context()); err == nil || !strings.Contains(err.Error(), "refused SASL authentication") {
		t.Errorf("a Pinger with a wrong password: %v, want the refused login named", err)
	}
}
