package rules

import (
	"fmt"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/types"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/rules/rulefmt"
)

// checkTypes compiles rule r's expressions again over the column types of table t, a
// table it matches (kinds: its columns' kinds by name): a number column compared with a
// string, a when that is not a boolean, arithmetic on a string column fail at every row
// at run time (a when false, a field or value null), so they are told now. An expression is told of once, for the
// first table it fails on (typeChecked holds what was told).
func (c *compiler) checkTypes(r *Rule, t TableInfo, kinds map[string]canal.ColumnKind, typeChecked map[rulefmt.Pos]bool) {
	img := make(types.Map, len(kinds))
	for name, kind := range kinds {
		img[name] = exprType(kind)
	}
	rowEnv := expr.Env(types.Map{"before": img, "after": img, "row": img, "op": types.String, "schema": types.String,
		"table": types.String, "changed": types.TypeOf(func(string) bool { return false })})
	at := fmt.Sprintf("%s, over table %s.%s", r.src.Label(), t.Schema, t.Name)
	check := func(what string, s rulefmt.String, env expr.Option, unknown func(string, bool) string, opts ...expr.Option) {
		if typeChecked[s.Pos] {
			return
		}
		before := len(c.errs)
		c.compile(at+": "+what, s, env, unknown, opts...)
		typeChecked[s.Pos] = len(c.errs) > before
	}
	if r.when != nil {
		check("match.when", r.src.When, rowEnv, rowUnknownHint, expr.AsBool())
	}
	for i, f := range r.fields {
		if f.prog != nil {
			check("fields."+f.name, r.src.Fields[i].Expr, rowEnv, rowUnknownHint)
		}
	}
	if r.value != nil {
		env := types.Map{}
		for _, g := range r.groupBy {
			env[g] = groupType(kinds[g])
		}
		for _, s := range r.sums {
			env[s.name] = sumType(kinds[s.column])
		}
		check("value", r.src.Value, expr.Env(env), func(string, bool) string { return "value sees the rule's group_by columns and sum fields" })
	}
}

// exprType is the type expressions see a column of kind k as (fillImage, exprValue),
// when it is not NULL. Unsigned integers (and BITs) are int: they are a uint64 below 2^63
// and a float64 from there, and what the check refuses for an int it would refuse for
// either (a comparison with a string, a when that is not a boolean).
func exprType(k canal.ColumnKind) types.Type {
	switch k {
	case canal.KindInt, canal.KindYear, canal.KindUint, canal.KindBit:
		return types.Int64
	case canal.KindFloat, canal.KindDecimal:
		return types.Float64
	case canal.KindString, canal.KindEnum, canal.KindSet, canal.KindDate, canal.KindDateTime, canal.KindTime, canal.KindBytes, canal.KindJSON:
		return types.String
	}
	return types.Any
}

// groupType is the type a transition value sees a group_by column of kind k as: the
// value its group's key holds (newGroup), as conditions see it (exprType), except a
// decimal and a binary column, which the key holds as a string (the exact decimal,
// base64), and a JSON column, whose value the key holds as JSON (an object, a number…).
func groupType(k canal.ColumnKind) types.Type {
	switch k {
	case canal.KindDecimal, canal.KindBytes:
		return types.String
	case canal.KindJSON:
		return types.Any
	}
	return exprType(k)
}

// sumType is the type a transition value sees a sum over a column of kind k as
// (accumulator.exprValue): a number, as exprType says it; any over a column that is not
// one, which CheckColumns reports on its own.
func sumType(k canal.ColumnKind) types.Type {
	if !k.Numeric() {
		return types.Any
	}
	return exprType(k)
}
