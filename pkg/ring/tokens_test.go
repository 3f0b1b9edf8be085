package ring_test

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/lokilab/lokilab/pkg/ring"
)

// newRing starts a ring that is never run, for lookups on its local state.
func newRing(t testing.TB, id string) *ring.Ring {
	t.Helper()
	r, err := ring.New(testConfig(), ring.InstanceDesc{ID: id, Role: ring.RoleDistributor}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Kill)
	return r
}

// shares routes n random tokens and returns each partition's fraction.
func shares(t *testing.T, r *ring.Ring, n int) map[int32]float64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	counts := map[int32]int{}
	for range n {
		p, err := r.PartitionFor(rng.Uint32())
		if err != nil {
			t.Fatal(err)
		}
		counts[p]++
	}
	out := map[int32]float64{}
	for p, c := range counts {
		out[p] = float64(c) / float64(n)
	}
	return out
}

func TestPartitionForSpreadsTokensOverActivePartitions(t *testing.T) {
	a, b := newRing(t, "a"), newRing(t, "b")

	// Two nodes that never talked compute the same ring.
	rng := rand.New(rand.NewPCG(1, 1))
	for range 100000 {
		tok := rng.Uint32()
		pa, errA := a.PartitionFor(tok)
		pb, errB := b.PartitionFor(tok)
		if errA != nil || errB != nil || pa != pb {
			t.Fatalf("token %d: %d (%v) on one node, %d (%v) on the other", tok, pa, errA, pb, errB)
		}
	}

	check := func(active []int32) {
		t.Helper()
		got := shares(t, a, 100000)
		fair := 1 / float64(len(active))
		for _, p := range active {
			// With 64 random tokens a partition's share varies by ~12%;
			// ±40% catches a broken ring, not an unlucky draw.
			if s := got[p]; s < 0.6*fair || s > 1.4*fair {
				t.Errorf("partition %d gets %.3f of tokens, fair share %.3f", p, s, fair)
			}
		}
		if len(got) != len(active) {
			t.Errorf("tokens went to partitions %v, want only %v", slices.Sorted(maps.Keys(got)), active)
		}
		t.Logf("%d active partitions: shares min %.3f max %.3f (fair %.3f)", len(active),
			slices.Min(slices.Collect(maps.Values(got))), slices.Max(slices.Collect(maps.Values(got))), fair)
	}
	check([]int32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})

	a.SetPartitionState(3, ring.PartitionInactive)
	a.SetPartitionState(12, ring.PartitionPending)
	check([]int32{0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11})

	// Adding a partition takes tokens from the others; it does not
	// reshuffle them: a token either stays put or moves to the new one.
	before := map[uint32]int32{}
	for range 10000 {
		tok := rng.Uint32()
		before[tok], _ = a.PartitionFor(tok)
	}
	a.SetPartitionState(12, ring.PartitionActive)
	moved := 0
	for tok, was := range before {
		now, _ := a.PartitionFor(tok)
		if now != was {
			moved++
			if now != 12 {
				t.Fatalf("token %d moved from %d to %d, not to the new partition", tok, was, now)
			}
		}
	}
	t.Logf("activating a 12th partition moved %.1f%% of tokens", 100*float64(moved)/float64(len(before)))

	for p := range int32(13) {
		a.SetPartitionState(p, ring.PartitionInactive)
	}
	if _, err := a.PartitionFor(42); !errors.Is(err, ring.ErrNoActivePartition) {
		t.Errorf("no ACTIVE partition: err = %v, want ErrNoActivePartition", err)
	}
}

func TestAssignPartitions(t *testing.T) {
	partitions := make([]int32, 120)
	for i := range partitions {
		partitions[i] = int32(i)
	}
	instances := []string{"ingester-0", "ingester-1", "ingester-2", "ingester-3"}
	base := ring.AssignPartitions(partitions, instances)

	t.Run("every partition gets one of the instances", func(t *testing.T) {
		if len(base) != len(partitions) {
			t.Fatalf("%d partitions assigned, want %d", len(base), len(partitions))
		}
		for p, id := range base {
			if !slices.Contains(instances, id) {
				t.Fatalf("partition %d assigned to %q", p, id)
			}
		}
	})
	t.Run("the order of inputs does not matter", func(t *testing.T) {
		rev := slices.Clone(instances)
		slices.Reverse(rev)
		if got := ring.AssignPartitions(partitions, rev); !maps.Equal(got, base) {
			t.Error("reversing the instances changed the assignment")
		}
	})
	t.Run("an instance leaving moves only its partitions", func(t *testing.T) {
		got := ring.AssignPartitions(partitions, []string{"ingester-0", "ingester-2", "ingester-3"})
		for p, id := range base {
			if id != "ingester-1" && got[p] != id {
				t.Errorf("partition %d moved from %s to %s", p, id, got[p])
			}
		}
	})
	t.Run("an instance joining takes partitions only for itself", func(t *testing.T) {
		got := ring.AssignPartitions(partitions, append(slices.Clone(instances), "ingester-4"))
		moved := 0
		for p, id := range base {
			if got[p] != id {
				moved++
				if got[p] != "ingester-4" {
					t.Errorf("partition %d moved from %s to %s", p, id, got[p])
				}
			}
		}
		// About 1/5 of 120: far from none and far from all.
		if moved < 10 || moved > 40 {
			t.Errorf("%d of 120 partitions moved to the new instance, want about 24", moved)
		}
	})
	t.Run("no instances, no assignment", func(t *testing.T) {
		if got := ring.AssignPartitions(partitions, nil); len(got) != 0 {
			t.Errorf("got %v", got)
		}
	})
	t.Run("12 partitions over 3 ingesters", func(t *testing.T) {
		load := map[string]int{}
		for _, id := range ring.AssignPartitions(partitions[:12], instances[:3]) {
			load[id]++
		}
		t.Logf("rendezvous load: %v", fmt.Sprint(load))
	})
}
