package canal

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/stocksync/stocksync/internal/sqlconn"
)

// Config is how to reach the server whose binlog is read.
type Config struct {
	Addr     string
	User     string
	Password string
	// ServerID is our replica id; unique among the server's replicas.
	ServerID uint32
	// Flavor is "mysql" or "mariadb"; empty detects it.
	Flavor string
	// TLS, when set, encrypts the SQL connections and the binlog stream.
	TLS *tls.Config
	// Checkpoint names the checkpoint the stream serves (its lock's name): streams register
	// with the server under a host name made from it (replicaHost), so that CheckServerID
	// tells a registration of this checkpoint's daemon from anyone else's.
	Checkpoint string
	// RenamedAwayWait is how long a table an aggregate or transition rule reads may stay
	// renamed away, no table having its name on the server, before the stream takes it
	// as dropped and seeds the rules without it; 0 is DefaultRenamedAwayWait.
	RenamedAwayWait time.Duration
}

// DefaultRenamedAwayWait is Config.RenamedAwayWait's default: far longer than a two-step
// cut-over's gap (milliseconds), short enough that a table renamed away for good holds
// the stream up for a minute, not until an operator comes.
const DefaultRenamedAwayWait = time.Minute

// renamedAwayWait is RenamedAwayWait or its default.
func (c Config) renamedAwayWait() time.Duration {
	if c.RenamedAwayWait > 0 {
		return c.RenamedAwayWait
	}
	return DefaultRenamedAwayWait
}

// ErrUnreachable marks a source that could not be connected to; it is worth retrying.
var ErrUnreachable = errors.New("source unreachable")

// ErrBinlogSettings marks a server whose settings keep its binlog from being streamed
// (log_bin off, binlog_format, binlog_row_image, binlog_row_metadata). At a daemon's first
// start it is a mistake to report at once; met again later, it is a SET GLOBAL made while
// the daemon ran, which a DBA sets back.
var ErrBinlogSettings = errors.New("binlog settings")

// Server is a SQL connection to the source, for the checks, positions and table shapes
// the binlog does not carry.
type Server struct {
	DB     *sql.DB
	Flavor string // mysql or mariadb
	// RowMetadataFull is true when the binlog carries column names (binlog_row_metadata=FULL).
	RowMetadataFull bool
	Version         string
	// ID is the server's own @@server_id, as Connect read it: what a change it wrote carries.
	ID uint32

	historyMu sync.Mutex
	// foundInHistory is, by binlog file, the position of it that Retention found in the
	// server's history (checkGTIDsAt).
	foundInHistory map[string]Position

	collationsMu sync.Mutex
	// collations is the character set of each collation id, read once (collationCharset).
	collations map[uint64]string
}

// OpenDB returns a handle on src, database db ("" for none), with TLS when src has it.
func (src Config) OpenDB(db string) (*sql.DB, error) {
	return sqlconn.Open(sqlconn.Target{Addr: src.Addr, User: src.User, Password: src.Password, Database: db, TLS: src.TLS})
}

// Connect opens the source and checks that its binlog can be streamed as rows:
// log_bin on, binlog_format ROW and binlog_row_image FULL. Each wrong setting is named
// with the value to set. An unreachable server wraps ErrUnreachable.
func Connect(ctx context.Context, src Config) (*Server, error) {
	db, err := src.OpenDB("")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		if sqlconn.ErrorNumber(err) == mysql.ER_ACCESS_DENIED_ERROR {
			// Reached, and refused: no retry mends a wrong password.
			return nil, fmt.Errorf("connecting to source %s: the server refused user %s or its password (source.user, source.password): %w", src.Addr, src.User, err)
		}
		return nil, fmt.Errorf("connecting to source %s as %s (source.addr, source.user, source.password, source.tls): %w: %w", src.Addr, src.User, ErrUnreachable, err)
	}
	s := &Server{DB: db}
	if err := s.check(ctx, src.Flavor); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the SQL connection.
func (s *Server) Close() error { return s.DB.Close() }

func (s *Server) check(ctx context.Context, flavor string) error {
	st, err := readBinlogSettings(ctx, s.DB)
	if err != nil {
		return err
	}
	s.Version, s.RowMetadataFull, s.ID = st.version, st.rowMetadataFull, st.serverID
	s.Flavor = flavor
	if s.Flavor == "" {
		s.Flavor = "mysql"
		if strings.Contains(strings.ToLower(st.version), "mariadb") {
			s.Flavor = "mariadb"
		}
	}
	// Servers without binlog_row_metadata (MySQL before 8.0.1, MariaDB before 10.5) are
	// read with column names from information_schema; a column count that differs stops
	// the stream.
	return st.err()
}

// CheckBinlogSettings reports, all at once, the settings of the server db is connected
// to that keep its binlog from being streamed, as Connect refuses them: for what writes
// the tables stocksync is to stream (migrate up), before it writes anything.
func CheckBinlogSettings(ctx context.Context, db *sql.DB) error {
	st, err := readBinlogSettings(ctx, db)
	if err != nil {
		return err
	}
	return st.err()
}

// binlogSettings is what a server's settings say of streaming its binlog.
type binlogSettings struct {
	version         string
	rowMetadataFull bool     // the binlog carries column names
	serverID        uint32   // @@server_id
	problems        []string // each setting to change, with what to set
}

func (st binlogSettings) err() error {
	if len(st.problems) == 0 {
		return nil
	}
	// Every setting at once: a DBA restarting the server for one should not find the
	// next only at the following start.
	return settingsError(fmt.Sprintf("source %s cannot be streamed: %s", st.version, strings.Join(st.problems, "; ")))
}

// settingsError is binlogSettings' error: its text names every setting to change, and it
// is ErrBinlogSettings.
type settingsError string

func (e settingsError) Error() string        { return string(e) }
func (e settingsError) Is(target error) bool { return target == ErrBinlogSettings }

func readBinlogSettings(ctx context.Context, db *sql.DB) (binlogSettings, error) {
	var st binlogSettings
	var logBin int
	var format, image string
	err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image, VERSION(), @@server_id").
		Scan(&logBin, &format, &image, &st.version, &st.serverID)
	if err != nil {
		return st, fmt.Errorf("reading the source's binlog settings: %w", err)
	}
	if logBin != 1 {
		st.problems = append(st.problems, "the binary log is off: start the server with log_bin (e.g. log-bin=binlog)")
	}
	if !strings.EqualFold(format, "ROW") {
		st.problems = append(st.problems, fmt.Sprintf("binlog_format is %s: set binlog_format=ROW", format))
	}
	// The server's settings now: a session's own binlog_format or binlog_row_image, and a
	// SET GLOBAL after this check, are met in the stream (ErrStatementChange,
	// ErrPartialRowImage).
	if !strings.EqualFold(image, "FULL") {
		st.problems = append(st.problems, fmt.Sprintf("binlog_row_image is %s: set binlog_row_image=FULL", image))
	}
	var meta string
	if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.binlog_row_metadata").Scan(&meta); err == nil {
		// The server can put column names in the binlog. Without them an ALTER TABLE
		// between a row's write and its reading maps values to the wrong columns, and
		// that cannot be detected afterwards: refuse rather than guess.
		if !strings.EqualFold(meta, "FULL") {
			st.problems = append(st.problems, fmt.Sprintf("binlog_row_metadata is %s: set binlog_row_metadata=FULL "+
				"so that the binlog carries column names (an ALTER TABLE would otherwise map columns wrongly)", meta))
		} else {
			st.rowMetadataFull = true
		}
	}
	return st, nil
}

// CurrentPosition is where the server's binlog ends now: file and position, and the
// executed GTID set when the server has GTIDs, as of that same point.
func (s *Server) CurrentPosition(ctx context.Context) (Position, error) {
	if s.Flavor != "mariadb" {
		return s.binlogStatus(ctx) // MySQL's executed GTID set comes in the same row
	}
	// MariaDB's comes from @@gtid_binlog_pos, read on both sides of the position: equal,
	// no transaction was written between them. Otherwise a transaction committed meanwhile
	// would be in the set and after the position, and a resume by GTID would skip it.
	for range 3 {
		before, err := s.gtidBinlogPos(ctx)
		if err != nil {
			return Position{}, err
		}
		p, err := s.binlogStatus(ctx)
		if err != nil {
			return p, err
		}
		if p.GTIDSet, err = s.gtidBinlogPos(ctx); err != nil || p.GTIDSet == before {
			return p, err
		}
	}
	// A server too busy for that: the position's own GTID position, which the server
	// reads from the file up to it.
	p, err := s.binlogStatus(ctx)
	if err != nil {
		return p, err
	}
	set, ok, err := s.gtidPositionAt(ctx, p.File, p.Pos)
	if err != nil {
		return p, err
	}
	if !ok {
		return p, fmt.Errorf("reading the GTID position of the binlog's end, %s:%d: the server has none for it", p.File, p.Pos)
	}
	p.GTIDSet = set
	return p, nil
}

// gtidPositionAt is MariaDB's GTID position at pos of binlog file (BINLOG_GTID_POS): the
// last transaction of each replication domain before it, "" at the head of the binlog
// history. ok is false when no event of the file ends at pos, or the file is gone.
func (s *Server) gtidPositionAt(ctx context.Context, file string, pos uint32) (set string, ok bool, err error) {
	var at sql.NullString
	if err := s.DB.QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, ?)", file, pos).Scan(&at); err != nil {
		return "", false, fmt.Errorf("reading the GTID position of binlog %s at %d: %w", file, pos, err)
	}
	return at.String, at.Valid, nil
}

// gtidBinlogPos is MariaDB's @@gtid_binlog_pos: the last GTID written to the binlog in
// each replication domain.
func (s *Server) gtidBinlogPos(ctx context.Context) (string, error) {
	var pos string
	if err := s.DB.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		return "", fmt.Errorf("reading gtid_binlog_pos: %w", err)
	}
	return pos, nil
}

// binlogStatus is SHOW BINARY LOG STATUS (SHOW MASTER STATUS before MySQL 8.2): the
// binlog's end, with MySQL's executed GTID set.
func (s *Server) binlogStatus(ctx context.Context) (Position, error) {
	var p Position
	rows, err := s.DB.QueryContext(ctx, "SHOW BINARY LOG STATUS")
	if err != nil {
		rows, err = s.DB.QueryContext(ctx, "SHOW MASTER STATUS")
	}
	if err != nil {
		return p, fmt.Errorf("reading the binlog position: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return p, fmt.Errorf("reading the binlog position: the server reports none; is log_bin on?")
	}
	row, err := scanByColumn(rows)
	if err != nil {
		return p, fmt.Errorf("reading the binlog position: %w", err)
	}
	p.File = row["file"]
	n, _ := strconv.ParseUint(row["position"], 10, 32)
	p.Pos = uint32(n)
	p.GTIDSet = strings.ReplaceAll(row["executed_gtid_set"], "\n", "")
	return p, rows.Err()
}

// scanByColumn scans the current row of a SHOW statement, whose columns differ between
// servers and versions, by lower-case column name (NULL as "").
func scanByColumn(rows *sql.Rows) (map[string]string, error) {
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	row := make(map[string]string, len(cols))
	for i, c := range cols {
		row[strings.ToLower(c)] = vals[i].String
	}
	return row, nil
}

// SourceAt is the Source of a read of the server's data as of pos, between two
// transactions (the server's own server_id, the position, and its GTID set as GTID), as a
// snapshot's rows carry.
func (s *Server) SourceAt(pos Position) Source {
	return Source{ServerID: s.ID, GTID: pos.GTIDSet, File: pos.File, Pos: pos.Pos, Snapshot: true}
}

// BinlogFiles lists the binlog files the server still has, oldest first.
func (s *Server) BinlogFiles(ctx context.Context) ([]string, error) {
	listed, err := s.BinlogFileSizes(ctx)
	return binlogNames(listed), err
}

// binlogNames are the names of listed, in its order.
func binlogNames(listed []BinlogFile) []string {
	files := make([]string, len(listed))
	for i, f := range listed {
		files[i] = f.Name
	}
	return files
}

// BinlogFile is one binlog file the server has, as SHOW BINARY LOGS lists it.
type BinlogFile struct {
	Name string
	Size uint64 // bytes: where its last event ends, for the file being written so far
}

// BinlogFileSizes lists the binlog files the server still has, oldest first, with their
// sizes.
func (s *Server) BinlogFileSizes(ctx context.Context) ([]BinlogFile, error) {
	rows, err := s.DB.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		if sqlconn.ErrorNumber(err) == 1227 { // access denied: a privilege is missing
			return nil, fmt.Errorf("listing binlog files: source.user lacks REPLICATION CLIENT (on MariaDB 10.5 and later: BINLOG MONITOR): "+
				"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO it (docs/operations.md, What the server needs): %w", err)
		}
		return nil, fmt.Errorf("listing binlog files: %w", err)
	}
	defer rows.Close()
	var files []BinlogFile
	for rows.Next() {
		row, err := scanByColumn(rows)
		if err != nil {
			return nil, fmt.Errorf("listing binlog files: %w", err)
		}
		f := BinlogFile{Name: row["log_name"]}
		f.Size, _ = strconv.ParseUint(row["file_size"], 10, 64)
		files = append(files, f)
	}
	return files, rows.Err()
}

// DataTableTypes is the SQL list of the information_schema.TABLES.TABLE_TYPE values of
// the tables whose rows stocksync reads: `TABLE_TYPE IN ` + DataTableTypes. It is the one
// list snapshots and the live check of the rules share. A MariaDB table WITH SYSTEM
// VERSIONING ('SYSTEM VERSIONED') is one: its current rows are read, its history never.
// Views, and MariaDB's sequences ('SEQUENCE', whose NEXTVAL and SETVAL write one row of
// counters) are not: the stream leaves sequences out as well.
const DataTableTypes = "('BASE TABLE', 'SYSTEM VERSIONED')"

// tableInfo is what information_schema says of a table's columns.
type tableInfo struct {
	// tableType is information_schema.TABLES.TABLE_TYPE ("" for a table the server does
	// not list: gone, or hidden from the user). Only MariaDB has sequences and system
	// versioning.
	tableType string
	// rowStart and rowEnd name a system-versioned table's period columns: the explicit
	// ones (GENERATION_EXPRESSION 'ROW START' and 'ROW END'), or MariaDB's implicit
	// row_start and row_end, which information_schema.COLUMNS does not list but the
	// binlog carries, after the table's own columns.
	rowStart, rowEnd string
	names            []string // in the table's order, with implicit period columns
	// By column name: unsigned integers, JSON columns, DATA_TYPE (lower case) and
	// CHARACTER_SET_NAME ("" for a column that has none).
	unsigned, json    map[string]bool
	dataType, charset map[string]string
	pk                []string
}

// tableColumns reads a table's current columns from information_schema: their names for
// servers whose binlog does not carry them, the names of JSON columns (MariaDB stores
// JSON as LONGTEXT with a json_valid check, which the binlog cannot show), and the types
// and character sets the binlog does not say (MariaDB's UUID, INET4 and INET6 are a
// BINARY(n) to it; a binlog without full row metadata has no collations).
func (s *Server) tableColumns(ctx context.Context, schema, table string) (tableInfo, error) {
	info := tableInfo{unsigned: map[string]bool{}, json: map[string]bool{}, dataType: map[string]string{}, charset: map[string]string{}}
	// The table's type comes with each of its columns: one query per table.
	rows, err := s.DB.QueryContext(ctx, `SELECT c.COLUMN_NAME, c.COLUMN_TYPE, c.DATA_TYPE, c.COLUMN_KEY, c.CHARACTER_SET_NAME,
		  COALESCE(c.GENERATION_EXPRESSION, ''), t.TABLE_TYPE
		FROM information_schema.COLUMNS c JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
		WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? ORDER BY c.ORDINAL_POSITION`, schema, table)
	if err != nil {
		return tableInfo{}, fmt.Errorf("reading columns of %s.%s: %w", schema, table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, colType, dataType, key, generated string
		var charset sql.NullString
		if err := rows.Scan(&name, &colType, &dataType, &key, &charset, &generated, &info.tableType); err != nil {
			return tableInfo{}, fmt.Errorf("reading columns of %s.%s: %w", schema, table, err)
		}
		dataType = strings.ToLower(dataType)
		if info.tableType == "SYSTEM VERSIONED" {
			switch strings.ToUpper(generated) {
			case "ROW START":
				info.rowStart = name
			case "ROW END":
				info.rowEnd = name
			}
		}
		info.names = append(info.names, name)
		info.unsigned[name] = strings.Contains(colType, "unsigned")
		info.dataType[name], info.charset[name] = dataType, charset.String
		if dataType == "json" {
			info.json[name] = true
		}
		if key == "PRI" {
			info.pk = append(info.pk, name)
		}
	}
	if err := rows.Err(); err != nil {
		return tableInfo{}, fmt.Errorf("reading columns of %s.%s: %w", schema, table, err)
	}
	rows.Close()
	if info.tableType == "SYSTEM VERSIONED" && info.rowEnd == "" {
		info.rowStart, info.rowEnd = "row_start", "row_end"
		info.names = append(info.names, info.rowStart, info.rowEnd)
		info.dataType[info.rowStart], info.dataType[info.rowEnd] = "timestamp", "timestamp"
	}
	if s.Flavor == "mariadb" {
		crow, err := s.DB.QueryContext(ctx, `SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
			WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?`, schema, table)
		if err == nil {
			defer crow.Close()
			for crow.Next() {
				var clause string
				if crow.Scan(&clause) == nil {
					for _, n := range info.names {
						if strings.EqualFold(clause, "json_valid(`"+n+"`)") {
							info.json[n] = true
						}
					}
				}
			}
		}
	}
	return info, nil
}

// UnreadableTables names the tables of globs (schema.table patterns, as rules write them:
// SplitGlob)
// that user of db may not SELECT: the problem to fix, by glob. information_schema hides such
// tables, so without this check a snapshot, a seed or a re-read of them would silently be
// empty. A literal table is read (LIMIT 0). For a pattern of tables in a literal schema
// only a schema in which the user may read nothing at all can be told (USE refuses it); a
// glob whose schema part is a pattern is left out. The stream checks each table of a
// pattern glob as it first meets one in a row event (unreadableTable). A table that does not exist yet is
// not a problem.
func UnreadableTables(ctx context.Context, db *sql.DB, user string, globs []string) (map[string]string, error) {
	problems := map[string]string{}
	for _, g := range globs {
		schema, table, err := SplitGlob(g)
		if err != nil || IsPattern(schema) {
			continue
		}
		var problem string
		if IsPattern(table) {
			problem, err = readProblem(useSchema(ctx, db, schema), user, g, quoteName(schema)+".*")
		} else {
			problem, err = unreadableTable(ctx, db, user, schema, table)
		}
		if err != nil {
			return problems, err
		}
		if problem != "" {
			problems[g] = problem
		}
	}
	return problems, nil
}

// IsPattern reports whether part of a glob (its schema or its table) is a pattern rather
// than a name.
func IsPattern(part string) bool { return strings.ContainsAny(part, `*?[\`) }

// unreadableTable says what to grant when user of db may not SELECT schema.table (a
// name, not a pattern), as UnreadableTables words it; "" when it may or the table does
// not exist.
func unreadableTable(ctx context.Context, db *sql.DB, user, schema, table string) (string, error) {
	_, err := db.ExecContext(ctx, "SELECT 1 FROM "+quoteName(schema)+"."+quoteName(table)+" LIMIT 0")
	return readProblem(err, user, TableName{schema, table}.String(), quoteName(schema)+"."+quoteName(table))
}

// readProblem turns err, of reading what (a table or a glob), into the grant to run: ""
// for no error, or for a table or schema that does not exist yet.
func readProblem(err error, user, what, grant string) (string, error) {
	if err == nil {
		return "", nil
	}
	switch sqlconn.ErrorNumber(err) {
	case 1142, 1044: // SELECT command denied on a table; access denied to a database
		return fmt.Sprintf("source.user %s may not read %s: GRANT SELECT ON %s TO it (information_schema hides what it may not read, so a snapshot or a seed of it would be empty)",
			user, what, grant), nil
	case 1146, 1049: // no such table, no such database: not yet
		return "", nil
	}
	return "", fmt.Errorf("checking that %s may read %s: %w", user, what, err)
}

// useSchema runs USE schema on a connection of its own, dropped afterwards so that no
// pooled connection keeps the schema as its default.
func useSchema(ctx context.Context, db *sql.DB, schema string) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer discardConn(conn)
	_, err = conn.ExecContext(ctx, "USE "+quoteName(schema))
	return err
}
