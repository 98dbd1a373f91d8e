package rules

import (
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/stocksync/stocksync/canal"
)

// accumulator is one exact running sum: int64 while it fits and only integers were
// added; a scaled big integer once a decimal (or an overflow) arrives; float64 once a
// float column arrives (inexact by nature). Its JSON type follows its column's, not the
// values it met: a DECIMAL column's sum is written as a decimal from its first 0
// (startDecimal), an integer column's as a number at any size.
type accumulator struct {
	kind    accKind
	i       int64
	d       *big.Int // unscaled value when kind is accDecimal
	scale   int
	f       float64
	decimal bool // a DECIMAL column's sum: a string in the typed style, even when whole
}

type accKind uint8

const (
	accInt accKind = iota
	accDecimal
	accFloat
)

var bigTen = big.NewInt(10)

func (a *accumulator) toDecimal() {
	if a.kind == accInt {
		a.d = big.NewInt(a.i)
		a.scale = 0
		a.kind = accDecimal
	}
}

// startDecimal makes a sum that no value has reached yet a DECIMAL column's: 0, written
// as a decimal.
func (a *accumulator) startDecimal() {
	a.toDecimal()
	a.decimal = true
}

func (a *accumulator) toFloat() {
	switch a.kind {
	case accInt:
		a.f = float64(a.i)
	case accDecimal:
		a.f, _ = strconv.ParseFloat(a.decimalString(), 64)
	}
	a.kind = accFloat
}

// add adds sign×v, v being a column value of a numeric kind (nil is skipped, as SQL
// SUM skips NULL). A value that is not a number is ignored.
func (a *accumulator) add(v any, sign int64) {
	switch x := v.(type) {
	case int64:
		a.addInt(x, sign)
	case int:
		a.addInt(int64(x), sign)
	case int32:
		a.addInt(int64(x), sign)
	case uint64:
		if x <= math.MaxInt64 {
			a.addInt(int64(x), sign)
			return
		}
		n := new(big.Int).SetUint64(x)
		a.addBig(n, 0, sign)
	case float64:
		if a.kind != accFloat {
			a.toFloat()
		}
		a.f += float64(sign) * x
	case string:
		if a.kind == accFloat {
			f, err := strconv.ParseFloat(x, 64)
			if err == nil {
				a.f += float64(sign) * f
			}
			return
		}
		if n, scale, ok := parseDecimal(x); ok {
			a.addBig(n, scale, sign)
			a.decimal = true
		}
	}
}

func (a *accumulator) addInt(x, sign int64) {
	switch a.kind {
	case accFloat:
		a.f += float64(sign * x)
		return
	case accInt:
		if sign < 0 {
			if x == math.MinInt64 {
				a.addBig(big.NewInt(x), 0, sign)
				return
			}
			x = -x
		}
		s := a.i + x
		if (x > 0 && s < a.i) || (x < 0 && s > a.i) {
			a.addBig(big.NewInt(x), 0, 1)
			return
		}
		a.i = s
		return
	}
	a.addBig(big.NewInt(x), 0, sign)
}

func (a *accumulator) addBig(n *big.Int, scale int, sign int64) {
	if a.kind == accFloat {
		f, _ := new(big.Float).SetInt(n).Float64()
		a.f += float64(sign) * f / math.Pow10(scale)
		return
	}
	a.toDecimal()
	n = new(big.Int).Set(n)
	for a.scale < scale {
		a.d.Mul(a.d, bigTen)
		a.scale++
	}
	for s := scale; s < a.scale; s++ {
		n.Mul(n, bigTen)
	}
	if sign < 0 {
		a.d.Sub(a.d, n)
	} else {
		a.d.Add(a.d, n)
	}
}

// parseDecimal reads "-12.340" as 12340 scaled by 3.
func parseDecimal(s string) (*big.Int, int, bool) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimLeft(s, "+-")
	intPart, frac, _ := strings.Cut(s, ".")
	n, ok := new(big.Int).SetString(intPart+frac, 10)
	if !ok {
		return nil, 0, false
	}
	if neg {
		n.Neg(n)
	}
	return n, len(frac), true
}

func (a *accumulator) decimalString() string {
	if a.kind == accInt {
		return strconv.FormatInt(a.i, 10)
	}
	s := new(big.Int).Abs(a.d).String()
	if a.scale > 0 {
		for len(s) <= a.scale {
			s = "0" + s
		}
		s = s[:len(s)-a.scale] + "." + s[len(s)-a.scale:]
	}
	if a.d.Sign() < 0 {
		s = "-" + s
	}
	return s
}

// append writes the sum: an integer as a number (past int64 too), a DECIMAL column's as
// a string (bare in the maxwell style), a float as a number; every kind as a string in
// the Canal style.
func (a *accumulator) append(b []byte, style valueStyle) []byte {
	if style == styleStrings {
		b = append(b, '"')
		switch a.kind {
		case accInt:
			b = strconv.AppendInt(b, a.i, 10)
		case accDecimal:
			b = append(b, a.decimalString()...)
		default:
			b = appendFloat(b, a.f)
		}
		return append(b, '"')
	}
	switch a.kind {
	case accInt:
		return strconv.AppendInt(b, a.i, 10)
	case accDecimal:
		if style == styleMaxwell || !a.decimal {
			return append(b, a.decimalString()...)
		}
		return appendString(b, a.decimalString())
	}
	return appendFloat(b, a.f)
}

// appendState writes the sum for the state encoding: an integer as a number without a
// point, a DECIMAL column's as a string, a float as a number always with a point or
// exponent.
func (a *accumulator) appendState(b []byte) []byte {
	if a.kind != accFloat {
		return a.append(b, styleTyped)
	}
	start := len(b)
	b = appendFloat(b, a.f)
	if !strings.ContainsAny(string(b[start:]), ".en") {
		b = append(b, ".0"...)
	}
	return b
}

// exprValue is the sum as an expression sees it: int64, or float64.
func (a *accumulator) exprValue() any {
	switch a.kind {
	case accInt:
		return a.i
	case accDecimal:
		f, _ := strconv.ParseFloat(a.decimalString(), 64)
		return f
	}
	return a.f
}

// startAs makes the sum 0 in the class of a column of kind k, as a new group's starts,
// whatever it held before: a DECIMAL column's a decimal, a float column's a float.
func (a *accumulator) startAs(k canal.ColumnKind) {
	*a = accumulator{}
	switch k {
	case canal.KindDecimal:
		a.startDecimal()
	case canal.KindFloat:
		a.toFloat()
	}
}

// class is the class of type the sum is written in, as sumClass names a column's:
// "float", "decimal" (a DECIMAL column's: a string), or "integer" (a number, past int64
// too).
func (a *accumulator) class() string {
	switch {
	case a.kind == accFloat:
		return "float"
	case a.decimal:
		return "decimal"
	}
	return "integer"
}

// zero makes the sum 0, of the kind and scale it has, as subtracting every value added
// would leave it.
func (a *accumulator) zero() {
	a.i, a.f = 0, 0
	if a.d != nil {
		a.d = new(big.Int)
	}
}

// copyFrom makes a a deep copy of o.
func (a *accumulator) copyFrom(o *accumulator) {
	d := a.d
	*a = *o
	if o.kind == accDecimal {
		if d == nil {
			d = new(big.Int)
		}
		a.d = d.Set(o.d)
	}
}

// restore reads a state value written by appendState.
func (a *accumulator) restore(raw string) bool {
	*a = accumulator{}
	switch {
	case strings.HasPrefix(raw, `"`):
		s, err := strconv.Unquote(raw)
		if err != nil {
			return false
		}
		n, scale, ok := parseDecimal(s)
		if !ok {
			return false
		}
		a.kind, a.d, a.scale, a.decimal = accDecimal, n, scale, true
	case strings.ContainsAny(raw, ".eE"):
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return false
		}
		a.kind, a.f = accFloat, f
	default:
		i, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			n, ok := new(big.Int).SetString(raw, 10)
			if !ok {
				return false
			}
			a.kind, a.d = accDecimal, n
			return true
		}
		a.i = i
	}
	return true
}
