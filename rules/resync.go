package rules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/stocksync/stocksync/canal"
)

// ResyncRequest names what a resync republishes.
type ResyncRequest struct {
	// Rules are rule names: aggregate and transition rules send their state, row rules
	// have their tables re-read. None: every aggregate and transition rule.
	Rules []string `json:"rules,omitempty"`
	// Keys are group keys as the messages' Kafka keys write them ({"sku_id":"A1"}); none:
	// every group.
	Keys []json.RawMessage `json:"keys,omitempty"`
}

// ResyncCount is what a resync emitted for one rule: its messages, and the keys asked
// for that the rule has no group for (no rows).
type ResyncCount struct {
	Rule     string            `json:"rule"`
	Messages int               `json:"messages"`
	Missing  []json.RawMessage `json:"missing,omitempty"`
}

// resyncPlan is one rule of a resync and the groups it sends: the keys asked for in
// canonical form, or nil for all of them.
type resyncPlan struct {
	rule *Rule
	keys []string
}

// CheckResync reports every problem of req against the set, in one error: a name that is
// unknown, a key that is not a JSON object of scalars with exactly a named rule's
// group_by columns, keys with a row rule, a row rule whose ops leave out read (its
// re-read would publish nothing). It returns the row rules req names, whose
// tables the caller re-reads (Reread); the engine's Resync sends the others' state.
func (s *Set) CheckResync(req ResyncRequest) (rowRules []string, err error) {
	plans, err := s.planResync(req)
	for _, p := range plans {
		if !p.rule.Stateful() {
			rowRules = append(rowRules, p.rule.name)
		}
	}
	return rowRules, err
}

func (s *Set) planResync(req ResyncRequest) ([]resyncPlan, error) {
	var stateful, all []string
	for _, r := range s.rules {
		all = append(all, r.name)
		if r.Stateful() {
			stateful = append(stateful, r.name)
		}
	}
	names := req.Rules
	if len(names) == 0 {
		if len(stateful) == 0 {
			return nil, errors.New("the rules have no aggregate or transition rule, whose state a resync republishes by default: name the row rules whose tables to re-read")
		}
		names = stateful
	}
	var plans []resyncPlan
	var errs []error
	for _, n := range names {
		r := s.Rule(n)
		switch {
		case r == nil:
			errs = append(errs, fmt.Errorf("no rule is named %q (the rules: %s)", n, strings.Join(all, ", ")))
			continue
		case !r.Stateful() && len(req.Keys) > 0:
			errs = append(errs, fmt.Errorf("rule %q emits rows: keys pick groups of aggregate and transition rules (%s); a row rule's tables are re-read whole", n, strings.Join(stateful, ", ")))
			continue
		case slices.ContainsFunc(plans, func(p resyncPlan) bool { return p.rule == r }):
			continue
		}
		p := resyncPlan{rule: r}
		if !r.Stateful() {
			if !r.ops[opIndex(canal.OpRead)] {
				errs = append(errs, fmt.Errorf("rule %q leaves read out of its match.ops: a re-read of its tables would publish nothing; add read to its ops", n))
				continue
			}
			plans = append(plans, p)
			continue
		}
		for _, raw := range req.Keys {
			k, err := canonicalKey(r.groupBy, raw)
			if err != nil {
				errs = append(errs, fmt.Errorf("rule %q: key %s: %w", n, raw, err))
			} else if !slices.Contains(p.keys, k) {
				p.keys = append(p.keys, k)
			}
		}
		plans = append(plans, p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return plans, nil
}

// canonicalKey writes a group key given as a JSON object the way the engine writes group
// keys: the group_by columns in their order, compact, strings escaped as appendString does.
func canonicalKey(groupBy []string, raw json.RawMessage) (string, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return "", fmt.Errorf("not a JSON object of the group_by columns %v", groupBy)
	}
	if len(fields) != len(groupBy) {
		return "", fmt.Errorf("the rule groups by %v", groupBy)
	}
	b := []byte{'{'}
	for i, name := range groupBy {
		v, ok := fields[name]
		if !ok {
			return "", fmt.Errorf("the rule groups by %v", groupBy)
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(appendString(b, name), ':')
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber()
		var x any
		dec.Decode(&x)
		switch x := x.(type) {
		case string:
			b = appendString(b, x)
		case json.Number:
			b = append(b, x...)
		case bool:
			b = strconv.AppendBool(b, x)
		case nil:
			b = append(b, "null"...)
		default:
			return "", fmt.Errorf("%s: %s is not a column value", name, v)
		}
	}
	return string(append(b, '}')), nil
}

// Resync emits the current state of the aggregate and transition rules req names (row
// rules it names are the caller's to re-read), one
// message per group (in key order, or in the order of req.Keys), as a read (op r) at
// `at`, the point between two transactions where the stream stands
// (canal.Server.SourceAt): what a consumer needs to rebuild what it keeps from these
// topics. Call it between Commits. Nothing is emitted when req is wrong (CheckResync's
// error); an error from out stops it and is returned.
func (e *Engine) Resync(ctx context.Context, req ResyncRequest, at canal.Source, out Emitter) ([]ResyncCount, error) {
	plans, err := e.set.planResync(req)
	if err != nil {
		return nil, err
	}
	// Row rules' tables are re-read by the caller.
	plans = slices.DeleteFunc(plans, func(p resyncPlan) bool { return !p.rule.Stateful() })
	defer func() { e.txnMsSet = false }() // the next transaction reads its own time
	src := at
	src.TsMs, src.Snapshot = e.txnTime(), true
	counts := make([]ResyncCount, 0, len(plans))
	for _, p := range plans {
		st := e.states[p.rule.name]
		count := ResyncCount{Rule: p.rule.name}
		keys := p.keys
		if keys == nil {
			keys = make([]string, 0, len(st.groups))
			for k := range st.groups {
				keys = append(keys, k)
			}
			slices.Sort(keys)
		}
		for _, k := range keys {
			g := st.groups[k]
			if g == nil {
				count.Missing = append(count.Missing, json.RawMessage(k))
				continue
			}
			ev := groupEvent{op: canal.OpRead, hasAfter: true, src: &src, table: g.srcTable}
			topic, ok := e.groupTopic(st, g)
			if !ok {
				continue
			}
			src.Row = count.Messages
			if err := out.Emit(ctx, e.groupMessage(st, g, ev, topic)); err != nil {
				return counts, fmt.Errorf("resyncing rule %q: %w", p.rule.name, err)
			}
			count.Messages++
		}
		counts = append(counts, count)
	}
	return counts, nil
}

// Reread hands a row of a re-read of their tables (a snapshot's, op r) to the named row
// rules alone, which emit it as Row would (their ops and when apply); other rules see
// nothing of it.
func (e *Engine) Reread(ctx context.Context, c *canal.RowChange, names []string, out Emitter) error {
	return e.row(ctx, c, out, names)
}

// tableNamed is the tableInfo that a group restored or emptied without a row names, one
// per table.
func (e *Engine) tableNamed(schema, name string) *tableInfo {
	key := [2]string{schema, name}
	if ti := e.named[key]; ti != nil {
		return ti
	}
	if e.named == nil {
		e.named = map[[2]string]*tableInfo{}
	}
	ti := namedTable(&canal.Table{Schema: schema, Name: name})
	e.named[key] = ti
	return ti
}
