package main

import (
	"context"
	"testing"
	"time"

	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/pipeline"
	"github.com/stocksync/stocksync/sinks"
)

// TestBrokerPingedAsAPipelineStarts: /readyz's broker check does not wait for the next
// tick once a pipeline runs (a reviewer saw "not asked while no pipeline runs" for 2 s
// after the stream had started). With ticks an hour apart, only the ping at the start
// can clear it.
func TestBrokerPingedAsAPipelineStarts(t *testing.T) {
	pinger, err := sinks.NewPinger([]string{startDevBroker(t)}, sinks.Security{})
	if err != nil {
		t.Fatal(err)
	}
	defer pinger.Close()
	d := &daemon{pinger: pinger, pingNow: make(chan struct{}, 1), pingEvery: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.pingBroker(ctx)
	testutil.Eventually(t, 10*time.Second, "the first ping, with no pipeline", func() bool { return d.brokerDown.Load() != nil })
	if why := *d.brokerDown.Load(); why == "" {
		t.Fatalf("broker answered with no pipeline running: want it not asked")
	}

	d.startedPipeline(pipeline.New(pipeline.Options{}))
	testutil.Eventually(t, 10*time.Second, "the broker asked as the pipeline started", func() bool {
		why := d.brokerDown.Load()
		return why != nil && *why == ""
	})
}
