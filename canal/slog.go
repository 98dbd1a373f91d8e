package canal

import (
	"io"
	"log/slog"
)

// quietSlog silences go-mysql's own logger; stocksync logs what matters with zap.
func quietSlog() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
