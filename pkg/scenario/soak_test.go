package scenario

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSoakGrowthJudgement: the growth measure sees a slow leak through
// noise bigger than the leak's per-sample step, and calls a noisy but flat
// series flat; error bursts are windows with several failures, a lone
// failure is not one.
func TestSoakGrowthJudgement(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	series := func(n int, f func(i int) float64) []Point {
		ps := make([]Point, n)
		for i := range ps {
			ps[i] = Point{T: t0.Add(time.Duration(i) * time.Second), V: f(i)}
		}
		return ps
	}
	// GC sawtooth of ±20MB around 100MB: flat.
	saw := func(i int) float64 { return 100e6 + 20e6*float64(i%7-3)/3 }
	// The same plus a leak of 100KB/s: 6MB/min.
	leaky := func(i int) float64 { return saw(i) + 100e3*float64(i) }
	end := t0.Add(10 * time.Minute)
	g, ok := measureGrowth(series(600, saw), t0, end)
	if !ok || math.Abs(g.Delta) > 5e6 {
		t.Errorf("flat sawtooth: growth %+v, want |delta| < 5MB", g)
	}
	g, ok = measureGrowth(series(600, leaky), t0, end)
	// The thirds' middles are 400s apart: 40MB, 60MB per 10 minutes.
	if !ok || math.Abs(g.Delta-40e6) > 5e6 || math.Abs(g.PerTenMinutes-60e6) > 8e6 {
		t.Errorf("leaky: growth %+v, want delta ≈ 40MB and ≈ 60MB per 10 min", g)
	}
	// The warm-up is left out: a series that climbs and then stays is flat.
	climb := func(i int) float64 { return float64(min(i, 60)) * 1e6 }
	if g, _ := measureGrowth(series(600, climb), t0.Add(2*time.Minute), end); g.Delta != 0 {
		t.Errorf("after the warm-up the climb is over: delta %v, want 0", g.Delta)
	}
	// A query's working set: 50MB between queries, 1GB during one, and
	// the queries take longer as the run goes on (a quarter of the time
	// in the first third, three quarters in the last). The median climbs
	// with the duty cycle; the floor, what stays between queries, does
	// not, and a leak under the same sawtooth lifts both.
	busy := func(i int) float64 {
		duty := 2 + 6*i/600 // of 8 seconds
		if i%8 < duty {
			return 1e9
		}
		return 50e6
	}
	g, _ = measureGrowth(series(600, busy), t0, end)
	if g.Delta < 500e6 || g.FloorFirst != 50e6 || g.FloorLast != 50e6 {
		t.Errorf("working set with a growing duty cycle: %+v, want the median up by over 500MB and the floor at 50MB in both thirds", g)
	}
	g, _ = measureGrowth(series(600, func(i int) float64 { return busy(i) + 100e3*float64(i) }), t0, end)
	if g.FloorLast-g.FloorFirst < 30e6 {
		t.Errorf("leak under the working set: floor %v → %v, want it lifted by the leak (≈ 40MB)", g.FloorFirst, g.FloorLast)
	}
	if _, ok := measureGrowth(series(5, saw), t0, end); ok {
		t.Error("five points judged; want too few")
	}

	var es []soakEvent
	for i := range 300 { // 10 events a second for 30s
		es = append(es, soakEvent{At: t0.Add(time.Duration(i) * 100 * time.Millisecond)})
	}
	es[5].Failed = true // a lone failure in the first window
	for i := 150; i < 155; i++ {
		es[i].Failed = true // five in the second window
	}
	bs := errorBursts(es, t0, t0.Add(30*time.Second), 10*time.Second, 0.01)
	if len(bs) != 1 || bs[0].Failed != 5 || bs[0].Total != 100 || !bs[0].From.Equal(t0.Add(10*time.Second)) {
		t.Errorf("bursts %+v, want one: 5 of 100 from +10s", bs)
	}
}

// TestSoakIsWellFormed: the soak is not a lab question (All does not list
// it; `lokilab soak` runs it), its knobs resolve in both modes and its
// code to read exists.
func TestSoakIsWellFormed(t *testing.T) {
	s := Soak()
	for _, o := range All() {
		if o.Name == s.Name {
			t.Fatal("the soak is listed among the lab's questions")
		}
	}
	for _, short := range []bool{false, true} {
		v, err := Resolve(s, short, nil)
		if err != nil {
			t.Fatal(err)
		}
		if v.Duration("query-range") >= v.Duration("warmup") || v.Duration("warmup") >= v.Duration("duration") {
			t.Errorf("short=%v: query-range %s, warmup %s, duration %s: want each shorter than the next", short, v.Duration("query-range"), v.Duration("warmup"), v.Duration("duration"))
		}
	}
	for _, c := range s.Code {
		if _, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(c.Path))); err != nil {
			t.Errorf("code to read %q: %v", c.Path, err)
		}
	}
}

func runSoakForTest(t *testing.T, knobs map[string]string) (*Result, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the whole system as processes and soaks it for minutes")
	}
	bin := lokilabBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	var progress strings.Builder
	dir := t.TempDir()
	start := time.Now()
	res, err := Run(ctx, Soak(), Options{Short: true, Dir: dir, Knobs: knobs, Progress: &progress, Binary: bin})
	t.Logf("soak %v took %s:\n%s", knobs, time.Since(start).Round(time.Millisecond), progress.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Err != nil {
		t.Fatalf("the run stopped early: %v", res.Err)
	}
	noLeftovers(t, 0)
	return res, dir
}

// TestSoak is the CI soak: two minutes at half the measured maximum with
// live queries and a tail against `lokilab run -processes`; every
// component's goroutines, heap and RSS flat after a 30s warm-up, no error
// bursts.
func TestSoak(t *testing.T) {
	res, dir := runSoakForTest(t, nil)
	requirePassed(t, res)
	b, err := os.ReadFile(res.Report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### Growth after the warm-up", "| querier | goroutines |", "| ingester-1 | heap in use |", "maximum rate (probe)"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, png := range []string{"soak-goroutines.png", "soak-heap.png", "soak-rss.png", "soak-pushes.png", "soak-queries.png"} {
		checkPNG(t, filepath.Join(dir, png))
	}
}

// TestSoakFailsOnALeak is the broken knob: the lab's tail leak on, and
// the tail reopened every half second, so the querier gains about two
// goroutines a second (some 80 between the thirds' middles of a 90s soak
// after its 30s warm-up, against a bound of 25). The goroutine check must
// fail; the memory checks may fail with it (each leaked tail pins its
// tailer, which under this load holds the lines of its newest push), and
// nothing else may: no push or query failed for it.
func TestSoakFailsOnALeak(t *testing.T) {
	res, _ := runSoakForTest(t, map[string]string{"leak": "true", "duration": "90s"})
	got := failedChecks(res)
	growth := []string{"goroutines flat in every component", "heap in use flat in every component", "resident memory flat in every component"}
	if !slices.Contains(got, growth[0]) {
		t.Errorf("the goroutine check passed with the leak on; failed checks: %q", got)
	}
	for _, c := range got {
		if !slices.Contains(growth, c) {
			t.Errorf("check %q failed: only the growth checks may", c)
		}
	}
}
