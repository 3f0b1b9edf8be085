package scenario

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeMetrics serves the exposition text its current page holds.
type fakeMetrics struct {
	mu   sync.Mutex
	page string
	fail bool
}

func (f *fakeMetrics) set(page string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.page = page
}

func (f *fakeMetrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprint(w, f.page)
}

func page(received, streams float64, sum float64, count int) string {
	return fmt.Sprintf(`# HELP loki_distributor_bytes_received_total Bytes received.
# TYPE loki_distributor_bytes_received_total counter
loki_distributor_bytes_received_total{tenant="a"} %g
loki_distributor_bytes_received_total{tenant="b"} 7
# HELP loki_ingester_memory_streams Streams.
# TYPE loki_ingester_memory_streams gauge
loki_ingester_memory_streams{tenant="a"} %g
# HELP loki_request_duration_seconds Latency.
# TYPE loki_request_duration_seconds histogram
loki_request_duration_seconds_bucket{route="push",le="0.1"} %d
loki_request_duration_seconds_bucket{route="push",le="+Inf"} %d
loki_request_duration_seconds_sum{route="push"} %g
loki_request_duration_seconds_count{route="push"} %d
# HELP unrelated_total Not selected.
# TYPE unrelated_total counter
unrelated_total 1
`, received, streams, count, count, sum, count)
}

func TestSamplerRecordsSelectedSeries(t *testing.T) {
	fm := &fakeMetrics{}
	srv := httptest.NewServer(fm)
	defer srv.Close()
	s := NewSampler(SamplerConfig{}, []Target{{Name: "distributor", URL: srv.URL}, {Name: "ingester-0", URL: srv.URL}}, []Selector{
		{Name: "loki_distributor_bytes_received_total", Labels: map[string]string{"tenant": "a"}, Target: "distributor"},
		{Name: "loki_ingester_memory_streams", Target: "ingester"},
		{Name: "loki_request_duration_seconds_count", Labels: map[string]string{"route": "push"}},
	})
	ctx := context.Background()
	for i, p := range []string{page(100, 1, 0.5, 10), page(300, 2, 1.5, 30), page(600, 0, 2.0, 40)} {
		fm.set(p)
		if err := s.Scrape(ctx); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	for _, tc := range []struct {
		name   string
		sel    Selector
		series int
		last   float64
	}{
		{"counter with a label matcher, one target", Selector{Name: "loki_distributor_bytes_received_total"}, 1, 600},
		{"gauge from the ingester target only", Selector{Name: "loki_ingester_memory_streams"}, 1, 0},
		{"histogram count from both targets", Selector{Name: "loki_request_duration_seconds_count"}, 2, 40},
		{"tenant b was not selected", Selector{Name: "loki_distributor_bytes_received_total", Labels: map[string]string{"tenant": "b"}}, 0, 0},
		{"unselected family is not recorded", Selector{Name: "unrelated_total"}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := s.Select(tc.sel)
			if len(got) != tc.series {
				t.Fatalf("%d series, want %d", len(got), tc.series)
			}
			for _, ser := range got {
				if len(ser.Points) != 3 {
					t.Errorf("%s: %d points, want 3", ser.Key(), len(ser.Points))
				}
				if p, _ := ser.Last(); p.V != tc.last {
					t.Errorf("%s: last %v, want %v", ser.Key(), p.V, tc.last)
				}
			}
		})
	}
	c := s.Select(Selector{Name: "loki_request_duration_seconds_count"})[0]
	if !c.Counter {
		t.Error("a histogram's _count is not marked a counter")
	}
	if g := s.Select(Selector{Name: "loki_ingester_memory_streams"})[0]; g.Counter || g.Max() != 2 {
		t.Errorf("gauge: counter %v max %v, want false and 2", g.Counter, g.Max())
	}
	// Both targets' points of a round share a timestamp, so they sum.
	sum := Sum(s.Select(Selector{Name: "loki_request_duration_seconds_count"}), false)
	if len(sum) != 3 || sum[2].V != 80 {
		t.Fatalf("sum of two targets = %v, want 3 points ending at 80", sum)
	}
	if st := s.Stats(); st.Rounds != 3 || st.Scrapes != 6 || st.Failures != 0 || st.Series != 4 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }
	for _, tc := range []struct {
		name   string
		points []Point
		want   []float64
	}{
		{"none", nil, nil},
		{"one point has no rate", []Point{{at(0), 5}}, nil},
		{"steady", []Point{{at(0), 0}, {at(1), 10}, {at(2), 20}}, []float64{10, 10}},
		{"uneven intervals", []Point{{at(0), 0}, {at(0.5), 10}, {at(2.5), 30}}, []float64{20, 10}},
		{"flat", []Point{{at(0), 7}, {at(1), 7}}, []float64{0}},
		{"counter reset counts the new value", []Point{{at(0), 100}, {at(1), 110}, {at(2), 4}}, []float64{10, 4}},
		{"equal timestamps are skipped", []Point{{at(0), 1}, {at(0), 2}, {at(1), 4}}, []float64{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := (&Series{Points: tc.points}).Rate()
			if len(got) != len(tc.want) {
				t.Fatalf("rate = %v, want %v", got, tc.want)
			}
			for i := range got {
				if math.Abs(got[i].V-tc.want[i]) > 1e-9 {
					t.Fatalf("rate[%d] = %v, want %v", i, got[i].V, tc.want[i])
				}
			}
		})
	}
}

func TestSamplerMemoryIsBounded(t *testing.T) {
	fm := &fakeMetrics{}
	srv := httptest.NewServer(fm)
	defer srv.Close()
	var b strings.Builder
	b.WriteString("# TYPE many gauge\n")
	for i := range 50 {
		fmt.Fprintf(&b, "many{i=\"%d\"} %d\n", i, i)
	}
	fm.set(b.String())
	s := NewSampler(SamplerConfig{MaxPoints: 8, MaxSeries: 10}, []Target{{Name: "x", URL: srv.URL}}, []Selector{{Name: "many"}})
	ctx := context.Background()
	for range 20 {
		if err := s.Scrape(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.Series != 10 || st.DroppedSeries == 0 {
		t.Fatalf("series %d dropped %d; want 10 kept and the rest dropped", st.Series, st.DroppedSeries)
	}
	for _, ser := range s.Select(Selector{Name: "many"}) {
		if len(ser.Points) > 8 {
			t.Fatalf("%s holds %d points, bound is 8", ser.Key(), len(ser.Points))
		}
		// Halving keeps the whole run: the first and the last scrape.
		if len(ser.Points) < 4 {
			t.Fatalf("%s holds %d points after halving", ser.Key(), len(ser.Points))
		}
	}
	if st.Halvings == 0 {
		t.Fatal("no halving recorded")
	}
}

func TestHalveKeepsFirstAndLast(t *testing.T) {
	for n := 4; n <= 9; n++ {
		ps := make([]Point, n)
		for i := range ps {
			ps[i].V = float64(i)
		}
		got := halve(ps)
		if got[0].V != 0 || got[len(got)-1].V != float64(n-1) || len(got) > n/2+1 {
			t.Fatalf("halve(%d points) = %v", n, got)
		}
		for i := 1; i < len(got); i++ {
			if got[i].V <= got[i-1].V {
				t.Fatalf("halve(%d points) out of order: %v", n, got)
			}
		}
	}
}

func TestSamplerCountsFailures(t *testing.T) {
	fm := &fakeMetrics{fail: true}
	srv := httptest.NewServer(fm)
	defer srv.Close()
	s := NewSampler(SamplerConfig{}, []Target{{Name: "down", URL: srv.URL}}, []Selector{{Name: "x"}})
	if err := s.Scrape(context.Background()); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Scrape = %v, want the 503", err)
	}
	if st := s.Stats(); st.Failures != 1 || !strings.Contains(st.LastErrors["down"], "503") {
		t.Fatalf("stats %+v", st)
	}
}

func TestSamplerRunStopsWithContext(t *testing.T) {
	fm := &fakeMetrics{}
	fm.set(page(1, 1, 1, 1))
	srv := httptest.NewServer(fm)
	defer srv.Close()
	s := NewSampler(SamplerConfig{Interval: 10 * time.Millisecond}, []Target{{Name: "d", URL: srv.URL}}, []Selector{{Name: "loki_ingester_memory_streams"}})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if st := s.Stats(); st.Rounds < 5 {
		t.Fatalf("%d rounds in 200ms at a 10ms interval", st.Rounds)
	}
}

// A labelled series appears on first use; before that it was zero, and
// the sampler records those zeros so a plot shows the step.
func TestSeriesFirstSeenMidRunStartsAtZero(t *testing.T) {
	fm := &fakeMetrics{}
	srv := httptest.NewServer(fm)
	defer srv.Close()
	s := NewSampler(SamplerConfig{}, []Target{{Name: "d", URL: srv.URL}}, []Selector{{Name: "lines_total"}})
	ctx := context.Background()
	for _, p := range []string{"", "", "# TYPE lines_total counter\nlines_total{tenant=\"a\"} 100\n", "# TYPE lines_total counter\nlines_total{tenant=\"a\"} 150\n"} {
		fm.set(p)
		if err := s.Scrape(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	got := s.Select(Selector{Name: "lines_total"})
	if len(got) != 1 {
		t.Fatalf("%d series", len(got))
	}
	var vs []float64
	for _, p := range got[0].Points {
		vs = append(vs, p.V)
	}
	if fmt.Sprint(vs) != "[0 0 100 150]" {
		t.Fatalf("points %v, want [0 0 100 150]", vs)
	}
}
