package canal

import (
	"context"
	"database/sql"
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
func (s *Server) Retention(ctx context.Context, pos Position) (BinlogRetention, error) {
	if pos.GTIDSet == "" {
		files, err := s.BinlogFiles(ctx)
		return BinlogRetention{Files: files, Held: slices.Contains(files, pos.File)}, err
	}
	if s.Flavor == "mariadb" {
		return s.mariadbRetention(ctx, pos)
	}
	files, err := s.BinlogFiles(ctx)
	if err != nil {
		return BinlogRetention{}, err
	}
	r := BinlogRetention{Files: files, ByGTID: true}
	err = s.DB.QueryRowContext(ctx, "SELECT GTID_SUBSET(@@GLOBAL.gtid_purged, ?), @@GLOBAL.gtid_purged", pos.GTIDSet).Scan(&r.Held, &r.Purged)
	if err != nil {
		return r, fmt.Errorf("comparing the checkpoint's GTID set %s with the server's @@gtid_purged: %w", pos.GTIDSet, err)
	}
	r.Purged = strings.ReplaceAll(r.Purged, "\n", "") // MySQL breaks long sets into lines
	return r, nil
}

// mariadbRetention is Retention by GTID on MariaDB.
func (s *Server) mariadbRetention(ctx context.Context, pos Position) (BinlogRetention, error) {
	want, err := mysql.ParseMariadbGTIDSet(pos.GTIDSet)
	if err != nil {
		return BinlogRetention{}, fmt.Errorf("parsing the checkpoint's GTID set %q: %w", pos.GTIDSet, err)
	}
	// The oldest file may be purged between listing it and reading it (BINLOG_GTID_POS is
	// then NULL): list again.
	for attempt := 0; ; attempt++ {
		files, err := s.BinlogFiles(ctx)
		if err != nil || len(files) == 0 {
			return BinlogRetention{Files: files, Held: true, ByGTID: true}, err
		}
		var begins sql.NullString
		if err := s.DB.QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, 4)", files[0]).Scan(&begins); err != nil {
			return BinlogRetention{}, fmt.Errorf("reading the GTID position at the start of binlog %s: %w", files[0], err)
		}
		if !begins.Valid {
			if attempt < 3 {
				continue
			}
			return BinlogRetention{}, fmt.Errorf("reading the GTID position at the start of binlog %s: the server has no GTID position for it "+
				"(BINLOG_GTID_POS is NULL: is the file listed by SHOW BINARY LOGS but missing or unreadable in the data directory?)", files[0])
		}
		purged, err := mysql.ParseMariadbGTIDSet(begins.String)
		if err != nil {
			return BinlogRetention{}, fmt.Errorf("parsing the GTID position %q at the start of binlog %s: %w", begins.String, files[0], err)
		}
		return BinlogRetention{Files: files, Held: want.Contain(purged), ByGTID: true, Purged: begins.String}, nil
	}
}
