package rules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"go.uber.org/zap"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/shell"
	"github.com/stocksync/stocksync/sinks"
)

// A stateful rule whose definition changed (a reload, or the file of a restart) is seeded
// again from its tables, and publishes its new groups. Its consumers still hold what the
// old definition published last for every key; a key the new seed does not publish would
// keep that value for ever. So the old groups are retired: kept, as saved state, until the
// Commit after the seed, which publishes each one the seed does not, as a group with no
// rows left is published (aggregate: d; transition: the empty value, where it differs),
// and deletes its saved entry in the same checkpoint.
//
// A group read back from a checkpoint is what the old definition held there, not
// necessarily what it published last: at least once, what it published after its last
// save (lost to a kill -9) is published again by a restart only through the rule, and the
// changed rule skips those changes (its seed holds them). So such a group is taken back
// to the new value even where that equals the saved one: a repeat, which a consumer that
// keeps values applies harmlessly, rather than a value it may hold for ever.
//
// A rule removed while a new one publishes on its topic in its kind (a rename) hands its
// groups to that rule (takeOver), which takes them back as a changed rule does: what the
// consumers hold of the old name is theirs under the new one.

// savedGroup is a group's saved state (appendState) read back.
type savedGroup struct {
	Count int64           `json:"count"`
	Sums  json.RawMessage `json:"sums"`
	Value json.RawMessage `json:"value"`
	DB    string          `json:"db"`
	Table string          `json:"table"`
	Topic string          `json:"topic"`
	// Binary are the group_by columns that are binary (group.binary).
	Binary []string `json:"binary"`
	// sums, in the order they were written.
	sums []namedRaw
}

// namedRaw is one field of a JSON object: its name and its value as written.
type namedRaw struct {
	name string
	raw  json.RawMessage
}

// objectFields are the fields of JSON object data, in the order written.
func objectFields(data []byte) ([]namedRaw, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object: %s", data)
	}
	var fields []namedRaw
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		fields = append(fields, namedRaw{name: tok.(string), raw: raw})
	}
	return fields, nil
}

// readSavedGroup reads a group's saved state.
func readSavedGroup(v []byte) (savedGroup, error) {
	var s savedGroup
	if err := json.Unmarshal(v, &s); err != nil {
		return s, err
	}
	if len(s.Sums) == 0 || string(s.Sums) == "null" {
		return s, nil
	}
	sums, err := objectFields(s.Sums)
	if err != nil {
		return s, fmt.Errorf("sums: %w", err)
	}
	s.sums = sums
	return s, nil
}

// sum is the saved sum named name, nil when there is none.
func (s *savedGroup) sum(name string) json.RawMessage {
	for _, nr := range s.sums {
		if nr.name == name {
			return nr.raw
		}
	}
	return nil
}

// retiredGroup is a group an earlier definition of a rule published, to take back
// where the rule's seed does not publish it.
type retiredGroup struct {
	// saved is its saved state (appendState); nil: nothing was published, its entry only
	// goes.
	saved []byte
	// rule names the rule whose saved entry it is, deleted by the Commit that takes it
	// back: the rule's own name, or that of a removed rule whose groups it took over.
	rule string
	// checkpointed: read back from a checkpoint, where the consumers may hold a later
	// value than saved (the header above): taken back even to the value saved.
	checkpointed bool
}

// retire records what the consumers of st's rule may hold from an earlier definition (or
// a removed rule's) under key. A group with saved state is kept over an entry only to
// delete.
func (st *ruleState) retire(key string, rg retiredGroup) {
	if st.retired == nil {
		st.retired = map[string]retiredGroup{}
	}
	if prev, ok := st.retired[key]; !ok || prev.saved == nil {
		st.retired[key] = rg
	}
}

// retireFrom retires what old, the state of the rule's previous definition, published:
// its groups as last published (a group the transaction has touched, as it was before
// it). While old is fresh, its groups were never published: their entries only go, and
// what old itself retired is still to be taken back.
func (st *ruleState) retireFrom(old *ruleState) {
	for k, rg := range old.retired {
		st.retire(k, rg)
	}
	if st.rule.emit != EmitTransition {
		st.retiredValue = old.retiredValue
		if old.rule.emit == EmitTransition {
			st.retiredValue = old.rule.value
		}
	}
	name := old.rule.name
	for k, g := range old.groups {
		switch {
		case old.fresh:
			st.retire(k, retiredGroup{rule: name})
		case g.inTxn:
			was := &group{count: g.prevCount, sums: g.prevSums, value: g.prevValue, srcTable: g.srcTable, topic: g.topic}
			st.retire(k, retiredGroup{saved: was.appendState(nil, old.rule), rule: name})
		default:
			st.retire(k, retiredGroup{saved: g.appendState(nil, old.rule), rule: name})
		}
	}
}

// heldMessages keeps messages to emit later, in order.
type heldMessages struct{ msgs []sinks.Message }

func (h *heldMessages) Emit(_ context.Context, m sinks.Message) error {
	h.msgs = append(h.msgs, m)
	return nil
}

// flushRetiring is flushGroups for a rule just seeded again under a new definition: first,
// in key order, each retired group that the seed does not publish (on the topic and in the
// kind it was published), as a group with no rows left is published, and the deletion of
// every retired entry; then the seed's groups.
func (e *Engine) flushRetiring(ctx context.Context, st *ruleState, pos canal.Position, out Emitter) ([]StateEntry, error) {
	var seed heldMessages
	groupEntries, _ := e.flushGroups(ctx, st, &seed) // holding never fails
	published := make(map[string]bool, len(seed.msgs))
	for _, m := range seed.msgs {
		published[m.Topic+"\x00"+string(m.Key)] = true
	}
	keys := slices.Sorted(maps.Keys(st.retired))
	entries := make([]StateEntry, 0, len(keys)+len(groupEntries))
	// Taken back where the seed's reads are (its snapshot's position, which a restart's
	// stream may reach only after this Commit), so a consumer orders them alike.
	at := pos
	if !st.activeAfter.IsZero() {
		at = st.activeAfter
	}
	shapes := map[string]*ruleState{}
	row := 0
	var firstErr error
	for _, k := range keys {
		rg := st.retired[k]
		entries = append(entries, StateEntry{Rule: rg.rule, Key: k})
		if rg.saved == nil || firstErr != nil {
			continue
		}
		m, ok := e.retraction(st, shapes, k, rg, published, commitSource(at, canal.Source{Snapshot: true, Row: row}))
		if !ok {
			continue
		}
		row++
		if err := out.Emit(ctx, m); err != nil {
			firstErr = err
		}
	}
	st.retired, st.retiredValue = nil, nil
	entries = append(entries, groupEntries...)
	for _, m := range seed.msgs {
		if firstErr != nil {
			break
		}
		firstErr = out.Emit(ctx, m)
	}
	return entries, firstErr
}

// commitSource is src placed at pos, the end of the transaction whose Commit publishes a
// message of no change: as a snapshot's reads there are (canal's SourceAt), with pos's
// GTID set as its GTID, so that a consumer orders it as it orders them.
func commitSource(pos canal.Position, src canal.Source) canal.Source {
	src.File, src.Pos, src.GTID = pos.File, pos.Pos, pos.GTIDSet
	return src
}

// retraction is the message that takes back retired group key (rg) under st's rule, at
// src: what the definition that published the group publishes for a group whose rows are
// all gone, against what the consumers hold. False when there is nothing to take back (an
// aggregate group without rows; a transition group that holds the value it would be
// taken back to, unless read back from a checkpoint, rg.checkpointed, and placed on a
// topic as below), when the seed publishes the key on the same topic in the same kind
// (published: by topic and key), or when the message cannot be made (logged; a topic that
// cannot be filled in counts as the rule's failure).
//
// The key is the old one, whatever the rule's group_by is now, and the topic the one the
// group was last published on (saved with it; for state saved before groups kept it, the
// rule's topic filled in from the key's columns): it is what the consumers hold. The kind
// is the old definition's, told by the saved state (a transition's holds its value): an
// aggregate group is taken back by a d, a transition group by its empty value (the
// rule's value when it is still a transition rule, else the old definition's). The image
// holds the key's columns and the saved sums (the rule's own shape when they are its
// group_by and sums and the kind is the same). shapes keeps the rule of each other shape
// for the next retraction. The format is the rule's.
func (e *Engine) retraction(st *ruleState, shapes map[string]*ruleState, key string, rg retiredGroup, published map[string]bool, src canal.Source) (sinks.Message, bool) {
	r := st.rule
	warn := func(err error) {
		e.log.Warn("cannot retract a group of the rule's earlier definition", zap.String("rule", r.name), zap.String("key", key), zap.Error(err))
	}
	old, err := readSavedGroup(rg.saved)
	if err != nil {
		warn(err)
		return sinks.Message{}, false
	}
	kind := EmitAggregate
	if len(old.Value) > 0 {
		kind = EmitTransition
	}
	if kind == EmitAggregate && old.Count == 0 {
		return sinks.Message{}, false
	}
	cols, err := keyColumns(key)
	if err != nil {
		warn(err)
		return sinks.Message{}, false
	}
	shape := st
	if kind != r.emit || !slices.Equal(cols, r.groupBy) || !sameSumNames(r.sums, old.sums) {
		sk := shapeKey(kind, cols, old.sums)
		shape = shapes[sk]
		if shape == nil {
			image := *r
			image.emit, image.groupBy, image.sums = kind, cols, nil
			for _, s := range old.sums {
				image.sums = append(image.sums, sumSpec{name: s.name})
			}
			if kind == EmitTransition && r.emit != EmitTransition {
				image.value = st.retiredValue
			}
			shape = &ruleState{rule: &image, env: st.env}
			shapes[sk] = shape
		}
	}
	ti := e.tableNamed(old.DB, old.Table)
	if old.Topic == "" {
		for _, p := range r.topicParts {
			if p.Var && !slices.Contains(cols, p.Text) {
				e.evalFailed(r, ti.table(), "topic", fmt.Errorf("group %s, published under an earlier group_by, has no %s for {%s}: not retracted", key, p.Text, p.Text))
				return sinks.Message{}, false
			}
		}
	}
	g, err := shape.newGroup(key)
	if err != nil {
		warn(err)
		return sinks.Message{}, false
	}
	g.srcTable, g.src = ti, src
	g.binary = binaryColumns(cols, old.Binary)
	topic := old.Topic
	if topic == "" {
		var ok bool
		if topic, ok = e.groupTopic(shape, g); !ok {
			return sinks.Message{}, false
		}
	}
	if kind == r.emit && published[topic+"\x00"+key] {
		return sinks.Message{}, false
	}
	g.prevCount, g.prevValue = old.Count, []byte(old.Value)
	// The seed's group of that key, which it did not publish, is what the consumers are
	// to hold where it goes on the same topic in the same kind.
	now := st.groups[key]
	if now != nil && (kind != r.emit || old.Topic != "" && !e.publishesOn(st, now, old.Topic)) {
		now = nil
	}
	if now != nil {
		g.count, g.value = now.count, now.value
	}
	g.prevSums = make([]accumulator, len(g.sums))
	for i, s := range shape.rule.sums {
		if raw := old.sum(s.name); raw != nil && !g.prevSums[i].restore(string(raw)) {
			warn(fmt.Errorf("sum %s: cannot read %s", s.name, raw))
			return sinks.Message{}, false
		}
		g.sums[i].copyFrom(&g.prevSums[i])
		g.sums[i].zero()
		if j := slices.IndexFunc(r.sums, func(n sumSpec) bool { return n.name == s.name }); now != nil && j >= 0 {
			g.sums[i].copyFrom(&now.sums[j])
		}
	}
	if kind == EmitTransition {
		switch {
		case now != nil:
		case shape == st:
			g.value = e.emptyValue(st, g)
		case r.emit == EmitTransition:
			g.value = e.emptyValueOver(st, g, cols)
		case shape.rule.value == nil:
			warn(errors.New("the value of the transition definition that published it is not known"))
			return sinks.Message{}, false
		default:
			g.value = e.emptyValue(shape, g)
		}
		// The same value again only for a group read back from a checkpoint, on a topic
		// the old definition may have published it on after it: the one saved with it,
		// or, for a group it had not published by then, the rule's (same kind only: a
		// transition image does not go to an aggregate rule's topic).
		if bytes.Equal(g.value, g.prevValue) && !(rg.checkpointed && (old.Topic != "" || kind == r.emit)) {
			return sinks.Message{}, false
		}
	}
	return e.groupMessage(shape, g, changeEvent(shape.rule, g), topic), true
}

// publishesOn reports whether st's rule publishes its group g on topic: the topic its
// template gives g.
func (e *Engine) publishesOn(st *ruleState, g *group, topic string) bool {
	if st.rule.topic != "" {
		return st.rule.topic == topic
	}
	now, ok := e.groupTopic(st, g)
	return ok && now == topic
}

// emptyValueOver is the empty value of st's rule for group g of another group_by, whose
// columns are cols: the rule's value over those columns with every sum of the rule 0.
func (e *Engine) emptyValueOver(st *ruleState, g *group, cols []string) []byte {
	sums := make([]accumulator, len(st.rule.sums))
	return e.valueOver(st, g.key, g.srcTable, cols, g.vals, sums)
}

// keyColumns are the names of a group key's columns, in order.
func keyColumns(key string) ([]string, error) {
	fields, err := objectFields([]byte(key))
	if err != nil {
		return nil, fmt.Errorf("group key %q: %w", key, err)
	}
	cols := make([]string, len(fields))
	for i, f := range fields {
		cols[i] = f.name
	}
	return cols, nil
}

// sameSumNames reports whether the saved sums are the rule's, in any order.
func sameSumNames(sums []sumSpec, saved []namedRaw) bool {
	if len(sums) != len(saved) {
		return false
	}
	for _, s := range sums {
		if !slices.ContainsFunc(saved, func(nr namedRaw) bool { return nr.name == s.name }) {
			return false
		}
	}
	return true
}

// shapeKey names the image shape of a kind, a group key's columns and saved sums.
func shapeKey(kind EmitKind, cols []string, sums []namedRaw) string {
	var b strings.Builder
	b.WriteByte(byte(kind))
	for _, c := range cols {
		b.WriteString(c)
		b.WriteByte(0)
	}
	b.WriteByte(1)
	for _, s := range sums {
		b.WriteString(s.name)
		b.WriteByte(0)
	}
	return b.String()
}

// signatureValue is the value of the transition definition whose signature
// (stateSignature) is sig, compiled over the names it reads; nil when sig is not a
// transition rule's or its value does not compile.
func signatureValue(sig string) *vm.Program {
	parts := strings.SplitN(sig, "|", 5)
	if len(parts) < 5 || parts[0] != EmitTransition.String() || parts[4] == "" {
		return nil
	}
	p, err := expr.Compile(parts[4], boundedRepeat, expr.AllowUndefinedVariables())
	if err != nil {
		return nil
	}
	return p
}

// takeOver hands the groups of removed rules (by name: what each leaves to take back,
// as a changed rule retires it) to the new rules that take their place, and the rest to
// stale. A removed rule's place is taken by a new stateful rule (isNew: it has no state
// of its own, and is seeded from its tables) of the same kind whose topic, filled in from
// each of its groups' keys, is the one the group was last published on: the same rule
// under another name, perhaps changed too (a group_by changed: the old keys are taken
// back as a changed rule's are). The new rule then takes them back as it takes
// back its own earlier definition's, against what the consumers hold, so that a change
// made while it was being renamed (a SKU sold out while the daemon was down) is not lost.
// A removed rule that more than one new rule could take the place of, or one of several
// removed rules that one new rule could, hands its groups to none: which consumers
// hold what cannot be told, and a warning says to resync. A removed rule no new one takes
// the place of takes nothing back (its topic has no contract any more).
func (e *Engine) takeOver(removed map[string]map[string]retiredGroup, isNew func(name string) bool) {
	names := slices.Sorted(maps.Keys(removed))
	candidates := map[string][]string{} // by removed rule: the new rules that could take its place
	claims := map[string][]string{}     // by new rule: the removed rules it could take the place of
	for _, name := range names {
		for _, r := range e.set.rules {
			if st := e.states[r.name]; st != nil && isNew(r.name) && st.takesPlaceOf(removed[name]) {
				candidates[name] = append(candidates[name], r.name)
				claims[r.name] = append(claims[r.name], name)
			}
		}
	}
	warned := map[string]bool{}
	for _, name := range names {
		groups := removed[name]
		switch cands := candidates[name]; {
		case len(cands) == 1 && len(claims[cands[0]]) == 1:
			st := e.states[cands[0]]
			for k, rg := range groups {
				st.retire(k, rg)
			}
			e.log.Info("a removed aggregate or transition rule is taken as renamed: the new rule, publishing on its topic in its kind, takes back what the removed one published where its seed does not publish it",
				zap.String("removed_rule", name), zap.String("rule", st.rule.name), zap.Int("groups", savedCount(groups)))
			continue
		case len(cands) > 1:
			e.log.Warn("a removed aggregate or transition rule publishes on the topic and in the kind of several new rules: none takes back what it published, which its consumers keep; resync the new rules",
				zap.String("removed_rule", name), zap.Strings("rules", cands), zap.String("resync", resyncCommand(cands)))
		case len(cands) == 1 && !warned[cands[0]]:
			warned[cands[0]] = true
			e.log.Warn("a new aggregate or transition rule publishes on the topic and in the kind of several removed rules: it takes back none of what they published, which their consumers keep; resync it",
				zap.String("rule", cands[0]), zap.Strings("removed_rules", claims[cands[0]]), zap.String("resync", resyncCommand(cands)))
		}
		for _, k := range slices.Sorted(maps.Keys(groups)) {
			e.stale = append(e.stale, StateEntry{Rule: groups[k].rule, Key: k})
		}
	}
}

// takesPlaceOf reports whether st's rule is of the kind of every group a removed rule left
// (groups), and would publish each on the topic it was last published on (keyTopic). A
// group saved without a topic (not published yet, or saved by a stocksync before groups
// kept it) is of the kind alone; a removed rule that left no group with its topic has no
// place to take.
func (st *ruleState) takesPlaceOf(groups map[string]retiredGroup) bool {
	n := 0
	for k, rg := range groups {
		if rg.saved == nil || k == seedKey {
			continue
		}
		old, err := readSavedGroup(rg.saved)
		if err != nil || (len(old.Value) > 0) != (st.rule.emit == EmitTransition) {
			return false
		}
		if old.Topic == "" { // not published by the checkpoint: no topic to compare
			continue
		}
		if topic, ok := st.keyTopic(k, old.Binary); !ok || topic != old.Topic {
			return false
		}
		n++
	}
	return n > 0
}

// keyTopic is the topic st's rule publishes group key on, a key of any group_by (binary:
// its binary columns, as saved): the rule's topic, or its template filled in from the
// key's columns. False when the template names a column the key lacks, or the key cannot
// be read. Nothing is counted or logged: it only compares.
func (st *ruleState) keyTopic(key string, binary []string) (string, bool) {
	r := st.rule
	if r.topic != "" {
		return r.topic, true
	}
	cols, err := keyColumns(key)
	if err != nil {
		return "", false
	}
	image := *r
	image.groupBy = cols
	g, err := (&ruleState{rule: &image}).newGroup(key)
	if err != nil {
		return "", false
	}
	g.binary = binaryColumns(cols, binary)
	var b []byte
	for _, p := range r.topicParts {
		if !p.Var {
			b = append(b, p.Text...)
			continue
		}
		i := slices.Index(cols, p.Text)
		if i < 0 {
			return "", false
		}
		b = g.appendTopicValue(b, i)
	}
	return string(b), true
}

// savedCount counts the groups with saved state, those to take back.
func savedCount(groups map[string]retiredGroup) int {
	n := 0
	for _, rg := range groups {
		if rg.saved != nil {
			n++
		}
	}
	return n
}

// resyncCommand is the command that republishes the named rules' groups.
func resyncCommand(names []string) string {
	return shell.Line(append([]string{"stocksync", "resync"}, names...)...)
}
