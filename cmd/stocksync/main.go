// Command stocksync owns an inventory database in MySQL, reads its binlog, passes every
// committed change through YAML rules and publishes the results to Kafka.
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/stocksync/stocksync/config"
)

func main() {
	tuneGC()
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "stocksync:", err)
		if configDefaulted {
			fmt.Fprintln(os.Stderr, "stocksync: (no --config was given: the defaults and STOCKSYNC_* variables were used)")
		}
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "stocksync",
		Short:         "Inventory database, binlog to Kafka through YAML rules",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       thisBuild().String(),
	}
	root.SetVersionTemplate("{{.Version}}\n") // the line `stocksync version` prints
	root.PersistentFlags().String("config", "", "config file (YAML); STOCKSYNC_SECTION_KEY variables override it")
	root.AddCommand(newServeCmd(), newMigrateCmd(), newStockCmd(), newRulesCmd(), newDevBrokerCmd(), newBenchCmd(), newTailCmd(), newResyncCmd(), newCheckpointCmd(), newVersionCmd())
	return root
}

// tuneGC trades memory for CPU unless the environment chose (GOGC): the collector runs
// at 200% heap growth instead of 100%. Streaming allocates a little per row, and the live
// heap is bounded (kafka.max_in_flight_bytes, snapshot chunks; docs/operations.md,
// Memory), so halving the collector's share is
// worth the larger heap.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
}

// configDefaulted is set when a command read its config without a --config file, so that
// a failure can say so: connection refused on 127.0.0.1:3306 means little otherwise.
var configDefaulted bool

// loadConfig reads the --config file named on cmd (defaults and environment alone when
// there is none).
func loadConfig(cmd *cobra.Command) (config.Config, error) { return loadConfigWith(cmd, config.Load) }

// loadConfigWithoutRules is loadConfig for the commands that never read the config's
// rules file: every one but serve.
func loadConfigWithoutRules(cmd *cobra.Command) (config.Config, error) {
	return loadConfigWith(cmd, config.LoadWithoutRules)
}

func loadConfigWith(cmd *cobra.Command, load func(string) (config.Config, error)) (config.Config, error) {
	path, _ := cmd.Flags().GetString("config")
	configDefaulted = path == ""
	cfg, err := load(path)
	for _, w := range cfg.UnknownVariables {
		fmt.Fprintln(cmd.ErrOrStderr(), "stocksync: warning:", w)
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "stocksync: warning:", w)
	}
	return cfg, err
}

// newLogger builds the zap logger the config asks for, writing to stderr.
func newLogger(c config.Log) (*zap.Logger, error) { return newLoggerTo(c, "stderr") }

// newLoggerTo is newLogger writing to output (a zap output path: "stderr", or a file).
// Every line is written: zap's production sampling (after 100 lines of one message in a
// second, one in a hundred) is off, since the line dropped could be the one that says
// what went wrong. An error carries no stack trace, only its message: stack traces are
// kept for DPanic and the levels above, which report a bug, not an outage.
func newLoggerTo(c config.Log, output string) (*zap.Logger, error) {
	var zc zap.Config
	if c.Format == "console" {
		zc = zap.NewDevelopmentConfig()
	} else {
		zc = zap.NewProductionConfig()
		zc.EncoderConfig.TimeKey = "ts"
		zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	}
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	zc.Level = zap.NewAtomicLevelAt(level)
	zc.Sampling = nil
	zc.DisableStacktrace = true
	zc.OutputPaths = []string{output}
	return zc.Build(zap.AddStacktrace(zapcore.DPanicLevel))
}
