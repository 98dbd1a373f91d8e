package rules

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/expr-lang/expr/vm"
	"go.uber.org/zap"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/sinks"
)

// Emitter receives the engine's messages; the pipeline passes its Kafka sink. Emit may
// block; an error stops the evaluation and is returned to the engine's caller.
type Emitter interface {
	Emit(ctx context.Context, m sinks.Message) error
}

// StateEntry is one aggregate or transition group's state, persisted by the pipeline
// with the checkpoint. Key is the group key as a JSON object ({"sku_id":"A1"}); Value is
// the state as JSON ({"count":8,"sums":{"sellable":42},"value":true,"db":…,"table":…,"topic":…}),
// or nil when the group no longer exists and its entry is to be deleted.
type StateEntry struct {
	Rule  string
	Key   string
	Value []byte
}

// Header names on every message.
const (
	HeaderRule     = "stocksync-rule"
	HeaderPosition = "stocksync-position"
)

// Engine evaluates a Set over a stream of transactions: Row for each change, Commit at
// each transaction's end. It is not safe for concurrent use.
type Engine struct {
	set      *Set
	serverID uint32
	log      *zap.Logger
	now      func() time.Time

	// plans holds, by schema and table, the plan for the table's latest description. The
	// stream describes a table anew (a new *canal.Table) after DDL that may have changed
	// it, and then hands on only the new one: keyed by the description, a plan stayed for
	// each old one for the whole run (planFor).
	plans  map[[2]string]*tablePlan
	states map[string]*ruleState // by rule name, stateful rules only
	// stale are the saved state entries that no longer belong to a rule as it is defined
	// (a rule removed or changed, by a reload or in the file read at a restart), to delete
	// with the next Commit's entries: a saved state holds only what Restore may take.
	stale []StateEntry
	// named are the tables that groups restored or emptied without a row name, by schema and table.
	named map[[2]string]*tableInfo
	// seedsWanted: a rule's state was dropped to be seeded again (SeedsWanted).
	seedsWanted bool

	// per transaction
	txnMs      int64
	txnMsSet   bool
	posKey     canal.Source
	posHeader  []byte
	evalErrors int64
	// evalErrorsOf counts evalErrors by rule name.
	evalErrorsOf map[string]int64
	// logEveryFailure: log every evaluation failure, not the first maxEvalFailureLogs.
	logEveryFailure bool

	// per row
	env         rowEnv
	envReady    bool
	flat        map[string]any // the fast `when` environment (fastwhen.go)
	flatReady   bool
	cur         *canal.RowChange
	vm          vm.VM
	buf         []byte
	tmp         []byte
	topicBuf    []byte
	headerCache map[*Rule]cachedHeaders
	posGen      uint64 // changes with posHeader
}

// NewEngine returns an engine for set. serverID, the source server's @@server_id, is
// written as source.server_id of a message that carries none: one made at a Commit, of no
// change (a group taken back, or emptied by a new snapshot).
func NewEngine(set *Set, serverID uint32) *Engine {
	e := &Engine{
		serverID: serverID,
		log:      zap.NewNop(),
		now:      time.Now,
		states:   map[string]*ruleState{},
	}
	e.env.Changed = e.changed
	e.Install(set)
	return e
}

// SetLogger sets where expression errors are logged (one line per rule and table).
func (e *Engine) SetLogger(log *zap.Logger) { e.log = log }

// LogEveryFailure makes the engine log every failure of a rule at run time, where it
// logs the first maxEvalFailureLogs by default: `rules test` lists each failure of a
// bounded run for its author, while the daemon keeps a rule failing at every row of a
// busy table from flooding its log (stocksync_rule_eval_errors counts them all).
func (e *Engine) LogEveryFailure() { e.logEveryFailure = true }

// SetClock replaces time.Now for the ts_ms / ts production times (tests).
func (e *Engine) SetClock(now func() time.Time) { e.now = now }

// EvalErrors counts expression evaluations that failed at run time (a when counted as
// false, a field written as null, a transition value as null, a topic refused).
func (e *Engine) EvalErrors() int64 { return e.evalErrors }

// EvalErrorsByRule is EvalErrors by rule name: a copy, rules without failures left out.
func (e *Engine) EvalErrorsByRule() map[string]int64 { return maps.Clone(e.evalErrorsOf) }

// Set returns the set in effect.
func (e *Engine) Set() *Set { return e.set }

// Install replaces the set between two transactions (after a Commit, before the next
// transaction's first Row), so no transaction is evaluated by two sets. Aggregate and
// transition rules whose name, tables, group_by, sum and value are unchanged keep their
// state; other stateful rules start empty, a changed one taking back what its old
// definition published (retire.go), a new one what a removed rule whose place it takes
// published (takeOver).
func (e *Engine) Install(set *Set) {
	e.set = set
	e.plans = map[[2]string]*tablePlan{}
	e.headerCache = map[*Rule]cachedHeaders{}
	old := e.states
	had := maps.Clone(old)
	e.states = map[string]*ruleState{}
	for _, r := range set.rules {
		if !r.Stateful() {
			continue
		}
		if st, ok := old[r.name]; ok && st.rule.signature == r.signature {
			st.rule = r
			e.states[r.name] = st
			delete(old, r.name)
			continue
		}
		e.states[r.name] = newRuleState(r)
	}
	removed := map[string]map[string]retiredGroup{}
	for name, st := range old {
		if next := e.states[name]; next != nil { // changed: seeded again, and what it published retired
			next.retireFrom(st)
			continue
		}
		// Removed (or no longer stateful): its saved groups and marker go, taken back by
		// a new rule that takes its place, if one does.
		gone := &ruleState{rule: st.rule}
		gone.retireFrom(st)
		gone.retire(seedKey, retiredGroup{rule: name})
		removed[name] = gone.retired
	}
	e.takeOver(removed, func(name string) bool { return had[name] == nil })
}

// Row evaluates one row change: row rules emit to out now; aggregate and transition
// rules fold it into their groups, emitted by Commit. Snapshot reads (OpRead) are
// changes like any other: row rules emit them with op "r" unless their ops leave read
// out, and stateful rules fold them as inserts. An error means a rule cannot be applied
// to the change's table (a named column is missing or a sum column is not numeric) or
// out failed; the transaction must not be committed.
func (e *Engine) Row(ctx context.Context, c *canal.RowChange, out Emitter) error {
	return e.row(ctx, c, out, nil)
}

// row is Row; with only set, it is a re-read for those row rules alone (Reread).
func (e *Engine) row(ctx context.Context, c *canal.RowChange, out Emitter, only []string) error {
	plan := e.planFor(c.Table)
	if len(plan.rules) == 0 {
		return nil
	}
	e.cur = c
	e.envReady = false
	e.flatReady = false
	op := opIndex(c.Op)
	for _, rp := range plan.rules {
		if rp.err != nil {
			if st := e.states[rp.rule.name]; st != nil && st.holds(c.Source) {
				// A change the rule's seed already holds, of the table's shape before
				// (a column renamed since, which the rule now names): nothing to fold.
				continue
			}
			return rp.err
		}
		r := rp.rule
		switch {
		case only != nil && (r.emit != EmitRow || !slices.Contains(only, r.name)):
			continue
		case r.emit != EmitRow:
			st := e.states[r.name]
			if rp.typesChecked != st {
				if st.holds(c.Source) {
					continue // the seed holds the change
				}
				// A snapshot's read: the state is built from the table as it is now.
				reseeding, err := e.checkSumTypes(st, rp, c.Op == canal.OpRead)
				if err != nil {
					return err
				}
				if reseeding {
					continue
				}
			}
			if err := e.fold(st, rp, c); err != nil {
				return err
			}
			continue
		case !r.ops[op]:
			continue
		}
		if r.when != nil && !e.matchWhen(rp, plan, c) {
			continue
		}
		if e.movesRow(rp, c) {
			if err := e.emitMove(ctx, rp, c, out); err != nil {
				return fmt.Errorf("emitting rule %q messages for %s: %w", r.name, c.Table.FullName(), err)
			}
			continue
		}
		topic, ok := e.rowTopic(rp, c)
		if !ok {
			continue
		}
		if err := out.Emit(ctx, e.rowMessage(rp, c, topic)); err != nil {
			return fmt.Errorf("emitting rule %q message for %s: %w", r.name, c.Table.FullName(), err)
		}
	}
	e.cur = nil
	return nil
}

// planFor returns the plan for t, made at its first change. A plan made for another
// description of t's table (before DDL, or a snapshot's or re-read's) is replaced, so
// that the engine holds one per table whatever the number of schema changes; a re-read
// interleaved with the stream makes its plan again at each switch, which costs less than
// a description per DDL kept for the whole run.
func (e *Engine) planFor(t *canal.Table) *tablePlan {
	key := [2]string{t.Schema, t.Name}
	if plan := e.plans[key]; plan != nil && plan.table == t {
		return plan
	}
	plan := e.plan(t)
	e.plans[key] = plan
	return plan
}

// Commit ends the transaction: every aggregate group the transaction touched emits its
// new value, every transition group whose value changed emits, and the state entries
// the transaction changed are returned for the pipeline to save with pos. A Swap waiting
// takes effect after this. An error comes from out; the engine's state then already
// includes the transaction, so the pipeline must restart from its checkpoint (Restore).
func (e *Engine) Commit(ctx context.Context, pos canal.Position, out Emitter) ([]StateEntry, error) {
	entries := e.stale // first: a group saved again by this Commit is saved after its deletion
	e.stale = nil
	var firstErr error
	for _, r := range e.set.rules {
		st := e.states[r.name]
		if st == nil {
			continue
		}
		retiring := st.seeded && st.retired != nil
		if len(st.touched) > 0 || retiring {
			at := pos
			if !st.activeAfter.IsZero() {
				at = st.activeAfter // seeded there: as the groups its rows refilled
			}
			for _, g := range st.touched {
				if g.src.File == "" && g.src.GTID == "" { // emptied by a reseed, and no row refilled it
					g.src = commitSource(at, g.src)
				}
			}
			var ents []StateEntry
			var err error
			if retiring {
				ents, err = e.flushRetiring(ctx, st, pos, out)
			} else {
				ents, err = e.flushGroups(ctx, st, out)
			}
			entries = append(entries, ents...)
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("emitting rule %q at %s: %w", r.name, pos, err)
			}
		}
		if st.seeded {
			st.fresh = false // what it has is published with this Commit
		}
	}
	e.txnMsSet = false
	e.passSeedPositions(pos)
	entries = append(entries, e.seedMarkers()...)
	return entries, firstErr
}

func (e *Engine) changed(col string) bool {
	c := e.cur
	return c != nil && columnChanged(c, c.Table.ColumnIndex(col))
}

// columnChanged is changed() for column i of c (-1: no such column): an insert, snapshot
// read or delete changes every column, an update those whose value differs.
func columnChanged(c *canal.RowChange, i int) bool {
	if i < 0 {
		return false
	}
	if c.Before == nil || c.After == nil {
		return c.Op == canal.OpCreate || c.Op == canal.OpRead || c.Op == canal.OpDelete
	}
	return !valuesEqual(c.Before[i], c.After[i])
}

// matchWhen evaluates rule rp's `when` on c: through its closures when they decide, else
// through the flat program, else the struct one. An evaluation error counts as no match
// and is logged (evalFailed).
func (e *Engine) matchWhen(rp *rulePlan, plan *tablePlan, c *canal.RowChange) bool {
	if rp.whenFunc != nil {
		if match, ok := rp.whenFunc(c); ok {
			return match
		}
	}
	r := rp.rule
	var ok any
	var err error
	if r.whenFast != nil {
		e.prepareFlat(c, plan)
		ok, err = e.vm.Run(r.whenFast, e.flat)
	} else {
		e.prepareEnv(c, rp.table)
		e.env.Row = e.currentImage()
		ok, err = e.vm.Run(r.when, &e.env)
	}
	if err != nil {
		e.evalFailed(r, c.Table, "match.when", err)
		return false
	}
	b, _ := ok.(bool)
	return b
}

func valuesEqual(a, b any) bool {
	ab, aok := a.([]byte)
	bb, bok := b.([]byte)
	if aok || bok {
		return aok && bok && string(ab) == string(bb)
	}
	return a == b
}

// maxEvalFailureLogs is how many evaluation failures an engine logs (unless
// LogEveryFailure); EvalErrors counts them all.
const maxEvalFailureLogs = 100

// evalFailed counts a failure of rule r at run time and logs the first
// maxEvalFailureLogs of them (every one after LogEveryFailure): what names the failing part (match.when, fields.NAME,
// value, topic), t the change's table (nil when there is none, as for a group's value
// without rows).
func (e *Engine) evalFailed(r *Rule, t *canal.Table, what string, err error) {
	e.evalErrors++
	if e.evalErrorsOf == nil {
		e.evalErrorsOf = map[string]int64{}
	}
	e.evalErrorsOf[r.name]++
	if e.logEveryFailure || e.evalErrors <= maxEvalFailureLogs {
		table := ""
		if t != nil {
			table = t.FullName()
		}
		e.log.Warn("rule expression failed", zap.String("rule", r.name), zap.String("table", table), zap.String("expression", what), zap.Error(err))
	}
}

// prepareEnv fills before, after, op, schema and table once per row.
func (e *Engine) prepareEnv(c *canal.RowChange, tp *tableInfo) {
	if e.envReady {
		return
	}
	e.envReady = true
	e.env.Before = fillImage(e.env.Before, c.Table, c.Before)
	e.env.After = fillImage(e.env.After, c.Table, c.After)
	e.env.Op = c.Op.Name()
	e.env.Schema = c.Table.Schema
	e.env.Table = c.Table.Name
}

func (e *Engine) currentImage() map[string]any {
	if e.cur.After != nil {
		return e.env.After
	}
	return e.env.Before
}

// fillImage reuses m for the image's values; expressions see decimals as float64 and
// bytes and JSON as strings.
func fillImage(m map[string]any, t *canal.Table, vals []any) map[string]any {
	if m == nil {
		m = make(map[string]any, len(t.Columns))
	} else {
		clear(m)
	}
	if vals == nil {
		return m
	}
	for i, col := range t.Columns {
		if i >= len(vals) {
			break
		}
		m[col.Name] = exprValue(col.Kind, vals[i])
	}
	return m
}

func exprValue(k canal.ColumnKind, v any) any {
	switch x := v.(type) {
	case uint64:
		return exprUint(v)
	case string:
		if k == canal.KindDecimal {
			if f, err := strconv.ParseFloat(x, 64); err == nil {
				return f
			}
		}
	case []byte:
		return string(x)
	}
	return v
}

// exprUint is an unsigned integer as expressions see it, in a row's images, a fast
// condition (columnValue) and a transition rule's group_by values alike: expr compares
// and computes unsigned integers as int, so 2^63 and above would read negative; those are
// float64, as decimals are. Smaller ones, and values of other types, stay as they are.
func exprUint(v any) any {
	if x, ok := v.(uint64); ok && x > math.MaxInt64 {
		return float64(x)
	}
	return v // as it came: boxing it again would allocate, per row
}

// txnTime is the production time of the transaction's messages, read once per transaction.
func (e *Engine) txnTime() int64 {
	if !e.txnMsSet {
		e.txnMs = e.now().UnixMilli()
		e.txnMsSet = true
	}
	return e.txnMs
}

// positionHeader is "file:pos" of the change's transaction, or its GTID.
func (e *Engine) positionHeader(s *canal.Source) []byte {
	if e.posHeader != nil && e.posKey.File == s.File && e.posKey.Pos == s.Pos && e.posKey.GTID == s.GTID {
		return e.posHeader
	}
	var b []byte
	if s.GTID != "" {
		b = []byte(s.GTID)
	} else {
		b = strconv.AppendUint(append([]byte(s.File), ':'), uint64(s.Pos), 10)
	}
	e.posKey = canal.Source{File: s.File, Pos: s.Pos, GTID: s.GTID}
	e.posHeader = b
	e.posGen++
	return b
}

// headers returns the message headers; messages of one rule and transaction share one
// read-only slice.
func (e *Engine) headers(r *Rule, s *canal.Source) []sinks.Header {
	pos := e.positionHeader(s)
	c := e.headerCache[r]
	if c.gen == e.posGen && c.h != nil {
		return c.h
	}
	h := []sinks.Header{{Key: HeaderRule, Value: r.nameHeader}, {Key: HeaderPosition, Value: pos}}
	e.headerCache[r] = cachedHeaders{gen: e.posGen, h: h[:2:2]}
	return h[:2:2]
}

type cachedHeaders struct {
	gen uint64
	h   []sinks.Header
}
