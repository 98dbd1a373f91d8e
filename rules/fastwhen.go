package rules

import (
	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"

	"github.com/stocksync/stocksync/canal"
)

// A rule's `when` runs for every row change of its tables, so it also gets a second,
// faster program: before.x, after.x and row.x become plain names ("after.x") looked up in
// one flat map, which expr reads directly, where a member of a map inside the struct
// environment goes through reflection and an allocation per access. The first program
// (the struct environment) stays the one that validates the expression.

// flatImages rewrites image members into flat names and records them.
type flatImages struct{ names *[]string }

func (v flatImages) Visit(n *ast.Node) {
	if id, ok := (*n).(*ast.IdentifierNode); ok && (id.Value == "op" || id.Value == "schema" || id.Value == "table") {
		*v.names = append(*v.names, id.Value)
		return
	}
	m, ok := (*n).(*ast.MemberNode)
	if !ok || m.Optional || m.Method {
		return
	}
	id, ok := m.Node.(*ast.IdentifierNode)
	if !ok || (id.Value != "before" && id.Value != "after" && id.Value != "row") {
		return
	}
	prop, ok := m.Property.(*ast.StringNode)
	if !ok {
		return
	}
	name := id.Value + "." + prop.Value
	*v.names = append(*v.names, name)
	ast.Patch(n, &ast.IdentifierNode{Value: name})
}

// compileFastWhen compiles src against the flat environment; nil when the expression
// uses the images other than by member (before == nil, row["x"]): the struct program
// then serves.
func compileFastWhen(src string) (*vm.Program, []string) {
	var names []string
	env := map[string]any{"op": "", "schema": "", "table": "", "changed": func(string) bool { return false }}
	p, err := expr.Compile(src, expr.Env(env), boundedRepeat, expr.AllowUndefinedVariables(), expr.AsBool(), expr.Patch(flatImages{names: &names}))
	if err != nil {
		return nil, nil
	}
	for _, n := range names {
		if n == "before" || n == "after" || n == "row" {
			return nil, nil
		}
	}
	node := p.Node()
	whole := false
	ast.Walk(&node, identifierFinder{found: &whole})
	if whole {
		return nil, nil
	}
	return p, names
}

// identifierFinder reports an image used whole (not through a member).
type identifierFinder struct{ found *bool }

func (f identifierFinder) Visit(n *ast.Node) {
	if id, ok := (*n).(*ast.IdentifierNode); ok && (id.Value == "before" || id.Value == "after" || id.Value == "row") {
		*f.found = true
	}
}

// flatKey is one flat name a table's fast programs read: op, schema, table, or an image
// member with image 'b', 'a' or 'r' (the current image) and the column's index (-1 when
// the table has no such column).
type flatKey struct {
	name  string
	image byte
	col   int
}

// flatKeysFor lists the flat names of the rules' fast programs for table t.
func flatKeysFor(rules []*rulePlan, t *canal.Table) []flatKey {
	seen := map[string]bool{}
	var keys []flatKey
	for _, rp := range rules {
		for _, n := range rp.rule.whenNames {
			if seen[n] {
				continue
			}
			seen[n] = true
			if n == "op" || n == "schema" || n == "table" {
				keys = append(keys, flatKey{name: n, image: n[0], col: -1})
				continue
			}
			dot := 0
			for dot < len(n) && n[dot] != '.' {
				dot++
			}
			keys = append(keys, flatKey{name: n, image: n[0], col: t.ColumnIndex(n[dot+1:])})
		}
	}
	return keys
}

// prepareFlat fills the flat environment for the current row once.
func (e *Engine) prepareFlat(c *canal.RowChange, tp *tablePlan) {
	if e.flatReady {
		return
	}
	e.flatReady = true
	if e.flat == nil {
		e.flat = map[string]any{"changed": e.changed}
	}
	current := c.After
	if current == nil {
		current = c.Before
	}
	for _, k := range tp.flatKeys {
		var img []any
		switch k.name {
		case "op":
			e.flat[k.name] = c.Op.Name()
			continue
		case "schema":
			e.flat[k.name] = c.Table.Schema
			continue
		case "table":
			e.flat[k.name] = c.Table.Name
			continue
		}
		switch k.image {
		case 'b':
			img = c.Before
		case 'a':
			img = c.After
		default:
			img = current
		}
		if k.col < 0 || img == nil || k.col >= len(img) {
			e.flat[k.name] = nil
			continue
		}
		e.flat[k.name] = exprValue(c.Table.Columns[k.col].Kind, img[k.col])
	}
}
