package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/stocksync/stocksync/config"
	"github.com/stocksync/stocksync/internal/httpapi"
	"github.com/stocksync/stocksync/inventory"
)

// mountInventory serves the inventory API under /v1, with its metrics on reg, and runs the
// hold sweeper. A schema newer than this binary knows stops serve, and so does a
// database that does not exist or was never migrated when the config sets inventory
// (the section, in the file or by a STOCKSYNC_INVENTORY_* variable): the operator
// asked for the inventory, and a daemon that starts without it would be found out only
// by the first /v1 call. Otherwise (no inventory configured, or a schema an older
// stocksync migrated, as during an upgrade) /v1 answers 503 with what to run until
// serve restarts, while the binlog pipeline runs on.
func mountInventory(ctx context.Context, cfg config.Config, mux *http.ServeMux, reg prometheus.Registerer, log *zap.Logger) (func(), error) {
	configured := cfg.Sets("inventory")
	db, err := inventory.Open(ctx, cfg)
	if errors.Is(err, inventory.ErrNoDatabase) {
		if configured {
			return nil, inventoryNotServable(cfg, err)
		}
		log.Warn("inventory API disabled: the inventory database does not exist", zap.String("inventory.database", cfg.Inventory.Database), zap.Error(err))
		mux.Handle("/v1/", schemaMissing(err, cfg.HTTP.Token))
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := inventory.CheckSchema(ctx, db); err != nil {
		if errors.Is(err, inventory.ErrSchemaTooNew) {
			db.Close()
			return nil, fmt.Errorf("refusing to serve the inventory: %w", err)
		}
		if version := (*inventory.SchemaVersionError)(nil); configured && errors.As(err, &version) && version.Have == 0 {
			db.Close()
			return nil, inventoryNotServable(cfg, err)
		}
		log.Warn("inventory API disabled until the schema is migrated", zap.Error(err))
		mux.Handle("/v1/", schemaMissing(err, cfg.HTTP.Token))
		return func() { db.Close() }, nil
	}
	store := inventory.New(db, inventory.Options{HoldTTL: cfg.Inventory.HoldTTL, SweepInterval: cfg.Inventory.SweepInterval, DatabaseAddr: cfg.Source.Addr,
		Token: cfg.HTTP.Token, Logger: log.Named("inventory")})
	if err := store.RegisterMetrics(reg); err != nil {
		db.Close()
		return nil, err
	}
	mux.Handle("/v1/", store.Handler())
	sweepCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := store.RunSweeper(sweepCtx); err != nil && sweepCtx.Err() == nil {
			log.Error("hold sweeper stopped", zap.Error(err))
		}
	}()
	return func() { stop(); <-done; db.Close() }, nil
}

// inventoryNotServable is serve's refusal of an inventory.database that does not exist or
// was never migrated (why), placed where the config set it.
func inventoryNotServable(cfg config.Config, why error) error {
	return fmt.Errorf("refusing to serve the inventory: %w",
		config.Problems{cfg.ProblemAt("inventory.database", why.Error()+"; then start serve again")})
}

// schemaMissing answers every /v1 request with 503 schema_not_migrated and what to run,
// behind the same bearer token as the API it stands in for: the message names the
// database and server, which a caller without the token has no business reading.
func schemaMissing(err error, token string) http.Handler {
	answer := httpapi.Error{Code: "schema_not_migrated", Message: err.Error() + " (run: stocksync migrate up --config FILE, then restart serve)"}
	return httpapi.RequireToken(token, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, answer)
	}))
}

// apiPrefixes are the paths whose handlers answer every path under them themselves, in
// JSON: the inventory API and the admin calls.
var apiPrefixes = []string{"/v1", "/admin"}

// withAPIPaths hands every path under an API prefix to that prefix's handler as it came,
// so that a path the ServeMux would clean and redirect with an HTML body (/v1/skus//stock,
// /v1) gets the API's JSON 404 instead.
func withAPIPaths(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, prefix := range apiPrefixes {
			if r.URL.Path == prefix || strings.HasPrefix(r.URL.Path, prefix+"/") {
				h, _ := mux.Handler(&http.Request{Method: r.Method, Host: r.Host, URL: &url.URL{Path: prefix + "/"}})
				h.ServeHTTP(w, r)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}
