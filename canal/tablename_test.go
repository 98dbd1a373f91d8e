package canal_test

import (
	"strings"
	"testing"

	"github.com/stocksync/stocksync/canal"
)

// TestTableNameReadsBackWhatItWrites: a database or table name with a dot or a backquote
// is written so that ParseTableName gives the same two names back, and names without
// them as they were always written (so that saved progress still names its tables).
func TestTableNameReadsBackWhatItWrites(t *testing.T) {
	for _, c := range []struct {
		name canal.TableName
		text string
	}{
		{canal.TableName{Schema: "shop", Name: "stock"}, "shop.stock"},
		{canal.TableName{Schema: "st.eu", Name: "stock"}, "`st.eu`.stock"},
		{canal.TableName{Schema: "st", Name: "eu.stock"}, "st.eu.stock"},
		{canal.TableName{Schema: "a`b", Name: "c`d"}, "`a``b`.`c``d`"},
		{canal.TableName{Schema: "s/x", Name: "t/y"}, "s/x.t/y"},
	} {
		if got := c.name.String(); got != c.text {
			t.Errorf("%#v written %q, want %q", c.name, got, c.text)
		}
		if back, err := canal.ParseTableName(c.text); err != nil || back != c.name {
			t.Errorf("%q read back as %#v, %v; want %#v", c.text, back, err, c.name)
		}
	}
	for text, want := range map[string]string{
		"shop":         "must be schema.table",
		"`st.eu":       "not closed",
		"`st.eu`stock": "a dot must follow",
		"shop.`stock":  "must end the name",
		"shop.":        "neither empty",
	} {
		if _, err := canal.ParseTableName(text); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want an error saying %q", text, err, want)
		}
	}
}

// TestSplitGlobKeepsABackquotedNameLiteral: a half in backquotes is a name, its pattern
// characters escaped; a half without them is the pattern written.
func TestSplitGlobKeepsABackquotedNameLiteral(t *testing.T) {
	schema, table, err := canal.SplitGlob("`st.e*`.stock_*")
	if err != nil || schema != `st.e\*` || table != "stock_*" {
		t.Errorf("split into %q, %q, %v; want %q, %q", schema, table, err, `st.e\*`, "stock_*")
	}
}
