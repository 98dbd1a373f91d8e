package canal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/go-mysql-org/go-mysql/mysql"
	"go.uber.org/zap"
)

// Chunk is one primary-key chunk of a table read by a ChunkReader: its rows as of At, the
// binlog position its consistent snapshot names.
type Chunk struct {
	At    Position
	Table string // schema.table
	// Rows are op r, Before nil, in primary-key order, of the same kinds and values the
	// stream gives; their Source names At, and Source.Row runs over the whole read.
	Rows []*RowChange
	// Then is where the read goes on after this chunk: what to save once the chunk is
	// published, for a read that may have to go on in another process (Seek).
	Then ChunkCursor

	start chunkStart // where the chunk's read began, for Rewind
}

// ChunkCursor is where a ChunkReader stands between two chunks. It encodes to JSON and
// back without loss (as SnapshotProgress does), so that a read can go on from it later,
// in another process, with Seek.
type ChunkCursor struct {
	// Done are the tables read to the end, as TableName.String writes them.
	Done []string `json:"done,omitempty"`
	// Table is the table the read stopped in, After the primary key of its last row read
	// (nil: its start). "": none; the zero ChunkCursor is the start of the read.
	Table string      `json:"table,omitempty"`
	After SnapshotKey `json:"after,omitempty"`
	// Rows counts the rows handed out before it.
	Rows int64 `json:"rows"`
}

// ChunkReader reads tables one primary-key chunk at a time, each chunk in a consistent
// snapshot of its own that ends before the next one is read, and names the binlog
// position each chunk is of: an incremental snapshot, which lets the caller stream the
// binlog between two chunks and hand each chunk on where the stream reaches its
// position (Chunk.At), so that no row is published older than a change already
// published. Rows inserted before a chunk's key range after it was read come by the
// stream, as every change after At does.
//
// On MariaDB a chunk's snapshot takes no lock. On MySQL each chunk's snapshot holds
// FLUSH TABLES WITH READ LOCK for the instant its position is read (untested here).
// A table without a usable primary key (see Snapshot) is one chunk, read whole. A table's
// shape is read from information_schema when the read reaches it.
type ChunkReader struct {
	s      *Server
	conn   *sql.Conn
	size   int   // rows per chunk
	bytes  int64 // a chunk ends early at this size of row values (chunkSizer)
	log    *zap.Logger
	names  []TableName // every table matched
	order  []TableName // the tables to read, in order
	done   []TableName // tables a Seek found read already
	shapes map[TableName]*snapshotTable
	stmts  map[*snapshotTable]chunkStmts
	sizers map[*snapshotTable]*chunkSizer
	cur    chunkStart // where the next chunk begins
	closed bool
}

// chunkStart is where a chunk's read begins.
type chunkStart struct {
	at   int         // the table, an index of order
	last SnapshotKey // the key the chunk of order[at] is read after; nil: its start
	rows int64       // rows handed out before it
}

// ReadChunks prepares the reading of every table filter matches (never the system
// schemas), in chunks of chunkSize rows (default 10000) that end early at
// DefaultChunkBytes of row values, after the row that reaches it. Close it when done.
func (s *Server) ReadChunks(ctx context.Context, filter TableFilter, chunkSize int, log *zap.Logger) (*ChunkReader, error) {
	if chunkSize <= 0 {
		chunkSize = 10000
	}
	if log == nil {
		log = zap.NewNop()
	}
	names, err := s.snapshotTableNames(ctx, filter)
	if err != nil {
		return nil, err
	}
	r := &ChunkReader{s: s, size: chunkSize, bytes: DefaultChunkBytes, log: log, names: names, order: names,
		shapes: map[TableName]*snapshotTable{}, stmts: map[*snapshotTable]chunkStmts{}, sizers: map[*snapshotTable]*chunkSizer{}}
	if r.conn, err = s.DB.Conn(ctx); err != nil {
		return nil, fmt.Errorf("opening the connection of a chunked read: %w", err)
	}
	if err := snapshotSession(ctx, r.conn); err != nil {
		discardConn(r.conn)
		return nil, err
	}
	return r, nil
}

// Tables are the tables being read, as TableName.String writes them (with those a Seek
// found read).
func (r *ChunkReader) Tables() []string { return tableStrings(r.names) }

// ErrCursorMismatch is a ChunkCursor that no longer fits its table (its primary key
// changed): the read cannot go on from it.
var ErrCursorMismatch = errors.New("the saved cursor does not fit the table")

// Seek makes the read go on from c, a Chunk's Then saved earlier, maybe by another
// process: the tables c names done are not read again, c.Table goes on after c.After,
// and every other table the filter matches now is read whole (one added since, say).
// A table c names that is gone is passed over. Call it before the first Next.
func (r *ChunkReader) Seek(ctx context.Context, c ChunkCursor) error {
	done := map[string]bool{}
	for _, n := range c.Done {
		done[n] = true
	}
	var left []TableName
	var stoppedIn TableName
	stopped := false
	for _, name := range r.names {
		switch s := name.String(); {
		case done[s]:
			r.done = append(r.done, name)
		case s == c.Table:
			stopped, stoppedIn = true, name
		default:
			left = append(left, name)
		}
	}
	r.cur = chunkStart{rows: c.Rows}
	if stopped {
		// The table the read stopped in goes first, from where it stopped.
		left = append([]TableName{stoppedIn}, left...)
		st, err := r.shape(ctx, stoppedIn)
		if err != nil {
			return err
		}
		if c.After != nil && st.chunked {
			if r.cur.last, err = st.keyFromSaved(c.After); err != nil {
				return fmt.Errorf("%w: going on with the chunked read of %s: %w", ErrCursorMismatch, c.Table, err)
			}
		}
	}
	r.order = left
	return nil
}

// shape is the shape of table name, read when the read first needs it.
func (r *ChunkReader) shape(ctx context.Context, name TableName) (*snapshotTable, error) {
	if st := r.shapes[name]; st != nil {
		return st, nil
	}
	st, err := r.s.snapshotShape(ctx, name.Schema, name.Name)
	if err != nil {
		return nil, err
	}
	if !st.chunked {
		r.log.Warn("table cannot be read in key chunks: it is read whole, as one chunk held in memory",
			zap.Stringer("table", name), zap.Int64("rows_estimated", st.estimate))
	}
	r.shapes[name] = st
	return st, nil
}

// cursor is where the read stands now.
func (r *ChunkReader) cursor() ChunkCursor {
	c := ChunkCursor{Done: append(tableStrings(r.done), tableStrings(r.order[:r.cur.at])...), Rows: r.cur.rows}
	if r.cur.at < len(r.order) {
		c.Table, c.After = r.order[r.cur.at].String(), slices.Clone(r.cur.last)
	}
	return c
}

// Next reads the next chunk that has rows, in a consistent snapshot of its own; nil once
// every table is read.
func (r *ChunkReader) Next(ctx context.Context) (*Chunk, error) {
	start := r.cur
	if r.cur.at == len(r.order) {
		return nil, nil
	}
	inst, err := r.s.openSnapshot(ctx, r.conn)
	if err != nil {
		return nil, err
	}
	// The snapshot ends whatever happens: a chunk is read in a transaction of its own.
	defer r.conn.ExecContext(context.WithoutCancel(ctx), "COMMIT")
	for ; r.cur.at < len(r.order); r.cur.at, r.cur.last = r.cur.at+1, nil {
		st, err := r.shape(ctx, r.order[r.cur.at])
		if err != nil {
			return nil, err
		}
		chunk, err := r.read(ctx, st)
		if err != nil {
			return nil, fmt.Errorf("reading a chunk of %s after %v: %w", st.table.FullName(), []any(r.cur.last), err)
		}
		if len(chunk.rows) == 0 {
			continue
		}
		c := &Chunk{At: inst.pos, Table: st.table.FullName(), Rows: make([]*RowChange, len(chunk.rows)), start: start}
		for i, v := range chunk.rows {
			c.Rows[i] = inst.row(st, v, r.cur.rows)
			r.cur.rows++
		}
		if !chunk.more { // the table's last chunk
			r.cur.at, r.cur.last = r.cur.at+1, nil
		} else {
			r.cur.last = chunk.last
		}
		c.Then = r.cursor()
		return c, nil
	}
	return nil, nil
}

// read reads the chunk of st after r.cur.last (a table that cannot be chunked: whole).
func (r *ChunkReader) read(ctx context.Context, st *snapshotTable) (chunkRead, error) {
	stmts, ok := r.stmts[st]
	if !ok {
		var err error
		if stmts, err = st.prepareChunks(ctx, r.conn); err != nil {
			return chunkRead{}, err
		}
		r.stmts[st] = stmts
		r.sizers[st] = &chunkSizer{rows: r.size, bytes: r.bytes}
	}
	return stmts.read(ctx, st, r.cur.last, r.sizers[st])
}

// Rewind makes the next Next read c's key range again, in a new snapshot, and go on
// from there: for a chunk whose position the stream went past. Chunks read after c are
// read again too.
func (r *ChunkReader) Rewind(c *Chunk) { r.cur = c.start }

// Close releases the connection; its session settings never go back to the pool.
func (r *ChunkReader) Close() {
	if r.closed {
		return
	}
	r.closed = true
	for _, s := range r.stmts {
		s.close()
	}
	discardConn(r.conn)
}

// SamePoint reports whether two positions of the server have no transaction between
// them: equal, or (MariaDB) with the same GTID position, or (MySQL) with the same
// executed GTID set. Two ends of a binlog rotation are the same point.
func (s *Server) SamePoint(ctx context.Context, a, b Position) (bool, error) {
	if a.File == b.File && a.Pos == b.Pos {
		return true, nil
	}
	if s.Flavor != "mariadb" {
		// The stream's set and the server's are written by two printers: compare sets.
		if a.GTIDSet == "" || b.GTIDSet == "" {
			return false, nil
		}
		ga, err := mysql.ParseGTIDSet(s.Flavor, a.GTIDSet)
		if err != nil {
			return false, fmt.Errorf("parsing the GTID set of %s: %w", a, err)
		}
		gb, err := mysql.ParseGTIDSet(s.Flavor, b.GTIDSet)
		if err != nil {
			return false, fmt.Errorf("parsing the GTID set of %s: %w", b, err)
		}
		return ga.Equal(gb), nil
	}
	var ga, gb sql.NullString
	if err := s.DB.QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, ?), BINLOG_GTID_POS(?, ?)", a.File, a.Pos, b.File, b.Pos).Scan(&ga, &gb); err != nil {
		return false, fmt.Errorf("comparing the GTID positions of %s and %s: %w", a, b, err)
	}
	return ga.Valid && gb.Valid && ga.String == gb.String, nil
}

// tableStrings is names as TableName.String writes them.
func tableStrings(names []TableName) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n.String()
	}
	return out
}
