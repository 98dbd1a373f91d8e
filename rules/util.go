package rules

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/expr-lang/expr/builtin"

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

// maxColumnsShown is how many of a table's columns columnsHint names.
const maxColumnsShown = 30

// columnsHint names a table's columns in table order, for a message about a column it
// lacks: "its columns: sku_id, qty" (the first maxColumnsShown of a wider table).
// A column close to missing, when there is one, is named first: "did you mean qty? its
// columns: …".
func columnsHint(missing string, cols []canal.Column) string {
	all := make([]string, 0, len(cols))
	for _, c := range cols {
		all = append(all, c.Name)
	}
	more := ""
	if len(cols) > maxColumnsShown {
		more = fmt.Sprintf(", … (%d in all)", len(cols))
	}
	return didYouMean(missing, all, false) + "its columns: " + strings.Join(all[:min(len(all), maxColumnsShown)], ", ") + more
}

// didYouMean is "did you mean NAME? " for the one of known (and, for a name that is
// called, of expr's functions: len, upper…) closest to name, when it is close enough to be
// a misspelling of it (at most two letters added, dropped, changed or swapped, and fewer
// than half of name's), and "" otherwise.
func didYouMean(name string, known []string, call bool) string {
	if call {
		known = slices.Clone(known)
		for _, f := range builtin.Builtins {
			known = append(known, f.Name)
		}
	}
	best, bestDistance := "", 3
	for _, k := range known {
		if d := editDistance(name, k); d < bestDistance && 2*d < len([]rune(name)) {
			best, bestDistance = k, d
		}
	}
	if best == "" {
		return ""
	}
	return "did you mean " + best + "? "
}

// editDistance is the number of letters added, dropped, changed or swapped next to each
// other that turn a into b (optimal string alignment distance).
func editDistance(a, b string) int {
	s, t := []rune(a), []rune(b)
	// rows[i][j] is the distance between s[:i] and t[:j]; three rows are kept.
	prev2, prev, cur := make([]int, len(t)+1), make([]int, len(t)+1), make([]int, len(t)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(s); i++ {
		cur[0] = i
		for j := 1; j <= len(t); j++ {
			cost := 1
			if s[i-1] == t[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && s[i-1] == t[j-2] && s[i-2] == t[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(t)]
}
