package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestServeWithInventoryConfiguredRefusesADatabaseItCannotServe: a config that sets
// inventory (in the file, or by a STOCKSYNC_INVENTORY_* variable) asks for the inventory
// API, so serve does not start on an inventory.database that does not exist or was never
// migrated: the error names the key where it was set, the database, and `stocksync
// migrate up`. A schema an older stocksync migrated (an upgrade under way) still starts,
// with /v1 answering 503, as does a config without inventory
// (TestInventoryAPIWithoutSchemaAnswersSchemaNotMigratedBehindTheToken).
func TestServeWithInventoryConfiguredRefusesADatabaseItCannotServe(t *testing.T) {
	server := testutil.MySQLServer(t)
	empty, _ := server.FreshDatabase(t, "unmigrated")
	older, olderDB := server.FreshDatabase(t, "oldschema")
	testutil.Exec(t, olderDB, "CREATE TABLE goose_db_version (id INT AUTO_INCREMENT PRIMARY KEY, version_id BIGINT NOT NULL, "+
		"is_applied BOOLEAN NOT NULL, tstamp TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)", "INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, 1), (1, 1)")
	source := fmt.Sprintf("source: {addr: %q, user: %q, password: %q}\n", server.Addr, server.User, server.Password)
	mount := func(t *testing.T, conf string) (*http.ServeMux, error) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "stocksync.yaml")
		writeFile(t, path, conf)
		cfg, err := config.LoadWithoutRules(path)
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		stop, err := mountInventory(t.Context(), cfg, mux, prometheus.NewRegistry(), zap.NewNop())
		if err == nil {
			t.Cleanup(stop)
		}
		return mux, err
	}
	for _, c := range []struct{ name, database, why string }{
		{"missing", "stocksync_never_created", "does not exist on " + server.Addr + ": `stocksync migrate up` creates it"},
		{"never migrated", empty, "is at schema version 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := mount(t, source+"inventory:\n  database: "+c.database+"\n")
			for _, want := range []string{"stocksync.yaml:3:13: inventory.database: ", c.database, c.why, "stocksync migrate up", "then start serve again"} {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("mounting the inventory of %s, configured: %v; want it refused saying %q", c.database, err, want)
				}
			}
			t.Setenv("STOCKSYNC_INVENTORY_DATABASE", c.database)
			_, err = mount(t, source)
			if err == nil || !strings.Contains(err.Error(), "STOCKSYNC_INVENTORY_DATABASE: inventory.database: ") {
				t.Errorf("mounting the inventory of %s, set by its variable: %v; want it refused naming the variable", c.database, err)
			}
		})
	}
	mux, err := mount(t, source+"inventory:\n  database: "+older+"\n")
	if err != nil {
		t.Fatalf("mounting the inventory of %s, at schema version 1: %v; want /v1 answering 503 until it is migrated", older, err)
	}
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/skus/a", nil))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "schema_not_migrated") {
		t.Errorf("GET /v1/skus/a on a schema at version 1 = %d %s; want 503 schema_not_migrated", w.Code, w.Body)
	}

	// And serve itself exits at its start, saying why.
	s := newSetup(t, startDevBroker(t))
	s.editConfig(t, "rules: rules.yaml\n", "rules: rules.yaml\ninventory:\n  database: stocksync_never_created\n")
	d := s.launch(t, s.config)
	select {
	case <-d.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("serve still runs 60 s after its start on an inventory database that does not exist:\n%s", d.output.String())
	}
	if code := d.cmd.ProcessState.ExitCode(); code == 0 || !strings.Contains(d.output.String(), "inventory.database: inventory database stocksync_never_created does not exist") {
		t.Errorf("serve on an inventory database that does not exist exited %d:\n%s\nwant a failure naming inventory.database", code, d.output.String())
	}
}
