package chunk

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
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
			if i+1 < len(kept) && shuffled.head.n <= 1 && kept[i].Timestamp != kept[i+1].Timestamp {
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
	var want, head []push.Entry
	ts := int64(1_700_000_000_000_000_000)
	// Six cut blocks, the needle in the odd ones. An entry lands in the
	// head, block number c.Blocks() once appended: the one that cuts a
	// block starts the next.
	for c.Blocks() < 6 {
		ts += 1000
		line := strings.Repeat("x", 40)
		if c.Blocks()%2 == 1 && c.head.n == 3 {
			line = "here is the needle"
		}
		e := push.Entry{Timestamp: ts, Line: line}
		appendAll(t, c, []push.Entry{e})
		switch blk := c.Blocks(); {
		case blk == 6:
			head = append(head, e)
		case blk%2 == 1:
			want = append(want, e)
		}
	}
	ts += 1000
	last := push.Entry{Timestamp: ts, Line: "head without it"}
	appendAll(t, c, []push.Entry{last})
	head = append(head, last)
	blocks := 0
	mayMatch := func(b []byte) bool {
		blocks++
		return bytes.Contains(b, []byte("needle"))
	}
	got := collect(t, c.FilteredIterator(math.MinInt64, math.MaxInt64, Forward, mayMatch, nil))
	// The head is not offered to mayMatch and not skipped.
	if blocks != c.Blocks() || blocks != 6 {
		t.Errorf("mayMatch saw %d blocks, want %d", blocks, c.Blocks())
	}
	if w := append(slices.Clone(want), head...); !equalEntries(got, w) {
		t.Errorf("building chunk: %s", firstDiff(got, w))
	}
	if got := collect(t, c.FilteredIterator(math.MinInt64, math.MaxInt64, Backward, func([]byte) bool { return false }, nil)); !equalEntries(got, backward(head)) {
		t.Errorf("rejecting every block returned %d entries, want the head's %d", len(got), len(head))
	}
	// Encoding cuts the head into a block of its own, which has no
	// needle: in the decoded chunk it is skipped too.
	d := mustDecode(t, mustEncode(t, c))
	if got := collect(t, d.FilteredIterator(math.MinInt64, math.MaxInt64, Forward, mayMatch, nil)); !equalEntries(got, want) {
		t.Errorf("decoded chunk: %s", firstDiff(got, want))
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

// TestFilteredIteratorCountsWhatItSkips: for any time range and direction,
// the entries a FilteredIterator returns plus those it reports in Skipped
// are exactly the entries Iterator returns, bytes included, and every
// entry holding the needle is among those returned. Blocks overlap in time
// (a quarter of the entries arrive late), so a skipped block's count must
// honour the range entry by entry, not by the block's bounds.
func TestFilteredIteratorCountsWhatItSkips(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	es := randomEntries(r, 2000, 1_700_000_000_000_000_000, 50_000)
	// The needle in a few entries, so that most blocks lack it.
	for i := 100; i < len(es); i += 700 {
		es[i].Line += "NEEDLE"
	}
	c := New(EncodingSnappy, 8<<10, 0)
	appendAll(t, c, es)
	if c.Blocks() < 10 {
		t.Fatalf("%d blocks, want at least 10", c.Blocks())
	}
	mayMatch := func(b []byte) bool { return bytes.Contains(b, []byte("NEEDLE")) }
	minT, maxT := c.Bounds()
	mid := minT + (maxT-minT)/2
	for _, ch := range []struct {
		name string
		c    *Chunk
	}{{"building", c}, {"decoded", mustDecode(t, mustEncode(t, c))}} {
		for _, tc := range []struct {
			name          string
			from, through int64
		}{
			{"everything", math.MinInt64, math.MaxInt64},
			{"first half", minT, mid},
			{"second half", mid, maxT + 1},
			{"a sliver inside blocks", mid - 30_000, mid + 30_000},
			{"nothing", maxT + 1, math.MaxInt64},
		} {
			for _, dir := range []Direction{Forward, Backward} {
				all := collect(t, ch.c.Iterator(tc.from, tc.through, dir))
				var sk Skipped
				got := collect(t, ch.c.FilteredIterator(tc.from, tc.through, dir, mayMatch, &sk))
				var allBytes, gotBytes int64
				var wantNeedles, gotNeedles []push.Entry
				for _, e := range all {
					allBytes += int64(len(e.Line))
					if strings.Contains(e.Line, "NEEDLE") {
						wantNeedles = append(wantNeedles, e)
					}
				}
				for _, e := range got {
					gotBytes += int64(len(e.Line))
					if strings.Contains(e.Line, "NEEDLE") {
						gotNeedles = append(gotNeedles, e)
					}
				}
				where := ch.name + ", " + tc.name + ", " + dir.String()
				if len(got)+sk.Entries != len(all) || gotBytes+sk.LineBytes != allBytes {
					t.Errorf("%s: returned %d entries (%d bytes) and skipped %d (%d bytes), Iterator returns %d (%d bytes)",
						where, len(got), gotBytes, sk.Entries, sk.LineBytes, len(all), allBytes)
				}
				if !equalEntries(gotNeedles, wantNeedles) {
					t.Errorf("%s: needles: %s", where, firstDiff(gotNeedles, wantNeedles))
				}
				if tc.name == "everything" && (sk.Blocks == 0 || sk.Entries == 0) {
					t.Errorf("%s: skipped %d blocks (%d entries), want most", where, sk.Blocks, sk.Entries)
				}
			}
		}
	}
}
