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
// rule start again: its state is dropped for a new one, seeded from its tables exactly as
// a rule changed by a reload is (the pipeline's seedRules, at the next point it can), its
// old groups retired (retire.go).

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

// sumTypesChanged checks the classes of rp's summed columns against those st was built
// with for rp's table. A table st has not met yet is recorded (and, for a seeded state,
// its marker saved again with the next Commit): false. True when st met the table with
// other classes: the sum, the table's column and the classes before and now are
// returned.
func (st *ruleState) sumTypesChanged(rp *rulePlan) (changed bool, sum, column, was, now string) {
	if rp.sumTypes == "" {
		return false, "", "", "", ""
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
		return false, "", "", "", ""
	case prev == rp.sumTypes:
		return false, "", "", "", ""
	}
	before, after := strings.Split(prev, ","), strings.Split(rp.sumTypes, ",")
	for i, s := range st.rule.sums {
		if i < len(before) && i < len(after) && before[i] != after[i] {
			return true, s.name, table + "." + s.column, before[i], after[i]
		}
	}
	return true, "", table, prev, rp.sumTypes // saved under another sum list: not this rule's
}

// reseedForSumTypes replaces the state of rp's rule, whose summed column changed class,
// with a new one to be seeded from the rule's tables, as Install does for a rule a reload
// changed: the old groups are retired, to be taken back by the seed's Commit where the
// seed does not publish them. The pipeline seeds it (SeedsWanted) before the next row.
func (e *Engine) reseedForSumTypes(st *ruleState, sum, column, was, now string) {
	name := st.rule.name
	next := newRuleState(st.rule)
	next.retireFrom(st)
	next.awaitingSeed = true
	e.states[name] = next
	e.seedsWanted = true
	e.log.Warn("a summed column's type changed: the rule's groups are seeded again from its tables and published in the new type",
		zap.String("rule", name), zap.String("sum", sum), zap.String("column", column),
		zap.String("old_type", was), zap.String("new_type", now))
}

// SeedsWanted reports whether a rule's state was dropped since the last MarkSeeded, to be
// seeded again from its tables (Unseeded names it) before the stream's next row: a summed
// column changed type class. The caller seeds it at once, between two rows: changes of
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
