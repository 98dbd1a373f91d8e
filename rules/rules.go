package rules

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/types"
	"github.com/expr-lang/expr/vm"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/rules/rulefmt"
)

// Error is one problem in a rules file, at file:line:col.
type Error = rulefmt.Error

// Errors is every problem of one rules file; Load and Parse return it. Its Error is one
// line per problem, "file:line:col: message", in file order.
type Errors = rulefmt.Errors

// EmitKind says when a rule emits.
type EmitKind uint8

const (
	// EmitRow emits one message per matching row change, from Engine.Row (two for an
	// update that moves its row to another key or topic: movesRow).
	EmitRow EmitKind = iota
	// EmitAggregate folds each group's rows and emits its new value once per transaction
	// that touched it, from Engine.Commit.
	EmitAggregate
	// EmitTransition emits from Engine.Commit only when the rule's value changes for a group.
	EmitTransition
)

func (k EmitKind) String() string {
	switch k {
	case EmitAggregate:
		return rulefmt.EmitAggregate
	case EmitTransition:
		return rulefmt.EmitTransition
	}
	return rulefmt.EmitRow
}

// Format is a message envelope.
type Format uint8

const (
	FormatDebezium Format = iota
	FormatCanal
	FormatMaxwell
)

func (f Format) String() string {
	switch f {
	case FormatCanal:
		return rulefmt.FormatCanal
	case FormatMaxwell:
		return rulefmt.FormatMaxwell
	}
	return rulefmt.FormatDebezium
}

// Set is a compiled rules file. It is immutable once returned by Load or Parse, and safe
// for concurrent use.
type Set struct {
	file  string
	rules []*Rule
	// matches caches match by canal.TableName; matchesLen counts its entries, which are
	// cleared past maxCachedMatches: a shop's staging tables, each created and dropped
	// under a new name, left an entry per name for as long as the set was in use.
	matches    sync.Map
	matchesLen atomic.Int64
}

// maxCachedMatches bounds the tables whose match a Set caches, about 240 bytes each:
// more than most servers hold. Past it the cache starts again, which costs each table
// one more walk over the rules.
const maxCachedMatches = 4096

// Rule is one compiled rule.
type Rule struct {
	name       string
	emit       EmitKind
	format     Format
	globs      []string    // match.table as written
	tables     []tableGlob // globs, compiled
	ops        [4]bool     // indexed by opIndex
	opsAll     bool
	when       *vm.Program
	whenFast   *vm.Program // when, over the flat environment (fastwhen.go); nil: use when
	whenNames  []string    // the flat names whenFast reads
	fields     []fieldSpec // nil: every column
	topicParts []rulefmt.TemplatePart
	topic      string // the topic when it has no placeholders
	key        []string
	keyParts   []rulefmt.TemplatePart // key as a template (plain text); nil: key columns
	groupBy    []string
	sums       []sumSpec
	value      *vm.Program
	// columns are the columns the rule's expressions name (before.x, after.x, row.x,
	// changed("x")), checked by CheckTables.
	columns []columnRef
	// exprNameFields are fields whose value is an expression name (op, table…), which
	// CheckTables refuses where a matched table has a column of that name too.
	exprNameFields []exprNameField
	signature      string
	// legacySignatures are signature as markers saved by older versions hold it
	// (stateSignature).
	legacySignatures []string
	src              *rulefmt.Rule
	// nameHeader is the stocksync-rule header value, shared by every message (read-only).
	nameHeader []byte
}

type fieldSpec struct {
	name   string
	column string      // set when the field copies a column
	prog   *vm.Program // set when the field is computed
}

type sumSpec struct {
	name   string
	column string
	pos    rulefmt.Pos
}

type columnRef struct {
	name string
	pos  rulefmt.Pos
}

// exprNameField is a field of the fields mapping whose value is one of exprNames.
type exprNameField struct {
	field, name string
	pos         rulefmt.Pos
}

// Name is the rule's name, unique in its set.
func (r *Rule) Name() string { return r.name }

// Emit says when the rule emits.
func (r *Rule) Emit() EmitKind { return r.emit }

// Format is the rule's message envelope.
func (r *Rule) Format() Format { return r.format }

// Tables are the rule's schema.table globs, as written.
func (r *Rule) Tables() []string { return r.globs }

// Topic is the rule's topic template.
func (r *Rule) Topic() string { return r.src.Topic.Value }

// GroupBy is the group columns of an aggregate or transition rule.
func (r *Rule) GroupBy() []string { return r.groupBy }

// Signature names what the rule reads and folds: what it emits, its tables, its group_by,
// sums and value. Saved state, and a resync's re-read of a row rule's tables, go on
// across a reload or a restart only under the same signature.
func (r *Rule) Signature() string { return r.signature }

// SignatureWas reports whether sig, saved earlier, is the rule's signature, in today's
// form or in one an older version saved for the same definition.
func (r *Rule) SignatureWas(sig string) bool {
	return sig == r.signature || slices.Contains(r.legacySignatures, sig)
}

// Stateful reports whether the rule keeps state per group (aggregate or transition).
func (r *Rule) Stateful() bool { return r.emit != EmitRow }

// Hears reports whether the rule takes changes of kind op: a row rule those its
// match.ops name (all when left out), an aggregate or transition every kind.
func (r *Rule) Hears(op canal.Op) bool { return r.ops[opIndex(op)] }

// MatchesTable reports whether one of the rule's globs matches table of database schema.
func (r *Rule) MatchesTable(schema, table string) bool {
	for _, g := range r.tables {
		if g.matches(schema, table) {
			return true
		}
	}
	return false
}

// matchesByPattern reports whether a glob of the rule that is a pattern (its schema part,
// its table part or both) matches table of database schema.
func (r *Rule) matchesByPattern(schema, table string) bool {
	for _, g := range r.tables {
		if g.pattern && g.matches(schema, table) {
			return true
		}
	}
	return false
}

// File is the path the set was read from.
func (s *Set) File() string { return s.file }

// Rules returns the set's rules in file order. The slice must not be changed.
func (s *Set) Rules() []*Rule { return s.rules }

// Rule returns the named rule, or nil.
func (s *Set) Rule(name string) *Rule {
	for _, r := range s.rules {
		if r.name == name {
			return r
		}
	}
	return nil
}

type tableMatch struct {
	any, stateful bool
	// shared: an aggregate or transition rule matching the table may read others too.
	shared bool
	// patternRule names a rule matching the table through a glob that is a pattern, a stateful one first; patternStateful says it is one.
	patternRule     string
	patternStateful bool
}

func (s *Set) match(schema, table string) tableMatch {
	full := canal.TableName{Schema: schema, Name: table}
	if m, ok := s.matches.Load(full); ok {
		return m.(tableMatch)
	}
	var m tableMatch
	for _, r := range s.rules {
		if r.MatchesTable(schema, table) {
			m.any = true
			m.stateful = m.stateful || r.Stateful()
			m.shared = m.shared || r.Stateful() && !r.readsOneTable()
		}
		if !m.patternStateful && r.matchesByPattern(schema, table) {
			m.patternRule, m.patternStateful = r.name, r.Stateful()
		}
	}
	if _, loaded := s.matches.LoadOrStore(full, m); !loaded && s.matchesLen.Add(1) > maxCachedMatches {
		s.matches.Clear()
		s.matchesLen.Store(0)
	}
	return m
}

// Matches reports whether any rule matches schema.table; changes of other tables can be
// skipped before they are decoded. The answer is cached per table.
func (s *Set) Matches(schema, table string) bool { return s.match(schema, table).any }

// StatefulTables reports whether an aggregate or transition rule matches schema.table:
// such a table's rows must be read by a snapshot before streaming when the engine starts
// without state for those rules.
func (s *Set) StatefulTables(schema, table string) bool { return s.match(schema, table).stateful }

// StatefulSchema reports whether an aggregate or transition rule has a glob whose schema
// part matches schema: it may read tables of that database.
func (s *Set) StatefulSchema(schema string) bool {
	for _, r := range s.rules {
		if r.Stateful() && r.mayReadSchema(schema) {
			return true
		}
	}
	return false
}

// mayReadSchema reports whether one of the rule's globs has a schema part that matches
// schema: the rule may read tables of that database. It agrees with MatchesTable, which
// matches the same part against a table's database.
func (r *Rule) mayReadSchema(schema string) bool {
	for _, g := range r.tables {
		if g.matchesSchema(schema) {
			return true
		}
	}
	return false
}

// StatefulRulesReading names the aggregate and transition rules that read one of tables
// ([schema, table]) or may read tables of one of schemas.
func (s *Set) StatefulRulesReading(tables [][2]string, schemas []string) []string {
	var names []string
	for _, r := range s.rules {
		if !r.Stateful() {
			continue
		}
		reads := slices.ContainsFunc(tables, func(t [2]string) bool { return r.MatchesTable(t[0], t[1]) }) ||
			slices.ContainsFunc(schemas, r.mayReadSchema)
		if reads {
			names = append(names, r.name)
		}
	}
	return names
}

// StatefulAlone reports whether every aggregate or transition rule that matches
// schema.table reads that table alone: its only glob names it, without a pattern. Such a
// rule knows its state when the table is emptied without row events (Engine.Empty).
// Cached per table.
func (s *Set) StatefulAlone(schema, table string) bool {
	m := s.match(schema, table)
	return m.stateful && !m.shared
}

// readsOneTable reports whether the rule can read one table only: it has one glob, and
// that names a table without a pattern.
func (r *Rule) readsOneTable() bool {
	return len(r.tables) == 1 && !r.tables[0].pattern
}

// PatternRule names a rule that matches schema.table through a glob that is a pattern
// (shop_*.stock, shop.stock_*), an aggregate or transition rule first (stateful true); ""
// when none does. The check at start cannot look at every such table (information_schema
// hides the ones source.user may not read: canal.UnreadableTables): the stream checks
// them as it meets them. Cached per table.
func (s *Set) PatternRule(schema, table string) (rule string, stateful bool) {
	m := s.match(schema, table)
	return m.patternRule, m.patternStateful
}

// HasStatefulRules reports whether any rule folds rows (emit: aggregate or transition).
func (s *Set) HasStatefulRules() bool {
	for _, r := range s.rules {
		if r.Stateful() {
			return true
		}
	}
	return false
}

// Load reads and compiles a rules file. Any problem returns Errors listing every problem
// in the file, each "file:line:col: message", and no set; reading the file failing
// returns that error.
func Load(path string) (*Set, error) {
	set, err := LoadPartial(path)
	if err != nil {
		return nil, err
	}
	return set, nil
}

// LoadPartial is Load for checkers that report more than the file's own problems (`rules
// validate --live`): beside the file's Errors it returns the set of the rules that have
// none, nil when no rule is free of problems. Such a set is for checking only, never to
// run: its file does not load.
func LoadPartial(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading rules: %w", err)
	}
	return ParsePartial(path, data)
}

// Parse compiles the rules file data read from file (the name used in errors). Any
// problem returns Errors listing every problem at once, and no set.
func Parse(file string, data []byte) (*Set, error) {
	set, err := ParsePartial(file, data)
	if err != nil {
		return nil, err
	}
	return set, nil
}

// ParsePartial is Parse returning, beside the file's Errors, the set of the rules that
// have no problem (LoadPartial).
func ParsePartial(file string, data []byte) (*Set, error) {
	f, err := rulefmt.Parse(file, data)
	var errs Errors
	if err != nil && !errors.As(err, &errs) {
		return nil, err
	}
	s := &Set{file: file}
	c := compiler{file: file}
	for _, fr := range f.Rules {
		before := len(c.errs)
		r := c.rule(fr)
		if !fr.Faulty && len(c.errs) == before {
			s.rules = append(s.rules, r)
		}
	}
	errs = append(errs, c.errs...)
	if len(errs) > 0 {
		errs.Sort()
		if len(s.rules) == 0 {
			return nil, errs
		}
		return s, errs
	}
	if len(s.rules) == 0 {
		return nil, Errors{{File: file, Msg: "rules: the file has no rules"}}
	}
	return s, nil
}

type compiler struct {
	file string
	errs Errors
}

func (c *compiler) errorf(at rulefmt.Pos, format string, args ...any) {
	c.errs = append(c.errs, Error{File: c.file, Pos: at, Msg: fmt.Sprintf(format, args...)})
}

// exprNames are the names that, as a value of the fields mapping, mean what they mean in
// an expression (rowEnv, and expr's literals) rather than a column of that name.
var exprNames = map[string]bool{"before": true, "after": true, "row": true, "op": true, "table": true, "schema": true, "changed": true,
	"true": true, "false": true, "nil": true}

func (c *compiler) rule(fr *rulefmt.Rule) *Rule {
	r := &Rule{name: fr.Name.Value, src: fr, nameHeader: []byte(fr.Name.Value)}
	at := fr.Label()
	switch fr.Emit.Value {
	case rulefmt.EmitAggregate:
		r.emit = EmitAggregate
	case rulefmt.EmitTransition:
		r.emit = EmitTransition
	}
	if r.emit != EmitRow && len(r.name) > canal.MaxStateScope {
		c.errorf(fr.Name.Pos, "%s: name: %d bytes long; an aggregate's or transition's at most %d (its saved state is kept under its name)", at, len(r.name), canal.MaxStateScope)
	}
	switch fr.Format.Value {
	case rulefmt.FormatCanal:
		r.format = FormatCanal
	case rulefmt.FormatMaxwell:
		r.format = FormatMaxwell
	}
	for _, t := range fr.Tables {
		r.globs = append(r.globs, t.Value)
		g, err := parseTableGlob(t.Value)
		if err != nil && !reportedByRulefmt(t.Value) {
			c.errorf(t.Pos, "%s: match.table: %v", at, err)
		}
		r.tables = append(r.tables, g)
	}
	r.opsAll = len(fr.Ops) == 0
	for _, o := range fr.Ops {
		for i, n := range rulefmt.OpNames {
			if n == o.Value {
				r.ops[i] = true
			}
		}
	}
	if r.opsAll {
		r.ops = [4]bool{true, true, true, true}
	}
	if fr.When.Set() && fr.When.Value != "" {
		r.when = c.compileRow(at+": match.when", fr.When, r, expr.AsBool())
		if r.when != nil {
			r.whenFast, r.whenNames = compileFastWhen(fr.When.Value)
		}
	}
	if fr.FieldsSet {
		r.fields = []fieldSpec{}
		for _, f := range fr.Fields {
			fs := fieldSpec{name: f.Name.Value}
			name := rulefmt.IsIdent(f.Expr.Value)
			switch {
			case f.Column || name && !exprNames[f.Expr.Value]:
				fs.column = f.Expr.Value
				r.columns = append(r.columns, columnRef{f.Expr.Value, f.Expr.Pos})
			default:
				fs.prog = c.compileRow(at+": fields."+f.Name.Value, f.Expr, r)
				if name {
					r.exprNameFields = append(r.exprNameFields, exprNameField{field: f.Name.Value, name: f.Expr.Value, pos: f.Expr.Pos})
				}
			}
			r.fields = append(r.fields, fs)
		}
	}
	parts, _ := rulefmt.SplitTemplate(fr.Topic.Value)
	r.topicParts = parts
	if len(parts) == 1 && !parts[0].Var {
		r.topic = parts[0].Text
	}
	r.columns = append(r.columns, templateColumns(parts, fr.Topic.Pos)...)
	if fr.KeyIsTemplate() {
		r.keyParts, _ = rulefmt.SplitTemplate(fr.Key[0].Value)
		r.columns = append(r.columns, templateColumns(r.keyParts, fr.Key[0].Pos)...)
	} else {
		for _, k := range fr.Key {
			r.key = append(r.key, k.Value)
			r.columns = append(r.columns, columnRef{k.Value, k.Pos})
		}
	}
	for _, g := range fr.GroupBy {
		r.groupBy = append(r.groupBy, g.Value)
		r.columns = append(r.columns, columnRef{g.Value, g.Pos})
	}
	for _, s := range fr.Sum {
		r.sums = append(r.sums, sumSpec{name: s.Name.Value, column: s.Expr.Value, pos: s.Expr.Pos})
		r.columns = append(r.columns, columnRef{s.Expr.Value, s.Expr.Pos})
	}
	if r.emit == EmitTransition && fr.Value.Value != "" {
		env := types.Map{}
		for _, g := range r.groupBy {
			env[g] = types.Any
		}
		for _, s := range r.sums {
			env[s.name] = types.Any
		}
		sees := slices.Clone(r.groupBy)
		for _, sm := range r.sums {
			sees = append(sees, sm.name)
		}
		hint := func(name string, call bool) string {
			return didYouMean(name, sees, call) +
				fmt.Sprintf("value sees the rule's group_by columns and sum fields: %s", strings.Join(sees, ", "))
		}
		r.value = c.compile(at+": value", fr.Value, expr.Env(env), hint)
	}
	r.signature = stateSignature(r, fr.Value.Value, signatureNow)
	for _, form := range []signatureForm{signatureWrittenGlobs, signatureSumPlaces} {
		if sig := stateSignature(r, fr.Value.Value, form); sig != r.signature && !slices.Contains(r.legacySignatures, sig) {
			r.legacySignatures = append(r.legacySignatures, sig)
		}
	}
	return r
}

// signatureForm is a form of stateSignature, today's or one that older versions saved.
type signatureForm uint8

const (
	// signatureNow holds the globs sorted, each once: the same tables listed in another
	// order, or one listed twice, are not a new definition.
	signatureNow signatureForm = iota
	// signatureWrittenGlobs, saved before globs were sorted, holds them as written.
	signatureWrittenGlobs
	// signatureSumPlaces, saved before the fourteenth session, holds the globs as written
	// and each sum's place in the file too.
	signatureSumPlaces
)

// stateSignature is what a stateful rule's saved state depends on: its emit, tables,
// group_by, sums and value, and nothing of where or in which order its tables are written
// in the file, so that a comment, a rule moved or its globs reordered does not seed the
// rule again. The forms older versions saved (signatureForm) are still taken, while the
// file has not changed, and saved again in today's form (Engine.Restore).
func stateSignature(r *Rule, value string, form signatureForm) string {
	globs := r.globs
	if form == signatureNow {
		globs = slices.Compact(slices.Sorted(slices.Values(r.globs)))
	}
	var sig strings.Builder
	if form == signatureSumPlaces {
		fmt.Fprintf(&sig, "%s|%v|%v|%v|", r.emit, globs, r.groupBy, r.sums)
	} else {
		fmt.Fprintf(&sig, "%s|%v|%v|[", r.emit, globs, r.groupBy)
		for i, s := range r.sums {
			if i > 0 {
				sig.WriteByte(' ')
			}
			fmt.Fprintf(&sig, "%s:%s", s.name, s.column)
		}
		sig.WriteString("]|")
	}
	sig.WriteString(value)
	return sig.String()
}

// compileRow compiles an expression over a row change and records the columns it names.
func (c *compiler) compileRow(what string, s rulefmt.String, r *Rule, opts ...expr.Option) *vm.Program {
	p := c.compile(what, s, expr.Env(rowEnv{}), rowUnknownHint, opts...)
	if p != nil {
		node := p.Node()
		ast.Walk(&node, columnCollector{refs: &r.columns, expr: s})
	}
	return p
}

// rowUnknownHint is what an unknown name in a row expression is told: usually a column
// written without before., after. or row.
func rowUnknownHint(name string, call bool) string {
	return didYouMean(name, []string{"before", "after", "row", "op", "schema", "table", "changed"}, call) + fmt.Sprintf(`a row expression sees before, after, row, op, schema, table and changed("col"); a column is after.%s, before.%s or row.%s`, name, name, name)
}

// compile compiles expression s over env; an error is recorded as the problem of what.
// unknown gives the hint added to the error when it is a name env does not have (call: the
// name is called, as a function).
func (c *compiler) compile(what string, s rulefmt.String, env expr.Option, unknown func(name string, call bool) string, opts ...expr.Option) *vm.Program {
	p, err := expr.Compile(s.Value, append([]expr.Option{env, boundedRepeat}, opts...)...)
	if err != nil {
		at, msg := s.Pos, err.Error()
		var fe *file.Error
		if errors.As(err, &fe) {
			msg = fe.Message
			var exact bool
			if at, exact = s.PosOf(fe.From); !exact {
				// The place in the file cannot be told (an anchor or a tag before the
				// scalar): the scalar's own place, and the place inside the expression.
				msg += fmt.Sprintf(" (in the expression at line %d, column %d)", fe.Line, fe.Column+1)
			}
			if name, call := identifierAt(s.Value, fe.From); name != "" {
				if _, err := expr.Compile(name, env); err != nil { // not a name of env or a builtin
					msg += " (" + unknown(name, call) + ")"
				}
			}
		}
		c.errorf(at, "%s: %s", what, msg)
		return nil
	}
	return p
}

// identifierAt is the name of the identifier at offset from of expression src, "" when
// there is none (the checker reports an unknown name at its identifier), and whether it is
// called.
func identifierAt(src string, from int) (name string, call bool) {
	tree, err := parser.Parse(src)
	if err != nil {
		return "", false
	}
	var f identAtFinder
	f.from = from
	ast.Walk(&tree.Node, &f)
	return f.name, f.call
}

type identAtFinder struct {
	from int
	name string
	call bool
}

func (f *identAtFinder) Visit(n *ast.Node) {
	switch x := (*n).(type) {
	case *ast.IdentifierNode:
		if x.Location().From == f.from && x.Value != "$env" {
			f.name = x.Value
		}
	case *ast.CallNode:
		if id, ok := x.Callee.(*ast.IdentifierNode); ok && id.Location().From == f.from {
			f.call = true
		}
	}
}

// columnCollector records before.x, after.x, row.x and changed("x"), each at its place
// in the file.
type columnCollector struct {
	refs *[]columnRef
	expr rulefmt.String
}

func (v columnCollector) Visit(n *ast.Node) {
	switch x := (*n).(type) {
	case *ast.MemberNode:
		id, ok := x.Node.(*ast.IdentifierNode)
		if !ok || (id.Value != "before" && id.Value != "after" && id.Value != "row") {
			return
		}
		if s, ok := x.Property.(*ast.StringNode); ok {
			*v.refs = append(*v.refs, columnRef{s.Value, v.place(s)})
		}
	case *ast.CallNode:
		id, ok := x.Callee.(*ast.IdentifierNode)
		if !ok || id.Value != "changed" || len(x.Arguments) != 1 {
			return
		}
		if s, ok := x.Arguments[0].(*ast.StringNode); ok {
			*v.refs = append(*v.refs, columnRef{s.Value, v.place(s)})
		}
	}
}

// place is where node n of the expression was written, or the expression's own place.
func (v columnCollector) place(n ast.Node) rulefmt.Pos {
	at, _ := v.expr.PosOf(n.Location().From)
	return at
}

// rowEnv is what row expressions see: before, after and row (the image being projected,
// or the current image) as maps of column name to value, op (insert, update, delete,
// read), schema, table, and changed("col").
type rowEnv struct {
	Before  map[string]any    `expr:"before"`
	After   map[string]any    `expr:"after"`
	Row     map[string]any    `expr:"row"`
	Op      string            `expr:"op"`
	Schema  string            `expr:"schema"`
	Table   string            `expr:"table"`
	Changed func(string) bool `expr:"changed"`
}

// TableInfo is a live table as the source's information_schema describes it.
type TableInfo struct {
	Schema  string
	Name    string
	Columns []canal.Column
}

// CheckTables checks the set against the source's live tables: every glob must match a
// table, and CheckColumns. Problems carry the rules file's positions, and come in file
// order.
func (s *Set) CheckTables(tables []TableInfo) []error {
	var errs Errors
	for _, r := range s.rules {
		for gi, g := range r.globs {
			n := 0
			for _, t := range tables {
				if r.tables[gi].matches(t.Schema, t.Name) {
					n++
				}
			}
			if n == 0 {
				errs = append(errs, Error{File: s.file, Pos: r.src.Tables[gi].Pos, Msg: fmt.Sprintf("rule %q: match.table: %q matches no table of the source "+
					"(or none that source.user may SELECT: information_schema hides those)%s", r.name, g, dottedDatabaseHint(g, tables))})
			}
		}
	}
	return s.checkColumns(tables, errs)
}

// dottedDatabaseHint is what to add when glob g, which matches no table, would match one
// of a database whose name holds a dot if it were matched as one string over
// schema.table (as it was before its halves were matched apart): its database part ends
// at the first dot, and such a database is written in backquotes.
func dottedDatabaseHint(g string, tables []TableInfo) string {
	for _, t := range tables {
		if ok, _ := path.Match(g, t.Schema+"."+t.Name); ok && strings.Contains(t.Schema, ".") {
			return fmt.Sprintf("; a glob's database part ends at its first dot: write database %s in backquotes, as in %q",
				t.Schema, canal.TableName{Schema: t.Schema, Name: t.Name}.String())
		}
	}
	return ""
}

// CheckColumns checks the set against the source's live tables as the daemon does at start
// and at each reload, where a table the rules match may not exist yet: every column a rule
// names must exist in each table the rule matches, and sum columns must be numeric, each
// of one class (sumClass: integer, decimal or float) in every table its rule matches.
func (s *Set) CheckColumns(tables []TableInfo) []error { return s.checkColumns(tables, nil) }

func (s *Set) checkColumns(tables []TableInfo, errs Errors) []error {
	types := compiler{file: s.file}
	for _, r := range s.rules {
		typeChecked := map[rulefmt.Pos]bool{}
		shapesChecked := map[string]bool{} // tables of one shape (a tenant per schema) are type-checked once
		// sumSeen is, per sum, the first table the rule matches where its column is a
		// number, and the column's kind there: every other table must have it in the
		// same class (sumClass).
		sumSeen := make([]struct {
			table string
			kind  canal.ColumnKind
		}, len(r.sums))
		for _, t := range tables {
			if !r.MatchesTable(t.Schema, t.Name) {
				continue
			}
			kinds := map[string]canal.ColumnKind{}
			for _, c := range t.Columns {
				kinds[c.Name] = c.Kind
			}
			reported := map[columnRef]bool{} // each place that names a missing column: each is to mend
			for _, ref := range r.columns {
				if _, ok := kinds[ref.name]; !ok && !reported[ref] {
					reported[ref] = true
					errs = append(errs, Error{File: s.file, Pos: ref.pos, Msg: fmt.Sprintf("rule %q: table %s.%s has no column %q (%s)", r.name, t.Schema, t.Name, ref.name, columnsHint(ref.name, t.Columns))})
				}
			}
			if shape := fmt.Sprint(t.Columns); len(reported) == 0 && !shapesChecked[shape] {
				shapesChecked[shape] = true
				types.checkTypes(r, t, kinds, typeChecked)
			}
			for _, f := range r.exprNameFields {
				if _, ok := kinds[f.name]; ok {
					meant := "$env." + f.name // what the expression sees under that name
					if f.name == "true" || f.name == "false" || f.name == "nil" {
						meant = "(" + f.name + ")"
					}
					errs = append(errs, Error{File: s.file, Pos: f.pos, Msg: fmt.Sprintf("rule %q: fields.%s: %s means the expression name %s, not the column %s of table %s.%s: "+
						"write row.%s for the column, or %s for the expression name", r.name, f.field, f.name, f.name, f.name, t.Schema, t.Name, f.name, meant)})
				}
			}
			for i, sm := range r.sums {
				k, ok := kinds[sm.column]
				switch {
				case !ok:
				case !k.Numeric():
					errs = append(errs, Error{File: s.file, Pos: sm.pos, Msg: fmt.Sprintf("rule %q: sum.%s: column %s.%s.%s is %s, not a number", r.name, sm.name, t.Schema, t.Name, sm.column, k)})
				case sumSeen[i].table == "":
					sumSeen[i].table, sumSeen[i].kind = canal.TableName{Schema: t.Schema, Name: t.Name}.String(), k
				case sumClass(k) != sumClass(sumSeen[i].kind):
					// One group may hold rows of both tables: its sum would change JSON type
					// between a message's before and after (topics.md, Aggregate messages).
					errs = append(errs, Error{File: s.file, Pos: sm.pos, Msg: fmt.Sprintf("rule %q: sum.%s: column %s is %s (class %s) in %s.%s but %s (class %s) in %s: %s",
						r.name, sm.name, sm.column, k, sumClass(k), t.Schema, t.Name, sumSeen[i].kind, sumClass(sumSeen[i].kind), sumSeen[i].table, sumClassesDiffer)})
				}
			}
		}
	}
	errs = append(errs, types.errs...)
	errs.Sort()
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return out
}

// opIndex maps an Op to its place in rulefmt.OpNames.
func opIndex(o canal.Op) int {
	switch o {
	case canal.OpCreate:
		return 0
	case canal.OpUpdate:
		return 1
	case canal.OpDelete:
		return 2
	}
	return 3
}

// templateColumns lists the columns a topic or key template reads ({schema}, {table} and
// {op} are not columns).
func templateColumns(parts []rulefmt.TemplatePart, pos rulefmt.Pos) []columnRef {
	var cols []columnRef
	for _, p := range parts {
		if p.Var && p.Text != "schema" && p.Text != "table" && p.Text != "op" {
			cols = append(cols, columnRef{p.Text, pos})
		}
	}
	return cols
}

// reportedByRulefmt reports whether rulefmt has already reported glob g (one without a
// dot, or bad as one whole glob): the compiler reports only what it alone finds (a
// backquote not closed, a bad half), so that no problem is said twice.
func reportedByRulefmt(g string) bool {
	_, err := path.Match(g, "")
	return err != nil || !strings.Contains(g, ".")
}
