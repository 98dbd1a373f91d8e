package httpapi

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
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
