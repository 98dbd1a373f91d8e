package config

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/stocksync/stocksync/internal/testutil"
)

// TestTLSModesCheckWhatTheySay shakes hands with a server whose certificate names
// 127.0.0.1 and localhost. Dialled under another name, verify_ca (the chain only) accepts
// it and verify_full (the chain and the name) refuses it. Signed by a CA other than the
// one configured, verify_ca and verify_full refuse it and required, which only encrypts,
// accepts it.
func TestTLSModesCheckWhatTheySay(t *testing.T) {
	certs := testutil.NewCerts(t)
	for _, tc := range []struct {
		mode, ca, host string
		accept         bool
	}{
		{TLSVerifyCA, certs.CAFile, "elsewhere.example", true},
		{TLSVerifyFull, certs.CAFile, "elsewhere.example", false},
		{TLSVerifyFull, certs.CAFile, "127.0.0.1", true},
		{TLSVerifyCA, certs.OtherCAFile, "127.0.0.1", false},
		{TLSVerifyFull, certs.OtherCAFile, "127.0.0.1", false},
		{TLSRequired, certs.OtherCAFile, "elsewhere.example", true},
	} {
		client, err := TLS{Mode: tc.mode, CAFile: tc.ca}.ClientConfig(tc.host)
		if err != nil {
			t.Fatal(err)
		}
		err = handshake(client, certs.ServerConfig(false))
		if (err == nil) != tc.accept {
			t.Errorf("%s with CA %s dialling %s: handshake error %v, want accepted %v", tc.mode, tc.ca, tc.host, err, tc.accept)
		}
	}
}

// handshake runs a TLS handshake between client and server over loopback TCP and returns
// the client's error. (Not net.Pipe: its writes wait for the reader, and a client that
// sends an alert while the server still writes would wait forever.)
func handshake(client, server *tls.Config) (err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if s, err := l.Accept(); err == nil {
			tls.Server(s, server).Handshake()
			s.Close()
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	err = tls.Client(c, client).Handshake()
	c.Close()
	<-done
	return err
}
