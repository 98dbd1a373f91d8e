package canal

import (
	"fmt"
	"strings"
)

// TableName is a table's database and name, kept apart: MySQL and MariaDB allow a dot in
// either (`st.eu`.stock), so one "schema.table" string cannot say where the database
// ends unless it is written as String writes it.
type TableName struct {
	Schema, Name string
}

// String is schema.table as stocksync writes it in logs, saved snapshot and re-read
// progress, and rules' globs: the database in backquotes when it holds a dot or a
// backquote (`st.eu`.stock, a backquote doubled), the table in backquotes when it holds
// a backquote, so that ParseTableName reads it back. Any other name is written as it is,
// which is what progress saved before dots were handled holds (a dot in the table's own
// name needs no quotes: the database ends at the first dot).
func (n TableName) String() string {
	schema, table := n.Schema, n.Name
	if strings.ContainsAny(schema, ".`") {
		schema = quoteName(schema)
	}
	if strings.Contains(table, "`") {
		table = quoteName(table)
	}
	return schema + "." + table
}

// ParseTableName reads schema.table as TableName.String writes it: the database is a name
// in backquotes or the text up to the first dot, the table everything after the dot that
// follows it (dots included), a name in backquotes or as it is.
func ParseTableName(s string) (TableName, error) {
	schema, table, _, err := splitQualified(s)
	return TableName{schema, table}, err
}

// SplitGlob splits a rule's match.table glob into the globs of its two halves, matched
// apart: the database's and the table's. It is written as ParseTableName reads a name
// (shop.stock_*, `st.eu`.*), and a half in backquotes is a name, not a pattern: its
// *, ?, [ and \ are escaped. A pattern half, such as st?eu, may still match a database
// with a dot. IsPattern tells a half that is a pattern.
func SplitGlob(g string) (schema, table string, err error) {
	schema, table, quoted, err := splitQualified(g)
	if quoted[0] {
		schema = escapeGlob(schema)
	}
	if quoted[1] {
		table = escapeGlob(table)
	}
	return schema, table, err
}

// splitQualified splits s into its database and table as ParseTableName says, and
// whether each was in backquotes.
func splitQualified(s string) (schema, table string, quoted [2]bool, err error) {
	rest := s
	if strings.HasPrefix(rest, "`") {
		name, after, ok := unquoteName(rest)
		if !ok {
			return "", "", quoted, fmt.Errorf("%q: the backquote before the database name is not closed (a backquote inside it is written twice)", s)
		}
		schema, rest, quoted[0] = name, after, true
		if !strings.HasPrefix(rest, ".") {
			return "", "", quoted, fmt.Errorf("%q must be schema.table: a dot must follow the database's closing backquote", s)
		}
		rest = rest[1:]
	} else {
		var ok bool
		if schema, rest, ok = strings.Cut(rest, "."); !ok {
			return "", "", quoted, fmt.Errorf("%q must be schema.table", s)
		}
	}
	table = rest
	if strings.HasPrefix(rest, "`") {
		name, after, ok := unquoteName(rest)
		if !ok || after != "" {
			return "", "", quoted, fmt.Errorf("%q: the table name in backquotes must end the name, its closing backquote the last character (a backquote inside it is written twice)", s)
		}
		table, quoted[1] = name, true
	}
	if schema == "" || table == "" {
		return "", "", quoted, fmt.Errorf("%q must be schema.table, neither empty", s)
	}
	return schema, table, quoted, nil
}

// unquoteName reads the backquoted name s begins with (a backquote in it doubled), and
// what follows its closing backquote; ok false when it is not closed.
func unquoteName(s string) (name, after string, ok bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '`' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '`' {
			b.WriteByte('`')
			i++
			continue
		}
		return b.String(), s[i+1:], true
	}
	return "", "", false
}

// escapeGlob is the glob that matches name alone.
func escapeGlob(name string) string {
	var b strings.Builder
	for _, r := range name {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
