package canal

import (
	"fmt"
	"strconv"
	"strings"
)

// Op is the kind of a row change, as in the message envelope.
type Op byte

const (
	OpCreate Op = 'c'
	OpUpdate Op = 'u'
	OpDelete Op = 'd'
	OpRead   Op = 'r' // a snapshot read
)

func (o Op) String() string { return string(o) }

// Name is the word rule authors write in `ops`: insert, update, delete, read.
func (o Op) Name() string {
	switch o {
	case OpCreate:
		return "insert"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	case OpRead:
		return "read"
	}
	return "unknown"
}

// Position is a point in the binlog between two transactions. GTIDSet, when the server
// has GTIDs, is the set executed up to and including the transaction before the point
// and is what a resume uses; File and Pos are always set.
type Position struct {
	File    string
	Pos     uint32
	GTIDSet string
}

func (p Position) String() string {
	if p.File == "" && p.GTIDSet != "" { // placed by its GTIDs alone
		return "gtid " + p.GTIDSet
	}
	s := p.File + ":" + strconv.FormatUint(uint64(p.Pos), 10)
	if p.GTIDSet != "" {
		s += " gtid " + p.GTIDSet
	}
	return s
}

// IsZero reports whether p names no position.
func (p Position) IsZero() bool { return p.File == "" && p.GTIDSet == "" }

// Compare orders two file positions of one server: -1, 0 or 1. Binlog files of one
// server sort by name (they share a base name and carry a growing number).
func (p Position) Compare(o Position) int {
	if c := strings.Compare(p.File, o.File); c != 0 {
		return c
	}
	switch {
	case p.Pos < o.Pos:
		return -1
	case p.Pos > o.Pos:
		return 1
	}
	return 0
}

// ColumnKind says how a column's values are represented in a RowChange.
type ColumnKind uint8

const (
	KindInt      ColumnKind = iota // int64
	KindUint                       // uint64 (unsigned integers, exact)
	KindFloat                      // float64
	KindDecimal                    // string holding the exact decimal
	KindString                     // string
	KindBytes                      // []byte (binary columns)
	KindDate                       // string YYYY-MM-DD
	KindDateTime                   // string in RFC 3339 (UTC; DATETIME's wall clock read as UTC)
	KindTime                       // string HH:MM:SS[.ffffff]
	KindJSON                       // []byte holding JSON text
	KindEnum                       // string (the label)
	KindSet                        // string (comma-separated labels)
	KindBit                        // uint64 (a BIT(n) is unsigned: BIT(64) reaches 2^64−1)
	KindYear                       // int64
)

var kindNames = [...]string{"int", "uint", "float", "decimal", "string", "bytes", "date", "datetime", "time", "json", "enum", "set", "bit", "year"}

func (k ColumnKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Numeric reports whether values of k are numbers that can be summed.
func (k ColumnKind) Numeric() bool {
	switch k {
	case KindInt, KindUint, KindFloat, KindDecimal, KindBit, KindYear:
		return true
	}
	return false
}

// Column is one column of a table as the binlog describes it.
type Column struct {
	Name string
	Kind ColumnKind
}

// Table is a table's shape at the moment of a row change. Tables are shared by every
// change of the same shape; treat them as read-only.
type Table struct {
	Schema  string
	Name    string
	Columns []Column
	// PrimaryKey holds indexes into Columns; empty when the table has none.
	PrimaryKey []int
}

// FullName is schema.table, as TableName.String writes it (`st.eu`.stock).
func (t *Table) FullName() string { return TableName{t.Schema, t.Name}.String() }

// ColumnIndex returns the index of the named column, or -1.
func (t *Table) ColumnIndex(name string) int {
	for i, c := range t.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// Source says where a change came from; it is the same every time the same change is
// read again, so consumers can drop repeats by it.
type Source struct {
	ServerID uint32
	// GTID of the transaction ("" without GTIDs).
	GTID string
	// File and Pos of the transaction's first event.
	File string
	Pos  uint32
	// TsMs is the commit's timestamp on the server, in milliseconds.
	TsMs int64
	// Row is the change's index among its transaction's changes of the same table, from 0
	// (a snapshot: within it). It does not depend on which other tables are matched, so
	// (ServerID, File, Pos, table, Row, Snapshot) names a change the same way under any rules.
	Row int
	// Snapshot marks a row read by a snapshot; its File and Pos are the snapshot's
	// position, which the next streamed transaction may share.
	Snapshot bool
}

// RowChange is one row inserted, updated, deleted or read by a snapshot. Values are in
// Table.Columns order and of the Go type each ColumnKind names, or nil for NULL.
type RowChange struct {
	Op     Op
	Table  *Table
	Before []any // nil for inserts and reads
	After  []any // nil for deletes
	Source Source
}

// Value returns the row's current image value of column i: After, or Before for a delete.
func (c *RowChange) Value(i int) any {
	if c.After != nil {
		return c.After[i]
	}
	return c.Before[i]
}
