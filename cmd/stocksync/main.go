// Command stocksync owns an inventory database in MySQL, reads its binlog, passes every
// committed change through YAML rules and publishes the results to Kafka.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/stocksync/stocksync/config"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "stocksync:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "stocksync",
		Short:         "Inventory database, binlog to Kafka through YAML rules",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("config", "", "config file (YAML); STOCKSYNC_SECTION_KEY variables override it")
	root.AddCommand(newServeCmd(), newMigrateCmd(), newStockCmd(), newRulesCmd(), newDevBrokerCmd(), newBenchCmd(), newTailCmd())
	return root
}

// loadConfig reads the --config file named on cmd (defaults and environment alone when
// there is none).
func loadConfig(cmd *cobra.Command) (config.Config, error) {
	path, _ := cmd.Flags().GetString("config")
	return config.Load(path)
}

// newLogger builds the zap logger the config asks for.
func newLogger(c config.Log) (*zap.Logger, error) {
	var zc zap.Config
	if c.Format == "console" {
		zc = zap.NewDevelopmentConfig()
		zc.DisableStacktrace = true
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
	return zc.Build()
}
