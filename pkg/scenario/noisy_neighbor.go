package scenario

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// The noisy-neighbor scenario's tenants (loadgen names them <prefix>1).
const (
	nnNoisy = "noisy-1" // over its limit, with the -strategy knob's strategy
	nnLocal = "local-1" // over the same limit, with the local strategy
	nnQuiet = "quiet-1" // well below the default limit
)

// NoisyNeighbor is question 2's scenario: a tenant far over its ingestion
// rate limit, beside one well under it, through two distributors.
func NoisyNeighbor() *Scenario {
	return &Scenario{
		Name:     "noisy-neighbor",
		Question: 2,
		Title:    "Concurrent rate limiter",
		Hypothesis: "A tenant pushing far over its ingestion_rate_mb gets 429 with Loki's \"Ingestion rate limit exceeded\" message and has about its limit accepted, " +
			"while a quiet tenant beside it keeps every push accepted and its p99 latency within a small factor of its own solo baseline. " +
			"With two distributors the global strategy divides the tenant's rate between them, so the tenant gets about 1× its limit in all; " +
			"the local strategy lets each distributor admit the full limit, about 2×.",
		Knobs: []Knob{
			{Name: "strategy", Kind: KnobString, Default: tenant.GlobalStrategy, Usage: "ingestion_rate_strategy of the noisy tenant (" + nnNoisy + "). The hypothesis is about global; `local` is the broken knob: each distributor admits the full limit, so the tenant gets about 2× and the \"≈ 1× its limit\" check fails."},
			{Name: "distributors", Kind: KnobInt, Default: "2", Usage: "Distributors in the ring (app.AllInOneConfig.Distributors); the noisy tenants push to every one of them."},
			{Name: "limit-mb", Kind: KnobFloat, Default: "0.25", Usage: "ingestion_rate_mb of the noisy tenants (runtime overrides), and their burst (ingestion_burst_size_mb). The quiet tenant keeps the defaults, 4 and 6. Small, so the noisy tenants cost the 2-core machine little CPU: what is measured is the limiter, not the machine."},
			{Name: "overload", Kind: KnobFloat, Default: "3", Usage: "How far over its limit a noisy tenant pushes, through each distributor."},
			{Name: "quiet-rate", Kind: KnobFloat, Default: "500", Usage: "Lines per second of the quiet tenant (20-line pushes, about 150KB/s: far under its 4MB/s)."},
			{Name: "baseline", Kind: KnobDuration, Default: "10s", Short: "4s", Usage: "The quiet tenant alone: its solo baseline."},
			{Name: "phase", Kind: KnobDuration, Default: "15s", Short: "6s", Usage: "How long each noisy tenant pushes (first " + nnNoisy + ", then " + nnLocal + ")."},
			{Name: "latency-factor", Kind: KnobFloat, Default: "3", Usage: "The quiet tenant's p99 beside a noisy tenant may be at most this many times its solo p99."},
			{Name: "tolerance", Kind: KnobFloat, Default: "0.25", Usage: "How far (as a fraction) a noisy tenant's accepted rate may be from what its strategy promises."},
		},
		Configure: func(cfg *app.AllInOneConfig, k Values) {
			cfg.AuthEnabled = true
			cfg.Ingesters = 2
			cfg.Distributors = k.Int("distributors")
			limit := k.Float("limit-mb")
			overrides := fmt.Sprintf("overrides:\n  %s:\n    ingestion_rate_mb: %g\n    ingestion_burst_size_mb: %g\n    ingestion_rate_strategy: %s\n"+
				"  %s:\n    ingestion_rate_mb: %g\n    ingestion_burst_size_mb: %g\n    ingestion_rate_strategy: %s\n",
				nnNoisy, limit, limit, k.String("strategy"), nnLocal, limit, limit, tenant.LocalStrategy)
			path := filepath.Join(cfg.DataDir, "overrides.yaml")
			// A failure here shows as the system refusing to start.
			_ = os.MkdirAll(cfg.DataDir, 0o755)
			_ = os.WriteFile(path, []byte(overrides), 0o644)
			cfg.RuntimeConfig.File = path
		},
		Series: []Selector{
			{Name: "lokilab_distributor_bytes_acknowledged_total", Target: "distributor"},
			{Name: "loki_discarded_bytes_total", Target: "distributor"},
		},
		Plots: []PlotSpec{
			{
				File: "noisy-neighbor-accepted.png", Title: "Bytes accepted per second, by tenant (all distributors)", YLabel: "bytes/s",
				Lines: []LineSpec{
					{Select: Selector{Name: "lokilab_distributor_bytes_acknowledged_total", Target: "distributor", Labels: map[string]string{"tenant": nnNoisy}}, Rate: true, Sum: true, Legend: nnNoisy + " (-strategy)"},
					{Select: Selector{Name: "lokilab_distributor_bytes_acknowledged_total", Target: "distributor", Labels: map[string]string{"tenant": nnLocal}}, Rate: true, Sum: true, Legend: nnLocal + " (local)"},
					{Select: Selector{Name: "lokilab_distributor_bytes_acknowledged_total", Target: "distributor", Labels: map[string]string{"tenant": nnQuiet}}, Rate: true, Sum: true, Legend: nnQuiet},
				},
			},
			{
				File: "noisy-neighbor-pushes.png", Title: "Pushes per second by answer, as the clients saw them", YLabel: "pushes/s",
				Lines: []LineSpec{
					{Select: Selector{Name: "lokilab_load_pushes_total", Target: "load:quiet", Labels: map[string]string{"outcome": "2xx"}}, Rate: true, Sum: true, Legend: nnQuiet + " 2xx"},
					{Select: Selector{Name: "lokilab_load_pushes_total", Target: "load:quiet", Labels: map[string]string{"outcome": "429"}}, Rate: true, Sum: true, Legend: nnQuiet + " 429"},
					{Select: Selector{Name: "lokilab_load_pushes_total", Target: "load:noisy", Labels: map[string]string{"outcome": "2xx"}}, Rate: true, Sum: true, Legend: nnNoisy + " 2xx"},
					{Select: Selector{Name: "lokilab_load_pushes_total", Target: "load:noisy", Labels: map[string]string{"outcome": "429"}}, Rate: true, Sum: true, Legend: nnNoisy + " 429"},
					{Select: Selector{Name: "lokilab_load_pushes_total", Target: "load:local", Labels: map[string]string{"outcome": "2xx"}}, Rate: true, Sum: true, Legend: nnLocal + " 2xx"},
					{Select: Selector{Name: "lokilab_load_pushes_total", Target: "load:local", Labels: map[string]string{"outcome": "429"}}, Rate: true, Sum: true, Legend: nnLocal + " 429"},
				},
			},
			{
				File: "noisy-neighbor-quiet-latency.png", Title: "The quiet tenant's push latency per sampling interval", YLabel: "seconds",
				Lines: []LineSpec{
					{Select: Selector{Name: "lokilab_load_push_latency_seconds", Target: "load:quiet", Labels: map[string]string{"stat": "p50"}}, Legend: "p50"},
					{Select: Selector{Name: "lokilab_load_push_latency_seconds", Target: "load:quiet", Labels: map[string]string{"stat": "p99"}}, Legend: "p99"},
				},
			},
		},
		Look: []string{
			"`loki_discarded_samples_total{reason=\"rate_limited\",tenant}` and `loki_discarded_bytes_total` on each distributor's `/metrics`: what the limit refused.",
			"`lokilab_distributor_bytes_acknowledged_total{tenant}`, summed over the distributors: what each tenant got in.",
			"`/ring` on the API port: the distributors the global strategy divides by (role distributor, ACTIVE).",
			"`/config?mode=diff` and the runtime overrides file (`runtime_config.file`): the noisy tenants' limits.",
		},
		Code: []CodeRef{
			{"pkg/tenant/ratelimit.go", "the token bucket per tenant; Limit divides the rate (not the burst) by the healthy distributors under the global strategy"},
			{"pkg/tenant/limits.go", "ingestion_rate_mb, ingestion_burst_size_mb, ingestion_rate_strategy: Loki's names and defaults"},
			{"pkg/tenant/overrides.go", "per-tenant overrides, re-read at runtime"},
			{"pkg/distributor/distributor.go", "where a push is charged to its tenant, all or nothing, and the 429 message"},
			{"pkg/ring/ring.go", "HealthyDistributors: the count the global strategy divides by"},
			{"pkg/app/allinone.go", "Distributors: more than one distributor in the all-in-one process, in one ring"},
			{"pkg/scenario/noisy_neighbor.go", "this scenario: phases, checks"},
			{"docs/questions/02-rate-limiter.md", "the question, the design and a reference run"},
		},
		Budget:      3 * time.Minute,
		ShortBudget: 90 * time.Second,
		Run:         runNoisyNeighbor,
	}
}

// ackedBytes is the bytes every distributor acknowledged for tenant.
func ackedBytes(ctx context.Context, e *Env, tenantID string) (float64, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	sum := 0.0
	for _, d := range e.Sys.Distributors {
		v, err := ScrapeSum(ctx, c, d.URL+"/metrics", "lokilab_distributor_bytes_acknowledged_total", map[string]string{"tenant": tenantID})
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// noisyPhase pushes tenant (prefix+"1") far over its limit through every
// distributor for d, and returns its accepted bytes per second measured
// by the distributors after the first seconds (the burst), and every
// push its clients saw.
func noisyPhase(ctx context.Context, e *Env, prefix string, d time.Duration) (float64, []PushResult, error) {
	k := e.Knobs
	perDistributor := k.Float("overload") * k.Float("limit-mb") * tenant.BytesInMB
	var loads []*LoadgenLoad
	for i, dist := range e.Sys.Distributors {
		cfg := LoadgenDefaults()
		cfg.TenantPrefix = prefix
		cfg.BytesPerSecond = config.ByteSize(perDistributor)
		cfg.Concurrency = 2
		// Large pushes: fewer requests for the same bytes, so less CPU
		// per byte refused.
		cfg.BatchLines = 200
		cfg.Duration = 0
		l := Loadgen(fmt.Sprintf("%sd%d", prefix, i+1), cfg)
		l.URL = dist.URL + "/loki/api/v1/push"
		if err := e.StartLoad(ctx, l); err != nil {
			return 0, nil, err
		}
		loads = append(loads, l)
	}
	// The burst is spent in the first moments; measure after it.
	settle := min(2*time.Second, d/4)
	if err := sleep(ctx, settle); err != nil {
		return 0, nil, err
	}
	t0 := time.Now()
	b0, err := ackedBytes(ctx, e, prefix+"1")
	if err != nil {
		return 0, nil, err
	}
	if err := sleep(ctx, d-settle); err != nil {
		return 0, nil, err
	}
	b1, err := ackedBytes(ctx, e, prefix+"1")
	if err != nil {
		return 0, nil, err
	}
	elapsed := time.Since(t0)
	var ps []PushResult
	var errs []error
	for _, l := range loads {
		errs = append(errs, l.Stop(ctx))
		ps = append(ps, l.Pushes()...)
	}
	return (b1 - b0) / elapsed.Seconds(), ps, errors.Join(errs...)
}

func runNoisyNeighbor(ctx context.Context, e *Env) error {
	k := e.Knobs
	n := len(e.Sys.Distributors)
	limit := k.Float("limit-mb") * tenant.BytesInMB
	strategy := k.String("strategy")
	if strategy != tenant.GlobalStrategy && strategy != tenant.LocalStrategy {
		return fmt.Errorf("-strategy %q: want global or local", strategy)
	}

	qcfg := LoadgenDefaults()
	qcfg.TenantPrefix = "quiet-"
	qcfg.LinesPerSecond = k.Float("quiet-rate")
	qcfg.BatchLines = 20
	qcfg.Concurrency = 2
	qcfg.Duration = 0
	quiet := Loadgen("quiet", qcfg)
	if err := e.StartLoad(ctx, quiet); err != nil {
		return err
	}
	t0 := time.Now()
	if err := sleep(ctx, k.Duration("baseline")); err != nil {
		return err
	}
	t1 := time.Now()
	e.Logf("%s pushes %gx its limit through each of %d distributors (%s strategy)", nnNoisy, k.Float("overload"), n, strategy)
	noisyRate, noisyPushes, err := noisyPhase(ctx, e, "noisy-", k.Duration("phase"))
	if err != nil {
		return err
	}
	t2 := time.Now()
	e.Logf("%s pushes %gx its limit through each of %d distributors (local strategy)", nnLocal, k.Float("overload"), n)
	localRate, localPushes, err := noisyPhase(ctx, e, "local-", k.Duration("phase"))
	if err != nil {
		return err
	}
	t3 := time.Now()
	if err := quiet.Stop(ctx); err != nil {
		return err
	}

	// The quiet tenant, phase by phase; a second into each, so no push
	// straddles two phases.
	qps := quiet.Pushes()
	solo := StatsOf(qps, t0.Add(time.Second), t1, nil)
	besideNoisy := StatsOf(qps, t1.Add(time.Second), t2, nil)
	besideLocal := StatsOf(qps, t2.Add(time.Second), t3, nil)
	rows := [][]string{}
	for _, ph := range []struct {
		name string
		s    PushStats
	}{{"alone (baseline)", solo}, {"beside " + nnNoisy, besideNoisy}, {"beside " + nnLocal, besideLocal}} {
		rows = append(rows, []string{ph.name, fmt.Sprint(ph.s.Total), classes(ph.s), pct(ph.s.Accepted, ph.s.Total), ms(ph.s.P50), ms(ph.s.P99), ratio(ph.s.P99, solo.P99)})
		e.Figure(nnQuiet+" "+ph.name, fmt.Sprintf("%s accepted of %d pushes; p50 %s, p99 %s", pct(ph.s.Accepted, ph.s.Total), ph.s.Total, ms(ph.s.P50), ms(ph.s.P99)),
			"p99 "+ratio(ph.s.P99, solo.P99)+" of its solo p99")
	}
	e.Report.AddTable(Table{Title: "The quiet tenant (" + nnQuiet + "), phase by phase", Header: []string{"phase", "pushes", "answers", "accepted", "p50", "p99", "p99 / solo p99"}, Rows: rows})

	// The noisy tenants.
	wantNoisy := 1.0
	wantLocal := float64(n)
	noisyStats := StatsOf(noisyPushes, time.Time{}, time.Time{}, nil)
	localStats := StatsOf(localPushes, time.Time{}, time.Time{}, nil)
	e.Report.AddTable(Table{Title: "The noisy tenants: limit " + mbps(limit) + " each, " + fmt.Sprint(n) + " distributors", Header: []string{"tenant", "strategy", "offered", "accepted (after the burst)", "× its limit", "pushes", "answers"}, Rows: [][]string{
		{nnNoisy, strategy, mbps(float64(n) * k.Float("overload") * limit), mbps(noisyRate), fmt.Sprintf("%.2f", noisyRate/limit), fmt.Sprint(noisyStats.Total), classes(noisyStats)},
		{nnLocal, tenant.LocalStrategy, mbps(float64(n) * k.Float("overload") * limit), mbps(localRate), fmt.Sprintf("%.2f", localRate/limit), fmt.Sprint(localStats.Total), classes(localStats)},
	}})
	e.Figure(nnNoisy+" accepted", fmt.Sprintf("%s = %.2f× its limit", mbps(noisyRate), noisyRate/limit), strategy+" strategy; lokilab_distributor_bytes_acknowledged_total summed over the distributors, after the burst")
	e.Figure(nnLocal+" accepted", fmt.Sprintf("%s = %.2f× its limit", mbps(localRate), localRate/limit), "local strategy, same limit")

	// Loki's message, seen by the client.
	var msg string
	bad := 0
	for _, p := range append(append([]PushResult(nil), noisyPushes...), localPushes...) {
		switch {
		case p.Outcome.Accepted():
		case p.Outcome.Code == http.StatusTooManyRequests && p.Outcome.Reason == "rate_limited" && strings.HasPrefix(p.Message, "Ingestion rate limit exceeded for user "):
			if msg == "" {
				msg = p.Message
			}
		default:
			bad++
		}
	}
	if msg != "" {
		e.Figure("the 429 answer", "`"+msg+"`", "Loki's wording, tenant and limit per distributor included")
	}
	e.Check("the noisy tenants get 429 with Loki's message", "429 \"Ingestion rate limit exceeded for user …\" and no other refusal",
		fmt.Sprintf("%d 429 of %d pushes; %d other refusals", noisyStats.ByClass["429"]+localStats.ByClass["429"], noisyStats.Total+localStats.Total, bad),
		msg != "" && bad == 0)
	tol := k.Float("tolerance")
	within := func(got, want float64) bool { return got >= want*(1-tol) && got <= want*(1+tol) }
	e.Check(fmt.Sprintf("%s gets about 1× its limit in all (global strategy, %d distributors)", nnNoisy, n),
		fmt.Sprintf("%.2f× ± %.0f%%", wantNoisy, 100*tol), fmt.Sprintf("%.2f× (%s)", noisyRate/limit, strategy), within(noisyRate/limit, wantNoisy))
	e.Check(fmt.Sprintf("%s gets about %d× its limit (local strategy: the full limit in each distributor)", nnLocal, n),
		fmt.Sprintf("%.2f× ± %.0f%%", wantLocal, 100*tol), fmt.Sprintf("%.2f×", localRate/limit), within(localRate/limit, wantLocal))
	e.Check("the quiet tenant's pushes are all accepted", "100% 2xx alone and beside each noisy tenant",
		fmt.Sprintf("%s, %s, %s", pct(solo.Accepted, solo.Total), pct(besideNoisy.Accepted, besideNoisy.Total), pct(besideLocal.Accepted, besideLocal.Total)),
		solo.Total > 0 && besideNoisy.Total > 0 && besideLocal.Total > 0 &&
			solo.Accepted == solo.Total && besideNoisy.Accepted == besideNoisy.Total && besideLocal.Accepted == besideLocal.Total)
	factor := k.Float("latency-factor")
	worst := max(besideNoisy.P99, besideLocal.P99)
	e.Check("the quiet tenant's latency is unchanged", fmt.Sprintf("p99 beside the noisy tenants ≤ %g× its solo p99 (%s)", factor, ms(solo.P99)),
		fmt.Sprintf("%s (%s)", ms(worst), ratio(worst, solo.P99)), solo.P99 > 0 && float64(worst) <= factor*float64(solo.P99))
	_, err = VerifyAcked(ctx, e, quiet, 30*time.Second)
	return err
}

func mbps(bytesPerSecond float64) string {
	return fmt.Sprintf("%.3f MB/s", bytesPerSecond/tenant.BytesInMB)
}

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}
