package ingester

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/tracing"
)

// BenchmarkConsumeBatchTracing is the tracing cost a poll batch pays on top
// of applying its records: with tracing off one bool test per batch; on,
// a header scan and parse per record plus two spans per trace in the
// batch — per record and per push, never per line.
func BenchmarkConsumeBatchTracing(b *testing.B) {
	const records, pushes = 1000, 10
	recs := make([]*kgo.Record, records)
	tps := make([]string, pushes)
	for i := range tps {
		tps[i] = "00-" + randHexForBench(16, i) + "-" + randHexForBench(8, i) + "-01"
	}
	for i := range recs {
		recs[i] = &kgo.Record{Offset: int64(i), Timestamp: time.Now(), Key: []byte("t"),
			Value:   []byte{0x0a, 2, '{', '}'},
			Headers: []kgo.RecordHeader{{Key: kafka.TraceparentHeader, Value: []byte(tps[i%pushes])}}}
	}
	for _, on := range []bool{false, true} {
		name := "off"
		var tr *traces
		if on {
			name = "on"
			tp, err := tracing.New(context.Background(), tracing.Config{SampleRatio: 1, RecorderSpans: 1024}, tracing.Options{})
			if err != nil {
				b.Fatal(err)
			}
			tr = newTraces(tp)
		} else {
			tr = newTraces(nil)
		}
		p := &partition{id: 1, ing: &Ingester{now: time.Now}, streams: map[string]map[string]*stream{}}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tr.consumeBatch(p, recs)()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*records), "ns/record")
		})
	}
}

func randHexForBench(n, seed int) string {
	const hexdigits = "0123456789abcdef"
	out := make([]byte, 2*n)
	for i := range out {
		out[i] = hexdigits[(i*7+seed*13+1)%16]
	}
	return string(out)
}
