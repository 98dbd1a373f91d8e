package rules

import (
	"fmt"
	"slices"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/rules/rulefmt"
)

// tableInfo is what the engine precomputes once per table shape.
type tableInfo struct {
	t *canal.Table
	// colKeys[i] is `"name":` for column i.
	colKeys [][]byte
	// dbTable is `,"db":"schema","table":"name"` for the debezium source block.
	dbTable []byte
	// schemaJSON and nameJSON are the quoted schema and table names.
	schemaJSON, nameJSON []byte
}

// table is the table ti describes; nil for none.
func (ti *tableInfo) table() *canal.Table {
	if ti == nil {
		return nil
	}
	return ti.t
}

// rulePlan is one rule resolved against one table: column indexes, ready-made keys.
type rulePlan struct {
	rule  *Rule
	table *tableInfo
	// err is set when the rule cannot apply to this table; Row returns it.
	err error
	// keyIdx are the key columns; nil for no key (a table without primary key).
	keyIdx  []int
	keyKeys [][]byte
	// pkNames is the key column names as a JSON array, for Canal's pkNames.
	pkNames []byte
	// fieldIdx is, per field, the column copied or -1 for an expression; nil: all columns.
	fieldIdx  []int
	fieldKeys [][]byte
	groupIdx  []int
	groupKeys [][]byte
	sumIdx    []int
	sumKinds  []canal.ColumnKind
	// groupBinary is, per group column, whether it is binary (group.binary); nil when
	// none is.
	groupBinary []bool
	// sumTypes is the classes of the summed columns (planSumTypes); typesChecked the
	// rule state last found to hold them for this table.
	sumTypes     string
	typesChecked *ruleState
	// topicIdx is, per topic part, -1 literal, -2 schema, -3 table, -4 op, else a column;
	// keyTemplateIdx the same for a key template.
	topicIdx       []int
	keyTemplateIdx []int
	// placeIdx are the columns that place a row rule's message: its key's and its topic
	// template's. An update that changes one may move the row to another key or topic
	// (movesRow).
	placeIdx []int
	// whenFunc is the rule's `when` as closures over this table (whenfunc.go); nil: the
	// expression programs evaluate it.
	whenFunc whenFunc
}

type tablePlan struct {
	table    *canal.Table // the description it was made for (planFor)
	rules    []*rulePlan
	flatKeys []flatKey // the flat names the rules' fast `when`s read
}

const (
	topicLiteral = -1
	topicSchema  = -2
	topicTable   = -3
	topicOp      = -4
)

func (e *Engine) plan(t *canal.Table) *tablePlan {
	tp := &tablePlan{table: t}
	if !e.set.match(t.Schema, t.Name).any {
		return tp
	}
	ti := namedTable(t)
	ti.colKeys = make([][]byte, len(t.Columns))
	for i, c := range t.Columns {
		ti.colKeys[i] = append(appendString(nil, c.Name), ':')
	}
	for _, r := range e.set.rules {
		if r.MatchesTable(t.Schema, t.Name) {
			tp.rules = append(tp.rules, planRule(r, ti))
		}
	}
	tp.flatKeys = flatKeysFor(tp.rules, t)
	return tp
}

// namedTable is the tableInfo of t with its names only (no column keys): all a group
// message needs of the table it names.
func namedTable(t *canal.Table) *tableInfo {
	ti := &tableInfo{t: t, schemaJSON: appendString(nil, t.Schema), nameJSON: appendString(nil, t.Name)}
	ti.dbTable = append(append(append([]byte(`,"db":`), ti.schemaJSON...), `,"table":`...), ti.nameJSON...)
	return ti
}

func planRule(r *Rule, ti *tableInfo) *rulePlan {
	t := ti.t
	rp := &rulePlan{rule: r, table: ti}
	if r.whenFast != nil {
		rp.whenFunc = compileWhenFunc(r.whenFast.Node(), t)
	}
	var missing []string
	index := func(name string) int {
		i := t.ColumnIndex(name)
		if i < 0 {
			missing = append(missing, name)
		}
		return i
	}
	keyNames := r.key
	if r.Stateful() {
		keyNames = r.groupBy
	}
	if len(keyNames) == 0 {
		for _, i := range t.PrimaryKey {
			keyNames = append(keyNames, t.Columns[i].Name)
		}
	}
	for _, k := range keyNames {
		rp.keyIdx = append(rp.keyIdx, index(k))
		rp.keyKeys = append(rp.keyKeys, append(appendString(nil, k), ':'))
	}
	if len(keyNames) > 0 {
		rp.pkNames = append(rp.pkNames, '[')
		for i, k := range keyNames {
			if i > 0 {
				rp.pkNames = append(rp.pkNames, ',')
			}
			rp.pkNames = appendString(rp.pkNames, k)
		}
		rp.pkNames = append(rp.pkNames, ']')
	} else {
		rp.pkNames = []byte("null")
	}
	if r.fields != nil {
		rp.fieldIdx = make([]int, len(r.fields))
		for i, f := range r.fields {
			rp.fieldIdx[i] = -1
			if f.column != "" {
				rp.fieldIdx[i] = index(f.column)
			}
			rp.fieldKeys = append(rp.fieldKeys, append(appendString(nil, f.name), ':'))
		}
	}
	if r.Stateful() {
		rp.groupIdx, rp.groupKeys = rp.keyIdx, rp.keyKeys
		for i, idx := range rp.groupIdx {
			if idx >= 0 && t.Columns[idx].Kind == canal.KindBytes {
				if rp.groupBinary == nil {
					rp.groupBinary = make([]bool, len(rp.groupIdx))
				}
				rp.groupBinary[i] = true
			}
		}
	}
	for _, s := range r.sums {
		i := index(s.column)
		rp.sumIdx = append(rp.sumIdx, i)
		if i >= 0 {
			k := t.Columns[i].Kind
			rp.sumKinds = append(rp.sumKinds, k)
			if !k.Numeric() && rp.err == nil {
				rp.err = fmt.Errorf("rule %q: sum.%s: column %s.%s is %s, not a number", r.name, s.name, t.FullName(), s.column, k)
			}
		} else {
			rp.sumKinds = append(rp.sumKinds, canal.KindInt)
		}
	}
	if r.Stateful() && len(r.sums) > 0 && !slices.Contains(rp.sumIdx, -1) {
		rp.sumTypes = planSumTypes(rp.sumKinds)
	}
	rp.topicIdx = templateIndexes(r.topicParts, index)
	rp.keyTemplateIdx = templateIndexes(r.keyParts, index)
	if !r.Stateful() {
		rp.placeIdx = placeColumns(rp)
	}
	if len(missing) > 0 && rp.err == nil {
		rp.err = fmt.Errorf("rule %q: table %s has no column %q (%s)", r.name, t.FullName(), missing[0], columnsHint(missing[0], t.Columns))
	}
	return rp
}

// placeColumns is rp.placeIdx: the columns of the key (the key template's, or the key
// columns) and of the topic template, each once; none that is missing (-1).
func placeColumns(rp *rulePlan) []int {
	var cols []int
	add := func(idx []int) {
		for _, i := range idx {
			if i >= 0 && !slices.Contains(cols, i) {
				cols = append(cols, i)
			}
		}
	}
	if rp.rule.keyParts != nil {
		add(rp.keyTemplateIdx)
	} else {
		add(rp.keyIdx)
	}
	add(rp.topicIdx) // a literal topic's is topicLiteral alone, skipped
	return cols
}

// templateIndexes resolves each part of a topic or key template: topicLiteral,
// topicSchema, topicTable, topicOp, or the column's index (index records a missing one).
func templateIndexes(parts []rulefmt.TemplatePart, index func(string) int) []int {
	var idx []int
	for _, p := range parts {
		switch {
		case !p.Var:
			idx = append(idx, topicLiteral)
		case p.Text == "schema":
			idx = append(idx, topicSchema)
		case p.Text == "table":
			idx = append(idx, topicTable)
		case p.Text == "op":
			idx = append(idx, topicOp)
		default:
			idx = append(idx, index(p.Text))
		}
	}
	return idx
}
