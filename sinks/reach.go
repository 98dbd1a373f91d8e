package sinks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// dialTimeout bounds opening one connection to a broker, TLS handshake included.
const dialTimeout = 5 * time.Second

// reach runs open, a client's first contact with the brokers, and turns its failure into
// an error that names the setting to fix: both client libraries report a refused SASL
// login, or plaintext spoken to a TLS listener, as a bare EOF. With TLS it first checks
// that some broker completes a handshake, because sarama's handshake has no time limit:
// against a plaintext listener that waits for more bytes it would hang.
func reach(ctx context.Context, brokers []string, sec Security, open func() error) error {
	err := checkTLS(ctx, brokers, sec.TLS)
	if err == nil {
		err = open()
	}
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("connecting to Kafka brokers %v: %w", brokers, err)
	}
	if why := diagnose(ctx, brokers, sec, err); why != "" {
		return fmt.Errorf("connecting to Kafka brokers %v: %s: %w", brokers, why, err)
	}
	return fmt.Errorf("connecting to Kafka brokers %v (kafka.brokers): %w", brokers, err)
}

// handshakeError is a TLS handshake with one broker that failed.
type handshakeError struct {
	addr string
	err  error
}

func (e *handshakeError) Error() string {
	return fmt.Sprintf("TLS handshake with %s: %v", e.addr, e.err)
}
func (e *handshakeError) Unwrap() error { return e.err }

// checkTLS returns nil once a TLS handshake with one of brokers succeeds (or at once
// without TLS), else the first broker's failure.
func checkTLS(ctx context.Context, brokers []string, tlsConfig *tls.Config) error {
	if tlsConfig == nil {
		return nil
	}
	var first error
	for _, addr := range brokers {
		conn, err := dial(ctx, addr, tlsConfig)
		if err == nil {
			conn.Close()
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// dial connects to addr, over TLS when tlsConfig is not nil, within dialTimeout.
// Without a ServerName in tlsConfig the certificate must name the host dialled, as the
// client libraries do it.
func dial(ctx context.Context, addr string, tlsConfig *tls.Config) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil || tlsConfig == nil {
		return conn, err
	}
	if tlsConfig.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("parsing broker address %q: %w", addr, err)
		}
		tlsConfig = tlsConfig.Clone()
		tlsConfig.ServerName = host
	}
	tc := tls.Client(conn, tlsConfig)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s: %w", dialTimeout, err)
		}
		return nil, &handshakeError{addr: addr, err: err}
	}
	return tc, nil
}

// diagnose says which setting err, from a client's first contact with brokers, points at,
// or "" when it cannot tell. Where the error alone is ambiguous (a connection closed
// without a word) it asks the brokers again with less: the same TLS without SASL, or the
// other side of TLS.
func diagnose(ctx context.Context, brokers []string, sec Security, err error) string {
	if why := diagnoseTLS(err); why != "" {
		return why
	}
	if errors.Is(err, sarama.ErrSASLAuthenticationFailed) || errors.Is(err, kerr.SaslAuthenticationFailed) {
		return sec.saslRefused("the broker")
	}
	if hs := (*handshakeError)(nil); errors.As(err, &hs) {
		if speaksKafka(ctx, hs.addr, nil) {
			return fmt.Sprintf("broker %s answers without TLS: its listener is plaintext, but kafka.tls.mode asks for TLS", hs.addr)
		}
		return ""
	}
	if !isHangUp(err) {
		return ""
	}
	for _, addr := range brokers {
		if speaksKafka(ctx, addr, sec.TLS) {
			// The same connection without SASL is answered: the login was refused.
			if sec.SASL.Mechanism != "" {
				return sec.saslRefused("broker " + addr)
			}
			return fmt.Sprintf("broker %s answers ApiVersions but closed the connection at the next request, as brokers that require SASL authentication do (kafka.sasl)", addr)
		}
		// Unverified: this connection only learns whether the broker speaks TLS.
		if sec.TLS == nil && speaksKafka(ctx, addr, &tls.Config{InsecureSkipVerify: true}) {
			return fmt.Sprintf("broker %s speaks TLS, but kafka.tls.mode is disabled", addr)
		}
	}
	return ""
}

// diagnoseTLS names what a failed certificate check or a refused TLS connection means.
func diagnoseTLS(err error) string {
	var (
		unknownAuthority x509.UnknownAuthorityError
		wrongHost        x509.HostnameError
		invalid          x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
		op               *net.OpError
	)
	switch {
	case errors.As(err, &unknownAuthority):
		return "the broker's certificate is not signed by a CA the daemon trusts (kafka.tls.ca_file, or the system's CAs without one)"
	case errors.As(err, &wrongHost):
		return "the broker's certificate does not name the host dialled (kafka.brokers, kafka.tls.server_name)"
	case errors.As(err, &invalid):
		return "the broker's certificate is not valid (kafka.tls)"
	case errors.As(err, &verification):
		return "the broker's certificate is not trusted (kafka.tls.ca_file, kafka.tls.mode)"
	case errors.As(err, &op) && op.Op == "remote error":
		return "the broker refused the TLS connection; if it requires a client certificate, set kafka.tls.cert_file and kafka.tls.key_file to one its CA signed"
	}
	return ""
}

func (s Security) saslRefused(who string) string {
	return fmt.Sprintf("%s refused SASL authentication as user %q with %s (kafka.sasl.user, kafka.sasl.password, kafka.sasl.mechanism)",
		who, s.SASL.User, s.SASL.Mechanism)
}

// isHangUp reports whether err is the broker closing the connection without an answer.
func isHangUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// speaksKafka reports whether the broker at addr answers an ApiVersions request (which
// brokers answer before any SASL login), over TLS when tlsConfig is not nil.
func speaksKafka(ctx context.Context, addr string, tlsConfig *tls.Config) bool {
	conn, err := dial(ctx, addr, tlsConfig)
	if err != nil {
		return false
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
		return false
	}
	const correlationID = 1
	req := kmsg.NewRequestFormatter(kmsg.FormatterClientID("stocksync-probe")).
		AppendRequest(nil, kmsg.NewPtrApiVersionsRequest(), correlationID)
	if _, err := conn.Write(req); err != nil {
		return false
	}
	// A response is a length, then the correlation id; a TLS alert read as a length is
	// hundreds of megabytes.
	var head [8]byte
	if _, err := io.ReadFull(conn, head[:]); err != nil {
		return false
	}
	size := binary.BigEndian.Uint32(head[:4])
	return size >= 4 && size < 1<<20 && binary.BigEndian.Uint32(head[4:]) == correlationID
}
