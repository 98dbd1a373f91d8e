package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/stocksync/stocksync/config"
	"github.com/stocksync/stocksync/internal/httpapi"
	"github.com/stocksync/stocksync/internal/testutil"
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

// Before the inventory schema is migrated, /v1 answers 503 schema_not_migrated as JSON,
// saying what to run, for a database that does not exist and for one not migrated; and
// only to a caller with http.token, as the API it stands in for.
func TestInventoryAPIWithoutSchemaAnswersSchemaNotMigratedBehindTheToken(t *testing.T) {
	server := testutil.MySQLServer(t)
	empty, _ := server.FreshDatabase(t, "unmigrated")
	for _, database := range []string{"stocksync_never_created", empty} {
		t.Run(database, func(t *testing.T) {
			cfg := config.Default()
			cfg.Source.Addr, cfg.Source.User, cfg.Source.Password = server.Addr, server.User, server.Password
			cfg.Inventory.Database = database
			cfg.HTTP.Token = "s3cret"
			mux := http.NewServeMux()
			stop, err := mountInventory(t.Context(), cfg, mux, prometheus.NewRegistry(), zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			for _, c := range []struct {
				auth       string
				wantStatus int
				wantCode   string
			}{
				{"", http.StatusUnauthorized, "unauthorized"},
				{"Bearer wrong", http.StatusUnauthorized, "unauthorized"},
				{"Bearer s3cret", http.StatusServiceUnavailable, "schema_not_migrated"},
			} {
				req := httptest.NewRequest(http.MethodGet, "/v1/skus/a", nil)
				if c.auth != "" {
					req.Header.Set("Authorization", c.auth)
				}
				w := httptest.NewRecorder()
				mux.ServeHTTP(w, req)
				var body httpapi.Error
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != c.wantStatus || body.Code != c.wantCode {
					t.Fatalf("GET /v1/skus/a with %q = %d %s (%v); want %d %s", c.auth, w.Code, w.Body, err, c.wantStatus, c.wantCode)
				}
				if c.wantCode == "schema_not_migrated" && (!strings.Contains(body.Message, "stocksync migrate up") || !strings.Contains(body.Message, database)) {
					t.Errorf("schema_not_migrated message %q does not name %s and what to run", body.Message, database)
				}
				if c.wantCode == "unauthorized" && strings.Contains(w.Body.String(), database) {
					t.Errorf("a caller without the token read %s", w.Body)
				}
			}
		})
	}
}
