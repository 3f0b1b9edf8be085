package distributor

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// BenchmarkDecodeValidate is the distributor's CPU work per push before
// Kafka: read and decode the HTTP body, then validate every stream and
// entry. 1000 lines of the realistic mix per push.
func BenchmarkDecodeValidate(b *testing.B) {
	req := pushtest.Request(pushtest.Options{Streams: 10, LinesPerStream: 100, Start: testNow.Add(-time.Minute), Seed: 1, StructuredMetadata: true})
	lim := tenant.DefaultLimits()
	lines := req.Entries()
	for _, enc := range []pushtest.Encoding{pushtest.JSON, pushtest.Protobuf} {
		b.Run(enc.String(), func(b *testing.B) {
			body, h, err := pushtest.Body(req, enc)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, "/loki/api/v1/push", bytes.NewReader(body))
				r.Header = h
				got, _, err := push.ReadRequest(r, push.ReadOptions{MaxBytes: 100 << 20})
				if err != nil {
					b.Fatal(err)
				}
				if v := validate(got, &lim, testNow, 960<<10); v.lines != lines {
					b.Fatalf("%d valid lines, want %d", v.lines, lines)
				}
			}
			b.ReportMetric(float64(b.N*lines)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}

// BenchmarkPushEndToEnd measures acknowledged throughput: 8 concurrent
// clients POST 100-line protobuf pushes over HTTP to a distributor writing
// to the embedded broker (persisted to disk), each push answered only after
// Kafka acknowledged it. It reports lines/s and push latency percentiles.
// The no-kafka case is the baseline: the same HTTP, decoding and validation,
// with a producer that acknowledges at once; the ratio between the two is
// what durability in Kafka costs.
//
//	go test ./pkg/distributor -run '^$' -bench PushEndToEnd -benchtime 10s
func BenchmarkPushEndToEnd(b *testing.B) {
	for _, kafka := range []bool{true, false} {
		name := "kafka"
		if !kafka {
			name = "no-kafka"
		}
		b.Run(name, func(b *testing.B) { benchmarkPushEndToEnd(b, kafka) })
	}
}

// ackingProducer acknowledges every record at once: no Kafka.
type ackingProducer struct{}

func (ackingProducer) TryProduce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	promise(r, nil)
}

func benchmarkPushEndToEnd(b *testing.B, withKafka bool) {
	h := newHarness(b, harnessOptions{partitions: 12, limits: func(l *tenant.Limits) {
		// The harness clock stands still, so the bucket never refills:
		// make it large enough for the whole run.
		l.IngestionRateMB, l.IngestionBurstSizeMB = 1e6, 1e6
	}})
	if !withKafka {
		h.d.deps.Producer = ackingProducer{}
	}
	url := h.srv.URL + "/loki/api/v1/push"
	const clients, linesPerPush = 8, 100
	bodies := make([][]byte, 64)
	for i := range bodies {
		req := pushtest.Request(pushtest.Options{Streams: 4, LinesPerStream: linesPerPush / 4, Start: testNow.Add(-time.Minute), Seed: uint64(i)})
		bodies[i] = push.EncodeSnappyProto(req)
	}
	var (
		mu        sync.Mutex
		latencies []time.Duration
		next      = make(chan int)
		wg        sync.WaitGroup
	)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := range next {
				start := time.Now()
				resp, err := client.Post(url, "application/x-protobuf", bytes.NewReader(bodies[i%len(bodies)]))
				if err != nil {
					b.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					b.Errorf("push answered %d", resp.StatusCode)
					return
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		}()
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	b.StopTimer()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(latencies)*linesPerPush)/b.Elapsed().Seconds(), "lines/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
