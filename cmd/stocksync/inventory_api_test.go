package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestAPIPathsReachTheirHandlerUncleaned: a path under /v1 or /admin that a ServeMux would
// clean and redirect (an empty segment, the prefix alone) reaches the API's handler as it
// came, which answers it in JSON; other paths are the mux's as before.
func TestAPIPathsReachTheirHandlerUncleaned(t *testing.T) {
	mux := http.NewServeMux()
	for _, prefix := range apiPrefixes {
		mux.HandleFunc(prefix+"/", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Prefix", prefix)
			w.Header().Set("X-Path", r.URL.Path)
			w.WriteHeader(http.StatusTeapot)
		})
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {})
	h := withAPIPaths(mux)
	for _, tc := range []struct{ path, prefix string }{
		{"/v1/skus//stock", "/v1"}, {"/v1", "/v1"}, {"/v1/orders/./cancel", "/v1"}, {"/admin//resync", "/admin"}, {"/admin", "/admin"},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, tc.path, nil))
		if w.Code != http.StatusTeapot || w.Header().Get("X-Prefix") != tc.prefix || w.Header().Get("X-Path") != tc.path {
			t.Errorf("%s: %d from %q with path %q; want %s's handler with the path as sent", tc.path, w.Code, w.Header().Get("X-Prefix"), w.Header().Get("X-Path"), tc.prefix)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if w.Code != http.StatusOK {
		t.Errorf("/healthz: %d", w.Code)
	}
}
