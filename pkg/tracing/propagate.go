package tracing

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TraceparentHeader is W3C trace context's header, in HTTP requests and in
// Kafka record headers alike.
const TraceparentHeader = "traceparent"

// w3c is the propagator: only traceparent/tracestate, W3C's format, which
// is what Kafka record headers carry (pkg/kafka/RECORD.md). A value, not a
// global: it is a stateless type, used as w3c{}.
type w3c = propagation.TraceContext

// Extract returns ctx with the remote span context an HTTP request's
// headers carry, if they carry a valid one.
func Extract(ctx context.Context, h propagation.TextMapCarrier) context.Context {
	return w3c{}.Extract(ctx, h)
}

// Inject writes ctx's span context into h (traceparent, tracestate).
func Inject(ctx context.Context, h propagation.TextMapCarrier) { w3c{}.Inject(ctx, h) }

// Traceparent is the traceparent header value for the span context in ctx,
// or "" when ctx carries none. Records of one push share this value, so it
// is computed once per push, not per record.
func Traceparent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	// The format is fixed: version 00, trace ID, span ID, flags.
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}

// ContextWithTraceparent returns ctx with the remote span context of a
// traceparent value; an empty or malformed value leaves ctx unchanged (W3C
// says to ignore, not reject, a bad header).
func ContextWithTraceparent(ctx context.Context, tp string) context.Context {
	if tp == "" {
		return ctx
	}
	return w3c{}.Extract(ctx, singleHeader(tp))
}

// SpanContextOf parses a traceparent value; the result is invalid when tp
// is empty or malformed.
func SpanContextOf(tp string) trace.SpanContext {
	if tp == "" {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(w3c{}.Extract(context.Background(), singleHeader(tp)))
}

// singleHeader is a carrier holding only a traceparent, without the map a
// propagation.MapCarrier would allocate.
type singleHeader string

func (s singleHeader) Get(key string) string {
	if key == TraceparentHeader {
		return string(s)
	}
	return ""
}
func (singleHeader) Set(string, string) {}
func (singleHeader) Keys() []string     { return []string{TraceparentHeader} }

// RecordCarrier adapts a Kafka record's headers to OpenTelemetry's
// propagators, so trace context crosses Kafka the way it crosses HTTP.
type RecordCarrier struct{ R *kgo.Record }

// Get returns the first header named key.
func (c RecordCarrier) Get(key string) string {
	for _, h := range c.R.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Set replaces the header named key, or adds it.
func (c RecordCarrier) Set(key, value string) {
	for i, h := range c.R.Headers {
		if h.Key == key {
			c.R.Headers[i].Value = []byte(value)
			return
		}
	}
	c.R.Headers = append(c.R.Headers, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

// Keys lists the header names.
func (c RecordCarrier) Keys() []string {
	out := make([]string, len(c.R.Headers))
	for i, h := range c.R.Headers {
		out[i] = h.Key
	}
	return out
}

// FromRecord returns ctx with the span context a record's headers carry.
func FromRecord(ctx context.Context, r *kgo.Record) context.Context {
	return w3c{}.Extract(ctx, RecordCarrier{r})
}

// Child starts a span under ctx's span with the provider that span came
// from, only when that span is recording: code deep in a call path (a
// store read, a fan-out call) then traces itself without a tracer of its
// own, and costs nothing when the request is not traced.
func Child(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, parent
	}
	return parent.TracerProvider().Tracer("lokilab").Start(ctx, name, trace.WithAttributes(attrs...))
}

// End records err (if any) as the span's error status and ends it.
func End(s trace.Span, err error) {
	if err != nil {
		s.SetStatus(codes.Error, err.Error())
	}
	s.End()
}
