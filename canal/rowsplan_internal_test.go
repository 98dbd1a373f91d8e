package canal

import (
	"testing"

	"github.com/go-mysql-org/go-mysql/replication"
)

// FuzzRowsPlanRejectsGarbage: whatever the bytes, decoding a row image with a plan of every
// op returns a row or errFallback, never panics, and never claims more bytes than it had.
func FuzzRowsPlanRejectsGarbage(f *testing.F) {
	plan := rowsPlan{
		{op: opInt, width: 1}, {op: opUint, width: 3}, {op: opInt, width: 8},
		{op: opString, width: 1}, {op: opLatin1, width: 2}, {op: opBytes, width: 1},
		{op: opDecimal, precision: 24, scale: 10}, {op: opDecimal, precision: 9, scale: 9},
		{op: opDateTime2, scale: 3}, {op: opTimestamp2, scale: 6},
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0x03})
	f.Add(make([]byte, 80))
	f.Add([]byte{0, 0, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 3, 'a', 'b', 'c', 2, 0, 'x', 'y', 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		row, n, err := plan.decodeImage(data)
		if err != nil {
			if err != errFallback {
				t.Fatalf("error %v, want errFallback", err)
			}
			return
		}
		if n > len(data) || len(row) != len(plan) {
			t.Fatalf("decoded %d values from %d of %d bytes", len(row), n, len(data))
		}
	})
}

// TestTakeUsesRowsDecodedAheadOnlyWithTheReadersPlan: rows the parser goroutine decoded
// with a plan the reader no longer holds (a reload or DDL came between) are decoded again
// with the reader's plan; with the same plan they are taken as they are.
func TestTakeUsesRowsDecodedAheadOnlyWithTheReadersPlan(t *testing.T) {
	d := newRowsDecoder(nil, nil)
	e := &replication.RowsEvent{ColumnCount: 1, ColumnBitmap1: []byte{1}}
	data := []byte{0x00, 0xff} // no NULLs, then one byte
	signed := rowsPlan{{op: opInt, width: 1}}
	unsigned := rowsPlan{{op: opUint, width: 1}}
	ahead, err := signed.decodeRows(false, e, data)
	if err != nil || ahead[0][0] != int64(-1) {
		t.Fatalf("decoding ahead: %v, %v", ahead, err)
	}

	d.deferred[e] = undecoded{data: data, rows: ahead, plan: signed}
	rows, err := d.take(e, replication.WRITE_ROWS_EVENTv2, true, unsigned)
	if err != nil || len(rows) != 1 || rows[0][0] != uint64(255) {
		t.Fatalf("with another plan than the one that decoded ahead: %v, %v; want the reader's plan's [[255]]", rows, err)
	}

	d.deferred[e] = undecoded{data: data, rows: ahead, plan: signed}
	rows, err = d.take(e, replication.WRITE_ROWS_EVENTv2, true, signed)
	if err != nil || len(rows) != 1 || &rows[0][0] != &ahead[0][0] {
		t.Fatalf("with the plan that decoded ahead: %v, %v; want the rows decoded ahead", rows, err)
	}
	if len(d.deferred) != 0 {
		t.Fatalf("take left %d events behind", len(d.deferred))
	}
}
