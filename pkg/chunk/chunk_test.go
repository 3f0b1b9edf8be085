package chunk

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
)

var allEncodings = []Encoding{EncodingNone, EncodingSnappy, EncodingZstd}

// collect drains it, copying every entry (At's strings alias buffers).
func collect(t testing.TB, it Iterator) []push.Entry {
	t.Helper()
	var out []push.Entry
	for it.Next() {
		out = append(out, clone(it.At()))
	}
	// Errorf, not Fatalf: collect is also called from goroutines.
	if err := it.Err(); err != nil {
		t.Errorf("iterating: %v", err)
	}
	if err := it.Close(); err != nil {
		t.Errorf("closing: %v", err)
	}
	return out
}

func clone(e push.Entry) push.Entry {
	e.Line = strings.Clone(e.Line)
	if e.StructuredMetadata != nil {
		md := make([]labels.Label, len(e.StructuredMetadata))
		for i, l := range e.StructuredMetadata {
			md[i] = labels.Label{Name: strings.Clone(l.Name), Value: strings.Clone(l.Value)}
		}
		e.StructuredMetadata = md
	}
	return e
}

// forward returns es in the order a Forward iterator must return them:
// by timestamp, equal timestamps in append order.
func forward(es []push.Entry) []push.Entry {
	out := slices.Clone(es)
	slices.SortStableFunc(out, func(a, b push.Entry) int { return cmp.Compare(a.Timestamp, b.Timestamp) })
	return out
}

func backward(es []push.Entry) []push.Entry {
	out := forward(es)
	slices.Reverse(out)
	return out
}

func inRange(es []push.Entry, from, through int64) []push.Entry {
	var out []push.Entry
	for _, e := range es {
		if e.Timestamp >= from && e.Timestamp < through {
			out = append(out, e)
		}
	}
	return out
}

// randomEntries returns n entries with arbitrary bytes in lines and
// metadata. With jitter > 0, timestamps go back by up to jitter ns at times
// (out-of-order appends), and some timestamps repeat.
func randomEntries(r *rand.Rand, n int, start, jitter int64) []push.Entry {
	es := make([]push.Entry, n)
	ts := start
	for i := range es {
		ts += int64(r.IntN(1000))
		e := push.Entry{Timestamp: ts}
		if jitter > 0 && r.IntN(4) == 0 {
			e.Timestamp -= r.Int64N(jitter)
		}
		line := make([]byte, r.IntN(300))
		for j := range line {
			line[j] = byte('a' + r.IntN(26))
			if r.IntN(50) == 0 {
				line[j] = byte(r.IntN(256)) // binary and newlines too
			}
		}
		e.Line = string(line)
		for range r.IntN(4) {
			e.StructuredMetadata = append(e.StructuredMetadata, labels.Label{
				Name: fmt.Sprintf("k%d", r.IntN(5)), Value: strings.Repeat("v", r.IntN(20)),
			})
		}
		es[i] = e
	}
	return es
}

// appendAll appends es to c and returns those not reported as duplicates.
func appendAll(t testing.TB, c *Chunk, es []push.Entry) []push.Entry {
	t.Helper()
	var kept []push.Entry
	for _, e := range es {
		dup, err := c.Append(e.Timestamp, e.Line, e.StructuredMetadata)
		if err != nil {
			t.Fatalf("Append(%d): %v", e.Timestamp, err)
		}
		if !dup {
			kept = append(kept, e)
		}
	}
	return kept
}

func mustEncode(t testing.TB, c *Chunk) []byte {
	t.Helper()
	b, err := c.Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return b
}

func mustDecode(t testing.TB, b []byte) *Chunk {
	t.Helper()
	c, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return c
}

// checkEntries checks that c iterates exactly want, in both directions,
// over the full range and over a few sub-ranges.
func checkEntries(t *testing.T, c *Chunk, want []push.Entry) {
	t.Helper()
	if c.Entries() != len(want) {
		t.Errorf("Entries() = %d, want %d", c.Entries(), len(want))
	}
	if len(want) > 0 {
		f := forward(want)
		if minT, maxT := c.Bounds(); minT != f[0].Timestamp || maxT != f[len(f)-1].Timestamp {
			t.Errorf("Bounds() = %d, %d, want %d, %d", minT, maxT, f[0].Timestamp, f[len(f)-1].Timestamp)
		}
	}
	ranges := [][2]int64{{math.MinInt64, math.MaxInt64}}
	if len(want) > 0 {
		f := forward(want)
		lo, hi := f[0].Timestamp, f[len(f)-1].Timestamp
		ranges = append(ranges, [2]int64{lo + (hi-lo)/3, lo + 2*(hi-lo)/3}, [2]int64{lo, lo + 1}, [2]int64{hi, hi + 1})
	}
	for _, r := range ranges {
		exp := inRange(want, r[0], r[1])
		if got := collect(t, c.Iterator(r[0], r[1], Forward)); !equalEntries(got, forward(exp)) {
			t.Errorf("Forward [%d, %d): got %d entries, want %d; first difference: %s", r[0], r[1], len(got), len(exp), firstDiff(got, forward(exp)))
		}
		if got := collect(t, c.Iterator(r[0], r[1], Backward)); !equalEntries(got, backward(exp)) {
			t.Errorf("Backward [%d, %d): got %d entries, want %d; first difference: %s", r[0], r[1], len(got), len(exp), firstDiff(got, backward(exp)))
		}
	}
}

func equalEntries(a, b []push.Entry) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}

func firstDiff(got, want []push.Entry) string {
	for i := range min(len(got), len(want)) {
		if !reflect.DeepEqual(got[i], want[i]) {
			return fmt.Sprintf("at %d: got {%d %.20q %v}, want {%d %.20q %v}", i,
				got[i].Timestamp, got[i].Line, got[i].StructuredMetadata, want[i].Timestamp, want[i].Line, want[i].StructuredMetadata)
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(got), len(want))
}

func TestParseEncoding(t *testing.T) {
	for _, e := range allEncodings {
		got, err := ParseEncoding(e.String())
		if err != nil || got != e {
			t.Errorf("ParseEncoding(%q) = %v, %v; want %v", e.String(), got, err, e)
		}
		var v Encoding
		if err := v.UnmarshalText([]byte(e.String())); err != nil || v != e {
			t.Errorf("UnmarshalText(%q) = %v, %v", e.String(), v, err)
		}
	}
	for _, s := range []string{"", "gzip", "Snappy", "zstd "} {
		if _, err := ParseEncoding(s); err == nil {
			t.Errorf("ParseEncoding(%q) succeeded, want error", s)
		}
	}
	if s := Encoding(7).String(); s != "Encoding(7)" {
		t.Errorf("Encoding(7).String() = %q", s)
	}
	if _, err := Encoding(7).MarshalText(); err == nil {
		t.Error("MarshalText of an unknown encoding succeeded")
	}
}

func TestRoundTripEveryCodec(t *testing.T) {
	for _, enc := range allEncodings {
		for _, order := range []struct {
			name   string
			jitter int64
		}{{"in order", 0}, {"out of order", 50_000}} {
			t.Run(enc.String()+"/"+order.name, func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(enc), 1))
				c := New(enc, 1024, 0)
				want := appendAll(t, c, randomEntries(r, 800, 1_700_000_000_000_000_000, order.jitter))
				checkEntries(t, c, want) // head and cut blocks, before encoding

				b := mustEncode(t, c)
				d := mustDecode(t, b)
				if d.Encoding() != enc {
					t.Errorf("Encoding() = %v, want %v", d.Encoding(), enc)
				}
				if d.Blocks() != c.Blocks() || d.Blocks() < 50 {
					t.Errorf("decoded %d blocks, encoded %d (want many)", d.Blocks(), c.Blocks())
				}
				checkEntries(t, d, want)
			})
		}
	}
}

func TestRoundTripExtremeTimestamps(t *testing.T) {
	// Deltas across the whole int64 range must not overflow. (An entry at
	// math.MaxInt64 cannot be selected by a through-exclusive range, so
	// the largest used is one less.)
	es := []push.Entry{
		{Timestamp: math.MaxInt64 - 1, Line: "max"},
		{Timestamp: math.MinInt64, Line: "min"},
		{Timestamp: 0, Line: "zero"},
		{Timestamp: -1, Line: "minus one"},
	}
	for _, enc := range allEncodings {
		t.Run(enc.String(), func(t *testing.T) {
			c := New(enc, 0, 0)
			want := appendAll(t, c, es)
			checkEntries(t, mustDecode(t, mustEncode(t, c)), want)
		})
	}
}

func TestIteratorOrdersAcrossOverlappingBlocks(t *testing.T) {
	// Lines name their append order; blockSize 1 cuts after every
	// entry, 3 bytes after every second one (each body is 2-3 bytes), so
	// blocks overlap in time.
	tests := []struct {
		name      string
		blockSize int
		ts        []int64
		forward   string // lines in forward order
	}{
		{"in order", 1, []int64{1, 2, 3, 4}, "abcd"},
		{"reversed, a block each", 1, []int64{4, 3, 2, 1}, "dcba"},
		{"reversed, within the head", 1 << 20, []int64{4, 3, 2, 1}, "dcba"},
		{"interleaved blocks", 4, []int64{1, 5, 2, 6, 3, 7}, "acebdf"},
		{"equal timestamps keep append order across blocks", 1, []int64{5, 5, 1, 5, 9}, "cabde"},
		{"equal timestamps keep append order in the head", 1 << 20, []int64{5, 5, 1, 5, 9}, "cabde"},
		{"late entry lands in the head", 4, []int64{10, 20, 30, 40, 15}, "aebcd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, decoded := range []bool{false, true} {
				c := New(EncodingSnappy, tt.blockSize, 0)
				for i, ts := range tt.ts {
					if _, err := c.Append(ts, string(rune('a'+i)), nil); err != nil {
						t.Fatal(err)
					}
				}
				if decoded {
					c = mustDecode(t, mustEncode(t, c))
				}
				var fw, bw strings.Builder
				for _, e := range collect(t, c.Iterator(0, 100, Forward)) {
					fw.WriteString(e.Line)
				}
				for _, e := range collect(t, c.Iterator(0, 100, Backward)) {
					bw.WriteString(e.Line)
				}
				rev := []byte(tt.forward)
				slices.Reverse(rev)
				if fw.String() != tt.forward || bw.String() != string(rev) {
					t.Errorf("decoded=%v: forward %q, backward %q; want %q, %q", decoded, fw.String(), bw.String(), tt.forward, rev)
				}
			}
		})
	}
}

func TestAppendDropsExactDuplicatesInHead(t *testing.T) {
	md := []labels.Label{{Name: "trace_id", Value: "abc"}, {Name: "user", Value: "7"}}
	tests := []struct {
		name string
		ts   int64
		line string
		md   []labels.Label
		dup  bool
	}{
		{"same timestamp, line and metadata", 10, "GET /", md, true},
		{"different timestamp", 11, "GET /", md, false},
		{"different line", 10, "GET /x", md, false},
		{"no metadata", 10, "GET /", nil, false},
		{"different metadata value", 10, "GET /", []labels.Label{{Name: "trace_id", Value: "abd"}, {Name: "user", Value: "7"}}, false},
		{"metadata in another order", 10, "GET /", []labels.Label{md[1], md[0]}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(EncodingSnappy, 0, 0)
			// Entries around the original, and out of order, so the
			// duplicate is looked for in the middle of the head.
			for _, e := range []push.Entry{{Timestamp: 10, Line: "GET /", StructuredMetadata: md}, {Timestamp: 12, Line: "later"}, {Timestamp: 9, Line: "earlier"}} {
				if dup, err := c.Append(e.Timestamp, e.Line, e.StructuredMetadata); dup || err != nil {
					t.Fatalf("setup Append = %v, %v", dup, err)
				}
			}
			dup, err := c.Append(tt.ts, tt.line, tt.md)
			if err != nil {
				t.Fatal(err)
			}
			if dup != tt.dup {
				t.Errorf("dup = %v, want %v", dup, tt.dup)
			}
			want := 4
			if tt.dup {
				want = 3
			}
			if got := len(collect(t, c.Iterator(0, 100, Forward))); got != want || c.Entries() != want {
				t.Errorf("iterated %d entries, Entries() = %d; want %d", got, c.Entries(), want)
			}
		})
	}
}

func TestDuplicatesOfCutBlocksAreKept(t *testing.T) {
	// Only the head is checked: the copy already in a cut block stays.
	// With a one-byte block size every entry cuts the one before it.
	c := New(EncodingSnappy, 1, 0)
	for _, e := range []push.Entry{{Timestamp: 10, Line: "line"}, {Timestamp: 11, Line: "next"}, {Timestamp: 10, Line: "line"}} {
		if dup, err := c.Append(e.Timestamp, e.Line, nil); dup || err != nil {
			t.Fatalf("Append = %v, %v; want a kept entry", dup, err)
		}
	}
	if n := len(collect(t, c.Iterator(0, 100, Forward))); n != 3 || c.Blocks() != 2 {
		t.Errorf("iterated %d entries in %d blocks and the head, want 3 in 2 and the head", n, c.Blocks())
	}
}

func TestIteratorTimeRangeIsFromInclusiveThroughExclusive(t *testing.T) {
	tests := []struct {
		name          string
		from, through int64
		want          []int64
	}{
		{"everything", 0, 100, []int64{10, 20, 20, 30}},
		{"from is inclusive", 20, 100, []int64{20, 20, 30}},
		{"through is exclusive", 0, 30, []int64{10, 20, 20}},
		{"one instant", 20, 21, []int64{20, 20}},
		{"between entries", 11, 20, nil},
		{"before the chunk", 0, 10, nil},
		{"after the chunk", 31, 100, nil},
		{"empty range", 20, 20, nil},
		{"inverted range", 30, 10, nil},
	}
	for _, layout := range []struct {
		name      string
		blockSize int
		encode    bool
	}{{"head only", 1 << 20, false}, {"block per entry", 1, false}, {"decoded", 1, true}} {
		c := New(EncodingZstd, layout.blockSize, 0)
		for i, ts := range []int64{30, 10, 20, 20} {
			if _, err := c.Append(ts, fmt.Sprint(i), nil); err != nil {
				t.Fatal(err)
			}
		}
		if layout.encode {
			c = mustDecode(t, mustEncode(t, c))
		}
		for _, tt := range tests {
			t.Run(layout.name+"/"+tt.name, func(t *testing.T) {
				for _, dir := range []Direction{Forward, Backward} {
					var got []int64
					for _, e := range collect(t, c.Iterator(tt.from, tt.through, dir)) {
						got = append(got, e.Timestamp)
					}
					want := slices.Clone(tt.want)
					if dir == Backward {
						slices.Reverse(want)
					}
					if !slices.Equal(got, want) {
						t.Errorf("%v: got %v, want %v", dir, got, want)
					}
				}
			})
		}
	}
}

func TestEncodeLeavesChunkAppendable(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	c := New(EncodingSnappy, 1024, 0)
	first := appendAll(t, c, randomEntries(r, 100, 1000, 0))
	b1 := mustEncode(t, c)
	second := appendAll(t, c, randomEntries(r, 100, 1_000_000, 0))
	b2 := mustEncode(t, c)

	checkEntries(t, mustDecode(t, b1), first)
	checkEntries(t, mustDecode(t, b2), append(first, second...))
	checkEntries(t, c, append(first, second...))
	if b3 := mustEncode(t, c); string(b3) != string(b2) {
		t.Error("Encode with nothing appended since changed the bytes")
	}
}

func TestEmptyChunkEncodes(t *testing.T) {
	for _, enc := range allEncodings {
		d := mustDecode(t, mustEncode(t, New(enc, 0, 0)))
		if d.Entries() != 0 || d.Blocks() != 0 {
			t.Errorf("%v: empty chunk decoded to %d entries in %d blocks", enc, d.Entries(), d.Blocks())
		}
		if minT, maxT := d.Bounds(); minT != 0 || maxT != 0 {
			t.Errorf("%v: Bounds() = %d, %d, want 0, 0", enc, minT, maxT)
		}
		if got := collect(t, d.Iterator(math.MinInt64, math.MaxInt64, Forward)); len(got) != 0 {
			t.Errorf("%v: iterated %d entries", enc, len(got))
		}
	}
}

func TestAppendToDecodedChunkFails(t *testing.T) {
	c := New(EncodingSnappy, 0, 0)
	appendAll(t, c, []push.Entry{{Timestamp: 1, Line: "x"}})
	d := mustDecode(t, mustEncode(t, c))
	if _, err := d.Append(2, "y", nil); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Append on a decoded chunk: %v, want ErrReadOnly", err)
	}
}

func TestAppendRejectsEntryLargerThanABlock(t *testing.T) {
	c := New(EncodingSnappy, 0, 0)
	if _, err := c.Append(1, strings.Repeat("x", MaxBlockSize), nil); err == nil {
		t.Fatal("Append of a MaxBlockSize line succeeded")
	}
	if raceEnabled {
		return // copying 16 MiB a few times takes seconds under -race
	}
	// The largest entry that fits is accepted, and round-trips.
	line := strings.Repeat("y", MaxBlockSize-20)
	appendAll(t, c, []push.Entry{{Timestamp: 1, Line: "small"}, {Timestamp: 2, Line: line}})
	it := mustDecode(t, mustEncode(t, c)).Iterator(0, 3, Backward)
	defer it.Close()
	if !it.Next() || it.At().Line != line {
		t.Errorf("the largest entry did not round-trip: %v", it.Err())
	}
}

func TestAppendCopiesItsInput(t *testing.T) {
	buf := []byte("original line")
	name, value := []byte("trace_id"), []byte("1234")
	c := New(EncodingSnappy, 0, 0)
	// Strings aliasing a buffer that the caller then reuses, as the
	// ingester's Kafka records are.
	if _, err := c.Append(1, aliasString(buf), []labels.Label{{Name: aliasString(name), Value: aliasString(value)}}); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXXXXXXXXXX")
	copy(name, "XXXXXXXX")
	copy(value, "XXXX")
	checkEntries(t, c, []push.Entry{{Timestamp: 1, Line: "original line", StructuredMetadata: []labels.Label{{Name: "trace_id", Value: "1234"}}}})
}

func TestFullUsesCompressedSizeOfCutBlocks(t *testing.T) {
	tests := []struct {
		name   string
		enc    Encoding
		line   func(i int) string
		target int
	}{
		// Incompressible: the chunk fills at about target bytes of lines.
		{"none", EncodingNone, func(i int) string { return fmt.Sprintf("%08d", i) }, 64 << 10},
		// Very compressible: far more lines fit before the target.
		{"snappy", EncodingSnappy, func(i int) string { return fmt.Sprintf("level=info msg=%q n=%d", "request served", i%10) }, 64 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const blockSize = 8 << 10
			c := New(tt.enc, blockSize, tt.target)
			i := 0
			for ; !c.Full(); i++ {
				if _, err := c.Append(int64(i), tt.line(i), nil); err != nil {
					t.Fatal(err)
				}
				if i > 10_000_000 {
					t.Fatal("never full")
				}
			}
			b := mustEncode(t, c)
			if len(b) < tt.target-blockSize || len(b) > tt.target+blockSize {
				t.Errorf("full at %d encoded bytes (%d entries, %d uncompressed), want within a block of the %d target",
					len(b), c.Entries(), c.UncompressedSize(), tt.target)
			}
		})
	}
}

func TestUncompressedSizeCountsLinesAndMetadata(t *testing.T) {
	c := New(EncodingSnappy, 0, 0)
	appendAll(t, c, []push.Entry{
		{Timestamp: 1, Line: "12345"},
		{Timestamp: 2, Line: "123", StructuredMetadata: []labels.Label{{Name: "ab", Value: "cde"}}},
		{Timestamp: 2, Line: "123", StructuredMetadata: []labels.Label{{Name: "ab", Value: "cde"}}}, // duplicate
	})
	if got := c.UncompressedSize(); got != 5+3+2+3 {
		t.Errorf("UncompressedSize() = %d, want 13", got)
	}
}

func TestIteratorSnapshotSurvivesLaterAppends(t *testing.T) {
	// An iterator created before a cut keeps seeing the head as it was,
	// although the chunk then cuts it and fills a new head.
	c := New(EncodingSnappy, 1024, 0)
	r := rand.New(rand.NewPCG(4, 4))
	want := appendAll(t, c, randomEntries(r, 5, 0, 0))
	it := c.Iterator(math.MinInt64, math.MaxInt64, Forward)
	appendAll(t, c, randomEntries(r, 200, 0, 0)) // several cuts
	if got := collect(t, it); !equalEntries(got, forward(want)) {
		t.Errorf("snapshot changed: %s", firstDiff(got, forward(want)))
	}
}

func TestConcurrentReadersWithCallerLock(t *testing.T) {
	// The documented pattern: Append under the write lock, Iterator
	// created under the read lock, iteration without the lock. Run with
	// -race.
	var mu sync.RWMutex
	c := New(EncodingSnappy, 512, 0, WithPool(NewPool()))
	entries := randomEntries(rand.New(rand.NewPCG(5, 5)), 400, 0, 0)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			last := 0
			for last < len(entries) {
				mu.RLock()
				it := c.Iterator(math.MinInt64, math.MaxInt64, Forward)
				mu.RUnlock()
				got := collect(t, it)
				if len(got) < last || !equalEntries(got, entries[:len(got)]) {
					t.Errorf("reader saw %d entries after %d, or wrong ones", len(got), last)
					return
				}
				last = len(got)
			}
		})
	}
	for _, e := range entries {
		mu.Lock()
		_, err := c.Append(e.Timestamp, e.Line, e.StructuredMetadata)
		mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

func TestSharedPoolAcrossChunks(t *testing.T) {
	p := NewPool()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 6))
			c := New(EncodingZstd, 1024, 0, WithPool(p))
			want := appendAll(t, c, randomEntries(r, 200, 0, 1000))
			b, err := c.Encode()
			if err != nil {
				t.Error(err)
				return
			}
			d, err := Decode(b, WithPool(p))
			if err != nil {
				t.Error(err)
				return
			}
			it := d.Iterator(math.MinInt64, math.MaxInt64, Backward)
			var got []push.Entry
			for it.Next() {
				got = append(got, clone(it.At()))
			}
			if it.Err() != nil || !equalEntries(got, backward(want)) {
				t.Errorf("goroutine %d: %v, %s", g, it.Err(), firstDiff(got, backward(want)))
			}
			_ = it.Close()
		})
	}
	wg.Wait()
}

func TestAppendDoesNotAllocatePerEntry(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	for _, enc := range allEncodings {
		t.Run(enc.String(), func(t *testing.T) {
			g := newLineGen(1)
			es := make([]push.Entry, 4096)
			for i := range es {
				es[i] = g.next(kindMixed)
			}
			c := New(enc, 16<<10, 1<<40, WithPool(NewPool()))
			appendAll(t, c, es) // warm up: arena, index and scratch grown
			i := 0
			allocs := testing.AllocsPerRun(len(es), func() {
				e := es[i%len(es)]
				e.Timestamp += int64(len(es) * (1 + i/len(es)))
				if _, err := c.Append(e.Timestamp, e.Line, e.StructuredMetadata); err != nil {
					t.Fatal(err)
				}
				i++
			})
			// Growing the cut blocks' buffer and meta list allocates once
			// per several blocks; the per-entry average must round to 0.
			if allocs != 0 {
				t.Errorf("%v allocations per Append, want 0", allocs)
			}
		})
	}
}

func TestMemoryBytesCountsBuffers(t *testing.T) {
	c := New(EncodingSnappy, 4096, 0)
	empty := c.MemoryBytes()
	appendAll(t, c, randomEntries(rand.New(rand.NewPCG(7, 7)), 100, 0, 0))
	if c.MemoryBytes() < empty+c.CompressedSize()+len(c.head.arena) {
		t.Errorf("MemoryBytes() = %d, less than the %d bytes of blocks and head it holds", c.MemoryBytes(), c.CompressedSize()+len(c.head.arena))
	}
}

// TestSealFreesTheHead: a sealed chunk keeps only compressed blocks, encodes
// to the same entries, and can still be appended to.
func TestSealFreesTheHead(t *testing.T) {
	c := New(EncodingSnappy, 64<<10, 1<<20)
	for i := range 300 {
		if _, err := c.Append(int64(i), fmt.Sprintf("line %d with some words that compress well", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	before := c.MemoryBytes()
	if err := c.Seal(); err != nil {
		t.Fatal(err)
	}
	if after := c.MemoryBytes(); after >= before {
		t.Fatalf("memory %d after Seal, %d before", after, before)
	}
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if d.Entries() != 300 {
		t.Fatalf("decoded %d entries, want 300", d.Entries())
	}
	if _, err := c.Append(1000, "after seal", nil); err != nil {
		t.Fatal(err)
	}
	if c.Entries() != 301 {
		t.Fatalf("%d entries after appending to a sealed chunk", c.Entries())
	}
}
