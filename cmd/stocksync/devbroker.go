package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/stocksync/stocksync/config"
	"github.com/stocksync/stocksync/sinks"
)

// newDevBrokerCmd runs the embedded development broker alone, as its own process, so that
// a daemon can be killed and restarted against a broker that keeps running.
func newDevBrokerCmd() *cobra.Command {
	var addr, dataDir string
	var sec sinks.DevBrokerSecurity
	cmd := &cobra.Command{
		Use:   "devbroker",
		Short: "Run the development Kafka broker (franz-go kfake) in the foreground",
		Long: "Runs a Kafka-protocol broker for development and tests. It is not Kafka: without\n" +
			"--data-dir it keeps nothing across restarts. Prints its address, then serves until stopped.\n" +
			"With --tls-cert and --tls-key it speaks TLS only, and with --sasl-mechanism every client\n" +
			"must log in as --sasl-user: a daemon's kafka.tls and kafka.sasl can be tried against it.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkDevBrokerSecurity(sec); err != nil {
				return err
			}
			b, err := sinks.StartDevBroker(addr, dataDir, sec)
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
	cmd.Flags().StringVar(&sec.CertFile, "tls-cert", "", "PEM server certificate: speak TLS (with --tls-key)")
	cmd.Flags().StringVar(&sec.KeyFile, "tls-key", "", "PEM key of --tls-cert")
	cmd.Flags().StringVar(&sec.Mechanism, "sasl-mechanism", "", "require a SASL login: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	cmd.Flags().StringVar(&sec.User, "sasl-user", "", "the one SASL user (a superuser)")
	cmd.Flags().StringVar(&sec.Password, "sasl-password", "", "its password")
	return cmd
}

// checkDevBrokerSecurity refuses flags that do not go together, naming them.
func checkDevBrokerSecurity(sec sinks.DevBrokerSecurity) error {
	var problems []error
	if (sec.CertFile == "") != (sec.KeyFile == "") {
		problems = append(problems, errors.New("--tls-cert and --tls-key go together"))
	}
	switch sec.Mechanism {
	case "":
		if sec.User != "" || sec.Password != "" {
			problems = append(problems, errors.New("--sasl-user and --sasl-password need --sasl-mechanism"))
		}
	case config.SASLPlain, config.SASLScramSHA256, config.SASLScramSHA512:
		if sec.User == "" || sec.Password == "" {
			problems = append(problems, fmt.Errorf("--sasl-mechanism %s needs --sasl-user and --sasl-password", sec.Mechanism))
		}
	default:
		problems = append(problems, fmt.Errorf("--sasl-mechanism %q is not one of %s, %s, %s",
			sec.Mechanism, config.SASLPlain, config.SASLScramSHA256, config.SASLScramSHA512))
	}
	return errors.Join(problems...)
}
