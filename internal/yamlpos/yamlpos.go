package yamlpos

import (
	"strings"

	"gopkg.in/yaml.v3"
)

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

// ErrorLine is where the syntax error err of data is, at column 1, or the zero Pos when
// it cannot be placed. yaml.v3 names a line ("yaml: line 3: …"), but for some mistakes the
// line where the enclosing block starts, and counted from 0: a list item indented one
// space too far at line 15 is "line 1: did not find expected '-' indicator". So the first
// line at which the file's beginning stops parsing is taken when it is later.
func ErrorLine(data []byte, err error) Pos {
	line := namedLine(err)
	lines := strings.SplitAfter(string(data), "\n")
	for n := 1; n <= len(lines); n++ {
		var doc yaml.Node
		if yaml.Unmarshal([]byte(strings.Join(lines[:n], "")), &doc) != nil {
			line = max(line, n)
			break
		}
	}
	if line == 0 {
		return Pos{}
	}
	return Pos{Line: line, Col: 1}
}

// namedLine is the line a yaml.v3 error names ("yaml: line 3: …"), 0 when none.
func namedLine(err error) int {
	msg := err.Error()
	i := strings.Index(msg, "line ")
	if i < 0 {
		return 0
	}
	n := 0
	for _, c := range msg[i+5:] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// ErrorText is err's words without "yaml: " and the line it names, which ErrorLine places
// (and may place elsewhere).
func ErrorText(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if _, after, ok := strings.Cut(rest, ": "); ok && namedLine(err) > 0 {
			return after
		}
	}
	return msg
}
