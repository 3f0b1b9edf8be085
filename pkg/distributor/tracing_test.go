package distributor

import (
	"net/http"
	"testing"

	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/push"
)

// TestTracePropagationOff: with kafka_trace_propagation off the records
// carry no traceparent even when the client sent one — the trace
// scenario's broken knob.
func TestTracePropagationOff(t *testing.T) {
	h := newHarness(t, harnessOptions{cfg: func(c *Config) { c.TracePropagation = false }})
	req := &push.Request{Streams: []push.Stream{{Labels: `{app="api"}`, Entries: []push.Entry{{Timestamp: ts(0), Line: "traced"}}}}}
	r, err := pushtest.NewRequest(h.srv.URL+"/loki/api/v1/push", "", req, pushtest.JSON)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	if resp := h.do(r); resp.code != http.StatusNoContent {
		t.Fatalf("push: %d", resp.code)
	}
	recs := h.drain()
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	if tp := kafka.Traceparent(recs[0]); tp != "" {
		t.Fatalf("traceparent %q carried with propagation off", tp)
	}
}
