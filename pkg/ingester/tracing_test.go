package ingester

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/tracing"
)

// TestTraceFromRecordToCommit is the ingester's part of a push's trace, in
// process: records produced under a kafka.produce span (their headers
// carrying its context) are consumed under child spans, and the flush that
// makes them durable hangs under those — put_chunk, index.write and the
// offset commit included — so the whole path is one tree. A push without
// a traceparent adds no spans, and the chunk bookkeeping is empty once
// everything is flushed.
func TestTraceFromRecordToCommit(t *testing.T) {
	h := newHarness(t, 2)
	tp, err := tracing.New(context.Background(), tracing.Config{SampleRatio: 1, RecorderSpans: 1000}, tracing.Options{Service: "ingester-test"})
	if err != nil {
		t.Fatal(err)
	}
	ing, err := New(h.config("ingester-0"), Deps{Kafka: h.kcfg, Reader: h.rcfg, Bucket: h.store.Bucket, Registerer: prometheus.NewRegistry(), TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ing.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// A traced push of two streams, one per partition, and an untraced one.
	pctx, produce := tp.Tracer("test").Start(context.Background(), "kafka.produce")
	traced := pushtest.Request(pushtest.Options{Streams: 2, LinesPerStream: 20, ID: "traced", Seed: 1})
	untraced := pushtest.Request(pushtest.Options{Streams: 2, LinesPerStream: 20, ID: "untraced", Seed: 2})
	var recs []*kgo.Record
	for i := range traced.Streams {
		recs, err = kafka.EncodeStream(recs, kafka.RecordSpec{Tenant: "t", Partition: int32(i), Traceparent: tracing.Traceparent(pctx), MaxValueBytes: 1 << 20}, &traced.Streams[i])
		if err != nil {
			t.Fatal(err)
		}
		recs, err = kafka.EncodeStream(recs, kafka.RecordSpec{Tenant: "u", Partition: int32(i), MaxValueBytes: 1 << 20}, &untraced.Streams[i])
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := h.producer.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	produce.End()
	traceID := produce.SpanContext().TraceID().String()

	// Wait until both partitions' records are applied.
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := 0
		for _, st := range ing.Status() {
			n += st.Streams
		}
		if n == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 4 streams in memory after 20s", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := ing.flushAll(context.Background(), flushAll, reasonForced); err != nil {
		t.Fatal(err)
	}

	tree := tracing.BuildTree(tp.Recorder().Trace(traceID))
	t.Logf("trace:\n%s", tracing.FormatTree(tree))
	if !tree.Connected() || tree.Roots[0].Span.Name != "kafka.produce" {
		t.Fatalf("not one tree under kafka.produce")
	}
	count := map[string]int{}
	for _, s := range tp.Recorder().Trace(traceID) {
		count[s.Name]++
	}
	// Two partitions: a consume and a flush each. A flush cycle is one
	// operation over every chunk it picks, so the traced flush shows the
	// untraced tenant's chunk beside the traced one: two chunks and two
	// index segments (one per tenant) per partition, one commit each.
	want := map[string]int{"kafka.produce": 1, "ingester.consume": 2, "ingester.append": 2, "ingester.flush": 2,
		"store.put_chunk": 4, "index.write": 4, "kafka.commit_offset": 2}
	for name, n := range want {
		if count[name] != n {
			t.Errorf("%d %s spans, want %d", count[name], name, n)
		}
	}
	if p := tree.Path("kafka.commit_offset"); len(p) != 4 || p[1] != "ingester.consume" || p[2] != "ingester.flush" {
		t.Errorf("path to the commit %v, want produce → consume → flush → commit", p)
	}
	// Only the traced push made spans: nothing else was recorded.
	if all, inTrace := len(tp.Recorder().Spans()), len(tp.Recorder().Trace(traceID)); all != inTrace {
		t.Errorf("%d spans recorded, %d of them in the traced push's trace", all, inTrace)
	}
	ing.traces.mu.Lock()
	left := len(ing.traces.chunks)
	ing.traces.mu.Unlock()
	if left != 0 {
		t.Errorf("%d chunks still remembered after everything was flushed", left)
	}
}

// TestTracingOffRemembersNothing: with the no-op provider the ingester does
// no trace bookkeeping at all, even for records that carry a traceparent.
func TestTracingOffRemembersNothing(t *testing.T) {
	tr := newTraces(nil)
	if tr.enabled || tr.chunks != nil {
		t.Fatal("tracing off, yet enabled")
	}
	r := &kgo.Record{Headers: []kgo.RecordHeader{{Key: kafka.TraceparentHeader, Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}}}
	tr.consumeBatch(nil, []*kgo.Record{r})() // a nil partition would panic if it were used
	if ctx, span := tr.startFlush(context.Background(), nil, []flushItem{{}}, ""); span != nil || ctx != context.Background() {
		t.Fatal("an untraced flush started a span")
	}
}
