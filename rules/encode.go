package rules

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/stocksync/stocksync/canal"
)

// This file holds the hand-written JSON encoding used on the hot path: appends to a
// []byte, no reflection, no maps.

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as encoding/json
// does; <, > and & are not escaped (the messages are not embedded in HTML).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendFloat appends f as encoding/json would; NaN and infinities, which JSON cannot
// hold, become null.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	return strconv.AppendFloat(b, f, format, -1, 64)
}

// valueStyle says how values are written in one envelope format.
type valueStyle uint8

const (
	// styleTyped: numbers as numbers, decimals as strings, JSON embedded, bytes base64.
	styleTyped valueStyle = iota
	// styleMaxwell: as styleTyped, but decimals as bare JSON numbers (Maxwell does).
	styleMaxwell
	// styleStrings: every non-null value as a JSON string (Canal's flat message).
	styleStrings
)

// appendValue appends one column value in the given style. Values of an unexpected Go
// type are written as JSON strings of their default formatting, never dropped.
func appendValue(b []byte, kind canal.ColumnKind, v any, style valueStyle) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	if style == styleStrings {
		switch x := v.(type) {
		case string:
			return appendString(b, x)
		case []byte:
			if kind == canal.KindBytes {
				b = append(b, '"')
				b = base64.StdEncoding.AppendEncode(b, x)
				return append(b, '"')
			}
			return appendString(b, string(x))
		}
		b = append(b, '"')
		b = appendValue(b, kind, v, styleTyped)
		return append(b, '"')
	}
	switch x := v.(type) {
	case int64:
		return strconv.AppendInt(b, x, 10)
	case uint64:
		return strconv.AppendUint(b, x, 10)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case int32:
		return strconv.AppendInt(b, int64(x), 10)
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10)
	case float64:
		return appendFloat(b, x)
	case float32:
		return appendFloat(b, float64(x))
	case bool:
		return strconv.AppendBool(b, x)
	case string:
		if kind == canal.KindDecimal && style == styleMaxwell && x != "" {
			return append(b, x...)
		}
		return appendString(b, x)
	case []byte:
		switch kind {
		case canal.KindJSON:
			if len(x) == 0 {
				return append(b, "null"...)
			}
			if !json.Valid(x) {
				// MariaDB's JSON is a LONGTEXT with a json_valid check, which
				// check_constraint_checks=0 skips and which a row written before an ALTER
				// to JSON never passed: such text is written as a string, never spliced
				// into the message.
				return appendString(b, string(x))
			}
			return append(b, x...)
		case canal.KindBytes:
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, x)
			return append(b, '"')
		}
		return appendString(b, string(x))
	}
	return appendAny(b, v)
}

// appendAny appends a value computed by an expression (not a column value).
func appendAny(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, x)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case int32:
		return strconv.AppendInt(b, int64(x), 10)
	case uint64:
		return strconv.AppendUint(b, x, 10)
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10)
	case float64:
		return appendFloat(b, x)
	case float32:
		return appendFloat(b, float64(x))
	case string:
		return appendString(b, x)
	case []byte:
		return appendString(b, string(x))
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendAny(b, e)
		}
		return append(b, ']')
	case map[string]any:
		keys := sortedKeys(x)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendAny(b, x[k])
		}
		return append(b, '}')
	}
	return appendString(b, fmtAny(v))
}

// appendAnyString appends an expression's value as Canal writes values: a JSON string,
// or null.
func appendAnyString(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendString(b, x)
	}
	return appendString(b, string(appendAny(nil, v)))
}
