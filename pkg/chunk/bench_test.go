package chunk

import (
	"math"
	"testing"

	"github.com/lokilab/lokilab/pkg/push"
)

// benchEntries returns n generated entries of kind k and their total size
// (push.Entry.Size: line and metadata bytes).
func benchEntries(k lineKind, n int) ([]push.Entry, int) {
	g := newLineGen(42)
	es := make([]push.Entry, n)
	size := 0
	for i := range es {
		es[i] = g.next(k)
		size += es[i].Size()
	}
	return es, size
}

// entryAt returns es[i % len(es)], its timestamp moved on by a lap for
// every time i went round es, so timestamps keep increasing.
func entryAt(es []push.Entry, i int) push.Entry {
	e := es[i%len(es)]
	e.Timestamp += int64(i/len(es)) * (es[len(es)-1].Timestamp - es[0].Timestamp + 1)
	return e
}

// fullChunk appends entries until the chunk is full at the default sizes.
func fullChunk(b *testing.B, enc Encoding, p *Pool, es []push.Entry) *Chunk {
	c := New(enc, DefaultBlockSize, DefaultTargetSize, WithPool(p))
	for i := 0; !c.Full(); i++ {
		e := entryAt(es, i)
		if _, err := c.Append(e.Timestamp, e.Line, e.StructuredMetadata); err != nil {
			b.Fatal(err)
		}
	}
	return c
}

// BenchmarkAppend is the ingester's per-line cost: copying into the head
// and, once per block, cutting and compressing it. A new chunk starts when
// one is full, as after a flush. MB/s are of line and metadata bytes.
func BenchmarkAppend(b *testing.B) {
	es, size := benchEntries(kindMixed, 1<<16)
	for _, enc := range allEncodings {
		b.Run(enc.String(), func(b *testing.B) {
			p := NewPool()
			c := New(enc, DefaultBlockSize, DefaultTargetSize, WithPool(p))
			b.SetBytes(int64(size / len(es)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				e := entryAt(es, i)
				if _, err := c.Append(e.Timestamp, e.Line, e.StructuredMetadata); err != nil {
					b.Fatal(err)
				}
				if c.Full() {
					c = New(enc, DefaultBlockSize, DefaultTargetSize, WithPool(p))
				}
				i++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}

// BenchmarkEncode is the whole write cost of one full chunk (1.5 MiB
// target): appending its entries, compressing its blocks and encoding the
// object. MB/s are of line and metadata bytes.
func BenchmarkEncode(b *testing.B) {
	es, _ := benchEntries(kindMixed, 1<<16)
	for _, enc := range allEncodings {
		b.Run(enc.String(), func(b *testing.B) {
			p := NewPool()
			c := fullChunk(b, enc, p, es)
			n, size := c.Entries(), c.UncompressedSize()
			var dst []byte
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				c := New(enc, DefaultBlockSize, DefaultTargetSize, WithPool(p))
				for i := range n {
					e := entryAt(es, i)
					if _, err := c.Append(e.Timestamp, e.Line, e.StructuredMetadata); err != nil {
						b.Fatal(err)
					}
				}
				var err error
				if dst, err = c.AppendEncode(dst[:0]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(dst)), "object-bytes")
		})
	}
}

// BenchmarkDecodeIterate is a query's cost per chunk: decoding the object
// (checking every CRC) and iterating all its entries. MB/s are of line and
// metadata bytes returned.
func BenchmarkDecodeIterate(b *testing.B) {
	es, _ := benchEntries(kindMixed, 1<<16)
	for _, enc := range allEncodings {
		p := NewPool()
		c := fullChunk(b, enc, p, es)
		obj, err := c.Encode()
		if err != nil {
			b.Fatal(err)
		}
		for _, dir := range []Direction{Forward, Backward} {
			b.Run(enc.String()+"/"+dir.String(), func(b *testing.B) {
				b.SetBytes(int64(c.UncompressedSize()))
				b.ReportAllocs()
				for b.Loop() {
					d, err := Decode(obj, WithPool(p))
					if err != nil {
						b.Fatal(err)
					}
					it := d.Iterator(math.MinInt64, math.MaxInt64, dir)
					n := 0
					for it.Next() {
						n += len(it.At().Line)
					}
					if err := it.Err(); err != nil || n == 0 {
						b.Fatal(err, n)
					}
					_ = it.Close()
				}
				b.ReportMetric(float64(b.N*c.Entries())/b.Elapsed().Seconds(), "lines/s")
			})
		}
	}
}

// BenchmarkCompressionRatio reports, per kind of line and codec, the ratio
// of line and metadata bytes to object bytes of a full chunk ("ratio"), and
// the object bytes per line. Each iteration builds the chunk, so ns/op and
// MB/s are the write cost for that kind of line.
func BenchmarkCompressionRatio(b *testing.B) {
	for _, kind := range lineKinds {
		es, _ := benchEntries(kind, 1<<16)
		for _, enc := range allEncodings {
			b.Run(kind.String()+"/"+enc.String(), func(b *testing.B) {
				p := NewPool()
				var c *Chunk
				var obj []byte
				b.ReportAllocs()
				for b.Loop() {
					c = fullChunk(b, enc, p, es)
					var err error
					if obj, err = c.AppendEncode(obj[:0]); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(int64(c.UncompressedSize()))
				b.ReportMetric(float64(c.UncompressedSize())/float64(len(obj)), "ratio")
				b.ReportMetric(float64(len(obj))/float64(c.Entries()), "bytes/line")
			})
		}
	}
}
