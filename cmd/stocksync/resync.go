package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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
		{Method: http.MethodGet, Path: resyncPath, Handle: d.handleResyncStatus},
	})
	mux.Handle("/admin/", httpapi.RequireToken(d.cfg.HTTP.Token, admin))
}

// resyncStatus answers GET /admin/resync: the running re-read, if any.
type resyncStatus struct {
	Running bool                   `json:"running"`
	Reread  *pipeline.RereadStatus `json:"reread,omitempty"`
}

func (d *daemon) handleResyncStatus(w http.ResponseWriter, r *http.Request) {
	p, ok := d.streaming(w)
	if !ok {
		return
	}
	var st resyncStatus
	if rr, running := p.Reread(); running {
		st = resyncStatus{Running: true, Reread: &rr}
	}
	httpapi.WriteJSON(w, http.StatusOK, st)
}

// streaming is the pipeline that streams now; without one it answers 503 (standby, or
// not streaming) and false.
func (d *daemon) streaming(w http.ResponseWriter) (*pipeline.Pipeline, bool) {
	p := d.current.Load()
	switch {
	case d.cfg.HA && !d.leader.Load():
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, httpapi.Error{Code: "standby",
			Message: "this daemon is the standby: ask the leader (the one whose /readyz answers 200)"})
		return nil, false
	case p == nil:
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, httpapi.Error{Code: "not_streaming", Message: pipeline.ErrNotStreaming.Error()})
		return nil, false
	}
	return p, true
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
	p, ok := d.streaming(w)
	if !ok {
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
// resync, and waits for its answer; with --status, for the re-read it runs.
func newResyncCmd() *cobra.Command {
	var url string
	var keys []string
	var timeout time.Duration
	var status bool
	cmd := &cobra.Command{
		Use:   "resync [RULE...] [--key JSON]... | resync --status",
		Short: "Republish the state of aggregate and transition rules (all without RULE), or re-read a row rule's tables, for a consumer to rebuild from",
		RunE: func(cmd *cobra.Command, args []string) error {
			asked := rules.ResyncRequest{Rules: args}
			for _, k := range keys {
				if !json.Valid([]byte(k)) {
					return fmt.Errorf(`--key %s is not JSON: write a group key as the topic's keys are, e.g. '{"sku_id":"A1"}'`, k)
				}
				asked.Keys = append(asked.Keys, json.RawMessage(k))
			}
			if status && (len(args) > 0 || len(keys) > 0) {
				return errors.New("--status asks how the running re-read goes, and takes no rule or --key")
			}
			cfg, err := loadConfigWithoutRules(cmd)
			if err != nil {
				return err
			}
			if url == "" {
				if url, err = localURL(cfg.HTTP.Addr); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			call := adminCall{url: url, token: cfg.HTTP.Token}
			out := cmd.OutOrStdout()
			if status {
				var st resyncStatus
				if err := call.do(ctx, http.MethodGet, nil, &st); err != nil {
					return err
				}
				printRereadStatus(out, st)
				return nil
			}
			var result pipeline.ResyncResult
			if err := call.do(ctx, http.MethodPost, asked, &result); err != nil {
				return err
			}
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
				fmt.Fprintf(out, "row rules' tables (%s) re-read in %s, from %s to %s",
					strings.Join(rr.Tables, ", "), chunks(rr.Chunks), rr.From, rr.To)
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
	cmd.Flags().BoolVar(&status, "status", false, "print how the running re-read goes (also one that went on after a restart), and ask for nothing")
	return cmd
}

func printRereadStatus(out io.Writer, st resyncStatus) {
	rr := st.Reread
	if !st.Running || rr == nil {
		fmt.Fprintln(out, "no re-read is running")
		return
	}
	fmt.Fprintf(out, "re-reading the tables of %s (%s): %s, %d rows published", strings.Join(rr.Rules, ", "),
		strings.Join(rr.Tables, ", "), chunks(rr.Chunks), rr.Rows)
	if rr.ReadAgain > 0 {
		fmt.Fprintf(out, ", %d read again", rr.ReadAgain)
	}
	how := "begun"
	if rr.Resumed {
		how = "gone on after a stop"
	}
	fmt.Fprintf(out, "; %s %s ago\n", how, time.Since(rr.Since).Round(time.Second))
}

// adminCall is one call of the daemon's /admin API.
type adminCall struct{ url, token string }

// where is the daemon's URL as messages name it: a password in it (--url
// http://user:secret@host) written as xxxxx.
func (c adminCall) where() string {
	if u, err := url.Parse(c.url); err == nil {
		return u.Redacted()
	}
	return c.url
}

// do sends body (nil: none) to resyncPath with method and decodes a 200 answer into
// answer; any other answer is an error that says the daemon's reason.
func (c adminCall) do(ctx context.Context, method string, body, answer any) error {
	var reader io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		reader = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.url, "/")+resyncPath, reader)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("calling the daemon at %s: %w", c.where(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var refusal httpapi.Error
		if json.NewDecoder(resp.Body).Decode(&refusal) != nil || refusal.Message == "" {
			refusal.Message = resp.Status
		}
		switch {
		case refusal.Code == "reread_interrupted":
			return fmt.Errorf("the daemon at %s did not finish the resync: %s", c.where(), refusal.Message)
		case method == http.MethodGet:
			return fmt.Errorf("the daemon at %s did not say how its re-read goes: %s", c.where(), refusal.Message)
		}
		return fmt.Errorf("the daemon at %s refused the resync: %s", c.where(), refusal.Message)
	}
	if err := json.NewDecoder(resp.Body).Decode(answer); err != nil {
		return fmt.Errorf("reading the daemon's answer: %w", err)
	}
	return nil
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

// chunks says n chunks in words: "1 chunk", "3 chunks".
func chunks(n int) string {
	if n == 1 {
		return "1 chunk"
	}
	return fmt.Sprintf("%d chunks", n)
}
