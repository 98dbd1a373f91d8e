package httpapi

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
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
// (any request when token is empty); others get 401 unauthorized.
func RequireToken(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
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

// DecodeJSON reads exactly one JSON value with no unknown fields into v. An empty body is
// allowed when optional. A body over an http.MaxBytesReader's limit returns its
// *http.MaxBytesError (413); any other problem a *MalformedError (400).
func DecodeJSON(body io.Reader, v any, optional bool) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) && optional {
		return nil
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return err
	}
	if err != nil {
		return &MalformedError{Problem: "malformed JSON: " + strings.TrimPrefix(err.Error(), "json: ")}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if errors.As(err, &tooLarge) {
			return err
		}
		return &MalformedError{Problem: "must hold a single JSON value"}
	}
	return nil
}
