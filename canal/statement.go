package canal

import (
	"errors"
	"slices"
	"strings"
	"unicode"
)

// ErrStatementChange is a row change of a matched table that the binlog holds as an SQL
// statement instead of row images: written by a session whose binlog_format was STATEMENT
// or MIXED, which the server-wide check at start cannot see. Its rows cannot be known, so
// the stream stops there rather than publish without them.
var ErrStatementChange = errors.New("a statement-logged change of a matched table")

// ErrStatefulTableEmptied is DDL that changes the rows of a table an aggregate or
// transition rule reads without row events: a TRUNCATE or DROP TABLE of it, a DROP
// DATABASE of its schema, a RENAME TABLE (or ALTER TABLE … RENAME) of it to another name,
// or of another table onto its name, for a handler that can neither empty the rule's
// groups (TableEmptier, for rules that read the table alone) nor seed the rule again
// (TableReseeder); and, for one that can, a table renamed away while no table has its name
// again, until Config.RenamedAwayWait has passed since. The rule's totals no longer match
// the table, and the stream stops there rather than publish them on.
var ErrStatefulTableEmptied = errors.New("a table that a stateful rule reads was emptied by DDL")

// emptiedTables reads q, a DDL statement, for the tables it empties without row events:
// every table of TRUNCATE [TABLE] and of DROP TABLE (not DROP TEMPORARY TABLE, whose table
// was never in the binlog), and MariaDB's CREATE OR REPLACE TABLE (which drops the table
// of that name first; a … SELECT's rows follow as row events), as [schema, table] pairs,
// with the statement's verb.
func emptiedTables(q, defaultSchema string) (verb string, tables [][2]string) {
	t := &sqlTokens{s: q}
	switch t.keyword() {
	case "TRUNCATE":
		t.skipKeywords("TABLE")
		verb = "TRUNCATE"
	case "CREATE":
		if t.keyword() != "OR" || t.keyword() != "REPLACE" || t.keyword() != "TABLE" {
			return "", nil // CREATE TABLE, CREATE OR REPLACE TEMPORARY TABLE, … VIEW, …
		}
		if schema, table := t.tableName(defaultSchema); table != "" {
			return "CREATE OR REPLACE TABLE", [][2]string{{schema, table}}
		}
		return "", nil
	case "DROP":
		if t.keyword() != "TABLE" {
			return "", nil // DROP TEMPORARY TABLE, DROP DATABASE, DROP INDEX, …
		}
		t.skipKeywords("IF", "EXISTS")
		verb = "DROP TABLE"
	default:
		return "", nil
	}
	for {
		schema, table := t.tableName(defaultSchema)
		if table == "" {
			return verb, tables
		}
		tables = append(tables, [2]string{schema, table})
		if !t.comma() {
			return verb, tables
		}
	}
}

// droppedSchema reads q, a DDL statement, for the database DROP DATABASE (or DROP
// SCHEMA) removes with every table in it, each without a row event or a DROP TABLE of its
// own; "" for any other statement.
func droppedSchema(q string) string {
	t := &sqlTokens{s: q}
	if t.keyword() != "DROP" {
		return ""
	}
	if k := t.keyword(); k != "DATABASE" && k != "SCHEMA" {
		return ""
	}
	t.skipKeywords("IF", "EXISTS")
	_, name := t.tableName("")
	return name
}

// tableRename is one table renamed by DDL: its rows leave from and arrive under to.
type tableRename struct {
	from, to [2]string // schema, table
}

// renamedTables reads q, a DDL statement, for the tables it renames: each pair of RENAME
// TABLE[S] and the RENAME [TO|AS] of an ALTER TABLE, with the statement's verb. A new
// name without a schema is in defaultSchema, as the server puts it, also when the old
// name has one.
func renamedTables(q, defaultSchema string) (verb string, renames []tableRename) {
	t := &sqlTokens{s: q}
	switch t.keyword() {
	case "RENAME":
		if k := t.keyword(); k != "TABLE" && k != "TABLES" {
			return "", nil // RENAME USER, …
		}
		t.skipKeywords("IF", "EXISTS")
		for {
			var r tableRename
			r.from[0], r.from[1] = t.tableName(defaultSchema)
			t.skipWait()
			if r.from[1] == "" || t.keyword() != "TO" {
				return "RENAME TABLE", renames
			}
			if r.to[0], r.to[1] = t.tableName(defaultSchema); r.to[1] == "" {
				return "RENAME TABLE", renames
			}
			renames = append(renames, r)
			if !t.comma() {
				return "RENAME TABLE", renames
			}
		}
	case "ALTER":
		from, newNames, _ := alterTable(t, defaultSchema)
		if len(newNames) == 0 {
			return "", nil
		}
		for _, to := range newNames {
			renames = append(renames, tableRename{from: from, to: to})
		}
		return "ALTER TABLE … RENAME", renames
	}
	return "", nil
}

// reshapedTables reads q, a statement the binlog holds outside any row change (DDL, or
// one that changes no rows), for the tables whose shape it may have changed, which the
// stream must describe again at their next table map: the tables it names, when it is
// CREATE [OR REPLACE] TABLE, DROP TABLE, TRUNCATE, RENAME TABLE (both names of each
// pair), ALTER TABLE (its new names and the other table of an EXCHANGE or CONVERT
// PARTITION too), CREATE or DROP INDEX … ON, or ANALYZE, OPTIMIZE or REPAIR TABLE; and
// the databases every table of which it may have changed, for CREATE and DROP DATABASE.
// sure is false for any other statement (ALTER DATABASE, FLUSH, GRANT, a view's or
// trigger's, …) and for one it cannot read to the end of its list of tables: the caller
// then takes every table as changed. Executable comments (/*! … */) are read, as the
// server runs them.
func reshapedTables(q, defaultSchema string) (tables [][2]string, schemas []string, sure bool) {
	t := &sqlTokens{s: q, execComments: true}
	// names reads a comma-separated list of tables into tables: false when a name is
	// missing.
	names := func() bool {
		for {
			schema, table := t.tableName(defaultSchema)
			if table == "" {
				return false
			}
			tables = append(tables, [2]string{schema, table})
			if !t.comma() {
				return true
			}
		}
	}
	// ended reports whether the statement ends here (after a semicolon, if any).
	ended := func() bool {
		t.skipSpace()
		if t.i < len(t.s) && t.s[t.i] == ';' {
			t.i++
			t.skipSpace()
		}
		return t.i >= len(t.s)
	}
	// onTable reads an index's name and what follows it up to ON and the table.
	onTable := func() bool {
		if t.identifier() == "" {
			return false
		}
		for {
			switch t.keyword() {
			case "USING", "TYPE":
				t.keyword() // BTREE, HASH, RTREE
			case "ON":
				return names() && len(tables) == 1
			default:
				return false
			}
		}
	}
	// database reads a database's name into schemas.
	database := func() bool {
		_, name := t.tableName("")
		schemas = append(schemas, name)
		return name != ""
	}
	switch t.keyword() {
	case "CREATE":
		t.skipKeywords("OR", "REPLACE", "TEMPORARY", "ONLINE", "OFFLINE", "UNIQUE", "FULLTEXT", "SPATIAL")
		switch t.keyword() {
		case "TABLE":
			t.skipKeywords("IF", "NOT", "EXISTS")
			schema, table := t.tableName(defaultSchema)
			return [][2]string{{schema, table}}, nil, table != ""
		case "INDEX":
			t.skipKeywords("IF", "NOT", "EXISTS")
			return tables, nil, onTable()
		case "DATABASE", "SCHEMA":
			t.skipKeywords("IF", "NOT", "EXISTS")
			return nil, schemas, database()
		}
	case "DROP":
		t.skipKeywords("TEMPORARY")
		switch t.keyword() {
		case "TABLE", "TABLES":
			t.skipKeywords("IF", "EXISTS")
			if !names() {
				return nil, nil, false
			}
			t.skipWait()
			t.skipKeywords("RESTRICT", "CASCADE")
			return tables, nil, ended()
		case "INDEX":
			t.skipKeywords("IF", "EXISTS")
			return tables, nil, onTable()
		case "DATABASE", "SCHEMA":
			t.skipKeywords("IF", "EXISTS")
			return nil, schemas, database() && ended()
		}
	case "TRUNCATE":
		t.skipKeywords("TABLE")
		schema, table := t.tableName(defaultSchema)
		t.skipWait()
		return [][2]string{{schema, table}}, nil, table != "" && ended()
	case "RENAME":
		if k := t.keyword(); k != "TABLE" && k != "TABLES" {
			return nil, nil, false // RENAME USER, …
		}
		t.skipKeywords("IF", "EXISTS")
		for {
			var from, to [2]string
			from[0], from[1] = t.tableName(defaultSchema)
			t.skipWait()
			if from[1] == "" || t.keyword() != "TO" {
				return nil, nil, false
			}
			if to[0], to[1] = t.tableName(defaultSchema); to[1] == "" {
				return nil, nil, false
			}
			tables = append(tables, from, to)
			if !t.comma() {
				return tables, nil, ended()
			}
		}
	case "ALTER":
		table, renames, alterations := alterTable(t, defaultSchema)
		if table[1] == "" {
			return nil, nil, false // ALTER DATABASE, VIEW, USER, …
		}
		tables = append([][2]string{table}, renames...)
		for _, a := range alterations {
			if a.with[1] != "" {
				tables = append(tables, a.with)
			}
		}
		return tables, nil, true
	case "ANALYZE", "OPTIMIZE", "REPAIR":
		t.skipKeywords("NO_WRITE_TO_BINLOG", "LOCAL")
		if k := t.keyword(); k != "TABLE" && k != "TABLES" {
			return nil, nil, false
		}
		return tables, nil, names() // the rest are options
	}
	return nil, nil, false
}

// statementChange reports whether q, a statement the binlog holds as a query event, is
// one that changes rows (INSERT, REPLACE, UPDATE, DELETE, LOAD DATA/XML, or a WITH that
// ends in one), and the table it writes, as far as a plain reading tells it: the first
// table named for INSERT, REPLACE, single-table UPDATE and DELETE, and LOAD's INTO TABLE;
// table "" when the statement writes several tables or cannot be read.
func statementChange(q, defaultSchema string) (schema, table string, rowChange bool) {
	t := &sqlTokens{s: q}
	first := t.keyword()
	switch first {
	case "INSERT", "REPLACE":
		t.skipKeywords("LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE")
		t.skipKeywords("INTO")
	case "UPDATE":
		t.skipKeywords("LOW_PRIORITY", "IGNORE")
	case "DELETE":
		t.skipKeywords("LOW_PRIORITY", "QUICK", "IGNORE")
		if t.keyword() != "FROM" {
			return "", "", true // DELETE t1, t2 FROM …: several tables
		}
	case "LOAD":
		at := strings.Index(strings.ToUpper(q), " INTO TABLE ")
		if at < 0 {
			return "", "", true
		}
		t.i = at + len(" INTO TABLE ")
	case "WITH":
		upper := strings.ToUpper(q)
		return "", "", strings.Contains(upper, "UPDATE") || strings.Contains(upper, "DELETE") || strings.Contains(upper, "INSERT")
	default:
		return "", "", false
	}
	schema, table = t.tableName(defaultSchema)
	if first == "UPDATE" || first == "DELETE" {
		// A comma or a JOIN after the name: several tables.
		rest := strings.ToUpper(strings.TrimSpace(t.s[t.i:]))
		if strings.HasPrefix(rest, ",") || strings.Contains(rest, "JOIN") || first == "DELETE" && strings.HasPrefix(rest, "USING") {
			return "", "", true
		}
	}
	return schema, table, true
}

// redactedLiteral stands for a password literal in a statement redactPasswords returns.
const redactedLiteral = "'<redacted>'"

// redactPasswords returns q with each literal that SQL gives a password, or a password's
// hash, in replaced by '<redacted>', and the rest as written, for logging the statements the
// binlog holds: IDENTIFIED BY '…' (CREATE USER, ALTER USER, GRANT; also WITH plugin BY),
// IDENTIFIED BY PASSWORD '*hash', IDENTIFIED WITH plugin AS '…', IDENTIFIED VIA plugin
// USING '…', PASSWORD('…') and OLD_PASSWORD('…'), SET PASSWORD … = '…', ALTER USER …
// REPLACE '…' and CREATE SERVER … OPTIONS (PASSWORD '…'). The whole statement is read,
// so a procedure, trigger or event body that runs one, or an executable comment
// (/*! … */), is redacted too; a literal of another statement after BY, USING or PASSWORD
// (FIELDS TERMINATED BY ',') is redacted as well, which costs a log line nothing.
func redactPasswords(q string) string {
	t := &sqlTokens{s: q, execComments: true}
	var out strings.Builder
	copied := 0 // q[:copied] is written to out
	redact := func(start int) {
		out.WriteString(q[copied:start])
		out.WriteString(redactedLiteral)
		copied = t.i
	}
	// The last three tokens, the newest first: upper-cased words, a quote for a literal or
	// an identifier, or a punctuation character.
	var recent [3]string
	push := func(token string) { recent[0], recent[1], recent[2] = token, recent[0], recent[1] }
	setPassword := false // in SET PASSWORD: the literal after = is the password's hash
	secret := func() bool {
		switch recent[0] {
		case "BY", "USING", "PASSWORD", "REPLACE":
			return true
		case "AS": // IDENTIFIED WITH plugin AS '…'
			return recent[2] == "WITH"
		case "(": // PASSWORD('…')
			return recent[1] == "PASSWORD" || recent[1] == "OLD_PASSWORD"
		case "=":
			return setPassword
		}
		return false
	}
	for t.skipSpace(); t.i < len(t.s); t.skipSpace() {
		start := t.i
		switch c := t.s[t.i]; c {
		case '\'', '"', '`':
			t.skipQuoted(c)
			if c != '`' && secret() {
				redact(start)
			}
			push(string(c))
			continue
		}
		word := t.keyword()
		switch {
		case t.i == start: // punctuation
			t.i++
			if q[start] == ';' {
				setPassword = false
			}
			push(q[start:t.i])
		case t.i < len(t.s) && (t.s[t.i] == '\'' || t.s[t.i] == '"'):
			// An introducer or a prefix of the literal that follows (_utf8mb4'…', N'…',
			// X'…'): the literal is read in the context before it.
		case strings.HasPrefix(word, "0X") && secret(): // a hash written as a hex number
			redact(start)
			push("'")
		default:
			setPassword = setPassword || word == "PASSWORD" && recent[0] == "SET"
			push(word)
		}
	}
	if copied == 0 {
		return q
	}
	out.WriteString(q[copied:])
	return out.String()
}

// alterTable reads an ALTER TABLE statement after its ALTER: the table it alters, the new
// names of its RENAME [TO|AS] alterations (RENAME COLUMN, INDEX or KEY are not the
// table's), and the words of its alterations that change the table's rows without row
// events (rowsAlteration). Nothing for another ALTER (of a view, a database, …).
func alterTable(t *sqlTokens, defaultSchema string) (table [2]string, renames [][2]string, alterations []rowsAlteration) {
	ignore := false
	for {
		at := t.i
		k := t.keyword()
		if k == "IGNORE" {
			ignore = true
		} else if k != "ONLINE" {
			t.i = at
			break
		}
	}
	if t.keyword() != "TABLE" {
		return table, nil, nil
	}
	t.skipKeywords("IF", "EXISTS")
	if table[0], table[1] = t.tableName(defaultSchema); table[1] == "" {
		return table, nil, nil
	}
	t.skipWait()
	// The alterations, separated by commas.
	for {
		at := t.i
		switch first := t.keyword(); first {
		case "RENAME":
			next := t.i
			switch t.keyword() {
			case "COLUMN", "INDEX", "KEY":
			case "TO", "AS":
				next = t.i
				fallthrough
			default:
				t.i = next
				var to [2]string
				if to[0], to[1] = t.tableName(defaultSchema); to[1] != "" && to != table {
					renames = append(renames, to)
				}
			}
		case "MODIFY", "CHANGE":
			alterations = append(alterations, rowsAlteration{what: first})
		case "TRUNCATE", "DROP", "EXCHANGE":
			if t.keyword() != "PARTITION" {
				break
			}
			a := rowsAlteration{what: first + " PARTITION"}
			if first == "EXCHANGE" { // EXCHANGE PARTITION p WITH TABLE other
				t.identifier()
				t.skipKeywords("WITH", "TABLE")
				a.with[0], a.with[1] = t.tableName(defaultSchema)
			}
			alterations = append(alterations, a)
		case "CONVERT": // MariaDB: CONVERT PARTITION p TO TABLE other, CONVERT TABLE other TO PARTITION p
			switch second := t.keyword(); second {
			case "PARTITION", "TABLE":
				if second == "PARTITION" {
					t.identifier()
					t.skipKeywords("TO", "TABLE")
				}
				a := rowsAlteration{what: "CONVERT " + second}
				a.with[0], a.with[1] = t.tableName(defaultSchema)
				alterations = append(alterations, a)
			} // CONVERT TO CHARACTER SET keeps the values
		case "DISCARD", "IMPORT": // [PARTITION …] TABLESPACE: the rows go, or come from a file
			alterations = append(alterations, rowsAlteration{what: first + " TABLESPACE"})
		case "ADD":
			if ignore { // ALTER IGNORE … ADD UNIQUE deletes the rows that repeat a key
				if k := t.keyword(); k == "UNIQUE" || k == "PRIMARY" {
					alterations = append(alterations, rowsAlteration{what: "IGNORE … ADD " + k})
				}
			}
		case "ENGINE":
			if t.skipSpace(); t.i < len(t.s) && t.s[t.i] == '=' {
				t.i++
			}
			if t.keyword() == "BLACKHOLE" {
				alterations = append(alterations, rowsAlteration{what: "ENGINE=BLACKHOLE"})
			}
		default:
			t.i = at
		}
		if !t.nextItem() {
			return table, renames, alterations
		}
	}
}

// rowsAlteration is an ALTER TABLE alteration that changes the table's rows without row
// events: MODIFY or CHANGE of a column (its values converted to the new type: a DECIMAL's
// scale lowered rounds them), TRUNCATE or DROP PARTITION (their rows go), EXCHANGE
// PARTITION and MariaDB's CONVERT PARTITION|TABLE (rows moved between the table and
// `with`), DISCARD or IMPORT TABLESPACE, ADD UNIQUE (or PRIMARY KEY) of an ALTER IGNORE
// (rows that repeat the key go), ENGINE=BLACKHOLE (every row goes).
type rowsAlteration struct {
	what string
	with [2]string
}

// alteredTables reads q, a DDL statement, for an ALTER TABLE with alterations that change
// its rows without row events (rowsAlteration): the tables whose rows changed (the altered
// one first, then an exchanged partition's other table) and the alterations' words
// ("MODIFY, TRUNCATE PARTITION"); none for any other statement.
func alteredTables(q, defaultSchema string) (tables [][2]string, what string) {
	t := &sqlTokens{s: q, execComments: true}
	if t.keyword() != "ALTER" {
		return nil, ""
	}
	table, _, alterations := alterTable(t, defaultSchema)
	if len(alterations) == 0 {
		return nil, ""
	}
	tables = [][2]string{table}
	var words []string
	for _, a := range alterations {
		if !slices.Contains(words, a.what) {
			words = append(words, a.what)
		}
		if a.with[1] != "" && !slices.Contains(tables, a.with) {
			tables = append(tables, a.with)
		}
	}
	return tables, strings.Join(words, ", ")
}

// sqlTokens reads the start of an SQL statement: keywords and one table name, skipping
// spaces and comments.
type sqlTokens struct {
	s string
	i int
	// execComments reads the text of an executable comment (/*! … */, /*M! … */) as the
	// statement's, as the server runs it, instead of skipping it.
	execComments bool
}

func (t *sqlTokens) skipSpace() {
	for t.i < len(t.s) {
		switch {
		case unicode.IsSpace(rune(t.s[t.i])):
			t.i++
		case t.execComments && (strings.HasPrefix(t.s[t.i:], "/*!") || strings.HasPrefix(t.s[t.i:], "/*M!")):
			t.i += strings.IndexByte(t.s[t.i:], '!') + 1
			for t.i < len(t.s) && t.s[t.i] >= '0' && t.s[t.i] <= '9' { // the version it runs from
				t.i++
			}
		case t.execComments && strings.HasPrefix(t.s[t.i:], "*/"): // an executable comment's end
			t.i += 2
		case strings.HasPrefix(t.s[t.i:], "/*"):
			end := strings.Index(t.s[t.i+2:], "*/")
			if end < 0 {
				t.i = len(t.s)
				return
			}
			t.i += end + 4
		case strings.HasPrefix(t.s[t.i:], "#"), strings.HasPrefix(t.s[t.i:], "-- "):
			end := strings.IndexByte(t.s[t.i:], '\n')
			if end < 0 {
				t.i = len(t.s)
				return
			}
			t.i += end + 1
		default:
			return
		}
	}
}

// comma steps past a comma after any space and reports whether there was one: another
// item of a list follows.
func (t *sqlTokens) comma() bool {
	t.skipSpace()
	if t.i >= len(t.s) || t.s[t.i] != ',' {
		return false
	}
	t.i++
	return true
}

// keyword reads the next bare word, upper-cased ("" at the end or before a non-word).
func (t *sqlTokens) keyword() string {
	t.skipSpace()
	start := t.i
	for t.i < len(t.s) && (t.s[t.i] == '_' || unicode.IsLetter(rune(t.s[t.i])) || unicode.IsDigit(rune(t.s[t.i]))) {
		t.i++
	}
	return strings.ToUpper(t.s[start:t.i])
}

// skipKeywords skips any of words that come next, in any order.
func (t *sqlTokens) skipKeywords(words ...string) {
	for {
		at := t.i
		k := t.keyword()
		found := false
		for _, w := range words {
			found = found || k == w
		}
		if !found {
			t.i = at
			return
		}
	}
}

// identifier reads a bare or `quoted` identifier ("" if none).
func (t *sqlTokens) identifier() string {
	t.skipSpace()
	if t.i < len(t.s) && t.s[t.i] == '`' {
		var b strings.Builder
		for t.i++; t.i < len(t.s); t.i++ {
			if t.s[t.i] == '`' {
				if t.i+1 < len(t.s) && t.s[t.i+1] == '`' {
					b.WriteByte('`')
					t.i++
					continue
				}
				t.i++
				return b.String()
			}
			b.WriteByte(t.s[t.i])
		}
		return ""
	}
	start := t.i
	for t.i < len(t.s) && (t.s[t.i] == '_' || t.s[t.i] == '$' || t.s[t.i] >= 0x80 ||
		unicode.IsLetter(rune(t.s[t.i])) || unicode.IsDigit(rune(t.s[t.i]))) {
		t.i++
	}
	return t.s[start:t.i]
}

// skipWait skips a WAIT n or NOWAIT (MariaDB's lock wait of a DDL statement).
func (t *sqlTokens) skipWait() {
	at := t.i
	switch t.keyword() {
	case "NOWAIT":
	case "WAIT":
		t.keyword() // the seconds
	default:
		t.i = at
	}
}

// nextItem moves past the next comma outside parentheses, quotes and comments, and
// reports whether there was one.
func (t *sqlTokens) nextItem() bool {
	depth := 0
	for {
		t.skipSpace()
		if t.i >= len(t.s) {
			return false
		}
		switch c := t.s[t.i]; c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth <= 0 {
				t.i++
				return true
			}
		case '\'', '"', '`':
			t.skipQuoted(c)
			continue
		}
		t.i++
	}
}

// skipQuoted moves past a string or identifier quoted with q that starts at t.i: a
// doubled q is one, and in strings a backslash escapes the next byte.
func (t *sqlTokens) skipQuoted(q byte) {
	for t.i++; t.i < len(t.s); t.i++ {
		switch {
		case t.s[t.i] == '\\' && q != '`':
			t.i++
		case t.s[t.i] == q:
			if t.i+1 < len(t.s) && t.s[t.i+1] == q {
				t.i++
				continue
			}
			t.i++
			return
		}
	}
}

// tableName reads [schema.]table, with or without space around the dot (SQL allows
// `shop` . stock); "" for the table when there is none to read.
func (t *sqlTokens) tableName(defaultSchema string) (schema, table string) {
	first := t.identifier()
	if first == "" {
		return "", ""
	}
	after := t.i
	if t.skipSpace(); t.i < len(t.s) && t.s[t.i] == '.' {
		t.i++
		if second := t.identifier(); second != "" {
			return first, second
		}
		return "", ""
	}
	t.i = after
	return defaultSchema, first
}
