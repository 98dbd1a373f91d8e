package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestHTTPServerBoundsItsClients: serve's server closes a request that takes longer than
// httpReadTimeout to arrive (body included: a 401 is written only after the body) and an
// idle keep-alive connection, and refuses headers over 64 KiB, so clients without the
// token cannot hold the file descriptors the daemon needs for its database and brokers;
// its own errors (a failed accept) are JSON log lines at WARN, not stderr text.
func TestHTTPServerBoundsItsClients(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	srv := newHTTPServer(http.NotFoundHandler(), zap.New(core))
	for name, got := range map[string]time.Duration{"ReadHeaderTimeout": srv.ReadHeaderTimeout, "ReadTimeout": srv.ReadTimeout, "IdleTimeout": srv.IdleTimeout} {
		if got <= 0 || got > 5*time.Minute {
			t.Errorf("%s %s, want a bound of at most 5m", name, got)
		}
	}
	if srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 1<<20 {
		t.Errorf("MaxHeaderBytes %d, want a bound under net/http's 1 MiB default", srv.MaxHeaderBytes)
	}
	if srv.ErrorLog == nil {
		t.Fatal("no ErrorLog: net/http writes its errors as text on stderr")
	}
	srv.ErrorLog.Printf("http: Accept error: accept tcp [::]:8080: accept4: too many open files; retrying in 1s")
	entries := logs.All()
	if len(entries) != 1 || entries[0].Level != zapcore.WarnLevel || entries[0].LoggerName != "http" || !strings.Contains(entries[0].Message, "too many open files") {
		t.Errorf("the server's error logged as %+v, want one WARN line of logger http", entries)
	}
}
