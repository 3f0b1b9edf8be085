package chunk

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/lokilab/lokilab/pkg/push"
)

// TestInOrderHeadIsTheBlock: a head whose entries all arrived in order is
// compressed as it is, and one that received a straggler is serialised
// from its index. Both must produce the same object as each other for the
// same final entries, and the same entries as were appended.
func TestInOrderHeadIsTheBlock(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	sorted := forward(randomEntries(r, 400, 1_700_000_000_000_000_000, 0))
	for _, enc := range allEncodings {
		inOrder := New(enc, 4<<10, 0)
		kept := appendAll(t, inOrder, sorted)
		// The same entries with each block's first two swapped: every
		// block's head sees one straggler.
		shuffled := New(enc, 4<<10, 0)
		swaps := 0
		for i := 0; i < len(kept); i++ {
			if i+1 < len(kept) && shuffled.head.bodies == 0 && kept[i].Timestamp != kept[i+1].Timestamp {
				appendAll(t, shuffled, []push.Entry{kept[i+1], kept[i]})
				if !shuffled.head.unordered {
					t.Fatal("a straggler did not mark the head unordered")
				}
				swaps++
				i++
				continue
			}
			appendAll(t, shuffled, kept[i:i+1])
		}
		if swaps < 5 {
			t.Fatalf("%s: only %d blocks saw a straggler", enc, swaps)
		}
		a, b := mustEncode(t, inOrder), mustEncode(t, shuffled)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: in-order and straggler heads encode differently (%d and %d bytes)", enc, len(a), len(b))
		}
		checkEntries(t, mustDecode(t, a), kept)
		checkEntries(t, inOrder, kept)
	}
}

// TestFilteredIteratorSkipsOnlyRejectedBlocks: blocks mayMatch rejects
// are skipped whole, the others iterated fully (their lines left to the
// caller's filter), and the head is never skipped.
func TestFilteredIteratorSkipsOnlyRejectedBlocks(t *testing.T) {
	c := New(EncodingSnappy, 1<<10, 0)
	var want []push.Entry
	ts := int64(1_700_000_000_000_000_000)
	for blk := range 6 {
		for i := 0; c.Blocks() == blk; i++ {
			ts += 1000
			line := strings.Repeat("x", 40)
			if blk%2 == 1 && i == 3 {
				line = "here is the needle"
			}
			e := push.Entry{Timestamp: ts, Line: line}
			appendAll(t, c, []push.Entry{e})
			if blk%2 == 1 {
				want = append(want, e)
			}
		}
	}
	// The entry that cut the last block went into it; one more for the head.
	ts += 1000
	head := push.Entry{Timestamp: ts, Line: "head without it"}
	appendAll(t, c, []push.Entry{head})
	want = append(want, head)
	blocks := 0
	mayMatch := func(b []byte) bool {
		blocks++
		return bytes.Contains(b, []byte("needle"))
	}
	got := collect(t, c.FilteredIterator(math.MinInt64, math.MaxInt64, Forward, mayMatch))
	// The head is not offered to mayMatch and not skipped.
	if blocks != c.Blocks() || blocks != 6 {
		t.Errorf("mayMatch saw %d blocks, want %d", blocks, c.Blocks())
	}
	if !equalEntries(got, want) {
		t.Errorf("building chunk: %s", firstDiff(got, want))
	}
	if got := collect(t, c.FilteredIterator(math.MinInt64, math.MaxInt64, Backward, func([]byte) bool { return false })); len(got) != 1 {
		t.Errorf("rejecting every block returned %d entries, want the head's 1", len(got))
	}
	// Encoding cuts the head into a block of its own, which has no
	// needle: in the decoded chunk it is skipped too.
	d := mustDecode(t, mustEncode(t, c))
	if got := collect(t, d.FilteredIterator(math.MinInt64, math.MaxInt64, Forward, mayMatch)); !equalEntries(got, want[:len(want)-1]) {
		t.Errorf("decoded chunk: %s", firstDiff(got, want[:len(want)-1]))
	}
}

// TestSealRecyclesArenaSafely: a sealed chunk's arena goes back to the
// pool and the next chunk fills it, unless an iterator still reads it.
func TestSealRecyclesArenaSafely(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	p := NewPool()
	es := forward(randomEntries(r, 3000, 1_700_000_000_000_000_000, 0))
	a := New(EncodingSnappy, 64<<10, 0, WithPool(p))
	keptA := appendAll(t, a, es[:1000])
	// An iterator over a's head, taken before Seal, must keep its view.
	it := a.Iterator(math.MinInt64, math.MaxInt64, Backward)
	if err := a.Seal(); err != nil {
		t.Fatal(err)
	}
	b := New(EncodingSnappy, 64<<10, 0, WithPool(p))
	keptB := appendAll(t, b, es[1000:2000])
	if got := collect(t, it); !equalEntries(got, backward(keptA)) {
		t.Errorf("iterator taken before Seal: %s", firstDiff(got, backward(keptA)))
	}
	if err := b.Seal(); err != nil {
		t.Fatal(err)
	}
	// No iterator now: b's arena is recycled by c.
	c := New(EncodingSnappy, 64<<10, 0, WithPool(p))
	keptC := appendAll(t, c, es[2000:])
	checkEntries(t, a, keptA)
	checkEntries(t, b, keptB)
	checkEntries(t, c, keptC)
	checkEntries(t, mustDecode(t, mustEncode(t, b)), keptB)
}
