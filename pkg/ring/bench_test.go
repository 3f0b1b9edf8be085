package ring_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lokilab/lokilab/pkg/ring"
)

// BenchmarkPartitionFor is the distributor's per-stream lookup: a binary
// search over 12×64 tokens read through an atomic pointer.
func BenchmarkPartitionFor(b *testing.B) {
	r := newRing(b, "distributor-0")
	rng := rand.New(rand.NewPCG(1, 2))
	tokens := make([]uint32, 1024)
	for i := range tokens {
		tokens[i] = rng.Uint32()
	}
	b.ReportAllocs()
	var sink int32
	i := 0
	for b.Loop() {
		p, err := r.PartitionFor(tokens[i&1023])
		if err != nil {
			b.Fatal(err)
		}
		sink += p
		i++
	}
	_ = sink
}

// BenchmarkConvergence starts N nodes with the default timings (gossip
// 200ms, heartbeat 1s) on loopback, all joining through one seed, and
// reports two times: from the first New until every node sees all N
// ACTIVE (s/converge: joins, push/pull and gossip), and from one node's
// state change until every other node has merged it (s/propagate: gossip
// alone). Wall-clock figures from a shared machine: compare runs, not
// absolute values.
func BenchmarkConvergence(b *testing.B) {
	for _, n := range []int{3, 5, 10} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			var cfg ring.Config
			cfg.RegisterFlags(flag.NewFlagSet("bench", flag.PanicOnError))
			cfg.BindPort = 0
			roles := make([]string, n)
			for i := range roles {
				roles[i] = ring.RoleIngester
			}
			var converge, propagate time.Duration
			iterations := 0
			for b.Loop() {
				start := time.Now()
				nodes, stop := newCluster(b, cfg, roles...)
				all := ids(nodes)
				eventually(b, "converged", func() bool {
					for _, nd := range nodes {
						if !sees(nd, ring.InstanceActive, all...) {
							return false
						}
					}
					return true
				})
				converge += time.Since(start)

				start = time.Now()
				nodes[n-1].SetState(ring.InstanceLeaving)
				eventually(b, "the change everywhere", func() bool {
					for _, nd := range nodes {
						if in := nd.Instances(""); in[len(in)-1].State != ring.InstanceLeaving {
							return false
						}
					}
					return true
				})
				propagate += time.Since(start)
				stop()
				iterations++
			}
			b.ReportMetric(converge.Seconds()/float64(iterations), "s/converge")
			b.ReportMetric(propagate.Seconds()/float64(iterations), "s/propagate")
		})
	}
}
