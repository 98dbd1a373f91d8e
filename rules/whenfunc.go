package rules

import (
	"cmp"
	"math"
	"strconv"
	"strings"

	"github.com/expr-lang/expr/ast"

	"github.com/stocksync/stocksync/canal"
)

// The conditions rule authors write are mostly comparisons of columns with constants,
// joined by and/or. For those, the fast program's syntax tree (fastwhen.go) is turned once
// per table into Go closures that read the row's columns by index: no environment to fill
// and no VM. A closure answers "not mine" for any value outside the plain cases it handles
// (a type mismatch, a nil where a number is wanted, an integer out of range); the fast
// program then runs on that row and decides, errors included, so both always agree.

// whenFunc evaluates a condition on one row change. ok is false when the expression
// program must decide instead.
type whenFunc func(c *canal.RowChange) (match, ok bool)

type valueKind uint8

const (
	kindNil valueKind = iota
	kindInt
	kindFloat
	kindString
	kindBool
)

// value is one typed value of a condition, unboxed.
type value struct {
	kind valueKind
	b    bool
	i    int64
	f    float64
	s    string
}

func (v value) number() (float64, bool) {
	switch v.kind {
	case kindInt:
		return float64(v.i), true
	case kindFloat:
		return v.f, true
	}
	return 0, false
}

// evalNode computes one node; ok false hands the row to the expression program.
type evalNode func(c *canal.RowChange) (v value, ok bool)

// compileWhenFunc turns a fast program's tree into closures over table t's columns; nil
// when the tree uses something the closures do not handle.
func compileWhenFunc(tree ast.Node, t *canal.Table) whenFunc {
	n := compileNode(tree, t)
	if n == nil {
		return nil
	}
	return func(c *canal.RowChange) (bool, bool) {
		v, ok := n(c)
		if !ok || v.kind != kindBool {
			return false, false
		}
		return v.b, true
	}
}

func constant(v value) evalNode {
	return func(*canal.RowChange) (value, bool) { return v, true }
}

func compileNode(n ast.Node, t *canal.Table) evalNode {
	switch n := n.(type) {
	case *ast.NilNode:
		return constant(value{})
	case *ast.BoolNode:
		return constant(value{kind: kindBool, b: n.Value})
	case *ast.IntegerNode:
		return constant(value{kind: kindInt, i: int64(n.Value)})
	case *ast.FloatNode:
		return constant(value{kind: kindFloat, f: n.Value})
	case *ast.StringNode:
		return constant(value{kind: kindString, s: n.Value})
	case *ast.ConstantNode:
		if v, ok := columnValue(canal.KindString, n.Value); ok {
			return constant(v)
		}
	case *ast.IdentifierNode:
		return compileIdentifier(n.Value, t)
	case *ast.UnaryNode:
		return compileUnary(n, t)
	case *ast.BinaryNode:
		return compileBinary(n, t)
	case *ast.ConditionalNode:
		cond, yes, no := compileNode(n.Cond, t), compileNode(n.Exp1, t), compileNode(n.Exp2, t)
		if cond == nil || yes == nil || no == nil {
			return nil
		}
		return func(c *canal.RowChange) (value, bool) {
			v, ok := cond(c)
			if !ok || v.kind != kindBool {
				return value{}, false
			}
			if v.b {
				return yes(c)
			}
			return no(c)
		}
	case *ast.CallNode:
		callee, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || callee.Value != "changed" || len(n.Arguments) != 1 {
			return nil
		}
		col, ok := n.Arguments[0].(*ast.StringNode)
		if !ok {
			return nil
		}
		i := t.ColumnIndex(col.Value)
		return func(c *canal.RowChange) (value, bool) {
			return value{kind: kindBool, b: columnChanged(c, i)}, true
		}
	}
	return nil
}

// compileIdentifier reads op, schema, table or a flat image name ("after.qty").
func compileIdentifier(name string, t *canal.Table) evalNode {
	switch name {
	case "op":
		return func(c *canal.RowChange) (value, bool) { return value{kind: kindString, s: c.Op.Name()}, true }
	case "schema":
		return constant(value{kind: kindString, s: t.Schema})
	case "table":
		return constant(value{kind: kindString, s: t.Name})
	}
	raw, kind, ok := compileColumn(name, t)
	if !ok {
		return nil
	}
	if raw == nil {
		return constant(value{})
	}
	return func(c *canal.RowChange) (value, bool) { return columnValue(kind, raw(c)) }
}

// compileColumn resolves a flat image name ("after.qty") to a reader of the column's raw
// value; a nil reader (with ok) for a column the table does not have, whose value is nil.
func compileColumn(name string, t *canal.Table) (raw func(*canal.RowChange) any, kind canal.ColumnKind, ok bool) {
	image, column, ok := strings.Cut(name, ".")
	if !ok || (image != "before" && image != "after" && image != "row") {
		return nil, 0, false
	}
	i := t.ColumnIndex(column)
	if i < 0 {
		return nil, 0, true
	}
	at := func(img []any) any {
		if i >= len(img) {
			return nil
		}
		return img[i]
	}
	kind = t.Columns[i].Kind
	switch image {
	case "before":
		return func(c *canal.RowChange) any { return at(c.Before) }, kind, true
	case "after":
		return func(c *canal.RowChange) any { return at(c.After) }, kind, true
	}
	return func(c *canal.RowChange) any {
		if c.After != nil {
			return at(c.After)
		}
		return at(c.Before)
	}, kind, true
}

// columnValue is a column's value as the expression environment sees it (exprValue).
func columnValue(k canal.ColumnKind, x any) (value, bool) {
	switch x := x.(type) {
	case nil:
		return value{}, true
	case int64:
		return value{kind: kindInt, i: x}, true
	case int: // an expression's integer constant
		return value{kind: kindInt, i: int64(x)}, true
	case uint64:
		if x > math.MaxInt64 { // as exprUint
			return value{kind: kindFloat, f: float64(x)}, true
		}
		return value{kind: kindInt, i: int64(x)}, true
	case float64:
		return value{kind: kindFloat, f: x}, true
	case string:
		if k == canal.KindDecimal {
			if f, err := strconv.ParseFloat(x, 64); err == nil {
				return value{kind: kindFloat, f: f}, true
			}
		}
		return value{kind: kindString, s: x}, true
	case []byte:
		return value{kind: kindString, s: string(x)}, true
	case bool:
		return value{kind: kindBool, b: x}, true
	}
	return value{}, false
}

func compileUnary(n *ast.UnaryNode, t *canal.Table) evalNode {
	x := compileNode(n.Node, t)
	if x == nil {
		return nil
	}
	switch n.Operator {
	case "!", "not":
		return func(c *canal.RowChange) (value, bool) {
			v, ok := x(c)
			if !ok || v.kind != kindBool {
				return value{}, false
			}
			return value{kind: kindBool, b: !v.b}, true
		}
	case "-":
		return func(c *canal.RowChange) (value, bool) {
			v, ok := x(c)
			switch {
			case !ok:
				return value{}, false
			case v.kind == kindInt:
				return value{kind: kindInt, i: -v.i}, true
			case v.kind == kindFloat:
				return value{kind: kindFloat, f: -v.f}, true
			}
			return value{}, false
		}
	}
	return nil
}

func compileBinary(n *ast.BinaryNode, t *canal.Table) evalNode {
	if n.Operator == "in" {
		return compileIn(n, t)
	}
	l, r := compileNode(n.Left, t), compileNode(n.Right, t)
	if l == nil || r == nil {
		return nil
	}
	switch n.Operator {
	case "??":
		return func(c *canal.RowChange) (value, bool) {
			a, ok := l(c)
			if !ok || a.kind != kindNil {
				return a, ok
			}
			return r(c)
		}
	case "&&", "and", "||", "or":
		stopOn := n.Operator == "||" || n.Operator == "or"
		return func(c *canal.RowChange) (value, bool) {
			a, ok := l(c)
			if !ok || a.kind != kindBool {
				return value{}, false
			}
			if a.b == stopOn {
				return a, true
			}
			b, ok := r(c)
			if !ok || b.kind != kindBool {
				return value{}, false
			}
			return b, true
		}
	case "==", "!=":
		negate := n.Operator == "!="
		return func(c *canal.RowChange) (value, bool) {
			a, ok1 := l(c)
			b, ok2 := r(c)
			if !ok1 || !ok2 {
				return value{}, false
			}
			return value{kind: kindBool, b: equal(a, b) != negate}, true
		}
	case "<", "<=", ">", ">=":
		op := n.Operator
		general := func(c *canal.RowChange) (value, bool) {
			a, ok1 := l(c)
			b, ok2 := r(c)
			if !ok1 || !ok2 {
				return value{}, false
			}
			order, ok := compare(a, b)
			if !ok {
				return value{}, false
			}
			return value{kind: kindBool, b: holds(op, order)}, true
		}
		if f := compileColumnVersusNumber(n, t, general); f != nil {
			return f
		}
		return general
	case "+", "-", "*", "/", "%":
		op := n.Operator[0]
		return func(c *canal.RowChange) (value, bool) {
			a, ok1 := l(c)
			b, ok2 := r(c)
			if !ok1 || !ok2 {
				return value{}, false
			}
			return arithmetic(op, a, b)
		}
	case "contains", "startsWith", "endsWith":
		test := strings.Contains
		if n.Operator == "startsWith" {
			test = strings.HasPrefix
		} else if n.Operator == "endsWith" {
			test = strings.HasSuffix
		}
		return func(c *canal.RowChange) (value, bool) {
			a, ok1 := l(c)
			b, ok2 := r(c)
			if !ok1 || !ok2 || a.kind != kindString || b.kind != kindString {
				return value{}, false
			}
			return value{kind: kindBool, b: test(a.s, b.s)}, true
		}
	}
	return nil
}

// compileColumnVersusNumber specialises the commonest condition, a column compared with a
// number (`after.qty < 2`, `after.price > 999.0`): the column's raw value is compared
// where it lies, with no value built for either side. Anything but a number or a decimal
// in the column goes the general way.
func compileColumnVersusNumber(n *ast.BinaryNode, t *canal.Table, general evalNode) evalNode {
	id, ok := n.Left.(*ast.IdentifierNode)
	lit := n.Right
	op := n.Operator
	if !ok {
		if id, ok = n.Right.(*ast.IdentifierNode); !ok {
			return nil
		}
		lit = n.Left
		op = map[string]string{"<": ">", "<=": ">=", ">": "<", ">=": "<="}[op]
	}
	var k float64
	var ki int64
	isInt := false
	switch l := lit.(type) {
	case *ast.IntegerNode:
		ki, k, isInt = int64(l.Value), float64(l.Value), true
	case *ast.FloatNode:
		k = l.Value
		if math.IsNaN(k) {
			return nil
		}
	default:
		return nil
	}
	raw, kind, ok := compileColumn(id.Value, t)
	if !ok || raw == nil {
		return nil
	}
	return func(c *canal.RowChange) (value, bool) {
		var order int
		switch x := raw(c).(type) {
		case int64:
			if isInt {
				order = cmp.Compare(x, ki)
			} else {
				order = cmp.Compare(float64(x), k)
			}
		case float64:
			if math.IsNaN(x) {
				return general(c)
			}
			order = cmp.Compare(x, k)
		case string:
			if kind != canal.KindDecimal {
				return general(c)
			}
			f, err := strconv.ParseFloat(x, 64)
			if err != nil || math.IsNaN(f) {
				return general(c)
			}
			order = cmp.Compare(f, k)
		default:
			return general(c)
		}
		return value{kind: kindBool, b: holds(op, order)}, true
	}
}

// holds applies comparison operator op to the result of a three-way comparison.
func holds(op string, order int) bool {
	switch op {
	case "<":
		return order < 0
	case "<=":
		return order <= 0
	case ">":
		return order > 0
	}
	return order >= 0
}

// compileIn handles `x in [constants]`, which expr keeps as a list or, for strings,
// turns into a set.
func compileIn(n *ast.BinaryNode, t *canal.Table) evalNode {
	needle := compileNode(n.Left, t)
	if needle == nil {
		return nil
	}
	switch list := n.Right.(type) {
	case *ast.ArrayNode:
		var items []value
		for _, it := range list.Nodes {
			var v value
			switch it := it.(type) {
			case *ast.IntegerNode:
				v = value{kind: kindInt, i: int64(it.Value)}
			case *ast.FloatNode:
				v = value{kind: kindFloat, f: it.Value}
			case *ast.StringNode:
				v = value{kind: kindString, s: it.Value}
			case *ast.BoolNode:
				v = value{kind: kindBool, b: it.Value}
			default:
				return nil
			}
			items = append(items, v)
		}
		return func(c *canal.RowChange) (value, bool) {
			x, ok := needle(c)
			if !ok {
				return value{}, false
			}
			for _, it := range items {
				if equal(it, x) {
					return value{kind: kindBool, b: true}, true
				}
			}
			return value{kind: kindBool}, true
		}
	case *ast.ConstantNode:
		set, ok := list.Value.(map[string]struct{})
		if !ok {
			return nil
		}
		return func(c *canal.RowChange) (value, bool) {
			x, ok := needle(c)
			if !ok || x.kind != kindString {
				return value{}, false
			}
			_, in := set[x.s]
			return value{kind: kindBool, b: in}, true
		}
	}
	return nil
}

// equal is expr's ==: numbers by value whatever their type, nil equal only to nil, values
// of different kinds unequal.
func equal(a, b value) bool {
	if x, ok := a.number(); ok {
		if y, ok := b.number(); ok {
			if a.kind == kindInt && b.kind == kindInt {
				return a.i == b.i
			}
			return x == y
		}
		return false
	}
	if a.kind != b.kind {
		return false
	}
	switch a.kind {
	case kindString:
		return a.s == b.s
	case kindBool:
		return a.b == b.b
	}
	return true // both nil
}

// compare orders two numbers or two strings; ok false for anything else (expr's error).
func compare(a, b value) (int, bool) {
	if a.kind == kindInt && b.kind == kindInt {
		return cmp.Compare(a.i, b.i), true
	}
	if x, ok := a.number(); ok {
		y, ok := b.number()
		if !ok || math.IsNaN(x) || math.IsNaN(y) {
			return 0, false
		}
		return cmp.Compare(x, y), true
	}
	if a.kind == kindString && b.kind == kindString {
		return strings.Compare(a.s, b.s), true
	}
	return 0, false
}

// arithmetic is expr's + - * / % on numbers: integers stay integers except for /, which
// is always a float; % takes integers only.
func arithmetic(op byte, a, b value) (value, bool) {
	if a.kind == kindInt && b.kind == kindInt {
		switch op {
		case '+':
			return value{kind: kindInt, i: a.i + b.i}, true
		case '-':
			return value{kind: kindInt, i: a.i - b.i}, true
		case '*':
			return value{kind: kindInt, i: a.i * b.i}, true
		case '%':
			if b.i == 0 {
				return value{}, false
			}
			return value{kind: kindInt, i: a.i % b.i}, true
		}
	}
	x, ok1 := a.number()
	y, ok2 := b.number()
	if !ok1 || !ok2 {
		return value{}, false
	}
	switch op {
	case '+':
		return value{kind: kindFloat, f: x + y}, true
	case '-':
		return value{kind: kindFloat, f: x - y}, true
	case '*':
		return value{kind: kindFloat, f: x * y}, true
	case '/':
		return value{kind: kindFloat, f: x / y}, true
	}
	return value{}, false
}
