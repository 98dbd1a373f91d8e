package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stocksync/stocksync/canal"
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
		if strings.TrimSpace(lines[i]) != "```"+lang {
			continue
		}
		var b strings.Builder
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			b.WriteString(lines[i])
		}
		blocks = append(blocks, b.String())
	}
	return blocks
}

var (
	createTableRe = regexp.MustCompile("^CREATE TABLE `?(\\w+)`? \\(")
	columnRe      = regexp.MustCompile(`^\s+(\w+)\s+(\w+)(\S*)`)
)

// shippedTables reads the tables of the inventory schema from its migrations, as
// `rules validate --live` would read them from a database migrated with them.
func shippedTables(t *testing.T) []rules.TableInfo {
	t.Helper()
	data, err := os.ReadFile("../../inventory/migrations/00001_stock_schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	var tables []rules.TableInfo
	in := false
	for line := range strings.SplitSeq(string(data), "\n") {
		if m := createTableRe.FindStringSubmatch(line); m != nil {
			tables = append(tables, rules.TableInfo{Schema: "inventory", Name: m[1]})
			in = true
			continue
		}
		if !in {
			continue
		}
		if strings.HasPrefix(line, ")") {
			in = false
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
		tl := &tables[len(tables)-1]
		tl.Columns = append(tl.Columns, canal.Column{Name: m[1], Kind: kindOfSQLType(m[2], m[2]+m[3]+line)})
	}
	if len(tables) < 5 {
		t.Fatalf("read %d tables from the migrations", len(tables))
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
