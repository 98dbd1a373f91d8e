package sqlconn

import (
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Target is one server, user and database to connect to.
type Target struct {
	Addr     string // host:port, or the path of a Unix socket
	User     string
	Password string
	Database string      // "" for none
	TLS      *tls.Config // nil: no TLS
	// Session are system variables set on every connection, as SQL values:
	// {"time_zone": "'+00:00'"}.
	Session map[string]string
}

// Open returns a handle on t; it does not connect yet.
func Open(t Target) (*sql.DB, error) {
	c := mysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr, c.DBName = t.User, t.Password, "tcp", t.Addr, t.Database
	if strings.HasPrefix(t.Addr, "/") {
		c.Net = "unix"
	}
	c.Timeout = 5 * time.Second
	c.ParseTime = true // in UTC: mysql.NewConfig's Loc
	c.InterpolateParams = true
	c.TLS = t.TLS
	c.Params = t.Session
	connector, err := mysql.NewConnector(c)
	if err != nil {
		return nil, fmt.Errorf("configuring the connection to %s: %w", t.Addr, err)
	}
	return sql.OpenDB(connector), nil
}

// ErrorNumber is the server's error number of err (1146 for a missing table, say), 0 when
// err is not an error the server sent.
func ErrorNumber(err error) uint16 {
	var serverErr *mysql.MySQLError
	if errors.As(err, &serverErr) {
		return serverErr.Number
	}
	return 0
}

// ErrorMessage is the server's message of the MySQL error err wraps ("" for none).
func ErrorMessage(err error) string {
	var serverErr *mysql.MySQLError
	if errors.As(err, &serverErr) {
		return serverErr.Message
	}
	return ""
}

// ConnectionLost reports whether err is the driver's answer to a connection the server
// closed under a statement (killed, restarted, or the network cut): the statement may or
// may not have taken effect.
func ConnectionLost(err error) bool { return errors.Is(err, mysql.ErrInvalidConn) }
