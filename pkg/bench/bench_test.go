package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/loadgen"
)

func loadConfig(t *testing.T, d time.Duration) loadgen.Config {
	t.Helper()
	var c loadgen.Config
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := config.Parse(fs, nil, &c); err != nil {
		t.Fatal(err)
	}
	c.Duration = d
	c.Concurrency = 2
	c.LinesPerSecond = 0 // as fast as the target takes
	c.Seed = 42
	c.TenantPrefix = "" // tenant "1": VictoriaLogs reads the header as a number
	c.ProgressInterval = time.Hour
	return c
}

// TestRunComparesLokilabWithAnotherEndpoint runs the benchmark, short,
// against an in-process lokilab and a fake Loki endpoint that accepts
// everything, and checks what the report needs: both got load, lokilab's
// lag was sampled and drained, its store holds every accepted line after
// the forced flush, the fake has neither, and the table has a row and a
// ratio for each. (No figure is asserted: speed is for
// benchmarks on a quiet machine, not for a test.)
func TestRunComparesLokilabWithAnotherEndpoint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lab, err := StartLokilab(ctx, t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		stopCtx, c := context.WithTimeout(context.Background(), 30*time.Second)
		defer c()
		if err := lab.Stop(stopCtx); err != nil {
			t.Errorf("stopping lokilab: %v", err)
		}
	}()
	var fakeBytes atomic.Int64
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fakeBytes.Add(n)
		if r.Header.Get("X-Scope-OrgID") != "1" {
			http.Error(w, "want tenant 1", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer fake.Close()

	var progress strings.Builder
	rs, err := Run(ctx, Config{Load: loadConfig(t, 3*time.Second), LagInterval: 250 * time.Millisecond, Pause: 100 * time.Millisecond},
		[]Target{lab.Target("lokilab"), {Name: "fake", URL: fake.URL + "/insert/loki/api/v1/push"}}, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Target != "lokilab" || rs[1].Target != "fake" {
		t.Fatalf("results %+v", rs)
	}
	for _, r := range rs {
		if r.Summary.Accepted.Lines == 0 || r.Summary.RejectedLines() != 0 {
			t.Errorf("%s: accepted %d lines, refused %d (%v)", r.Target, r.Summary.Accepted.Lines, r.Summary.RejectedLines(), r.Summary.Rejected)
		}
		if r.AcceptedMBps() <= 0 || r.Summary.Latency.P99 < r.Summary.Latency.P50 {
			t.Errorf("%s: %.2f MiB/s, p50 %s p99 %s", r.Target, r.AcceptedMBps(), r.Summary.Latency.P50, r.Summary.Latency.P99)
		}
	}
	if fakeBytes.Load() == 0 {
		t.Error("the fake endpoint received nothing")
	}
	l := rs[0].Lag
	if l == nil || l.Samples == 0 || l.Err != nil {
		t.Fatalf("lokilab lag not sampled: %+v", l)
	}
	if !l.Drained {
		t.Errorf("lokilab's lag did not drain: %+v", l)
	}
	if rs[1].Lag != nil || rs[1].Flush != nil {
		t.Errorf("the fake endpoint has a lag or store report: %+v, %+v", rs[1].Lag, rs[1].Flush)
	}
	// Nothing acknowledged is lost: after the forced flush, the store
	// holds exactly the accepted lines (a fresh lab, no replay, so no
	// line twice either).
	f := rs[0].Flush
	if f == nil || f.Err != nil {
		t.Fatalf("lokilab store not measured: %+v", f)
	}
	if f.Total != float64(rs[0].Summary.Accepted.Lines) || f.DuringLoad+f.Backlog != f.Total {
		t.Errorf("store holds %.0f lines (%.0f during the load + %.0f forced), accepted %d", f.Total, f.DuringLoad, f.Backlog, rs[0].Summary.Accepted.Lines)
	}
	if m := f.InMemory; m == nil || m.Samples == 0 || m.Err != nil || m.Max <= 0 {
		t.Errorf("unflushed lines not sampled during the load: %+v", m)
	}
	var out strings.Builder
	if err := WriteReport(&out, rs); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"lokilab", "fake", "MiB/s vs lokilab", "1.00x", "lokilab ingest lag", "drained to 0", "lokilab store:", "all in the store", "lokilab unflushed lines"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("\n%s%s", progress.String(), out.String())
}

// TestMeasureFlush: the store report counts what was flushed during the
// load and by the forced flush, and says when lines are missing, stored
// twice, or the flush failed.
func TestMeasureFlush(t *testing.T) {
	for _, tc := range []struct {
		name             string
		before, atEnd    float64
		flushAdds        float64
		flushErr         error
		accepted         int64
		during, backlog  float64
		missing, twice   float64
		wantErr, wantTxt string
	}{
		{name: "all stored", before: 100, atEnd: 700, flushAdds: 400, accepted: 1000, during: 600, backlog: 400, wantTxt: "all in the store"},
		{name: "lines lost", before: 0, atEnd: 500, flushAdds: 300, accepted: 1000, during: 500, backlog: 300, missing: 200, wantTxt: "200 accepted lines MISSING"},
		{name: "replayed twice", before: 0, atEnd: 900, flushAdds: 300, accepted: 1000, during: 900, backlog: 300, twice: 200, wantTxt: "200 lines stored twice"},
		{name: "flush fails", before: 0, atEnd: 500, flushErr: errors.New("store down"), accepted: 1000, during: 500, missing: 500, wantErr: "store down", wantTxt: "FAILED: flushing: store down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.atEnd
			s := &Store{
				Flushed: func(context.Context) (float64, error) { return v, nil },
				Flush: func(context.Context) error {
					v += tc.flushAdds
					return tc.flushErr
				},
			}
			f := measureFlush(context.Background(), s, tc.before, tc.accepted)
			if f.DuringLoad != tc.during {
				t.Errorf("during the load %.0f, want %.0f", f.DuringLoad, tc.during)
			}
			if f.Backlog != tc.backlog || f.Missing() != tc.missing || f.Total-float64(f.Accepted) != tc.twice-tc.missing {
				t.Errorf("backlog %.0f missing %.0f total %.0f, want %.0f, %.0f, twice %.0f", f.Backlog, f.Missing(), f.Total, tc.backlog, tc.missing, tc.twice)
			}
			if (f.Err == nil) != (tc.wantErr == "") || (f.Err != nil && !strings.Contains(f.Err.Error(), tc.wantErr)) {
				t.Errorf("err %v, want %q", f.Err, tc.wantErr)
			}
			line := flushLine(&Result{Target: "lokilab", Flush: f})
			if !strings.Contains(line, tc.wantTxt) {
				t.Errorf("report line %q lacks %q", line, tc.wantTxt)
			}
		})
	}
}

// TestJudgeLag: a lag that climbs through the run is growing; one that
// wobbles around a level, or stays under the slack, is not.
func TestJudgeLag(t *testing.T) {
	for _, tc := range []struct {
		name    string
		samples []float64
		growing bool
	}{
		{"flat", []float64{900, 1200, 1000, 1100, 950, 1050, 1000, 1200, 900}, false},
		{"climbing", []float64{1000, 5000, 10000, 20000, 40000, 60000, 80000, 100000, 120000}, true},
		{"small climb under the slack", []float64{0, 10, 20, 40, 80, 160, 320, 640, 1280}, false},
		{"too few samples", []float64{0, 100000}, false},
	} {
		if got := judgeLag(tc.samples, nil).Growing; got != tc.growing {
			t.Errorf("%s: growing = %v, want %v", tc.name, got, tc.growing)
		}
	}
	if r := judgeLag([]float64{3, 7, 5}, nil); r.Max != 7 || r.Samples != 3 {
		t.Errorf("max %v of %d samples, want 7 of 3", r.Max, r.Samples)
	}
}

// TestGaugeSum sums one metric over label sets and targets, ignoring
// others whose names it prefixes.
func TestGaugeSum(t *testing.T) {
	page := func(v1, v2 float64) string {
		return fmt.Sprintf("# HELP %[1]s x\n# TYPE %[1]s gauge\n%[1]s{partition=\"0\"} %[2]v\n%[1]s{partition=\"1\"} %[3]v\n%[1]s_other 1000\n", LagMetric, v1, v2)
	}
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, page(3, 4)) }))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, page(10, 0.5)) }))
	defer b.Close()
	got, err := GaugeSum(http.DefaultClient, LagMetric, a.URL, b.URL)(context.Background())
	if err != nil || got != 17.5 {
		t.Errorf("sum %v, %v; want 17.5", got, err)
	}
	broken := httptest.NewServer(http.NotFoundHandler())
	defer broken.Close()
	if _, err := GaugeSum(http.DefaultClient, LagMetric, a.URL, broken.URL)(context.Background()); err == nil {
		t.Error("a failing target gave no error")
	}
}
