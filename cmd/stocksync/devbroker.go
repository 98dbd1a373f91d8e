package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/stocksync/stocksync/sinks"
)

// newDevBrokerCmd runs the embedded development broker alone, as its own process, so that
// a daemon can be killed and restarted against a broker that keeps running.
func newDevBrokerCmd() *cobra.Command {
	var addr, dataDir string
	cmd := &cobra.Command{
		Use:   "devbroker",
		Short: "Run the development Kafka broker (franz-go kfake) in the foreground",
		Long: "Runs a Kafka-protocol broker for development and tests. It is not Kafka: without\n" +
			"--data-dir it keeps nothing across restarts. Prints its address, then serves until stopped.",
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := sinks.StartDevBroker(addr, dataDir)
			if err != nil {
				return err
			}
			defer b.Close()
			fmt.Fprintln(cmd.OutOrStdout(), b.Addrs()[0])
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
			<-sig
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:9092", "listen address (port 0 picks a free one)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "keep topics in this directory, across clean stops only (a kill -9 under load can leave partitions unreadable)")
	return cmd
}
