package canal

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"go.uber.org/zap"
)

// TableFilter says which tables' row changes a stream hands on; the rest are skipped
// without being converted.
type TableFilter interface {
	Matches(schema, table string) bool
	// StatefulTables reports whether an aggregate or transition rule reads the table:
	// DDL that empties such a table, renames it away or renames another onto its name
	// goes to a TableEmptier or TableReseeder handler, or stops the stream
	// (ErrStatefulTableEmptied).
	StatefulTables(schema, table string) bool
	// StatefulSchema reports whether an aggregate or transition rule may read a table of
	// the schema (a database): DROP DATABASE of it goes to a TableReseeder handler, or
	// stops the stream (ErrStatefulTableEmptied).
	StatefulSchema(schema string) bool
	// StatefulAlone reports whether every aggregate or transition rule that reads the
	// table reads no other: DDL that empties it (TRUNCATE, DROP TABLE) is then handed to
	// a TableEmptier handler instead of stopping the stream.
	StatefulAlone(schema, table string) bool
	// PatternRule names a rule that matches the table through a glob that is a pattern
	// (of schemas, of tables or both), an aggregate or transition one first (stateful true); "" when
	// none does. The stream checks that source.user may read such a table as it first
	// meets it (ErrUnreadableTable); UnreadableTables, at start, cannot.
	PatternRule(schema, table string) (rule string, stateful bool)
}

// ErrUnreadableTable stops a stream at a row event of a table that an aggregate or
// transition rule folds through a glob that is a pattern, and that
// source.user may not SELECT: information_schema hid it from the rule's seed, so the
// rule's totals lack its rows, and folding its changes onto them would publish wrong
// totals for good. A restart does not mend it: after the GRANT the rules must be seeded
// again.
var ErrUnreadableTable = errors.New("a table an aggregate or transition rule folds may not be read")

// ErrPartialRowImage is a row change of a matched table whose row image lacks columns:
// written by a session whose binlog_row_image was MINIMAL or NOBLOB (its own setting, or
// the server's set since the check at start), which that check cannot see. The values
// left out are unknown, not NULL, so the stream stops there rather than publish them as
// NULL (a key {"id":null}, a group of null).
var ErrPartialRowImage = errors.New("a partial row image of a matched table")

// Stream reads one server's binlog as a replica and hands whole transactions to a
// Handler. One Stream serves one Run at a time.
type Stream struct {
	cfg    Config
	server *Server
	filter atomic.Pointer[filterBox]
	log    *zap.Logger

	open      atomic.Bool
	opened    atomic.Bool  // the stream was open at least once
	lastTs    atomic.Int64 // seconds, timestamp of the last event from the server
	lastEvent atomic.Int64 // unix nanos when the last event arrived here
	// lastRead is unix nanos when the last event, heartbeats included, was read;
	// caughtUpAt when the last server heartbeat was read promptly (caughtUpGap).
	lastRead   atomic.Int64
	caughtUpAt atomic.Int64
	undecoded  atomic.Uint64
}

type filterBox struct{ TableFilter }

// NewStream prepares a stream; server answers the questions the binlog cannot.
func NewStream(cfg Config, server *Server, filter TableFilter, log *zap.Logger) *Stream {
	s := &Stream{cfg: cfg, server: server, log: log}
	s.SetFilter(filter)
	return s
}

// SetFilter replaces the table filter; it applies from the next table map event on.
func (s *Stream) SetFilter(f TableFilter) { s.filter.Store(&filterBox{f}) }

// Undecoded counts the rows events left undecoded because no rule reads their table.
func (s *Stream) Undecoded() uint64 { return s.undecoded.Load() }

// Open reports whether the binlog connection is established and streaming.
func (s *Stream) Open() bool { return s.open.Load() }

// Opened reports whether the stream was ever open (it may have closed since).
func (s *Stream) Opened() bool { return s.opened.Load() }

// Reading reports whether the stream reads: it is open and read an event within the last
// `within` (a heartbeat at least, about every second while the server has nothing new).
// Not while it waits for its handler (say, a seeding snapshot) or for a server that does
// not answer.
func (s *Stream) Reading(within time.Duration) bool {
	return s.open.Load() && time.Since(s.LastRead()) < within
}

// LastRead is when the stream last read an event, heartbeats included (the zero time
// before any).
func (s *Stream) LastRead() time.Time {
	if n := s.lastRead.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Lag is how far the last event read is behind the server's clock, or 0 before any.
// Once a server heartbeat (sent after a second with nothing new) was read promptly after
// it, or no event came for a while, the stream is caught up and the lag is 0.
func (s *Stream) Lag() time.Duration {
	return lagAt(s.lastTs.Load(), s.lastEvent.Load(), s.caughtUpAt.Load(), time.Now())
}

// caughtUpGap is how soon after the event before it a server heartbeat must be read to
// say the stream is caught up: one read later, after the reader stalled (its handler
// busy, say with a seed), was sent before the stall, and changes may wait behind it.
const caughtUpGap = 2 * heartbeatPeriod

// readPromptly reports whether an event read at now came within caughtUpGap of the read
// before it (Unix nanos).
func readPromptly(now, previous int64) bool { return now-previous < int64(caughtUpGap) }

// heartbeatPeriod is how long the server waits with nothing to send before it sends a
// heartbeat.
const heartbeatPeriod = time.Second

// lagAt is Lag at now, from the timestamp (Unix seconds) of the last event and when it
// arrived, and when a server heartbeat last said the stream was caught up (Unix nanos).
func lagAt(ts, eventAt, caughtUpAt int64, now time.Time) time.Duration {
	if ts == 0 || caughtUpAt > eventAt || now.Sub(time.Unix(0, eventAt)) > 5*time.Second {
		return 0
	}
	return max(0, now.Sub(time.Unix(ts, 0)))
}

// tableState is what a stream knows of one table id: its shape and how to convert values.
type tableState struct {
	name    TableName // as the table map event names it
	table   *Table
	matched bool
	filter  *filterBox
	// Per column: the labels of ENUM and SET columns (in UTF-8), and how a string
	// column's bytes become the text SQL shows (nil: they are that text already).
	enums, sets [][]string
	text        []columnText
	// binaryLen is n for a BINARY(n) column, whose trailing zero bytes the binlog drops
	// (and for MariaDB's UUID, INET4 and INET6, stored as one).
	binaryLen []uint16
	decimals  []uint8 // fractional second digits of DATETIME/TIMESTAMP columns
	// uintBits is, for each unsigned integer column, its width (8, 16, 24, 32, 64): rows
	// may have been decoded as signed (rowsDecoder), and asUnsigned puts that right.
	uintBits []uint8
	colCount int
	// plan decodes the table's rows events when its column types allow (rowsplan.go).
	plan rowsPlan
	// versioned is set for a MariaDB table WITH SYSTEM VERSIONING: its rows events mix
	// current rows and history rows (versioned.go). table is the binlog's shape, which
	// decoding needs; versioned.table is the one published.
	versioned *versionedTable
}

// txnState is the transaction being read.
type txnState struct {
	open bool
	src  Source
	// continues is set for a group that goes on past a DDL statement, to its Xid or
	// COMMIT: a CREATE TABLE … SELECT (MariaDB: a GTID event without FL_STANDALONE;
	// MySQL: the statement ends in START TRANSACTION), whose rows follow the statement.
	continues bool
	// xa is set in an XA transaction's first group (XA START … XA END, XA PREPARE): its
	// rows of matched tables are held, since the binlog has them before it is known
	// whether the transaction commits; xid is its id as the XA statements write it.
	xa   bool
	xid  string
	held []*RowChange
	// ddl is set once a continuing group passed its DDL statement.
	ddl bool
	// alter is the phase of a two-phase ALTER whose group this is (MariaDB's
	// binlog_alter_two_phase).
	alter alterPhase
}

// Run streams from start until ctx is done (it then returns nil) or an error occurs.
// Each transaction's row changes go to h.Row and its end to h.Commit, in binlog order.
func (s *Stream) Run(ctx context.Context, start Position, h Handler) error {
	decoder := newRowsDecoder(&s.filter, &s.undecoded)
	syncer, err := s.newSyncer(decoder.decode)
	if err != nil {
		return err
	}
	defer syncer.Close()
	defer s.open.Store(false)
	byGTID := start.GTIDSet != ""
	if !byGTID && s.server.Flavor == "mariadb" {
		// A position without its GTID set (`checkpoint set --file … --pos 4` at the head
		// of the binlog history, where the set is empty) streams by GTID from the set
		// there too: read by file, the commits would carry none, and the checkpoint could
		// never resume on another server again.
		set, ok, err := s.server.gtidPositionAt(ctx, start.File, start.Pos)
		if err != nil {
			s.log.Warn("streaming by file and position, without GTIDs", zap.Stringer("from", start), zap.Error(err))
		}
		start.GTIDSet, byGTID = set, ok
	}
	streamer, err := s.startSync(syncer, start, byGTID)
	if err != nil {
		return err
	}
	s.log.Info("binlog stream started", zap.Stringer("from", start), zap.String("flavor", s.server.Flavor))

	r := s.newReader(h, decoder, start)
	for {
		ev, err := streamer.GetEvent(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading binlog after %s: %w%s", r.lastCommit(), err, s.replicationHint(err, start))
		}
		now := time.Now().UnixNano()
		if _, beat := ev.Event.(*replication.HeartbeatEvent); beat && readPromptly(now, s.lastRead.Load()) {
			s.caughtUpAt.Store(now)
		}
		s.lastRead.Store(now)
		if !s.open.Load() {
			s.open.Store(true)
			s.opened.Store(true)
		}
		if ev.Header.Timestamp != 0 && ev.Header.Flags&replication.LOG_EVENT_ARTIFICIAL_F == 0 {
			s.lastTs.Store(int64(ev.Header.Timestamp))
			s.lastEvent.Store(now)
		}
		if err := r.handle(ctx, ev); err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil
			}
			return err
		}
	}
}

// CheckStreamable opens a binlog stream at the server's current position and closes it
// after its first event, so that what would refuse the stream (a user without REPLICATION
// SLAVE, a server id another replica uses) is said before long work that streaming
// follows, such as a snapshot, rather than after it.
func (s *Stream) CheckStreamable(ctx context.Context) error {
	pos, err := s.server.CurrentPosition(ctx)
	if err != nil {
		return err
	}
	syncer, err := s.newSyncer(nil)
	if err != nil {
		return err
	}
	defer syncer.Close()
	streamer, err := s.startSync(syncer, Position{File: pos.File, Pos: pos.Pos}, false)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := streamer.GetEvent(ctx); err != nil {
		return fmt.Errorf("checking that the binlog can be streamed from %s: %w%s", pos, err, s.replicationHint(err, pos))
	}
	return nil
}

// newSyncer is a replica connection to the source, not yet streaming; decode (nil: go-mysql's
// own) decodes rows events.
func (s *Stream) newSyncer(decode func(*replication.RowsEvent, []byte) error) (*replication.BinlogSyncer, error) {
	// A Unix socket (a path, as source.addr may be) is the host with no port: go-mysql
	// dials a path over "unix".
	host, port := s.cfg.Addr, uint64(0)
	if !strings.HasPrefix(s.cfg.Addr, "/") {
		h, portStr, err := net.SplitHostPort(s.cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("parsing source.addr %q: %w", s.cfg.Addr, err)
		}
		if port, err = strconv.ParseUint(portStr, 10, 16); err != nil {
			return nil, fmt.Errorf("parsing source.addr port %q: %w", portStr, err)
		}
		host = h
	}
	return replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID:                s.cfg.ServerID,
		Flavor:                  s.server.Flavor,
		Host:                    host,
		Port:                    uint16(port),
		User:                    s.cfg.User,
		Password:                s.cfg.Password,
		TLSConfig:               s.cfg.TLS,
		Localhost:               s.cfg.replicaHost(), // SHOW SLAVE HOSTS' Host: CheckServerID
		TimestampStringLocation: time.UTC,
		ParseTime:               true, // time.Time, formatted here: go-mysql's own string formatting is slow
		HeartbeatPeriod:         heartbeatPeriod,
		ReadTimeout:             10 * time.Second,
		// A lost connection ends the stream, and the pipeline restarts from its
		// checkpoint. go-mysql's own reconnect resumes from the GTID set before the last
		// transaction it read, which the server sends again: the reader would hand it on
		// twice, and an aggregate would count it twice.
		DisableRetrySync: true,
		// Parsed events read ahead of the handler. A count, not bytes: a rows event of a
		// big transaction is ~8 KB raw and several times that decoded, so 10240 of them
		// held ~170 MB live during a 1,000,000-row transaction (RSS 376 MB); 512 keep
		// the reader as far ahead in practice (same catch-up time) in ~20 MB.
		EventCacheCount:     512,
		RowsEventDecodeFunc: decode,
		Logger:              quietSlog(),
	}), nil
}

// startSync asks the server for its binlog from start: by its GTID set (empty at the
// head of MariaDB's binlog history), or else by file and position.
func (s *Stream) startSync(syncer *replication.BinlogSyncer, start Position, byGTID bool) (*replication.BinlogStreamer, error) {
	if byGTID {
		set, err := mysql.ParseGTIDSet(s.server.Flavor, start.GTIDSet)
		if err != nil {
			return nil, fmt.Errorf("parsing checkpoint GTID set %q: %w", start.GTIDSet, err)
		}
		streamer, err := syncer.StartSyncGTID(set)
		if err != nil {
			return nil, fmt.Errorf("starting binlog stream at GTID %s: %w%s", start.GTIDSet, err, s.replicationHint(err, start))
		}
		return streamer, nil
	}
	streamer, err := syncer.StartSync(mysql.Position{Name: start.File, Pos: start.Pos})
	if err != nil {
		return nil, fmt.Errorf("starting binlog stream at %s: %w%s", start, err, s.replicationHint(err, start))
	}
	return streamer, nil
}

// replicationHint says what a server error of the binlog stream that started at from most
// likely means to the DBA, where its own words mislead: "" when it has nothing to add.
func (s *Stream) replicationHint(err error, from Position) string {
	var serverErr *mysql.MyError
	if !errors.As(err, &serverErr) {
		return ""
	}
	switch {
	case serverErr.Code == mysql.ER_ACCESS_DENIED_ERROR || serverErr.Code == mysql.ER_SPECIFIC_ACCESS_DENIED_ERROR:
		// The SQL connection with the same password worked: it is the privilege.
		return fmt.Sprintf(" (the user %s connected with this password to check the server, so it most likely lacks REPLICATION SLAVE: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO it)", s.cfg.User)
	case serverErr.Code == 4052 || strings.Contains(serverErr.Message, "same server_uuid/server_id"):
		return fmt.Sprintf(" (another replica, or another stocksync daemon, is connected with server id %d%s: give each its own source.server_id; two with one id keep disconnecting each other)",
			s.cfg.ServerID, s.registeredWith(s.cfg.ServerID))
	case serverErr.Code == mysql.ER_MASTER_FATAL_ERROR_READING_BINLOG && startNotHeld(serverErr.Message):
		return fmt.Sprintf(" (the server's binlogs do not hold what follows %s, where the stream started: they were purged past it, "+
			"or they were started again since it was saved (RESET MASTER, a restored backup, a rebuilt primary), or source.addr now names another server; "+
			"docs/operations.md, The checkpoint: Purged binlog, History rewound)", from)
	}
	return ""
}

// registeredWith names the replicas the server lists (SHOW SLAVE HOSTS) with server id
// id, as ", registered from host … port …", or "" when it lists none or may not be asked.
func (s *Stream) registeredWith(id uint32) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	replicas, err := s.server.Replicas(ctx)
	if err != nil {
		return ""
	}
	var hosts []string
	for _, r := range replicas {
		if r.ServerID == id {
			hosts = append(hosts, fmt.Sprintf("host %q port %d", r.Host, r.Port))
		}
	}
	if len(hosts) == 0 {
		return ""
	}
	return ", registered from " + strings.Join(hosts, " and ") + " (SHOW SLAVE HOSTS)"
}

// startNotHeld reports whether msg, the server's words with ERROR 1236, says that the
// binlogs lack where a stream asked to start (not that an event was too large or
// truncated): "Could not find first log file name in binary log index file", "requested to
// start from GTID …, which is not in the master's binlog", "Could not find GTID state
// requested by slave in any binlog files", "requested master to start replication from
// impossible position", MySQL's "purged binary logs containing GTIDs that the replica
// requires".
func startNotHeld(msg string) bool {
	msg = strings.ToLower(msg)
	for _, words := range []string{"first log file name", "not in the master's binlog", "gtid state requested", "impossible position", "purged"} {
		if strings.Contains(msg, words) {
			return true
		}
	}
	return false
}

// reader holds the state of one Run.
type reader struct {
	s       *Stream
	h       Handler
	decoder *rowsDecoder
	file    string
	pos     uint32
	gtidSet string
	txn     txnState
	tables  map[uint64]*tableState
	// ids is the table id each table in tables was last mapped under: a table opened
	// again by the server (FLUSH TABLES, a full table_definition_cache) has a new id, and
	// what was known under its old one goes (remember).
	ids map[TableName]uint64
	// rowsOf counts the open transaction's changes handed on per table id: Source.Row, an
	// index that depends only on the table's own rows events, not on which other tables
	// are matched. Cleared at each transaction's start, not made anew.
	rowsOf map[uint64]int
	// unreadable holds, by table, what to grant for each table of a schema-pattern
	// glob checked so far ("" when source.user may read it): checkReadable.
	unreadable map[TableName]string
	// checksummed says the binlog's events end in a CRC32 (its format description event).
	checksummed bool
}

// newReader is the reader of a Run from start that hands on to h.
func (s *Stream) newReader(h Handler, decoder *rowsDecoder, start Position) *reader {
	return &reader{s: s, h: h, decoder: decoder, file: start.File, pos: start.Pos, gtidSet: start.GTIDSet,
		tables: map[uint64]*tableState{}, ids: map[TableName]uint64{}, rowsOf: map[uint64]int{}, unreadable: map[TableName]string{}}
}

func (r *reader) lastCommit() Position { return Position{File: r.file, Pos: r.pos, GTIDSet: r.gtidSet} }

func (r *reader) begin(h *replication.EventHeader, gtid string) {
	r.txn = txnState{open: true, src: Source{
		ServerID: h.ServerID, GTID: gtid, File: r.file, Pos: h.LogPos - h.EventSize, TsMs: int64(h.Timestamp) * 1000,
	}}
	clear(r.rowsOf)
}

// startTransaction opens the transaction whose first event h is and tells a
// TransactionBeginner, before any of the transaction's table maps is matched.
func (r *reader) startTransaction(ctx context.Context, h *replication.EventHeader, gtid string) error {
	if r.txn.open && r.txn.ddl {
		// A group that went on past its DDL statement and ended without an Xid or
		// COMMIT: it ends where the next begins.
		if err := r.commitAt(ctx, h.LogPos-h.EventSize, r.withGroupGTID()); err != nil {
			return err
		}
	}
	r.begin(h, gtid)
	if b, ok := r.h.(TransactionBeginner); ok {
		if err := b.Begin(ctx); err != nil {
			return fmt.Errorf("beginning the transaction at %s:%d: %w", r.file, h.LogPos-h.EventSize, err)
		}
	}
	return nil
}

func (r *reader) commit(ctx context.Context, h *replication.EventHeader, set mysql.GTIDSet) error {
	return r.commitAt(ctx, h.LogPos, set)
}

// commitAt ends the transaction at pos, with the GTID set that includes it when the event
// that ended it carried one.
func (r *reader) commitAt(ctx context.Context, pos uint32, set mysql.GTIDSet) error {
	r.pos = pos
	if set != nil {
		r.gtidSet = set.String()
	}
	r.txn = txnState{}
	at := Position{File: r.file, Pos: r.pos, GTIDSet: r.gtidSet}
	if err := r.h.Commit(ctx, at); err != nil {
		return fmt.Errorf("committing transaction ending at %s: %w", at, err)
	}
	return nil
}

func (r *reader) handle(ctx context.Context, ev *replication.BinlogEvent) error {
	if ev.Header.EventType == replication.XA_PREPARE_LOG_EVENT {
		return r.xaPrepared(ctx, ev.Header)
	}
	switch e := ev.Event.(type) {
	case *replication.RotateEvent:
		r.file = string(e.NextLogName)
		r.pos = uint32(e.Position)
	case *replication.MariadbGTIDEvent:
		if err := r.startTransaction(ctx, ev.Header, fmt.Sprintf("%d-%d-%d", e.GTID.DomainID, e.GTID.ServerID, e.GTID.SequenceNumber)); err != nil {
			return err
		}
		r.txn.continues = !e.IsStandalone()
		r.txn.xa = e.Flags&mariadbPreparedXA != 0
		r.txn.alter = mariadbAlterPhase(ev, e.Flags, r.checksummed)
	case *replication.FormatDescriptionEvent:
		r.checksummed = e.ChecksumAlgorithm == replication.BINLOG_CHECKSUM_ALG_CRC32
	case *replication.GTIDEvent:
		return r.startTransaction(ctx, ev.Header, mysqlGTID(e))
	case *replication.TransactionPayloadEvent:
		// MySQL's binlog_transaction_compression: the transaction's events, decompressed.
		// They have no positions of their own: they are at the payload's (its Xid, at its
		// end; the rest at its start).
		for _, inner := range e.Events {
			if inner.Header.LogPos == 0 {
				h := *inner.Header
				h.LogPos, h.EventSize = ev.Header.LogPos, ev.Header.EventSize
				inner = &replication.BinlogEvent{Header: &h, Event: inner.Event, RawData: inner.RawData}
			}
			if err := r.handle(ctx, inner); err != nil {
				return err
			}
		}
	case *replication.QueryEvent:
		return r.query(ctx, ev.Header, e)
	case *replication.TableMapEvent:
		return r.tableMap(ctx, e)
	case *replication.RowsEvent:
		return r.rows(ctx, ev, e)
	case *replication.XIDEvent:
		if err := r.handOnHeld(ctx); err != nil {
			return err
		}
		return r.commit(ctx, ev.Header, e.GSet)
	case *replication.HeartbeatEvent:
		if !r.txn.open {
			return r.h.Idle(ctx)
		}
	}
	return nil
}

func mysqlGTID(e *replication.GTIDEvent) string {
	if len(e.SID) != 16 {
		return ""
	}
	b := e.SID
	return fmt.Sprintf("%x-%x-%x-%x-%x:%d", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16], e.GNO)
}

func (r *reader) query(ctx context.Context, h *replication.EventHeader, e *replication.QueryEvent) error {
	q := strings.TrimSpace(string(e.Query))
	upper := strings.ToUpper(q)
	switch {
	case upper == "BEGIN":
		if !r.txn.open {
			return r.startTransaction(ctx, h, "")
		}
		return nil
	case upper == "COMMIT":
		return r.commit(ctx, h, e.GSet)
	case strings.HasPrefix(upper, "SAVEPOINT"), strings.HasPrefix(upper, "ROLLBACK TO"):
		return nil
	case strings.HasPrefix(upper, "XA START "): // MySQL; MariaDB flags the GTID event
		if !r.txn.open {
			if err := r.startTransaction(ctx, h, ""); err != nil {
				return err
			}
		}
		r.txn.xa = true
		return nil
	case strings.HasPrefix(upper, "XA END "):
		r.txn.xid = strings.TrimSpace(q[len("XA END "):])
		return nil
	case strings.HasPrefix(upper, "XA COMMIT ") && strings.HasSuffix(upper, " ONE PHASE") && r.txn.xa:
		if err := r.handOnHeld(ctx); err != nil {
			return err
		}
		return r.commit(ctx, h, e.GSet)
	case strings.HasPrefix(upper, "XA COMMIT "), strings.HasPrefix(upper, "XA ROLLBACK "):
		// The outcome of an XA transaction prepared earlier: its rows were handed on, or
		// not, at its XA PREPARE (xaPrepared). No rows of its own.
		if !r.txn.open {
			if err := r.startTransaction(ctx, h, ""); err != nil {
				return err
			}
		}
		return r.commit(ctx, h, e.GSet)
	}
	if schema, table, rowChange := statementChange(q, string(e.Schema)); rowChange {
		// Written by a session whose binlog_format was not ROW: part of its transaction,
		// like a rows event, and of no concern unless it changes a matched table.
		if table == "" || r.s.filter.Load().Matches(schema, table) {
			name := TableName{schema, table}.String()
			if table == "" {
				name = "a table it does not name plainly"
			}
			return fmt.Errorf("%w: at %s:%d the binlog holds this change of %s as a statement, not as rows (the session that wrote it had binlog_format STATEMENT or MIXED, "+
				"or the table is system-versioned with transaction-precise history, whose changes MariaDB always logs as statements): %q. "+
				"Its rows cannot be read, so nothing after it is published. Set binlog_format=ROW for every session (SET GLOBAL binlog_format=ROW, then reconnect the writers), "+
				"or take a transaction-precise table out of the rules, "+
				"then go on from the server's current position, re-seeding the rules (docs/operations.md, Statement-logged changes)",
				ErrStatementChange, r.file, h.LogPos-h.EventSize, name, truncate(redactPasswords(q), 200))
		}
		if !r.txn.open {
			r.begin(h, "")
		}
		return nil
	}
	if r.txn.alter == alterStarted || r.txn.alter == alterRolledBack {
		// binlog_alter_two_phase: an ALTER that has only begun, or was undone. The table
		// changes at the same statement's COMMIT ALTER, a group of its own written once the
		// ALTER is done; the rows written meanwhile have the table's old shape.
		return r.commit(ctx, h, e.GSet)
	}
	// Anything else is DDL (or a statement that changes no rows): the shapes of the tables
	// it names may have changed, so they are forgotten (forgetReshaped); the statement is
	// its own transaction.
	if !r.txn.open {
		if err := r.startTransaction(ctx, h, ""); err != nil {
			return err
		}
	}
	emptier, _ := r.h.(TableEmptier)
	reseeder, _ := r.h.(TableReseeder)
	empty, reseed, err := r.rowlessDDL(ctx, h, q, string(e.Schema), emptier != nil, reseeder != nil)
	if err != nil {
		return err
	}
	for _, t := range empty {
		if err := emptier.Emptied(ctx, t[0], t[1], r.txn.src); err != nil {
			return fmt.Errorf("emptying %s.%s at %s:%d: %w", t[0], t[1], r.file, h.LogPos-h.EventSize, err)
		}
	}
	if reseed != nil {
		if err := reseeder.ReseedAfter(ctx, *reseed); err != nil {
			return fmt.Errorf("seeding the rules again after %s at %s:%d: %w", reseed.What, r.file, h.LogPos-h.EventSize, err)
		}
	}
	forgotAll := r.forgetReshaped(q, string(e.Schema))
	if ce := r.s.log.Check(zap.DebugLevel, "schema change"); ce != nil {
		// The binlog holds CREATE USER … IDENTIFIED BY 'secret' as it was written.
		ce.Write(zap.ByteString("schema", e.Schema), zap.String("query", truncate(redactPasswords(q), 200)),
			zap.Bool("every_table_described_again", forgotAll))
	}
	if r.txn.continues || strings.HasSuffix(upper, "START TRANSACTION") {
		// A CREATE TABLE … SELECT: its rows follow, and its Xid ends the transaction.
		r.txn.continues, r.txn.ddl = true, true
		return nil
	}
	return r.commit(ctx, h, e.GSet)
}

// rowlessDDL looks at a DDL statement q for matched tables whose rows it removes or
// brings without row events: TRUNCATE, DROP TABLE, both names of a RENAME TABLE or ALTER
// TABLE … RENAME (rows leave the old name and arrive under the new one), every table of a
// DROP DATABASE, and an ALTER TABLE whose alterations convert or remove rows
// (alteredTables). Of a table an aggregate or transition rule reads, it returns
//   - in empty, a table the statement empties (TRUNCATE, DROP TABLE) when the handler
//     takes it (canEmpty: a TableEmptier) and every such rule reads it alone
//     (StatefulAlone): those rules know their state, every group empty;
//   - in reseed, any other such change when the handler can seed the rules again from
//     their tables as they are now (canReseed: a TableReseeder). A table renamed away, to
//     a name no such rule reads, leaves its name empty: rather than publish every group as
//     gone and back again, it waits up to nameTakenWithin for a table to have the name on
//     the server again (a two-step cut-over's second statement), then stops the stream at
//     the statement, whose retries wait on, until the source's RenamedAwayWait has passed
//     since the statement ran: the table is then taken as dropped, and reseeded without.
//
// Without such a handler these stop the stream (ErrStatefulTableEmptied), as the rule's
// totals would no longer match its tables; an ALTER TABLE goes on, as a summed column's
// change of class is met at the next row (rules/sumtype.go). An online schema change's
// cut-over, which swaps a copy onto the name in one RENAME, is taken for a faithful copy.
// For tables only row rules read there is nothing to publish, and the log says so, since
// consumers of their rows keep them (or lack the ones that arrived).
func (r *reader) rowlessDDL(ctx context.Context, h *replication.EventHeader, q, defaultSchema string, canEmpty, canReseed bool) (empty [][2]string, reseed *RowlessChange, err error) {
	at := h.LogPos - h.EventSize
	filter := r.s.filter.Load()
	stop := func(what, how string) error {
		return fmt.Errorf("%w: at %s:%d, %s. %s without row events, so the rule's totals no longer match, and nothing after it is published. "+
			"To go on, re-seed the rules from the server's current position (docs/operations.md, Tables emptied by DDL)",
			ErrStatefulTableEmptied, r.file, at, what, how)
	}
	wait := func(what, table string, giveUp time.Time) error {
		return fmt.Errorf("%w: at %s:%d, %s, and an aggregate or transition rule reads %s. Its rows left it without row events, and no table has its name on the server now. "+
			"The stream waits here, retrying, for a table to take the name (a two-step cut-over's second statement), then seeds the rule again from its tables as they are. "+
			"If none has by %s (source.renamed_table_wait after the statement), %s is taken as dropped (docs/operations.md, A table renamed away waits for its name)",
			ErrStatefulTableEmptied, r.file, at, what, table, giveUp.UTC().Format(time.DateTime+" MST"), table)
	}
	var change RowlessChange
	var whats []string
	add := func(what string, tables ...[2]string) {
		whats = append(whats, what)
		for _, t := range tables {
			if filter.StatefulTables(t[0], t[1]) && !slices.Contains(change.Tables, t) {
				change.Tables = append(change.Tables, t)
			}
		}
	}
	if schema := droppedSchema(q); schema != "" && filter.StatefulSchema(schema) {
		what := "DROP DATABASE " + schema
		if !canReseed {
			return nil, nil, stop(what+", in which an aggregate or transition rule reads tables", "Their rows went")
		}
		change.Schemas = append(change.Schemas, schema)
		add(what)
	}
	verb, tables := emptiedTables(q, defaultSchema)
	for _, t := range tables {
		what := fmt.Sprintf("%s of %s.%s", verb, t[0], t[1])
		switch {
		case filter.StatefulTables(t[0], t[1]):
			switch {
			case canEmpty && filter.StatefulAlone(t[0], t[1]):
				empty = append(empty, t)
				r.s.log.Warn("a table that aggregate or transition rules read alone was emptied by DDL: their groups are published empty",
					zap.String("statement", verb), zap.Stringer("table", TableName{t[0], t[1]}), zap.String("file", r.file), zap.Uint32("pos", at))
			case canReseed:
				add(what, t)
			default:
				return nil, nil, stop(what+", which an aggregate or transition rule reads", "Its rows went")
			}
		case filter.Matches(t[0], t[1]):
			r.s.log.Warn("a matched table was emptied by DDL: its rows' removal has no row events, so nothing is published for them",
				zap.String("statement", verb), zap.Stringer("table", TableName{t[0], t[1]}), zap.String("file", r.file), zap.Uint32("pos", at))
		}
	}
	verb, renames := renamedTables(q, defaultSchema)
	// A name that one pair renames away and another renames onto, in one statement, is
	// an online schema change's cut-over (gh-ost, pt-online-schema-change): the copy that
	// takes the name holds the same rows, kept in step by the tool, so rules go on.
	swapped := map[[2]string]bool{}
	for _, away := range renames {
		for _, onto := range renames {
			if away.from == onto.to {
				swapped[away.from] = true
			}
		}
	}
	for _, rn := range renames {
		from, to := TableName{rn.from[0], rn.from[1]}.String(), TableName{rn.to[0], rn.to[1]}.String()
		what := fmt.Sprintf("%s of %s to %s", verb, from, to)
		var stateful, how string // the stateful table, and how its rows changed
		switch {
		case swapped[rn.from] || swapped[rn.to]:
			if filter.Matches(rn.from[0], rn.from[1]) || filter.Matches(rn.to[0], rn.to[1]) {
				r.s.log.Warn("a matched table was swapped with another in one RENAME (an online schema change's cut-over): "+
					"the table that took its name is taken to hold the same rows",
					zap.String("statement", verb), zap.String("from", from), zap.String("to", to), zap.String("file", r.file), zap.Uint32("pos", at))
			}
			continue
		case filter.StatefulTables(rn.from[0], rn.from[1]):
			// Not emptied even for a rule that reads the table alone: its rows still exist
			// under the other name, and a two-step cut-over brings a copy back next.
			stateful, how = from, "Its rows left it"
		case filter.StatefulTables(rn.to[0], rn.to[1]):
			stateful, how = to, "The rows of "+from+" arrived in it"
		case filter.Matches(rn.from[0], rn.from[1]) || filter.Matches(rn.to[0], rn.to[1]):
			r.s.log.Warn("a matched table was renamed by DDL: its rows moved from one name to the other without row events, so nothing is published for them",
				zap.String("statement", verb), zap.String("from", from), zap.String("to", to), zap.String("file", r.file), zap.Uint32("pos", at))
			continue
		default:
			continue
		}
		if !canReseed {
			return nil, nil, stop(fmt.Sprintf("%s, and an aggregate or transition rule reads %s", what, stateful), how)
		}
		// Renamed away to a name no stateful rule reads (a cut-over's _t_del): wait, briefly
		// here and then by retrying, for a table to take the name again, and past the
		// source's RenamedAwayWait since the statement ran, take the table as dropped.
		if stateful == from && !filter.StatefulTables(rn.to[0], rn.to[1]) {
			giveUp := time.Unix(int64(h.Timestamp), 0).Add(r.s.cfg.renamedAwayWait())
			name, err := r.s.server.awaitName(ctx, rn.from, giveUp, nameTakenWithin)
			switch {
			case err != nil:
				return nil, nil, fmt.Errorf("after %s at %s:%d: %w", what, r.file, at, err)
			case name == nameEmpty:
				return nil, nil, wait(what, from, giveUp)
			case name == nameLeft:
				r.s.log.Warn("a table that aggregate or transition rules read was renamed away, and no table has had its name since: it is taken as dropped, and the rules are seeded again without it",
					zap.String("statement", verb), zap.String("from", from), zap.String("to", to),
					zap.Duration("waited", r.s.cfg.renamedAwayWait()), zap.String("file", r.file), zap.Uint32("pos", at))
			}
		}
		add(what, rn.from, rn.to)
	}
	if tables, how := alteredTables(q, defaultSchema); canReseed && slices.ContainsFunc(tables, func(t [2]string) bool { return filter.StatefulTables(t[0], t[1]) }) {
		add(fmt.Sprintf("ALTER TABLE %s.%s … %s", tables[0][0], tables[0][1], how), tables...)
	}
	if len(whats) == 0 {
		return empty, nil, nil
	}
	change.What, change.Src = strings.Join(whats, ", "), r.txn.src
	return empty, &change, nil
}

// nameTakenWithin is how long the stream waits in place at a stateful table renamed away
// for a table to take its name (a two-step cut-over's second statement follows within
// milliseconds) before it stops and waits by retrying.
const nameTakenWithin = 5 * time.Second

// nameState is what awaitName found of a table's name.
type nameState int

const (
	nameTaken nameState = iota // a table (or view) has it
	nameEmpty                  // none has, yet
	nameLeft                   // none has, and the server's clock is past the wait for one
)

// awaitName asks the server, again with back-off for up to `within`, whether a table (or
// view) has the name t. It ends when one has (nameTaken), when none has and the server's
// clock is past giveUp (nameLeft), or when `within` has passed (nameEmpty).
func (s *Server) awaitName(ctx context.Context, t [2]string, giveUp time.Time, within time.Duration) (nameState, error) {
	deadline := time.Now().Add(within)
	for pause := 10 * time.Millisecond; ; pause = min(2*pause, 500*time.Millisecond) {
		var n, now int64
		err := s.DB.QueryRowContext(ctx, "SELECT COUNT(*), UNIX_TIMESTAMP() FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", t[0], t[1]).Scan(&n, &now)
		switch {
		case err != nil:
			return nameEmpty, fmt.Errorf("asking whether %s.%s exists: %w", t[0], t[1], err)
		case n > 0:
			return nameTaken, nil
		case !time.Unix(now, 0).Before(giveUp):
			return nameLeft, nil
		case time.Now().Add(pause).After(deadline):
			return nameEmpty, nil
		}
		select {
		case <-ctx.Done():
			return nameEmpty, ctx.Err()
		case <-time.After(pause):
		}
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// forgetReshaped forgets what the reader knows of the tables whose shape the DDL
// statement q (run in defaultSchema) may have changed (reshapedTables), so that each is
// described again at its next table map; every table when it cannot tell which, and it
// then reports true. Names are compared without regard to case, as a server with
// lower_case_table_names stores `ALTER TABLE Stock`'s table as stock.
//
// Only those: a DDL statement anywhere on the server (a shop's staging table created and
// dropped) made every matched table be described again, on MariaDB with two
// information_schema queries each on this goroutine, and the rules engine plan it anew.
func (r *reader) forgetReshaped(q, defaultSchema string) (all bool) {
	tables, schemas, sure := reshapedTables(q, defaultSchema)
	if !sure {
		r.tables, r.ids = map[uint64]*tableState{}, map[TableName]uint64{}
		r.decoder.forgetPlans()
		return true
	}
	named := func(n TableName) bool {
		return slices.ContainsFunc(schemas, func(s string) bool { return strings.EqualFold(s, n.Schema) }) ||
			slices.ContainsFunc(tables, func(t [2]string) bool { return strings.EqualFold(t[1], n.Name) && strings.EqualFold(t[0], n.Schema) })
	}
	for id, st := range r.tables {
		if named(st.name) {
			r.forget(id)
		}
	}
	// A table of that name is checked again (checkReadable): a dropped staging table's
	// entry would otherwise stay for the run.
	maps.DeleteFunc(r.unreadable, func(n TableName, _ string) bool { return named(n) })
	return false
}

// remember records st as what the reader knows of table id. What it knew of the id
// before (another table's: ids start again when the server restarts) and of st's table
// under another id (opened again by the server) goes, so that what the reader holds is
// bounded by the tables it reads, not by the ids they had over a long run.
func (r *reader) remember(id uint64, st *tableState) {
	if prev, ok := r.tables[id]; ok && prev.name != st.name && r.ids[prev.name] == id {
		delete(r.ids, prev.name)
	}
	if old, ok := r.ids[st.name]; ok && old != id {
		r.forget(old)
	}
	r.tables[id] = st
	r.ids[st.name] = id
	r.decoder.setPlan(id, nil)
}

// forget forgets table id: its next table map describes it again.
func (r *reader) forget(id uint64) {
	if st, ok := r.tables[id]; ok && r.ids[st.name] == id {
		delete(r.ids, st.name)
	}
	delete(r.tables, id)
	r.decoder.setPlan(id, nil)
}

func (r *reader) tableMap(ctx context.Context, e *replication.TableMapEvent) error {
	filter := r.s.filter.Load()
	if st, ok := r.tables[e.TableID]; ok && st.filter == filter && st.colCount == int(e.ColumnCount) &&
		st.name.Schema == string(e.Schema) && st.name.Name == string(e.Table) {
		return nil
	}
	schema, name := string(e.Schema), string(e.Table)
	st := &tableState{name: TableName{schema, name}, filter: filter, colCount: int(e.ColumnCount), matched: filter.Matches(schema, name)}
	r.remember(e.TableID, st)
	if !st.matched {
		return nil
	}
	if err := r.checkReadable(ctx, filter, schema, name); err != nil {
		return err
	}
	var info tableInfo
	if len(e.ColumnName) == 0 || r.s.server.Flavor == "mariadb" {
		var err error
		if info, err = r.s.server.tableColumns(ctx, schema, name); err != nil {
			return err
		}
	}
	if info.tableType == "SEQUENCE" {
		// A sequence's NEXTVAL and SETVAL write its counters as rows: not data to publish
		// (DataTableTypes).
		st.matched = false
		return nil
	}
	t, err := r.describe(ctx, e, schema, name, st, info)
	if err != nil {
		return err
	}
	st.table, st.versioned = t, newVersionedTable(t, info, r.s.server.Flavor == "mariadb")
	st.plan = newRowsPlan(e, t, st)
	r.decoder.setPlan(e.TableID, st.plan)
	return nil
}

// checkReadable checks, once per table and Run (and again after DDL names the table),
// that source.user may read a table that a rule matches through a glob that is a
// pattern, whose tables the check at start could not all see. For an aggregate or transition rule it stops the stream
// (ErrUnreadableTable); for row rules, whose stream messages are whole, it warns that a
// snapshot or re-read of the table reads nothing.
func (r *reader) checkReadable(ctx context.Context, filter *filterBox, schema, name string) error {
	rule, stateful := filter.PatternRule(schema, name)
	if rule == "" {
		return nil
	}
	full := TableName{schema, name}
	problem, checked := r.unreadable[full]
	if !checked {
		var err error
		if problem, err = unreadableTable(ctx, r.s.server.DB, r.s.cfg.User, schema, name); err != nil {
			return err
		}
		r.unreadable[full] = problem
		if problem != "" && !stateful {
			r.s.log.Warn("a table a row rule matches may not be read: its changes are published, but a snapshot or a resync's re-read of it reads nothing",
				zap.String("rule", rule), zap.Stringer("table", full), zap.String("fix", problem))
		}
	}
	if problem == "" || !stateful {
		return nil
	}
	return fmt.Errorf("%w: rule %q folds %s through a pattern glob, in the transaction after %s: %s. "+
		"Its seed could not read the table's rows: after the GRANT, delete the checkpoint so that the rules are seeded again (docs/operations.md, What the server needs)",
		ErrUnreadableTable, rule, full, r.lastCommit(), problem)
}

// describe builds a Table from the table map event, with column names from the binlog's
// own metadata when it carries them (binlog_row_metadata=FULL), else from the server
// (info, which is read whenever the binlog has no names, and always on MariaDB). It
// settles how each string column's bytes become the text a snapshot reads through SQL:
// decoded from the column's character set, and, on MariaDB, UUID, INET4 and INET6 values
// printed as the server prints them. A column in a character set without a decoder
// refuses the table (ErrUnsupportedCharset): its rows are next.
func (r *reader) describe(ctx context.Context, e *replication.TableMapEvent, schema, name string, st *tableState, info tableInfo) (*Table, error) {
	t := &Table{Schema: schema, Name: name, Columns: make([]Column, e.ColumnCount)}
	names := e.ColumnNameString()
	unsigned := e.UnsignedMap()
	if len(names) == 0 {
		if len(info.names) != int(e.ColumnCount) {
			return nil, fmt.Errorf("cannot map the columns of %s.%s: the binlog has %d columns and the table now has %d; "+
				"set binlog_row_metadata=FULL on the server so the binlog carries column names", schema, name, e.ColumnCount, len(info.names))
		}
		names = info.names
		unsigned = map[int]bool{}
		for i, n := range names {
			unsigned[i] = info.unsigned[n]
		}
	}
	// textOf is how column i's values (of a collation the binlog names, or else of the
	// character set information_schema names) become UTF-8.
	textOf := func(i int, collations map[int]uint64) (columnText, error) {
		charset := info.charset[names[i]]
		if c, ok := collations[i]; ok {
			cs, known, err := r.s.server.collationCharset(ctx, c)
			if err != nil {
				return nil, err
			}
			if !known {
				return nil, fmt.Errorf("%w: column %s of %s.%s has collation id %d, which the server does not list (information_schema.COLLATIONS), in the transaction after %s",
					ErrUnsupportedCharset, names[i], schema, name, c, r.lastCommit())
			}
			charset = cs
		}
		text, ok := charsetText(charset)
		if !ok {
			return nil, fmt.Errorf("%w: column %s of %s.%s is in character set %s, in the transaction after %s. The binlog holds its text as stored, and stocksync "+
				"converts only the character sets docs/topics.md (Values) lists, so nothing after it is published. Take the table out of the rules, or convert the column "+
				"(ALTER TABLE … CONVERT TO CHARACTER SET utf8mb4) and go on from the server's current position, re-seeding the rules (docs/operations.md, Character sets)",
				ErrUnsupportedCharset, names[i], schema, name, charset, r.lastCommit())
		}
		return text, nil
	}
	collations := e.CollationMap()
	st.decimals = make([]uint8, e.ColumnCount)
	for i, typ := range e.ColumnType {
		if typ == mysql.MYSQL_TYPE_DATETIME2 || typ == mysql.MYSQL_TYPE_TIMESTAMP2 {
			st.decimals[i] = uint8(e.ColumnMeta[i])
		}
	}
	// The binlog carries ENUM and SET labels in the column's character set: they are
	// converted once, here, as a snapshot reading them through SQL would see them.
	st.enums, st.sets = perColumn(e.EnumStrValueMap(), e.ColumnCount), perColumn(e.SetStrValueMap(), e.ColumnCount)
	labelCollations := e.EnumSetCollationMap()
	for i := range st.enums {
		if st.enums[i] == nil && st.sets[i] == nil {
			continue
		}
		text, err := textOf(i, labelCollations)
		if err != nil {
			return nil, err
		}
		st.enums[i], st.sets[i] = decodeLabels(st.enums[i], text), decodeLabels(st.sets[i], text)
	}
	st.text = make([]columnText, e.ColumnCount)
	st.binaryLen = make([]uint16, e.ColumnCount)
	st.uintBits = make([]uint8, e.ColumnCount)
	for i := range t.Columns {
		t.Columns[i] = Column{Name: names[i], Kind: columnKind(e, i, unsigned[i], collations, info.json[names[i]])}
		switch t.Columns[i].Kind {
		case KindUint:
			st.uintBits[i] = integerBits[e.ColumnType[i]]
		case KindString:
			text, err := textOf(i, collations)
			if err != nil {
				return nil, err
			}
			st.text[i] = text
		}
		if e.ColumnType[i] == mysql.MYSQL_TYPE_STRING && t.Columns[i].Kind == KindBytes {
			if realType, n := stringMeta(e.ColumnMeta[i]); realType == mysql.MYSQL_TYPE_STRING {
				st.binaryLen[i] = uint16(n)
				// MariaDB's UUID, INET4 and INET6 are a BINARY(n) to the binlog; SQL
				// prints them.
				if typ, ok := mariadbTypeText[info.dataType[names[i]]]; ok && typ.size == n {
					t.Columns[i].Kind, st.text[i] = KindString, typ.text
				}
			}
		}
	}
	if len(e.PrimaryKey) > 0 {
		for _, k := range e.PrimaryKey {
			t.PrimaryKey = append(t.PrimaryKey, int(k))
		}
	} else {
		for _, n := range info.pk {
			if i := t.ColumnIndex(n); i >= 0 {
				t.PrimaryKey = append(t.PrimaryKey, i)
			}
		}
	}
	return t, nil
}

const binaryCollation = 63

// perColumn turns go-mysql's column index → labels map into a slice indexed by column.
func perColumn(labels map[int][]string, columns uint64) [][]string {
	out := make([][]string, columns)
	for i, l := range labels {
		if i >= 0 && i < len(out) {
			out[i] = l
		}
	}
	return out
}

func columnKind(e *replication.TableMapEvent, i int, unsigned bool, collations map[int]uint64, isJSON bool) ColumnKind {
	if e.IsEnumColumn(i) {
		return KindEnum
	}
	if e.IsSetColumn(i) {
		return KindSet
	}
	switch e.ColumnType[i] {
	case mysql.MYSQL_TYPE_TINY, mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_LONGLONG:
		if unsigned {
			return KindUint
		}
		return KindInt
	case mysql.MYSQL_TYPE_NEWDECIMAL, mysql.MYSQL_TYPE_DECIMAL:
		return KindDecimal
	case mysql.MYSQL_TYPE_FLOAT, mysql.MYSQL_TYPE_DOUBLE:
		return KindFloat
	case mysql.MYSQL_TYPE_BIT:
		return KindBit
	case mysql.MYSQL_TYPE_YEAR:
		return KindYear
	case mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_NEWDATE:
		return KindDate
	case mysql.MYSQL_TYPE_DATETIME, mysql.MYSQL_TYPE_DATETIME2, mysql.MYSQL_TYPE_TIMESTAMP, mysql.MYSQL_TYPE_TIMESTAMP2:
		return KindDateTime
	case mysql.MYSQL_TYPE_TIME, mysql.MYSQL_TYPE_TIME2:
		return KindTime
	case mysql.MYSQL_TYPE_JSON:
		return KindJSON
	case mysql.MYSQL_TYPE_GEOMETRY:
		return KindBytes
	case mysql.MYSQL_TYPE_BLOB, mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_VAR_STRING, mysql.MYSQL_TYPE_STRING:
		if isJSON {
			return KindJSON
		}
		if c, ok := collations[i]; ok && c == binaryCollation {
			return KindBytes
		}
		if _, ok := collations[i]; !ok && e.ColumnType[i] == mysql.MYSQL_TYPE_BLOB && len(e.ColumnCharset)+len(e.DefaultCharset) == 0 {
			return KindBytes // no charset metadata: a BLOB cannot be told from TEXT, keep the bytes exact
		}
		return KindString
	}
	return KindBytes
}

func (r *reader) rows(ctx context.Context, ev *replication.BinlogEvent, e *replication.RowsEvent) error {
	st, ok := r.tables[e.TableID]
	matched := ok && st.matched
	normalized := false // already in a Stream's types: decoded by a plan
	if len(e.Rows) == 0 {
		var plan rowsPlan
		if matched {
			plan = st.plan
		}
		planned, err := r.decoder.take(e, ev.Header.EventType, matched, plan)
		if err != nil {
			return fmt.Errorf("decoding rows event of %s.%s at %s:%d: %w", e.Table.Schema, e.Table.Table, r.file, ev.Header.LogPos, err)
		}
		if planned != nil {
			e.Rows, normalized = planned, true
		}
	}
	if !matched {
		return nil
	}
	if !r.txn.open {
		r.begin(ev.Header, "")
	}
	var op Op
	switch ev.Header.EventType {
	case replication.WRITE_ROWS_EVENTv0, replication.WRITE_ROWS_EVENTv1, replication.WRITE_ROWS_EVENTv2, replication.MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1:
		op = OpCreate
	case replication.UPDATE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2, replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1, replication.PARTIAL_UPDATE_ROWS_EVENT:
		op = OpUpdate
	case replication.DELETE_ROWS_EVENTv0, replication.DELETE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv2, replication.MARIADB_DELETE_ROWS_COMPRESSED_EVENT_V1:
		op = OpDelete
	default:
		return nil
	}
	if partialImage(e, op == OpUpdate) {
		return r.partialImageError(ev.Header, e, st.table, op)
	}
	step := 1
	if op == OpUpdate {
		step = 2
	}
	if !normalized {
		for _, row := range e.Rows {
			if err := st.normalize(row); err != nil {
				return err
			}
		}
	}
	versioned := st.versioned
	for i := 0; i+step-1 < len(e.Rows); i += step {
		c := &RowChange{Op: op, Table: st.table, Source: r.txn.src}
		c.Source.Row = r.rowsOf[e.TableID]
		switch op {
		case OpCreate:
			c.After = e.Rows[i]
		case OpDelete:
			c.Before = e.Rows[i]
		case OpUpdate:
			c.Before, c.After = e.Rows[i], e.Rows[i+1]
		}
		r.rowsOf[e.TableID]++
		if versioned != nil && !versioned.currentChange(c) {
			continue // a history row's: the table's current rows are as they were
		}
		if r.txn.xa {
			r.txn.held = append(r.txn.held, c)
			continue
		}
		if err := r.h.Row(ctx, c); err != nil {
			return fmt.Errorf("handling row %d of %s at %s:%d: %w", c.Source.Row, st.table.FullName(), c.Source.File, c.Source.Pos, err)
		}
	}
	return nil
}

// partialImageError is ErrPartialRowImage for rows event e of table t, at header h: it
// names the table, the position, each image's missing columns and what to do.
func (r *reader) partialImageError(h *replication.EventHeader, e *replication.RowsEvent, t *Table, op Op) error {
	type image struct {
		name   string
		bitmap []byte
	}
	images := []image{{"after", e.ColumnBitmap1}}
	switch op {
	case OpDelete:
		images = []image{{"before", e.ColumnBitmap1}}
	case OpUpdate:
		images = []image{{"before", e.ColumnBitmap1}, {"after", e.ColumnBitmap2}}
	}
	var lacks []string
	for _, image := range images {
		var names []string
		for _, i := range missingColumns(image.bitmap, len(t.Columns)) {
			names = append(names, t.Columns[i].Name)
		}
		if len(names) > 0 {
			lacks = append(lacks, fmt.Sprintf("its %s image lacks %s", image.name, strings.Join(names, ", ")))
		}
	}
	return fmt.Errorf("%w: at %s:%d the binlog holds this %s of %s with a partial row image: %s (the session that wrote it had binlog_row_image MINIMAL or NOBLOB: "+
		"its own SET SESSION, or a SET GLOBAL since stocksync started). Those values cannot be known, so nothing after it is published. "+
		"Set binlog_row_image=FULL for every session (SET GLOBAL binlog_row_image=FULL, then reconnect the writers), "+
		"then go on from the server's current position, re-seeding the rules (docs/operations.md, Partial row images)",
		ErrPartialRowImage, r.file, h.LogPos-h.EventSize, op.Name(), t.FullName(), strings.Join(lacks, " and "))
}

// normalize converts go-mysql's decoded values, in place, to the types ColumnKind names.
func (st *tableState) normalize(row []any) error {
	cols := st.table.Columns
	if len(row) != len(cols) {
		return fmt.Errorf("row of %s has %d values for %d columns; the binlog was written with another table shape",
			st.table.FullName(), len(row), len(cols))
	}
	for i, v := range row {
		if v == nil {
			continue
		}
		if t, ok := v.(time.Time); ok {
			row[i] = formatDateTime(t, st.decimals[i])
			continue
		}
		if bits := st.uintBits[i]; bits != 0 {
			row[i] = asUnsigned(v, bits)
			continue
		}
		if text := st.text[i]; text != nil {
			// go-mysql hands text on as a string: given to text as it is, and kept when it
			// has nothing to convert (no copy, no new interface value).
			if s, ok := v.(string); ok && len(s) >= int(st.binaryLen[i]) {
				if out := text(s); out != s {
					row[i] = out
				}
				continue
			}
			row[i] = text(string(padBinary(asBytes(v), st.binaryLen[i])))
			continue
		}
		row[i] = normalizeValue(v, cols[i].Kind, st.enums[i], st.sets[i])
		if n := st.binaryLen[i]; n != 0 {
			if b, ok := row[i].([]byte); ok {
				row[i] = padBinary(b, n)
			}
		}
	}
	return nil
}

// integerBits is the width of each integer column type.
var integerBits = map[byte]uint8{mysql.MYSQL_TYPE_TINY: 8, mysql.MYSQL_TYPE_SHORT: 16, mysql.MYSQL_TYPE_INT24: 24,
	mysql.MYSQL_TYPE_LONG: 32, mysql.MYSQL_TYPE_LONGLONG: 64}

// asUnsigned returns the value of an unsigned integer column of the given width as a
// uint64, whether it was decoded as unsigned or, with the sign bit taken for one, as
// signed.
func asUnsigned(v any, bits uint8) any {
	switch x := v.(type) {
	case int8:
		return uint64(uint8(x))
	case int16:
		return uint64(uint16(x))
	case int32:
		if bits == 24 {
			return uint64(uint32(x) & 0xFFFFFF)
		}
		return uint64(uint32(x))
	case int64:
		return uint64(x)
	case uint8:
		return uint64(x)
	case uint16:
		return uint64(x)
	case uint32:
		return uint64(x)
	}
	return v
}

// formatDateTime writes t in RFC 3339, UTC, with the column's fractional digits (0 to 6):
// "2024-02-29T23:59:58.123Z". Hand-written: it runs for every temporal value read.
func formatDateTime(t time.Time, decimals uint8) string {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	return formatCivil(year, int(month), day, hour, minute, sec, t.Nanosecond()/1000, decimals)
}

// formatCivil writes a UTC date and time as formatDateTime does, micros being the
// microseconds, of which it keeps decimals digits (at most 6).
func formatCivil(year, month, day, hour, minute, sec, micros int, decimals uint8) string {
	var b [32]byte
	put := func(at, v, width int) {
		for i := at + width - 1; i >= at; i-- {
			b[i] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, year, 4)
	b[4] = '-'
	put(5, month, 2)
	b[7] = '-'
	put(8, day, 2)
	b[10] = 'T'
	put(11, hour, 2)
	b[13] = ':'
	put(14, minute, 2)
	b[16] = ':'
	put(17, sec, 2)
	n := 19
	if decimals > 0 {
		decimals = min(decimals, 6)
		b[n] = '.'
		frac := micros
		for i := 6; i > int(decimals); i-- {
			frac /= 10
		}
		put(n+1, frac, int(decimals))
		n += 1 + int(decimals)
	}
	b[n] = 'Z'
	return string(b[:n+1])
}

// padBinary gives a BINARY(n) value back the trailing zero bytes the binlog dropped, so
// that it is the value SQL returns (a BINARY(16) UUID ending in 00 keeps its 16 bytes).
// A padded value is a new slice: b may share the event's buffer.
func padBinary(b []byte, n uint16) []byte {
	if len(b) >= int(n) {
		return b
	}
	out := make([]byte, n)
	copy(out, b)
	return out
}

func normalizeValue(v any, kind ColumnKind, enumLabels, setLabels []string) any {
	switch kind {
	case KindBit:
		// go-mysql hands a BIT on as an int64 of its bits: a BIT(64) with the top bit set
		// would read negative.
		switch x := v.(type) {
		case int64:
			return uint64(x)
		case uint64:
			return x
		}
	case KindInt, KindYear:
		switch x := v.(type) {
		case int8:
			return int64(x)
		case int16:
			return int64(x)
		case int32:
			return int64(x)
		case int:
			return int64(x)
		case uint8:
			return int64(x)
		case uint16:
			return int64(x)
		case uint32:
			return int64(x)
		case uint64:
			return int64(x)
		}
	case KindFloat:
		if f, ok := v.(float32); ok {
			return widenFloat32(f)
		}
	case KindDecimal:
		if s, ok := v.(fmt.Stringer); ok {
			return s.String()
		}
	case KindString, KindEnum, KindSet:
		switch x := v.(type) {
		case []byte:
			return string(x)
		case int64:
			if kind == KindEnum {
				if x >= 1 && int(x) <= len(enumLabels) {
					return enumLabels[x-1]
				}
				return ""
			}
			if kind == KindSet {
				var parts []string
				for b := 0; b < len(setLabels); b++ {
					if x&(1<<uint(b)) != 0 {
						parts = append(parts, setLabels[b])
					}
				}
				return strings.Join(parts, ",")
			}
		}
	case KindBytes:
		if s, ok := v.(string); ok {
			return []byte(s)
		}
	case KindJSON:
		switch x := v.(type) {
		case string:
			if x == "" {
				return []byte("null")
			}
			return []byte(x)
		case []byte:
			if len(x) == 0 {
				return []byte("null")
			}
		}
	case KindDate:
		if s, ok := v.(string); ok && strings.HasPrefix(s, "0000-00-00") {
			return nil
		}
	case KindDateTime:
		if s, ok := v.(string); ok {
			if strings.HasPrefix(s, "0000-00-00") {
				return nil
			}
			if len(s) >= 19 && s[10] == ' ' {
				return s[:10] + "T" + s[11:] + "Z"
			}
		}
	}
	return v
}
