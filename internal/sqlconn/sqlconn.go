package sqlconn

import (
	"context"
	"crypto/tls"
	"database/sql"
	"database/sql/driver"
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
	// Session are statements run, in order, on every new connection before it is used:
	// "SET SESSION time_zone = '+00:00'". A statement the server refuses fails the
	// connection with a *SessionError.
	Session []string
}

// SessionError is a connection the server accepted (address, user and password were
// right) but one of whose Target.Session statements it refused: a setting this server
// does not know or does not allow, not a credentials problem.
type SessionError struct {
	Statement string
	Err       error
}

func (e *SessionError) Error() string {
	return fmt.Sprintf("setting up the session (%s): %v", e.Statement, e.Err)
}

func (e *SessionError) Unwrap() error { return e.Err }

// sessionConnector runs statements on each connection its Connector opens, before
// database/sql hands it out. The driver's own DSN params can only assign a variable by
// name, and names differ between servers: MySQL 8.0.3 removed tx_isolation, which MariaDB
// before 11.1 alone knows, while a statement such as SET SESSION TRANSACTION ISOLATION
// LEVEL means the same on both.
type sessionConnector struct {
	driver.Connector
	statements []string
}

func (c sessionConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	exec, ok := conn.(driver.ExecerContext)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("setting up the session: the driver's connection %T cannot execute statements", conn)
	}
	for _, q := range c.statements {
		if _, err := exec.ExecContext(ctx, q, nil); err != nil {
			conn.Close()
			return nil, &SessionError{Statement: q, Err: err}
		}
	}
	return conn, nil
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
	connector, err := mysql.NewConnector(c)
	if err != nil {
		return nil, fmt.Errorf("configuring the connection to %s: %w", t.Addr, err)
	}
	if len(t.Session) > 0 {
		connector = sessionConnector{Connector: connector, statements: t.Session}
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
