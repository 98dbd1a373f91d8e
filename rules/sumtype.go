package rules

import (
	"encoding/json"
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
// with.
type sumTypeChange struct {
	sum, column string // the rule's sum, and the table's column (schema.table.column)
	was, now    string // the classes
}

// sumTypesChanged checks the classes of rp's summed columns against those st was built
// with for rp's table. A table st has not met yet is recorded (and, for a seeded state,
// its marker saved again with the next Commit): nil. Not nil when st met the table with
// other classes.
func (st *ruleState) sumTypesChanged(rp *rulePlan) *sumTypeChange {
	if rp.sumTypes == "" {
		return nil
	}
	table := rp.table.t.FullName()
	prev, ok := st.sumTypes[table]
	switch {
	case !ok:
		if st.sumTypes == nil {
			st.sumTypes = map[string]string{}
		}
		st.sumTypes[table] = rp.sumTypes
		if st.seeded {
			st.seedPending = true
		}
		return nil
	case prev == rp.sumTypes:
		return nil
	}
	// Restored only under the same signature, so the same sums: the lists align.
	before, after := strings.Split(prev, ","), strings.Split(rp.sumTypes, ",")
	for i, s := range st.rule.sums {
		if i < len(before) && i < len(after) && before[i] != after[i] {
			return &sumTypeChange{sum: s.name, column: table + "." + s.column, was: before[i], now: after[i]}
		}
	}
	return &sumTypeChange{column: table, was: prev, now: rp.sumTypes}
}

// checkSumTypes checks rp's summed columns' classes for st once per table shape
// (rp.typesChecked). A class changed: when adopt (the row is read from the table as it is
// now, by a seed or a snapshot) the new classes become the state's; otherwise st is
// prepared to be seeded again (reseedForSumTypes) and checkSumTypes reports true, the row
// not to be folded.
func (e *Engine) checkSumTypes(st *ruleState, rp *rulePlan, adopt bool) (reseeding bool) {
	change := st.sumTypesChanged(rp)
	if change != nil && !adopt {
		e.reseedForSumTypes(st, change)
		return true
	}
	if change != nil {
		st.sumTypes[rp.table.t.FullName()] = rp.sumTypes
	}
	rp.typesChecked = st
	return false
}

// reseedForSumTypes prepares st, whose rule's summed column changed class, to be seeded
// again from its tables in place, as after DDL (PrepareReseed): the pipeline seeds it
// (SeedsWanted) before the next row, and each group whose sum the seed finds in the new
// class comes as a c in the new type.
func (e *Engine) reseedForSumTypes(st *ruleState, change *sumTypeChange) {
	e.PrepareReseed([]string{st.rule.name}, canal.Source{Snapshot: true})
	e.seedsWanted = true
	e.log.Warn("a summed column's type changed: the rule's groups are seeded again from its tables and published in the new type",
		zap.String("rule", st.rule.name), zap.String("sum", change.sum), zap.String("column", change.column),
		zap.String("old_type", change.was), zap.String("new_type", change.now))
}

// SeedsWanted reports whether a rule was prepared since the last MarkSeeded to be seeded
// again from its tables (Unseeded names it) before the stream's next row: a summed column
// changed type class. The caller seeds it at once, between two rows: changes of
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
