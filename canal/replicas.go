package canal

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/stocksync/stocksync/internal/sqlconn"
)

// ErrServerIDTaken is a source.server_id that the source server or another of its
// replicas already has: a stream with it would be refused, or would disconnect the other
// replica and be disconnected by it in turn.
var ErrServerIDTaken = errors.New("source.server_id is taken")

// replicaHostLength is the longest report host every server takes (MySQL 5.7's
// HOSTNAME_LENGTH; MariaDB and MySQL 8 take 255).
const replicaHostLength = 60

// replicaHostPrefix begins the host name every stream of src registers with the server
// (SHOW SLAVE HOSTS' Host): "stocksync-" and 8 hex digits of src.Checkpoint, so that a
// registration of a daemon on the same checkpoint is told from anyone else's.
func (src Config) replicaHostPrefix() string {
	sum := sha1.Sum([]byte(src.Checkpoint))
	return "stocksync-" + hex.EncodeToString(sum[:4]) + " "
}

// replicaHost is the host name a stream of src registers with: replicaHostPrefix and this
// machine's name, cut to replicaHostLength bytes.
func (src Config) replicaHost() string {
	host, _ := os.Hostname()
	h := src.replicaHostPrefix() + host
	if len(h) > replicaHostLength {
		h = h[:replicaHostLength]
	}
	return h
}

// Replica is one replica the server lists as registered (SHOW SLAVE HOSTS).
type Replica struct {
	ServerID uint32
	Host     string // as the replica reported it (report_host; stocksync: replicaHost)
	Port     uint64
}

// Replicas lists the replicas registered with the server: SHOW REPLICAS (MySQL 8.0.22 and
// later), else SHOW SLAVE HOSTS. The error of a user not permitted to list them is
// returned as the server gave it (number 1227).
func (s *Server) Replicas(ctx context.Context) ([]Replica, error) {
	rows, err := s.DB.QueryContext(ctx, "SHOW SLAVE HOSTS")
	if err != nil && s.Flavor == "mysql" {
		rows, err = s.DB.QueryContext(ctx, "SHOW REPLICAS") // MySQL 8.4 has only this one
	}
	if err != nil {
		return nil, fmt.Errorf("listing the server's replicas (SHOW SLAVE HOSTS): %w", err)
	}
	defer rows.Close()
	var replicas []Replica
	for rows.Next() {
		row, err := scanByColumn(rows)
		if err != nil {
			return nil, fmt.Errorf("listing the server's replicas (SHOW SLAVE HOSTS): %w", err)
		}
		id, _ := strconv.ParseUint(row["server_id"], 10, 32)
		port, _ := strconv.ParseUint(row["port"], 10, 64)
		replicas = append(replicas, Replica{ServerID: uint32(id), Host: row["host"], Port: port})
	}
	return replicas, rows.Err()
}

// CheckServerID returns ErrServerIDTaken, naming who has it, when src.ServerID is the
// server's own @@server_id, or a replica the server lists (SHOW SLAVE HOSTS) has it that
// is not a stream of src's checkpoint. A stream of the same checkpoint is this daemon's
// own registration, which the server may list for a while after the daemon was killed
// (until it notices the connection is gone), or its standby's, which streams only once
// it holds the checkpoint's lock: neither is someone else's. Nor is a registration in the
// form of a stocksync from before the prefix (a plain host name) while another connection
// holds the checkpoint's lock and a binlog dump of the same user comes from that
// connection's host (streamingLockHolder): the other daemon of an upgrade under way, which
// streams with this id already. A user the server does not let list its replicas skips
// that part, logged at debug.
func (s *Server) CheckServerID(ctx context.Context, src Config, log *zap.Logger) error {
	if s.ID == src.ServerID {
		return fmt.Errorf("%w: source.server_id %d is the source server's own @@server_id: the server refuses a replica with its own id; "+
			"give stocksync an id that neither the server nor any of its replicas has", ErrServerIDTaken, src.ServerID)
	}
	replicas, err := s.Replicas(ctx)
	if sqlconn.ErrorNumber(err) == 1227 { // access denied: REPLICATION MASTER ADMIN on MariaDB 10.5.2 and later
		log.Debug("source.user may not list the server's replicas (SHOW SLAVE HOSTS): not checking whether another replica has source.server_id",
			zap.Uint32("server_id", src.ServerID), zap.Error(err))
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking that no other replica has source.server_id %d: %w", src.ServerID, err)
	}
	mine := src.replicaHostPrefix()
	for _, r := range replicas {
		if r.ServerID != src.ServerID || strings.HasPrefix(r.Host, mine) {
			continue
		}
		who := "another replica"
		if strings.HasPrefix(r.Host, "stocksync-") {
			who = "a stocksync daemon streaming another checkpoint"
		} else {
			holder, err := s.streamingLockHolder(ctx, src.Checkpoint)
			if err != nil {
				return fmt.Errorf("checking that no other replica has source.server_id %d: %w", src.ServerID, err)
			}
			if holder != "" {
				log.Info("source.server_id is registered under a plain host name, as a stocksync before the checkpoint's hash in it registers: "+
					"taken for the daemon that holds the checkpoint's lock and streams from the same address (an upgrade under way)",
					zap.Uint32("server_id", src.ServerID), zap.String("host", r.Host), zap.Uint64("port", r.Port),
					zap.String("lock", src.Checkpoint), zap.String("held_by", holder))
				continue
			}
		}
		return fmt.Errorf("%w: source.server_id %d is registered with the server by %s, host %q port %d (SHOW SLAVE HOSTS): "+
			"two replicas with one id keep disconnecting each other; give stocksync an id that neither the server nor any of its replicas has",
			ErrServerIDTaken, src.ServerID, who, r.Host, r.Port)
	}
	return nil
}

// streamingLockHolder names the connection that holds the lock (another connection than
// any of s's) when a binlog dump of that connection's user streams from the same client
// host: a daemon of the checkpoint that streams. "" when no one holds the lock, or no
// such dump is seen (source.user sees its own connections; all with PROCESS).
func (s *Server) streamingLockHolder(ctx context.Context, lock string) (string, error) {
	holder, held, err := HolderOf(ctx, s.DB, lock)
	if err != nil || !held || holder.User == "" {
		return "", err
	}
	rows, err := s.DB.QueryContext(ctx, "SELECT HOST FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%' AND USER = ?", holder.User)
	if err != nil {
		return "", fmt.Errorf("listing the binlog dumps of %s (information_schema.PROCESSLIST): %w", holder.User, err)
	}
	defer rows.Close()
	streams := false
	for rows.Next() {
		var dumpHost string
		if err := rows.Scan(&dumpHost); err != nil {
			return "", fmt.Errorf("listing the binlog dumps of %s (information_schema.PROCESSLIST): %w", holder.User, err)
		}
		streams = streams || clientHost(dumpHost) == clientHost(holder.Host)
	}
	if err := rows.Err(); err != nil || !streams {
		return "", err
	}
	return holder.String(), nil
}

// clientHost is a PROCESSLIST HOST without its port ("10.0.3.8:50122": "10.0.3.8").
func clientHost(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		if _, err := strconv.ParseUint(host[i+1:], 10, 16); err == nil {
			return host[:i]
		}
	}
	return host
}
