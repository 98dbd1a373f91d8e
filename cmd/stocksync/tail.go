package main

import (
	"encoding/json"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/sinks"
)

func newTailCmd() *cobra.Command {
	var fromStart, raw bool
	var brokers []string
	cmd := &cobra.Command{
		Use:   "tail TOPIC...",
		Short: "Print what stocksync published to topics, readable by a person",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, topics []string) error {
			// The config gives the brokers unless --brokers does, and kafka.tls and
			// kafka.sasl whenever it is named; --brokers alone is plaintext.
			var sec sinks.Security
			if len(brokers) == 0 || cmd.Flags().Changed("config") {
				cfg, err := loadConfigWithoutRules(cmd)
				if err != nil {
					return err
				}
				if len(brokers) == 0 {
					brokers = cfg.Kafka.Brokers
				}
				if len(brokers) == 0 {
					brokers = []string{cfg.Kafka.DevBrokerAddr}
				}
				if sec, err = sinks.SecurityOf(cfg.Kafka.TLS, cfg.Kafka.SASL); err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			return sinks.Tail(ctx, brokers, sec, topics, fromStart, func(r sinks.Record) {
				if raw {
					fmt.Fprintf(out, "%s\t%s\t%s\n", r.Topic, r.Key, r.Value)
					return
				}
				fmt.Fprintf(out, "%s  key=%s  %s\n", r.Topic, r.Key, describe(r.Value))
			})
		},
	}
	cmd.Flags().BoolVar(&fromStart, "from-start", true, "read each topic from its first message; false: only what is published after tail starts (a topic that does not exist yet is read whole once it appears; tail never creates one)")
	cmd.Flags().BoolVar(&raw, "raw", false, "print topic, key and value as they are, tab-separated")
	cmd.Flags().StringSliceVar(&brokers, "brokers", nil, "brokers (default: kafka.brokers of --config, or the development broker); kafka.tls and kafka.sasl of --config apply")
	return cmd
}

// describe renders a message value as one short line: the op and the changed columns of a
// row message, or the fields of an aggregate or transition message.
func describe(value []byte) string {
	var m map[string]any
	if json.Unmarshal(value, &m) != nil {
		return string(value)
	}
	op, _ := m["op"].(string)
	before, _ := m["before"].(map[string]any)
	after, _ := m["after"].(map[string]any)
	src, _ := m["source"].(map[string]any)
	where := ""
	if src != nil {
		where = fmt.Sprintf("  [%s %v]", canal.TableName{Schema: fmt.Sprint(src["db"]), Name: fmt.Sprint(src["table"])}, first(src["gtid"], fmt.Sprint(src["file"], ":", src["pos"])))
	}
	switch op {
	case "c", "r":
		return fmt.Sprintf("%s %s%s", map[string]string{"c": "insert", "r": "read"}[op], compact(after), where)
	case "d":
		return fmt.Sprintf("delete %s%s", compact(before), where)
	case "u":
		changed := map[string]any{}
		for k, v := range after {
			if b, a := jsonText(before[k]), jsonText(v); b != a {
				changed[k] = b + "→" + a
			}
		}
		return fmt.Sprintf("update %s%s", compact(changed), where)
	}
	delete(m, "source")
	return compact(m) + where
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func first(v any, fallback string) string {
	if v == nil {
		return fallback
	}
	return fmt.Sprint(v)
}

func compact(m map[string]any) string {
	b, _ := json.Marshal(m)
	return string(b)
}
