package rules

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stocksync/stocksync/canal"
)

// FuzzLoad checks that no rules file makes the loader (or an engine built from what it
// accepts) panic, and that every rejection has a message. The seed corpus is every
// testdata/*.yaml; run it with go test -fuzz FuzzLoad ./rules/.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("rules:\n  - {name: a, match: {table: \"*.*\"}, topic: \"{sku_id}.{op}\", fields: {x: \"row.qty ?? 1\"}}\n"))
	f.Add([]byte("rules:\n  - name: a\n    match:\n      table: a.b\n      when: >-\n        'x' >\n          \"\\u00e9\" nope\n    topic: t\n")) // an error inside a block scalar
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.yaml", data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		e := NewEngine(s, 1)
		ctx := context.Background()
		for _, c := range []*canal.RowChange{
			{Op: canal.OpCreate, Table: shardTable, After: shardRow("A1", 0, 3), Source: src(0)},
			{Op: canal.OpUpdate, Table: shardTable, Before: shardRow("A1", 0, 3), After: shardRow("A1", 0, 1), Source: src(1)},
			{Op: canal.OpDelete, Table: stockTable, Before: []any{"A1", int64(1)}, Source: src(2)},
			{Op: canal.OpRead, Table: kindsTable, After: kindsRow(1, "x"), Source: src(3)},
		} {
			if err := e.Row(ctx, c, &recorder{}); err != nil {
				return
			}
		}
		if _, err := e.Commit(ctx, canal.Position{File: "f", Pos: 4}, &recorder{}); err != nil {
			t.Fatal(err)
		}
	})
}
