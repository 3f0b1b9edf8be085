package distributor

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// BenchmarkPushAllocsPerLine is the steady-state allocation count of the
// push path per line, the figure docs/performance.md holds against its
// target of at most 2: a push request served by ServeHTTP — read and
// decompress the body, decode it, validate every stream and entry, check
// the stream limit, encode the Kafka records and hand them to a producer
// that acknowledges at once (so Kafka's own allocations, which depend on
// batching, are not counted) — with the HTTP transport left out
// (httptest.NewRecorder). Pushes have the shape lokilab load sends by
// default (100 lines in 4 streams) and a large batch (1000 lines in 10
// streams), in JSON and protobuf. It reports allocs/line and, as
// "%-of-budget", allocs/line as a percentage of the 2 per line allowed.
//
//	go test ./pkg/distributor -run '^$' -bench PushAllocsPerLine -count 3
func BenchmarkPushAllocsPerLine(b *testing.B) {
	h := newHarness(b, harnessOptions{partitions: 12, limits: func(l *tenant.Limits) {
		l.IngestionRateMB, l.IngestionBurstSizeMB = 1e9, 1e9
	}})
	h.d.deps.Producer = ackingProducer{}
	for _, shape := range []struct {
		name           string
		streams, lines int
	}{{"100-lines", 4, 25}, {"1000-lines", 10, 100}} {
		for _, enc := range []pushtest.Encoding{pushtest.JSON, pushtest.Protobuf} {
			b.Run(shape.name+"/"+enc.String(), func(b *testing.B) {
				req := pushtest.Request(pushtest.Options{Streams: shape.streams, LinesPerStream: shape.lines, Start: testNow.Add(-time.Minute), Seed: 1, StructuredMetadata: true})
				body, hdr, err := pushtest.Body(req, enc)
				if err != nil {
					b.Fatal(err)
				}
				lines := req.Entries()
				serve := func() {
					r := httptest.NewRequest(http.MethodPost, "/loki/api/v1/push", bytes.NewReader(body))
					r.Header = hdr.Clone()
					r.Header.Set("X-Scope-OrgID", "bench")
					w := httptest.NewRecorder()
					h.d.ServeHTTP(w, r)
					if w.Code != http.StatusNoContent {
						b.Fatalf("push answered %d: %s", w.Code, w.Body)
					}
				}
				for range 10 {
					serve() // warm the streams, metrics and pools
				}
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				for b.Loop() {
					serve()
				}
				runtime.ReadMemStats(&after)
				perLine := float64(after.Mallocs-before.Mallocs) / float64(b.N*lines)
				b.ReportMetric(perLine, "allocs/line")
				b.ReportMetric(100*perLine/2, "%-of-budget")
				b.ReportMetric(float64(b.N*lines)/b.Elapsed().Seconds(), "lines/s")
			})
		}
	}
}
