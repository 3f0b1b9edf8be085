package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/ingester"
)

// Rollout is question 15, production rollout strategy: every ingester of
// the ring-mode system restarted under steady load, first one at a time,
// then all at once, and what the load and the queries saw during each.
//
// Rolling: SIGTERM to one ingester. It goes LEAVING, flushes and commits
// each partition and hands it over; the survivors take them from an offset
// that leaves nothing to replay. The supervisor starts it again; it
// rejoins, the survivors hand its share back the same way, it replays
// what it missed and only then answers /ready — ready means it holds its
// whole share and has caught up on it (pkg/ingester/ready_handover.go).
// Only then is the next one stopped. At any moment at most one share is
// in flight, for the time of a flush.
//
// All at once: SIGTERM to every ingester together. Each flushes and leaves
// — safely, nothing is lost — but nobody is left to take anything: every
// partition is unconsumed until the processes are back, joined and caught
// up. Pushes still succeed (they only need Kafka), but every line pushed
// meanwhile is invisible to queries and the lag grows with the downtime.
func Rollout() *Scenario {
	return &Scenario{
		Name:     "rollout",
		Question: 15,
		Title:    "Production rollout strategy",
		Hypothesis: "Restarting the ingesters one at a time — graceful SIGTERM (flush and hand over), the next only once the restarted one is ready, i.e. holds its partitions and has caught up — costs the load nothing: no push error, queries stay fresh and the lag stays bounded. " +
			"Restarting them all at once also loses nothing acknowledged and fails no push, but every partition stops being consumed until the ingesters are back: the lag peaks far higher and queries miss the newest lines.",
		Knobs: []Knob{
			{Name: "strategy", Kind: KnobString, Default: "both", Usage: "rolling, all-at-once or both (rolling first, then all at once, on the same system)."},
			{Name: "wait", Kind: KnobString, Default: "ready", Usage: "What the rolling restart waits for before stopping the next ingester: ready (the restarted one's /ready: its partitions taken and caught up) or none (only that its new process runs). none is a broken knob: shares are in flight together and the rolling checks on the lag and on the ring fail."},
			{Name: "rate", Kind: KnobFloat, Default: "1000", Short: "600", Usage: "Lines per second of the steady load (20-line pushes of 4 of 24 streams: every partition gets records several times a second)."},
			{Name: "before", Kind: KnobDuration, Default: "5s", Short: "2s", Usage: "Steady load before each strategy: the baseline of lag, staleness and record rate."},
			{Name: "after", Kind: KnobDuration, Default: "8s", Short: "3s", Usage: "How long to keep watching after the last ingester is back, per strategy: the lag drains."},
			{Name: "lag-bound", Kind: KnobDuration, Default: "2s", Usage: "The rolling restart's lag must stay below this many seconds of records (the baseline record rate × it), and its answers' newest line younger than this."},
			{Name: "verify-wait", Kind: KnobDuration, Default: "20s", Short: "10s", Usage: "How long the check that no acknowledged line was lost keeps reading while lines are missing."},
		},
		Processes: func(Values) bool { return true },
		Configure: func(cfg *app.AllInOneConfig, _ Values) {
			cfg.Ingester.Ownership = ingester.OwnershipRing
			cfg.Ingester.ShutdownFlush = true
		},
		Look: []string{
			"each ingester's `/ready` while it restarts: 503 \"waiting for partitions … to be handed over\", then \"replaying partitions …\", then 200",
			"`GET /ring` on the gateway: owners going LEAVING, then JOINING on a survivor, then ACTIVE; all at once: every partition without an owner",
			"`lokilab_ingester_partition_lag_records{partition}`, `lokilab_ingester_replayed_records_total`, `lokilab_ingester_partitions_released_total{how}` on each ingester",
			"`GET /processes`: each ingester's restarts and last exit (\"exit status 0\": it stopped by itself after SIGTERM)",
			"a query's `warnings` and the newest line it returns: how stale the answer is while partitions are not consumed",
		},
		Code: []CodeRef{
			{Path: "pkg/ingester/ingester.go", Why: "Ready and shutdown: LEAVING, then every partition flushed and released"},
			{Path: "pkg/ingester/ready_handover.go", Why: "why ready also means \"holds every partition the ring assigns it\""},
			{Path: "pkg/ingester/ownership.go", Why: "the handover: take only what nobody healthy holds"},
			{Path: "pkg/app/processes.go", Why: "the supervisor: SIGTERM, the stop timeout, the restart backoff"},
			{Path: "pkg/querier/ingesters.go", Why: "which gaps a query answer warns about"},
			{Path: "pkg/scenario/rollout.go", Why: "this scenario: the two strategies, the lag watch and the query prober"},
		},
		Budget:      4 * time.Minute,
		ShortBudget: 2 * time.Minute,
		Run:         runRollout,
	}
}

func rolloutStrategies(k Values) ([]string, error) {
	switch s := k.String("strategy"); s {
	case "both":
		return []string{"rolling", "all-at-once"}, nil
	case "rolling", "all-at-once":
		return []string{s}, nil
	default:
		return nil, fmt.Errorf("-strategy %q: want rolling, all-at-once or both", s)
	}
}

// queryProbe asks for the load's newest line every 250ms and keeps how
// each answer went. The newest line of the whole load goes stale only when
// no partition is consumed at all: that is what tells all at once from
// one at a time. A single partition in flight shows in the lag instead.
type queryProbe struct {
	sys    *System
	tenant string
	client *http.Client
	mu     sync.Mutex
	probes []probeResult
}

type probeResult struct {
	at      time.Time
	latency time.Duration
	code    int
	partial bool
	// stale is how old the newest line of the answer is (from its
	// timestamp to when the query was sent).
	stale time.Duration
	err   string
	// warning is the answer's first warning, if any.
	warning string
}

func (q *queryProbe) once(ctx context.Context) probeResult {
	now := time.Now()
	r := probeResult{at: now}
	v := url.Values{
		"query":     {`{job="lokilab-load"}`},
		"start":     {strconv.FormatInt(now.Add(-time.Minute).UnixNano(), 10)},
		"end":       {strconv.FormatInt(now.Add(time.Second).UnixNano(), 10)},
		"limit":     {"1"},
		"direction": {"backward"},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, q.sys.API+"/loki/api/v1/query_range?"+v.Encode(), nil)
	if err != nil {
		r.err = err.Error()
		return r
	}
	if q.sys.Config.AuthEnabled {
		req.Header.Set("X-Scope-OrgID", q.tenant)
	}
	resp, err := q.client.Do(req)
	r.latency = time.Since(now)
	if err != nil {
		r.err = err.Error()
		return r
	}
	defer resp.Body.Close()
	r.code = resp.StatusCode
	var body struct {
		Data struct {
			Result []struct {
				Values [][2]string `json:"values"`
			} `json:"result"`
		} `json:"data"`
		Warnings []string `json:"warnings"`
	}
	if resp.StatusCode != http.StatusOK {
		r.err = resp.Status
		return r
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		r.err = err.Error()
		return r
	}
	r.partial = len(body.Warnings) > 0
	if r.partial {
		r.warning = body.Warnings[0]
	}
	var newest int64
	for _, s := range body.Data.Result {
		for _, kv := range s.Values {
			if ts, err := strconv.ParseInt(kv[0], 10, 64); err == nil {
				newest = max(newest, ts)
			}
		}
	}
	r.stale = -1 // no line at all: the load has not reached the store yet
	if newest > 0 {
		r.stale = max(now.Sub(time.Unix(0, newest)), 0)
	}
	return r
}

func (q *queryProbe) run(ctx context.Context, env *Env) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		r := q.once(ctx)
		if ctx.Err() != nil {
			return
		}
		q.mu.Lock()
		q.probes = append(q.probes, r)
		q.mu.Unlock()
		if r.stale >= 0 {
			env.Sampler.Record("query", "lokilab_rollout_query_staleness_seconds", nil, false, Point{T: r.at, V: r.stale.Seconds()})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probeStats summarises the probes sent in [from, to).
type probeStats struct {
	n, failed, partial int
	maxStale, p99      time.Duration
	// warnings counts the answers' first warnings and failures by text.
	warnings map[string]int
}

func (q *queryProbe) stats(from, to time.Time) probeStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := probeStats{warnings: map[string]int{}}
	var lat []time.Duration
	for _, r := range q.probes {
		if r.at.Before(from) || !r.at.Before(to) {
			continue
		}
		s.n++
		if r.err != "" {
			s.failed++
			s.warnings["failed: "+r.err]++
			continue
		}
		lat = append(lat, r.latency)
		if r.partial {
			s.partial++
			s.warnings[r.warning]++
		}
		s.maxStale = max(s.maxStale, r.stale)
	}
	slices.Sort(lat)
	s.p99 = Percentile(lat, 0.99)
	return s
}

// rolloutResult is what one strategy measured.
type rolloutResult struct {
	strategy           string
	took               time.Duration // first SIGTERM until every ingester back and the ring settled
	pushes             PushStats
	queries, baseQuery probeStats
	lagPeak, baseLag   int64
	lagEnd             int64
	recordRate         float64 // records/s written during the baseline
	stall              time.Duration
	// rolling only: per ingester, SIGTERM → ready, and what it held then.
	steps     []string
	stepsOK   bool
	settledOK bool
}

func runRollout(ctx context.Context, env *Env) error {
	k := env.Knobs
	strategies, err := rolloutStrategies(k)
	if err != nil {
		return err
	}
	if w := k.String("wait"); w != "ready" && w != "none" {
		return fmt.Errorf("-wait %q: want ready or none", w)
	}
	sys := env.Sys
	cl, err := kgo.NewClient(kgo.SeedBrokers(sys.Kafka))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	lc := LoadgenDefaults()
	lc.TenantPrefix, lc.Tenants, lc.StreamsPerTenant, lc.StreamsPerPush = "rollout-", 1, 24, 4
	lc.LinesPerSecond, lc.BatchLines, lc.Concurrency, lc.Duration = k.Float("rate"), 20, 4, 0
	load := Loadgen("steady", lc)
	if err := env.StartLoad(ctx, load); err != nil {
		return err
	}
	probe := &queryProbe{sys: sys, tenant: "rollout-1", client: &http.Client{Timeout: 10 * time.Second}}
	pctx, stopProbe := context.WithCancel(ctx)
	probed := make(chan struct{})
	go func() { defer close(probed); probe.run(pctx, env) }()
	defer func() { stopProbe(); <-probed }()

	var results []rolloutResult
	for _, s := range strategies {
		r, err := rolloutOnce(ctx, env, sys, adm, load, probe, s)
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		results = append(results, r)
	}
	stopProbe()
	<-probed
	rolloutReport(env, results)
	_, err = VerifyAcked(ctx, env, load, k.Duration("verify-wait"))
	return err
}

func rolloutOnce(ctx context.Context, env *Env, sys *System, adm *kadm.Client, load *LoadgenLoad, probe *queryProbe, strategy string) (rolloutResult, error) {
	k := env.Knobs
	r := rolloutResult{strategy: strategy, stepsOK: true, settledOK: true}
	w := newRBWatch(env, sys, strategy, adm)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.run(wctx) }()
	defer func() { stop(); <-done }()

	endSum := func() int64 {
		var n int64
		if ends, err := adm.ListEndOffsets(ctx, sys.Topic); err == nil {
			ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		}
		return n
	}
	baseFrom, e0 := time.Now(), endSum()
	if err := sleepCtx(ctx, k.Duration("before")); err != nil {
		return r, err
	}
	r.recordRate = float64(endSum()-e0) / time.Since(baseFrom).Seconds()
	r.baseQuery = probe.stats(baseFrom, time.Now())
	w.mark()
	began := time.Now()
	names := make([]string, len(sys.Ingesters))
	for i, in := range sys.Ingesters {
		names[i] = in.Name
	}
	env.Logf("%s restart of %v", strategy, names)
	switch strategy {
	case "rolling":
		for i, name := range names {
			if i > 0 {
				// The gate's result: before the next SIGTERM, every
				// partition has one ACTIVE owner, the assigned one.
				if _, err := waitSettled(ctx, sys, names, 5*time.Second, time.Now()); err != nil {
					r.settledOK = false
					r.steps = append(r.steps, "before "+name+": "+err.Error())
				}
			}
			t0 := time.Now()
			if k.String("wait") == "ready" {
				if err := env.Faults.RestartComponent(ctx, name); err != nil {
					return r, err
				}
			} else if err := restartNoWait(ctx, env, sys, name); err != nil {
				return r, err
			}
			held, ok := heldAndCaughtUp(ctx, sys, name)
			r.stepsOK = r.stepsOK && ok
			r.steps = append(r.steps, fmt.Sprintf("%s: back in %s, %s", name, dur(time.Since(t0)), held))
			env.Logf("%s: back in %s, %s", name, dur(time.Since(t0)), held)
		}
	case "all-at-once":
		var wg sync.WaitGroup
		errs := make([]error, len(names))
		for i, name := range names {
			wg.Go(func() { errs[i] = env.Faults.StopComponent(ctx, name) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return r, err
			}
		}
	}
	if err := sys.waitIngesters(ctx, len(names), 2*time.Minute); err != nil {
		return r, err
	}
	if _, err := waitSettled(ctx, sys, names, 30*time.Second, began); err != nil {
		return r, err
	}
	r.took = time.Since(began)
	end := time.Now()
	env.Logf("%s restart done in %s", strategy, dur(r.took))
	if err := sleepCtx(ctx, k.Duration("after")); err != nil {
		return r, err
	}
	stop()
	<-done
	r.pushes = StatsOf(load.Pushes(), began, end, nil)
	r.queries = probe.stats(began, end)
	w.mu.Lock()
	r.lagPeak, r.baseLag, r.lagEnd, r.stall = w.lagPeak, w.baseLag, w.lag, w.allStall
	w.mu.Unlock()
	return r, nil
}

// restartNoWait is the broken gate: SIGTERM, then wait only for the
// supervisor to have a new process running, ready or not.
func restartNoWait(ctx context.Context, env *Env, sys *System, name string) error {
	old, err := sys.Process(ctx, name)
	if err != nil {
		return err
	}
	if err := env.Faults.StopComponent(ctx, name); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		p, err := sys.Process(ctx, name)
		if err == nil && p.PID != 0 && p.PID != old.PID {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: no new process: %w", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// heldAndCaughtUp reads an ingester's status right after it was declared
// back: the partitions the ring assigns it, which it holds, and whether
// each is caught up.
func heldAndCaughtUp(ctx context.Context, sys *System, name string) (string, bool) {
	in, err := sys.Ingester(name)
	if err != nil {
		return err.Error(), false
	}
	v, err := sys.Ring(ctx)
	if err != nil {
		return err.Error(), false
	}
	var assigned []int32
	for _, p := range v.Partitions {
		if p.AssignedTo == name {
			assigned = append(assigned, p.ID)
		}
	}
	var st struct {
		Partitions []ingester.PartitionStatus `json:"partitions"`
	}
	if err := sys.getJSON(ctx, in.URL+"/ingester/status", &st); err != nil {
		return err.Error(), false
	}
	var held []int32
	behind := 0
	for _, p := range st.Partitions {
		held = append(held, p.Partition)
		if !p.CaughtUp {
			behind++
		}
	}
	slices.Sort(held)
	ok := len(assigned) > 0 && slices.Equal(held, assigned) && behind == 0
	return fmt.Sprintf("assigned %v, holding %v, %d not caught up", assigned, held, behind), ok
}

func rolloutReport(env *Env, results []rolloutResult) {
	k := env.Knobs
	t := Table{Title: "Rolling vs all at once: what the load and the queries saw (from the first SIGTERM until every ingester was back and the ring settled)",
		Header: []string{"strategy", "took", "pushes (5xx, errors)", "push p99", "lag peak (baseline)", "no record consumed for", "queries (partial, failed)", "newest line's age, max (baseline)", "query p99"}}
	for _, r := range results {
		t.Rows = append(t.Rows, []string{r.strategy, dur(r.took),
			fmt.Sprintf("%d (%d, %d)", r.pushes.Total, r.pushes.ByClass["5xx"], r.pushes.ByClass["error"]), r.pushes.P99.Round(time.Millisecond).String(),
			fmt.Sprintf("%d (%d)", r.lagPeak, r.baseLag), dur(r.stall),
			fmt.Sprintf("%d (%d, %d)", r.queries.n, r.queries.partial, r.queries.failed), fmt.Sprintf("%s (%s)", dur(r.queries.maxStale), dur(r.baseQuery.maxStale)),
			r.queries.p99.Round(time.Millisecond).String()})
		env.Figure(r.strategy+": load", fmt.Sprintf("%d pushes, %d 5xx, %d errors, p99 %s", r.pushes.Total, r.pushes.ByClass["5xx"], r.pushes.ByClass["error"], r.pushes.P99.Round(time.Millisecond)), "pushes sent while the ingesters restarted")
		env.Figure(r.strategy+": lag", fmt.Sprintf("peak %d records (baseline %d; %.0f records/s written), %d at the end", r.lagPeak, r.baseLag, r.recordRate, r.lagEnd), "records written and not yet processed, every 250ms")
		env.Figure(r.strategy+": queries", fmt.Sprintf("%d, %d partial, %d failed; newest line up to %s old (baseline %s)", r.queries.n, r.queries.partial, r.queries.failed, dur(r.queries.maxStale), dur(r.baseQuery.maxStale)),
			"query_range {job=\"lokilab-load\"} limit 1 every 250ms; partial = the answer carried warnings")
		if r.strategy == "rolling" {
			env.Figure("rolling: steps", strings.Join(r.steps, "; "), "-wait "+k.String("wait")+": SIGTERM → back (the restarted one's /ready); what it held then")
		}
	}
	env.Report.AddTable(t)
	for _, r := range results {
		if len(r.queries.warnings) == 0 {
			continue
		}
		var b strings.Builder
		for _, w := range slices.Sorted(maps.Keys(r.queries.warnings)) {
			fmt.Fprintf(&b, "- %d × %s\n", r.queries.warnings[w], w)
		}
		env.Report.AddNote("What made the %s restart's query answers partial (the first warning of each answer):\n\n%s", r.strategy, b.String())
		env.Logf("%s: query warnings:\n%s", r.strategy, b.String())
	}
	var lagLines []LineSpec
	for _, r := range results {
		lagLines = append(lagLines, LineSpec{Select: Selector{Name: "lokilab_rebalance_lag_records", Target: r.strategy}, Legend: r.strategy, Sum: true})
	}
	env.Report.AddPlot(PlotSpec{File: "rollout-lag.png", Title: "Records not yet processed, per strategy", YLabel: "records", Lines: lagLines})
	env.Report.AddPlot(PlotSpec{File: "rollout-staleness.png", Title: "Age of the newest line a query returns", YLabel: "seconds",
		Lines: []LineSpec{{Select: Selector{Name: "lokilab_rollout_query_staleness_seconds"}, Legend: "query", Sum: true}}})
	env.Report.AddPlot(PlotSpec{File: "rollout-pushes.png", Title: "Pushes per second by outcome", YLabel: "pushes/s",
		Lines: []LineSpec{{Select: Selector{Name: "lokilab_load_pushes_total"}, Rate: true}}})

	bound := func(r rolloutResult) int64 {
		return max(int64(r.recordRate*k.Duration("lag-bound").Seconds()), 2*r.baseLag)
	}
	var rolling *rolloutResult
	for i, r := range results {
		p := r.strategy + ": "
		env.Check(p+"no push failed", "0 5xx, 0 errors", fmt.Sprintf("%d 5xx, %d errors of %d", r.pushes.ByClass["5xx"], r.pushes.ByClass["error"], r.pushes.Total),
			r.pushes.ByClass["5xx"] == 0 && r.pushes.ByClass["error"] == 0 && r.pushes.Accepted > 0)
		switch r.strategy {
		case "rolling":
			rolling = &results[i]
			env.Check(p+"each restarted ingester held its share, caught up, when it was declared ready", "assigned = held, all caught up, every step",
				strings.Join(r.steps, "; "), r.stepsOK)
			env.Check(p+"before each next SIGTERM the ring had settled", "every partition one ACTIVE owner, the assigned one", fmt.Sprint(r.settledOK), r.settledOK)
			env.Check(p+"the lag stayed bounded", fmt.Sprintf("< %d records (%s of records, or twice the baseline)", bound(r), k.Duration("lag-bound")),
				fmt.Sprint(r.lagPeak), r.lagPeak < bound(r))
			// Partial answers are a figure, not a check: the querier
			// flags some during every handover (see the note and
			// docs/questions/15-rollout.md); what a reader of the
			// answers loses is measured by their staleness.
			env.Check(p+"queries never failed and the load's newest line stayed fresh", fmt.Sprintf("0 failed, newest line always younger than %s", k.Duration("lag-bound")),
				fmt.Sprintf("%d failed of %d, newest line up to %s old", r.queries.failed, r.queries.n, dur(r.queries.maxStale)),
				r.queries.failed == 0 && r.queries.n > 0 && r.queries.maxStale < k.Duration("lag-bound"))
		case "all-at-once":
			// Every partition stopped: at least a second of every record
			// written piles up, and the answers' newest line ages with it.
			floor := int64(r.recordRate)
			env.Check(p+"the lag peaked past a second of records (every partition stopped)", fmt.Sprintf("≥ %d records", floor), fmt.Sprint(r.lagPeak), r.lagPeak >= floor && floor > 0)
			stale := time.Second
			if rolling != nil {
				env.Check(p+"the lag peak was clearly higher than the rolling restart's", fmt.Sprintf("≥ 3 × %d", rolling.lagPeak), fmt.Sprint(r.lagPeak), r.lagPeak >= 3*rolling.lagPeak)
				stale = max(stale, 3*rolling.queries.maxStale)
			}
			env.Check(p+"queries missed the newest lines while nobody consumed", "newest line at some point older than "+dur(stale)+" (1s, and 3 × the rolling restart's worst)",
				dur(r.queries.maxStale), r.queries.maxStale >= stale)
		}
	}
}
