package yamlpos

import "strings"

// Pos is a 1-based line and column.
type Pos struct{ Line, Col int }

// Tabs are the places of every tab in a line's indentation. YAML indents with spaces
// only, and yaml.v3 reports a tab as "found character that cannot start any token", or as
// a tab "that violates indentation" on the line before, naming neither the tab nor its
// line. Ask only when yaml.v3 refused the file: a tab can be legal (inside a block scalar,
// say), and then it is not the problem.
func Tabs(data []byte) []Pos {
	var tabs []Pos
	for i, line := range strings.Split(string(data), "\n") {
		indent := len(line) - len(strings.TrimLeft(line, " \t"))
		rest := strings.TrimSpace(line[indent:])
		if rest == "" || rest[0] == '#' {
			continue // a blank line or a comment: tabs there are not indentation
		}
		if col := strings.IndexByte(line[:indent], '\t'); col >= 0 {
			tabs = append(tabs, Pos{Line: i + 1, Col: col + 1})
		}
	}
	return tabs
}

// TabMsg is what to say at each of Tabs' places.
const TabMsg = "a tab in the indentation: YAML indents with spaces"

// ErrorLine is the line a yaml.v3 error names ("yaml: line 3: …"), at column 1, or the
// zero Pos when it names none.
func ErrorLine(err error) Pos {
	msg := err.Error()
	i := strings.Index(msg, "line ")
	if i < 0 {
		return Pos{}
	}
	n := 0
	for _, c := range msg[i+5:] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	if n == 0 {
		return Pos{}
	}
	return Pos{Line: n, Col: 1}
}
