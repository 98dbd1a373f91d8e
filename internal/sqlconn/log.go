package sqlconn

import (
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
)

// DriverLoggerName is the name (the "logger" field) of the MySQL driver's log lines once
// SetDriverLogger has sent them to zap.
const DriverLoggerName = "mysql-driver"

// SetDriverLogger sends the MySQL driver's own log lines (a connection lost under a query,
// a malformed packet: "[mysql] … packets.go:58 unexpected EOF" as plain text on stderr by
// default) to log, each a warning "mysql driver" of the logger named DriverLoggerName with
// the driver's text in the field detail. The driver's logger is one for the whole process
// and Open copies it into each handle it configures: call this once, before opening
// handles.
func SetDriverLogger(log *zap.Logger) {
	// mysql.SetLogger fails only for a nil logger.
	_ = mysql.SetLogger(driverLogger{log: log.Named(DriverLoggerName)})
}

// driverLogger is the driver's Logger writing through zap.
type driverLogger struct{ log *zap.Logger }

// Print formats v as the driver's default logger (log.Logger) does.
func (l driverLogger) Print(v ...any) {
	l.log.Warn("mysql driver", zap.String("detail", strings.TrimSpace(fmt.Sprint(v...))))
}
