package rules

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/stocksync/stocksync/canal"
)

// A sum's JSON type is its column's (integer: a number; DECIMAL: a string; float: a
// number summed in float64), in every message of the rule. An ALTER TABLE that moves a
// summed column to another of these classes (DOUBLE to DECIMAL, INT to DECIMAL, …) would
// otherwise fold the new values into sums of the old kind: a DECIMAL summed in float64, or
// an integer sum turned into a string between a message's before and after. So each
// stateful rule records, per table, the classes of its summed columns as its state was
// built (saved with its seed marker), and a row of a table whose classes differ makes the
// rule start again: it is seeded again from its tables in place (PrepareReseed, then the
// pipeline's seedRules before the next row), as after DDL that moves rows, which is also
// what meets an ALTER TABLE … MODIFY at its statement; this check meets a copy of another
// type swapped onto the table's name.

// sumClass is the class of a summed column's kind: what decides its sum's JSON type.
func sumClass(k canal.ColumnKind) string {
	switch k {
	case canal.KindDecimal:
		return "decimal"
	case canal.KindFloat:
		return "float"
	}
	return "integer"
}

// planSumTypes is the classes of a rule's summed columns in a table, in the rule's sum
// order, comma-separated ("float,integer"); "" when a column is missing (the plan's err
// stops the stream there).
func planSumTypes(kinds []canal.ColumnKind) string {
	classes := make([]string, len(kinds))
	for i, k := range kinds {
		classes[i] = sumClass(k)
	}
	return strings.Join(classes, ",")
}

// sumTypeChange is a summed column met in another class than its rule's state was built
// with, or than another table of the rule has it in.
type sumTypeChange struct {
	sum, column string // the rule's sum, and the table's column (schema.table.column)
	was, now    string // the classes
	// other is the other table (schema.table) whose column is of class was; "" when
	// was is the class the same table had.
	other string
}

// diffSumTypes is the first of rule r's sums whose class differs between was and now,
// classes of table's summed columns (planSumTypes); nil when none does.
func diffSumTypes(r *Rule, table, was, now string) *sumTypeChange {
	if was == now {
		return nil
	}
	// Recorded under the same signature, so the same sums: the lists align.
	before, after := strings.Split(was, ","), strings.Split(now, ",")
	for i, s := range r.sums {
		if i < len(before) && i < len(after) && before[i] != after[i] {
			return &sumTypeChange{sum: s.name, column: table + "." + s.column, was: before[i], now: after[i]}
		}
	}
	return &sumTypeChange{column: table, was: was, now: now}
}

// checkSumTypes checks rp's summed columns' classes for st once per table shape
// (rp.typesChecked). A table st has not met yet is recorded (and, for a seeded state, its
// marker saved again with the next Commit). Classes that differ from those st met in the
// same table, or in another table (sumTypesConflict): when adopt (the row is read from the
// table as it is now, by a seed or a snapshot), the same table's become the state's, and
// another table's are an error, as the rule cannot run over both; otherwise (a streamed
// row) st is prepared to be seeded again (reseedForSumTypes) and checkSumTypes reports
// true, the row not to be folded: the seed reads the tables as they are now, and folds
// them in their classes, or fails with that error when they still disagree.
func (e *Engine) checkSumTypes(st *ruleState, rp *rulePlan, adopt bool) (reseeding bool, err error) {
	if rp.sumTypes == "" {
		rp.typesChecked = st
		return false, nil
	}
	table := rp.table.t.FullName()
	prev, met := st.sumTypes[table]
	change := st.sumTypesConflict(table, rp.sumTypes)
	if met && change == nil {
		change = diffSumTypes(st.rule, table, prev, rp.sumTypes)
	}
	switch {
	case change != nil && !adopt:
		e.reseedForSumTypes(st, change)
		return true, nil
	case change != nil && change.other != "":
		return false, change.err(st.rule)
	}
	if st.sumTypes == nil {
		st.sumTypes = map[string]string{}
	}
	st.sumTypes[table] = rp.sumTypes
	if !met && st.seeded {
		st.seedPending = true
	}
	rp.typesChecked = st
	return false, nil
}

// sumTypesConflict is the first sum whose class in table (types: planSumTypes) differs
// from its class in another table st met, nil when none does: one group may hold rows of
// both, and its sum would change JSON type between one message's before and after (an
// integer's number becoming a DECIMAL's string), which the topic contract rules out.
// CheckColumns refuses such a rule at start and at each reload; this meets a table
// created, altered or swapped onto a name since. The other tables are taken in name
// order, so that the same one is named each time.
func (st *ruleState) sumTypesConflict(table, types string) *sumTypeChange {
	for _, other := range slices.Sorted(maps.Keys(st.sumTypes)) {
		if other == table {
			continue
		}
		if d := diffSumTypes(st.rule, table, st.sumTypes[other], types); d != nil {
			d.other = other
			return d
		}
	}
	return nil
}

// err is the error of a conflict between two tables (other set), naming the rule, the
// sum, both columns and their classes.
func (c *sumTypeChange) err(r *Rule) error {
	what := fmt.Sprintf("the summed columns of %s are %s but those of %s are %s", c.column, c.now, c.other, c.was)
	if c.sum != "" {
		col := c.column[strings.LastIndexByte(c.column, '.')+1:]
		what = fmt.Sprintf("sum.%s: column %s is %s but %s.%s is %s", c.sum, c.column, c.now, c.other, col, c.was)
	}
	return fmt.Errorf("rule %q: %s: %s", r.name, what, sumClassesDiffer)
}

// sumClassesDiffer is what a rule whose summed column differs in class between two of its
// tables is told, by the check at start and reload (CheckColumns) and by the stream.
const sumClassesDiffer = "a sum's JSON type is its column's, so the column must be of one class " +
	"(integer, decimal or float) in every table the rule reads; narrow match.table, or alter the column to one class"

// forgetTypesChecked makes every table's next row of st's rule check its classes again
// (checkSumTypes), as st forgot them.
func (e *Engine) forgetTypesChecked(st *ruleState) {
	for _, tp := range e.plans {
		for _, rp := range tp.rules {
			if rp.typesChecked == st {
				rp.typesChecked = nil
			}
		}
	}
}

// reseedForSumTypes prepares st, whose rule's summed column changed class (in its table,
// or against another table of the rule), to be seeded again from its tables in place, as
// after DDL (PrepareReseed): the pipeline seeds it (SeedsWanted) before the next row, and
// each group whose sum the seed finds in the new class comes as a c in the new type.
func (e *Engine) reseedForSumTypes(st *ruleState, change *sumTypeChange) {
	e.PrepareReseed([]string{st.rule.name}, canal.Source{Snapshot: true})
	e.seedsWanted = true
	if change.other != "" {
		e.log.Warn("a summed column is of another class than in another table the rule reads: the rule is seeded again from its tables, which must agree",
			zap.String("rule", st.rule.name), zap.String("sum", change.sum), zap.String("column", change.column), zap.String("type", change.now),
			zap.String("other_table", change.other), zap.String("other_type", change.was))
		return
	}
	e.log.Warn("a summed column's type changed: the rule's groups are seeded again from its tables and published in the new type",
		zap.String("rule", st.rule.name), zap.String("sum", change.sum), zap.String("column", change.column),
		zap.String("old_type", change.was), zap.String("new_type", change.now))
}

// SeedsWanted reports whether a rule was prepared since the last MarkSeeded to be seeded
// again from its tables (Unseeded names it) before the stream's next row: a summed column
// changed type class, or came in another class than in another table of the rule. The caller seeds it at once, between two rows: changes of
// the transaction the snapshot's position follows are skipped, as the snapshot holds them.
func (e *Engine) SeedsWanted() bool { return e.seedsWanted }

// encodeSumTypes is the recorded classes as saved in a seed marker: a JSON object by
// table; "" for none.
func encodeSumTypes(types map[string]string) string {
	if len(types) == 0 {
		return ""
	}
	b, _ := json.Marshal(types) // map[string]string: cannot fail; keys sorted
	return string(b)
}

// decodeSumTypes reads encodeSumTypes; nil when s is empty or unreadable (the classes are
// then learned again from the next rows).
func decodeSumTypes(s string) map[string]string {
	if s == "" {
		return nil
	}
	var types map[string]string
	if json.Unmarshal([]byte(s), &types) != nil {
		return nil
	}
	return types
}
