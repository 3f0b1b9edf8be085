package chunk

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
)

// checkHead checks the head's bookkeeping against its contents: an
// in-order head has no index and its arena is exactly the serialised
// block; an indexed one has an entry per entry; either way the size the
// block size bounds is what cut will produce.
func checkHead(t *testing.T, c *Chunk, wantIndexed bool) {
	t.Helper()
	h := &c.head
	if h.unordered != wantIndexed || (h.index != nil) != wantIndexed {
		t.Fatalf("head: unordered %v with %d index entries, want indexed: %v", h.unordered, len(h.index), wantIndexed)
	}
	if wantIndexed && len(h.index) != h.n {
		t.Fatalf("head: %d index entries for %d entries", len(h.index), h.n)
	}
	if !wantIndexed && len(h.arena) != h.size {
		t.Fatalf("in-order head: arena of %d bytes, size %d", len(h.arena), h.size)
	}
	if h.n > 1 && h.size > c.blockSize {
		t.Fatalf("head of %d entries serialises to %d bytes, over the block size %d", h.n, h.size, c.blockSize)
	}
	// What cut will write for an indexed head: the first timestamp as a
	// varint, the others as deltas, and every body.
	if wantIndexed {
		size := 0
		for i, e := range h.index {
			if i == 0 {
				size += varintLen(e.ts)
			} else {
				size += uvarintLen64(uint64(e.ts) - uint64(h.index[i-1].ts))
			}
			size += int(e.end - e.off)
		}
		if size != h.size {
			t.Fatalf("indexed head tracked %d bytes, serialises to %d", h.size, size)
		}
	}
}

// TestHeadInOrderAndStragglers walks a head through its two modes, step
// by step: in order it keeps no index and finds duplicates in the run of
// its newest timestamp; the first straggler builds the index, after which
// stragglers and duplicates anywhere in the head are handled through it;
// a cut drops the index, and the next block starts in order again. After
// every step the chunk returns exactly the entries kept, in both
// directions and for sub-ranges, and an iterator taken at that step still
// returns them after every later step.
func TestHeadInOrderAndStragglers(t *testing.T) {
	md := []labels.Label{{Name: "trace", Value: "t1"}}
	type step struct {
		name    string
		e       push.Entry
		dup     bool
		indexed bool // the head's mode after the step
		cuts    bool // the step cut a block (the entry starts the next)
	}
	e := func(ts int64, line string, md ...labels.Label) push.Entry {
		return push.Entry{Timestamp: ts, Line: line, StructuredMetadata: md}
	}
	// An 80-byte block: the entries below are 5-20 bytes serialised, and the
	// first block reaches 67 bytes before the entry that cuts it.
	steps := []step{
		{name: "first entry", e: e(1000, "a first", md...)},
		{name: "duplicate of the block's first entry", e: e(1000, "a first", md...), dup: true},
		{name: "same timestamp, other metadata", e: e(1000, "a first")},
		{name: "in order", e: e(2000, "b second")},
		{name: "equal timestamp", e: e(2000, "b again")},
		{name: "duplicate inside the trailing run", e: e(2000, "b second"), dup: true},
		{name: "replay of an older entry: indexes, then finds it", e: e(1000, "a first", md...), dup: true, indexed: true},
		{name: "straggler", e: e(1500, "c late"), indexed: true},
		{name: "duplicate of the straggler", e: e(1500, "c late"), dup: true, indexed: true},
		{name: "in order after a straggler", e: e(3000, "d"), indexed: true},
		{name: "cut: the block is full", e: e(2500, "e cuts the block"), cuts: true},
		{name: "no duplicate across the cut", e: e(3000, "d")},
		{name: "in order in the new block", e: e(4000, "f")},
		{name: "straggler before the block's first entry", e: e(2000, "g earliest"), indexed: true},
		{name: "straggler between", e: e(2750, "h between"), indexed: true},
	}
	c := New(EncodingNone, 80, 0)
	var kept []push.Entry
	type snap struct {
		it   Iterator
		want []push.Entry
		at   string
	}
	var snaps []snap
	for _, st := range steps {
		blocks := c.Blocks()
		dup, err := c.Append(st.e.Timestamp, st.e.Line, st.e.StructuredMetadata)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if dup != st.dup {
			t.Fatalf("%s: dup = %v, want %v", st.name, dup, st.dup)
		}
		if cut := c.Blocks() > blocks; cut != st.cuts {
			t.Fatalf("%s: cut a block: %v, want %v (head of %d bytes)", st.name, cut, st.cuts, c.head.size)
		}
		if !dup {
			kept = append(kept, st.e)
		}
		checkHead(t, c, st.indexed)
		checkEntries(t, c, kept)
		snaps = append(snaps, snap{c.Iterator(math.MinInt64, math.MaxInt64, Backward), backward(kept), st.name})
	}
	// Later appends, stragglers and cuts never changed what an earlier
	// iterator sees: the arenas they read were not reused.
	for _, s := range snaps {
		if got := collect(t, s.it); !equalEntries(got, s.want) {
			t.Errorf("iterator taken after %q: %s", s.at, firstDiff(got, s.want))
		}
	}
	checkEntries(t, mustDecode(t, mustEncode(t, c)), kept)
}

// TestHeadSizeMatchesCut: over random entries, some out of order and
// some at equal timestamps, every head's tracked size is what its cut
// writes, no block exceeds the block size unless it holds a single entry,
// and an in-order head never holds an index.
func TestHeadSizeMatchesCut(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 77))
		jitter := int64(0)
		if seed%2 == 1 {
			jitter = int64(r.IntN(5000))
		}
		es := randomEntries(r, 300, -1_000_000+int64(r.IntN(2_000_000)), jitter)
		c := New(EncodingSnappy, 512+r.IntN(4096), 0)
		for i, e := range es {
			if _, err := c.Append(e.Timestamp, e.Line, e.StructuredMetadata); err != nil {
				t.Fatal(err)
			}
			if i%17 == 0 {
				checkHead(t, c, c.head.unordered)
			}
		}
		if !c.head.unordered && c.head.index != nil {
			t.Fatalf("seed %d: an in-order head holds an index", seed)
		}
		if err := c.Seal(); err != nil {
			t.Fatal(err)
		}
		for i, bm := range c.blocks {
			if bm.size > c.blockSize && bm.entries > 1 {
				t.Errorf("seed %d: block %d of %d entries is %d bytes, over the block size %d", seed, i, bm.entries, bm.size, c.blockSize)
			}
		}
	}
}
