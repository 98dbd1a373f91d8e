package rules

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/expr-lang/expr/vm"
	"go.uber.org/zap"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/rules/rulefmt"
	"github.com/stocksync/stocksync/sinks"
)

// ruleState is the groups of one aggregate or transition rule.
type ruleState struct {
	rule    *Rule
	groups  map[string]*group
	touched []*group
	env     map[string]any

	// seeded: the state starts from the tables' contents (a snapshot, or saved state
	// of this very definition); activeAfter: changes of transactions that began before
	// it are already folded (seeded by a snapshot at that position); seedPending: the
	// marker is still to be saved.
	seeded      bool
	seedPending bool
	activeAfter canal.Position

	// fresh: none of the groups has been published yet (the state starts empty, and no
	// Commit has passed since it was seeded); a restored state is not fresh.
	fresh bool
	// retired are the groups an earlier definition of the rule (or a removed rule it took
	// over) published, by key, published as retracted where the seed does not publish
	// them, and their entries deleted, by the first Commit after the seed (retire.go).
	retired map[string]retiredGroup
	// retiredValue is the value of the transition definition that published retired
	// groups, when the rule is no longer a transition rule (its empty value takes them
	// back); nil otherwise, or when not known.
	retiredValue *vm.Program

	// sumTypes are the classes (sumClass) of the summed columns as the state was built,
	// by table ("schema.table": "float,integer"), saved with the seed marker; a row of a
	// table whose classes differ makes the rule seed again (sumtype.go).
	sumTypes map[string]string
}

// group is one group's running state.
type group struct {
	key string // the group key as a JSON object, also the Kafka key
	// body and bodyStrings are the key object without braces, typed and as strings;
	// valueSpans[i] is where group column i's value is in body.
	body, bodyStrings []byte
	valueSpans        [][2]int
	vals              []any // group column values as read back from key (transitionValue converts them for value)
	count             int64
	sums              []accumulator
	value             []byte // transition: the value last emitted (JSON)
	topic             string // the topic it was last published on ("": not since saved with it)

	// binary is, per group column, whether it is a binary column, whose value the key
	// holds in base64 (and a topic as its bytes); nil when none is. Set from the first row
	// folded into the group, or from its saved state (appendState's "binary").
	binary []bool

	// per transaction
	inTxn bool
	// reseeding: emptied for a seed after DDL (Engine.PrepareReseed), and no row folded in
	// since: the first one sets each sum's class from its column, which DDL may have changed.
	reseeding bool
	prevCount int64
	prevSums  []accumulator
	prevValue []byte
	src       canal.Source
	srcTable  *tableInfo
}

func newRuleState(r *Rule) *ruleState {
	return &ruleState{rule: r, groups: map[string]*group{}, env: map[string]any{}, fresh: true}
}

// fold applies one row change to st, the state of rp's rule: an insert or read adds its
// after image, a delete subtracts its before image, an update does both (to two groups
// when it moves a row from one group to another).
func (e *Engine) fold(st *ruleState, rp *rulePlan, c *canal.RowChange) error {
	if st.holds(c.Source) { // its seed already holds the change
		return nil
	}
	switch c.Op {
	case canal.OpCreate, canal.OpRead:
		e.apply(st, rp, c, c.After, 1)
	case canal.OpDelete:
		e.apply(st, rp, c, c.Before, -1)
	case canal.OpUpdate:
		if c.Before == nil || c.After == nil || !sameGroup(rp, c) {
			e.apply(st, rp, c, c.Before, -1)
			e.apply(st, rp, c, c.After, 1)
			return nil
		}
		// The row stays in its group (the usual update): one lookup, the sums move by
		// after − before.
		g := e.group(st, rp, c.After)
		if g == nil {
			return nil
		}
		for i, idx := range rp.sumIdx {
			g.sums[i].add(c.Before[idx], -1)
			g.sums[i].add(c.After[idx], 1)
		}
		g.src, g.srcTable = c.Source, rp.table
	}
	return nil
}

// sameGroup reports whether an update leaves the row in its group.
func sameGroup(rp *rulePlan, c *canal.RowChange) bool {
	for _, idx := range rp.groupIdx {
		if !valuesEqual(c.Before[idx], c.After[idx]) {
			return false
		}
	}
	return true
}

// apply adds (sign 1) or removes (sign -1) the row image img to or from its group.
func (e *Engine) apply(st *ruleState, rp *rulePlan, c *canal.RowChange, img []any, sign int64) {
	if img == nil {
		return
	}
	g := e.group(st, rp, img)
	if g == nil {
		return
	}
	if g.reseeding {
		g.reseeding = false
		for i, idx := range rp.sumIdx {
			g.sums[i].startAs(rp.table.t.Columns[idx].Kind)
		}
	}
	g.count += sign
	for i, idx := range rp.sumIdx {
		g.sums[i].add(img[idx], sign)
	}
	g.src = c.Source
	g.srcTable = rp.table
}

// group returns the group of row image img, made if new, and marked as touched by the
// transaction with its values as of the transaction's start; nil if its key cannot be
// read back (it was just encoded, so that does not happen).
func (e *Engine) group(st *ruleState, rp *rulePlan, img []any) *group {
	t := rp.table.t
	k := e.tmp[:0]
	k = append(k, '{')
	for i, idx := range rp.groupIdx {
		if i > 0 {
			k = append(k, ',')
		}
		k = append(k, rp.groupKeys[i]...)
		k = appendValue(k, t.Columns[idx].Kind, img[idx], styleTyped)
	}
	k = append(k, '}')
	e.tmp = k
	g := st.groups[string(k)]
	if g == nil {
		var err error
		g, err = st.newGroup(string(k))
		if err != nil {
			return nil
		}
		for i, idx := range rp.sumIdx {
			if t.Columns[idx].Kind == canal.KindDecimal {
				g.sums[i].startDecimal()
			}
		}
		g.srcTable = rp.table // for what a failing empty value logs
		if st.rule.emit == EmitTransition {
			g.value = e.emptyValue(st, g)
		}
		st.groups[g.key] = g
	}
	if g.binary == nil { // a new group, or one restored from state saved without it
		g.binary = rp.groupBinary
	}
	st.touch(g)
	return g
}

// touch marks g as touched by the transaction, keeping its values as of the
// transaction's start, unless it already is.
func (st *ruleState) touch(g *group) {
	if g.inTxn {
		return
	}
	g.inTxn = true
	g.prevCount = g.count
	if cap(g.prevSums) < len(g.sums) {
		g.prevSums = make([]accumulator, len(g.sums))
	}
	g.prevSums = g.prevSums[:len(g.sums)]
	for i := range g.sums {
		g.prevSums[i].copyFrom(&g.sums[i])
	}
	g.prevValue = g.value
	st.touched = append(st.touched, g)
}

// Empty empties every group of the aggregate and transition rules that read
// schema.table, as if each of the table's rows had been deleted by the change at `at`:
// DDL that emptied the table (TRUNCATE, DROP TABLE), between two transactions. The next
// Commit, that statement's, emits the groups as it emits groups whose last row was
// deleted (aggregate: op d; transition: only a value that changes) and returns their
// state entries. Every such rule must read the table alone (Set.StatefulAlone), else
// nothing is emptied and the error says so. A rule seeded at a later position already
// holds the change and is left as it is.
func (e *Engine) Empty(schema, table string, at canal.Source) error {
	if !e.set.StatefulAlone(schema, table) {
		return fmt.Errorf("emptying the groups of %s.%s: an aggregate or transition rule reads other tables too", schema, table)
	}
	ti := e.tableNamed(schema, table)
	for _, r := range e.set.rules {
		st := e.states[r.name]
		if st == nil || !r.MatchesTable(schema, table) || st.holds(at) {
			continue
		}
		st.emptyGroups(at, ti)
	}
	return nil
}

// emptyGroups empties every group of the rule, as of the change at `at` (of table ti; nil
// keeps each group's own), each touched so that the next Commit publishes it against what
// it was. In key order, the groups' Row counting them, so that a replay publishes the
// same messages.
func (st *ruleState) emptyGroups(at canal.Source, ti *tableInfo) {
	for i, k := range slices.Sorted(maps.Keys(st.groups)) {
		g := st.groups[k]
		st.touch(g)
		g.count = 0
		for j := range g.sums {
			g.sums[j].zero()
		}
		g.src = at
		g.src.Row = i
		if ti != nil {
			g.srcTable = ti
		}
	}
}

// newGroup builds a group from its key object, as encoded by apply or read back by
// Restore.
func (st *ruleState) newGroup(key string) (*group, error) {
	g := &group{key: key, sums: make([]accumulator, len(st.rule.sums))}
	dec := json.NewDecoder(strings.NewReader(key))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("group key %q: not a JSON object", key)
	}
	for i := 0; ; i++ {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("group key %q: %w", key, err)
		}
		if tok == json.Delim('}') {
			break
		}
		name, ok := tok.(string)
		if !ok || i >= len(st.rule.groupBy) || name != st.rule.groupBy[i] {
			return nil, fmt.Errorf("group key %q: expected the group_by columns %v", key, st.rule.groupBy)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("group key %q: %w", key, err)
		}
		if i > 0 {
			g.body = append(g.body, ',')
			g.bodyStrings = append(g.bodyStrings, ',')
		}
		g.body = append(appendString(g.body, name), ':')
		g.valueSpans = append(g.valueSpans, [2]int{len(g.body), len(g.body) + len(raw)})
		g.body = append(g.body, raw...)
		g.bodyStrings = append(appendString(g.bodyStrings, name), ':')
		var v any
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		_ = d.Decode(&v)
		switch x := v.(type) {
		case json.Number:
			if n, err := x.Int64(); err == nil {
				v = n
			} else if u, err := strconv.ParseUint(x.String(), 10, 64); err == nil {
				v = u
			} else {
				v, _ = x.Float64()
			}
			g.bodyStrings = appendString(g.bodyStrings, x.String())
		case string:
			g.bodyStrings = appendString(g.bodyStrings, x)
		case nil:
			g.bodyStrings = append(g.bodyStrings, "null"...)
		default:
			g.bodyStrings = appendString(g.bodyStrings, string(raw))
		}
		g.vals = append(g.vals, v)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("group key %q: trailing data", key)
	}
	if len(g.vals) != len(st.rule.groupBy) {
		return nil, fmt.Errorf("group key %q: expected the group_by columns %v", key, st.rule.groupBy)
	}
	return g, nil
}

// emptyValue is the transition value g is taken to have before its first row and after
// its last: the value over g's group_by columns with every sum 0.
func (e *Engine) emptyValue(st *ruleState, g *group) []byte {
	empty := &group{key: g.key, vals: g.vals, sums: make([]accumulator, len(g.sums)), srcTable: g.srcTable}
	for i := range empty.sums {
		empty.sums[i].copyFrom(&g.sums[i])
		empty.sums[i].zero()
	}
	return e.transitionValue(st, empty)
}

// transitionValue evaluates the rule's value over g's columns and sums, as JSON.
func (e *Engine) transitionValue(st *ruleState, g *group) []byte {
	return e.valueOver(st, g.key, g.srcTable, st.rule.groupBy, g.vals, g.sums)
}

// valueOver evaluates the rule's value over columns cols with values vals and the rule's
// sums, as JSON; a failure (of the group key, of a change of table ti) is counted and
// logged, and is null.
func (e *Engine) valueOver(st *ruleState, key string, ti *tableInfo, cols []string, vals []any, sums []accumulator) []byte {
	r := st.rule
	clear(st.env)
	for i, name := range cols {
		st.env[name] = exprUint(vals[i]) // as conditions see it; vals keeps the exact value for topics
	}
	for i, s := range r.sums {
		st.env[s.name] = sums[i].exprValue()
	}
	v, err := e.vm.Run(r.value, st.env)
	if err != nil {
		if key != "" {
			err = fmt.Errorf("group %s: %w", key, err)
		}
		e.evalFailed(r, ti.table(), "value", err)
		v = nil
	}
	return appendAny(nil, v)
}

// flushGroups emits the touched groups of one rule and returns their state entries.
func (e *Engine) flushGroups(ctx context.Context, st *ruleState, out Emitter) ([]StateEntry, error) {
	r := st.rule
	entries := make([]StateEntry, 0, len(st.touched))
	var firstErr error
	for _, g := range st.touched {
		g.inTxn, g.reseeding = false, false
		// An aggregate group whose rows came and went within the transaction was never
		// published, and is not now; nor is one a seed filled again as it was (Reseed).
		emit := r.emit != EmitAggregate || (g.prevCount != 0 || g.count != 0) && !(g.src.Snapshot && g.sameAsBefore())
		if r.emit == EmitTransition {
			v := e.transitionValue(st, g)
			if bytes.Equal(v, g.value) {
				emit = false
			} else {
				g.value = v
			}
		}
		if emit && firstErr == nil {
			if topic, ok := e.groupTopic(st, g); ok {
				g.topic = topic
				if err := out.Emit(ctx, e.groupMessage(st, g, changeEvent(r, g), topic)); err != nil {
					firstErr = err
				}
			}
		}
		ent := StateEntry{Rule: r.name, Key: g.key}
		if g.count == 0 && (r.emit == EmitAggregate || bytes.Equal(g.value, e.emptyValue(st, g))) {
			delete(st.groups, g.key)
		} else {
			ent.Value = g.appendState(nil, r)
		}
		entries = append(entries, ent)
	}
	clear(st.touched)
	st.touched = st.touched[:0]
	return entries, firstErr
}

// sameAsBefore reports whether g's count and sums are what they were when the transaction
// first touched it.
func (g *group) sameAsBefore() bool {
	if g.count != g.prevCount {
		return false
	}
	for i := range g.sums {
		if !bytes.Equal(g.sums[i].appendState(nil), g.prevSums[i].appendState(nil)) {
			return false
		}
	}
	return true
}

// appendState encodes g as {"count":N,"sums":{"name":sum,…}[,"value":V],"db":S,"table":T,"topic":P[,"binary":[C,…]]}:
// integer sums as numbers, decimal sums as strings, float sums as numbers with a point or
// exponent, exact (accumulator.appendState); db and table name the table of the group's last change (a resync names it);
// topic the topic the group was last published on, where a changed rule takes it back
// (retire.go); binary the group_by columns that are binary (group.binary), so that a
// group restored from it fills a topic with their bytes before a row of it is seen.
func (g *group) appendState(b []byte, r *Rule) []byte {
	b = append(b, `{"count":`...)
	b = strconv.AppendInt(b, g.count, 10)
	b = append(b, `,"sums":{`...)
	for i, s := range r.sums {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(appendString(b, s.name), ':')
		b = g.sums[i].appendState(b)
	}
	b = append(b, '}')
	if r.emit == EmitTransition {
		b = append(b, `,"value":`...)
		b = append(b, g.value...)
	}
	if g.srcTable != nil {
		b = append(b, `,"db":`...)
		b = append(b, g.srcTable.schemaJSON...)
		b = append(b, `,"table":`...)
		b = append(b, g.srcTable.nameJSON...)
	}
	if g.topic != "" {
		b = append(b, `,"topic":`...)
		b = appendString(b, g.topic)
	}
	if slices.Contains(g.binary, true) {
		b = append(b, `,"binary":[`...)
		n := 0
		for i, bin := range g.binary {
			if bin && i < len(r.groupBy) {
				if n > 0 {
					b = append(b, ',')
				}
				n++
				b = appendString(b, r.groupBy[i])
			}
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// binaryColumns is, per column of groupBy, whether names (a saved group's "binary")
// holds it; nil when it holds none of them.
func binaryColumns(groupBy, names []string) []bool {
	var binary []bool
	for i, c := range groupBy {
		if slices.Contains(names, c) {
			if binary == nil {
				binary = make([]bool, len(groupBy))
			}
			binary[i] = true
		}
	}
	return binary
}

// appendGroupImage appends {group columns, sums[, value]} in a style.
func appendGroupImage(b []byte, r *Rule, g *group, sums []accumulator, value []byte, style valueStyle) []byte {
	b = append(b, '{')
	switch style {
	case styleStrings:
		b = append(b, g.bodyStrings...)
	case styleMaxwell:
		b = appendMaxwellBody(b, r, g)
	default:
		b = append(b, g.body...)
	}
	for i, s := range r.sums {
		b = append(b, ',')
		b = append(appendString(b, s.name), ':')
		b = sums[i].append(b, style)
	}
	if r.emit == EmitTransition {
		b = append(b, `,"value":`...)
		b = appendJSONIn(b, value, style)
	}
	return append(b, '}')
}

// appendMaxwellBody appends g's key object without braces as Maxwell writes values: a
// DECIMAL column's, a string in the key (as debezium writes it), bare. The column's type
// is the one in the table of the group's last change; without one, the key's body.
func appendMaxwellBody(b []byte, r *Rule, g *group) []byte {
	t := g.srcTable.table()
	if t == nil || len(g.valueSpans) != len(r.groupBy) {
		return append(b, g.body...)
	}
	from := 0
	for i, name := range r.groupBy {
		span := g.valueSpans[i]
		if c := t.ColumnIndex(name); c < 0 || t.Columns[c].Kind != canal.KindDecimal || g.body[span[0]] != '"' {
			continue
		}
		b = append(b, g.body[from:span[0]]...)
		b = append(b, g.body[span[0]+1:span[1]-1]...)
		from = span[1]
	}
	return append(b, g.body[from:]...)
}

// appendJSONIn appends an expression's JSON value; the Canal style makes it a string.
func appendJSONIn(b, v []byte, style valueStyle) []byte {
	if style != styleStrings || len(v) == 0 || v[0] == '"' || string(v) == "null" {
		return append(b, v...)
	}
	return appendString(b, string(v))
}

// appendGroupChanged appends the before values of the sums (and value) that changed, as
// an object: {} when none did (appendChanged).
func appendGroupChanged(b []byte, r *Rule, g *group, style valueStyle) []byte {
	b = append(b, '{')
	n := 0
	var bv, av []byte
	for i, s := range r.sums {
		bv = g.prevSums[i].append(bv[:0], style)
		av = g.sums[i].append(av[:0], style)
		if bytes.Equal(bv, av) {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(appendString(b, s.name), ':')
		b = append(b, bv...)
	}
	if r.emit == EmitTransition && !bytes.Equal(g.prevValue, g.value) {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, `"value":`...)
		b = appendJSONIn(b, g.prevValue, style)
	}
	return append(b, '}')
}

// groupEvent is what one group message reports: its op, whether it carries a before and
// an after image, and the source and table it names.
type groupEvent struct {
	op                  canal.Op
	hasBefore, hasAfter bool
	src                 *canal.Source
	table               *tableInfo
}

// changeEvent describes the message of a group the transaction touched. Aggregate: op c
// when the group had no rows before the transaction, d when it has none after it (after
// null), u otherwise (a group without rows before and after is not published). Transition: op u, before holding the previous value. The source is
// the transaction's last change of the group.
func changeEvent(r *Rule, g *group) groupEvent {
	ev := groupEvent{op: canal.OpUpdate, hasBefore: true, hasAfter: true, src: &g.src, table: g.srcTable}
	if r.emit == EmitAggregate {
		switch {
		case g.prevCount == 0:
			ev.op, ev.hasBefore = canal.OpCreate, false
		case g.count == 0:
			ev.op, ev.hasAfter = canal.OpDelete, false
		case g.src.Snapshot && g.sumClassChanged():
			// Seeded again after DDL changed a summed column's type: published afresh in
			// the new type, never as a u whose before and after differ in type.
			ev.op, ev.hasBefore = canal.OpCreate, false
		}
	}
	return ev
}

// sumClassChanged reports whether one of g's sums is written in another class of type
// than when the transaction first touched it.
func (g *group) sumClassChanged() bool {
	for i := range g.sums {
		if g.sums[i].class() != g.prevSums[i].class() {
			return true
		}
	}
	return false
}

// groupMessage encodes a group's message for ev in the rule's format, for topic.
func (e *Engine) groupMessage(st *ruleState, g *group, ev groupEvent, topic string) sinks.Message {
	r := st.rule
	op, hasBefore, hasAfter, src := ev.op, ev.hasBefore, ev.hasAfter, ev.src
	ti := ev.table
	if ti == nil { // a group restored from state saved before groups named their table
		ti = e.tableNamed("", "")
	}
	b := e.buf[:0]
	switch r.format {
	case FormatCanal:
		b = append(b, `{"data":[`...)
		if hasAfter || !hasBefore {
			b = appendGroupImage(b, r, g, g.sums, g.value, styleStrings)
		} else {
			b = appendGroupImage(b, r, g, g.prevSums, g.prevValue, styleStrings)
		}
		b = append(b, `],"database":`...)
		b = append(b, ti.schemaJSON...)
		b = append(b, `,"table":`...)
		b = append(b, ti.nameJSON...)
		b = append(b, `,"type":"`...)
		b = append(b, canalType(op)...)
		b = append(b, `","old":`...)
		if op == canal.OpUpdate {
			b = append(appendGroupChanged(append(b, '['), r, g, styleStrings), ']')
		} else {
			b = append(b, "null"...)
		}
		b = append(b, `,"es":`...)
		b = strconv.AppendInt(b, src.TsMs, 10)
		b = append(b, `,"ts":`...)
		b = strconv.AppendInt(b, e.txnTime(), 10)
		b = append(b, `,"isDdl":false,"pkNames":`...)
		b = appendNames(b, r.groupBy)
		b = append(b, '}')
	case FormatMaxwell:
		b = append(b, `{"database":`...)
		b = append(b, ti.schemaJSON...)
		b = append(b, `,"table":`...)
		b = append(b, ti.nameJSON...)
		b = append(b, `,"type":"`...)
		b = append(b, maxwellType(op)...)
		b = append(b, `","ts":`...)
		b = strconv.AppendInt(b, src.TsMs/1000, 10)
		b = append(b, `,"xid":`...)
		b = strconv.AppendUint(b, uint64(src.Pos), 10)
		b = append(b, `,"data":`...)
		if hasAfter || !hasBefore {
			b = appendGroupImage(b, r, g, g.sums, g.value, styleMaxwell)
		} else {
			b = appendGroupImage(b, r, g, g.prevSums, g.prevValue, styleMaxwell)
		}
		if op == canal.OpUpdate {
			b = appendGroupChanged(append(b, `,"old":`...), r, g, styleMaxwell)
		}
		b = append(b, '}')
	default:
		b = append(b, `{"op":"`...)
		b = append(b, byte(op))
		b = append(b, `","before":`...)
		if hasBefore {
			b = appendGroupImage(b, r, g, g.prevSums, g.prevValue, styleTyped)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, `,"after":`...)
		if hasAfter {
			b = appendGroupImage(b, r, g, g.sums, g.value, styleTyped)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, ',')
		b = e.appendDebeziumSource(b, src, ti)
		b = append(b, `,"ts_ms":`...)
		b = strconv.AppendInt(b, e.txnTime(), 10)
		b = append(b, '}')
	}
	e.buf = b
	out := make([]byte, len(g.key)+len(b))
	copy(out, g.key)
	copy(out[len(g.key):], b)
	return sinks.Message{
		Topic:   topic,
		Key:     out[:len(g.key):len(g.key)],
		Value:   out[len(g.key):],
		Headers: e.headers(r, src),
	}
}

// groupTopic is the topic of a group's message: the rule's template with the group's
// values in its placeholders (validation allows only group_by columns there). A topic
// Kafka would refuse is a failure of the rule (topicFailed): false, and no message.
func (e *Engine) groupTopic(st *ruleState, g *group) (string, bool) {
	r := st.rule
	return e.fillTopic(r, g.srcTable.table(), g.key, func(b []byte, _ int, p rulefmt.TemplatePart) []byte {
		if i := slices.Index(r.groupBy, p.Text); i >= 0 {
			return g.appendTopicValue(b, i)
		}
		return b
	})
}

// appendTopicValue appends group column i's value as a row rule's topic placeholder
// shows the column's value (appendRaw), so that {code} is the same text in both: a
// string as it is, a binary column's bytes as they are (the key holds them in base64),
// a number as the key writes it (appendValue: 1e20 in full, as fmt.Sprint would not),
// NULL as nothing.
func (g *group) appendTopicValue(b []byte, i int) []byte {
	switch x := g.vals[i].(type) {
	case nil:
		return b
	case string:
		if i < len(g.binary) && g.binary[i] {
			if raw, err := base64.StdEncoding.DecodeString(x); err == nil {
				return append(b, raw...)
			}
		}
		return append(b, x...)
	}
	span := g.valueSpans[i]
	return append(b, g.body[span[0]:span[1]]...)
}

// appendNames writes names as a JSON array of strings.
func appendNames(b []byte, names []string) []byte {
	b = append(b, '[')
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, n)
	}
	return append(b, ']')
}

// Restore loads state saved from Commit's entries, as of the checkpoint the stream
// resumes from. Call it before the first Row. Entries of rules the set does not have (or
// no longer has in the same form) are ignored; an entry that cannot be read is an error.
//
// Saved state counts only for a rule whose definition is the one it was saved under (its
// seed marker); other rules start empty and Unseeded names them. The groups of a rule
// saved under another definition are taken back by its seed (retire.go), and so are
// those of a rule the set no longer has, by a new rule that takes its place (takeOver).
func (e *Engine) Restore(entries []StateEntry) error {
	saved := map[string]bool{} // the rules with saved entries
	for _, ent := range entries {
		saved[ent.Rule] = true
		st := e.states[ent.Rule]
		if st == nil || ent.Key != seedKey {
			continue
		}
		switch signature, after, types := readSeedMarker(ent.Value); {
		case signature == st.rule.signature:
			// Seeded at after: a checkpoint saved before the stream got there resumes
			// before it, and what is in between is already in the state.
			st.seeded, st.activeAfter, st.fresh, st.sumTypes = true, after, false, types
		case st.rule.SignatureWas(signature): // an older version's form
			st.seeded, st.seedPending, st.fresh = true, true, false // saved again in today's form
		default: // another definition's: the seed takes its groups back
			if st.rule.emit != EmitTransition {
				st.retiredValue = signatureValue(signature)
			}
		}
	}
	removed := map[string]map[string]retiredGroup{}
	for _, ent := range entries {
		st := e.states[ent.Rule]
		switch {
		case ent.Value == nil:
			if st != nil && st.seeded {
				delete(st.groups, ent.Key)
			}
			continue
		case st == nil:
			// A rule the set no longer has (or not as stateful): its entries go, taken
			// back by a rule that takes its place, if one does.
			if removed[ent.Rule] == nil {
				removed[ent.Rule] = map[string]retiredGroup{}
			}
			rg := retiredGroup{rule: ent.Rule, checkpointed: true}
			if ent.Key != seedKey {
				rg.saved = ent.Value
			}
			removed[ent.Rule][ent.Key] = rg
			continue
		case ent.Key == seedKey:
			continue
		case !st.seeded:
			// Saved under another definition of the rule, which is seeded again: what its
			// consumers hold of it is taken back where the seed does not publish the key,
			// and a group only the old one had must not come back with a later restart.
			st.retire(ent.Key, retiredGroup{saved: ent.Value, rule: ent.Rule, checkpointed: true})
			continue
		}
		g, err := st.newGroup(ent.Key)
		if err != nil {
			// Left by a definition before this one, when such entries were not deleted
			// yet (a group_by changed and changed back): not this rule's group.
			e.log.Warn("dropping a saved group that is not of the rule's group_by", zap.String("rule", ent.Rule), zap.String("key", ent.Key), zap.Error(err))
			e.stale = append(e.stale, StateEntry{Rule: ent.Rule, Key: ent.Key})
			continue
		}
		saved, err := readSavedGroup(ent.Value)
		if err != nil {
			return fmt.Errorf("restoring rule %q state of %s: %w", ent.Rule, ent.Key, err)
		}
		g.count, g.topic = saved.Count, saved.Topic
		g.binary = binaryColumns(st.rule.groupBy, saved.Binary)
		if saved.Table != "" {
			g.srcTable = e.tableNamed(saved.DB, saved.Table)
		}
		for i, s := range st.rule.sums {
			raw := saved.sum(s.name)
			if raw == nil {
				continue
			}
			if !g.sums[i].restore(string(raw)) {
				return fmt.Errorf("restoring rule %q state of %s: sum %s: cannot read %s", ent.Rule, ent.Key, s.name, raw)
			}
		}
		if st.rule.emit == EmitTransition {
			if len(saved.Value) > 0 {
				g.value = append([]byte(nil), saved.Value...)
			} else {
				g.value = e.emptyValue(st, g)
			}
		}
		st.groups[g.key] = g
	}
	e.takeOver(removed, func(name string) bool { return !saved[name] })
	return nil
}
