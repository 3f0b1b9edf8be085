package ingester

import (
	"bytes"
	"context"
	"encoding/binary"
	"maps"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/tracing"
)

// maxFlushLinks bounds the links of one flush span: a flush of many
// pushes' chunks links the first ones and counts the rest.
const maxFlushLinks = 32

// maxTracedChunks bounds the chunk → trace bookkeeping: past it, newly
// traced chunks are not remembered (their flush is then not traced), so a
// flood of sampled pushes cannot grow the ingester's memory.
const maxTracedChunks = 10000

// traces is the ingester's side of distributed tracing (pkg/tracing's
// package doc explains the shape). Records carry their push's traceparent;
// for each poll batch the ingester opens one ingester.consume span per
// trace found in it, as a child of the distributor's kafka.produce span,
// and remembers, for every chunk those records went into, the consume
// span's context. A flush cycle that uploads such chunks is then traced as
// a child of the oldest of those contexts, linked to the others.
//
// All of it is skipped when the provider is a no-op: the hot path pays one
// bool test per batch.
type traces struct {
	enabled bool
	tracer  trace.Tracer

	mu     sync.Mutex
	seq    uint64
	chunks map[*chunk.Chunk]tracedChunk
}

type tracedChunk struct {
	sc        trace.SpanContext
	seq       uint64 // order of first trace, for "the oldest push"
	partition int32
}

func newTraces(tp trace.TracerProvider) *traces {
	t := &traces{enabled: tracing.Enabled(tp), tracer: tracing.OrNoop(tp).Tracer("lokilab/ingester")}
	if t.enabled {
		t.chunks = make(map[*chunk.Chunk]tracedChunk)
	}
	return t
}

// consumeGroup is the records of one trace in a batch.
type consumeGroup struct {
	ctx  context.Context
	span trace.Span
	recs []*kgo.Record
}

// consumeBatch opens the consume spans of a batch of partition p and
// returns the function to call once the batch is applied, which remembers
// the traced chunks and ends the spans.
func (t *traces) consumeBatch(p *partition, recs []*kgo.Record) func() {
	if !t.enabled {
		return func() {}
	}
	var (
		groups map[string]*consumeGroup // by traceparent; nil group: not sampled or malformed
		prev   []byte
		g      *consumeGroup
	)
	for _, r := range recs {
		tp := traceparentBytes(r)
		if len(tp) == 0 {
			continue
		}
		// Records of one push are adjacent in a partition: compare with
		// the previous record's header before a map lookup.
		if !bytes.Equal(tp, prev) {
			prev = tp
			var seen bool
			g, seen = groups[string(tp)] // no allocation for the lookup
			if !seen {
				g = t.startConsume(p, string(tp), len(recs))
				if groups == nil {
					groups = make(map[string]*consumeGroup)
				}
				groups[string(tp)] = g
			}
		}
		if g != nil {
			g.recs = append(g.recs, r)
		}
	}
	maps.DeleteFunc(groups, func(_ string, g *consumeGroup) bool { return g == nil })
	if len(groups) == 0 {
		return func() {}
	}
	var appends []trace.Span
	for _, g := range groups {
		_, s := t.tracer.Start(g.ctx, "ingester.append")
		appends = append(appends, s)
	}
	return func() {
		for _, s := range appends {
			s.End()
		}
		p.mu.Lock()
		for _, g := range groups {
			first, last := g.recs[0], g.recs[len(g.recs)-1]
			g.span.SetAttributes(attribute.Int("records", len(g.recs)),
				attribute.Int64("first_offset", first.Offset), attribute.Int64("last_offset", last.Offset),
				// Time the push's first record waited in Kafka.
				attribute.Int64("kafka_wait_ms", time.Since(first.Timestamp).Milliseconds()))
			sc := trace.SpanContextFromContext(g.ctx)
			for _, r := range g.recs {
				if c := p.chunkOf(r); c != nil {
					t.remember(c, sc, p.id)
				}
			}
		}
		p.mu.Unlock()
		for _, g := range groups {
			g.span.End()
		}
	}
}

// startConsume opens the consume span of one trace's records in a batch,
// or returns nil when tp is malformed or not sampled.
func (t *traces) startConsume(p *partition, tp string, batch int) *consumeGroup {
	sc := tracing.SpanContextOf(tp)
	if !sc.IsValid() || !sc.IsSampled() {
		return nil
	}
	ctx, span := t.tracer.Start(trace.ContextWithRemoteSpanContext(context.Background(), sc), "ingester.consume",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("ingester", p.ing.cfg.InstanceID), attribute.Int("partition", int(p.id)),
			attribute.Int("batch_records", batch)))
	return &consumeGroup{ctx: ctx, span: span}
}

// traceparentBytes is the record's traceparent header value, not copied.
func traceparentBytes(r *kgo.Record) []byte {
	for _, h := range r.Headers {
		if h.Key == kafka.TraceparentHeader {
			return h.Value
		}
	}
	return nil
}

// chunkOf is the chunk a just-applied record's entries went into: its
// stream's open chunk, or the last sealed one if the record filled it.
// It reads only the record's key and the labels at the start of its value
// (RECORD.md: field 1 comes first). Must hold p.mu.
func (p *partition) chunkOf(r *kgo.Record) *chunk.Chunk {
	v := r.Value
	if len(v) < 2 || v[0] != 0x0a {
		return nil
	}
	n, k := binary.Uvarint(v[1:])
	if k <= 0 || uint64(len(v)-1-k) < n {
		return nil
	}
	s := p.streams[string(r.Key)][string(v[1+k:1+k+int(n)])]
	switch {
	case s == nil:
		return nil
	case s.head != nil:
		return s.head.c
	case len(s.sealed) > 0:
		return s.sealed[len(s.sealed)-1].c
	}
	return nil
}

func (t *traces) remember(c *chunk.Chunk, sc trace.SpanContext, partition int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.chunks[c]; ok || len(t.chunks) >= maxTracedChunks {
		return // the oldest push into the chunk is the one kept
	}
	t.seq++
	t.chunks[c] = tracedChunk{sc: sc, seq: t.seq, partition: partition}
}

// flushSpan is one traced flush cycle; nil when the cycle is not traced.
type flushSpan struct {
	t    *traces
	span trace.Span
}

// startFlush returns ctx with the flush cycle's span when any of items'
// chunks was written by a traced push; otherwise ctx unchanged and nil.
// The trigger's span (an HTTP /flush request's), if ctx has one, becomes
// a link: the tree the lab follows is the data's, not the trigger's.
func (t *traces) startFlush(ctx context.Context, p *partition, items []flushItem, reason string) (context.Context, *flushSpan) {
	if !t.enabled || len(items) == 0 {
		return ctx, nil
	}
	t.mu.Lock()
	var found []tracedChunk
	seen := map[trace.SpanID]bool{}
	for _, it := range items {
		if tc, ok := t.chunks[it.sc.c]; ok && !seen[tc.sc.SpanID()] {
			seen[tc.sc.SpanID()] = true
			found = append(found, tc)
		}
	}
	t.mu.Unlock()
	if len(found) == 0 {
		return ctx, nil
	}
	sort.Slice(found, func(i, j int) bool { return found[i].seq < found[j].seq })
	var links []trace.Link
	for _, tc := range found[1:min(len(found), maxFlushLinks+1)] {
		links = append(links, trace.Link{SpanContext: tc.sc})
	}
	if trigger := trace.SpanContextFromContext(ctx); trigger.IsValid() {
		links = append(links, trace.Link{SpanContext: trigger, Attributes: []attribute.KeyValue{attribute.String("link", "trigger")}})
	}
	if reason == "" {
		reason = "due"
	}
	// The cycle's own deadline and cancellation stay ctx's.
	fctx := trace.ContextWithSpanContext(ctx, found[0].sc)
	fctx, span := t.tracer.Start(fctx, "ingester.flush", trace.WithLinks(links...),
		trace.WithAttributes(attribute.String("ingester", p.ing.cfg.InstanceID), attribute.Int("partition", int(p.id)),
			attribute.String("reason", reason), attribute.Int("chunks", len(items)), attribute.Int("traced_pushes", len(found))))
	return fctx, &flushSpan{t: t, span: span}
}

// end ends the flush span and forgets the chunks made durable.
func (f *flushSpan) end(items []flushItem, err error) {
	if f == nil {
		return
	}
	if err != nil {
		f.span.SetStatus(codes.Error, err.Error())
	}
	f.span.End()
	f.t.forgetDurable(items)
}

func (t *traces) forgetDurable(items []flushItem) {
	if !t.enabled {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, it := range items {
		if it.sc.durable {
			delete(t.chunks, it.sc.c)
		}
	}
}

// forgetPartition drops what is remembered for a released partition.
func (t *traces) forgetPartition(id int32) {
	if !t.enabled {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for c, tc := range t.chunks {
		if tc.partition == id {
			delete(t.chunks, c)
		}
	}
}

// child starts a child span of ctx's span only when that span records:
// untraced flush cycles make no spans at all.
func (t *traces) child(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !t.enabled || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noop.Span{}
	}
	return t.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
}

// endSpan records err on s and ends it.
func endSpan(s trace.Span, err error) {
	if err != nil {
		s.SetStatus(codes.Error, err.Error())
	}
	s.End()
}

// partitionAttr is the partition as a span attribute.
func partitionAttr(id int32) attribute.KeyValue {
	return attribute.String("partition", strconv.Itoa(int(id)))
}
