package logql

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
)

// evalData is three streams over ten minutes, lines in logfmt with a
// status and a level, at random times, a quarter of them on the edges of
// the tests' steps and windows.
func evalData(t0 time.Time) []StreamEntries {
	r := rand.New(rand.NewPCG(1, 2))
	var out []StreamEntries
	for _, st := range []struct{ app, env string }{{"api", "prod"}, {"web", "prod"}, {"api", "dev"}} {
		s := StreamEntries{Labels: labels.New(labels.Label{Name: "app", Value: st.app}, labels.Label{Name: "env", Value: st.env})}
		ts := t0.UnixNano()
		for ts < t0.Add(10*time.Minute).UnixNano() {
			ts += int64(r.IntN(20_000)) * int64(time.Millisecond)
			if r.IntN(4) == 0 {
				// On a 5 s boundary, where steps and window edges fall: an
				// entry exactly at t counts at t, one exactly at t-range
				// does not.
				ts += int64(5*time.Second) - ts%int64(5*time.Second)
			}
			status := []string{"200", "200", "200", "404", "500"}[r.IntN(5)]
			level := "info"
			if status == "500" {
				level = "error"
			}
			s.Entries = append(s.Entries, push.Entry{Timestamp: ts, Line: fmt.Sprintf("level=%s status=%s path=/p%d", level, status, r.IntN(3))})
		}
		out = append(out, s)
	}
	return out
}

// sliceSource serves data as a Source may: each stream in two parts (its
// even and its odd entries), the streams in reverse order, so that the
// evaluator is tested against what the querier's slices hand it — parts of
// streams, out of time order — rather than whole sorted streams.
func sliceSource(data []StreamEntries) Source {
	return func(q *LogQuery, from, through int64, emit func(StreamEntries) error) error {
		for _, s := range slices.Backward(data) {
			if !s.Labels.Matches(q.Matchers...) {
				continue
			}
			var parts [2]StreamEntries
			for i, e := range s.Entries {
				if e.Timestamp >= from && e.Timestamp < through {
					parts[i%2].Entries = append(parts[i%2].Entries, e)
				}
			}
			for _, p := range slices.Backward(parts[:]) {
				p.Labels = s.Labels
				if err := emit(p); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// TestEvalRangeAgainstBruteForce: each query's result at every step equals
// a direct count over the raw entries written in the test, independent of
// the pipeline and evaluator code.
func TestEvalRangeAgainstBruteForce(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	data := evalData(t0)
	start, end, step := t0.Add(time.Minute), t0.Add(9*time.Minute), 30*time.Second

	// window returns the entries of streams passing sel within (t-r, t].
	type entry struct {
		ls   labels.Labels
		line string
	}
	window := func(t time.Time, r time.Duration, sel func(labels.Labels) bool, line func(string) bool) []entry {
		var out []entry
		for _, s := range data {
			if !sel(s.Labels) {
				continue
			}
			for _, e := range s.Entries {
				if e.Timestamp > t.Add(-r).UnixNano() && e.Timestamp <= t.UnixNano() && (line == nil || line(e.Line)) {
					out = append(out, entry{s.Labels, e.Line})
				}
			}
		}
		return out
	}
	field := func(line, key string) string {
		for f := range strings.FieldsSeq(line) {
			if v, ok := strings.CutPrefix(f, key+"="); ok {
				return v
			}
		}
		return ""
	}
	all := func(labels.Labels) bool { return true }
	prod := func(ls labels.Labels) bool { return ls.Get("env") == "prod" }

	for _, tc := range []struct {
		query string
		// brute returns series key → value at time t (absent: no sample).
		brute func(t time.Time) map[string]float64
	}{
		{`count_over_time({app="api"}[1m])`, func(t time.Time) map[string]float64 {
			m := map[string]float64{}
			for _, e := range window(t, time.Minute, func(ls labels.Labels) bool { return ls.Get("app") == "api" }, nil) {
				m[e.ls.String()]++
			}
			return m
		}},
		// Ranges shorter than the step (entries between windows count
		// nowhere) and not a multiple of it (windows end between steps).
		{`bytes_over_time({app="api"}[10s])`, func(t time.Time) map[string]float64 {
			m := map[string]float64{}
			for _, e := range window(t, 10*time.Second, func(ls labels.Labels) bool { return ls.Get("app") == "api" }, nil) {
				m[e.ls.String()] += float64(len(e.line))
			}
			return m
		}},
		{`count_over_time({env="prod"}[45s])`, func(t time.Time) map[string]float64 {
			m := map[string]float64{}
			for _, e := range window(t, 45*time.Second, prod, nil) {
				m[e.ls.String()]++
			}
			return m
		}},
		{`sum by (app) (rate({env="prod"} |= "error" [2m]))`, func(t time.Time) map[string]float64 {
			m := map[string]float64{}
			for _, e := range window(t, 2*time.Minute, prod, func(l string) bool { return strings.Contains(l, "error") }) {
				m[fmt.Sprintf(`{app=%q}`, e.ls.Get("app"))] += 1.0 / 120
			}
			return m
		}},
		{`sum(bytes_over_time({app=~".+"}[1m]))`, func(t time.Time) map[string]float64 {
			m := map[string]float64{}
			for _, e := range window(t, time.Minute, all, nil) {
				m["{}"] += float64(len(e.line))
			}
			return m
		}},
		{`sum by (status) (count_over_time({env="prod"} | logfmt [1m]))`, func(t time.Time) map[string]float64 {
			m := map[string]float64{}
			for _, e := range window(t, time.Minute, prod, nil) {
				m[fmt.Sprintf(`{status=%q}`, field(e.line, "status"))]++
			}
			return m
		}},
		// Series of a few entries (held as runs) and of more entries than
		// steps (turned into difference arrays on the way).
		{`count_over_time({env="prod"} | logfmt | drop path, status [1m])`, func(t time.Time) map[string]float64 {
			m := map[string]float64{}
			for _, e := range window(t, time.Minute, prod, nil) {
				ls := labels.New(append(slices.Clone(e.ls), labels.Label{Name: "level", Value: field(e.line, "level")})...)
				m[ls.String()]++
			}
			return m
		}},
		{`sum without (path) (bytes_over_time({env="prod"} | logfmt [1m]))`, func(t time.Time) map[string]float64 {
			m := map[string]float64{}
			for _, e := range window(t, time.Minute, prod, nil) {
				ls := labels.New(append(slices.Clone(e.ls),
					labels.Label{Name: "level", Value: field(e.line, "level")},
					labels.Label{Name: "status", Value: field(e.line, "status")})...)
				m[ls.String()] += float64(len(e.line))
			}
			return m
		}},
		{`count_over_time({app="api"} | logfmt | status >= 400 and path != "/p0" [1m])`, func(t time.Time) map[string]float64 {
			m := map[string]float64{}
			for _, e := range window(t, time.Minute, func(ls labels.Labels) bool { return ls.Get("app") == "api" }, func(l string) bool {
				return field(l, "status") >= "400" && field(l, "path") != "/p0"
			}) {
				ls := labels.New(append(slices.Clone(e.ls),
					labels.Label{Name: "level", Value: field(e.line, "level")},
					labels.Label{Name: "path", Value: field(e.line, "path")},
					labels.Label{Name: "status", Value: field(e.line, "status")})...)
				m[ls.String()]++
			}
			return m
		}},
		{`max(count_over_time({env="prod"}[1m])) / 2`, func(t time.Time) map[string]float64 {
			m := map[string]float64{}
			per := map[string]float64{}
			for _, e := range window(t, time.Minute, prod, nil) {
				per[e.ls.String()]++
			}
			for _, v := range per {
				m["{}"] = max(m["{}"], v/2)
			}
			return m
		}},
		{`count(count_over_time({app=~".+"}[1m]))`, func(t time.Time) map[string]float64 {
			per := map[string]bool{}
			for _, e := range window(t, time.Minute, all, nil) {
				per[e.ls.String()] = true
			}
			if len(per) == 0 {
				return map[string]float64{}
			}
			return map[string]float64{"{}": float64(len(per))}
		}},
		{`topk(1, count_over_time({env="prod"}[1m]))`, func(t time.Time) map[string]float64 {
			per := map[string]float64{}
			for _, e := range window(t, time.Minute, prod, nil) {
				per[e.ls.String()]++
			}
			best, bestV := "", -1.0
			for k, v := range per {
				if v > bestV || v == bestV && k < best {
					best, bestV = k, v
				}
			}
			if best == "" {
				return map[string]float64{}
			}
			return map[string]float64{best: bestV}
		}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			e, err := Parse(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := EvalRange(e, sliceSource(data), start, end, step)
			if err != nil {
				t.Fatal(err)
			}
			gotAt := map[int64]map[string]float64{}
			for _, s := range got {
				for _, p := range s.Samples {
					if gotAt[p.T] == nil {
						gotAt[p.T] = map[string]float64{}
					}
					gotAt[p.T][s.Labels.String()] = p.V
				}
			}
			steps := 0
			for ts := start; !ts.After(end); ts = ts.Add(step) {
				steps++
				want := tc.brute(ts)
				have := gotAt[ts.UnixMilli()]
				if len(want) != len(have) {
					t.Fatalf("at %s: %d series %v, want %d %v", ts.Sub(t0), len(have), have, len(want), want)
				}
				for k, v := range want {
					if d := have[k] - v; d > 1e-9 || d < -1e-9 {
						t.Fatalf("at %s, %s = %v, want %v", ts.Sub(t0), k, have[k], v)
					}
				}
			}
			if steps != 17 {
				t.Fatalf("%d steps", steps)
			}
		})
	}
}

func TestEvalLiterals(t *testing.T) {
	e, _ := Parse(`vector(1)+vector(1)`)
	at := time.Unix(4, 0)
	got, err := EvalRange(e, sliceSource(nil), at, at, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0].Labels) != 0 || len(got[0].Samples) != 1 || got[0].Samples[0].V != 2 {
		t.Fatalf("vector(1)+vector(1) = %v, want one sample of 2 (Grafana's data source test)", got)
	}
	if _, err := EvalRange(&NumberLiteral{Value: 3}, sliceSource(nil), at, at, time.Second); err == nil {
		t.Fatal("a bare number evaluated as a metric query")
	}
}
