package main

import (
	"context"
	"net/http"

	"go.uber.org/zap"

	"github.com/stocksync/stocksync/config"
)

// mountInventory serves the inventory API under /v1 (wired once the inventory package lands).
func mountInventory(ctx context.Context, cfg config.Config, mux *http.ServeMux, log *zap.Logger) (func(), error) {
	return func() {}, nil
}
