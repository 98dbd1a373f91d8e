package rules

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"
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

// appendAny appends a value computed by an expression (not a column value) as JSON:
// what expr's functions give as such (split's []string, keys' and map's []any, a map
// literal) as JSON arrays and objects, a time (date, now) as RFC 3339 in UTC and a
// duration (now() - date(…)) as a TIME column's text, the forms topics.md gives columns
// of those types, so that a consumer reads a computed field as it reads a copied one.
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
	case []string:
		return appendNames(b, x)
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
	case time.Time:
		return appendString(b, x.UTC().Format(time.RFC3339Nano))
	case time.Duration:
		return appendString(b, durationText(x))
	}
	return appendReflected(b, reflect.ValueOf(v))
}

// appendReflected appends a value of a type appendAny does not name (expr's functions
// give a few: groupBy's map[any][]any, fromPairs' map[any]any, a range's []int, toPairs'
// [][]any) as JSON, by its kind: numbers, booleans and strings as such, lists as arrays,
// maps as objects with their keys as text, in key order (as appendAny writes []any and
// map[string]any). What has none of these kinds is
// its json.Marshal form, or, failing that, its default text as a string.
func appendReflected(b []byte, rv reflect.Value) []byte {
	switch rv.Kind() {
	case reflect.Invalid:
		return append(b, "null"...)
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return append(b, "null"...)
		}
		if rv.Kind() == reflect.Interface {
			return appendAny(b, rv.Elem().Interface())
		}
	case reflect.Bool:
		return strconv.AppendBool(b, rv.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.AppendInt(b, rv.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.AppendUint(b, rv.Uint(), 10)
	case reflect.Float32, reflect.Float64:
		return appendFloat(b, rv.Float())
	case reflect.String:
		return appendString(b, rv.String())
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return append(b, "null"...)
		}
		list := make([]any, rv.Len())
		for i := range list {
			list[i] = rv.Index(i).Interface()
		}
		return appendAny(b, list)
	case reflect.Map:
		if rv.IsNil() {
			return append(b, "null"...)
		}
		object := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			object[keyText(it.Key())] = it.Value().Interface()
		}
		return appendAny(b, object)
	}
	v := rv.Interface()
	if s, ok := v.(fmt.Stringer); ok { // timezone()'s *time.Location: its name
		return appendString(b, s.String())
	}
	if j, err := json.Marshal(v); err == nil {
		return append(b, j...)
	}
	return appendString(b, fmt.Sprint(v))
}

// keyText is a map key as a JSON object key: a string as it is, anything else as
// appendAny writes it, unquoted (groupBy's keys 1 and "1" both give "1").
func keyText(k reflect.Value) string {
	if k.Kind() == reflect.String {
		return k.String()
	}
	text := appendAny(nil, k.Interface())
	var s string
	if json.Unmarshal(text, &s) == nil {
		return s
	}
	return string(text)
}

// durationText writes d as the server writes a TIME value: hours (two digits at least,
// past 24 too), minutes and seconds, and the fraction of a second only when it is not
// zero, without trailing zeros: "-01:30:00", "100:00:00.5".
func durationText(d time.Duration) string {
	var b []byte
	u := uint64(d)
	if d < 0 {
		b = append(b, '-')
		u = -u
	}
	secs, frac := u/uint64(time.Second), u%uint64(time.Second)
	h, m, s := secs/3600, secs/60%60, secs%60
	if h < 10 {
		b = append(b, '0')
	}
	b = strconv.AppendUint(b, h, 10)
	b = append(b, ':', byte('0'+m/10), byte('0'+m%10), ':', byte('0'+s/10), byte('0'+s%10))
	if frac != 0 {
		f := strconv.AppendUint(nil, frac+uint64(time.Second), 10)[1:] // nine digits, leading zeros kept
		b = append(append(b, '.'), bytes.TrimRight(f, "0")...)
	}
	return string(b)
}

// appendAnyString appends an expression's value as Canal writes values: a JSON string,
// or null. A value appendAny writes as a string (a time, a duration) is that string;
// anything else is the JSON text appendAny writes, as a string, as a JSON column's value
// is: ["A","1"] gives "[\"A\",\"1\"]".
func appendAnyString(b []byte, v any) []byte {
	if s, ok := v.(string); ok {
		return appendString(b, s)
	}
	return appendJSONIn(b, appendAny(nil, v), styleStrings)
}
