package sqlconn

import (
	"log"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestDriverLogLinesGoThroughZap: a line the driver logs itself (here: the server closes
// the connection before its greeting, "packets.go:… unexpected EOF") reaches the zap
// logger given to SetDriverLogger as a warning of the mysql-driver logger, not stderr.
func TestDriverLogLinesGoThroughZap(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	SetDriverLogger(zap.New(core))
	t.Cleanup(func() { _ = mysql.SetLogger(log.New(os.Stderr, "[mysql] ", log.Ldate|log.Ltime)) })

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close() // no greeting: the driver reads EOF and logs it
		}
	}()
	db, err := Open(Target{Addr: l.Addr().String(), User: "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.PingContext(t.Context()); err == nil {
		t.Fatal("ping of a server that closes every connection succeeded")
	}
	entries := logs.All()
	if len(entries) == 0 {
		t.Fatal("the driver logged nothing through zap")
	}
	e := entries[0]
	detail, _ := e.ContextMap()["detail"].(string)
	if e.Level != zapcore.WarnLevel || e.LoggerName != DriverLoggerName || e.Message != "mysql driver" || !strings.Contains(detail, "EOF") {
		t.Errorf("got %s %q %q detail %q; want a warning %q of logger %q whose detail names the EOF", e.Level, e.LoggerName, e.Message, detail, "mysql driver", DriverLoggerName)
	}
}
