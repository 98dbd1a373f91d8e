package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stocksync/stocksync/internal/httpapi"
	"github.com/stocksync/stocksync/pipeline"
	"github.com/stocksync/stocksync/rules"
)

// resyncPath is the admin call that republishes the state of aggregate and transition
// rules (docs/operations.md, "Resync").
const resyncPath = "/admin/resync"

// mountAdmin serves the admin calls under /admin/, behind http.token like /v1.
func (d *daemon) mountAdmin(mux *http.ServeMux) {
	admin := httpapi.Routes("/admin/", "an admin call", []httpapi.Route{
		{Method: http.MethodPost, Path: resyncPath, Handle: d.handleResync},
	})
	mux.Handle("/admin/", httpapi.RequireToken(d.cfg.HTTP.Token, admin))
}

func (d *daemon) handleResync(w http.ResponseWriter, r *http.Request) {
	var req rules.ResyncRequest
	// An empty body resyncs every group of every aggregate and transition rule.
	if err := httpapi.DecodeJSON(http.MaxBytesReader(w, r.Body, 64<<10), &req, true); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			httpapi.WriteJSON(w, http.StatusRequestEntityTooLarge, httpapi.Error{Code: "body_too_large",
				Message: fmt.Sprintf("request body over %d bytes", tooLarge.Limit)})
			return
		}
		httpapi.WriteJSON(w, http.StatusBadRequest, httpapi.Error{Code: "malformed",
			Message: fmt.Sprintf(`%v (expected {"rules": ["name", …], "keys": [{"column": value, …}, …]}, both optional)`, err)})
		return
	}
	p := d.current.Load()
	switch {
	case d.cfg.HA && !d.leader.Load():
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, httpapi.Error{Code: "standby",
			Message: "this daemon is the standby: ask the leader (the one whose /readyz answers 200)"})
		return
	case p == nil:
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, httpapi.Error{Code: "not_streaming", Message: pipeline.ErrNotStreaming.Error()})
		return
	}
	result, err := p.Resync(r.Context(), req)
	switch {
	case err == nil:
		httpapi.WriteJSON(w, http.StatusOK, result)
	case errors.Is(err, pipeline.ErrResyncRules):
		httpapi.WriteJSON(w, http.StatusUnprocessableEntity, httpapi.Error{Code: "resync_refused", Message: err.Error()})
	case errors.Is(err, pipeline.ErrRereadInterrupted):
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, httpapi.Error{Code: "reread_interrupted",
			Message: err.Error() + " (watch stocksync_reread_running on /metrics, or the daemon's log)"})
	case errors.Is(err, pipeline.ErrNotStreaming):
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, httpapi.Error{Code: "not_streaming", Message: err.Error() + " (starting, a snapshot, or a restart after a failure): try again"})
	default:
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, httpapi.Error{Code: "resync_failed", Message: err.Error()})
	}
}

// newResyncCmd asks the running daemon named by the config (http.addr, http.token) for a
// resync, and waits for its answer.
func newResyncCmd() *cobra.Command {
	var url string
	var keys []string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "resync [RULE...] [--key JSON]...",
		Short: "Republish the state of aggregate and transition rules (all without RULE), or re-read a row rule's tables, for a consumer to rebuild from",
		RunE: func(cmd *cobra.Command, args []string) error {
			asked := rules.ResyncRequest{Rules: args}
			for _, k := range keys {
				if !json.Valid([]byte(k)) {
					return fmt.Errorf(`--key %s is not JSON: write a group key as the topic's keys are, e.g. '{"sku_id":"A1"}'`, k)
				}
				asked.Keys = append(asked.Keys, json.RawMessage(k))
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if url == "" {
				if url, err = localURL(cfg.HTTP.Addr); err != nil {
					return err
				}
			}
			body, _ := json.Marshal(asked)
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(url, "/")+resyncPath, bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			if cfg.HTTP.Token != "" {
				req.Header.Set("Authorization", "Bearer "+cfg.HTTP.Token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("asking the daemon for a resync: %w", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				var refusal httpapi.Error
				if json.NewDecoder(resp.Body).Decode(&refusal) != nil || refusal.Message == "" {
					refusal.Message = resp.Status
				}
				if refusal.Code == "reread_interrupted" {
					return fmt.Errorf("the daemon at %s did not finish the resync: %s", url, refusal.Message)
				}
				return fmt.Errorf("the daemon at %s refused the resync: %s", url, refusal.Message)
			}
			var result pipeline.ResyncResult
			if err := json.NewDecoder(resp.Body).Decode(&result); err != nil {
				return fmt.Errorf("reading the daemon's answer: %w", err)
			}
			out := cmd.OutOrStdout()
			for _, r := range result.Rules {
				plural := "s"
				if r.Messages == 1 {
					plural = ""
				}
				fmt.Fprintf(out, "%s: %d message%s\n", r.Rule, r.Messages, plural)
				for _, k := range r.Missing {
					fmt.Fprintf(out, "%s: no group %s (it has no rows)\n", r.Rule, k)
				}
			}
			fmt.Fprintf(out, "as of %s, acknowledged by the broker\n", result.Position)
			if rr := result.Reread; rr != nil {
				fmt.Fprintf(out, "row rules' tables (%s) re-read in %d chunks, from %s to %s",
					strings.Join(rr.Tables, ", "), rr.Chunks, rr.From, rr.To)
				if rr.ReadAgain > 0 {
					fmt.Fprintf(out, " (%d read again)", rr.ReadAgain)
				}
				fmt.Fprintln(out)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&keys, "key", nil, `a group to resync, as the topic's keys write it ('{"sku_id":"A1"}'); repeatable; default every group`)
	cmd.Flags().StringVar(&url, "url", "", "the daemon's HTTP address (default: http.addr of the config, on this host)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait for the answer")
	return cmd
}

// localURL is the URL of a daemon on this host listening on addr (http.addr).
func localURL(addr string) (string, error) {
	if addr == "" {
		return "", errors.New("http.addr is empty in the config, so the daemon serves no HTTP: set it, or pass --url")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("http.addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}
