package canal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/stocksync/stocksync/internal/sqlconn"
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

// Gone says what the binlogs lack of the changes after pos (what names it: "checkpoint"),
// for a position Retention found not Held: the oldest binlog left, and by GTID what it
// begins after. "" when the changes are held, or nothing is listed.
func (r BinlogRetention) Gone(what string, pos Position) string {
	if len(r.Files) == 0 || r.Held {
		return ""
	}
	if r.ByGTID {
		return fmt.Sprintf("%s %s resumes after its GTIDs, and the oldest binlog the server still has is %s, which begins after GTID %s",
			what, pos, r.Files[0], r.Purged)
	}
	return fmt.Sprintf("%s %s is in %s, and the oldest binlog the server still has is %s", what, pos, pos.File, r.Files[0])
}

// ErrNotInHistory is a position to resume from (a checkpoint, an interrupted snapshot's)
// that is not a point of the server's binlog history: its file is newer than the newest
// the server has, or the server's binlog at its file and position is at other GTIDs. The
// server's binlogs were started again since it was saved (RESET MASTER, a restored backup,
// a rebuilt primary) or source.addr names another server, and resuming by its GTIDs would
// skip or repeat transactions of that history without a word.
var ErrNotInHistory = errors.New("not a position in the server's binlog history")

// notInHistory is ErrNotInHistory for pos, saying why and what to do.
func notInHistory(pos Position, why string) error {
	return fmt.Errorf("%w: %s. The server's binlogs were started again since %s was saved (RESET MASTER, a restored backup, a rebuilt primary), "+
		"or source.addr now names another server: the changes after it cannot be found, and resuming would skip or repeat transactions. "+
		"To go on from the server's current position: move the checkpoint there while the daemon is stopped (stocksync checkpoint set --current), start it (the rules are seeded again), "+
		"and resync the row rules whose consumers keep rows (docs/operations.md, The checkpoint: History rewound)", ErrNotInHistory, why, pos)
}

// beyondNewest returns ErrNotInHistory when pos's file is not among files (the server's
// binlogs, oldest first) and is newer than the newest of them: of its base name, with a
// higher number. A file of another base name is another server's (a promoted replica's,
// another log_basename) and is not judged by its name; one older than the oldest was
// purged, which Retention tells apart.
func beyondNewest(pos Position, files []string) error {
	if len(files) == 0 || slices.Contains(files, pos.File) {
		return nil
	}
	newestFile := files[len(files)-1]
	base, number, ok := binlogNumber(pos.File)
	newestBase, newest, newestOK := binlogNumber(newestFile)
	if !ok || !newestOK || base != newestBase || number <= newest {
		return nil
	}
	return notInHistory(pos, fmt.Sprintf("its file %s is newer than the server's newest binlog, %s", pos.File, newestFile))
}

// beyondEnd returns ErrNotInHistory when pos's file is listed (the server's binlogs with
// their sizes) but ends before pos: a file of that name was begun again (RESET MASTER) and
// has not grown as far. Only positions without GTIDs need it: with GTIDs on MariaDB,
// checkGTIDsAt finds no event ending there.
func beyondEnd(pos Position, listed []BinlogFile) error {
	i := slices.IndexFunc(listed, func(f BinlogFile) bool { return f.Name == pos.File })
	if i < 0 || uint64(pos.Pos) <= listed[i].Size {
		return nil
	}
	return notInHistory(pos, fmt.Sprintf("the server's binlog %s ends at %d, before its position", pos.File, listed[i].Size))
}

// eventBeginsAt returns ErrNotInHistory when the server's binlog pos.File, listed and
// at least pos.Pos long, has no event beginning at pos.Pos (SHOW BINLOG EVENTS refuses to
// read from there, 1220): a file of that name was begun again and has grown past the
// position since. Only positions without GTIDs need it (see beyondEnd). Any other error
// is left to the stream to meet: this check must not refuse a server that a user without
// the right to read its binlog events could stream from before.
func (s *Server) eventBeginsAt(ctx context.Context, pos Position) error {
	_, err := s.binlogEvents(ctx, pos.File, uint64(pos.Pos), 1)
	if sqlconn.ErrorNumber(err) == 1220 { // ER_ERROR_WHEN_EXECUTING_COMMAND: "Wrong offset or I/O error"
		return notInHistory(pos, fmt.Sprintf("no event of the server's binlog %s begins at %d", pos.File, pos.Pos))
	}
	return nil
}

// binlogNumber splits a binlog file name, binlog.000009, into its base name and number.
func binlogNumber(name string) (base string, number uint64, ok bool) {
	dot := strings.LastIndexByte(name, '.')
	if dot < 0 {
		return "", 0, false
	}
	number, err := strconv.ParseUint(name[dot+1:], 10, 64)
	return name[:dot], number, err == nil
}

// Retention reports whether the server's binlogs still hold every change after pos.
//
// A position with a GTID set is checked by GTID, since a stream resumes from it by GTID:
// on MariaDB it is held when, for every replication domain, the oldest binlog begins at
// or before pos's sequence number in that domain (the file's Gtid_list event, as
// BINLOG_GTID_POS of its start reads it; a domain pos lacks must begin in the binlogs); on
// MySQL when @@gtid_purged is a subset of pos's set. Whether it is held does not hang on
// its file name: the server may be a promoted replica, or its binlogs renamed, and hold
// the same transactions in files of other names. A position without a GTID set is held
// when its file is still listed.
//
// Older is found by the position's file name, except on MariaDB with a GTID set: there
// it is the last file that begins at or before the position (a binary search over the
// files' Gtid_list, one BINLOG_GTID_POS per step).
//
// A position that is not in the server's history is refused with ErrNotInHistory (a
// purge of the files before it is not that: those are judged as above): one whose file is
// not listed and is newer than the newest listed, of the same base name; without a GTID
// set, one whose file is listed but ends before the position or has no event beginning
// there; and, on MariaDB,
// one held by its GTID set whose file is listed but where BINLOG_GTID_POS(file, pos) is not
// the position's GTID in each of its replication domains (or not a point between events).
// Those file checks are made without a GTID set, and on MariaDB for a set the server wrote
// a transaction of (wroteAny); a position of another server's transactions (a failover to
// this one), on MySQL with GTIDs, or without a file name is judged by its GTID set alone.
func (s *Server) Retention(ctx context.Context, pos Position) (BinlogRetention, error) {
	if pos.GTIDSet == "" {
		listed, err := s.BinlogFileSizes(ctx)
		files := binlogNames(listed)
		if err == nil {
			err = beyondNewest(pos, files)
		}
		if err == nil {
			err = beyondEnd(pos, listed)
		}
		if err == nil && slices.Contains(files, pos.File) {
			err = s.eventBeginsAt(ctx, pos)
		}
		if err != nil {
			return BinlogRetention{Files: files, Older: -1}, err
		}
		older := slices.Index(files, pos.File)
		return BinlogRetention{Files: files, Held: older >= 0, Older: older}, nil
	}
	if s.Flavor == "mariadb" {
		return s.mariadbRetention(ctx, pos)
	}
	// MySQL: a failover's new primary may name its binlogs as the old one did, and which
	// server wrote the position's transactions is not told by its set: the GTIDs alone.
	files, err := s.BinlogFiles(ctx)
	if err != nil {
		return BinlogRetention{Files: files, Older: -1}, err
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

// PastPurgedSave is where a stream resumes instead of pos, a checkpoint that a store of
// ownTables (CheckpointStore.Tables) keeps, r the server's Retention of it, when the
// server's binlogs no longer hold pos
// only because the one transaction purged after it is that store's save of it: the
// position the oldest binlog begins at, from which the same changes follow. ok is false,
// and pos should be judged as Retention judges it, otherwise.
//
// A checkpoint is always followed in the binlog by the save that wrote it (a save is made
// after its position was read), so a daemon stopped cleanly, caught up, and then a
// rotation and purge of its binlog lose that save alone. The save cannot record the
// position after itself (that record would be one more write after it), and a stream
// cannot resume from a GTID position the binlogs no longer begin at (MariaDB ERROR 1236),
// hence this. It is judged so, on MariaDB by GTID: exactly one transaction lies between
// pos and where the oldest binlog begins (by sequence numbers, as Behind counts them);
// the save that wrote pos is one transaction after pos; and no transaction of ownTables
// alone is in the binlogs the server still has, read whole (ownSavesScanned bytes at
// most), so that save is not among them: it is the one purged. Anything else (a position
// without GTIDs, MySQL, more than one transaction purged, more binlog left than it reads)
// is not judged held here, and the daemon stops as for any purged binlog.
func (s *Server) PastPurgedSave(ctx context.Context, pos Position, r BinlogRetention, ownTables []string) (next Position, ok bool, err error) {
	if s.Flavor != "mariadb" || pos.GTIDSet == "" || len(ownTables) == 0 || r.Held || !r.ByGTID || len(r.Files) == 0 {
		return pos, false, nil
	}
	want, err := mysql.ParseMariadbGTIDSet(pos.GTIDSet)
	if err != nil {
		return pos, false, fmt.Errorf("parsing the checkpoint's GTID set %q: %w", pos.GTIDSet, err)
	}
	begins, err := mysql.ParseMariadbGTIDSet(r.Purged)
	if err != nil {
		return pos, false, fmt.Errorf("parsing the GTID position %q the oldest binlog begins at: %w", r.Purged, err)
	}
	if transactionsBetween(want.(*mysql.MariadbGTIDSet), begins.(*mysql.MariadbGTIDSet)) != 1 {
		return pos, false, nil
	}
	files, err := s.BinlogFileSizes(ctx)
	if err != nil || len(files) == 0 || files[0].Name != r.Files[0] {
		return pos, false, err // purged again meanwhile: judged at the next look
	}
	var left uint64
	for _, f := range files {
		left += f.Size
	}
	if left > ownSavesScanned {
		return pos, false, nil
	}
	for _, f := range files {
		saves, complete, err := s.writesOnlyTo(ctx, f.Name, 4, f.Size, ownTables)
		if err != nil || !complete || saves > 0 {
			return pos, false, err
		}
	}
	return Position{File: files[0].Name, Pos: 4, GTIDSet: r.Purged}, true, nil
}

// errBinlogGone is a listed binlog that BINLOG_GTID_POS cannot read: purged since it was
// listed, or missing from the data directory.
var errBinlogGone = errors.New("the server has no GTID position for it " +
	"(BINLOG_GTID_POS is NULL: is the file listed by SHOW BINARY LOGS but missing or unreadable in the data directory?)")

// mariadbBegins is the GTID position binlog file begins at (its Gtid_list event): the
// last transaction of each replication domain before it.
func (s *Server) mariadbBegins(ctx context.Context, file string) (string, mysql.GTIDSet, error) {
	begins, ok, err := s.gtidPositionAt(ctx, file, 4)
	if err != nil {
		return "", nil, err
	}
	if !ok {
		return "", nil, fmt.Errorf("reading the GTID position at the start of binlog %s: %w", file, errBinlogGone)
	}
	set, err := mysql.ParseMariadbGTIDSet(begins)
	if err != nil {
		return "", nil, fmt.Errorf("parsing the GTID position %q at the start of binlog %s: %w", begins, file, err)
	}
	return begins, set, nil
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
		own, err := s.wroteAny(ctx, want.(*mysql.MariadbGTIDSet))
		if err != nil {
			return BinlogRetention{Files: files, Held: true, ByGTID: true, Older: -1}, err
		}
		if !own {
			// Written by another server (the primary before a failover to this one,
			// whose binlogs may be named as its were): its file name and position say
			// nothing of this server's files, and the GTIDs alone place it.
			pos.File = ""
		}
		if err := beyondNewest(pos, files); err != nil {
			return BinlogRetention{Files: files, ByGTID: true, Older: -1}, err
		}
		r, err := s.mariadbRetentionIn(ctx, pos, want, files)
		if errors.Is(err, errBinlogGone) && attempt < 3 {
			continue
		}
		return r, err
	}
}

// wroteAny reports whether the server wrote one of set's last transactions itself (a
// GTID with its @@server_id): only then are a position's file name and offset its own
// files' (a history started again by RESET MASTER is told by them).
func (s *Server) wroteAny(ctx context.Context, set *mysql.MariadbGTIDSet) (bool, error) {
	for _, gtid := range set.Sets {
		if gtid.ServerID == s.ID {
			return true, nil
		}
	}
	return false, nil
}

// mariadbRetentionIn is mariadbRetention of pos, whose GTID set is want, over the listed
// files.
func (s *Server) mariadbRetentionIn(ctx context.Context, pos Position, want mysql.GTIDSet, files []string) (BinlogRetention, error) {
	begins, purged, err := s.mariadbBegins(ctx, files[0])
	if err != nil {
		return BinlogRetention{}, err
	}
	r := BinlogRetention{Files: files, Held: want.Contain(purged), ByGTID: true, Purged: begins, Older: -1}
	if !r.Held {
		return r, nil
	}
	if slices.Contains(files, pos.File) {
		if err := s.checkGTIDsAt(ctx, pos, want.(*mysql.MariadbGTIDSet)); err != nil {
			return BinlogRetention{Files: files, ByGTID: true, Purged: begins, Older: -1}, err
		}
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

// checkGTIDsAt returns ErrNotInHistory unless the server's binlog, at pos's file (listed)
// and position, follows pos's GTID in each replication domain pos has: BINLOG_GTID_POS,
// which reads the file up to the position. A later position of a file in which one was
// found so, with GTIDs at or after that one's, is taken to be of the same history without
// reading the file again while s is open: the checks a running daemon repeats each minute
// then read each file about once, early, rather than ever more of it.
func (s *Server) checkGTIDsAt(ctx context.Context, pos Position, want *mysql.MariadbGTIDSet) error {
	s.historyMu.Lock()
	found, checked := s.foundInHistory[pos.File]
	s.historyMu.Unlock()
	if checked && pos.Pos >= found.Pos {
		if foundSet, err := mysql.ParseMariadbGTIDSet(found.GTIDSet); err == nil && want.Contain(foundSet) {
			return nil
		}
	}
	at, ok, err := s.gtidPositionAt(ctx, pos.File, pos.Pos)
	if err != nil {
		return err
	}
	if !ok {
		// Not a point between two of the file's events, or the file went since it was
		// listed (errBinlogGone: listed again).
		if _, _, err := s.mariadbBegins(ctx, pos.File); err != nil {
			return err
		}
		return notInHistory(pos, fmt.Sprintf("the server's binlog %s has no event that ends at %d", pos.File, pos.Pos))
	}
	got, err := mysql.ParseMariadbGTIDSet(at)
	if err != nil {
		return fmt.Errorf("parsing the GTID position %q of binlog %s at %d: %w", at, pos.File, pos.Pos, err)
	}
	gotSets := got.(*mysql.MariadbGTIDSet).Sets
	for domain, gtid := range want.Sets {
		if have, ok := gotSets[domain]; !ok || *have != *gtid {
			return notInHistory(pos, fmt.Sprintf("the server's binlog %s at %d follows GTID %s, not %s", pos.File, pos.Pos, at, pos.GTIDSet))
		}
	}
	s.historyMu.Lock()
	defer s.historyMu.Unlock()
	if s.foundInHistory == nil {
		s.foundInHistory = map[string]Position{}
	}
	s.foundInHistory[pos.File] = pos
	return nil
}
