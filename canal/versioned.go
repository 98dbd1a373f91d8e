package canal

import (
	"math"
	"slices"
	"strings"
)

// versionedTable is how the stream reads a MariaDB table WITH SYSTEM VERSIONING. The
// binlog holds its history as row changes: an UPDATE is the update of the current row
// plus an INSERT of the old row as history (its row_end the time, or transaction, of the
// update), a DELETE is an UPDATE that sets the row's row_end, and DELETE HISTORY deletes
// history rows. The server's primary key of such a table ends in row_end. What is
// published is the table's current rows, as SELECT shows them and a snapshot reads them:
// a change is judged by whether its images are current (row_end at its maximum), the
// period columns row_start and row_end are left out of the images, and the key is the
// declared one, without row_end.
type versionedTable struct {
	table  *Table // as published: without the period columns
	rowEnd int    // index of row_end in the binlog's row
	keep   []int  // the binlog row's columns that are published, in order
}

// newVersionedTable returns how to read t (the binlog's shape) when information_schema
// says it is system-versioned (info), or, on MariaDB, when it no longer does but the
// binlog's last two columns are the implicit row_start and row_end that
// information_schema never lists: rows written before an ALTER TABLE … DROP SYSTEM
// VERSIONING (or a DROP TABLE), read later. It
// returns nil for any other table, and for a versioned table's rows written before its
// ADD SYSTEM VERSIONING (the binlog has no row_end then).
func newVersionedTable(t *Table, info tableInfo, mariadb bool) *versionedTable {
	rowStart, rowEnd := info.rowStart, info.rowEnd
	if n := len(t.Columns); rowEnd == "" && mariadb && n > 2 &&
		t.Columns[n-2].Name == "row_start" && t.Columns[n-1].Name == "row_end" && !slices.Contains(info.names, "row_end") {
		rowStart, rowEnd = "row_start", "row_end"
	}
	if rowEnd == "" {
		return nil
	}
	v := &versionedTable{rowEnd: t.ColumnIndex(rowEnd), table: &Table{Schema: t.Schema, Name: t.Name}}
	start := t.ColumnIndex(rowStart)
	if v.rowEnd < 0 {
		return nil
	}
	published := make([]int, len(t.Columns)) // binlog index → published index, or -1
	for i, c := range t.Columns {
		published[i] = -1
		if i == v.rowEnd || i == start {
			continue
		}
		published[i] = len(v.keep)
		v.keep = append(v.keep, i)
		v.table.Columns = append(v.table.Columns, c)
	}
	for _, k := range t.PrimaryKey {
		if published[k] >= 0 {
			v.table.PrimaryKey = append(v.table.PrimaryKey, published[k])
		}
	}
	return v
}

// currentChange turns c, a change of the binlog's rows, into the change of the table's
// current rows it makes, in place, and reports whether there is one. A current row is
// one whose row_end is the maximum the server gives it: 2038-01-19 03:14:07.999999 UTC
// for a timestamp-precise table (MariaDB 11.5 and later on 64-bit: 2106-02-07
// 06:28:15.999999), 18446744073709551615 for a transaction-precise one.
func (v *versionedTable) currentChange(c *RowChange) bool {
	before := c.Before != nil && v.current(c.Before)
	after := c.After != nil && v.current(c.After)
	switch {
	case before && after:
		c.Op = OpUpdate
	case before:
		c.Op, after = OpDelete, false // a DELETE: the row became history
	case after:
		c.Op = OpCreate
	default:
		return false // a history row written, or deleted (DELETE HISTORY)
	}
	c.Table = v.table
	if before {
		c.Before = v.project(c.Before)
	} else {
		c.Before = nil
	}
	if after {
		c.After = v.project(c.After)
	} else {
		c.After = nil
	}
	return true
}

func (v *versionedTable) current(row []any) bool {
	switch end := row[v.rowEnd].(type) {
	case uint64:
		return end == math.MaxUint64
	case string:
		return strings.HasPrefix(end, "2038-01-19T03:14:07.999999") || strings.HasPrefix(end, "2106-02-07T06:28:15.999999")
	}
	return false
}

// project is row without the period columns.
func (v *versionedTable) project(row []any) []any {
	out := make([]any, len(v.keep))
	for i, k := range v.keep {
		out[i] = row[k]
	}
	return out
}
