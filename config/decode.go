package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

var durationType = reflect.TypeOf(time.Duration(0))

// checkValue is the decode hook that turns what the file or the environment wrote into
// the key's type, or says what the key wants instead. It runs before mapstructure's own
// weak conversions, which would turn 1.5 into 1, -1 into 4294967295, 3 into true, or a
// text key's 1.50 into "1.5".
func checkValue(from, to reflect.Value) (any, error) {
	value := from.Interface()
	if from.Type() == to.Type() {
		return value, nil // a default, or a value already of the key's type
	}
	switch {
	case to.Type() == durationType:
		return parseDuration(from)
	case isInt(to.Kind()) || isUint(to.Kind()):
		return wholeNumber(from, to.Type())
	case to.Kind() == reflect.Bool:
		if s, ok := value.(string); ok {
			if b, err := strconv.ParseBool(s); err == nil {
				return b, nil
			}
		}
		return nil, errors.New(show(value) + " is not true or false")
	case to.Kind() == reflect.String && (from.Kind() == reflect.Map || from.Kind() == reflect.Slice):
		return nil, errors.New(show(value) + " is not a single value")
	case to.Kind() == reflect.Slice && from.Kind() == reflect.Map:
		return nil, errors.New(show(value) + " is not a list such as [a, b]")
	case to.Kind() == reflect.String && from.Kind() != reflect.String:
		// The file's number-like text reaches a text key as text (asText), and a
		// variable is text. A number here has lost how it was written: turned back into
		// text (1.5 for 1.50, 5349 for 012345) it would be a password nobody wrote.
		return nil, errors.New(show(value) + " is not text: write it in quotes so that it is taken as written")
	}
	return value, nil
}

// parseDuration reads a duration written as Go writes one: a number and its unit. A
// number alone is refused, whether YAML's or text: Go would read it as nanoseconds, and
// nobody means `hold_ttl: 15` as 15ns.
func parseDuration(from reflect.Value) (time.Duration, error) {
	text := fmt.Sprint(from.Interface())
	if k := from.Kind(); isInt(k) || isUint(k) || k == reflect.Float32 || k == reflect.Float64 ||
		k == reflect.String && bareNumber.MatchString(text) {
		return 0, errors.New(fmt.Sprintf("%s has no unit; write it with one, e.g. %[1]ss or %[1]sm", text))
	}
	d, err := time.ParseDuration(text)
	if from.Kind() != reflect.String || err != nil {
		return 0, errors.New(show(from.Interface()) + " is not a duration such as 1s, 500ms or 2m")
	}
	return d, nil
}

// bareNumber is a number as time.ParseDuration reads one, without its unit.
var bareNumber = regexp.MustCompile(`^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)$`)

// wholeNumber reads from as an integer of type t (an int or uint kind): a whole number
// written as one, as YAML's float of one, or as text.
func wholeNumber(from reflect.Value, t reflect.Type) (any, error) {
	var text string
	switch k := from.Kind(); {
	case isInt(k):
		text = strconv.FormatInt(from.Int(), 10)
	case isUint(k):
		text = strconv.FormatUint(from.Uint(), 10)
	case k == reflect.Float32 || k == reflect.Float64:
		if f := from.Float(); f == math.Trunc(f) {
			text = strconv.FormatFloat(f, 'f', -1, 64)
		}
	case k == reflect.String:
		text = from.String()
	}
	out := reflect.New(t).Elem()
	if isUint(t.Kind()) {
		u, err := strconv.ParseUint(text, 10, t.Bits())
		if err != nil {
			return nil, errors.New(fmt.Sprintf("%s is not a whole number from 0 to %d", show(from.Interface()), uint64(math.MaxUint64)>>(64-t.Bits())))
		}
		out.SetUint(u)
	} else {
		i, err := strconv.ParseInt(text, 10, t.Bits())
		if err != nil {
			return nil, errors.New(show(from.Interface()) + " is not a whole number")
		}
		out.SetInt(i)
	}
	return out.Interface(), nil
}

func isInt(k reflect.Kind) bool  { return k >= reflect.Int && k <= reflect.Int64 }
func isUint(k reflect.Kind) bool { return k >= reflect.Uint && k <= reflect.Uint64 }

// show writes a value as the user wrote it: text quoted, a list or mapping by its kind.
func show(value any) string {
	switch v := value.(type) {
	case string:
		return strconv.Quote(v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprint(value)
}

// decodeProblems turns mapstructure's error (one *mapstructure.DecodeError per key, joined)
// into one Problem per key, saying what the key wants when checkValue could tell.
func decodeProblems(err error) Problems {
	var ps Problems
	var walk func(error)
	walk = func(err error) {
		de, ok := err.(*mapstructure.DecodeError)
		if !ok {
			switch e := err.(type) {
			case interface{ Unwrap() []error }: // the keys' errors, joined
				for _, inner := range e.Unwrap() {
					walk(inner)
				}
				return
			case interface{ Unwrap() error }: // "decoding failed due to …", around them
				if inner := e.Unwrap(); inner != nil {
					walk(inner)
					return
				}
			}
			ps = append(ps, Problem{Key: "(file)", Msg: err.Error()})
			return
		}
		// checkValue's words, value included (`"1 sec" is not a duration such as 1s, 500ms
		// or 2m`), or mapstructure's for what checkValue lets through, which checkKeys
		// reports too (a section that is not a mapping).
		ps = append(ps, Problem{Key: de.Name(), Msg: de.Unwrap().Error()})
	}
	walk(err)
	return ps
}
