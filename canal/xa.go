package canal

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"go.uber.org/zap"
)

// mariadbPreparedXA is the MariaDB GTID event's FL_PREPARED_XA flag: the group is an XA
// transaction's, up to its XA PREPARE.
const mariadbPreparedXA = 0x40

// handOnHeld hands the rows held in an XA transaction to the handler, in their order.
func (r *reader) handOnHeld(ctx context.Context) error {
	held := r.txn.held
	r.txn.held = nil
	for _, c := range held {
		if err := r.h.Row(ctx, c); err != nil {
			return fmt.Errorf("handling row %d of %s at %s:%d: %w", c.Source.Row, c.Table.FullName(), c.Source.File, c.Source.Pos, err)
		}
	}
	return nil
}

// xaPrepared ends an XA transaction's first group, at its XA PREPARE event h. The binlog
// holds its rows from here, but whether it commits comes later, in a group of its own
// (XA COMMIT or XA ROLLBACK): when it changed matched tables, the server's binlog is read
// ahead for that outcome (Server.xaOutcome), and its rows are handed on only if it
// committed. The stream waits here meanwhile; a prepared transaction is ended in
// milliseconds by its coordinator, or by an operator after a crash.
func (r *reader) xaPrepared(ctx context.Context, h *replication.EventHeader) error {
	if len(r.txn.held) > 0 {
		at := h.LogPos - h.EventSize
		if r.txn.xid == "" {
			return fmt.Errorf("at %s:%d an XA PREPARE of a transaction that changed matched tables, without its XA END: its id is unknown, so its outcome cannot be found", r.file, at)
		}
		committed, err := r.s.server.xaOutcome(ctx, r.s.log, r.txn.xid, Position{File: r.file, Pos: h.LogPos})
		if err != nil {
			return fmt.Errorf("finding whether XA transaction %s, prepared at %s:%d, committed: %w", r.txn.xid, r.file, at, err)
		}
		if committed {
			if err := r.handOnHeld(ctx); err != nil {
				return err
			}
		} else {
			r.s.log.Info("an XA transaction that changed matched tables was rolled back after its XA PREPARE: its rows are not published",
				zap.String("xid", r.txn.xid), zap.Int("rows", len(r.txn.held)), zap.String("file", r.file), zap.Uint32("pos", at))
			r.txn.held = nil
		}
	}
	if !r.txn.open {
		return nil
	}
	return r.commit(ctx, h, r.withGroupGTID())
}

// withGroupGTID is the GTID set of the last commit with the open group's GTID added: the
// set to resume from after a group whose last event carries none (an XA PREPARE); nil
// when the stream has no GTID set.
func (r *reader) withGroupGTID() mysql.GTIDSet {
	if r.gtidSet == "" || r.txn.src.GTID == "" {
		return nil
	}
	set, err := mysql.ParseGTIDSet(r.s.server.Flavor, r.gtidSet)
	if err != nil || set.Update(r.txn.src.GTID) != nil {
		return nil
	}
	return set
}

// xaOutcome reads the server's binlog from `from` on (SHOW BINLOG EVENTS, through SQL) for
// the XA COMMIT or XA ROLLBACK of the transaction xid, and reports whether it committed.
// It follows the binlog into later files, and when it reaches the end, asks again with
// back-off until the outcome is written or ctx is done, saying every minute that it waits.
func (s *Server) xaOutcome(ctx context.Context, log *zap.Logger, xid string, from Position) (committed bool, err error) {
	commit, rollback := "XA COMMIT "+xid, "XA ROLLBACK "+xid
	at := from
	since := time.Now()
	told := since
	for pause := 10 * time.Millisecond; ; {
		events, err := s.binlogEvents(ctx, at.File, uint64(at.Pos), 1000)
		if err != nil {
			return false, err
		}
		for _, e := range events {
			if e["event_type"] == "Query" {
				switch info := strings.TrimSpace(e["info"]); {
				case strings.HasSuffix(info, commit):
					return true, nil
				case strings.HasSuffix(info, rollback):
					return false, nil
				}
			}
			end, err := strconv.ParseUint(e["end_log_pos"], 10, 32)
			if err != nil {
				return false, fmt.Errorf("reading binlog %s at %d: end_log_pos %q: %w", at.File, at.Pos, e["end_log_pos"], err)
			}
			at.Pos = uint32(end)
		}
		if len(events) == 1000 {
			continue
		}
		next, err := s.nextBinlogFile(ctx, at.File)
		if err != nil {
			return false, err
		}
		if next != "" {
			at = Position{File: next, Pos: 4}
			continue
		}
		if time.Since(told) >= time.Minute {
			told = time.Now()
			log.Warn("waiting for a prepared XA transaction's XA COMMIT or XA ROLLBACK: nothing after its XA PREPARE is published meanwhile",
				zap.String("xid", xid), zap.Stringer("prepared", from), zap.Duration("waited", time.Since(since).Round(time.Second)))
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Second)
	}
}

// nextBinlogFile is the binlog file after file on the server, "" when file is the last.
func (s *Server) nextBinlogFile(ctx context.Context, file string) (string, error) {
	files, err := s.BinlogFileSizes(ctx)
	if err != nil {
		return "", err
	}
	for i, f := range files[:max(0, len(files)-1)] {
		if f.Name == file {
			return files[i+1].Name, nil
		}
	}
	return "", nil
}

// PreparedXA lists the XA transactions the server holds prepared and undecided (XA
// RECOVER), each as its xid in SQL form ('gtrid','bqual',format), as XA COMMIT takes it.
// Their rows are in the binlog before now, their XA COMMIT will come after with none: a
// stream starting from the current position would never publish them.
func (s *Server) PreparedXA(ctx context.Context) ([]string, error) {
	query := "XA RECOVER FORMAT='SQL'"
	if s.Flavor == mysql.MySQLFlavor {
		query = "XA RECOVER CONVERT XID"
	}
	rows, err := s.DB.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("listing prepared XA transactions (%s): %w", query, err)
	}
	defer rows.Close()
	var xids []string
	for rows.Next() {
		var format, gtridLen, bqualLen int64
		var data string
		if err := rows.Scan(&format, &gtridLen, &bqualLen, &data); err != nil {
			return nil, fmt.Errorf("listing prepared XA transactions (%s): %w", query, err)
		}
		xids = append(xids, data)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing prepared XA transactions (%s): %w", query, err)
	}
	return xids, nil
}
