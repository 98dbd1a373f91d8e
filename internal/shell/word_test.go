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

func TestLineQuotesEachWord(t *testing.T) {
	if got, want := Line("stocksync", "resync", "product-stock", "it's"), `stocksync resync product-stock 'it'\''s'`; got != want {
		t.Errorf("Line = %s, want %s", got, want)
	}
}
