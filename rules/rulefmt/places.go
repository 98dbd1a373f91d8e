package rulefmt

import (
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// A compiler reports a problem in an expression by its offset in the scalar's value; the
// rule writer needs the place in the file. The two differ by the quotes, the escapes of a
// double-quoted scalar, the indentation of a block scalar and the folding of line breaks
// into spaces. PosOf finds the place by walking the scalar's source beside its value:
// every character that is not white space in the value is the next such character of the
// source (an escape decoded), so it is placed exactly; white space that YAML dropped or
// folded is stepped over. When the walk fails the place is not known.

// scalarSource is where a scalar was written.
type scalarSource struct {
	lines [][]rune // the file's lines, shared by every scalar of the file
	node  Pos      // the node's place: its first character, quote or block indicator
	style yaml.Style
	// decorated: an anchor or tag comes first, and the node's place is theirs.
	decorated bool
}

// PosOf returns where the rune at offset (counted in runes) of the value was written, and
// true; or the scalar's own place and false when that cannot be told (the scalar carries
// an anchor or a tag, or was not written). An offset at the value's end is the place just
// after its last rune.
func (s String) PosOf(offset int) (Pos, bool) {
	if s.src == nil || s.src.decorated || offset < 0 {
		return s.Pos, false
	}
	places, ok := s.src.places(s.Value)
	if !ok || len(places) == 0 {
		return s.Pos, false
	}
	if offset < len(places) {
		return places[offset], true
	}
	if offset == len(places) {
		last := places[len(places)-1]
		return Pos{Line: last.Line, Col: last.Col + 1}, true
	}
	return s.Pos, false
}

// places returns the place of each rune of value, or false when the source does not
// read as value.
func (sc *scalarSource) places(value string) ([]Pos, bool) {
	c := cursor{lines: sc.lines, line: sc.node.Line - 1, col: sc.node.Col - 1}
	switch {
	case sc.style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		c.line, c.col = sc.node.Line, 0 // the text starts on the line after the indicator
	case sc.style&yaml.DoubleQuotedStyle != 0:
		c.col++
		c.escapes = true
	case sc.style&yaml.SingleQuotedStyle != 0:
		c.col++
		c.quotes = true
	}
	places := make([]Pos, 0, len(value))
	for _, want := range value {
		for {
			u, ok := c.unit()
			if !ok {
				return nil, false
			}
			switch {
			case u.skip:
				c.advance(u.width)
				continue
			case u.r == want:
			case isSpace(u.r) && isSpace(want):
				// white space folded into other white space (a line break into a space)
			case isSpace(u.r):
				c.advance(u.width) // white space YAML dropped: indentation, folding
				continue
			default:
				return nil, false
			}
			places = append(places, u.at)
			c.advance(u.width)
			break
		}
	}
	return places, true
}

func isSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }

// cursor reads a scalar's source, a line break reading as '\n'.
type cursor struct {
	lines     [][]rune
	line, col int
	escapes   bool // double-quoted: backslash escapes
	quotes    bool // single-quoted: '' is '
}

// unit is one character of the value as the source writes it: r, written at at with
// width source runes; skip is an escaped line break, which gives no character.
type unit struct {
	r     rune
	at    Pos
	width int
	skip  bool
}

func (c *cursor) unit() (unit, bool) {
	if c.line >= len(c.lines) {
		return unit{}, false
	}
	line := c.lines[c.line]
	at := Pos{Line: c.line + 1, Col: c.col + 1}
	if c.col >= len(line) {
		return unit{r: '\n', at: at, width: 1}, true
	}
	r := line[c.col]
	switch {
	case c.quotes && r == '\'' && c.col+1 < len(line) && line[c.col+1] == '\'':
		return unit{r: '\'', at: at, width: 2}, true
	case c.escapes && r == '\\':
		if c.col+1 >= len(line) {
			return unit{at: at, width: 2, skip: true}, true // an escaped line break
		}
		r, width, ok := unescape(line[c.col+1:])
		if !ok {
			return unit{}, false
		}
		return unit{r: r, at: at, width: 1 + width}, true
	}
	return unit{r: r, at: at, width: 1}, true
}

// advance steps over n source runes, a line break counting as one.
func (c *cursor) advance(n int) {
	for ; n > 0; n-- {
		if c.col >= len(c.lines[c.line]) {
			c.line, c.col = c.line+1, 0
			if c.line >= len(c.lines) {
				return
			}
			continue
		}
		c.col++
	}
}

// unescape decodes the escape after a backslash in a double-quoted scalar: the rune and
// how many runes the escape has after the backslash.
func unescape(s []rune) (rune, int, bool) {
	if r, ok := simpleEscapes[s[0]]; ok {
		return r, 1, true
	}
	digits := hexEscapes[s[0]]
	if digits == 0 || len(s) < 1+digits {
		return 0, 0, false
	}
	n, err := strconv.ParseUint(string(s[1:1+digits]), 16, 32)
	if err != nil {
		return 0, 0, false
	}
	return rune(n), 1 + digits, true
}

// The escapes of YAML 1.2's double-quoted scalars.
var (
	simpleEscapes = map[rune]rune{'0': 0, 'a': '\a', 'b': '\b', 't': '\t', '\t': '\t', 'n': '\n', 'v': '\v', 'f': '\f',
		'r': '\r', 'e': 0x1b, ' ': ' ', '"': '"', '/': '/', '\\': '\\', 'N': 0x85, '_': 0xa0, 'L': 0x2028, 'P': 0x2029}
	hexEscapes = map[rune]int{'x': 2, 'u': 4, 'U': 8}
)

// splitLines splits a file into lines of runes, without their line breaks.
func splitLines(data []byte) [][]rune {
	text := strings.Split(string(data), "\n")
	lines := make([][]rune, len(text))
	for i, l := range text {
		lines[i] = []rune(strings.TrimSuffix(l, "\r"))
	}
	return lines
}
