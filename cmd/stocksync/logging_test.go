package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/stocksync/stocksync/config"
)

// TestJSONLogWritesEveryErrorWithoutAStackTrace: with log.format json, an error is one
// line with its message and no stack trace (zap's production default put a multi-line
// Go stack under every error), and a burst of one message is written whole, not sampled
// (zap's production default kept 100 a second, then one in a hundred). DPanic, a bug,
// keeps its stack trace.
func TestJSONLogWritesEveryErrorWithoutAStackTrace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stocksync.log")
	log, err := newLoggerTo(config.Log{Level: "info", Format: "json"}, path)
	if err != nil {
		t.Fatal(err)
	}
	const burst = 1000
	for i := 0; i < burst; i++ {
		log.Error("rules reload rejected; the running rules stay", zap.Error(errors.New("rules.yaml:5:5: unknown key bogus")))
	}
	log.DPanic("a bug")
	log.Sync()

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	errorsWritten, withStack := 0, 0
	dpanicStack := false
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("a log line that is not one JSON object (%v): %q", err, sc.Text())
		}
		_, stack := line["stacktrace"]
		switch line["level"] {
		case "error":
			errorsWritten++
			if stack {
				withStack++
			}
		case "dpanic":
			dpanicStack = stack && strings.Contains(line["stacktrace"].(string), "TestJSONLogWritesEveryErrorWithoutAStackTrace")
		}
	}
	if errorsWritten != burst {
		t.Errorf("%d of %d identical error lines written: the log is sampled", errorsWritten, burst)
	}
	if withStack > 0 {
		t.Errorf("%d of %d error lines carry a stack trace", withStack, errorsWritten)
	}
	if !dpanicStack {
		t.Error("the DPanic line lacks its stack trace")
	}
}
