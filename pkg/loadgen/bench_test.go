package loadgen

import (
	"runtime"
	"testing"
	"time"
)

// BenchmarkGenerate measures the generator: one line per op for each
// shape (allocs/op is allocations per line), and whole pushes as a worker
// builds and encodes them, reported per line.
func BenchmarkGenerate(b *testing.B) {
	ts := time.Now()
	for s := range numShapes {
		b.Run("line/"+s.String(), func(b *testing.B) {
			var mix Mix
			mix[s] = 1
			g := newGenerator(mix, 0, "k3f9x2", 3, 1)
			buf := make([]byte, 0, 4096)
			total := 0
			b.ReportAllocs()
			start := time.Now()
			for i := range b.N {
				buf, _ = g.appendLine(buf[:0], ts, uint64(i))
				total += len(buf)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lines/s")
			b.ReportMetric(float64(total)/float64(b.N), "bytes/line")
		})
	}
	for _, enc := range []string{"protobuf", "json"} {
		b.Run("push/"+enc, func(b *testing.B) {
			cfg := testConfig(b, func(c *Config) { c.Encoding = enc })
			l, err := New(cfg, Deps{})
			if err != nil {
				b.Fatal(err)
			}
			w := l.newWorker(0, newPacer(&cfg, time.Now()))
			bytes := 0
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ReportAllocs()
			start := time.Now()
			for range b.N {
				_, size := w.build()
				w.restamp()
				if _, _, err := w.encode(); err != nil {
					b.Fatal(err)
				}
				bytes += size
			}
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			lines := float64(b.N * cfg.BatchLines)
			b.ReportMetric(lines/elapsed.Seconds(), "lines/s")
			b.ReportMetric(float64(bytes)/elapsed.Seconds()/(1<<20), "MB/s")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/lines, "allocs/line")
		})
	}
}
