package canal

import "testing"

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
