package httpapi

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Error is the body of every refusal: {"code": "…", "message": "…"}.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// RequireToken lets a request through to next only with "Authorization: Bearer <token>"
// (the scheme's name in any case, as HTTP has it; any request when token is empty); others
// get 401 unauthorized.
func RequireToken(token string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, credentials, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if token != "" && (!strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(credentials), []byte(token)) != 1) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stocksync"`)
			WriteJSON(w, http.StatusUnauthorized, Error{Code: "unauthorized", Message: "a valid bearer token is required"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Route is one method and path pattern (net/http's, e.g. /v1/skus/{sku}) and its handler.
type Route struct {
	Method, Path string
	Handle       http.HandlerFunc
}

// Routes serves routes under prefix (e.g. /v1/). A known path asked with a method it does
// not serve answers 405 method_not_allowed with an Allow header; any other path under
// prefix answers 404 not_found, naming what paths there are (what). A path that a
// ServeMux would redirect, one with an empty, "." or ".." segment (/v1/skus//stock) or
// prefix without its slash (/v1), answers 404 not_found too: never a redirect with a body
// that is not JSON.
func Routes(prefix, what string, routes []Route) http.Handler {
	mux := http.NewServeMux()
	var paths []string
	allowed := map[string][]string{}
	for _, rt := range routes {
		mux.HandleFunc(rt.Method+" "+rt.Path, rt.Handle)
		if allowed[rt.Path] == nil {
			paths = append(paths, rt.Path)
		}
		allowed[rt.Path] = append(allowed[rt.Path], rt.Method)
		if rt.Method == http.MethodGet {
			allowed[rt.Path] = append(allowed[rt.Path], http.MethodHead) // the mux serves HEAD with GET
		}
	}
	// The same path without a method is less specific than every route on it, so it only
	// answers the methods those routes do not serve.
	for _, path := range paths {
		allow := strings.Join(allowed[path], ", ")
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			WriteJSON(w, http.StatusMethodNotAllowed, Error{Code: "method_not_allowed",
				Message: r.Method + " " + r.URL.Path + ": allowed methods are " + allow})
		})
	}
	notFound := func(w http.ResponseWriter, r *http.Request, why string) {
		WriteJSON(w, http.StatusNotFound, Error{Code: "not_found", Message: r.Method + " " + r.URL.Path + " is not " + what + why})
	}
	mux.HandleFunc(prefix, func(w http.ResponseWriter, r *http.Request) { notFound(w, r, "") })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		escaped := r.URL.EscapedPath() // what the mux matches
		if escaped == strings.TrimSuffix(prefix, "/") {
			notFound(w, r, "")
			return
		}
		if odd := oddSegment(escaped); odd != "" {
			notFound(w, r, ": it has "+odd)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// oddSegment names the first segment of a path that a ServeMux would clean away, with a
// redirect: an empty one (a trailing slash is none), "." or "..". "" when there is none.
func oddSegment(path string) string {
	segments := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, segment := range segments {
		switch {
		case segment == "" && i < len(segments)-1:
			return "an empty segment"
		case segment == "." || segment == "..":
			return fmt.Sprintf("a %q segment", segment)
		}
	}
	return ""
}

// MalformedError is a request body that is not one JSON value of the expected shape.
type MalformedError struct{ Problem string }

func (e *MalformedError) Error() string { return "body: " + e.Problem }

// DecodeJSON reads exactly one JSON value into v. Stricter than encoding/json, so that
// what is stored is what was sent: the body must be valid UTF-8 and no string may hold a
// \uXXXX escape of half a UTF-16 surrogate pair without its other half (encoding/json
// would store U+FFFD for each bad byte or lone half, so that two different order numbers
// became one), and every object key must be a field of v's shape spelt exactly, at most
// once (encoding/json matches keys ignoring case and lets the last of two equal keys win).
// A body of null is refused. An empty body is allowed when optional. A body over an http.MaxBytesReader's limit returns
// its *http.MaxBytesError (413); any other problem a *MalformedError (400).
func DecodeJSON(body io.Reader, v any, optional bool) error {
	data, err := io.ReadAll(body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return &MalformedError{Problem: "reading it: " + err.Error()}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		if optional {
			return nil
		}
		return &MalformedError{Problem: "is empty; a JSON value is required"}
	}
	if !utf8.Valid(data) {
		return &MalformedError{Problem: fmt.Sprintf("is not valid UTF-8 (byte %d)", invalidUTF8At(data))}
	}
	// encoding/json decodes null into an object or an array as if the body had left out
	// every field or listed nothing, which would make a request of it that was never sent:
	// `null` to a single-SKU physical sync would set the SKU's stock to 0 in every
	// warehouse. No body of this API is null.
	if string(bytes.TrimSpace(data)) == "null" {
		return &MalformedError{Problem: fmt.Sprintf("%s must be %s, not null", describePath(""), jsonKind(reflect.TypeOf(v)))}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var typeErr *json.UnmarshalTypeError
	if err := dec.Decode(v); err != nil && !errors.As(err, &typeErr) {
		return &MalformedError{Problem: describeDecodeError(err)}
	}
	if _, err := dec.Token(); typeErr == nil && !errors.Is(err, io.EOF) {
		return &MalformedError{Problem: "must hold a single JSON value"}
	}
	// The walk names the value of a wrong type by its whole path (items[2].qty, where
	// encoding/json says items.qty), or finds a problem before it in the body.
	walk := newBodyWalk(data)
	walk.typeErr = typeErr
	if err := walk.value(reflect.TypeOf(v), ""); err != nil {
		return &MalformedError{Problem: err.Error()}
	}
	if typeErr != nil {
		return &MalformedError{Problem: describeDecodeError(typeErr)}
	}
	return nil
}

// invalidUTF8At is the offset of data's first byte that is not valid UTF-8.
func invalidUTF8At(data []byte) int {
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(data)
}

// describeDecodeError says what encoding/json found wrong in the words of the API, not
// of Go's types. (A value of the wrong type is named by its whole path in the body's walk;
// this names it by encoding/json's path, without indexes, only if the walk did not find it.)
func describeDecodeError(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Sprintf("%s must be %s, not %s", describePath(typeErr.Field), jsonKind(typeErr.Type), typeErr.Value)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "malformed JSON: it ends before the value does"
	}
	return "malformed JSON: " + strings.TrimPrefix(err.Error(), "json: ")
}

// jsonKind names what JSON value decodes into t.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[time.Time]() {
		return "a time string such as 2026-11-22T15:00:00Z"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a JSON value"
}

// bodyWalk walks the JSON tokens of a body, knowing the path of each value
// (items[2].qty), to check what encoding/json lets through.
type bodyWalk struct {
	dec *json.Decoder
	raw []byte
	// typeErr, when set, is encoding/json's refusal of a value of the wrong type: the walk
	// refuses the value it is about, named by its path.
	typeErr *json.UnmarshalTypeError
}

func newBodyWalk(raw []byte) *bodyWalk {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return &bodyWalk{dec: dec, raw: raw}
}

// token reads the next token and returns it with the bytes read for it: its literal,
// after any separators and spaces before it.
func (w *bodyWalk) token() (json.Token, []byte, error) {
	start := w.dec.InputOffset()
	tok, err := w.dec.Token()
	return tok, w.raw[start:w.dec.InputOffset()], err
}

// value walks the value at path, as decoded into t, and refuses an object key that is not
// one of its struct's field names spelt exactly or that appears twice, a string (value
// or key) holding half a surrogate pair, and the value w.typeErr is about. A nil t (an
// interface, or a type that decodes itself) checks for keys twice and strings only.
func (w *bodyWalk) value(t reflect.Type, path string) error {
	tok, literal, err := w.token()
	if err != nil {
		return err
	}
	// encoding/json's offset is the end of the literal, or of an object's or array's
	// opening delimiter: the end of the value's first token.
	if w.typeErr != nil && w.dec.InputOffset() == w.typeErr.Offset {
		return fmt.Errorf("%s must be %s, not %s", describePath(path), jsonKind(w.typeErr.Type), w.typeErr.Value)
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (t.Implements(reflect.TypeFor[json.Unmarshaler]()) || reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]())) {
		t = nil
	}
	switch tok {
	case json.Delim('{'):
		var fields map[string]reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = jsonFields(t)
		}
		seen := map[string]bool{}
		for w.dec.More() {
			keyTok, keyLiteral, err := w.token()
			if err != nil {
				return err
			}
			if half := unpairedSurrogate(keyLiteral); half != "" {
				return fmt.Errorf("a field name in %s has %s, %s", describePath(path), half, surrogateAdvice)
			}
			key := keyTok.(string)
			where := strings.TrimPrefix(path+"."+key, ".")
			if seen[key] {
				return fmt.Errorf("field %q appears twice", where)
			}
			seen[key] = true
			var inner reflect.Type
			switch {
			case fields != nil:
				ft, ok := fields[key]
				if !ok {
					for name := range fields {
						if strings.EqualFold(name, key) {
							return fmt.Errorf("unknown field %q (did you mean %q? names are case-sensitive)", where, strings.TrimPrefix(path+"."+name, "."))
						}
					}
					return fmt.Errorf("unknown field %q", where)
				}
				inner = ft
			case t != nil && t.Kind() == reflect.Map:
				inner = t.Elem()
			}
			if err := w.value(inner, where); err != nil {
				return err
			}
		}
		_, _, err := w.token() // }
		return err
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; w.dec.More(); i++ {
			if err := w.value(elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, _, err := w.token() // ]
		return err
	}
	if _, isString := tok.(string); isString {
		if half := unpairedSurrogate(literal); half != "" {
			return fmt.Errorf("%s has %s, %s", describePath(path), half, surrogateAdvice)
		}
	}
	return nil
}

// describePath names the value at path (items[2].qty) in a message.
func describePath(path string) string {
	if path == "" {
		return "the body"
	}
	return "field " + strconv.Quote(path)
}

const surrogateAdvice = "half of a UTF-16 surrogate pair without its other half, which is no character " +
	"(send the character itself, or both halves of its pair)"

// unpairedSurrogate returns the first \uXXXX escape in a JSON string literal that is half
// of a UTF-16 surrogate pair without its other half, "" when there is none. encoding/json
// reads each such escape as U+FFFD, so that "a\ud800" and "a\udbff" would be one string.
func unpairedSurrogate(literal []byte) string {
	for i := 0; i < len(literal); i++ {
		if literal[i] != '\\' {
			continue
		}
		unit, ok := escapedUnit(literal, i)
		switch {
		case !ok: // \", \\, \n…: skip the escaped byte
			i++
			continue
		case unit >= 0xd800 && unit < 0xdc00: // a first half: the second must follow
			if second, ok := escapedUnit(literal, i+6); ok && second >= 0xdc00 && second < 0xe000 {
				i += 11
				continue
			}
			return string(literal[i : i+6])
		case unit >= 0xdc00 && unit < 0xe000: // a second half alone
			return string(literal[i : i+6])
		}
		i += 5
	}
	return ""
}

// escapedUnit reads the UTF-16 code unit of a \uXXXX escape at literal[i:]; ok is false
// when there is none there.
func escapedUnit(literal []byte, i int) (unit uint16, ok bool) {
	if i+6 > len(literal) || literal[i] != '\\' || literal[i+1] != 'u' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(literal[i+2:i+6]), 16, 16)
	return uint16(n), err == nil
}

// jsonFields maps the JSON names of t's exported fields to their types, as encoding/json
// names them (the tag's name, else the Go name; "-" left out; embedded structs' fields
// promoted).
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			continue // its fields are promoted
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	return fields
}
