package canal

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
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
// LOGS, pos within it (4 up to its size) and where a transaction begins, or an event that
// is part of none (transactionBeginsAt), and the binlogs must hold what follows
// (Resumable).
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
		set, ok, err := s.gtidPositionAt(ctx, file, at.Pos)
		if err != nil {
			return Position{}, err
		}
		if !ok {
			return Position{}, fmt.Errorf("%w: --pos %d is not where an event of binlog %s ends (SHOW BINLOG EVENTS IN '%s' lists them)", ErrNotStreamable, pos, file, file)
		}
		at.GTIDSet = set
	}
	if err := s.transactionBeginsAt(ctx, file, pos); err != nil {
		return Position{}, err
	}
	return at, s.Resumable(ctx, at)
}

// standaloneEvents are the binlog event types (SHOW BINLOG EVENTS' Event_type) that begin
// a transaction or belong to none: a stream may begin at one of them.
var standaloneEvents = []string{"Gtid", "Gtid_list", "Binlog_checkpoint", "Format_desc", "Rotate", "Stop", "Start_encryption",
	"Anonymous_Gtid", "Previous_gtids"}

// transactionBeginsAt returns ErrNotStreamable unless pos of binlog file is where an
// event begins (SHOW BINLOG EVENTS refuses to read from inside one) that begins a
// transaction or stands alone, or is the file's end. Inside a transaction the stream would
// begin in its middle (MariaDB: resume after it, as BINLOG_GTID_POS there names it); the
// error names where the next transaction begins, when it is near.
func (s *Server) transactionBeginsAt(ctx context.Context, file string, pos uint64) error {
	events, err := s.binlogEvents(ctx, file, pos, 1)
	if sqlconn.ErrorNumber(err) == 1220 { // ER_ERROR_WHEN_EXECUTING_COMMAND: "Wrong offset or I/O error"
		return fmt.Errorf("%w: --pos %d is not where an event of binlog %s ends (%v)", ErrNotStreamable, pos, file, err)
	}
	if err != nil || len(events) == 0 || slices.Contains(standaloneEvents, events[0]["event_type"]) {
		return err
	}
	next := ""
	if later, err := s.binlogEvents(ctx, file, pos, 1000); err == nil {
		if i := slices.IndexFunc(later, func(e map[string]string) bool { return slices.Contains(standaloneEvents, e["event_type"]) }); i >= 0 {
			next = fmt.Sprintf("; the next one begins at --pos %s", later[i]["pos"])
		}
	}
	return fmt.Errorf("%w: --pos %d of binlog %s is inside a transaction (its event there is %s): give the position where a transaction "+
		"begins (its Gtid event; SHOW BINLOG EVENTS IN '%s' lists them)%s", ErrNotStreamable, pos, file, events[0]["event_type"], file, next)
}

// binlogEvents are up to limit events of binlog file from pos on (SHOW BINLOG EVENTS),
// each by its lower-cased column names.
func (s *Server) binlogEvents(ctx context.Context, file string, pos uint64, limit int) ([]map[string]string, error) {
	rows, err := s.DB.QueryContext(ctx, fmt.Sprintf("SHOW BINLOG EVENTS IN '%s' FROM %d LIMIT %d", strings.ReplaceAll(file, "'", "''"), pos, limit))
	if err != nil {
		if sqlconn.ErrorNumber(err) == 1220 {
			return nil, err
		}
		return nil, fmt.Errorf("reading binlog %s at %d: %w", file, pos, err)
	}
	defer rows.Close()
	var events []map[string]string
	for rows.Next() {
		e, err := scanByColumn(rows)
		if err != nil {
			return nil, fmt.Errorf("reading binlog %s at %d: %w", file, pos, err)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading binlog %s at %d: %w", file, pos, err)
	}
	return events, nil
}

// GTIDPosition checks that the server can stream after the transactions of set (a GTID
// set in the server's flavor) and returns the position a checkpoint keeps for it: the set
// alone, by which the daemon resumes. Every transaction of set must be one the server has
// written (MariaDB: wroteGTIDs; MySQL: in @@gtid_executed), and the binlogs must still
// hold what follows (Resumable).
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
		if err := s.wroteGTIDs(ctx, parsed.(*mysql.MariadbGTIDSet)); err != nil {
			return Position{}, err
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
	// earlier position's file is not listed (purged, another server's, or none), or
	// when the later one comes before it there (a file begun again by RESET MASTER).
	Bytes int64 `json:"bytes"`
	// Files is how many binlog files begin after the earlier position's; -1 as Bytes.
	Files int `json:"files"`
	// Transactions between them, by their GTIDs on MariaDB (per replication domain,
	// the difference of sequence numbers); -1 when that cannot be told (MySQL, or a
	// position without GTIDs).
	Transactions int64 `json:"transactions"`
	// CheckpointSaves is how many of them write only the checkpoint's own tables: each
	// save of a checkpoint is a transaction after the position it saves, so a daemon
	// stopped when caught up is one behind by the count alone. Counted when they are few
	// and in one file (ownSavesScanned bytes at most), 0 otherwise.
	CheckpointSaves int64 `json:"checkpoint_saves"`
}

// ownSavesScanned bounds the binlog Behind reads to count checkpoint saves.
const ownSavesScanned = 64 << 10

// Behind measures how far pos is behind later (the server's current position, say), and
// which of the transactions between them write only the tables ownTables names (the
// checkpoint store's Tables; none, nil).
func (s *Server) Behind(ctx context.Context, pos, later Position, ownTables []string) (Distance, error) {
	d := Distance{Bytes: -1, Files: -1, Transactions: -1}
	files, err := s.BinlogFileSizes(ctx)
	if err != nil {
		return d, err
	}
	if i := slices.IndexFunc(files, func(f BinlogFile) bool { return f.Name == pos.File }); i >= 0 {
		d.Bytes, d.Files = -int64(pos.Pos), 0
		reached := false
		for j, f := range files[i:] {
			if j > 0 {
				d.Files++
			}
			if f.Name == later.File {
				d.Bytes += int64(later.Pos)
				reached = true
				break
			}
			d.Bytes += int64(f.Size)
		}
		if !reached || d.Bytes < 0 {
			// later is before pos: not one history (pos's file was begun again, by
			// RESET MASTER), and no distance at all rather than "0 bytes".
			d.Bytes, d.Files = -1, -1
		}
	}
	if s.Flavor == "mariadb" && pos.GTIDSet != "" && later.GTIDSet != "" {
		from, err1 := mysql.ParseMariadbGTIDSet(pos.GTIDSet)
		to, err2 := mysql.ParseMariadbGTIDSet(later.GTIDSet)
		if err1 == nil && err2 == nil {
			d.Transactions = transactionsBetween(from.(*mysql.MariadbGTIDSet), to.(*mysql.MariadbGTIDSet))
		}
	}
	if len(ownTables) > 0 && pos.File != "" && pos.File == later.File && later.Pos > pos.Pos && later.Pos-pos.Pos <= ownSavesScanned {
		n, _, err := s.writesOnlyTo(ctx, pos.File, uint64(pos.Pos), uint64(later.Pos), ownTables)
		if err != nil {
			return d, err
		}
		d.CheckpointSaves = n
	}
	return d, nil
}

// transactionsBetween is how many transactions of MariaDB's binlog are after the GTID
// position from and up to the later one, to: in each replication domain, the difference
// of sequence numbers (a domain from lacks counts from 0).
func transactionsBetween(from, to *mysql.MariadbGTIDSet) int64 {
	var n int64
	for domain, last := range to.Sets {
		done := uint64(0)
		if g, ok := from.Sets[domain]; ok {
			done = g.SequenceNumber
		}
		if last.SequenceNumber > done {
			n += int64(last.SequenceNumber - done)
		}
	}
	return n
}

// writesOnlyToScanned is how many events writesOnlyTo reads at most.
const writesOnlyToScanned = 2000

// writesOnlyTo counts the transactions of binlog file between from and to whose row
// events are all of the tables (schema.table) named (by their Table_map events);
// complete is false when it stopped short of to (writesOnlyToScanned events read).
func (s *Server) writesOnlyTo(ctx context.Context, file string, from, to uint64, tables []string) (n int64, complete bool, err error) {
	events, err := s.binlogEvents(ctx, file, from, writesOnlyToScanned)
	if err != nil {
		return 0, false, err
	}
	complete = len(events) < writesOnlyToScanned
	mapped, others := 0, 0
	for _, e := range events {
		if at, _ := strconv.ParseUint(e["pos"], 10, 64); at >= to {
			complete = true
			break
		}
		switch e["event_type"] {
		case "Gtid", "Anonymous_Gtid":
			mapped, others = 0, 0
		case "Table_map":
			// Info: "table_id: 35 (stocksync.checkpoint)"
			_, name, _ := strings.Cut(e["info"], "(")
			mapped++
			if !slices.Contains(tables, strings.TrimSuffix(name, ")")) {
				others++
			}
		case "Xid", "Query":
			if e["event_type"] == "Query" && e["info"] != "COMMIT" {
				continue
			}
			if mapped > 0 && others == 0 {
				n++
			}
			mapped, others = 0, 0
		}
	}
	return n, complete, nil
}

// wroteGTIDs returns ErrNotStreamable unless each GTID of set (one per replication domain)
// is in the server's history: @@gtid_binlog_state lists the last GTID of each (domain,
// server_id) pair the binlogs have had, purged ones included, and @@gtid_slave_pos the
// last one a replica applied in each domain (a replica promoted without log_slave_updates
// never wrote its old primary's transactions to its binlogs, and streams from them all
// the same). The GTID's pair must be in one of them, at or after its sequence number. A
// GTID of a server_id that never wrote in that domain would pass a comparison of domain
// and sequence number alone, and the stream would fail with ERROR 1236.
func (s *Server) wroteGTIDs(ctx context.Context, set *mysql.MariadbGTIDSet) error {
	var state, applied string
	if err := s.DB.QueryRowContext(ctx, "SELECT @@gtid_binlog_state, @@gtid_slave_pos").Scan(&state, &applied); err != nil {
		return fmt.Errorf("reading the server's gtid_binlog_state and gtid_slave_pos: %w", err)
	}
	return gtidsInHistory(set, state, applied)
}

// gtidsInHistory is wroteGTIDs' judgement of set, given the server's @@gtid_binlog_state
// and @@gtid_slave_pos.
func gtidsInHistory(set *mysql.MariadbGTIDSet, state, applied string) error {
	type pair struct{ domain, server uint32 }
	last := map[pair]uint64{}
	for _, list := range []struct{ name, value string }{{"gtid_binlog_state", state}, {"gtid_slave_pos", applied}} {
		for _, g := range strings.Split(list.value, ",") {
			if g = strings.TrimSpace(g); g == "" {
				continue
			}
			gtid, err := mysql.ParseMariadbGTID(g)
			if err != nil {
				return fmt.Errorf("parsing the server's %s %q: %w", list.name, list.value, err)
			}
			k := pair{gtid.DomainID, gtid.ServerID}
			last[k] = max(last[k], gtid.SequenceNumber)
		}
	}
	if applied != "" {
		state += "; @@gtid_slave_pos, the last applied as a replica: " + applied
	}
	domains := slices.Sorted(maps.Keys(set.Sets))
	for _, d := range domains {
		g := set.Sets[d]
		seq, ok := last[pair{g.DomainID, g.ServerID}]
		switch {
		case !ok:
			return fmt.Errorf("%w: --gtid %s is not in the server's history: no transaction of server_id %d in replication domain %d is in its binlogs or was applied by it as a replica "+
				"(@@gtid_binlog_state, the last GTID of each domain and server_id: %s)", ErrNotStreamable, g, g.ServerID, g.DomainID, orNothing(state))
		case g.SequenceNumber > seq:
			return fmt.Errorf("%w: --gtid %s is not in the server's history: the last transaction of server_id %d in replication domain %d is %d-%d-%d "+
				"(@@gtid_binlog_state: %s)", ErrNotStreamable, g, g.ServerID, g.DomainID, g.DomainID, g.ServerID, seq, orNothing(state))
		}
	}
	return nil
}

// orNothing is s, or "empty" for "".
func orNothing(s string) string {
	if s == "" {
		return "empty"
	}
	return s
}
