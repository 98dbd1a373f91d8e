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
// prefix answers 404 not_found, naming what paths there are (what).
func Routes(prefix, what string, routes []Route) *http.ServeMux {
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
	mux.HandleFunc(prefix, func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusNotFound, Error{Code: "not_found", Message: r.Method + " " + r.URL.Path + " is not " + what})
	})
	return mux
}

// MalformedError is a request body that is not one JSON value of the expected shape.
type MalformedError struct{ Problem string }

func (e *MalformedError) Error() string { return "body: " + e.Problem }

// DecodeJSON reads exactly one JSON value into v. Stricter than encoding/json, so that
// what is stored is what was sent: the body must be valid UTF-8 (encoding/json would
// store U+FFFD for each bad byte, so that two different order numbers became one), and
// every object key must be a field of v's shape spelt exactly, at most once
// (encoding/json matches keys ignoring case and lets the last of two equal keys win). An
// empty body is allowed when optional. A body over an http.MaxBytesReader's limit returns
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
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return &MalformedError{Problem: describeDecodeError(err)}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &MalformedError{Problem: "must hold a single JSON value"}
	}
	keys := json.NewDecoder(bytes.NewReader(data))
	keys.UseNumber()
	if err := exactKeys(keys, reflect.TypeOf(v), ""); err != nil {
		return &MalformedError{Problem: err.Error()}
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
// of Go's types.
func describeDecodeError(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		where := "the body"
		if typeErr.Field != "" {
			where = "field " + strconv.Quote(typeErr.Field)
		}
		return fmt.Sprintf("%s must be %s, not %s", where, jsonKind(typeErr.Type), typeErr.Value)
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

// exactKeys walks the value dec holds, as decoded into t, and refuses an object key that
// is not one of its struct's field names spelt exactly, or that appears twice. A nil t
// (an interface, or a type that decodes itself) checks only for keys twice.
func exactKeys(dec *json.Decoder, t reflect.Type, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
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
		for dec.More() {
			keyTok, err := dec.Token()
			if err != nil {
				return err
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
			if err := exactKeys(dec, inner, where); err != nil {
				return err
			}
		}
		_, err := dec.Token() // }
		return err
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := exactKeys(dec, elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ]
		return err
	}
	return nil
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
