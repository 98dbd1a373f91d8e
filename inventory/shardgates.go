package inventory

import (
	"context"
	"math/rand/v2"
	"sync"
)

// shardGates spreads this process's one-shard calls (deduct_one, deduct_batch) of a SKU
// over its shards: a call takes a shard that no other call of this process is using when
// there is one, and otherwise waits here for a random one. Without it, calls that picked
// the same shard at random queue on its row lock inside the server, where each wait costs
// a server thread a sleep and a wake-up; with it they wait as goroutines. It only picks the
// row: the conditional update still guarantees the stock, and calls of other processes
// still queue on the row lock as before. On 8 shards it raised deductions without merging
// by about a fifth (docs/BENCHMARKS.md).
type shardGates struct {
	mu    sync.Mutex
	bySKU map[string][]chan struct{}
}

// maxGatedSKUs bounds the gates kept; past it they start afresh (calls holding an old
// gate give it back to the old one, so for a moment a shard may have two calls: harmless).
const maxGatedSKUs = 100000

// take returns one of sku's m shards and the function that gives it back. With one shard
// there is nothing to spread, and it returns at once: callers then queue on the row lock,
// where the next call's inserts overlap the current one's commit.
func (g *shardGates) take(ctx context.Context, sku string, m int) (shard int, release func(), err error) {
	if m == 1 {
		return 0, func() {}, nil
	}
	start := rand.IntN(m)
	gates := g.gates(sku, m)
	for i := range m {
		k := (start + i) % m
		select {
		case gates[k] <- struct{}{}:
			return k, func() { <-gates[k] }, nil
		default:
		}
	}
	select {
	case gates[start] <- struct{}{}:
		return start, func() { <-gates[start] }, nil
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
}

// gates returns sku's gates, at least m of them.
func (g *shardGates) gates(sku string, m int) []chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.bySKU == nil || len(g.bySKU) > maxGatedSKUs {
		g.bySKU = map[string][]chan struct{}{}
	}
	gates := g.bySKU[sku]
	for len(gates) < m {
		gates = append(gates, make(chan struct{}, 1))
	}
	g.bySKU[sku] = gates
	return gates[:m]
}
