package inventory

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestShardGatesHandOutFreeShardsFirst: m concurrent calls get m different shards, the
// next one waits until a shard is given back, and a cancelled wait says so.
func TestShardGatesHandOutFreeShardsFirst(t *testing.T) {
	var g shardGates
	ctx := context.Background()
	const m = 8
	held := map[int]func(){}
	for i := range m {
		waitAtMost, cancel := context.WithTimeout(ctx, 2*time.Second)
		shard, release, err := g.take(waitAtMost, "hot", m)
		cancel()
		if err != nil {
			t.Fatalf("take %d waited with %d of %d shards free: %v", i+1, m-len(held), m, err)
		}
		if _, dup := held[shard]; dup {
			t.Fatalf("shard %d handed out twice while %d of %d were free", shard, m-len(held), m)
		}
		held[shard] = release
	}

	cancelled, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, _, err := g.take(cancelled, "hot", m); err == nil {
		t.Fatal("a take with every shard busy returned before any was given back")
	}

	got := make(chan int, 1)
	go func() {
		shard, release, err := g.take(ctx, "hot", m)
		if err != nil {
			t.Error(err)
		}
		release()
		got <- shard
	}()
	select {
	case s := <-got:
		t.Fatalf("a take with every shard busy got shard %d", s)
	case <-time.After(20 * time.Millisecond):
	}
	for _, release := range held {
		release()
	}
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting take did not get a shard after all were given back")
	}

	// Another SKU has gates of its own; one shard has nothing to spread.
	if _, release, err := g.take(ctx, "other", m); err != nil {
		t.Fatal(err)
	} else {
		release()
	}
	for range 3 {
		if shard, _, err := g.take(ctx, "single", 1); err != nil || shard != 0 {
			t.Fatalf("one shard: got shard %d, %v; want 0 at once", shard, err)
		}
	}
}

// TestShardGatesNeverShareAShard: under many concurrent callers no shard has two holders.
func TestShardGatesNeverShareAShard(t *testing.T) {
	var g shardGates
	const m, callers, rounds = 8, 64, 200
	var inUse [m]atomic.Int32
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				shard, release, err := g.take(context.Background(), "hot", m)
				if err != nil {
					t.Error(err)
					return
				}
				if n := inUse[shard].Add(1); n != 1 {
					t.Errorf("shard %d has %d holders", shard, n)
				}
				inUse[shard].Add(-1)
				release()
			}
		}()
	}
	wg.Wait()
}
