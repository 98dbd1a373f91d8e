package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
