package canal

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/stocksync/stocksync/internal/sqlconn"
)

// ForeignKey is a foreign key whose referential action InnoDB applies itself: ON DELETE or
// ON UPDATE CASCADE, SET NULL or SET DEFAULT. InnoDB makes those changes to the child
// table inside the storage engine, and neither MariaDB nor MySQL writes them to the
// row-based binlog: only the rows of the statement's own table are there. A stream of the
// child table misses them.
type ForeignKey struct {
	Name    string    // the constraint's name
	Table   TableName // the child table: the one whose rows the action changes
	Columns []string  // the child's columns, in the key's order
	// Parent is the table the key references, ParentColumns its columns.
	Parent        TableName
	ParentColumns []string
	// OnDelete and OnUpdate are the referential actions as information_schema words them:
	// CASCADE, SET NULL, SET DEFAULT, RESTRICT or NO ACTION.
	OnDelete, OnUpdate string
}

// CascadingForeignKeys lists the foreign keys of the tables reads is true of (the child
// tables: schema, table) whose ON DELETE or ON UPDATE action changes the child
// (CascadingAction), ordered by child table and name, the system schemas left out.
//
// information_schema lists a key only to a user with some privilege on its table, and
// MariaDB's REFERENTIAL_CONSTRAINTS, the one that says its actions, only to a user with a
// privilege besides SELECT (REFERENCES, INSERT…) on the whole schema or globally (10.11:
// not even ALL on the table will do), which source.user may well lack on a schema the
// rules only read. So the keys come from KEY_COLUMN_USAGE, which SELECT on
// the table shows, and the actions of a key REFERENTIAL_CONSTRAINTS hides are read from
// SHOW CREATE TABLE of its table. A table the user may not see has no keys listed.
func CascadingForeignKeys(ctx context.Context, db *sql.DB, reads func(schema, table string) bool) ([]ForeignKey, error) {
	rows, err := db.QueryContext(ctx, `SELECT k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME,
		  k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, rc.DELETE_RULE, rc.UPDATE_RULE
		FROM information_schema.KEY_COLUMN_USAGE k LEFT JOIN information_schema.REFERENTIAL_CONSTRAINTS rc
		  ON rc.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND rc.TABLE_NAME = k.TABLE_NAME AND rc.CONSTRAINT_NAME = k.CONSTRAINT_NAME
		WHERE k.REFERENCED_TABLE_NAME IS NOT NULL
		  AND k.TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
		ORDER BY k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION`)
	if err != nil {
		return nil, fmt.Errorf("reading the source's foreign keys: %w", err)
	}
	defer rows.Close()
	var keys []ForeignKey
	for rows.Next() {
		var k ForeignKey
		var column, parentColumn string
		var onDelete, onUpdate sql.NullString
		if err := rows.Scan(&k.Table.Schema, &k.Table.Name, &k.Name, &column, &k.Parent.Schema, &k.Parent.Name, &parentColumn, &onDelete, &onUpdate); err != nil {
			return nil, fmt.Errorf("reading the source's foreign keys: %w", err)
		}
		if !reads(k.Table.Schema, k.Table.Name) {
			continue
		}
		if n := len(keys); n > 0 && keys[n-1].Table == k.Table && keys[n-1].Name == k.Name {
			keys[n-1].Columns = append(keys[n-1].Columns, column)
			keys[n-1].ParentColumns = append(keys[n-1].ParentColumns, parentColumn)
			continue
		}
		k.Columns, k.ParentColumns = []string{column}, []string{parentColumn}
		k.OnDelete, k.OnUpdate = onDelete.String, onUpdate.String // "" when hidden: read below
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the source's foreign keys: %w", err)
	}
	rows.Close()
	var definition string // the last SHOW CREATE TABLE read, of definedTable
	var definedTable TableName
	for i := range keys {
		k := &keys[i]
		if k.OnDelete != "" {
			continue
		}
		if k.Table != definedTable {
			var name string
			err := db.QueryRowContext(ctx, "SHOW CREATE TABLE "+quoteName(k.Table.Schema)+"."+quoteName(k.Table.Name)).Scan(&name, &definition)
			if sqlconn.ErrorNumber(err) == 1146 { // dropped since: no key
				definition = ""
			} else if err != nil {
				return nil, fmt.Errorf("reading the foreign keys of %s: %w", k.Table, err)
			}
			definedTable = k.Table
		}
		k.OnDelete, k.OnUpdate = foreignKeyActions(definition, k.Name)
	}
	return slices.DeleteFunc(keys, func(k ForeignKey) bool { return !CascadingAction(k.OnDelete) && !CascadingAction(k.OnUpdate) }), nil
}

// foreignKeyActions reads the ON DELETE and ON UPDATE actions of the foreign key name from
// definition, a SHOW CREATE TABLE, where a key's line reads
// "CONSTRAINT `name` FOREIGN KEY (…) REFERENCES `parent` (…) ON DELETE CASCADE ON UPDATE
// SET NULL," and an action left out is RESTRICT, the default. A key not there is RESTRICT
// both ways: it changes nothing.
func foreignKeyActions(definition, name string) (onDelete, onUpdate string) {
	onDelete, onUpdate = "RESTRICT", "RESTRICT"
	prefixes := []string{ // with sql_mode ANSI_QUOTES, the server quotes names as SQL does
		"CONSTRAINT " + quoteName(name) + " FOREIGN KEY ",
		"CONSTRAINT \"" + strings.ReplaceAll(name, `"`, `""`) + "\" FOREIGN KEY ",
	}
	for line := range strings.Lines(definition) {
		line = strings.TrimSpace(line)
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(line, p) }) {
			continue
		}
		// The actions follow the parent's columns, the line's last parenthesis: no name
		// before them can be taken for one.
		actions := strings.TrimSuffix(line[strings.LastIndex(line, ")")+1:], ",")
		for _, a := range []string{"SET NULL", "SET DEFAULT", "CASCADE", "RESTRICT", "NO ACTION"} {
			if strings.Contains(actions, "ON DELETE "+a) {
				onDelete = a
			}
			if strings.Contains(actions, "ON UPDATE "+a) {
				onUpdate = a
			}
		}
		break
	}
	return onDelete, onUpdate
}

// CascadingAction reports whether a referential action (ForeignKey.OnDelete or OnUpdate)
// changes the child table: all but RESTRICT and NO ACTION, which refuse the parent's
// change instead.
func CascadingAction(action string) bool {
	switch strings.ToUpper(action) {
	case "RESTRICT", "NO ACTION", "":
		return false
	}
	return true
}

// MissedOps is what the key does to rows of its child table that the binlog does not
// carry: OpDelete for ON DELETE CASCADE, OpUpdate for ON DELETE SET NULL or SET DEFAULT
// and for any cascading ON UPDATE. A reader that takes neither misses nothing.
func (k ForeignKey) MissedOps() []Op {
	var ops []Op
	switch strings.ToUpper(k.OnDelete) {
	case "CASCADE":
		ops = append(ops, OpDelete)
	case "SET NULL", "SET DEFAULT":
		ops = append(ops, OpUpdate)
	}
	if CascadingAction(k.OnUpdate) && !slices.Contains(ops, OpUpdate) {
		ops = append(ops, OpUpdate)
	}
	return ops
}

// Actions is the key's cascading actions as SQL writes them: "ON DELETE CASCADE",
// "ON DELETE SET NULL ON UPDATE CASCADE".
func (k ForeignKey) Actions() string {
	var parts []string
	if CascadingAction(k.OnDelete) {
		parts = append(parts, "ON DELETE "+k.OnDelete)
	}
	if CascadingAction(k.OnUpdate) {
		parts = append(parts, "ON UPDATE "+k.OnUpdate)
	}
	return strings.Join(parts, " ")
}

// Unlogged says what the key changes in its child table that the binlog does not carry:
// "a DELETE of a row of shop.parent deletes its rows of shop.child", joined by "; " for
// both actions.
func (k ForeignKey) Unlogged() string {
	parent, child := k.Parent, k.Table
	columns := "(" + strings.Join(k.Columns, ", ") + ")"
	var parts []string
	switch strings.ToUpper(k.OnDelete) {
	case "CASCADE":
		parts = append(parts, fmt.Sprintf("a DELETE of a row of %s deletes its rows of %s", parent, child))
	case "SET NULL":
		parts = append(parts, fmt.Sprintf("a DELETE of a row of %s sets %s of its rows of %s to NULL", parent, columns, child))
	case "SET DEFAULT":
		parts = append(parts, fmt.Sprintf("a DELETE of a row of %s sets %s of its rows of %s to their defaults", parent, columns, child))
	}
	changed := fmt.Sprintf("a change of (%s) in a row of %s", strings.Join(k.ParentColumns, ", "), parent)
	switch strings.ToUpper(k.OnUpdate) {
	case "CASCADE":
		parts = append(parts, fmt.Sprintf("%s changes %s of its rows of %s to match", changed, columns, child))
	case "SET NULL":
		parts = append(parts, fmt.Sprintf("%s sets %s of its rows of %s to NULL", changed, columns, child))
	case "SET DEFAULT":
		parts = append(parts, fmt.Sprintf("%s sets %s of its rows of %s to their defaults", changed, columns, child))
	}
	return strings.Join(parts, "; ")
}
