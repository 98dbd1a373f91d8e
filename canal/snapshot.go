package canal

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/stocksync/stocksync/internal/sqlconn"
)

// SnapshotOptions tunes a snapshot. The zero value is usable.
type SnapshotOptions struct {
	// ChunkSize is the number of rows read per primary-key chunk; default 10000.
	ChunkSize int
	// ChunkBytes ends a chunk early, after the row that brings its values to this size;
	// the next chunk starts after that row. Default DefaultChunkBytes.
	ChunkBytes int64
	// Resume is the saved progress of an interrupted snapshot; nil starts afresh.
	Resume *SnapshotProgress
	// OnChunk is called after each chunk's rows were handed to the handler, with a copy
	// of the progress so far that the callee may keep. It runs on the snapshot's own
	// goroutine: the next chunk is read only after it returns. An error stops the
	// snapshot, and Snapshot returns it wrapped. May be nil.
	OnChunk func(ctx context.Context, p SnapshotProgress) error
	// Logger receives the snapshot's start, per-table and progress logs; nil logs nothing.
	Logger *zap.Logger
	// LogInterval is the least time between two progress logs; default 5s.
	LogInterval time.Duration
}

// DefaultChunkBytes is the size of row values at which a primary-key chunk ends early: a
// chunk is read whole before its first row is handed on, so ChunkSize rows with large
// columns (a description, a JSON blob) would be held at once, 10,000 rows of 256 KiB
// being 2.5 GiB.
const DefaultChunkBytes = 64 << 20

// SnapshotProgress is how far a snapshot has come. It encodes to JSON and back without
// loss, so that an interrupted snapshot can be resumed from what was saved.
type SnapshotProgress struct {
	// Position is the binlog position the snapshot is consistent with; streaming starts
	// exactly here. A resumed snapshot keeps the first run's position.
	Position Position `json:"position"`
	// ReadAt is the instant the rows of the current run are read at: Position, or the
	// newer position of the snapshot reopened by a resume.
	ReadAt Position `json:"read_at"`
	// Tables are the tables being read, as TableName.String writes them (`st.eu`.stock),
	// in the order they are read.
	Tables []string `json:"tables"`
	// Done holds the tables read to the end.
	Done map[string]bool `json:"done"`
	// LastKey is, per table begun and not done, the primary key of its last row handed on.
	LastKey map[string]SnapshotKey `json:"last_key"`
	// RowsDone counts the rows handed on, over every run of this snapshot.
	RowsDone int64 `json:"rows_done"`
	// RowsEstimated is the server's estimate of the rows of all Tables (InnoDB's
	// TABLE_ROWS, which can be off by tens of percent); never below RowsDone.
	RowsEstimated int64 `json:"rows_estimated"`
	// ETA is the expected time to the end at this run's rate so far; 0 when unknown.
	ETA time.Duration `json:"eta"`
}

// SnapshotKey is one row's primary key values, in key order: int64, uint64, float64,
// string or []byte; temporal values are kept as the server writes them
// ("2024-02-29 23:59:58.123456"). Decoded from JSON its values are json.Number, string
// and nil; Snapshot converts them back with the table's column kinds.
type SnapshotKey []any

// UnmarshalJSON keeps numbers exact (as json.Number), so that 64-bit keys survive.
func (k *SnapshotKey) UnmarshalJSON(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var vals []any
	if err := d.Decode(&vals); err != nil {
		return fmt.Errorf("decoding snapshot key %s: %w", b, err)
	}
	*k = vals
	return nil
}

func (p SnapshotProgress) clone() SnapshotProgress {
	c := p
	c.Tables = append([]string(nil), p.Tables...)
	c.Done = make(map[string]bool, len(p.Done))
	for k, v := range p.Done {
		c.Done[k] = v
	}
	c.LastKey = make(map[string]SnapshotKey, len(p.LastKey))
	for k, v := range p.LastKey {
		c.LastKey[k] = append(SnapshotKey(nil), v...)
	}
	return c
}

// systemSchemas are never snapshotted, whatever the filter says.
var systemSchemas = map[string]bool{"mysql": true, "sys": true, "information_schema": true, "performance_schema": true}

// snapshotColumn is how one column is read and converted.
type snapshotColumn struct {
	name     string
	dataType string
	kind     ColumnKind
	decimals int // fractional second digits of DATETIME, TIMESTAMP and TIME
	// keyCast wraps the placeholder when the column is compared in a chunk's WHERE, so
	// that the comparison is of the column's own type (a DECIMAL compared with a string
	// would be compared as doubles).
	keyCast string
}

// snapshotTable is one table to read.
type snapshotTable struct {
	table    *Table
	quoted   string // `schema`.`table`
	cols     []snapshotColumn
	chunked  bool // false: read in one pass
	estimate int64
	engine   string
}

// Snapshot reads every table for which filter.Matches(schema, table) (never mysql, sys,
// information_schema or performance_schema) as of one instant, in primary-key chunks of
// opts.ChunkSize rows and about opts.ChunkBytes at most (chunkSizer), and hands each row
// to h.Row as a RowChange with Op OpRead, Before nil and After of the same kinds and
// values the binlog stream produces for that row. Its Source has the server's @@server_id, the instant's File and Pos, its GTID set in
// GTID, the instant's server time in TsMs, and a running index over the whole snapshot
// in Row. After the last row it calls h.Commit once with the returned position (a
// snapshot is one logical transaction for the checkpoint) and returns that position,
// from which the stream must start.
//
// On MariaDB the instant is a consistent-snapshot transaction and its
// binlog_snapshot_file/position, taken without any lock. On MySQL the tables are locked
// with FLUSH TABLES WITH READ LOCK only while the transaction starts and the position is
// read (this needs the RELOAD privilege). The transaction stays open until the last
// chunk, so InnoDB keeps the undo history of that whole time. Non-InnoDB tables are not
// consistent with it (a warning says so).
//
// Table shapes are read from information_schema when the snapshot opens, and each table
// is read with those columns. DDL during a snapshot is not made consistent: a column
// added later is not read (the stream brings its later changes), a dropped column makes
// the read fail (the snapshot can then be resumed), and an ALTER that rebuilds the table
// may make the server refuse the read.
//
// With opts.Resume set, the snapshot continues (at least once, see below) and returns
// opts.Resume.Position. An error leaves the rows handed on so far handed on; progress is
// what OnChunk last received.
//
// Rows of a table without a primary key (or whose key is an ENUM or SET, which sort by
// index but compare by label) are read in one pass in no particular order, with a
// warning; such a table cannot continue mid-way and is read again whole on resume.
//
// What a consumer sees:
//
//   - Uninterrupted snapshot (exactly once): every row that existed at the snapshot's
//     instant P exactly once, as op r, table after table in primary-key order; then one
//     Commit(P); then the binlog from P, i.e. exactly the transactions committed after the
//     instant. No change is missing and none is counted twice.
//   - Resumed snapshot (at least once): the first run published its rows as of instant P1
//     up to the last chunk whose progress was saved; the resumed run opens a new snapshot
//     at instant P2 (a consistent snapshot cannot be reopened) and publishes the rest as
//     of P2, skipping finished tables and continuing each unfinished one after its last
//     saved key (their Source names P2). Rows handed to the handler after the last saved
//     progress are read again.
//     Snapshot returns P1 and commits P1, so streaming replays every transaction after
//     P1: changes made between P1 and P2 come again for rows that were read at P2 (an
//     insert may then arrive after the row's r, an update's before-image may be older
//     than the r, a delete may name a row never read). Applied in order, the final
//     state is still right; no change after P1 is ever missing.
//
// A table altered after the snapshot's instant cannot be read in it (the server's error
// 1412): ErrTableChangedUnderSnapshot, which a new snapshot gets past.
func (s *Server) Snapshot(ctx context.Context, filter TableFilter, h Handler, opts SnapshotOptions) (Position, error) {
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 10000
	}
	if opts.ChunkBytes <= 0 {
		opts.ChunkBytes = DefaultChunkBytes
	}
	if opts.LogInterval <= 0 {
		opts.LogInterval = 5 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	tableNames, err := s.snapshotTableNames(ctx, filter)
	if err != nil {
		return Position{}, err
	}
	names := tableStrings(tableNames)
	prog := SnapshotProgress{Tables: names, Done: map[string]bool{}, LastKey: map[string]SnapshotKey{}}
	if r := opts.Resume; r != nil {
		if r.Position.IsZero() {
			return Position{}, fmt.Errorf("resuming snapshot: the saved progress has no position")
		}
		prog.Position, prog.RowsDone = r.Position, r.RowsDone
		for _, n := range names {
			if r.Done[n] {
				prog.Done[n] = true
			} else if k, ok := r.LastKey[n]; ok {
				prog.LastKey[n] = k
			}
		}
	}
	var remaining []string
	for _, n := range names {
		if !prog.Done[n] {
			remaining = append(remaining, n)
		}
	}
	if opts.Resume != nil && len(remaining) == 0 {
		log.Info("snapshot already complete", zap.Stringer("position", prog.Position), zap.Int("tables", len(names)))
		if err := h.Commit(ctx, prog.Position); err != nil {
			return Position{}, fmt.Errorf("committing snapshot at %s: %w", prog.Position, err)
		}
		return prog.Position, nil
	}

	conn, err := s.DB.Conn(ctx)
	if err != nil {
		return Position{}, fmt.Errorf("opening the snapshot connection: %w", err)
	}
	// The session's time zone and open transaction must not go back to the pool.
	defer discardConn(conn)
	if err := snapshotSession(ctx, conn); err != nil {
		return Position{}, err
	}
	inst, err := s.openSnapshot(ctx, conn)
	if err != nil {
		return Position{}, err
	}
	prog.ReadAt = inst.pos
	if opts.Resume == nil {
		prog.Position = inst.pos
	}

	tables := make([]*snapshotTable, 0, len(remaining))
	for i, t := range tableNames {
		st, err := s.snapshotShape(ctx, t.Schema, t.Name)
		if err != nil {
			return Position{}, err
		}
		prog.RowsEstimated += st.estimate
		if !prog.Done[names[i]] {
			tables = append(tables, st)
		}
	}
	prog.RowsEstimated = max(prog.RowsEstimated, prog.RowsDone)
	log.Info("snapshot started", zap.Stringer("position", prog.Position), zap.Stringer("read_at", inst.pos),
		zap.Bool("resumed", opts.Resume != nil), zap.Int("tables", len(names)), zap.Int("tables_left", len(tables)),
		zap.Int64("rows_done", prog.RowsDone), zap.Int64("rows_estimated", prog.RowsEstimated))

	r := &snapshotRun{
		conn: conn, h: h, opts: opts, log: log, inst: inst, prog: &prog,
		started: time.Now(), startRows: prog.RowsDone, lastLog: time.Now(),
	}
	for _, st := range tables {
		if err := r.readTable(ctx, st); err != nil {
			if sqlconn.ErrorNumber(err) == 1412 {
				err = fmt.Errorf("%w: %w", ErrTableChangedUnderSnapshot, err)
			}
			return Position{}, err
		}
	}
	if err := h.Commit(ctx, prog.Position); err != nil {
		return Position{}, fmt.Errorf("committing snapshot at %s: %w", prog.Position, err)
	}
	log.Info("snapshot done", zap.Stringer("position", prog.Position), zap.Int64("rows", prog.RowsDone),
		zap.Duration("took", time.Since(r.started)))
	return prog.Position, nil
}

// ErrTableChangedUnderSnapshot is a snapshot that met a table altered after its instant
// (MySQL error 1412, "Table definition has changed, please retry transaction"): DDL ran
// while it read, such as the next of several ALTERs while a seed after the first read.
// The snapshot cannot go on; one opened anew can.
var ErrTableChangedUnderSnapshot = errors.New("a table was altered while the snapshot read it")

// snapshotInstant is the instant a snapshot transaction reads at.
type snapshotInstant struct {
	pos      Position
	serverID uint32
	tsMs     int64
}

// snapshotSession prepares conn for snapshots: TIMESTAMPs read in UTC, transactions
// REPEATABLE READ. Such a connection must not go back to the pool (discardConn).
func snapshotSession(ctx context.Context, conn *sql.Conn) error {
	for _, q := range []string{"SET SESSION time_zone = '+00:00'", "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("preparing the snapshot session (%s): %w", q, err)
		}
	}
	return nil
}

// discardConn closes conn without returning it to the pool, for a connection whose
// session settings or open transaction no other user may inherit.
func discardConn(conn *sql.Conn) {
	conn.Raw(func(any) error { return driver.ErrBadConn })
	conn.Close()
}

// openSnapshot starts the consistent-snapshot transaction on conn, a snapshotSession,
// and returns its binlog position.
func (s *Server) openSnapshot(ctx context.Context, conn *sql.Conn) (snapshotInstant, error) {
	var inst snapshotInstant
	var err error
	if s.Flavor == "mariadb" {
		inst.pos, err = openMariaDBSnapshot(ctx, conn)
	} else {
		inst.pos, err = s.openMySQLSnapshot(ctx, conn)
	}
	if err != nil {
		return inst, err
	}
	if err := conn.QueryRowContext(ctx, "SELECT @@server_id, CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)").Scan(&inst.serverID, &inst.tsMs); err != nil {
		return inst, fmt.Errorf("reading the server id and time of the snapshot: %w", err)
	}
	return inst, nil
}

// openMariaDBSnapshot uses MariaDB's lock-free consistent snapshot: the transaction's
// binlog_snapshot_file/position name exactly the binlog point its reads see.
func openMariaDBSnapshot(ctx context.Context, conn *sql.Conn) (Position, error) {
	var p Position
	if _, err := conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
		return p, fmt.Errorf("starting the snapshot transaction: %w", err)
	}
	var name, file, pos string
	if err := conn.QueryRowContext(ctx, "SHOW STATUS LIKE 'binlog_snapshot_file'").Scan(&name, &file); err != nil {
		return p, fmt.Errorf("reading binlog_snapshot_file: %w", err)
	}
	if err := conn.QueryRowContext(ctx, "SHOW STATUS LIKE 'binlog_snapshot_position'").Scan(&name, &pos); err != nil {
		return p, fmt.Errorf("reading binlog_snapshot_position: %w", err)
	}
	n, err := strconv.ParseUint(pos, 10, 32)
	if err != nil || file == "" {
		return p, fmt.Errorf("reading the snapshot's binlog position: got file %q position %q; is log_bin on?", file, pos)
	}
	p.File, p.Pos = file, uint32(n)
	var gtid sql.NullString
	if err := conn.QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, ?)", p.File, p.Pos).Scan(&gtid); err != nil {
		return p, fmt.Errorf("reading the GTID position of %s: %w", p, err)
	}
	p.GTIDSet = gtid.String
	return p, nil
}

// openMySQLSnapshot holds FLUSH TABLES WITH READ LOCK only while the transaction starts
// and the position is read: commits wait for that instant, so the position is the
// snapshot's. (LOCK INSTANCE FOR BACKUP would not do: it does not stop commits.)
//
// Untested here: the test server is MariaDB.
func (s *Server) openMySQLSnapshot(ctx context.Context, conn *sql.Conn) (Position, error) {
	var p Position
	if _, err := conn.ExecContext(ctx, "FLUSH TABLES WITH READ LOCK"); err != nil {
		return p, fmt.Errorf("locking tables for the snapshot's position (FLUSH TABLES WITH READ LOCK needs the RELOAD privilege): %w", err)
	}
	locked := true
	defer func() {
		if locked {
			conn.ExecContext(context.WithoutCancel(ctx), "UNLOCK TABLES")
		}
	}()
	if _, err := conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
		return p, fmt.Errorf("starting the snapshot transaction: %w", err)
	}
	// Commits are blocked by our lock, so any connection reads the same position.
	p, err := s.CurrentPosition(ctx)
	if err != nil {
		return p, fmt.Errorf("reading the snapshot's position: %w", err)
	}
	locked = false
	if _, err := conn.ExecContext(ctx, "UNLOCK TABLES"); err != nil {
		return p, fmt.Errorf("unlocking tables after reading the snapshot's position: %w", err)
	}
	return p, nil
}

// snapshotTableNames lists the tables of data (DataTableTypes) the filter matches, sorted.
func (s *Server) snapshotTableNames(ctx context.Context, filter TableFilter) ([]TableName, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES
		WHERE TABLE_TYPE IN `+DataTableTypes+` ORDER BY TABLE_SCHEMA, TABLE_NAME`)
	if err != nil {
		return nil, fmt.Errorf("listing tables to snapshot: %w", err)
	}
	defer rows.Close()
	var names []TableName
	for rows.Next() {
		var schema, name string
		if err := rows.Scan(&schema, &name); err != nil {
			return nil, fmt.Errorf("listing tables to snapshot: %w", err)
		}
		if systemSchemas[strings.ToLower(schema)] || !filter.Matches(schema, name) {
			continue
		}
		names = append(names, TableName{schema, name})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing tables to snapshot: %w", err)
	}
	return names, nil
}

// snapshotShape reads a table's columns, kinds and primary key from information_schema,
// with the same kinds the binlog stream gives them.
func (s *Server) snapshotShape(ctx context.Context, schema, name string) (*snapshotTable, error) {
	st := &snapshotTable{
		table:  &Table{Schema: schema, Name: name},
		quoted: quoteName(schema) + "." + quoteName(name),
	}
	var estimate sql.NullInt64
	var engine sql.NullString
	if err := s.DB.QueryRowContext(ctx, `SELECT TABLE_ROWS, ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?`,
		schema, name).Scan(&estimate, &engine); err != nil {
		return nil, fmt.Errorf("reading the row estimate of %s: %w", st.table.FullName(), err)
	}
	st.estimate, st.engine = estimate.Int64, engine.String

	info, err := s.tableColumns(ctx, schema, name)
	if err != nil {
		return nil, err
	}
	rows, err := s.DB.QueryContext(ctx, `SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, DATETIME_PRECISION, CHARACTER_SET_NAME,
			NUMERIC_PRECISION, NUMERIC_SCALE
		FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, schema, name)
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s.%s: %w", schema, name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var c snapshotColumn
		var colType string
		var dtPrec, numPrec, numScale sql.NullInt64
		var charset sql.NullString
		if err := rows.Scan(&c.name, &c.dataType, &colType, &dtPrec, &charset, &numPrec, &numScale); err != nil {
			return nil, fmt.Errorf("reading the columns of %s.%s: %w", schema, name, err)
		}
		if c.name == info.rowStart || c.name == info.rowEnd {
			continue // a system-versioned table's period columns: as the stream, which leaves them out (versionedRows)
		}
		c.dataType = strings.ToLower(c.dataType)
		c.decimals = int(dtPrec.Int64)
		c.kind = snapshotKind(c.dataType, strings.Contains(strings.ToLower(colType), "unsigned"), charset.String, info.json[c.name])
		switch c.kind {
		case KindDecimal:
			c.keyCast = fmt.Sprintf("CAST(? AS DECIMAL(%d,%d))", numPrec.Int64, numScale.Int64)
		case KindDate:
			c.keyCast = "CAST(? AS DATE)"
		case KindDateTime:
			c.keyCast = "CAST(? AS DATETIME(6))"
		case KindTime:
			c.keyCast = "CAST(? AS TIME(6))"
		}
		st.cols = append(st.cols, c)
		st.table.Columns = append(st.table.Columns, Column{Name: c.name, Kind: c.kind})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the columns of %s.%s: %w", schema, name, err)
	}
	rows.Close()
	if len(st.cols) == 0 {
		return nil, fmt.Errorf("reading the columns of %s.%s: the table has none (dropped?)", schema, name)
	}

	krows, err := s.DB.QueryContext(ctx, `SELECT COLUMN_NAME FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX`, schema, name)
	if err != nil {
		return nil, fmt.Errorf("reading the primary key of %s.%s: %w", schema, name, err)
	}
	defer krows.Close()
	for krows.Next() {
		var col string
		if err := krows.Scan(&col); err != nil {
			return nil, fmt.Errorf("reading the primary key of %s.%s: %w", schema, name, err)
		}
		if i := st.table.ColumnIndex(col); i >= 0 {
			st.table.PrimaryKey = append(st.table.PrimaryKey, i)
		}
	}
	if err := krows.Err(); err != nil {
		return nil, fmt.Errorf("reading the primary key of %s.%s: %w", schema, name, err)
	}
	st.chunked = len(st.table.PrimaryKey) > 0
	for _, i := range st.table.PrimaryKey {
		if k := st.cols[i].kind; k == KindEnum || k == KindSet || k == KindJSON {
			st.chunked = false
		}
	}
	return st, nil
}

// snapshotKind maps information_schema's DATA_TYPE to the kind the binlog stream gives
// the same column (see columnKind).
func snapshotKind(dataType string, unsigned bool, charset string, isJSON bool) ColumnKind {
	switch dataType {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint":
		if unsigned {
			return KindUint
		}
		return KindInt
	case "decimal", "numeric":
		return KindDecimal
	case "float", "double", "real", "double precision":
		return KindFloat
	case "bit":
		return KindBit
	case "year":
		return KindYear
	case "date":
		return KindDate
	case "datetime", "timestamp":
		return KindDateTime
	case "time":
		return KindTime
	case "json":
		return KindJSON
	case "enum":
		return KindEnum
	case "set":
		return KindSet
	case "uuid", "inet4", "inet6":
		// MariaDB's: SQL prints them, and the stream prints the binlog's bytes alike
		// (mariadbTypeText).
		return KindString
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext":
		if isJSON {
			return KindJSON
		}
		if strings.EqualFold(charset, "binary") {
			return KindBytes
		}
		return KindString
	}
	// binary, varbinary, blobs, geometry and anything unknown: exact bytes.
	return KindBytes
}

func quoteName(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// snapshotRun is the state of one Snapshot call.
type snapshotRun struct {
	conn      *sql.Conn
	h         Handler
	opts      SnapshotOptions
	log       *zap.Logger
	inst      snapshotInstant
	prog      *SnapshotProgress
	started   time.Time
	startRows int64
	lastLog   time.Time
}

// selectList names the columns to read; temporal ones are read as the server writes
// them (in the session's UTC), which keeps zero and partly zero dates and the column's
// own fractional digits.
func (st *snapshotTable) selectList() string {
	parts := make([]string, len(st.cols))
	for i, c := range st.cols {
		parts[i] = quoteName(c.name)
		switch c.kind {
		case KindDate, KindDateTime, KindTime:
			parts[i] = "CAST(" + parts[i] + " AS CHAR)"
		}
	}
	return strings.Join(parts, ", ")
}

// chunkQuery is the query for the chunk after a key: the row comparison (k1, k2) > (?, ?)
// spelled out, which every server's range optimizer reads as a range on the key. Its
// last placeholder is the LIMIT, which chunkSizer sets chunk by chunk.
func (st *snapshotTable) chunkQuery(after bool) string {
	var b strings.Builder
	b.WriteString("SELECT " + st.selectList() + " FROM " + st.quoted)
	key := st.table.PrimaryKey
	if after {
		first := st.cols[key[0]]
		b.WriteString(" WHERE " + quoteName(first.name) + " >= " + first.placeholder() + " AND (")
		for i := range key {
			if i > 0 {
				b.WriteString(" OR ")
			}
			b.WriteString("(")
			for j := 0; j < i; j++ {
				c := st.cols[key[j]]
				b.WriteString(quoteName(c.name) + " = " + c.placeholder() + " AND ")
			}
			c := st.cols[key[i]]
			b.WriteString(quoteName(c.name) + " > " + c.placeholder() + ")")
		}
		b.WriteString(")")
	}
	b.WriteString(" ORDER BY ")
	for i, k := range key {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteName(st.cols[k].name))
	}
	b.WriteString(" LIMIT ?")
	return b.String()
}

func (c snapshotColumn) placeholder() string {
	if c.keyCast != "" {
		return c.keyCast
	}
	return "?"
}

// chunkArgs are the arguments of chunkQuery(true, …) for key.
func chunkArgs(key SnapshotKey) []any {
	args := []any{key[0]}
	for i := range key {
		args = append(args, key[:i+1]...)
	}
	return args
}

func (r *snapshotRun) readTable(ctx context.Context, st *snapshotTable) error {
	name := st.table.FullName()
	if st.engine != "" && !strings.EqualFold(st.engine, "InnoDB") {
		r.log.Warn("table is not transactional: its snapshot is not consistent with the position",
			zap.String("table", name), zap.String("engine", st.engine))
	}
	if !st.chunked {
		return r.readWhole(ctx, st)
	}
	var last SnapshotKey
	if k, ok := r.prog.LastKey[name]; ok {
		var err error
		if last, err = st.keyFromSaved(k); err != nil {
			return fmt.Errorf("resuming snapshot of %s: %w", name, err)
		}
	}
	r.log.Debug("snapshot of table started", zap.String("table", name), zap.Int64("rows_estimated", st.estimate),
		zap.Bool("resumed", last != nil))
	stmts, err := st.prepareChunks(ctx, r.conn)
	if err != nil {
		return err
	}
	defer stmts.close()
	sizer := &chunkSizer{rows: r.opts.ChunkSize, bytes: r.opts.ChunkBytes}
	for {
		// The chunk is read whole before it is handed on, so that a slow handler never
		// holds the server's result set open (net_write_timeout).
		chunk, err := stmts.read(ctx, st, last, sizer)
		if err != nil {
			return fmt.Errorf("reading chunk of %s after %v: %w", name, []any(last), err)
		}
		for _, vals := range chunk.rows {
			if err := r.emit(ctx, st, vals); err != nil {
				return err
			}
		}
		done := !chunk.more
		if len(chunk.rows) > 0 {
			last = chunk.last
			r.prog.LastKey[name] = last
		}
		if done {
			r.prog.Done[name] = true
			delete(r.prog.LastKey, name)
		}
		if len(chunk.rows) > 0 || done {
			if err := r.chunkDone(ctx, name); err != nil {
				return err
			}
		}
		if done {
			r.log.Debug("snapshot of table done", zap.String("table", name), zap.Int64("rows_done", r.prog.RowsDone))
			return nil
		}
	}
}

// readWhole reads a table that cannot be chunked in one pass, handing rows on as they
// come; progress is reported once, at the end.
func (r *snapshotRun) readWhole(ctx context.Context, st *snapshotTable) error {
	name := st.table.FullName()
	why := "it has no primary key"
	if len(st.table.PrimaryKey) > 0 {
		why = "its primary key has an ENUM or SET column"
	}
	r.log.Warn("table cannot be read in key chunks: reading it in one pass; an interrupted snapshot reads it again whole",
		zap.String("table", name), zap.String("reason", why), zap.Int64("rows_estimated", st.estimate))
	stmts, err := st.prepareChunks(ctx, r.conn)
	if err != nil {
		return err
	}
	defer stmts.close()
	rows, err := stmts.first.QueryContext(ctx)
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	defer rows.Close()
	for rows.Next() {
		vals, _, err := st.scan(rows)
		if err != nil {
			return fmt.Errorf("reading %s: %w", name, err)
		}
		if err := r.emit(ctx, st, vals); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	rows.Close()
	r.prog.Done[name] = true
	delete(r.prog.LastKey, name)
	if err := r.chunkDone(ctx, name); err != nil {
		return err
	}
	r.log.Debug("snapshot of table done", zap.String("table", name), zap.Int64("rows_done", r.prog.RowsDone))
	return nil
}

// chunkStmts are the two prepared queries of a table's chunks: the first chunk, and the
// chunk after a key; for a table that cannot be chunked, first reads it whole and next is
// nil. Prepared statements use the binary protocol, which carries FLOAT and DOUBLE
// exactly (the text protocol rounds FLOAT to 6 digits).
type chunkStmts struct{ first, next *sql.Stmt }

func (st *snapshotTable) prepareChunks(ctx context.Context, conn *sql.Conn) (chunkStmts, error) {
	var c chunkStmts
	var err error
	if !st.chunked {
		if c.first, err = conn.PrepareContext(ctx, "SELECT "+st.selectList()+" FROM "+st.quoted); err != nil {
			return c, fmt.Errorf("preparing the read of %s: %w", st.table.FullName(), err)
		}
		return c, nil
	}
	if c.first, err = conn.PrepareContext(ctx, st.chunkQuery(false)); err != nil {
		return c, fmt.Errorf("preparing the first chunk query of %s: %w", st.table.FullName(), err)
	}
	if c.next, err = conn.PrepareContext(ctx, st.chunkQuery(true)); err != nil {
		c.first.Close()
		return c, fmt.Errorf("preparing the chunk query of %s: %w", st.table.FullName(), err)
	}
	return c, nil
}

// chunkSizer sizes the chunks of one table: at most rows rows, ending early after the row
// that brings the chunk's values to bytes (readRows). A chunk that ends early leaves the
// rest of its result to the driver, which reads and discards it; so once a chunk has
// shown how large the table's rows are, the next asks the server for no more rows than
// fit in bytes at that size. A table's first chunk cannot know: for a table of large rows
// the server sends up to rows rows of which the chunk keeps those that fit.
type chunkSizer struct {
	rows     int
	bytes    int64
	rowBytes int64 // the mean size of the rows of the last chunk read; 0: none read yet
}

// limit is the LIMIT of the next chunk's query.
func (z *chunkSizer) limit() int {
	if z.rowBytes > 0 && z.bytes/z.rowBytes < int64(z.rows) {
		return max(int(z.bytes/z.rowBytes), 1)
	}
	return z.rows
}

// chunkRead is one chunk as read: its rows' values, the key of its last row (nil when it
// has none, or for a table read whole), their size (rowSize), and whether rows may follow
// it in the table (the chunk ended at its row limit or at its byte cap).
type chunkRead struct {
	rows  [][]any
	last  SnapshotKey
	bytes int64
	more  bool
}

// read reads the chunk of st after after (nil: its first), sized by z; a table that
// cannot be chunked is read whole, whatever its size.
func (c chunkStmts) read(ctx context.Context, st *snapshotTable, after SnapshotKey, z *chunkSizer) (chunkRead, error) {
	if c.next == nil {
		rows, err := c.first.QueryContext(ctx)
		if err != nil {
			return chunkRead{}, err
		}
		return st.readRows(rows, nil, 0)
	}
	limit := z.limit()
	var rows *sql.Rows
	var err error
	if after == nil {
		rows, err = c.first.QueryContext(ctx, limit)
	} else {
		rows, err = c.next.QueryContext(ctx, append(chunkArgs(after), limit)...)
	}
	if err != nil {
		return chunkRead{}, err
	}
	chunk, err := st.readRows(rows, after, z.bytes)
	if err != nil {
		return chunkRead{}, err
	}
	chunk.more = chunk.more || len(chunk.rows) == limit
	if n := int64(len(chunk.rows)); n > 0 {
		z.rowBytes = max(chunk.bytes/n, 1)
	}
	return chunk, nil
}

func (c chunkStmts) close() {
	c.first.Close()
	if c.next != nil {
		c.next.Close()
	}
}

// readRows reads a chunk's result and closes it: each row's values as the stream gives
// them, and the key of the last row (nil when there is none). It stops after the row that
// brings the values read to maxBytes (0: no cap), with more set: the rest of the result is
// discarded, for the next chunk to read after last. A last key equal to after, the key
// the chunk was read after, is an error, so that no read loops on one chunk.
func (st *snapshotTable) readRows(rows *sql.Rows, after SnapshotKey, maxBytes int64) (chunkRead, error) {
	defer rows.Close()
	var chunk chunkRead
	var raw []any
	for rows.Next() {
		var vals []any
		var err error
		if vals, raw, err = st.scan(rows); err != nil {
			return chunkRead{}, err
		}
		chunk.rows = append(chunk.rows, vals)
		chunk.bytes += rowSize(vals)
		if maxBytes > 0 && chunk.bytes >= maxBytes {
			chunk.more = true
			break
		}
	}
	if err := rows.Err(); err != nil {
		return chunkRead{}, err
	}
	if len(chunk.rows) == 0 || len(st.table.PrimaryKey) == 0 {
		return chunk, nil
	}
	chunk.last = st.keyOf(raw)
	if reflect.DeepEqual(chunk.last, after) {
		// The server compared the key otherwise than it orders it.
		return chunkRead{}, errors.New("the chunk ends at the same key; the key's comparison and order disagree")
	}
	return chunk, nil
}

// rowSize is about what a row's values hold in memory: strings and bytes by their
// length, and each value an interface of 16 bytes.
func rowSize(vals []any) int64 {
	n := int64(16 * len(vals))
	for _, v := range vals {
		switch x := v.(type) {
		case string:
			n += int64(len(x))
		case []byte:
			n += int64(len(x))
		}
	}
	return n
}

// row is the RowChange of one row read at inst: op r, its Source naming the instant, and
// index its running number in the read.
func (inst snapshotInstant) row(st *snapshotTable, vals []any, index int64) *RowChange {
	return &RowChange{Op: OpRead, Table: st.table, After: vals, Source: Source{Snapshot: true,
		ServerID: inst.serverID, GTID: inst.pos.GTIDSet, File: inst.pos.File, Pos: inst.pos.Pos,
		TsMs: inst.tsMs, Row: int(index),
	}}
}

func (r *snapshotRun) emit(ctx context.Context, st *snapshotTable, vals []any) error {
	c := r.inst.row(st, vals, r.prog.RowsDone)
	if err := r.h.Row(ctx, c); err != nil {
		return fmt.Errorf("handling snapshot row %d of %s: %w", c.Source.Row, st.table.FullName(), err)
	}
	r.prog.RowsDone++
	return nil
}

// chunkDone updates the estimate and ETA, logs now and then and calls OnChunk.
func (r *snapshotRun) chunkDone(ctx context.Context, table string) error {
	p := r.prog
	p.RowsEstimated = max(p.RowsEstimated, p.RowsDone)
	if len(p.Done) == len(p.Tables) {
		p.RowsEstimated = p.RowsDone // the estimate was only that
	}
	p.ETA = 0
	if rows, took := p.RowsDone-r.startRows, time.Since(r.started); rows > 0 && p.RowsEstimated > p.RowsDone {
		p.ETA = time.Duration(float64(took) / float64(rows) * float64(p.RowsEstimated-p.RowsDone)).Round(time.Second)
	}
	if time.Since(r.lastLog) >= r.opts.LogInterval {
		r.lastLog = time.Now()
		r.log.Info("snapshot progress", zap.String("table", table), zap.Int64("rows_done", p.RowsDone),
			zap.Int64("rows_estimated", p.RowsEstimated), zap.Duration("eta", p.ETA))
	}
	if r.opts.OnChunk != nil {
		if err := r.opts.OnChunk(ctx, p.clone()); err != nil {
			return fmt.Errorf("saving snapshot progress after a chunk of %s (%d rows done): %w", table, p.RowsDone, err)
		}
	}
	return nil
}

// scan reads one row: the values as the stream gives them, and the row as read (for
// the key of the next chunk).
func (st *snapshotTable) scan(rows *sql.Rows) (vals, raw []any, err error) {
	raw = make([]any, len(st.cols))
	ptrs := make([]any, len(st.cols))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, nil, err
	}
	vals = make([]any, len(st.cols))
	for i, c := range st.cols {
		if vals[i], err = c.value(raw[i]); err != nil {
			return nil, nil, fmt.Errorf("converting column %s: %w", c.name, err)
		}
	}
	return vals, raw, nil
}

// value converts a value as read (binary protocol, temporal ones as text) to the type
// and form the binlog stream gives the same value (see normalizeValue).
func (c snapshotColumn) value(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch c.kind {
	case KindInt, KindYear:
		return toInt64(v)
	case KindUint:
		return toUint64(v)
	case KindBit:
		return bitValue(v)
	case KindFloat:
		switch x := v.(type) {
		case float32:
			return widenFloat32(x), nil
		case float64:
			return x, nil
		}
		size := 64
		if c.dataType == "float" {
			size = 32
		}
		f, err := strconv.ParseFloat(asString(v), size)
		if err != nil {
			return nil, fmt.Errorf("parsing float %q: %w", asString(v), err)
		}
		if size == 32 {
			f = widenFloat32(float32(f))
		}
		return f, nil
	case KindDecimal, KindString, KindEnum, KindSet:
		return asString(v), nil
	case KindBytes:
		return asBytes(v), nil // BINARY(n) comes padded to n bytes, as the stream pads it
	case KindJSON:
		b := asBytes(v)
		if len(b) == 0 {
			return []byte("null"), nil
		}
		return b, nil
	case KindDate:
		s := asString(v)
		if strings.HasPrefix(s, "0000-00-00") {
			return nil, nil
		}
		return s, nil
	case KindDateTime:
		return dateTimeText(asString(v), c.decimals)
	case KindTime:
		// The stream writes the fraction only when it is not zero.
		s := asString(v)
		if i := strings.IndexByte(s, '.'); i >= 0 && strings.Trim(s[i+1:], "0") == "" {
			s = s[:i]
		}
		return s, nil
	}
	return v, nil
}

// dateTimeText turns "YYYY-MM-DD HH:MM:SS[.ffffff]" into RFC 3339 in UTC with the
// column's fractional digits, as formatDateTime does; zero dates are NULL.
func dateTimeText(s string, decimals int) (any, error) {
	if strings.HasPrefix(s, "0000-00-00") {
		return nil, nil
	}
	if len(s) < 19 || s[10] != ' ' {
		return nil, fmt.Errorf("unexpected datetime %q", s)
	}
	frac := ""
	if len(s) > 20 && s[19] == '.' {
		frac = s[20:]
	}
	decimals = min(max(decimals, 0), 6)
	for len(frac) < decimals {
		frac += "0"
	}
	frac = frac[:decimals]
	out := s[:10] + "T" + s[11:19]
	if decimals > 0 {
		out += "." + frac
	}
	return out + "Z", nil
}

func asString(v any) string {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case string:
		return x
	}
	return fmt.Sprint(v)
}

func asBytes(v any) []byte {
	switch x := v.(type) {
	case []byte:
		return x
	case string:
		return []byte(x)
	}
	return []byte(fmt.Sprint(v))
}

func toInt64(v any) (any, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case uint64:
		return int64(x), nil
	case []byte, string:
		n, err := strconv.ParseInt(asString(x), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parsing integer %q: %w", asString(x), err)
		}
		return n, nil
	}
	return nil, fmt.Errorf("unexpected %T for an integer", v)
}

func toUint64(v any) (any, error) {
	switch x := v.(type) {
	case int64:
		return uint64(x), nil
	case uint64:
		return x, nil
	case []byte, string:
		n, err := strconv.ParseUint(asString(x), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parsing unsigned integer %q: %w", asString(x), err)
		}
		return n, nil
	}
	return nil, fmt.Errorf("unexpected %T for an unsigned integer", v)
}

// bitValue reads a BIT value: big-endian bytes on the wire.
func bitValue(v any) (uint64, error) {
	switch x := v.(type) {
	case []byte:
		if len(x) > 8 {
			return 0, fmt.Errorf("BIT value of %d bytes", len(x))
		}
		var buf [8]byte
		copy(buf[8-len(x):], x)
		return binary.BigEndian.Uint64(buf[:]), nil
	case int64:
		return uint64(x), nil
	case uint64:
		return x, nil
	}
	return 0, fmt.Errorf("unexpected %T for a BIT", v)
}

// keyOf is the chunk key of a row as read: each key column as the comparison in the
// chunk query wants it.
func (st *snapshotTable) keyOf(raw []any) SnapshotKey {
	key := make(SnapshotKey, len(st.table.PrimaryKey))
	for i, ci := range st.table.PrimaryKey {
		c, v := st.cols[ci], raw[ci]
		switch c.kind {
		case KindInt, KindYear:
			key[i], _ = toInt64(v)
		case KindUint:
			key[i], _ = toUint64(v)
		case KindBit:
			key[i], _ = bitValue(v)
		case KindFloat:
			switch x := v.(type) {
			case float32:
				key[i] = float64(x)
			case float64:
				key[i] = x
			default:
				key[i], _ = strconv.ParseFloat(asString(v), 64)
			}
		case KindBytes:
			key[i] = asBytes(v)
		default:
			key[i] = asString(v)
		}
	}
	return key
}

// keyFromSaved converts a saved key (possibly decoded from JSON) back to keyOf's types.
func (st *snapshotTable) keyFromSaved(k SnapshotKey) (SnapshotKey, error) {
	if len(k) != len(st.table.PrimaryKey) {
		return nil, fmt.Errorf("the saved key %v has %d values for a primary key of %d columns", []any(k), len(k), len(st.table.PrimaryKey))
	}
	out := make(SnapshotKey, len(k))
	for i, ci := range st.table.PrimaryKey {
		c, v := st.cols[ci], k[i]
		if v == nil {
			return nil, fmt.Errorf("the saved key %v has a NULL in column %s", []any(k), c.name)
		}
		if n, ok := v.(json.Number); ok {
			v = string(n)
		}
		var err error
		switch c.kind {
		case KindInt, KindYear:
			out[i], err = toInt64(v)
		case KindUint, KindBit:
			out[i], err = toUint64(v)
		case KindFloat:
			switch x := v.(type) {
			case float64:
				out[i] = x
			case string:
				var f float64
				f, err = strconv.ParseFloat(x, 64)
				out[i] = f
			default:
				err = fmt.Errorf("unexpected %T", v)
			}
		case KindBytes:
			switch x := v.(type) {
			case []byte:
				out[i] = x
			case string:
				out[i], err = base64.StdEncoding.DecodeString(x)
			default:
				err = fmt.Errorf("unexpected %T", v)
			}
		default:
			s, ok := v.(string)
			if !ok {
				err = fmt.Errorf("unexpected %T", v)
			}
			out[i] = s
		}
		if err != nil {
			return nil, fmt.Errorf("the saved key's column %s (%v): %w", c.name, k[i], err)
		}
	}
	return out, nil
}
