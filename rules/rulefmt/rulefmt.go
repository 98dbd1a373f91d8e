// Package rulefmt reads and checks the structure of a stocksync rules file: keys, types,
// allowed values, globs and templates, each problem reported with file:line:col. It knows
// nothing of expressions' meaning or of the engine; package rules compiles what it returns.
package rulefmt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/stocksync/stocksync/internal/yamlpos"
)

// Pos is a place in the rules file, 1-based; Line 0 means the file as a whole.
type Pos struct {
	Line int
	Col  int
}

// Error is one problem in a rules file.
type Error struct {
	File string
	Pos
	Msg string
}

func (e Error) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is every problem found in one rules file, in file order. Its Error is one line
// per problem, "file:line:col: message".
type Errors []Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Sort orders es by position, keeping the order of problems at the same place.
func (es Errors) Sort() {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Line != es[j].Line {
			return es[i].Line < es[j].Line
		}
		return es[i].Col < es[j].Col
	})
}

// String is a scalar with the place it was written; Pos.Line is 0 when it was not written.
type String struct {
	Value string
	Pos   Pos
	// Invalid is true when the value was written but is not a scalar (already reported).
	Invalid bool
	// src is where the value was written, for PosOf; nil when not written.
	src *scalarSource
}

// Set reports whether the value was written in the file.
func (s String) Set() bool { return s.Pos.Line > 0 }

// Field is one output field: a name and the column or expression that gives its value.
type Field struct {
	Name String
	Expr String
	// Column is true for an item of a list of fields: Expr names a column, whatever the
	// name (op, table… included).
	Column bool
}

// Emit kinds.
const (
	EmitRow        = "row"
	EmitAggregate  = "aggregate"
	EmitTransition = "transition"
)

// Formats.
const (
	FormatDebezium = "debezium"
	FormatCanal    = "canal"
	FormatMaxwell  = "maxwell"
)

// Op names as written in match.ops.
var OpNames = []string{"insert", "update", "delete", "read"}

// Rule is one entry of the rules list, as written. Emit and Format hold their defaults
// when not written.
type Rule struct {
	Pos  Pos
	Name String
	// Tables are schema.table globs (path.Match syntax).
	Tables []String
	// Ops are op names; empty means every op.
	Ops  []String
	When String
	Emit String
	// Fields nil means every column; FieldsSet says fields was written.
	Fields    []Field
	FieldsSet bool
	Topic     String
	// Key empty means the primary key; one value with {placeholders} is a template
	// (KeyIsTemplate).
	Key     []String
	GroupBy []String
	Sum     []Field
	Value   String
	Format  String
	// Faulty is true when Parse reported a problem in the rule.
	Faulty bool
	// Index is the rule's 0-based place in the rules list.
	Index int
}

// Label is how messages name the rule: rule "NAME", or rules[INDEX] (0-based) when its
// name is missing, empty or not a scalar.
func (r *Rule) Label() string {
	if r.Name.Value == "" || r.Name.Invalid {
		return fmt.Sprintf("rules[%d]", r.Index)
	}
	return fmt.Sprintf("rule %q", r.Name.Value)
}

// File is a parsed rules file.
type File struct {
	Name  string
	Rules []*Rule
}

// Parse reads a rules file. It returns every structural problem at once as Errors; the
// returned File holds the rules that could be read, problems or not.
func Parse(file string, data []byte) (*File, error) {
	p := &parser{file: file, lines: splitLines(data)}
	f := &File{Name: file}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		if tabs := yamlpos.Tabs(data); len(tabs) > 0 {
			errs := make(Errors, len(tabs))
			for i, tab := range tabs {
				errs[i] = Error{File: file, Pos: Pos(tab), Msg: yamlpos.TabMsg}
			}
			return f, errs
		}
		return f, Errors{{File: file, Pos: Pos(yamlpos.ErrorLine(data, err)), Msg: "not valid YAML: " + yamlpos.ErrorText(err)}}
	}
	if len(doc.Content) == 0 {
		return f, Errors{{File: file, Msg: "empty file: expected a mapping with a rules list"}}
	}
	p.oneDocument(dec, data, doc.Line)
	root, aliasErrs, merged := expandAliases(doc.Content[0])
	for _, e := range aliasErrs {
		p.errorf(e.at, "%s", e.msg)
	}
	if !p.expectKind(root, yaml.MappingNode, "the file", "a mapping with a rules list") {
		return f, p.errs
	}
	var rulesNode *yaml.Node
	p.mapping(root, "", func(k, v *yaml.Node) {
		switch k.Value {
		case "rules":
			rulesNode = v
		default:
			p.unknown(k, "", []string{"rules"})
		}
	})
	if rulesNode == nil {
		p.errorf(pos(root), "rules: missing (a list of rules)")
		return f, p.errs
	}
	if p.expectKind(rulesNode, yaml.SequenceNode, "rules", "a list of rules") {
		seen := map[string]Pos{}
		for i, item := range rulesNode.Content {
			before := len(p.errs)
			r := p.rule(item, i)
			if r == nil {
				continue
			}
			if r.Name.Value != "" {
				first, dup := seen[r.Name.Value]
				switch {
				case dup && (slices.Contains(merged[item], "name") || r.Name.Pos == first):
					// Not written in this rule, but brought in from another: reported at this
					// rule, which both labels name alike, as the one that needs a name.
					how := "an alias"
					if slices.Contains(merged[item], "name") {
						how = "its merge key (<<)"
					}
					p.errorf(r.Pos, "%s (rules[%d]): name: taken through %s from line %d, and already the name of the rule at line %d: give this rule a name: of its own",
						r.Label(), r.Index, how, r.Name.Pos.Line, first.Line)
				case dup:
					p.errorf(r.Name.Pos, "%s: name: already the name of the rule at line %d (each rule needs its own name)", r.Label(), first.Line)
				default:
					seen[r.Name.Value] = r.Name.Pos
				}
			}
			r.Faulty = len(p.errs) > before
			f.Rules = append(f.Rules, r)
		}
	}
	if len(p.errs) > 0 {
		p.errs.Sort()
		return f, p.errs
	}
	return f, nil
}

// RuleKeys are the keys of a rule, and MatchKeys those of its match.
var (
	RuleKeys  = []string{"name", "match", "emit", "fields", "topic", "key", "group_by", "sum", "value", "format"}
	MatchKeys = []string{"table", "ops", "when"}
)

func (p *parser) rule(n *yaml.Node, i int) *Rule {
	r := &Rule{Pos: pos(n), Index: i}
	if !p.expectKind(n, yaml.MappingNode, r.Label(), "a mapping") {
		return nil
	}
	// Every problem of the rule names it the same way, Label, so its name is read first.
	if v := firstValue(n, "name"); v != nil && v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
		r.Name.Value = v.Value
	}
	at := r.Label()
	var matchNode *yaml.Node
	var tableWritten, groupByWritten, sumWritten bool
	p.mapping(n, at+": ", func(k, v *yaml.Node) {
		key := at + ": " + k.Value
		switch k.Value {
		case "name":
			r.Name = p.scalar(v, key)
		case "match":
			matchNode = v
			if p.expectKind(v, yaml.MappingNode, key, "a mapping with table, ops, when") {
				p.mapping(v, key+".", func(mk, mv *yaml.Node) {
					mkey := key + "." + mk.Value
					switch mk.Value {
					case "table":
						tableWritten = true
						r.Tables = p.scalarOrList(mv, mkey)
					case "ops":
						r.Ops = p.scalarOrList(mv, mkey)
					case "when":
						r.When = p.nonEmptyScalar(mv, mkey)
					default:
						p.unknown(mk, key+".", MatchKeys)
					}
				})
			}
		case "emit":
			r.Emit = p.scalar(v, key)
		case "fields":
			r.FieldsSet = true
			r.Fields = p.fields(v, key, true)
		case "topic":
			r.Topic = p.scalar(v, key)
		case "key":
			r.Key = p.scalarOrList(v, key)
		case "group_by":
			groupByWritten = true
			r.GroupBy = p.scalarOrList(v, key)
		case "sum":
			sumWritten = true
			r.Sum = p.fields(v, key, false)
		case "value":
			r.Value = p.nonEmptyScalar(v, key)
		case "format":
			r.Format = p.scalar(v, key)
		default:
			p.unknown(k, at+": ", RuleKeys)
		}
	})
	if !r.Name.Set() {
		p.errorf(r.Pos, "%s: name: missing", at)
	} else if r.Name.Value == "" && !r.Name.Invalid {
		p.errorf(r.Name.Pos, "%s: name: must not be empty", at)
	}
	if matchNode == nil {
		p.errorf(r.Pos, "%s: match: missing (match: {table: \"schema.table\"})", at)
	} else if !tableWritten && matchNode.Kind == yaml.MappingNode {
		p.errorf(pos(matchNode), "%s: match.table: missing (a schema.table glob or a list of them)", at)
	}
	for _, t := range r.Tables {
		checkGlob(p, at, t)
	}
	for _, o := range r.Ops {
		if !contains(OpNames, o.Value) {
			p.errorf(o.Pos, "%s: match.ops: %q is not one of %s", at, o.Value, strings.Join(OpNames, ", "))
		}
	}
	if !r.Topic.Set() {
		p.errorf(r.Pos, "%s: topic: missing", at)
	} else if err := CheckTopic(r.Topic.Value); err != nil && !r.Topic.Invalid {
		p.errorf(r.Topic.Pos, "%s: topic: %v", at, err)
	}
	if !r.Emit.Set() {
		r.Emit.Value = EmitRow
	}
	if !r.Format.Set() {
		r.Format.Value = FormatDebezium
	}
	switch r.Format.Value {
	case FormatDebezium, FormatCanal, FormatMaxwell:
	default:
		p.errorf(r.Format.Pos, "%s: format: %q is not one of debezium, canal, maxwell", at, r.Format.Value)
	}
	switch r.Emit.Value {
	case EmitRow:
		for _, f := range []struct {
			set        bool
			pos        Pos
			name, emit string
		}{
			{len(r.GroupBy) > 0, firstPos(r.GroupBy), "group_by", "aggregate or transition"},
			{len(r.Sum) > 0, firstFieldPos(r.Sum), "sum", "aggregate or transition"},
			{r.Value.Set(), r.Value.Pos, "value", "transition"},
		} {
			if f.set {
				p.errorf(f.pos, "%s: %s: only for emit: %s", at, f.name, f.emit)
			}
		}
	case EmitAggregate, EmitTransition:
		if !groupByWritten {
			p.errorf(r.Emit.Pos, "%s: group_by: missing (emit: %s folds the rows of each group)", at, r.Emit.Value)
		}
		if !sumWritten {
			p.errorf(r.Emit.Pos, "%s: sum: missing (output field: column, e.g. sum: {sellable: qty})", at)
		}
		if r.Emit.Value == EmitTransition && !r.Value.Set() {
			p.errorf(r.Emit.Pos, "%s: value: missing (emit: transition emits when this expression changes)", at)
		}
		if r.Emit.Value == EmitAggregate && r.Value.Set() {
			p.errorf(r.Value.Pos, "%s: value: only for emit: transition", at)
		}
		if r.FieldsSet {
			p.errorf(firstFieldPosOr(r.Fields, r.Pos), "%s: fields: not for emit: %s (its fields are group_by and sum)", at, r.Emit.Value)
		}
		if len(r.Key) > 0 {
			p.errorf(r.Key[0].Pos, "%s: key: not for emit: %s (its key is group_by)", at, r.Emit.Value)
		}
		if len(r.Ops) > 0 {
			p.errorf(r.Ops[0].Pos, "%s: match.ops: not for emit: %s (it folds every change of its tables)", at, r.Emit.Value)
		}
		checkGroupTopic(p, at, r)
		if r.When.Set() {
			p.errorf(r.When.Pos, "%s: match.when: not for emit: %s (it folds every row of its tables)", at, r.Emit.Value)
		}
		seen := map[string]bool{}
		for _, g := range r.GroupBy {
			seen[g.Value] = true
		}
		for _, s := range r.Sum {
			if seen[s.Name.Value] || s.Name.Value == "value" {
				p.errorf(s.Name.Pos, "%s: sum: output field %q is also a group_by column or value", at, s.Name.Value)
			}
			seen[s.Name.Value] = true
			if err := checkColumnName(s.Expr.Value); err != nil {
				p.errorf(s.Expr.Pos, "%s: sum.%s: %q: %v", at, s.Name.Value, s.Expr.Value, err)
			}
		}
		if r.Emit.Value == EmitTransition {
			for _, g := range r.GroupBy {
				if g.Value == "value" {
					p.errorf(g.Pos, "%s: group_by: \"value\": a transition's messages hold its flag under \"value\", beside the group_by columns, "+
						"so a column named value would be a second \"value\" key in them (emit: aggregate can group by it)", at)
				}
			}
		}
	default:
		p.errorf(r.Emit.Pos, "%s: emit: %q is not one of row, aggregate, transition", at, r.Emit.Value)
	}
	lists := []struct {
		key  string
		cols []String
	}{{"key", r.Key}, {"group_by", r.GroupBy}}
	if r.KeyIsTemplate() {
		if err := CheckTemplate(r.Key[0].Value); err != nil {
			p.errorf(r.Key[0].Pos, "%s: key: %v", at, err)
		}
		lists = lists[1:]
	}
	for _, l := range lists {
		for _, c := range l.cols {
			if err := checkColumnName(c.Value); err != nil {
				p.errorf(c.Pos, "%s: %s: %q: %v", at, l.key, c.Value, err)
			}
		}
		p.writtenOnce(at, l.key, l.cols)
	}
	if r.Fields != nil {
		names := make([]String, len(r.Fields))
		for i, f := range r.Fields {
			names[i] = f.Name
		}
		p.writtenOnce(at, "fields", names)
	}
	return r
}

// writtenOnce reports each name of a list (key, group_by, fields) written a second time:
// each is a key of the JSON objects of the rule's messages, and an object with a name
// twice is one that strict JSON readers refuse and others read as one.
func (p *parser) writtenOnce(at, key string, names []String) {
	first := map[string]Pos{}
	for _, n := range names {
		if was, dup := first[n.Value]; dup {
			p.errorf(n.Pos, "%s: %s: %q is written twice (first at line %d, column %d): it would be two %q keys in one JSON object", at, key, n.Value, was.Line, was.Col, n.Value)
			continue
		}
		first[n.Value] = n.Pos
	}
}

// MaxColumnName is the longest column name MySQL and MariaDB take, in characters.
const MaxColumnName = 64

// checkColumnName says why s cannot be a column name, nil when it can. Where the rules
// name columns as data (sum, group_by, key and fields lists, template placeholders) any
// name the server takes is taken, written without backticks: 库存, sku-id, menge_ü. The
// server takes any character of Unicode's basic plane but NUL, up to 64 of them, and no
// space at the end. Two things it takes are refused: '{' and '}', which mark template
// placeholders, and a value that reads as several plain names separated by commas
// ("sku_id, warehouse"), a list written as one scalar far more often than one column of
// that name.
func checkColumnName(s string) error {
	n := 0
	for _, r := range s {
		n++
		switch {
		case r == 0:
			return errors.New("a column name cannot hold NUL")
		case r > 0xFFFF:
			return fmt.Errorf("a column name cannot hold %q: MySQL takes U+0001 to U+FFFF", r)
		case r == '{' || r == '}':
			return errors.New("braces mark a template's placeholders, and a column whose name holds one cannot be named in rules (a key template is the whole key: key: \"{sku_id}:{warehouse}\")")
		}
	}
	names := strings.Split(s, ",")
	for i, name := range names {
		names[i] = strings.TrimSpace(name)
		if !IsIdent(names[i]) {
			break
		}
		if i == len(names)-1 && len(names) > 1 {
			return errors.New("reads as several columns, which are written as a list: [" + strings.Join(names, ", ") + "]")
		}
	}
	switch {
	case n == 0:
		return errors.New("a column name cannot be empty")
	case n > MaxColumnName:
		return fmt.Errorf("a column name is at most %d characters, not %d", MaxColumnName, n)
	case strings.HasSuffix(s, " "):
		return errors.New("a column name cannot end with a space")
	}
	return nil
}

// KeyIsTemplate reports whether the rule's key is one template ("{sku_id}:{warehouse}"),
// a plain-text key, rather than key columns.
func (r *Rule) KeyIsTemplate() bool {
	return len(r.Key) == 1 && strings.ContainsRune(r.Key[0].Value, '{')
}

func checkGlob(p *parser, at string, t String) {
	if _, err := path.Match(t.Value, ""); err != nil {
		p.errorf(t.Pos, "%s: match.table: bad glob %q: %v", at, t.Value, err)
		return
	}
	if !strings.Contains(t.Value, ".") {
		p.errorf(t.Pos, "%s: match.table: %q must be schema.table (globs allowed, e.g. shop.stock_*)", at, t.Value)
	}
}

// CheckTemplate checks a topic or key template: literal text with {name} placeholders, where
// name is schema, table, op or a column of the row.
func CheckTemplate(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	_, err := SplitTemplate(s)
	return err
}

// checkGroupTopic refuses placeholders other than group_by columns in the topic of an
// aggregate or transition rule: its messages are per group and transaction, not per
// change, so {schema}, {table}, {op} and other columns have no one value there.
func checkGroupTopic(p *parser, at string, r *Rule) {
	parts, err := SplitTemplate(r.Topic.Value)
	if err != nil || r.Topic.Invalid || slices.ContainsFunc(r.GroupBy, func(g String) bool { return checkColumnName(g.Value) != nil }) {
		return // reported
	}
	var bad []string
	for _, part := range parts {
		if part.Var && !slices.ContainsFunc(r.GroupBy, func(g String) bool { return g.Value == part.Text }) {
			bad = append(bad, "{"+part.Text+"}")
		}
	}
	if len(bad) == 0 {
		return
	}
	allowed := make([]string, len(r.GroupBy))
	for i, g := range r.GroupBy {
		allowed[i] = "{" + g.Value + "}"
	}
	allowedText := "none: group_by is missing"
	if len(allowed) > 0 {
		allowedText = "here " + strings.Join(allowed, ", ")
	}
	p.errorf(r.Topic.Pos, "%s: topic: %s: an emit: %s rule sends one message per group, so its topic may hold only its group_by columns (%s)",
		at, strings.Join(bad, ", "), r.Emit.Value, allowedText)
}

// MaxTopicLength is the longest topic name Kafka accepts.
const MaxTopicLength = 249

// CheckTopic checks a topic template: a template (CheckTemplate) whose literal text holds
// only what Kafka allows in a topic name (letters, digits, '.', '_', '-') and cannot
// make a name over MaxTopicLength on its own. What placeholders fill in is checked when
// a message is made (CheckTopicText for each value, CheckTopicShape for the whole).
func CheckTopic(s string) error {
	if err := CheckTemplate(s); err != nil {
		return err
	}
	parts, _ := SplitTemplate(s)
	literal := 0
	for _, part := range parts {
		if part.Var {
			continue
		}
		if err := CheckTopicText(part.Text); err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
		literal += len(part.Text)
	}
	if literal > MaxTopicLength {
		return fmt.Errorf("its literal text is %d characters, over Kafka's limit of %d for a topic name", literal, MaxTopicLength)
	}
	if len(parts) == 1 && !parts[0].Var {
		return CheckTopicShape(s)
	}
	return nil
}

// CheckTopicShape reports what makes name, whose characters CheckTopicText allows, no
// legal Kafka topic name: empty, "." or "..", or longer than MaxTopicLength.
func CheckTopicShape(name string) error {
	switch {
	case name == "":
		return errors.New("the topic name is empty")
	case name == "." || name == "..":
		return fmt.Errorf("%q is not a legal Kafka topic name", name)
	case len(name) > MaxTopicLength:
		return fmt.Errorf("the topic name is %d characters, over Kafka's limit of %d", len(name), MaxTopicLength)
	}
	return nil
}

// CheckTopicText reports the first character of s that Kafka refuses in a topic name.
func CheckTopicText(s string) error {
	if i := strings.IndexFunc(s, notTopicRune); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return fmt.Errorf("%q is not allowed in a Kafka topic name (letters, digits, '.', '_' and '-' only)", r)
	}
	return nil
}

// notTopicRune reports a character Kafka refuses in a topic name: it allows [a-zA-Z0-9._-].
func notTopicRune(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		return false
	}
	return true
}

// TemplatePart is a piece of a template: literal text, or a placeholder when Var is true.
type TemplatePart struct {
	Text string
	Var  bool
}

// SplitTemplate splits a template into literal parts and {name} placeholders.
func SplitTemplate(template string) ([]TemplatePart, error) {
	var parts []TemplatePart
	s := template
	for s != "" {
		open := strings.IndexByte(s, '{')
		closeAt := strings.IndexByte(s, '}')
		if open < 0 {
			if closeAt >= 0 {
				return nil, fmt.Errorf("'}' without '{' in %q", template)
			}
			parts = append(parts, TemplatePart{Text: s})
			break
		}
		if closeAt >= 0 && closeAt < open {
			return nil, fmt.Errorf("'}' without '{' in %q", template)
		}
		if open > 0 {
			parts = append(parts, TemplatePart{Text: s[:open]})
		}
		end := strings.IndexByte(s[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("'{' without '}' in %q", template)
		}
		name := s[open+1 : open+end]
		if strings.ContainsRune(name, '{') {
			return nil, fmt.Errorf("'{' inside the placeholder {%s in %q", name, template)
		}
		if err := checkColumnName(name); err != nil {
			return nil, fmt.Errorf("placeholder {%s}: %v (use {schema}, {table}, {op} or {column})", name, err)
		}
		parts = append(parts, TemplatePart{Text: name, Var: true})
		s = s[open+end+1:]
	}
	return parts, nil
}

// IsIdent reports whether s is a plain name: a letter or _ then letters, digits or _.
func IsIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

type parser struct {
	file  string
	lines [][]rune // the file, for String.PosOf
	errs  Errors
}

func (p *parser) errorf(at Pos, format string, args ...any) {
	p.errs = append(p.errs, Error{File: p.file, Pos: at, Msg: fmt.Sprintf(format, args...)})
}

func pos(n *yaml.Node) Pos { return Pos{Line: n.Line, Col: n.Column} }

var kindNames = map[yaml.Kind]string{yaml.MappingNode: "a mapping", yaml.SequenceNode: "a list", yaml.ScalarNode: "a scalar", yaml.AliasNode: "an alias", yaml.DocumentNode: "a document"}

func (p *parser) expectKind(n *yaml.Node, k yaml.Kind, what, want string) bool {
	if n.Kind == k {
		return true
	}
	p.errorf(pos(n), "%s: must be %s, not %s", what, want, kindNames[n.Kind])
	return false
}

// mapping calls fn for each key and value of n, reporting keys that are not strings
// and keys written twice. at is what a key's path starts with: "" in the file's
// mapping, `rule "x": ` in a rule's, `rule "x": match.` in its match.
func (p *parser) mapping(n *yaml.Node, at string, fn func(k, v *yaml.Node)) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			whole := strings.TrimSuffix(strings.TrimSuffix(at, "."), ": ")
			if whole == "" {
				whole = "the file"
			}
			p.errorf(pos(k), "%s: keys must be names", whole)
			continue
		}
		if seen[k.Value] {
			p.errorf(pos(k), "%s%s: key %q written twice", at, k.Value, k.Value)
			continue
		}
		seen[k.Value] = true
		fn(k, v)
	}
}

// firstValue is the value of the first key named key in the mapping n, or nil.
func firstValue(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// unknown reports the key k, at the path at (as for mapping), which is none of known.
func (p *parser) unknown(k *yaml.Node, at string, known []string) {
	hint := ""
	switch {
	case slices.Equal(known, RuleKeys) && slices.Contains(MatchKeys, k.Value):
		hint = fmt.Sprintf("; %s belongs under match: match: {%s: …}", k.Value, k.Value)
	case slices.Equal(known, MatchKeys) && slices.Contains(RuleKeys, k.Value):
		hint = fmt.Sprintf("; %s is a key of the rule, beside match, not under it", k.Value)
	}
	p.errorf(pos(k), "%s%s: unknown key (known: %s)%s", at, k.Value, strings.Join(known, ", "), hint)
}

func (p *parser) scalar(n *yaml.Node, at string) String {
	if n.Kind != yaml.ScalarNode {
		p.errorf(pos(n), "%s: must be a scalar, not %s", at, kindNames[n.Kind])
		return String{Pos: pos(n), Invalid: true}
	}
	if n.Tag == "!!null" {
		p.errorf(pos(n), "%s: must not be empty", at)
		return String{Pos: pos(n), Invalid: true}
	}
	src := &scalarSource{lines: p.lines, node: pos(n), style: n.Style, decorated: n.Anchor != "" || n.Style&yaml.TaggedStyle != 0}
	return String{Value: n.Value, Pos: pos(n), src: src}
}

// scalarOrList reads one scalar or a list of them; an empty one is refused (none of
// these keys means anything empty: leaving the key out gives its default).
func (p *parser) scalarOrList(n *yaml.Node, at string) []String {
	if n.Kind == yaml.ScalarNode {
		s := p.nonEmptyScalar(n, at)
		if s.Value == "" {
			return nil
		}
		return []String{s}
	}
	if !p.expectKind(n, yaml.SequenceNode, at, "a scalar or a list") {
		return nil
	}
	if len(n.Content) == 0 {
		p.errorf(pos(n), "%s: must not be empty%s", at, leaveOut(at))
		return nil
	}
	out := make([]String, 0, len(n.Content))
	for i, item := range n.Content {
		s := p.nonEmptyScalar(item, fmt.Sprintf("%s[%d]", at, i))
		if s.Value != "" {
			out = append(out, s)
		}
	}
	return out
}

// nonEmptyScalar is scalar, refusing "" as well as nothing.
func (p *parser) nonEmptyScalar(n *yaml.Node, at string) String {
	s := p.scalar(n, at)
	if s.Value == "" && !s.Invalid {
		p.errorf(s.Pos, "%s: must not be empty%s", at, leaveOut(at))
	}
	return s
}

// leaveOut tells what leaving an optional key out gives, for the key at names
// (`rule "x": key`, `rule "x": match.ops`).
func leaveOut(at string) string {
	switch at[strings.LastIndexAny(at, ". ")+1:] {
	case "key":
		return " (leave key out for the table's primary key)"
	case "ops":
		return " (leave ops out for every op)"
	case "when":
		return " (leave when out for every change)"
	}
	return ""
}

// fields reads a mapping of output name to column or expression; when lists is true a
// list of column names is accepted too (each copied under its own name).
func (p *parser) fields(n *yaml.Node, at string, lists bool) []Field {
	var out []Field
	errsBefore := len(p.errs)
	switch {
	case n.Kind == yaml.SequenceNode && lists:
		for i, item := range n.Content {
			s := p.nonEmptyScalar(item, fmt.Sprintf("%s[%d]", at, i))
			if s.Value == "" {
				continue
			}
			if err := checkColumnName(s.Value); err != nil {
				p.errorf(s.Pos, "%s[%d]: %q: %v (write name: expression to compute a field)", at, i, s.Value, err)
				continue
			}
			out = append(out, Field{Name: s, Expr: s, Column: true})
		}
	case n.Kind == yaml.MappingNode:
		p.mapping(n, at, func(k, v *yaml.Node) {
			name := String{Value: k.Value, Pos: pos(k)}
			if !IsIdent(k.Value) {
				p.errorf(name.Pos, "%s: %q is not a field name (letters, digits, _)", at, k.Value)
				return
			}
			e := p.nonEmptyScalar(v, at+"."+k.Value)
			if e.Value == "" {
				return
			}
			out = append(out, Field{Name: name, Expr: e})
		})
	default:
		want := "a mapping of output name: column"
		if lists {
			want = "a list of columns or a mapping of output name: column or expression"
		}
		p.expectKind(n, yaml.MappingNode, at, want)
		return nil
	}
	if len(out) == 0 && len(p.errs) == errsBefore {
		p.errorf(pos(n), "%s: must not be empty", at)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func firstPos(ss []String) Pos {
	if len(ss) == 0 {
		return Pos{}
	}
	return ss[0].Pos
}

func firstFieldPos(fs []Field) Pos {
	if len(fs) == 0 {
		return Pos{}
	}
	return fs[0].Name.Pos
}

func firstFieldPosOr(fs []Field, or Pos) Pos {
	if len(fs) == 0 {
		return or
	}
	return fs[0].Name.Pos
}

// oneDocument reports a second YAML document after the first (which starts at line
// first): yaml.v3 reads one document at a time, and the daemon would never see the rest.
func (p *parser) oneDocument(dec *yaml.Decoder, data []byte, first int) {
	const msg = "a rules file holds one YAML document: this '---' starts a second one, which would be ignored (put its rules in the first document's rules list)"
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err == nil:
		p.errorf(pos(&next), "%s", msg)
	default:
		// The second document is not even valid YAML: point at its '---'.
		p.errorf(documentStartAfter(data, first), "%s", msg)
	}
}

// documentStartAfter is the place of the first '---' document marker after line first.
func documentStartAfter(data []byte, first int) Pos {
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if i+1 > first && strings.HasPrefix(line, "---") && (len(line) == 3 || line[3] == ' ' || line[3] == '\t') {
			return Pos{Line: i + 1, Col: 1}
		}
	}
	return Pos{Line: first + 1, Col: 1}
}
