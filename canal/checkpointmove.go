package canal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/stocksync/stocksync/internal/sqlconn"
)

// ErrNotStreamable is a position an operator asked to move a checkpoint to that the
// server cannot stream from: a file it does not list, a position outside the file or
// between two events, GTIDs it has not written or no longer holds.
var ErrNotStreamable = errors.New("the server cannot stream from there")

// FilePosition checks that the server can stream from pos of binlog file and returns the
// position as a checkpoint keeps it: on MariaDB with the GTID position there
// (BINLOG_GTID_POS), by which the daemon resumes. The file must be listed by SHOW BINARY
// LOGS, pos within it (4 up to its size) and where an event ends, and the binlogs must
// hold what follows (Resumable).
func (s *Server) FilePosition(ctx context.Context, file string, pos uint64) (Position, error) {
	files, err := s.BinlogFileSizes(ctx)
	if err != nil {
		return Position{}, err
	}
	i := slices.IndexFunc(files, func(f BinlogFile) bool { return f.Name == file })
	if i < 0 {
		listed := "none"
		switch n := len(files); {
		case n == 1:
			listed = files[0].Name
		case n > 1:
			listed = fmt.Sprintf("%d files, %s to %s", n, files[0].Name, files[n-1].Name)
		}
		return Position{}, fmt.Errorf("%w: --file %s is not one of the server's binlogs (SHOW BINARY LOGS: %s)", ErrNotStreamable, file, listed)
	}
	if pos < 4 || pos > files[i].Size {
		return Position{}, fmt.Errorf("%w: --pos %d is outside binlog %s, whose events run from 4 to %d", ErrNotStreamable, pos, file, files[i].Size)
	}
	at := Position{File: file, Pos: uint32(pos)}
	if s.Flavor == "mariadb" {
		var set sql.NullString
		if err := s.DB.QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, ?)", file, pos).Scan(&set); err != nil {
			return Position{}, fmt.Errorf("reading the GTID position of binlog %s at %d: %w", file, pos, err)
		}
		if !set.Valid {
			return Position{}, fmt.Errorf("%w: --pos %d is not where an event of binlog %s ends (SHOW BINLOG EVENTS IN '%s' lists them)", ErrNotStreamable, pos, file, file)
		}
		at.GTIDSet = set.String
	} else if err := s.eventEndsAt(ctx, file, pos); err != nil {
		return Position{}, err
	}
	return at, s.Resumable(ctx, at)
}

// eventEndsAt returns ErrNotStreamable unless an event of binlog file begins at pos (or
// pos is its end): SHOW BINLOG EVENTS refuses to read from inside an event.
func (s *Server) eventEndsAt(ctx context.Context, file string, pos uint64) error {
	rows, err := s.DB.QueryContext(ctx, fmt.Sprintf("SHOW BINLOG EVENTS IN '%s' FROM %d LIMIT 1", strings.ReplaceAll(file, "'", "''"), pos))
	if sqlconn.ErrorNumber(err) == 1220 { // ER_ERROR_WHEN_EXECUTING_COMMAND: "Wrong offset or I/O error"
		return fmt.Errorf("%w: --pos %d is not where an event of binlog %s ends (%v)", ErrNotStreamable, pos, file, err)
	}
	if err != nil {
		return fmt.Errorf("reading binlog %s at %d: %w", file, pos, err)
	}
	return rows.Close()
}

// GTIDPosition checks that the server can stream after the transactions of set (a GTID
// set in the server's flavor) and returns the position a checkpoint keeps for it: the set
// alone, by which the daemon resumes. Every transaction of set must be one the server has
// written (MariaDB: in each replication domain, at or before @@gtid_binlog_pos; MySQL: in
// @@gtid_executed), and the binlogs must still hold what follows (Resumable).
func (s *Server) GTIDPosition(ctx context.Context, set string) (Position, error) {
	parsed, err := mysql.ParseGTIDSet(s.Flavor, set)
	if err != nil {
		return Position{}, fmt.Errorf("%w: --gtid %q is not a %s GTID set: %w", ErrNotStreamable, set, s.Flavor, err)
	}
	if set == "" {
		return Position{}, fmt.Errorf("%w: --gtid is empty", ErrNotStreamable)
	}
	at := Position{GTIDSet: parsed.String()}
	if s.Flavor == "mariadb" {
		now, err := s.gtidBinlogPos(ctx)
		if err != nil {
			return Position{}, err
		}
		written, err := mysql.ParseMariadbGTIDSet(now)
		if err != nil {
			return Position{}, fmt.Errorf("parsing the server's gtid_binlog_pos %q: %w", now, err)
		}
		if !written.Contain(parsed) {
			return Position{}, fmt.Errorf("%w: --gtid %s is not in the server's history: its binlog has reached %s (@@gtid_binlog_pos), "+
				"and a replication domain or a sequence number of the set is beyond that", ErrNotStreamable, at.GTIDSet, now)
		}
	} else {
		var subset bool
		if err := s.DB.QueryRowContext(ctx, "SELECT GTID_SUBSET(?, @@GLOBAL.gtid_executed)", at.GTIDSet).Scan(&subset); err != nil {
			return Position{}, fmt.Errorf("comparing --gtid %s with the server's @@gtid_executed: %w", at.GTIDSet, err)
		}
		if !subset {
			return Position{}, fmt.Errorf("%w: --gtid %s is not in the server's history: it has transactions the server has not executed (@@gtid_executed)",
				ErrNotStreamable, at.GTIDSet)
		}
	}
	return at, s.Resumable(ctx, at)
}

// Resumable returns nil when a stream can resume from pos, as the daemon judges it at its
// start (Retention): ErrNotInHistory for a position of another history, ErrNotStreamable
// saying what is gone when the binlogs no longer hold the changes after it.
func (s *Server) Resumable(ctx context.Context, pos Position) error {
	r, err := s.Retention(ctx, pos)
	if err != nil {
		return err
	}
	if gone := r.Gone("position", pos); gone != "" {
		return fmt.Errorf("%w: %s: the changes after it were purged", ErrNotStreamable, gone)
	}
	return nil
}

// Distance is how far a position is behind another, later one of the same server.
type Distance struct {
	// Bytes of binlog between them, by the sizes SHOW BINARY LOGS lists; -1 when the
	// earlier position's file is not listed (purged, another server's, or none).
	Bytes int64 `json:"bytes"`
	// Files is how many binlog files begin after the earlier position's; -1 as Bytes.
	Files int `json:"files"`
	// Transactions between them, by their GTIDs on MariaDB (per replication domain,
	// the difference of sequence numbers); -1 when that cannot be told (MySQL, or a
	// position without GTIDs).
	Transactions int64 `json:"transactions"`
}

// Behind measures how far pos is behind later (the server's current position, say).
func (s *Server) Behind(ctx context.Context, pos, later Position) (Distance, error) {
	d := Distance{Bytes: -1, Files: -1, Transactions: -1}
	files, err := s.BinlogFileSizes(ctx)
	if err != nil {
		return d, err
	}
	if i := slices.IndexFunc(files, func(f BinlogFile) bool { return f.Name == pos.File }); i >= 0 {
		d.Bytes, d.Files = -int64(pos.Pos), 0
		for j, f := range files[i:] {
			if j > 0 {
				d.Files++
			}
			if f.Name == later.File {
				d.Bytes += int64(later.Pos)
				break
			}
			d.Bytes += int64(f.Size)
		}
		d.Bytes = max(d.Bytes, 0)
	}
	if s.Flavor == "mariadb" && pos.GTIDSet != "" && later.GTIDSet != "" {
		from, err1 := mysql.ParseMariadbGTIDSet(pos.GTIDSet)
		to, err2 := mysql.ParseMariadbGTIDSet(later.GTIDSet)
		if err1 == nil && err2 == nil {
			d.Transactions = 0
			for domain, last := range to.(*mysql.MariadbGTIDSet).Sets {
				done := uint64(0)
				if g, ok := from.(*mysql.MariadbGTIDSet).Sets[domain]; ok {
					done = g.SequenceNumber
				}
				if last.SequenceNumber > done {
					d.Transactions += int64(last.SequenceNumber - done)
				}
			}
		}
	}
	return d, nil
}
