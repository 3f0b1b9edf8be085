package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// The soak is not one of the lab's fifteen questions: it is the proof
// behind the claim "memory is bounded by configuration, not by load"
// (BRIEF.md's invariants) and behind "no error bursts" under sustained
// load. It is a Scenario value so that it gets the engine's sampler,
// report and plots, but it is not listed in All (the lab's questions):
// `lokilab soak` (cmd/lokilab/soak.go) runs it, and so does its CI test.
//
// What it does:
//
//  1. Probe: push as fast as the system takes it for -probe and call the
//     accepted lines per second the maximum rate (on a shared 2-core
//     machine this is a property of the moment, which is why it is
//     measured in the same run, not configured).
//  2. Soak: open the connections the soak's workers can hold at once (two
//     seconds of all of them pushing as fast as answered), then push at
//     -fraction of the maximum (half by default) for -duration while live
//     queries run against it: a log query and a metric query, alternating
//     every -query-interval, and one /tail connection held open
//     throughout.
//  3. Judge: for each component's go_goroutines, go_memstats_heap_inuse_bytes
//     and process_resident_memory_bytes, drop the first -warmup (caches,
//     head chunks and connection pools fill up then: that is bounded
//     growth, not a leak), cut the rest into thirds and compare the median
//     of the last third with the median of the first. Medians, not first
//     and last points: a GC cycle or a flush moves a single sample by tens
//     of megabytes, a third's median by little. The difference, and that
//     difference per ten minutes, is the figure; the check allows an
//     absolute slack or a fraction of the level, whichever is larger.
//     A leak of one goroutine per request or a kilobyte per push exceeds
//     both within two minutes.
//  4. Errors: every push and query is bucketed in -burst-window windows; a
//     burst is a window where more than -burst-fraction of them failed
//     (and at least two did). An isolated failure is reported, not judged.
//
// The system runs as separate processes by default (`lokilab run
// -processes`), so that each component's memory is its own and not the
// load generator's: in one process, the generator's record of every push
// would itself look like growth.

// soakTenant is the tenant the soak pushes and queries as (loadgen's
// first tenant).
const soakTenant = "tenant-1"

// Soak returns the soak: sustained load at a fraction of the measured
// maximum rate, with live queries and a tail, checked for flat memory and
// goroutines and for error bursts.
func Soak() *Scenario {
	return &Scenario{
		Name:     "soak",
		Question: 0,
		Command:  "lokilab soak",
		Title:    "Soak: sustained load with live queries (not a lab question; issue 8)",
		Hypothesis: "Under sustained load at half the maximum rate measured in the same run, with log and metric queries and a tail running, " +
			"every component's goroutines, heap in use and resident memory stay flat after a warm-up " +
			"(median of the last third within a small bound of the median of the first), and no window of the run sees a burst of failed pushes or queries.",
		Knobs: []Knob{
			{Name: "duration", Kind: KnobDuration, Default: "30m", Short: "2m", Usage: "How long the soak pushes at the soak rate (after the probe)."},
			{Name: "warmup", Kind: KnobDuration, Default: "5m", Short: "30s", Usage: "The first part of the soak left out of the growth comparison: caches, head chunks and pools fill up in it."},
			{Name: "probe", Kind: KnobDuration, Default: "20s", Short: "10s", Usage: "How long the maximum rate is measured (pushing as fast as the system answers)."},
			{Name: "fraction", Kind: KnobFloat, Default: "0.5", Usage: "The soak rate as a fraction of the measured maximum."},
			{Name: "concurrency", Kind: KnobInt, Default: "8", Usage: "Push workers, probe and soak."},
			{Name: "query-interval", Kind: KnobDuration, Default: "5s", Usage: "A query every this long, log and metric queries alternating."},
			{Name: "query-range", Kind: KnobDuration, Default: "2m", Short: "20s", Usage: "The metric query's range (the log query reads the same range, newest 100 lines). A query holds the entries of its range while it runs (a metric query at most querier.metric_slice_bytes of them at a time), so the querier's heap grows until the range is full of data: keep it well under -warmup."},
			{Name: "processes", Kind: KnobBool, Default: "true", Usage: "Run the system as separate processes (`lokilab run -processes`) so that each component's memory is its own; false runs it in this process, where the load generator's memory counts too."},
			{Name: "leak", Kind: KnobBool, Default: "false", Usage: "Turn on the lab's deliberate tail leak (querier.lab_leak_tail_subscribers) and reopen the tail every half second: the broken knob, for the goroutine check to fail."},
			{Name: "goroutine-slack", Kind: KnobInt, Default: "25", Usage: "Goroutines a component may gain between the first and last third (or goroutine-fraction of its level, whichever is larger)."},
			{Name: "goroutine-fraction", Kind: KnobFloat, Default: "0.1", Usage: "The same as a fraction of the first third's median."},
			{Name: "heap-slack", Kind: KnobString, Default: "32MB", Usage: "Heap in use (and resident memory) a component may gain between the first and last third, or memory-fraction of its level, whichever is larger."},
			{Name: "memory-fraction", Kind: KnobFloat, Default: "0.25", Usage: "The same as a fraction of the first third's median."},
			{Name: "burst-window", Kind: KnobDuration, Default: "10s", Usage: "Window for error bursts."},
			{Name: "burst-fraction", Kind: KnobFloat, Default: "0.01", Usage: "A window with more than this fraction of its pushes (or queries) failed, and at least two, is a burst."},
			{Name: "chunk-cache", Kind: KnobString, Default: "32MB", Usage: "querier.chunk_cache_size: a bound the querier's heap fills up to during the warm-up (256MB by default, which would take longer than a short soak to fill and look like growth)."},
		},
		Processes: func(k Values) bool { return k.Bool("processes") },
		Configure: func(cfg *app.AllInOneConfig, k Values) {
			// The soak measures memory and errors, not the rate limiter: the
			// tenant's limits are far above anything 2 cores can push.
			cfg.Limits.IngestionRateMB = 1024
			cfg.Limits.IngestionBurstSizeMB = 1024
			var cache config.ByteSize
			if err := cache.Set(k.String("chunk-cache")); err == nil {
				cfg.Querier.ChunkCacheSize = cache
			}
			if k.Bool("leak") {
				cfg.Querier.LabLeakTailSubscribers = true
			}
		},
		Series: []Selector{
			{Name: "go_goroutines"},
			{Name: "go_memstats_heap_inuse_bytes"},
			{Name: "process_resident_memory_bytes"},
			{Name: "loki_distributor_lines_received_total"},
		},
		Plots: []PlotSpec{
			{File: "soak-goroutines.png", Title: "Goroutines per component", YLabel: "goroutines", Lines: []LineSpec{{Select: Selector{Name: "go_goroutines"}}}},
			{File: "soak-heap.png", Title: "Heap in use per component", YLabel: "bytes", Lines: []LineSpec{{Select: Selector{Name: "go_memstats_heap_inuse_bytes"}}}},
			{File: "soak-rss.png", Title: "Resident memory per component", YLabel: "bytes", Lines: []LineSpec{{Select: Selector{Name: "process_resident_memory_bytes"}}}},
			{File: "soak-pushes.png", Title: "Pushes per second by answer (the soak load)", YLabel: "pushes/s", Lines: []LineSpec{
				{Select: Selector{Name: "lokilab_load_pushes_total", Target: "load:soak", Labels: map[string]string{"outcome": "2xx"}}, Rate: true, Legend: "2xx"},
				{Select: Selector{Name: "lokilab_load_pushes_total", Target: "load:soak", Labels: map[string]string{"outcome": "5xx"}}, Rate: true, Legend: "5xx"},
				{Select: Selector{Name: "lokilab_load_pushes_total", Target: "load:soak", Labels: map[string]string{"outcome": "error"}}, Rate: true, Legend: "no answer"},
			}},
			{File: "soak-queries.png", Title: "Live queries: latency", YLabel: "seconds", Lines: []LineSpec{
				{Select: Selector{Name: "lokilab_soak_query_seconds", Target: "queries"}, Legend: "query"},
			}},
		},
		Look: []string{
			"`go_goroutines`, `go_memstats_heap_inuse_bytes`, `process_resident_memory_bytes` on every component's `/metrics`: the three series judged.",
			"`/debug/pprof/goroutine?debug=1` and `/debug/pprof/heap` on a component that grows (docs/questions/12-memory-leak.md shows the steps).",
			"`loki_querier_tail_active` on the querier: the one tail the soak holds open.",
			"`/processes` on the API port (processes mode): each component's pid and restarts — a restart in a soak is a failure in itself.",
		},
		Code: []CodeRef{
			{"pkg/scenario/soak.go", "this soak: probe, rate, queries, the growth and burst judgement"},
			{"pkg/loadgen/loadgen.go", "the load: workers, pacing, the line shapes"},
			{"pkg/querier/tail.go", "the tail the soak holds open"},
			{"pkg/querier/cache.go", "the chunk cache: the bound the querier's heap fills during the warm-up"},
			{"docs/reliability.md", "the soak's figures from a 30-minute run"},
		},
		Budget:      45 * time.Minute,
		ShortBudget: 4 * time.Minute,
		Run:         runSoak,
	}
}

func runSoak(ctx context.Context, e *Env) error {
	k := e.Knobs
	conc := k.Int("concurrency")
	if k.Duration("query-range") >= k.Duration("warmup") || k.Duration("warmup") >= k.Duration("duration") {
		return fmt.Errorf("want -query-range (%s) < -warmup (%s) < -duration (%s): the querier's heap grows until the query range is full of data, and the warm-up is left out of the judgement",
			k.Duration("query-range"), k.Duration("warmup"), k.Duration("duration"))
	}

	// 1. The maximum rate, as the system answers now.
	pcfg := LoadgenDefaults()
	pcfg.LinesPerSecond = 0
	pcfg.Concurrency = conc
	pcfg.Duration = 0
	probe := Loadgen("probe", pcfg)
	if err := e.StartLoad(ctx, probe); err != nil {
		return err
	}
	settle := min(3*time.Second, k.Duration("probe")/4)
	if err := sleep(ctx, k.Duration("probe")); err != nil {
		return err
	}
	if err := probe.Stop(ctx); err != nil {
		return err
	}
	ps := probe.Pushes()
	if len(ps) == 0 {
		return fmt.Errorf("the probe sent nothing")
	}
	from := ps[0].At.Add(settle)
	to := from.Add(k.Duration("probe") - settle)
	st := StatsOf(ps, from, to, nil)
	maxRate := float64(st.Accepted*pcfg.BatchLines) / to.Sub(from).Seconds()
	if maxRate <= 0 {
		return fmt.Errorf("the probe got no push accepted (%s)", classes(st))
	}
	rate := k.Float("fraction") * maxRate
	e.Figure("maximum rate (probe)", fmt.Sprintf("%.0f lines/s", maxRate), fmt.Sprintf("%d workers pushing as fast as answered, %s; %d pushes %s", conc, k.Duration("probe"), st.Total, classes(st)))
	e.Figure("soak rate", fmt.Sprintf("%.0f lines/s", rate), fmt.Sprintf("%g × the maximum", k.Float("fraction")))
	e.Logf("maximum %.0f lines/s; soaking at %.0f lines/s for %s", maxRate, rate, k.Duration("duration"))

	// 2. The soak: load, queries, a tail.
	scfg := LoadgenDefaults()
	scfg.LinesPerSecond = rate
	// Four times the probe's workers: each waits for its answer, so at
	// half the rate a latency spike (the machine is shared) must not cap
	// what the soak offers. A 30-minute run with twice the workers offered
	// only 63% of the rate while p90 latency was 570 ms.
	scfg.Concurrency = 4 * conc
	scfg.Duration = 0

	// Before it, the connections the soak's workers can hold at once.
	// A proxy in front of the distributor (the gateway, in processes
	// mode) opens a connection for each request in flight and keeps it
	// idle for the next: its pool, two goroutines per connection, grows
	// to the most requests ever in flight at once. At half the rate that
	// maximum keeps rising with each latency spike, so in a short soak
	// the pool was still filling after the warm-up and read as goroutine
	// growth (CI: supervisor +33). Every soak worker pushing as fast as
	// answered for a moment opens them all first.
	wcfg := scfg
	wcfg.LinesPerSecond = 0
	warm := Loadgen("connections", wcfg)
	if err := e.StartLoad(ctx, warm); err != nil {
		return err
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	if err := warm.Stop(ctx); err != nil {
		return err
	}
	soak := Loadgen("soak", scfg)
	if err := e.StartLoad(ctx, soak); err != nil {
		return err
	}
	start := time.Now()
	q := &soakQueries{api: e.Sys.API, sampler: e.Sampler, client: &http.Client{Timeout: 30 * time.Second}, span: k.Duration("query-range")}
	qctx, stopQueries := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { q.queryLoop(qctx, k.Duration("query-interval")) })
	reopen := time.Duration(0)
	if k.Bool("leak") {
		reopen = 500 * time.Millisecond
	}
	wg.Go(func() { q.tailLoop(qctx, reopen) })
	err := sleep(ctx, k.Duration("duration"))
	end := time.Now()
	stopQueries()
	wg.Wait()
	if err != nil {
		return err
	}
	if err := soak.Stop(ctx); err != nil {
		return err
	}

	// 3. Judge the growth.
	window := [2]time.Time{start.Add(k.Duration("warmup")), end}
	var slack config.ByteSize
	if err := slack.Set(k.String("heap-slack")); err != nil {
		return fmt.Errorf("-heap-slack: %w", err)
	}
	judged := []struct {
		name, what string
		abs, frac  float64
		unit       func(float64) string
	}{
		{"go_goroutines", "goroutines", float64(k.Int("goroutine-slack")), k.Float("goroutine-fraction"), func(v float64) string { return fmt.Sprintf("%.0f", v) }},
		{"go_memstats_heap_inuse_bytes", "heap in use", float64(slack), k.Float("memory-fraction"), mib1},
		{"process_resident_memory_bytes", "resident memory", float64(slack), k.Float("memory-fraction"), mib1},
	}
	var rows [][]string
	for _, j := range judged {
		var worst string
		pass, seen := true, 0
		for _, s := range e.Sampler.Select(Selector{Name: j.name}) {
			g, ok := measureGrowth(s.Points, window[0], window[1])
			if !ok {
				continue
			}
			seen++
			limit := max(j.abs, j.frac*g.First)
			okc := g.Delta <= limit
			rows = append(rows, []string{s.Target, j.what, j.unit(g.First), j.unit(g.Last), signed(j.unit, g.Delta), signed(j.unit, g.PerTenMinutes), j.unit(limit), map[bool]string{true: "flat", false: "GROWS"}[okc],
				j.unit(g.FloorFirst) + " → " + j.unit(g.FloorLast)})
			if !okc {
				pass = false
				worst += fmt.Sprintf("%s %s; ", s.Target, signed(j.unit, g.Delta))
			}
		}
		got := fmt.Sprintf("all %d components within their bound", seen)
		if !pass {
			got = "grew: " + strings.TrimSuffix(worst, "; ")
		}
		e.Check(j.what+" flat in every component", fmt.Sprintf("median of the last third − median of the first ≤ max(%s, %.0f%% of the level), after a %s warm-up", j.unit(j.abs), 100*j.frac, k.Duration("warmup")),
			got, pass && seen > 0)
	}
	// The floor is not judged; it says what a failed verdict is made of.
	// A leak lifts the floor with the median; a working set that comes
	// and goes (a query's entries, a flush's buffers) lifts only the
	// median, by as much more of the time as the querier spends working.
	e.Report.AddTable(Table{Title: "Growth after the warm-up: medians of the first and last thirds (and their floors, the 5th percentiles, not judged)", Header: []string{"component", "series", "first third", "last third", "growth", "per 10 min", "bound", "verdict", "floor, first → last"}, Rows: rows})

	// 4. Errors.
	pushes := soak.Pushes()
	pst := StatsOf(pushes, start, end, nil)
	achieved := float64(pst.Accepted*scfg.BatchLines) / end.Sub(start).Seconds()
	e.Figure("soak pushes", fmt.Sprintf("%d pushes: %s; p50 %s, p99 %s", pst.Total, classes(pst), ms(pst.P50), ms(pst.P99)), fmt.Sprintf("%.0f lines/s accepted of %.0f asked", achieved, rate))
	e.Check("the soak rate was sustained", "accepted lines/s ≥ 90% of the soak rate", fmt.Sprintf("%.0f of %.0f lines/s", achieved, rate), achieved >= 0.9*rate)
	win, frac := k.Duration("burst-window"), k.Float("burst-fraction")
	var pe []soakEvent
	for _, p := range pushes {
		pe = append(pe, soakEvent{At: p.At, Failed: !p.Outcome.Accepted()})
	}
	pb := errorBursts(pe, start, end, win, frac)
	qs := q.results()
	qb := errorBursts(qs, start, end, win, frac)
	qfail := 0
	for _, r := range qs {
		if r.Failed {
			qfail++
		}
	}
	e.Figure("live queries", fmt.Sprintf("%d queries, %d failed", len(qs), qfail), q.lastError())
	e.Figure("tail", fmt.Sprintf("%d lines received over %d connection(s), %d dropped", q.tailLines(), q.tailConns(), q.tailDrops()), "`{app=\"billing\"}` held open for the whole soak; "+q.tailError())
	e.Check("no burst of failed pushes", fmt.Sprintf("no %s window with more than %.0f%% of its pushes failed", win, 100*frac), burstText(pb, pst.Total-pst.Accepted), len(pb) == 0 && pst.Total > 0)
	e.Check("no burst of failed queries", fmt.Sprintf("no %s window with more than %.0f%% of its queries failed", win, 100*frac), burstText(qb, qfail), len(qb) == 0 && len(qs) > 0)
	e.Check("the tail delivered lines throughout", "lines received, and no connection dropped by the server", fmt.Sprintf("%d lines, %d drops", q.tailLines(), q.tailDrops()),
		q.tailLines() > 0 && (reopen > 0 || q.tailDrops() == 0))
	return nil
}

func mib1(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }

func signed(unit func(float64) string, v float64) string {
	if v >= 0 {
		return "+" + unit(v)
	}
	return "−" + unit(-v)
}

// growth compares the start and the end of a series within a window.
type growth struct {
	// First and Last are the medians of the window's first and last
	// thirds; Delta is Last − First.
	First, Last, Delta float64
	// PerTenMinutes is Delta over the time between the thirds' middles,
	// scaled to ten minutes: the slope a reader can extrapolate.
	PerTenMinutes float64
	// FloorFirst and FloorLast are the thirds' 5th percentiles: what
	// stays allocated between bursts of work.
	FloorFirst, FloorLast float64
	// N is the points in the window.
	N int
}

// measureGrowth returns the growth of ps over [from, to]; false with
// fewer than six points in it (two per third).
func measureGrowth(ps []Point, from, to time.Time) (growth, bool) {
	var in []Point
	for _, p := range ps {
		if !p.T.Before(from) && !p.T.After(to) {
			in = append(in, p)
		}
	}
	if len(in) < 6 {
		return growth{}, false
	}
	third := len(in) / 3
	first, last := in[:third], in[len(in)-third:]
	g := growth{First: medianOf(first), Last: medianOf(last), FloorFirst: quantileOf(first, 0.05), FloorLast: quantileOf(last, 0.05), N: len(in)}
	g.Delta = g.Last - g.First
	mid := func(ps []Point) time.Time { return ps[0].T.Add(ps[len(ps)-1].T.Sub(ps[0].T) / 2) }
	if dt := mid(last).Sub(mid(first)); dt > 0 {
		g.PerTenMinutes = g.Delta * float64(10*time.Minute) / float64(dt)
	}
	return g, true
}

// quantileOf returns the q-quantile of ps' values, nearest rank.
func quantileOf(ps []Point, q float64) float64 {
	vs := sortedValues(ps)
	return vs[min(int(q*float64(len(vs))), len(vs)-1)]
}

func sortedValues(ps []Point) []float64 {
	vs := make([]float64, len(ps))
	for i, p := range ps {
		vs[i] = p.V
	}
	slices.Sort(vs)
	return vs
}

func medianOf(ps []Point) float64 {
	vs := sortedValues(ps)
	if n := len(vs); n%2 == 0 {
		return (vs[n/2-1] + vs[n/2]) / 2
	}
	return vs[len(vs)/2]
}

// soakEvent is one push or query, failed or not.
type soakEvent struct {
	At     time.Time
	Failed bool
}

// burst is a window with too many failures.
type burst struct {
	From          time.Time
	Failed, Total int
}

// errorBursts cuts [from, to) into windows of w and returns those where
// more than frac of the events failed, and at least two did: one failure
// alone is an incident worth reporting, not a burst.
func errorBursts(es []soakEvent, from, to time.Time, w time.Duration, frac float64) []burst {
	if w <= 0 || !to.After(from) {
		return nil
	}
	n := int(to.Sub(from)/w) + 1
	failed, total := make([]int, n), make([]int, n)
	for _, e := range es {
		if e.At.Before(from) || !e.At.Before(to) {
			continue
		}
		i := int(e.At.Sub(from) / w)
		total[i]++
		if e.Failed {
			failed[i]++
		}
	}
	var out []burst
	for i := range n {
		if failed[i] >= 2 && float64(failed[i]) > frac*float64(total[i]) {
			out = append(out, burst{From: from.Add(time.Duration(i) * w), Failed: failed[i], Total: total[i]})
		}
	}
	return out
}

func burstText(bs []burst, failed int) string {
	if len(bs) == 0 {
		return fmt.Sprintf("no burst (%d failed in all)", failed)
	}
	parts := make([]string, 0, len(bs))
	for _, b := range bs[:min(len(bs), 5)] {
		parts = append(parts, fmt.Sprintf("%s: %d of %d", b.From.Format("15:04:05"), b.Failed, b.Total))
	}
	return fmt.Sprintf("%d burst(s): %s", len(bs), strings.Join(parts, ", "))
}

// soakQueries runs the soak's live queries and its tail, and keeps what
// they saw: one small record per query (the soak runs a few hundred), and
// counters for the tail.
type soakQueries struct {
	api     string
	sampler *Sampler
	client  *http.Client
	span    time.Duration // the queries' range

	mu      sync.Mutex
	events  []soakEvent
	lastErr string
	tailErr string
	lines   int
	conns   int
	drops   int
}

func (q *soakQueries) results() []soakEvent {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.events)
}

func (q *soakQueries) lastError() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.lastErr == "" {
		return fmt.Sprintf("log query `{app=\"checkout\"} |= \"error\"` (limit 100) and metric query `sum(count_over_time({app=\"auth\"}[10s]))` (step 5s), alternating, both over the last %s; no failure", q.span)
	}
	return "last failure: " + q.lastErr
}

func (q *soakQueries) tailError() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.tailErr == "" {
		return "no error"
	}
	return "last error: " + q.tailErr
}

func (q *soakQueries) tailLines() int { q.mu.Lock(); defer q.mu.Unlock(); return q.lines }
func (q *soakQueries) tailConns() int { q.mu.Lock(); defer q.mu.Unlock(); return q.conns }
func (q *soakQueries) tailDrops() int { q.mu.Lock(); defer q.mu.Unlock(); return q.drops }

// queryLoop runs a query every interval, log and metric queries in turn.
func (q *soakQueries) queryLoop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		v := url.Values{}
		kind := "log"
		if i%2 == 0 {
			v.Set("query", `{app="checkout"} |= "error"`)
			v.Set("start", strconv.FormatInt(now.Add(-q.span).UnixNano(), 10))
			v.Set("limit", "100")
		} else {
			kind = "metric"
			v.Set("query", `sum(count_over_time({app="auth"}[10s]))`)
			v.Set("start", strconv.FormatInt(now.Add(-q.span).UnixNano(), 10))
			v.Set("step", "5")
		}
		v.Set("end", strconv.FormatInt(now.UnixNano(), 10))
		err := q.query(ctx, v)
		if ctx.Err() != nil {
			return // the soak ended under this query: not a failure
		}
		lat := time.Since(now)
		q.mu.Lock()
		q.events = append(q.events, soakEvent{At: now, Failed: err != nil})
		if err != nil {
			q.lastErr = kind + ": " + err.Error()
		}
		q.mu.Unlock()
		q.sampler.Record("queries", "lokilab_soak_query_seconds", map[string]string{"kind": kind}, false, Point{T: now, V: lat.Seconds()})
	}
}

func (q *soakQueries) query(ctx context.Context, v url.Values) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, q.api+"/loki/api/v1/query_range?"+v.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set(tenant.Header, soakTenant)
	resp, err := q.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b[:min(len(b), 200)])))
	}
	if err := json.Unmarshal(b, &body); err != nil || body.Status != "success" {
		return fmt.Errorf("bad answer (%v): %.200s", err, b)
	}
	return nil
}

// tailLoop holds a /tail open and counts the lines it delivers; when the
// server drops it, that is counted and it is opened again. With reopen
// set, the client closes and reopens it that often (the leak's broken
// knob: each closed tail leaks with the lab fault on).
func (q *soakQueries) tailLoop(ctx context.Context, reopen time.Duration) {
	u := strings.Replace(q.api, "http://", "ws://", 1) + "/loki/api/v1/tail?" + url.Values{"query": {`{app="billing"}`}, "limit": {"10"}}.Encode()
	for ctx.Err() == nil {
		dropped := q.tailOnce(ctx, u, reopen)
		if dropped {
			q.mu.Lock()
			q.drops++
			q.mu.Unlock()
			_ = sleep(ctx, time.Second)
		}
	}
}

// tailOnce runs one tail connection; true when it ended for another reason
// than ctx or reopen.
func (q *soakQueries) tailOnce(ctx context.Context, u string, reopen time.Duration) bool {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, resp, err := d.DialContext(ctx, u, http.Header{tenant.Header: {soakTenant}})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		q.mu.Lock()
		q.tailErr = err.Error()
		q.mu.Unlock()
		return ctx.Err() == nil
	}
	q.mu.Lock()
	q.conns++
	q.mu.Unlock()
	cctx := ctx
	if reopen > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, reopen)
		defer cancel()
	}
	stop := context.AfterFunc(cctx, func() {
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		_ = conn.Close()
	})
	defer stop()
	defer conn.Close()
	for {
		var msg struct {
			Streams []struct {
				Values [][2]string `json:"values"`
			} `json:"streams"`
		}
		if err := conn.ReadJSON(&msg); err != nil {
			if cctx.Err() != nil {
				return false
			}
			q.mu.Lock()
			q.tailErr = err.Error()
			q.mu.Unlock()
			return true
		}
		n := 0
		for _, s := range msg.Streams {
			n += len(s.Values)
		}
		q.mu.Lock()
		q.lines += n
		q.mu.Unlock()
	}
}
