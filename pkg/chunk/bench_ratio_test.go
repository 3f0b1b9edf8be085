package chunk

import (
	"math"
	"testing"
	"time"

	"github.com/golang/snappy"

	"github.com/lokilab/lokilab/pkg/logql"
	"github.com/lokilab/lokilab/pkg/push"
)

// The benchmarks in this file measure this package against the codec it
// wraps, in the same benchmark run: each iteration does the chunk's work and
// the bare codec's work on the same bytes, one after the other (alternating
// which goes first), and the ratio of the two throughputs is reported as
// "%-of-snappy". On a shared, noisy machine the absolute MB/s move by tens
// of percent from one run to the next; the ratio moves much less, because
// both halves see the same noise. docs/performance.md holds the figures.

// phaseTimer accumulates the time of the two halves of each iteration.
type phaseTimer struct{ ours, base time.Duration }

// run times ours and base, in an order that alternates with i so that
// neither half always runs with the caches the other one warmed.
func (pt *phaseTimer) run(i int, ours, base func()) {
	first, second := ours, base
	dFirst, dSecond := &pt.ours, &pt.base
	if i%2 == 1 {
		first, second, dFirst, dSecond = base, ours, &pt.base, &pt.ours
	}
	t0 := time.Now()
	first()
	t1 := time.Now()
	second()
	*dFirst += t1.Sub(t0)
	*dSecond += time.Since(t1)
}

// report reports both throughputs for bytesPerOp bytes per iteration, and
// ours as a percentage of the baseline's.
func (pt *phaseTimer) report(b *testing.B, bytesPerOp int, ours, base string) {
	n := float64(b.N) * float64(bytesPerOp) / 1e6
	o, s := n/pt.ours.Seconds(), n/pt.base.Seconds()
	b.ReportMetric(o, ours+"-MB/s")
	b.ReportMetric(s, base+"-MB/s")
	b.ReportMetric(100*o/s, "%-of-"+base)
}

// entriesBytes concatenates the lines and metadata of es: the bytes a bare
// codec is given as the baseline, the same bytes UncompressedSize counts.
func entriesBytes(es []push.Entry) []byte {
	var raw []byte
	for _, e := range es {
		raw = append(raw, e.Line...)
		for _, l := range e.StructuredMetadata {
			raw = append(raw, l.Name...)
			raw = append(raw, l.Value...)
		}
	}
	return raw
}

// BenchmarkBuildVsSnappy is the ingester's write cost against the codec's:
// building one full snappy chunk (1.5 MiB target) entry by entry — Append,
// which copies the entry into the head block, the cuts that compress and
// checksum each 256 KiB block, then sealing and encoding the object — and,
// as the baseline, snappy.Encode of the same line and metadata bytes in
// pieces of the same block size into a reused buffer. Target: at least 70%.
//
//	go test ./pkg/chunk -run '^$' -bench BuildVsSnappy -count 3
func BenchmarkBuildVsSnappy(b *testing.B) {
	es, _ := benchEntries(kindMixed, 1<<16)
	p := NewPool()
	full := fullChunk(b, EncodingSnappy, p, es)
	n, size := full.Entries(), full.UncompressedSize()
	chunkEntries := make([]push.Entry, n)
	for i := range chunkEntries {
		chunkEntries[i] = entryAt(es, i)
	}
	raw := entriesBytes(chunkEntries)
	if len(raw) != size {
		b.Fatalf("baseline has %d bytes, the chunk %d", len(raw), size)
	}
	dst := make([]byte, snappy.MaxEncodedLen(DefaultBlockSize))
	var (
		obj  []byte
		pt   phaseTimer
		comp int
	)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		pt.run(i, func() {
			c := New(EncodingSnappy, DefaultBlockSize, DefaultTargetSize, WithPool(p))
			for _, e := range chunkEntries {
				if _, err := c.Append(e.Timestamp, e.Line, e.StructuredMetadata); err != nil {
					b.Fatal(err)
				}
			}
			// As the ingester does: seal the full chunk, then encode it.
			if err := c.Seal(); err != nil {
				b.Fatal(err)
			}
			var err error
			if obj, err = c.AppendEncode(obj[:0]); err != nil {
				b.Fatal(err)
			}
		}, func() {
			comp = 0
			for off := 0; off < len(raw); off += DefaultBlockSize {
				comp += len(snappy.Encode(dst, raw[off:min(off+DefaultBlockSize, len(raw))]))
			}
		})
	}
	pt.report(b, size, "chunk", "snappy")
	b.ReportMetric(float64(len(obj))/float64(comp), "size-vs-snappy")
}

// BenchmarkFilterVsSnappyDecode is a query's read cost against the codec's:
// a substring line filter (LogQL `|= "needle"`, through the same
// RawLineFilter the querier's store runs on every decoded line) over
// stored snappy chunks — Decode, which checks the meta section's and every
// block's CRC, then an iterator that decompresses and parses each block and
// hands every line to the filter — and, as the baseline, snappy.Decode of
// the same chunks' stored blocks into a reused buffer. The needle matches
// no line, so every byte is scanned, the worst case for a filter. MB/s are
// of line and metadata bytes. Target: at least 50%. Three cases: per-line,
// with no block filter; block-prefilter, which first offers each
// decompressed block to the query's BlockFilter; and
// block-prefilter-counted, which also counts what it skips for the query's
// statistics, as the querier's store does.
//
//	go test ./pkg/chunk -run '^$' -bench FilterVsSnappyDecode -count 3
func BenchmarkFilterVsSnappyDecode(b *testing.B) {
	es, _ := benchEntries(kindMixed, 1<<16)
	p := NewPool()
	q, err := logql.ParseLogQuery(`{app="bench"} |= "status=599 needle"`)
	if err != nil {
		b.Fatal(err)
	}
	keep := q.RawLineFilter()
	if keep == nil {
		b.Fatal("no raw line filter")
	}
	// Four full chunks, about 6 MiB stored, as one stream's hour might be.
	var (
		objs   [][]byte
		blocks [][]byte // the stored blocks, for the baseline
		size   int
		lines  int
	)
	for k := range 4 {
		c := New(EncodingSnappy, DefaultBlockSize, DefaultTargetSize, WithPool(p))
		for i := k * 1 << 20; !c.Full(); i++ {
			e := entryAt(es, i)
			if _, err := c.Append(e.Timestamp, e.Line, e.StructuredMetadata); err != nil {
				b.Fatal(err)
			}
		}
		obj, err := c.Encode()
		if err != nil {
			b.Fatal(err)
		}
		d, err := Decode(obj)
		if err != nil {
			b.Fatal(err)
		}
		for _, bm := range d.blocks {
			blocks = append(blocks, d.data[bm.offset:bm.offset+bm.length])
		}
		objs = append(objs, obj)
		size += c.UncompressedSize()
		lines += c.Entries()
	}
	dst := make([]byte, 2*DefaultBlockSize)
	for _, tc := range []struct {
		name     string
		mayMatch func([]byte) bool
		count    bool
	}{
		// Without a block filter: every line of every block parsed and
		// searched (what the querier did before it used BlockFilter, and
		// what it still does for `!=` and regex filters).
		{"per-line", nil, false},
		// With the query's BlockFilter (chunk.FilteredIterator): a block
		// without the needle is skipped after one search over it.
		{"block-prefilter", q.BlockFilter(), false},
		// The same, also counting each skipped block's entries and line
		// bytes (Skipped) for the query's statistics: what the querier's
		// store runs.
		{"block-prefilter-counted", q.BlockFilter(), true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var pt phaseTimer
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				pt.run(i, func() {
					kept := 0
					for _, obj := range objs {
						c, err := Decode(obj, WithPool(p))
						if err != nil {
							b.Fatal(err)
						}
						var sk *Skipped
						if tc.count {
							sk = new(Skipped)
						}
						it := c.FilteredIterator(math.MinInt64, math.MaxInt64, Forward, tc.mayMatch, sk)
						seen := 0
						for it.Next() {
							seen++
							if keep(it.At().Line) {
								kept++
							}
						}
						if err := it.Err(); err != nil {
							b.Fatal(err)
						}
						_ = it.Close()
						if tc.mayMatch == nil && seen != c.Entries() {
							b.Fatalf("scanned %d lines of %d", seen, c.Entries())
						}
						if sk != nil && seen+sk.Entries != c.Entries() {
							b.Fatalf("scanned %d lines and skipped %d of %d", seen, sk.Entries, c.Entries())
						}
					}
					if kept != 0 {
						b.Fatalf("kept %d lines, want 0", kept)
					}
				}, func() {
					for _, blk := range blocks {
						if _, err := snappy.Decode(dst, blk); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
			pt.report(b, size, "filter", "snappy")
			b.ReportMetric(float64(b.N)*float64(lines)/pt.ours.Seconds(), "filter-lines/s")
		})
	}
}
