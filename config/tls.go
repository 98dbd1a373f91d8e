package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// TLS is how a connection (to the source, or to the Kafka brokers) is encrypted and whose
// certificate it trusts. The modes follow MySQL's ssl-mode.
type TLS struct {
	// Mode is disabled (the default), required (encrypted; the server's certificate is not
	// checked), verify_ca (signed by CAFile, or by the system's roots without it) or
	// verify_full (verify_ca, and the certificate names the host dialled, or ServerName).
	Mode string `mapstructure:"mode"`
	// CAFile is a PEM file of the certificates that sign the server's.
	CAFile string `mapstructure:"ca_file"`
	// CertFile and KeyFile are this client's certificate and key (PEM), for servers that
	// ask for one; both or neither.
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
	// ServerName is the name the server's certificate must carry under verify_full, when
	// it is not the host dialled.
	ServerName string `mapstructure:"server_name"`
}

// TLS modes.
const (
	TLSDisabled   = "disabled"
	TLSRequired   = "required"
	TLSVerifyCA   = "verify_ca"
	TLSVerifyFull = "verify_full"
)

// Enabled reports whether connections are encrypted.
func (t TLS) Enabled() bool { return t.Mode != "" && t.Mode != TLSDisabled }

// ClientConfig returns the tls.Config for t, or nil when TLS is disabled. host, when not
// empty, is the server name to verify under verify_full unless ServerName is set (leave it
// empty where one configuration dials several hosts: Go then checks each host dialled).
func (t TLS) ClientConfig(host string) (*tls.Config, error) {
	if !t.Enabled() {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CertFile != "" || t.KeyFile != "" {
		pair, err := t.clientCertificate()
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{pair}
	}
	roots, err := t.roots()
	if err != nil {
		return nil, err
	}
	switch t.Mode {
	case TLSRequired:
		c.InsecureSkipVerify = true
	case TLSVerifyCA:
		// Go's verification always checks the host name; verify_ca checks the chain only.
		c.InsecureSkipVerify = true
		c.VerifyConnection = func(cs tls.ConnectionState) error { return verifyChain(cs.PeerCertificates, roots) }
	case TLSVerifyFull:
		c.RootCAs = roots
		c.ServerName = t.ServerName
		if c.ServerName == "" {
			c.ServerName = host
		}
	default:
		return nil, fmt.Errorf("unknown TLS mode %q", t.Mode)
	}
	return c, nil
}

// ClientTLS is the tls.Config of every connection to the source (nil: TLS disabled),
// verifying the host of source.addr under verify_full.
func (s Source) ClientTLS() (*tls.Config, error) {
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		host = "" // a Unix socket
	}
	c, err := s.TLS.ClientConfig(host)
	if err != nil {
		return nil, fmt.Errorf("source.tls: %w", err)
	}
	return c, nil
}

// roots reads CAFile; nil without one (the system's roots).
func (t TLS) roots() (*x509.CertPool, error) {
	if t.CAFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("reading the CA file: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("the CA file %s holds no PEM certificate", t.CAFile)
	}
	return roots, nil
}

func (t TLS) clientCertificate() (tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return pair, fmt.Errorf("loading the client certificate %s and key %s: %w", t.CertFile, t.KeyFile, err)
	}
	return pair, nil
}

// verifyChain checks that the server's certificate chain (leaf first) leads to roots
// (nil: the system's), whatever names it carries.
func verifyChain(certs []*x509.Certificate, roots *x509.CertPool) error {
	if len(certs) == 0 {
		return errors.New("the server sent no certificate")
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return fmt.Errorf("verifying the server's certificate: %w", err)
	}
	return nil
}

// problems checks t, whose keys sit under prefix (e.g. source.tls), files included.
func (t TLS) problems(prefix string) []Problem {
	var ps []Problem
	bad := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: prefix + "." + key, Msg: fmt.Sprintf(format, args...)})
	}
	switch t.Mode {
	case "", TLSDisabled:
		for _, f := range [...]struct{ key, path string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
			if f.path != "" {
				bad(f.key, "is set but %s.mode is disabled; set the mode to required, verify_ca or verify_full", prefix)
			}
		}
		return ps
	case TLSRequired, TLSVerifyCA, TLSVerifyFull:
	default:
		bad("mode", "%q is not one of disabled, required, verify_ca, verify_full", t.Mode)
		return ps
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("cert_file", "cert_file and key_file go together: set both or neither")
		return ps
	}
	if _, err := t.roots(); err != nil {
		bad("ca_file", "%v", err)
	}
	if t.CertFile != "" {
		if _, err := t.clientCertificate(); err != nil {
			bad("cert_file", "%v", err)
		}
	}
	return ps
}

// resolve makes t's files relative to dir, the config file's folder.
func (t *TLS) resolve(dir string) { resolve(dir, &t.CAFile, &t.CertFile, &t.KeyFile) }

// SASL is how the daemon authenticates to the Kafka brokers.
type SASL struct {
	// Mechanism is empty (none), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `mapstructure:"mechanism"`
	User      string `mapstructure:"user"`
	// Password: better from the environment, STOCKSYNC_KAFKA_SASL_PASSWORD.
	Password string `mapstructure:"password"`
}

// SASL mechanisms.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

func (s SASL) problems(prefix string) []Problem {
	var ps []Problem
	switch s.Mechanism {
	case "":
		switch {
		case s.User != "":
			ps = append(ps, Problem{Key: prefix + ".mechanism", Msg: "user is set but no mechanism: set PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"})
		case s.Password != "":
			ps = append(ps, Problem{Key: prefix + ".mechanism", Msg: "password is set but no mechanism (nor user): set PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, and the user"})
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if s.User == "" {
			ps = append(ps, Problem{Key: prefix + ".user", Msg: s.Mechanism + " needs a user"})
		}
	default:
		ps = append(ps, Problem{Key: prefix + ".mechanism", Msg: fmt.Sprintf("%q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", s.Mechanism)})
	}
	return ps
}
