package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/rules"
)

// These tests hold docs/rules.md to what stocksync does: its worked examples are run as
// they are written there.

const guidePath = "../../docs/rules.md"

// guideSection returns the text of the guide's section whose "## " heading starts with
// heading, up to the next "## " heading.
func guideSection(t *testing.T, heading string) string {
	t.Helper()
	data, err := os.ReadFile(guidePath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "\n## "+heading)
	if start < 0 {
		t.Fatalf("the guide has no section %q", heading)
	}
	section := text[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	return section
}

// codeBlocks returns the contents of the section's fenced blocks of language lang ("" for
// blocks without one).
func codeBlocks(section, lang string) []string {
	var blocks []string
	lines := strings.SplitAfter(section, "\n")
	for i := 0; i < len(lines); i++ {
		fence := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(fence, "```") {
			continue
		}
		var b strings.Builder
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			b.WriteString(lines[i])
		}
		if fence == "```"+lang {
			blocks = append(blocks, b.String())
		}
	}
	return blocks
}

var (
	createTableRe = regexp.MustCompile("^CREATE TABLE `?(\\w+)`? \\(")
	alterTableRe  = regexp.MustCompile("^ALTER TABLE `?(\\w+)`?")
	columnRe      = regexp.MustCompile(`^\s+(\w+)\s+(\w+)(\S*)`)
	addColumnRe   = regexp.MustCompile(`^\s+ADD COLUMN (\w+)\s+(\w+)(\S*)`)
)

// shippedTables reads the tables of the inventory schema from its migrations' Up parts
// (CREATE TABLE, and ALTER TABLE … ADD COLUMN), as `rules validate --live` would read
// them from a database migrated with them.
func shippedTables(t *testing.T) []rules.TableInfo {
	t.Helper()
	files, err := filepath.Glob("../../inventory/migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations found: %v", err)
	}
	var tables []rules.TableInfo
	addColumn := func(table, name, typ, rest string) {
		i := slices.IndexFunc(tables, func(tl rules.TableInfo) bool { return tl.Name == table })
		if i < 0 {
			t.Fatalf("a migration adds column %s to table %s, which none creates", name, table)
		}
		tables[i].Columns = append(tables[i].Columns, canal.Column{Name: name, Kind: kindOfSQLType(typ, rest)})
	}
	for _, file := range files { // Glob sorts: the migrations in their order
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		up, _, _ := strings.Cut(string(data), "-- +goose Down")
		var creating, altering string
		for line := range strings.SplitSeq(up, "\n") {
			if m := createTableRe.FindStringSubmatch(line); m != nil {
				tables = append(tables, rules.TableInfo{Schema: "inventory", Name: m[1]})
				creating, altering = m[1], ""
				continue
			}
			if m := alterTableRe.FindStringSubmatch(line); m != nil {
				creating, altering = "", m[1]
				continue
			}
			if altering != "" {
				if m := addColumnRe.FindStringSubmatch(line); m != nil {
					addColumn(altering, m[1], m[2], m[2]+m[3]+line)
				}
				continue
			}
			if creating == "" {
				continue
			}
			if strings.HasPrefix(line, ")") {
				creating = ""
				continue
			}
			m := columnRe.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			switch strings.ToUpper(m[1]) {
			case "PRIMARY", "KEY", "UNIQUE", "CONSTRAINT", "INDEX":
				continue
			}
			addColumn(creating, m[1], m[2], m[2]+m[3]+line)
		}
	}
	if len(tables) < 5 {
		t.Fatalf("read %d tables from the migrations", len(tables))
	}
	if i := slices.IndexFunc(tables, func(tl rules.TableInfo) bool { return tl.Name == "adjustment_log" }); i < 0 ||
		!slices.ContainsFunc(tables[i].Columns, func(c canal.Column) bool { return c.Name == "request_id" }) {
		t.Fatalf("adjustment_log.request_id (migration 00004) was not read: %+v", tables)
	}
	return tables
}

// TestRulesGuideWorkedExamplesFitTheShippedSchema: every worked example's rules pass
// `rules validate --live` against the inventory schema stocksync ships.
func TestRulesGuideWorkedExamplesFitTheShippedSchema(t *testing.T) {
	tables := shippedTables(t)
	for _, heading := range []string{"Worked example 1", "Worked example 2", "Worked example 3"} {
		blocks := codeBlocks(guideSection(t, heading), "yaml")
		if len(blocks) == 0 {
			t.Fatalf("%s: no yaml block", heading)
		}
		set, err := rules.Parse(heading+".yaml", []byte(blocks[0]))
		if err != nil {
			t.Errorf("%s: %v", heading, err)
			continue
		}
		for _, err := range set.CheckTables(tables) {
			t.Errorf("%s: %v", heading, err)
		}
	}
}

// testedMessage is one message `rules test` printed: its topic and value (compact JSON).
type testedMessage struct{ topic, value string }

// testedTransaction is what `rules test` printed for one transaction.
type testedTransaction struct {
	messages []testedMessage
	nothing  bool // "# nothing would be published"
}

// parseRulesTestOutput reads `rules test`'s output back, one entry per "# transaction N".
func parseRulesTestOutput(t *testing.T, out string) []testedTransaction {
	t.Helper()
	var txns []testedTransaction
	lines := strings.Split(out, "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		switch {
		case strings.HasPrefix(line, "# transaction "):
			txns = append(txns, testedTransaction{})
		case len(txns) == 0:
		case line == "# nothing would be published":
			txns[len(txns)-1].nothing = true
		case strings.HasPrefix(line, "--- message "):
			txns[len(txns)-1].messages = append(txns[len(txns)-1].messages, testedMessage{})
		case strings.HasPrefix(line, "topic:"):
			m := &txns[len(txns)-1].messages[len(txns[len(txns)-1].messages)-1]
			m.topic = strings.TrimSpace(strings.TrimPrefix(line, "topic:"))
		case line == "value:":
			var value strings.Builder
			for i+1 < len(lines) && !strings.HasPrefix(lines[i+1], "#") && !strings.HasPrefix(lines[i+1], "---") {
				i++
				value.WriteString(lines[i])
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, []byte(value.String())); err != nil {
				t.Fatalf("value %s: %v", value.String(), err)
			}
			m := &txns[len(txns)-1].messages[len(txns[len(txns)-1].messages)-1]
			m.value = compact.String()
		}
	}
	return txns
}

// shownPart cuts a message the guide shows ({"op":…,"before":…,"after":…,"source":{…},…})
// or `rules test` printed down to its op, before and after.
func shownPart(v string) string {
	for _, cut := range []string{`,"source"`, ",…"} {
		if i := strings.Index(v, cut); i >= 0 {
			return v[:i] + "}"
		}
	}
	return v
}

// guideExample is a worked example's rules, the message it shows, and the events and
// output of the `rules test` run it shows.
type guideExample struct {
	rules, shown string
	txns         []testedTransaction
}

// runGuideExample runs a worked example as the guide shows it: the rules of its yaml
// block saved as rules.yaml, `rules test` given the events file it shows, which must be
// the one under examples/; extraRules is added to the rule (a key the guide mentions).
func runGuideExample(t *testing.T, heading, events, extraRules string) guideExample {
	t.Helper()
	section := guideSection(t, heading)
	var ex guideExample
	ex.rules = codeBlocks(section, "yaml")[0]
	ex.shown = shownPart(strings.TrimSpace(codeBlocks(section, "json")[0]))
	transcript := codeBlocks(section, "")[0]
	catLine := "$ cat examples/" + events + "\n"
	runLine := "$ stocksync rules test rules.yaml --event examples/" + events + "\n"
	start, end := strings.Index(transcript, catLine), strings.Index(transcript, runLine)
	if start < 0 || end < start {
		t.Fatalf("%s: the transcript lacks %q then %q:\n%s", heading, catLine, runLine, transcript)
	}
	shownEvents := transcript[start+len(catLine) : end]
	file, err := os.ReadFile("../../examples/" + events)
	if err != nil {
		t.Fatal(err)
	}
	if shownEvents != string(file) {
		t.Fatalf("%s: the guide's events differ from examples/%s:\n%s", heading, events, shownEvents)
	}
	dir := t.TempDir()
	rulesFile, eventsFile := filepath.Join(dir, "rules.yaml"), filepath.Join(dir, events)
	writeFile(t, rulesFile, ex.rules+extraRules)
	writeFile(t, eventsFile, shownEvents)
	stdout, stderr, err := runRulesCLI(t, "test", rulesFile, "--event", eventsFile)
	if err != nil || stderr != "" {
		t.Fatalf("%s: rules test: %v\n%s", heading, err, stderr)
	}
	ex.txns = parseRulesTestOutput(t, stdout)
	return ex
}

// TestRulesGuideWorkedExamplesRunAsShown: `rules test` run as worked examples 1 and 2
// show it, with their rules and events, prints the messages the guide shows.
func TestRulesGuideWorkedExamplesRunAsShown(t *testing.T) {
	ex := runGuideExample(t, "Worked example 1", "deduct.json", "")
	if len(ex.txns) != 2 || len(ex.txns[0].messages) != 1 || len(ex.txns[1].messages) != 1 {
		t.Fatalf("example 1: %+v", ex.txns)
	}
	if got, want := shownPart(ex.txns[0].messages[0].value), `{"op":"c","before":null,"after":{"sku_id":"A1","sellable":42}}`; got != want {
		t.Errorf("example 1, transaction 1: %s, want %s", got, want)
	}
	if m := ex.txns[1].messages[0]; m.topic != "product.stock" || shownPart(m.value) != ex.shown {
		t.Errorf("example 1, transaction 2: %s %s, want product.stock %s", m.topic, shownPart(m.value), ex.shown)
	}
	// "add format: canal and it receives {"data":[…],…,"type":"UPDATE","old":[…],…}"
	section := guideSection(t, "Worked example 1")
	canalShown := section[strings.Index(section, "it receives `")+len("it receives `"):]
	canalShown = canalShown[:strings.Index(canalShown, "`")]
	canalEx := runGuideExample(t, "Worked example 1", "deduct.json", "    format: canal\n")
	if len(canalEx.txns) != 2 || len(canalEx.txns[1].messages) != 1 {
		t.Fatalf("example 1 in canal: %+v", canalEx.txns)
	}
	for _, piece := range strings.Split(canalShown, "…") {
		if !strings.Contains(canalEx.txns[1].messages[0].value, strings.Trim(piece, ",")) {
			t.Errorf("example 1 in canal: %s lacks %s", canalEx.txns[1].messages[0].value, piece)
		}
	}

	ex = runGuideExample(t, "Worked example 2", "sell-out.json", "")
	if len(ex.txns) != 5 {
		t.Fatalf("example 2: %d transactions", len(ex.txns))
	}
	for i, want := range []string{`"value":true}}`, "", "", ex.shown, `"value":true}}`} {
		txn := ex.txns[i]
		switch {
		case want == "" && (!txn.nothing || len(txn.messages) != 0):
			t.Errorf("example 2, transaction %d: %+v, want nothing published", i+1, txn)
		case want == "":
		case len(txn.messages) != 1 || txn.messages[0].topic != "search.availability":
			t.Errorf("example 2, transaction %d: %+v, want one message on search.availability", i+1, txn)
		case want == ex.shown && shownPart(txn.messages[0].value) != want:
			t.Errorf("example 2, transaction %d: %s, want %s", i+1, shownPart(txn.messages[0].value), want)
		case !strings.HasSuffix(shownPart(txn.messages[0].value), want):
			t.Errorf("example 2, transaction %d: %s, want …%s", i+1, shownPart(txn.messages[0].value), want)
		}
	}
}

// TestRulesGuideAndExamplesFitTheSchema: every rules file the guide shows (its yaml blocks
// holding a rules list) and examples/rules.yaml load, and docs/rules.schema.json, which
// editors check rules files with, finds nothing wrong in them.
func TestRulesGuideAndExamplesFitTheSchema(t *testing.T) {
	schema := testutil.RulesSchema(t)
	guide, err := os.ReadFile(guidePath)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for i, block := range codeBlocks(string(guide), "yaml") {
		if strings.HasPrefix(block, "rules:") {
			files[fmt.Sprintf("rules.md yaml block %d", i+1)] = block
		}
	}
	if len(files) < 4 { // "A rule" and the three worked examples
		t.Fatalf("found %d rules files in the guide", len(files))
	}
	example, err := os.ReadFile("../../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files["examples/rules.yaml"] = string(example)
	for name, src := range files {
		if _, err := rules.Parse(name, []byte(src)); err != nil {
			t.Errorf("%s does not load:\n%v", name, err)
		}
		var v any
		if err := yaml.Unmarshal([]byte(src), &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := schema.Validate(v); err != nil {
			t.Errorf("%s: the schema refuses it: %v", name, err)
		}
	}
}

// guideOtherTables are the tables the guide's rules read beside the inventory schema's,
// with the columns its examples name.
var guideOtherTables = []rules.TableInfo{
	{Schema: "shop", Name: "stock_1", Columns: []canal.Column{{Name: "sku_id", Kind: canal.KindString}, {Name: "qty", Kind: canal.KindInt}}},
}

// sampleValue is a JSON value of kind k for `rules test`; changed gives another one, as
// an update writes.
func sampleValue(k canal.ColumnKind, changed bool) any {
	n := 5
	if changed {
		n = 4
	}
	switch k {
	case canal.KindInt, canal.KindUint, canal.KindFloat, canal.KindBit:
		return n
	case canal.KindYear:
		return 2020 + n
	case canal.KindDecimal:
		return fmt.Sprintf("%d.00", n)
	case canal.KindDate:
		return fmt.Sprintf("2026-01-0%d", n)
	case canal.KindDateTime:
		return fmt.Sprintf("2026-01-0%d 10:00:00", n)
	case canal.KindTime:
		return fmt.Sprintf("10:00:0%d", n)
	case canal.KindJSON:
		return map[string]int{"n": n}
	case canal.KindBytes:
		return "QUJD"
	}
	return fmt.Sprint("A", n)
}

// TestRulesGuideExamplesRunCleanlyOverEveryOp: every rules file the guide shows (its yaml
// blocks holding a rules list) and examples/rules.yaml run under `rules test` over a read,
// an insert, an update and a delete of each table they match (the inventory schema's
// tables, and guideOtherTables), every column of a row given, without one failure at run
// time: an example whose condition breaks at an insert or a delete (after.qty <
// before.qty) is not one to copy.
func TestRulesGuideExamplesRunCleanlyOverEveryOp(t *testing.T) {
	guide, err := os.ReadFile(guidePath)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for i, block := range codeBlocks(string(guide), "yaml") {
		if strings.HasPrefix(block, "rules:") {
			files[fmt.Sprintf("rules.md yaml block %d", i+1)] = block
		}
	}
	example, err := os.ReadFile("../../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files["examples/rules.yaml"] = string(example)
	tables := append(shippedTables(t), guideOtherTables...)
	dir := t.TempDir()
	for _, name := range slices.Sorted(maps.Keys(files)) {
		set, err := rules.Parse(name, []byte(files[name]))
		if err != nil {
			t.Errorf("%s does not load: %v", name, err)
			continue
		}
		var txns [][]map[string]any
		for _, r := range set.Rules() {
			matched := 0
			for _, tbl := range tables {
				if !r.MatchesTable(tbl.Schema, tbl.Name) {
					continue
				}
				matched++
				var columns []map[string]string
				row := func(id int, changed bool) map[string]any {
					img := map[string]any{}
					for _, c := range tbl.Columns {
						img[c.Name] = sampleValue(c.Kind, changed)
					}
					img[tbl.Columns[0].Name] = fmt.Sprint("row-", id) // the rows apart (sku_id, id…)
					if tbl.Columns[0].Kind.Numeric() {
						img[tbl.Columns[0].Name] = id
					}
					return img
				}
				for _, c := range tbl.Columns {
					columns = append(columns, map[string]string{"name": c.Name, "kind": c.Kind.String()})
				}
				change := func(op string, before, after map[string]any) map[string]any {
					c := map[string]any{"schema": tbl.Schema, "table": tbl.Name, "op": op, "columns": columns}
					if before != nil {
						c["before"] = before
					}
					if after != nil {
						c["after"] = after
					}
					return c
				}
				txns = append(txns,
					[]map[string]any{change("read", nil, row(1, false))},
					[]map[string]any{change("insert", nil, row(2, false))},
					[]map[string]any{change("update", row(1, false), row(1, true))},
					[]map[string]any{change("delete", row(2, false), nil)})
			}
			if matched == 0 {
				t.Fatalf("%s: rule %s matches none of the tables this test knows: add its table to guideOtherTables", name, r.Name())
			}
		}
		events, err := json.Marshal(txns)
		if err != nil {
			t.Fatal(err)
		}
		rulesFile, eventsFile := filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "events.json")
		writeFile(t, rulesFile, files[name])
		writeFile(t, eventsFile, string(events))
		if _, stderr, err := runRulesCLI(t, "test", rulesFile, "--event", eventsFile); err != nil || stderr != "" {
			t.Errorf("%s over a read, an insert, an update and a delete of each table it matches: %v\n%s", name, err, stderr)
		}
	}
}
