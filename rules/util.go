package rules

import (
	"fmt"
	"sort"
	"strings"

	"github.com/stocksync/stocksync/canal"
)

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func fmtAny(v any) string { return fmt.Sprint(v) }

// maxColumnsShown is how many of a table's columns columnsHint names.
const maxColumnsShown = 30

// columnsHint names a table's columns in table order, for a message about a column it
// lacks: "its columns: sku_id, qty" (the first maxColumnsShown of a wider table).
func columnsHint(cols []canal.Column) string {
	names := make([]string, 0, min(len(cols), maxColumnsShown))
	for _, c := range cols[:min(len(cols), maxColumnsShown)] {
		names = append(names, c.Name)
	}
	more := ""
	if len(cols) > maxColumnsShown {
		more = fmt.Sprintf(", … (%d in all)", len(cols))
	}
	return "its columns: " + strings.Join(names, ", ") + more
}
