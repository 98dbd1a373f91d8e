package shell

import "testing"

func TestWordQuotesOnlyWhatTheShellWouldSplitOrExpand(t *testing.T) {
	for in, want := range map[string]string{
		"product-stock":   "product-stock",
		"a/b:c.d@e+f=g,h": "a/b:c.d@e+f=g,h",
		"":                "''",
		"two words":       "'two words'",
		"it's":            `'it'\''s'`,
		"$HOME":           "'$HOME'",
	} {
		if got := Word(in); got != want {
			t.Errorf("Word(%q) = %s, want %s", in, got, want)
		}
	}
}
