package rules

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/stocksync/stocksync/canal"
)

// tableGlob is one match.table glob, its database half and its table half matched apart
// (canal.SplitGlob): a database may hold a dot (`st.eu`.*), and "shop.*" must not reach
// into the database shop.eu, as one glob over "schema.table" would.
type tableGlob struct {
	schema, table *regexp.Regexp
	// pattern says either half is a pattern rather than a name (canal.IsPattern).
	pattern bool
}

// parseTableGlob compiles glob g. Its error names what is wrong with it; the glob it
// returns then matches nothing.
func parseTableGlob(g string) (tableGlob, error) {
	schema, table, err := canal.SplitGlob(g)
	if err != nil {
		return tableGlob{}, err
	}
	var tg tableGlob
	if tg.schema, err = halfGlob(schema); err != nil {
		return tableGlob{}, fmt.Errorf("bad glob %q: database part %q (it ends at the first dot; a database name holding a dot is written in backquotes, `st.eu`.*): %w", g, schema, err)
	}
	if tg.table, err = halfGlob(table); err != nil {
		return tableGlob{}, fmt.Errorf("bad glob %q: table part %q: %w", g, table, err)
	}
	tg.pattern = canal.IsPattern(schema) || canal.IsPattern(table)
	return tg, nil
}

// matches reports whether the glob matches table of database schema.
func (g tableGlob) matches(schema, table string) bool {
	return g.schema != nil && g.schema.MatchString(schema) && g.table.MatchString(table)
}

// matchesSchema reports whether the glob's database half matches schema: the rule may
// read tables of that database.
func (g tableGlob) matchesSchema(schema string) bool {
	return g.schema != nil && g.schema.MatchString(schema)
}

// halfGlob compiles p, in path.Match syntax (*, ?, [a-z], [^a-z], \ escapes), to a
// regexp matching a whole name. Unlike path.Match no character is a separator: * and ?
// match a '/' as well, which MySQL allows in a table name.
func halfGlob(p string) (*regexp.Regexp, error) {
	if _, err := path.Match(p, ""); err != nil { // the syntax, as rules.md gives it
		return nil, err
	}
	var b strings.Builder
	b.WriteString(`^(?s:`)
	lit := func(r rune) { fmt.Fprintf(&b, `\x{%x}`, r) }
	next := func() rune {
		r, n := utf8.DecodeRuneInString(p)
		p = p[n:]
		return r
	}
	for p != "" {
		switch r := next(); r {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '\\':
			lit(next())
		case '[':
			b.WriteByte('[')
			if p[0] == '^' {
				b.WriteByte('^')
				next()
			}
			for p[0] != ']' { // path.Match accepted it: the class is closed, never empty
				c := next()
				if c == '\\' {
					c = next()
				}
				lit(c)
				if p[0] == '-' {
					next()
					hi := next()
					if hi == '\\' {
						hi = next()
					}
					b.WriteByte('-')
					lit(hi)
				}
			}
			next()
			b.WriteByte(']')
		default:
			lit(r)
		}
	}
	b.WriteString(`)$`)
	return regexp.Compile(b.String())
}
