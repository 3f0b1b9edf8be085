package tracing

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/push"
)

func recorderProvider(t *testing.T) *Provider {
	t.Helper()
	p, err := New(context.Background(), Config{SampleRatio: 1, RecorderSpans: 1000}, Options{Service: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p
}

// TestPropagationThroughRecordHeaders follows a span context from a
// producer's span into Kafka records (as the distributor encodes them)
// and back out on the consumer side: same trace, the produce span as the
// parent.
func TestPropagationThroughRecordHeaders(t *testing.T) {
	p := recorderProvider(t)
	ctx, produce := p.Tracer("t").Start(context.Background(), "kafka.produce")
	tp := Traceparent(ctx)
	if !strings.HasPrefix(tp, "00-"+produce.SpanContext().TraceID().String()+"-"+produce.SpanContext().SpanID().String()) {
		t.Fatalf("traceparent %q does not name the produce span", tp)
	}
	s := push.Stream{Labels: `{app="x"}`, Entries: []push.Entry{{Timestamp: 1, Line: "a"}, {Timestamp: 2, Line: "b"}}}
	// A record limit that splits the stream: every record carries it.
	recs, err := kafka.EncodeStream(nil, kafka.RecordSpec{Tenant: "t", Traceparent: tp, MaxValueBytes: push.LabelsFieldSize(s.Labels) + push.EntryFieldSize(&s.Entries[0])}, &s)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	for _, r := range recs {
		cctx, consume := p.Tracer("t").Start(FromRecord(context.Background(), r), "ingester.consume")
		consume.End()
		if got := trace.SpanContextFromContext(cctx).TraceID(); got != produce.SpanContext().TraceID() {
			t.Fatalf("consumer trace %s, want %s", got, produce.SpanContext().TraceID())
		}
		if got := SpanContextOf(kafka.Traceparent(r)); !got.Equal(trace.SpanContextFromContext(ctx).WithRemote(true)) {
			t.Fatalf("record header span context %v, want the produce span's", got)
		}
	}
	produce.End()
	tree := BuildTree(p.Recorder().Trace(produce.SpanContext().TraceID().String()))
	if !tree.Connected() || len(tree.Roots[0].Children) != 2 {
		t.Fatalf("tree:\n%s", FormatTree(tree))
	}
	if tree.Roots[0].Span.Name != "kafka.produce" || tree.Roots[0].Children[0].Span.Name != "ingester.consume" {
		t.Fatalf("tree:\n%s", FormatTree(tree))
	}
}

// TestRecordWithoutHeaderStartsNoTrace: a record without traceparent (or
// with a malformed one) gives no parent: the consumer's span is a new root.
func TestRecordWithoutHeaderStartsNoTrace(t *testing.T) {
	for _, h := range []string{"", "00-zz-1-01", "not a traceparent"} {
		r := &kgo.Record{}
		if h != "" {
			RecordCarrier{r}.Set(TraceparentHeader, h)
		}
		if sc := trace.SpanContextFromContext(FromRecord(context.Background(), r)); sc.IsValid() {
			t.Errorf("header %q gave span context %v", h, sc)
		}
		if SpanContextOf(h).IsValid() {
			t.Errorf("SpanContextOf(%q) is valid", h)
		}
	}
}

func TestRecordCarrierSetReplaces(t *testing.T) {
	r := &kgo.Record{Headers: []kgo.RecordHeader{{Key: "other", Value: []byte("1")}}}
	c := RecordCarrier{r}
	c.Set(TraceparentHeader, "a")
	c.Set(TraceparentHeader, "b")
	if len(r.Headers) != 2 || c.Get(TraceparentHeader) != "b" || strings.Join(c.Keys(), ",") != "other,traceparent" {
		t.Fatalf("headers %v", r.Headers)
	}
}

// TestNoopProviderStillCarriesTheClientsContext: with tracing off, a
// client's traceparent still reaches the records (the BRIEF's contract).
func TestNoopProviderStillCarriesTheClientsContext(t *testing.T) {
	p, err := New(context.Background(), Config{SampleRatio: 1}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if Enabled(p) || Enabled(nil) || Enabled(OrNoop(nil)) {
		t.Fatal("a provider with tracing off reports itself enabled")
	}
	const client = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	h := http.Header{}
	h.Set(TraceparentHeader, client)
	ctx, span := p.Tracer("t").Start(Extract(context.Background(), propagation.HeaderCarrier(h)), "x")
	defer span.End()
	if span.IsRecording() {
		t.Fatal("a no-op span records")
	}
	if got := Traceparent(ctx); got != client {
		t.Fatalf("traceparent %q, want the client's %q", got, client)
	}
	if Traceparent(context.Background()) != "" {
		t.Fatal("a context without a span has a traceparent")
	}
}

// TestChildOnlyUnderRecordingSpans: deep code's spans exist only when the
// request is traced.
func TestChildOnlyUnderRecordingSpans(t *testing.T) {
	if _, s := Child(context.Background(), "x"); s.IsRecording() {
		t.Fatal("a child span without a parent records")
	}
	p := recorderProvider(t)
	ctx, root := p.Tracer("t").Start(context.Background(), "root")
	_, c := Child(ctx, "child")
	End(c, io.EOF)
	root.End()
	spans := p.Recorder().Trace(root.SpanContext().TraceID().String())
	if len(spans) != 2 || spans[1].Name != "child" || spans[1].ParentID != root.SpanContext().SpanID().String() || !strings.HasPrefix(spans[1].Status, "error") {
		t.Fatalf("spans %+v", spans)
	}
}

func TestRecorderKeepsTheLastN(t *testing.T) {
	p, err := New(context.Background(), Config{SampleRatio: 1, RecorderSpans: 3}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		_, s := p.Tracer("t").Start(context.Background(), "s"+string(rune('0'+i)))
		s.End()
	}
	var names []string
	for _, s := range p.Recorder().Spans() {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "s2,s3,s4" {
		t.Fatalf("kept %v, want the last three in order", names)
	}
}

// TestTreeFindsBreaks: spans whose parent is missing are extra roots.
func TestTreeFindsBreaks(t *testing.T) {
	t0 := time.Unix(100, 0)
	spans := []Span{
		{SpanID: "a", Name: "http", Start: t0, End: t0.Add(10 * time.Millisecond)},
		{SpanID: "b", ParentID: "a", Name: "produce", Start: t0.Add(time.Millisecond), End: t0.Add(9 * time.Millisecond)},
		{SpanID: "c", ParentID: "zz", Name: "consume", Start: t0.Add(20 * time.Millisecond), End: t0.Add(21 * time.Millisecond)},
	}
	tree := BuildTree(spans)
	if tree.Connected() || len(tree.Roots) != 2 {
		t.Fatalf("%d roots", len(tree.Roots))
	}
	if p := tree.Path("produce"); strings.Join(p, ">") != "http>produce" {
		t.Fatalf("path %v", p)
	}
	out := FormatTree(tree)
	for _, want := range []string{"another root", "  produce", "20.0ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("tree lacks %q:\n%s", want, out)
		}
	}
	if !BuildTree(spans[:2]).Connected() {
		t.Fatal("a tree with one root is not connected")
	}
}

func TestLogHandlerAddsTraceID(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewTextHandler(&buf, nil))).With("component", "x")
	p := recorderProvider(t)
	ctx, span := p.Tracer("t").Start(context.Background(), "s")
	defer span.End()
	log.InfoContext(ctx, "traced")
	log.Info("untraced")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines %q", lines)
	}
	if !strings.Contains(lines[0], "trace_id="+span.SpanContext().TraceID().String()) || !strings.Contains(lines[0], "component=x") {
		t.Errorf("traced line %q", lines[0])
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("untraced line %q", lines[1])
	}
}

func TestObserveAddsExemplarWhenSampled(t *testing.T) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Buckets: []float64{1}})
	p := recorderProvider(t)
	ctx, span := p.Tracer("t").Start(context.Background(), "s")
	span.End()
	Observe(context.Background(), h, 0.5) // no span: no exemplar
	Observe(ctx, h, 0.5)
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	ex := m.GetHistogram().GetBucket()[0].GetExemplar()
	if ex == nil || ex.GetLabel()[0].GetValue() != span.SpanContext().TraceID().String() || m.GetHistogram().GetSampleCount() != 2 {
		t.Fatalf("exemplar %v, count %d", ex, m.GetHistogram().GetSampleCount())
	}
}

// TestOTLPExport sends spans to an in-test OTLP/HTTP receiver: the exporter
// switched on by config posts them to /v1/traces.
func TestOTLPExport(t *testing.T) {
	var posts, bytesIn atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		b, _ := io.ReadAll(r.Body)
		bytesIn.Add(int64(len(b)))
		posts.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	for _, ep := range []string{strings.TrimPrefix(srv.URL, "http://"), srv.URL + "/v1/traces"} {
		posts.Store(0)
		p, err := New(context.Background(), Config{SampleRatio: 1, OTLPEndpoint: ep}, Options{Service: "otlp-test"})
		if err != nil {
			t.Fatal(err)
		}
		if !Enabled(p) || p.Recorder() != nil {
			t.Fatal("an OTLP-only provider is disabled or has a recorder")
		}
		_, s := p.Tracer("t").Start(context.Background(), "exported")
		s.End()
		if err := p.ForceFlush(context.Background()); err != nil {
			t.Fatalf("endpoint %s: %v", ep, err)
		}
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if posts.Load() < 1 || bytesIn.Load() == 0 {
			t.Fatalf("endpoint %s: %d export requests", ep, posts.Load())
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{SampleRatio: -0.1}, {SampleRatio: 1.5}, {SampleRatio: 1, RecorderSpans: -1}} {
		if c.Validate() == nil {
			t.Errorf("%+v validated", c)
		}
	}
	if _, err := New(context.Background(), Config{SampleRatio: 2, RecorderSpans: 1}, Options{}); err == nil {
		t.Error("New accepted a bad config")
	}
}

func TestHandler(t *testing.T) {
	p := recorderProvider(t)
	ctx, root := p.Tracer("t").Start(context.Background(), "root")
	_, c := p.Tracer("t").Start(ctx, "child")
	c.End()
	root.End()
	srv := httptest.NewServer(Handler(p.Recorder()))
	defer srv.Close()
	get := func(q string) string {
		resp, err := http.Get(srv.URL + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	id := root.SpanContext().TraceID().String()
	if l := get(""); !strings.Contains(l, id) || !strings.Contains(l, `"root": "root"`) || !strings.Contains(l, `"spans": 2`) {
		t.Errorf("list %s", l)
	}
	if txt := get("?format=text&trace_id=" + id); !strings.Contains(txt, "  child") {
		t.Errorf("text %s", txt)
	}
	rec := httptest.NewRecorder()
	Handler(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("no recorder: %d", rec.Code)
	}
}
