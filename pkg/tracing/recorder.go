package tracing

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Span is a finished span as the recorder keeps it: plain values, ready
// for JSON and for printing as a tree.
type Span struct {
	TraceID  string            `json:"trace_id"`
	SpanID   string            `json:"span_id"`
	ParentID string            `json:"parent_id,omitempty"`
	Name     string            `json:"name"`
	Service  string            `json:"service,omitempty"`
	Start    time.Time         `json:"start"`
	End      time.Time         `json:"end"`
	Attrs    map[string]string `json:"attributes,omitempty"`
	// Links are the span contexts the span is linked to ("trace/span").
	Links  []Link `json:"links,omitempty"`
	Status string `json:"status,omitempty"` // "error: …" when the span failed
}

// Link is one span link.
type Link struct {
	TraceID string `json:"trace_id"`
	SpanID  string `json:"span_id"`
}

// Duration is End − Start.
func (s Span) Duration() time.Duration { return s.End.Sub(s.Start) }

// Recorder is an sdktrace.SpanProcessor that keeps the last N finished
// spans in memory: the lab's own trace backend, for the scenario and for
// /debug/traces, with no collector to run. Older spans are overwritten.
type Recorder struct {
	mu    sync.Mutex
	spans []Span // ring buffer
	next  int
	full  bool
}

// NewRecorder keeps up to n spans.
func NewRecorder(n int) *Recorder { return &Recorder{spans: make([]Span, max(n, 1))} }

// OnStart does nothing: only finished spans are kept.
func (r *Recorder) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd keeps the span.
func (r *Recorder) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	sp := Span{
		TraceID: s.SpanContext().TraceID().String(),
		SpanID:  s.SpanContext().SpanID().String(),
		Name:    s.Name(),
		Start:   s.StartTime(),
		End:     s.EndTime(),
	}
	if p := s.Parent(); p.IsValid() {
		sp.ParentID = p.SpanID().String()
	}
	if res := s.Resource(); res != nil {
		if v, ok := res.Set().Value("service.name"); ok {
			sp.Service = v.String()
		}
	}
	if attrs := s.Attributes(); len(attrs) > 0 {
		sp.Attrs = make(map[string]string, len(attrs))
		for _, kv := range attrs {
			sp.Attrs[string(kv.Key)] = kv.Value.String()
		}
	}
	for _, l := range s.Links() {
		sp.Links = append(sp.Links, Link{TraceID: l.SpanContext.TraceID().String(), SpanID: l.SpanContext.SpanID().String()})
	}
	if st := s.Status(); st.Code.String() == "Error" {
		sp.Status = "error: " + st.Description
	}
	r.mu.Lock()
	r.spans[r.next] = sp
	r.next++
	if r.next == len(r.spans) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// Shutdown does nothing; the spans stay readable.
func (r *Recorder) Shutdown(context.Context) error { return nil }

// ForceFlush does nothing: OnEnd has already kept every span.
func (r *Recorder) ForceFlush(context.Context) error { return nil }

// Spans returns the kept spans, oldest first.
func (r *Recorder) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Span
	if r.full {
		out = append(out, r.spans[r.next:]...)
	}
	return append(out, r.spans[:r.next]...)
}

// Trace returns the kept spans of one trace, ordered by start time.
func (r *Recorder) Trace(traceID string) []Span {
	var out []Span
	for _, s := range r.Spans() {
		if s.TraceID == traceID {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Handler serves GET /debug/traces: without parameters a JSON list of the
// kept traces (ID, root span name, span count); with ?trace_id= that
// trace's spans as JSON, or as the printed tree with &format=text.
func Handler(r *Recorder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r == nil {
			http.Error(w, errNoRecorder.Error(), http.StatusNotFound)
			return
		}
		id := req.URL.Query().Get("trace_id")
		if id == "" {
			writeJSON(w, summarize(r.Spans()))
			return
		}
		spans := r.Trace(id)
		if req.URL.Query().Get("format") == "text" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte(FormatTree(BuildTree(spans))))
			return
		}
		writeJSON(w, spans)
	})
}

// TraceSummary is one trace in /debug/traces's list.
type TraceSummary struct {
	TraceID string    `json:"trace_id"`
	Root    string    `json:"root"`
	Spans   int       `json:"spans"`
	Start   time.Time `json:"start"`
}

func summarize(spans []Span) []TraceSummary {
	byID := map[string][]Span{}
	var order []string
	for _, s := range spans {
		if byID[s.TraceID] == nil {
			order = append(order, s.TraceID)
		}
		byID[s.TraceID] = append(byID[s.TraceID], s)
	}
	out := make([]TraceSummary, 0, len(order))
	for _, id := range order {
		t := BuildTree(byID[id])
		out = append(out, TraceSummary{TraceID: id, Root: t.Roots[0].Span.Name, Spans: len(byID[id]), Start: t.Start})
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
