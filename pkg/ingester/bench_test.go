package ingester

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/internal/kafkatest"
	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/storage"
)

// benchRecords encodes lines of realistic log lines as records of 100
// entries in streams spread over partitions.
func benchRecords(b *testing.B, streams, linesPerStream, partitions int) ([]*kgo.Record, int) {
	b.Helper()
	req := pushtest.Request(pushtest.Options{Streams: streams, LinesPerStream: linesPerStream, Seed: 1, Start: time.Now()})
	var recs []*kgo.Record
	bytes := 0
	for i := range req.Streams {
		s := &req.Streams[i]
		for j := 0; j < len(s.Entries); j += 100 {
			part := *s
			part.Entries = s.Entries[j:min(j+100, len(s.Entries))]
			for _, e := range part.Entries {
				bytes += e.Size()
			}
			var err error
			recs, err = kafka.EncodeStream(recs, kafka.RecordSpec{Tenant: "bench", Partition: int32(i % partitions), MaxValueBytes: 1 << 20}, &part)
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	for i, r := range recs {
		r.Offset = int64(i)
	}
	return recs, bytes
}

// BenchmarkPartitionPush is the ingester's CPU cost per line without Kafka
// or the store: decode a record, find the stream, append to its chunk,
// cutting and compressing blocks as they fill.
func BenchmarkPartitionPush(b *testing.B) {
	const streams, lines = 100, 2000
	recs, bytes := benchRecords(b, streams, lines, 1)
	b.ReportAllocs()
	b.SetBytes(int64(bytes))
	for b.Loop() {
		ing := benchIngester(b)
		p := newPartition(ing, 0, 0, 0)
		p.pushRecords(recs, int64(len(recs)))
	}
	b.ReportMetric(float64(streams*lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

func benchIngester(b *testing.B) *Ingester {
	b.Helper()
	cfg := (&harness{partitions: 1}).config("bench")
	m, err := newMetrics(nil)
	if err != nil {
		b.Fatal(err)
	}
	return &Ingester{cfg: cfg, logger: discardLogger(), now: time.Now, metrics: m,
		memory: &memoryAccount{metrics: m}, chunkPool: chunk.NewPool(), chunkEncoding: chunk.EncodingSnappy, flushSlots: make(chan struct{}, 1), partitions: map[int32]*partition{}}
}

// BenchmarkIngestEndToEnd: lines already in the embedded broker, consumed
// by an ingester into chunks and flushed (chunks and index uploaded, offsets
// committed) to an in-memory store. Reports lines/s through the whole
// ingest path on this machine.
func BenchmarkIngestEndToEnd(b *testing.B) {
	const streams, lines, partitions = 50, 4000, 4
	h := newHarness(b, partitions)
	recs, bytes := benchRecords(b, streams, lines, partitions)
	if err := h.producer.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(bytes))
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		h.store = storage.NewInMemory("bench", nil)
		h.rcfg.ConsumerGroup = fmt.Sprintf("bench-%d", b.N) + fmt.Sprint(time.Now().UnixNano())
		cfg := h.config("bench")
		ing, err := New(cfg, Deps{Kafka: h.kcfg, Reader: h.rcfg, Bucket: h.store.Bucket, Registerer: prometheus.NewRegistry()})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		go func() { done <- ing.Run(ctx) }()
		kafkatest.Eventually(b, "all consumed", h.consumedAll(ing))
		if err := ing.flushAll(context.Background(), flushAll, reasonForced); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cancel()
		<-done
		b.StartTimer()
	}
	b.ReportMetric(float64(streams*lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkMemoryPerStream measures the heap one active stream costs: its
// entry in the partition's map, its labels, and an open chunk holding one
// short line.
func BenchmarkMemoryPerStream(b *testing.B) {
	const streams = 20_000
	recs, _ := benchRecords(b, streams, 1, 1)
	for b.Loop() {
		ing := benchIngester(b)
		p := newPartition(ing, 0, 0, 0)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		p.pushRecords(recs, int64(len(recs)))
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/streams, "bytes/stream")
		runtime.KeepAlive(p)
	}
}
