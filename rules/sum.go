package rules

import (
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/stocksync/stocksync/canal"
)

// accumulator is one exact running sum: int64 while it fits and only integers were
// added; a scaled big integer once a decimal (or an overflow) arrives; an exact binary
// float once a float column's value arrives. Its JSON type follows its column's, not the
// values it met: a DECIMAL column's sum is written as a decimal from its first 0
// (startDecimal), an integer column's as a number at any size, a float column's as a
// float64 number.
type accumulator struct {
	kind    accKind
	i       int64
	d       *big.Int // unscaled value when kind is accDecimal
	scale   int
	f       *floatSum // the exact sum when kind is accFloat
	decimal bool      // a DECIMAL column's sum: a string in the typed style, even when whole
}

// floatSum is a float column's sum, exact (floatSumPrec).
type floatSum struct {
	exact big.Float
	// adding holds the value being added, its mantissa's words kept from one row to the next.
	adding big.Float
	// rounded is exact rounded to float64, and roundedExact whether that is exact, when
	// roundedOK: a message and its state write a sum two or three times, and rounding
	// allocates.
	rounded                 float64
	roundedExact, roundedOK bool
}

// floatSumPrec is the mantissa precision, in bits, of a float sum: enough for the sum of
// up to 2^64 float64 values to be exact, as every float64 is a whole multiple of 2^-1074
// below 2^1024. A float64 sum would drift instead: 0.1 + 0.2 − 0.1 − 0.2 is 2.8e-17, not
// 0, so a group whose rows are all back at 0 would keep a sum above 0 for ever, and its
// transition `sellable > 0` true. The sum is rounded to float64 only where it is written
// or an expression sees it: it is the exact sum of the group's values, rounded once.
// Adding a float64 costs one big.Float addition over the few words the values span.
const floatSumPrec = 1024 + 1074 + 64

// newFloatSum is a float sum of 0.
func newFloatSum() *floatSum {
	f := &floatSum{rounded: 0, roundedExact: true, roundedOK: true}
	f.exact.SetPrec(floatSumPrec)
	return f
}

// addFloat adds sign×x to the float sum, exactly. MySQL stores no NaN or infinity in a
// FLOAT or DOUBLE column, and big.Float holds none: such a value is left out.
func (a *accumulator) addFloat(x float64, sign int64) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return
	}
	a.f.adding.SetFloat64(x) // exact: its precision becomes 53 bits
	a.f.add(sign)
}

// add adds sign×f.adding to the sum.
func (f *floatSum) add(sign int64) {
	if sign < 0 {
		f.exact.Sub(&f.exact, &f.adding)
	} else {
		f.exact.Add(&f.exact, &f.adding)
	}
	f.roundedOK = false
}

// float64 is the float sum rounded to the nearest float64 (±Inf past its range).
func (a *accumulator) float64() float64 {
	f := a.f
	if !f.roundedOK {
		var acc big.Accuracy
		f.rounded, acc = f.exact.Float64()
		f.roundedExact, f.roundedOK = acc == big.Exact, true
	}
	return f.rounded
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
	if a.kind == accFloat {
		return
	}
	f := newFloatSum()
	switch a.kind {
	case accInt:
		f.adding.SetInt64(a.i)
	case accDecimal: // a float value into a decimal sum: the classes met are mixed
		d, _ := strconv.ParseFloat(a.decimalString(), 64)
		f.adding.SetFloat64(d)
	}
	f.add(1)
	a.f, a.kind = f, accFloat
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
		a.toFloat()
		a.addFloat(x, sign)
	case string:
		if a.kind == accFloat {
			f, err := strconv.ParseFloat(x, 64)
			if err == nil {
				a.addFloat(f, sign)
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
		a.f.adding.SetInt64(x) // exact: 64 bits
		a.f.add(sign)
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
	if a.kind == accFloat { // a decimal or a uint64 past 2^63 into a float sum
		f, _ := new(big.Float).SetInt(n).Float64()
		a.addFloat(f/math.Pow10(scale), sign)
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
			b = appendFloat(b, a.float64())
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
	return appendFloat(b, a.float64())
}

// appendState writes the sum for the state encoding: an integer as a number without a
// point, a DECIMAL column's as a string, a float as a number always with a point: its
// exact value, every decimal digit of it (a sum of float64 values is a binary fraction,
// whose decimal expansion ends), so that a restored sum goes on exactly.
func (a *accumulator) appendState(b []byte) []byte {
	if a.kind != accFloat {
		return a.append(b, styleTyped)
	}
	if r := a.float64(); a.f.roundedExact && math.Abs(r) < 1<<53 {
		// A float64 below 2^53 (most sums): its shortest decimal, which costs far less to
		// write, and which restoreFloatSum reads back as that float64: either it is no
		// binary fraction, or it is one only as the float64's exact value (an integer,
		// exact below 2^53, or a short binary fraction). From 2^53 on, a float64's
		// shortest decimal may be another integer (1e23 for 99999999999999991611392),
		// which would be read back as itself: those are written exactly, below.
		start := len(b)
		b = appendFloat(b, r)
		if !strings.ContainsAny(string(b[start:]), ".e") {
			b = append(b, ".0"...)
		}
		return b
	}
	x := &a.f.exact
	frac := max(int(x.MinPrec())-x.MantExp(nil), 1) // the binary digits after the point: as many decimal ones
	return x.Append(b, 'f', frac)
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
	return a.float64()
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
	a.i = 0
	if a.d != nil {
		a.d = new(big.Int)
	}
	if a.f != nil {
		a.f.exact.SetInt64(0) // accumulators are copied deep (copyFrom): none shares it
		a.f.rounded, a.f.roundedExact, a.f.roundedOK = 0, true, true
	}
}

// copyFrom makes a a deep copy of o, reusing a's big numbers.
func (a *accumulator) copyFrom(o *accumulator) {
	d, f := a.d, a.f
	*a = *o
	if o.kind == accDecimal {
		if d == nil {
			d = new(big.Int)
		}
		a.d = d.Set(o.d)
	}
	if o.kind == accFloat {
		if f == nil {
			f = newFloatSum()
		}
		f.exact.Set(&o.f.exact)
		f.rounded, f.roundedExact, f.roundedOK = o.f.rounded, o.f.roundedExact, o.f.roundedOK
		a.f = f
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
		f, ok := restoreFloatSum(raw)
		if !ok {
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

// restoreFloatSum reads a float sum's state: the exact binary fraction appendState
// writes, or, saved before float sums were exact, a float64 as its shortest decimal
// (0.30000000000000004), which is taken as that float64. The two are told apart by the
// value: a decimal that is no binary fraction (its reduced denominator not a power of
// 2) cannot be an exact sum; one that is, is exactly that float64 if it was one.
func restoreFloatSum(raw string) (*floatSum, bool) {
	r, ok := new(big.Rat).SetString(raw)
	if !ok {
		return nil, false
	}
	f := newFloatSum()
	f.roundedOK = false
	if den := r.Denom(); den.BitLen()-1 == int(den.TrailingZeroBits()) { // a power of 2
		if f.exact.SetRat(r).Acc() == big.Exact {
			return f, true
		}
	}
	x, err := strconv.ParseFloat(raw, 64)
	if err != nil || math.IsInf(x, 0) {
		return nil, false
	}
	f.exact.SetFloat64(x)
	return f, true
}
