package rules

import (
	"fmt"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/vm/runtime"
)

// boundedRepeat replaces expr's repeat(s, n), which allocates len(s)·n bytes before it
// charges them to the expression's memory budget: repeat(row.note, 1000000) over a 5 KB
// note asked for 5 GB, and the daemon died of it at the same row after every restart. This
// one refuses, as a failed expression, a result over the budget before allocating it.
var boundedRepeat = expr.Function("repeat", func(args ...any) (any, error) {
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("repeat: %T is not a string", args[0])
	}
	n := runtime.ToInt(args[1])
	switch {
	case n < 0:
		return nil, fmt.Errorf("repeat: a negative count (%d)", n)
	case len(s) > 0 && n > int(conf.DefaultMemoryBudget)/len(s):
		return nil, fmt.Errorf("repeat: %d times %d bytes is over the %d bytes an expression may make", n, len(s), conf.DefaultMemoryBudget)
	}
	return strings.Repeat(s, n), nil
}, strings.Repeat)
