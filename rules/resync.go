package rules

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/stocksync/stocksync/canal"
)

// ResyncCount is how many group messages a resync emitted for one rule.
type ResyncCount struct {
	Rule     string `json:"rule"`
	Messages int    `json:"messages"`
}

// ResyncRules picks the rules a resync republishes: the named ones, or every aggregate
// and transition rule when names is empty. Every name that is unknown or names a row
// rule (whose messages are rows, not state) is reported, in one error.
func (s *Set) ResyncRules(names []string) ([]*Rule, error) {
	var stateful []string
	for _, r := range s.rules {
		if r.Stateful() {
			stateful = append(stateful, r.name)
		}
	}
	if len(stateful) == 0 {
		return nil, errors.New("the rules have no aggregate or transition rule: a resync republishes their state, and row rules have none")
	}
	if len(names) == 0 {
		names = stateful
	}
	var picked []*Rule
	var errs []error
	for _, n := range names {
		r := s.Rule(n)
		switch {
		case r == nil:
			errs = append(errs, fmt.Errorf("no rule is named %q (the aggregate and transition rules: %s)", n, strings.Join(stateful, ", ")))
		case !r.Stateful():
			errs = append(errs, fmt.Errorf("rule %q emits rows: a resync republishes the state of aggregate and transition rules only (%s)", n, strings.Join(stateful, ", ")))
		case !slices.Contains(picked, r):
			picked = append(picked, r)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return picked, nil
}

// Resync emits the current state of the named aggregate and transition rules (every one
// when names is empty), one message per group in key order, as a read (op r) at `at`,
// the point between two transactions where the stream stands (canal.Server.SourceAt):
// what a consumer needs to rebuild what it keeps from these topics. Call it between
// Commits. Nothing is emitted when a name is wrong (the error is ResyncRules'); an error
// from out stops it and is returned.
func (e *Engine) Resync(ctx context.Context, names []string, at canal.Source, out Emitter) ([]ResyncCount, error) {
	picked, err := e.set.ResyncRules(names)
	if err != nil {
		return nil, err
	}
	for _, r := range picked {
		if !topicNamesTable(r) {
			continue
		}
		for k, g := range e.states[r.name].groups {
			if g.srcTable == nil {
				return nil, fmt.Errorf("resyncing rule %q: group %s: the rule's topic names the table, and the group's saved state does not (saved by an earlier stocksync; any change to the group fixes it)", r.name, k)
			}
		}
	}
	defer func() { e.txnMsSet = false }() // the next transaction reads its own time
	src := at
	src.TsMs, src.Snapshot = e.txnTime(), true
	unnamed := namedTable(&canal.Table{})
	counts := make([]ResyncCount, 0, len(picked))
	for _, r := range picked {
		st := e.states[r.name]
		keys := make([]string, 0, len(st.groups))
		for k := range st.groups {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			g := st.groups[k]
			ev := groupEvent{op: canal.OpRead, hasAfter: true, src: &src, table: g.srcTable}
			if ev.table == nil {
				ev.table = unnamed // state saved before groups remembered their table
			}
			src.Row = i
			if err := out.Emit(ctx, e.groupMessage(st, g, ev)); err != nil {
				return counts, fmt.Errorf("resyncing rule %q: %w", r.name, err)
			}
		}
		counts = append(counts, ResyncCount{Rule: r.name, Messages: len(keys)})
	}
	return counts, nil
}

// topicNamesTable reports whether r's topic template has {schema} or {table}.
func topicNamesTable(r *Rule) bool {
	for _, p := range r.topicParts {
		if p.Var && (p.Text == "schema" || p.Text == "table") {
			return true
		}
	}
	return false
}

// restoredTable is the tableInfo a restored group names, one per table.
func (e *Engine) restoredTable(schema, name string) *tableInfo {
	key := schema + "\x00" + name
	if ti := e.restored[key]; ti != nil {
		return ti
	}
	if e.restored == nil {
		e.restored = map[string]*tableInfo{}
	}
	ti := namedTable(&canal.Table{Schema: schema, Name: name})
	e.restored[key] = ti
	return ti
}
