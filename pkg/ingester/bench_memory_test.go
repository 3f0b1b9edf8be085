package ingester

import (
	"runtime"
	"testing"
	"time"

	"github.com/lokilab/lokilab/internal/pushtest"
)

// BenchmarkMemoryPerActiveStream is the heap one active stream costs when
// its head block is nearly full, the most an open chunk holds before its
// head is compressed: the stream's map entry, labels and bookkeeping, the
// chunk, its head block's arena (the lines, copied) and its index (16 bytes
// per entry). It is the figure docs/performance.md holds against the
// target of at most the configured head block (chunk_block_size) plus
// 4 KiB. Metrics reported: bytes/stream; overhead-bytes/stream, what is
// left after subtracting the line bytes the head holds; and "%-of-budget",
// bytes/stream as a percentage of block size + 4 KiB. (Cut blocks, which
// hold compressed data awaiting a flush, are bounded by chunk_target_size
// and by the ingester's memory limit; at this fill level there are none.)
//
//	go test ./pkg/ingester -run '^$' -bench MemoryPerActiveStream -count 3
func BenchmarkMemoryPerActiveStream(b *testing.B) {
	const streams = 64
	ing := benchIngester(b)
	block := int(ing.cfg.ChunkBlockSize)
	// Lines per stream so that a stream's lines fill 90% of a block.
	sample := pushtest.Request(pushtest.Options{Streams: 1, LinesPerStream: 2000, Seed: 1, Start: time.Now()})
	per := 0
	for _, e := range sample.Streams[0].Entries {
		per += e.Size()
	}
	lines := int(0.9 * float64(block) / (float64(per) / 2000))
	recs, lineBytes := benchRecords(b, streams, lines, 1)
	for b.Loop() {
		ing := benchIngester(b)
		p := newPartition(ing, 0, 0, 0)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		p.pushRecords(recs, int64(len(recs)))
		runtime.GC()
		runtime.ReadMemStats(&after)
		cut := 0
		for _, byLabels := range p.streams {
			for _, s := range byLabels {
				if s.head == nil || s.head.c.Blocks() > 0 || len(s.sealed) > 0 {
					cut++
				}
			}
		}
		if cut > streams/10 {
			b.Fatalf("%d of %d streams cut a block: the fill level is wrong", cut, streams)
		}
		per := float64(after.HeapAlloc-before.HeapAlloc) / streams
		b.ReportMetric(per, "bytes/stream")
		b.ReportMetric(per-float64(lineBytes)/streams, "overhead-bytes/stream")
		b.ReportMetric(100*per/float64(block+4<<10), "%-of-budget")
		runtime.KeepAlive(p)
	}
}
