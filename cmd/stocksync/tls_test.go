package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/stocksync/stocksync/internal/testutil"
)

// TestSourceOverTLS runs the daemon against a MariaDB whose stocksync user must show a
// client certificate the server's CA signed (REQUIRE X509), so nothing reaches it without
// TLS: the binlog stream and the SQL connections go over TLS with source.tls, and a CA
// that did not sign the server's certificate is refused, naming source.tls.
func TestSourceOverTLS(t *testing.T) {
	certs := testutil.NewCerts(t)
	m, s, db := setupOnPrivateMariaDB(t, fmt.Sprintf("--ssl-ca=%s --ssl-cert=%s --ssl-key=%s", certs.CAFile, certs.ServerCert, certs.ServerKey))
	admin := m.Open(t, "")
	testutil.Exec(t, admin,
		"CREATE USER tls_user IDENTIFIED BY 'tls-secret' REQUIRE X509",
		"GRANT ALL PRIVILEGES ON *.* TO tls_user",
	)
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	withUser := strings.Replace(string(cfg), "user: "+m.User+"\n  password: "+m.Password+"\n",
		"user: tls_user\n  password: tls-secret\n", 1)
	if withUser == string(cfg) {
		t.Fatalf("config has no user and password to replace:\n%s", cfg)
	}
	tlsBlock := func(ca string) string {
		return fmt.Sprintf("  tls: {mode: verify_full, ca_file: %s, cert_file: %s, key_file: %s}\n", ca, certs.ClientCert, certs.ClientKey)
	}
	withTLS := func(ca string) string {
		return strings.Replace(withUser, "\nkafka:", "\n"+tlsBlock(ca)+"kafka:", 1)
	}

	// A CA that did not sign the server's certificate: refused before anything runs.
	bad := filepath.Join(filepath.Dir(s.config), "other-ca.yaml")
	writeFile(t, bad, withTLS(certs.OtherCAFile))
	out, err := exec.Command(binary, "serve", "--config", bad).CombinedOutput()
	if err == nil {
		t.Fatalf("exit 0 with a CA that did not sign the server's certificate:\n%s", out)
	}
	for _, w := range []string{"source.tls", "certificate signed by unknown authority"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}

	writeFile(t, s.config, withTLS(certs.CAFile))
	testutil.Exec(t, db, "CREATE TABLE stock_tls (sku_id INT PRIMARY KEY, qty INT)")
	s.start(t)
	insertRows(t, db, "stock_tls", 0, 20)
	consumeEveryRow(t, s.broker, s.topic, 20)
	var dumps int
	if err := admin.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'tls_user' AND COMMAND LIKE 'Binlog Dump%'").Scan(&dumps); err != nil {
		t.Fatal(err)
	}
	if dumps != 1 {
		t.Errorf("%d binlog dumps for tls_user, want the daemon's one", dumps)
	}
}

// TestDevBrokerSpeaksTLSAndSASL: `stocksync devbroker` with a certificate and a SASL user
// serves only clients that speak TLS and log in, so a daemon's kafka.tls and kafka.sasl
// can be tried against it; flags that do not go together are refused, named. Checked
// with franz-go directly, not the daemon's own client code.
func TestDevBrokerSpeaksTLSAndSASL(t *testing.T) {
	certs := testutil.NewCerts(t)
	b := runDevBroker(t, "127.0.0.1:0", "", "--tls-cert", certs.ServerCert, "--tls-key", certs.ServerKey,
		"--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", "stocksync", "--sasl-password", "pw")
	secured := certs.ClientConfig() // trusts the test CA (its client certificate goes unasked)
	ping := func(opts ...kgo.Opt) error {
		cl := testutil.KafkaClient(t, append(opts, kgo.SeedBrokers(b.addr), kgo.RequestRetries(0))...)
		defer cl.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		return cl.Ping(ctx)
	}
	if err := ping(kgo.DialTLSConfig(secured), kgo.SASL(scram.Auth{User: "stocksync", Pass: "pw"}.AsSha512Mechanism())); err != nil {
		t.Errorf("TLS and the right login: %v", err)
	}
	if err := ping(kgo.DialTLSConfig(secured), kgo.SASL(scram.Auth{User: "stocksync", Pass: "wrong"}.AsSha512Mechanism())); err == nil {
		t.Error("a wrong password was let in")
	}
	if err := ping(kgo.DialTLSConfig(secured)); err == nil {
		t.Error("a client without a login was let in")
	}
	if err := ping(kgo.SASL(scram.Auth{User: "stocksync", Pass: "pw"}.AsSha512Mechanism())); err == nil {
		t.Error("a plaintext client was let in")
	}

	for _, c := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--tls-cert", certs.ServerCert}, "--tls-cert and --tls-key go together"},
		{[]string{"--sasl-mechanism", "GSSAPI", "--sasl-user", "u", "--sasl-password", "p"}, `--sasl-mechanism "GSSAPI" is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512`},
		{[]string{"--sasl-mechanism", "PLAIN"}, "--sasl-mechanism PLAIN needs --sasl-user and --sasl-password"},
		{[]string{"--sasl-user", "u"}, "--sasl-user and --sasl-password need --sasl-mechanism"},
		{[]string{"--tls-cert", certs.ServerCert, "--tls-key", certs.CAFile}, "loading the development broker's certificate"},
	} {
		// A devbroker that accepted the flags would serve until killed: 10 s is plenty to refuse.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		out, err := exec.CommandContext(ctx, binary, append([]string{"devbroker", "--addr", "127.0.0.1:0"}, c.flags...)...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("devbroker %v: %v\n%s\nwant an error saying %q", c.flags, err, out, c.want)
		}
	}
}
