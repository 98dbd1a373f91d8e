package canal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// BinlogRetention is what the server's binlogs still hold of the changes after a position.
type BinlogRetention struct {
	// Files are the binlog files the server keeps, oldest first.
	Files []string
	// Held is true when every change after the position is still in Files, so that a
	// stream can resume there.
	Held bool
	// ByGTID is true when Held was decided by the position's GTID set, as a resume asks
	// for it (Stream.Run resumes by GTID whenever the position has a set), whatever the
	// names of the files that hold it: false when by the position's file name.
	ByGTID bool
	// Purged, when ByGTID, is what the binlogs no longer hold: on MariaDB the GTID
	// position the oldest binlog begins after (the last transaction of each replication
	// domain before it), on MySQL @@gtid_purged.
	Purged string
	// Older is how many of Files are older than the one the position's next change is
	// in: purges of the oldest file that many times lose nothing a resume needs. -1 when
	// it cannot be told: the position is not Held, or on MySQL with GTIDs, its file is
	// not listed (a promoted replica's files are named otherwise; MariaDB finds the file
	// by GTID).
	Older int
}

// Retention reports whether the server's binlogs still hold every change after pos.
//
// A position with a GTID set is checked by GTID, since a stream resumes from it by GTID:
// on MariaDB it is held when, for every replication domain, the oldest binlog begins at
// or before pos's sequence number in that domain (the file's Gtid_list event, as
// BINLOG_GTID_POS of its start reads it; a domain pos lacks must begin in the binlogs); on
// MySQL when @@gtid_purged is a subset of pos's set. A position's file name is then not
// looked at: the server may be a promoted replica, or its binlogs renamed, and hold the
// same transactions in files of other names. A position without a GTID set is held when
// its file is still listed.
//
// Older is found by the position's file name, except on MariaDB with a GTID set: there
// it is the last file that begins at or before the position (a binary search over the
// files' Gtid_list, one BINLOG_GTID_POS per step).
func (s *Server) Retention(ctx context.Context, pos Position) (BinlogRetention, error) {
	if pos.GTIDSet == "" {
		files, err := s.BinlogFiles(ctx)
		older := slices.Index(files, pos.File)
		return BinlogRetention{Files: files, Held: older >= 0, Older: older}, err
	}
	if s.Flavor == "mariadb" {
		return s.mariadbRetention(ctx, pos)
	}
	files, err := s.BinlogFiles(ctx)
	if err != nil {
		return BinlogRetention{}, err
	}
	r := BinlogRetention{Files: files, ByGTID: true, Older: -1}
	err = s.DB.QueryRowContext(ctx, "SELECT GTID_SUBSET(@@GLOBAL.gtid_purged, ?), @@GLOBAL.gtid_purged", pos.GTIDSet).Scan(&r.Held, &r.Purged)
	if err != nil {
		return r, fmt.Errorf("comparing the checkpoint's GTID set %s with the server's @@gtid_purged: %w", pos.GTIDSet, err)
	}
	r.Purged = strings.ReplaceAll(r.Purged, "\n", "") // MySQL breaks long sets into lines
	if r.Held {
		r.Older = slices.Index(files, pos.File)
	}
	return r, nil
}

// errBinlogGone is a listed binlog that BINLOG_GTID_POS cannot read: purged since it was
// listed, or missing from the data directory.
var errBinlogGone = errors.New("the server has no GTID position for it " +
	"(BINLOG_GTID_POS is NULL: is the file listed by SHOW BINARY LOGS but missing or unreadable in the data directory?)")

// mariadbBegins is the GTID position binlog file begins at (its Gtid_list event): the
// last transaction of each replication domain before it.
func (s *Server) mariadbBegins(ctx context.Context, file string) (string, mysql.GTIDSet, error) {
	var begins sql.NullString
	if err := s.DB.QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, 4)", file).Scan(&begins); err != nil {
		return "", nil, fmt.Errorf("reading the GTID position at the start of binlog %s: %w", file, err)
	}
	if !begins.Valid {
		return "", nil, fmt.Errorf("reading the GTID position at the start of binlog %s: %w", file, errBinlogGone)
	}
	set, err := mysql.ParseMariadbGTIDSet(begins.String)
	if err != nil {
		return "", nil, fmt.Errorf("parsing the GTID position %q at the start of binlog %s: %w", begins.String, file, err)
	}
	return begins.String, set, nil
}

// mariadbRetention is Retention by GTID on MariaDB.
func (s *Server) mariadbRetention(ctx context.Context, pos Position) (BinlogRetention, error) {
	want, err := mysql.ParseMariadbGTIDSet(pos.GTIDSet)
	if err != nil {
		return BinlogRetention{}, fmt.Errorf("parsing the checkpoint's GTID set %q: %w", pos.GTIDSet, err)
	}
	// A file may be purged between listing it and reading it: list again.
	for attempt := 0; ; attempt++ {
		files, err := s.BinlogFiles(ctx)
		if err != nil || len(files) == 0 {
			return BinlogRetention{Files: files, Held: true, ByGTID: true, Older: -1}, err
		}
		r, err := s.mariadbRetentionIn(ctx, want, files)
		if errors.Is(err, errBinlogGone) && attempt < 3 {
			continue
		}
		return r, err
	}
}

// mariadbRetentionIn is mariadbRetention over the listed files.
func (s *Server) mariadbRetentionIn(ctx context.Context, want mysql.GTIDSet, files []string) (BinlogRetention, error) {
	begins, purged, err := s.mariadbBegins(ctx, files[0])
	if err != nil {
		return BinlogRetention{}, err
	}
	r := BinlogRetention{Files: files, Held: want.Contain(purged), ByGTID: true, Purged: begins, Older: -1}
	if !r.Held {
		return r, nil
	}
	// Each file begins where the one before it ends, so the files that begin at or before
	// the position come first: find the last of them, which holds its next change.
	lo, hi := 0, len(files)-1 // files[lo] begins at or before the position
	for lo < hi {
		mid := (lo + hi + 1) / 2
		_, b, err := s.mariadbBegins(ctx, files[mid])
		if err != nil {
			return BinlogRetention{}, err
		}
		if want.Contain(b) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	r.Older = lo
	return r, nil
}
