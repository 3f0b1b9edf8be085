package scenario

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/loadgen"
)

// IngesterOOM is question 9, the incident "ingester OOM": a burst of new
// streams against ingesters with a real memory limit (a cgroup v1 memory
// group per process, enforced by the kernel's OOM killer), with the
// ingesters' memory protections off and then on.
//
// Off (max_global_streams_per_user 0, max_memory_chunk_bytes 0): every
// new stream costs the ingester a stream, a chunk and its head block, and
// nothing is flushed (no chunk is full, none is idle or old yet), so the
// committed offset stays where the burst began. The limited ingester
// grows to its limit and the kernel kills it; the supervisor restarts it;
// it replays its partitions from the committed offset, which is the whole
// burst again, grows to the limit and is killed again: a crash loop, with
// its partitions' lag growing, until it gets more memory or the backlog is
// cut. Nothing acknowledged is lost — it is all in Kafka — but it cannot be
// read back while the loop lasts.
//
// On (the defaults: 5000 streams per tenant at the distributor, and an
// in-memory chunk bound at the ingester): the distributor refuses the
// streams past the limit with 429 and Loki's message before anything
// reaches Kafka, and an ingester over its chunk bound pauses fetching and
// flushes early instead of growing. No kill; the lag drains.
func IngesterOOM() *Scenario {
	return &Scenario{
		Name:     "ingester-oom",
		Question: 9,
		Title:    "Incident: ingester OOM",
		Hypothesis: "A high-cardinality burst against a memory-limited ingester gets it OOM-killed by the kernel when its " +
			"protections are off, and the replay of its uncommitted backlog gets it killed again after every restart (a crash loop, lag growing). " +
			"With the protections on (max_global_streams_per_user at the distributor, max_memory_chunk_bytes at the ingester) " +
			"the burst is answered with 429s, the ingester is never killed, its memory stays under the limit, " +
			"its lag returns to zero and no acknowledged line is lost.",
		Knobs: []Knob{
			{Name: "protections", Kind: KnobBool, Default: "true", Usage: "The ingesters' memory protections: on, max_global_streams_per_user 5000 (Loki's default) and max_memory_chunk_bytes -chunk-memory; off, both 0 (unlimited), which is how the OOM is made."},
			{Name: "expect", Kind: KnobString, Default: "auto", Usage: "Which outcome to check: protected (no OOM kill, 429s, lag drains, nothing lost), oom (OOM-killed, crash loop) or auto (protected with -protections, oom without). -protections=false -expect=protected is a broken knob: the \"no OOM kill\" check fails."},
			{Name: "memory-limit", Kind: KnobString, Default: "256MiB", Short: "128MiB", Usage: "The memory cgroup limit of -limit-on (memory.limit_in_bytes; swap excluded): past it the kernel kills the process. The short run's burst is smaller, so its limit is too: the replay must not fit, or there is no crash loop."},
			{Name: "limit-on", Kind: KnobString, Default: "ingester-2", Usage: "The process that gets -memory-limit: one ingester (the others get a safety limit of 4x, so nothing grows unbounded on a shared machine) or \"ingesters\" for all."},
			{Name: "chunk-memory", Kind: KnobString, Default: "64MiB", Usage: "max_memory_chunk_bytes with -protections: above it an ingester pauses fetching and flushes its largest chunks (reason memory). A quarter of the limit leaves room for the Go runtime's garbage (GOGC 100 lets the heap reach twice the live data)."},
			{Name: "streams", Kind: KnobInt, Default: "1000000", Usage: "The burst's cardinality: streams of its one tenant, each a new label set (pod=<app>-<n>); far more than the burst reaches, so nearly every line opens a stream."},
			{Name: "rate", Kind: KnobFloat, Default: "20000", Short: "16000", Usage: "The burst's lines per second; a push of 1000 lines carries 1000 streams (one line each, a request-ID label's worth of cardinality), so new streams arrive at about this rate."},
			{Name: "burst", Kind: KnobDuration, Default: "30s", Short: "15s", Usage: "How long the burst lasts."},
			{Name: "watch", Kind: KnobDuration, Default: "40s", Short: "20s", Usage: "How long to watch after the burst: the crash loop (off), the lag draining (on)."},
			{Name: "verify-wait", Kind: KnobDuration, Default: "30s", Usage: "How long the check that no acknowledged line was lost keeps reading while lines are missing (an ingester still replaying answers partially)."},
			{Name: "remedy", Kind: KnobBool, Default: "true", Usage: "After watching a crash loop, raise the limit to 4x at runtime (MemoryLimit: memory.limit_in_bytes of the running group) and check that the ingester replays its backlog, becomes ready and that no acknowledged line was lost. False leaves it looping to the end."},
		},
		Processes: func(Values) bool { return true },
		Configure: configureIngesterOOM,
		Series: []Selector{
			{Name: "lokilab_supervisor_memory_usage_bytes", Target: "supervisor"},
			{Name: "lokilab_supervisor_memory_limit_bytes", Target: "supervisor"},
			{Name: "lokilab_supervisor_process_restarts_total", Target: "supervisor"},
			{Name: "lokilab_supervisor_oom_kills_total", Target: "supervisor"},
			{Name: "process_resident_memory_bytes", Target: "ingester"},
			{Name: "go_memstats_heap_inuse_bytes", Target: "ingester"},
			{Name: "loki_ingester_memory_streams", Target: "ingester"},
			{Name: "lokilab_ingester_partition_lag_records", Target: "ingester"},
			{Name: "lokilab_ingester_memory_chunk_bytes", Target: "ingester"},
			{Name: "lokilab_ingester_fetch_paused", Target: "ingester"},
			{Name: "loki_discarded_samples_total", Labels: map[string]string{"reason": "stream_limit"}, Target: "distributor"},
		},
		Plots: []PlotSpec{
			{File: "oom-lag.png", Title: "Kafka lag: records not committed, and not yet fetched", YLabel: "records", Lines: []LineSpec{
				{Select: Selector{Name: "lokilab_kafka_group_lag_records", Target: "kafka"}, Legend: "uncommitted (what a restart replays)"},
				{Select: Selector{Name: "lokilab_ingester_partition_lag_records", Target: "ingester"}, Legend: "not yet fetched (live ingesters)", Sum: true},
			}},
			{File: "oom-pushes.png", Title: "The burst's pushes by outcome (per second)", YLabel: "pushes/s", Lines: []LineSpec{
				{Select: Selector{Name: "lokilab_load_pushes_total", Target: "load:burst"}, Legend: "burst", Rate: true},
				{Select: Selector{Name: "lokilab_load_pushes_total", Target: "load:steady", Labels: map[string]string{"outcome": "2xx"}}, Legend: "steady", Rate: true},
			}},
			{File: "oom-streams.png", Title: "Streams in ingester memory", YLabel: "streams", Lines: []LineSpec{
				{Select: Selector{Name: "loki_ingester_memory_streams", Target: "ingester"}, Legend: "", Sum: false},
			}},
		},
		Look: []string{
			"`GET /processes` on the gateway: `last_exit` \"oom-killed (…)\", `oom_kills`, `restarts`, `memory_usage_bytes` and the `cgroup` of each limited process",
			"the supervisor's log (system.log): \"process OOM-killed: its memory cgroup hit its limit\", then \"process died; restarting it\" with a growing restart_in",
			"`lokilab_supervisor_memory_usage_bytes` against `lokilab_supervisor_memory_limit_bytes`, `lokilab_supervisor_oom_kills_total` on the gateway's /metrics",
			"`cat /sys/fs/cgroup/memory/lokilab-<supervisor pid>-ingester-2/memory.oom_control` (oom_kill), `memory.max_usage_in_bytes`, `memory.failcnt`; `dmesg | grep -i oom` for the kernel's own report",
			"each ingester's /metrics: `process_resident_memory_bytes`, `go_memstats_heap_inuse_bytes`, `loki_ingester_memory_streams`, `lokilab_ingester_memory_chunk_bytes` vs `lokilab_ingester_memory_chunk_bytes_limit`, `lokilab_ingester_fetch_paused`, `lokilab_ingester_replayed_records_total`",
			"the distributor's `loki_discarded_samples_total{reason=\"stream_limit\"}` and the 429 body: \"Maximum active stream limit exceeded …\"",
			"`go tool pprof http://<ingester>/debug/pprof/heap` during the burst: where the memory of a stream goes (chunk.New, the head block, the stream maps)",
		},
		Code: []CodeRef{
			{Path: "pkg/app/cgroup.go", Why: "the memory cgroup per process: limit_in_bytes, memsw, swappiness, cgroup.procs, the oom_kill count; GOMEMLIMIT and why it is not a kill"},
			{Path: "pkg/app/processes.go", Why: "the supervisor: moves each child into its group after every start, reports an OOM kill, restarts with a doubling backoff"},
			{Path: "pkg/distributor/distributor.go", Why: "limitStreams: max_global_streams_per_user refuses new streams with 429 before anything is written to Kafka"},
			{Path: "pkg/distributor/streams.go", Why: "the per-tenant active stream count the limit is checked against"},
			{Path: "pkg/ingester/ingester.go", Why: "the memory account: over max_memory_chunk_bytes fetching pauses and the largest chunks flush early"},
			{Path: "pkg/ingester/partition.go", Why: "one stream per label set, each with its chunk: why cardinality costs memory"},
			{Path: "pkg/chunk/chunk.go", Why: "chunk.New and the head block's arena: the memory each new stream takes, and MemoryBytes, what the bound counts"},
			{Path: "pkg/ingester/flush.go", Why: "offsets are committed only behind flushed data: why a killed ingester replays its whole unflushed backlog"},
			{Path: "pkg/scenario/processes.go", Why: "the system as separate processes: /processes, KillComponent, MemoryLimit on the cgroup"},
		},
		Budget:      4 * time.Minute,
		ShortBudget: 90 * time.Second,
		Run:         runIngesterOOM,
	}
}

// oomLimits returns the memory limits of the run: -memory-limit on
// -limit-on, and a safety limit of four times it on the other ingesters.
func oomLimits(k Values) (app.MemoryLimits, int64, error) {
	limit, err := config.ParseByteSize(k.String("memory-limit"))
	if err != nil {
		return nil, 0, fmt.Errorf("-memory-limit: %w", err)
	}
	on := k.String("limit-on")
	m := app.MemoryLimits{on: limit}
	if on != "ingesters" {
		m["ingesters"] = 4 * limit
	}
	return m, int64(limit), nil
}

func configureIngesterOOM(cfg *app.AllInOneConfig, k Values) {
	cfg.AuthEnabled = true // two tenants: the burst and a steady one whose lines are verified
	// The ingestion rate limit is not what this is about: raise it, so
	// the burst reaches the limits under test.
	cfg.Limits.IngestionRateMB = 1000
	cfg.Limits.IngestionBurstSizeMB = 1000
	if k.Bool("protections") {
		if b, err := config.ParseByteSize(k.String("chunk-memory")); err == nil {
			cfg.Ingester.MaxMemoryChunkBytes = b
		}
	} else {
		cfg.Ingester.MaxMemoryChunkBytes = 0
		cfg.Limits.MaxGlobalStreamsPerUser = 0
	}
	if m, _, err := oomLimits(k); err == nil {
		cfg.Processes.MemoryLimits = m
	}
	cfg.Processes.MemoryLimitMode = app.MemoryLimitCgroup
	// Hundreds of thousands of one-line chunks would take minutes to flush
	// at the end of the run, for nothing: what was acknowledged is checked
	// before the system stops, and Kafka holds it all anyway.
	cfg.Ingester.ShutdownFlush = false
	// A crash loop must not hold the startup back: the supervisor gives
	// up on a process only during startup.
	cfg.Processes.StopTimeout = 30 * time.Second
}

// oomWatch follows /processes: OOM kills, restarts, memory per process.
type oomWatch struct {
	mu       sync.Mutex
	kills    map[string]int
	restarts map[string]int
	exits    map[string]string
	usage    map[string]int64 // peak memory_usage_bytes seen
	events   []string
}

func (w *oomWatch) poll(ctx context.Context, env *Env) {
	st, err := env.Sys.Processes(ctx)
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range st.Processes {
		if p.OOMKills > w.kills[p.Name] {
			ev := fmt.Sprintf("%s OOM-killed (%d so far; restarts %d): %s", p.Name, p.OOMKills, p.Restarts, p.LastExit)
			w.events = append(w.events, fmt.Sprintf("%.1fs %s", env.Since().Seconds(), ev))
			env.Logf("%s", ev)
		}
		if p.Restarts > w.restarts[p.Name] && p.OOMKills == w.kills[p.Name] {
			env.Logf("%s restarted (%d), last exit %q", p.Name, p.Restarts, p.LastExit)
		}
		w.kills[p.Name], w.restarts[p.Name] = p.OOMKills, p.Restarts
		if p.LastExit != "" {
			w.exits[p.Name] = p.LastExit
		}
		w.usage[p.Name] = max(w.usage[p.Name], p.MemoryUsage)
	}
}

func (w *oomWatch) total(m map[string]int, prefix string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

// groupLag is the consumer group's lag over the topic: end offsets minus
// committed offsets (from the partition's start where none is committed),
// read from Kafka, so a dead ingester's partitions count too.
func groupLag(ctx context.Context, adm *kadm.Client, topic, group string) (int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	commits, err := adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		commits, err = nil, nil // nothing committed yet
	}
	if err != nil {
		return 0, err
	}
	var lag int64
	ends.Each(func(o kadm.ListedOffset) {
		from := int64(0)
		if s, ok := starts.Lookup(topic, o.Partition); ok {
			from = s.Offset
		}
		if c, ok := commits.Lookup(topic, o.Partition); ok && c.Err == nil && c.At >= 0 {
			from = c.At
		}
		lag += max(o.Offset-from, 0)
	})
	return lag, nil
}

func runIngesterOOM(ctx context.Context, env *Env) error {
	k := env.Knobs
	protections := k.Bool("protections")
	expect := k.String("expect")
	if expect == "auto" {
		expect = map[bool]string{true: "protected", false: "oom"}[protections]
	}
	if expect != "protected" && expect != "oom" {
		return fmt.Errorf("-expect %q: want protected, oom or auto", expect)
	}
	_, limit, err := oomLimits(k)
	if err != nil {
		return err
	}
	limited := k.String("limit-on")
	st, err := env.Sys.Processes(ctx)
	if err != nil {
		return err
	}
	var groups []string
	for _, p := range st.Processes {
		if p.Cgroup != "" {
			groups = append(groups, fmt.Sprintf("%s %s (`%s`)", p.Name, config.ByteSize(p.MemoryLimit), p.Cgroup))
		}
	}
	if len(groups) == 0 {
		return errors.New("no process has a memory cgroup: the supervisor did not apply -processes.memory-limit")
	}
	env.Figure("memory cgroups", strings.Join(groups, "; "), "created by the supervisor (-processes.memory-limit), one per process; swap excluded (memsw = limit, swappiness 0)")
	env.Figure("protections", map[bool]string{true: fmt.Sprintf("on: max_global_streams_per_user %d, max_memory_chunk_bytes %s", env.Sys.Config.Limits.MaxGlobalStreamsPerUser, env.Sys.Config.Ingester.MaxMemoryChunkBytes),
		false: "off: max_global_streams_per_user 0, max_memory_chunk_bytes 0 (both unlimited)"}[protections], "expecting: "+expect)

	// Plots that depend on the knobs: memory against the limit line.
	memSel := map[string]string{}
	if limited != "ingesters" {
		memSel["process"] = limited
	}
	env.Report.AddPlot(PlotSpec{File: "oom-memory.png", Title: fmt.Sprintf("Memory of %s against its cgroup limit (%s)", limited, config.ByteSize(limit)), YLabel: "bytes", Lines: []LineSpec{
		{Select: Selector{Name: "lokilab_supervisor_memory_limit_bytes", Target: "supervisor", Labels: memSel}, Legend: "limit"},
		{Select: Selector{Name: "lokilab_supervisor_memory_usage_bytes", Target: "supervisor", Labels: memSel}, Legend: "cgroup usage"},
		{Select: Selector{Name: "process_resident_memory_bytes", Target: strings.TrimSuffix(limited, "s")}, Legend: "RSS"},
		{Select: Selector{Name: "go_memstats_heap_inuse_bytes", Target: strings.TrimSuffix(limited, "s")}, Legend: "Go heap in use"},
	}})

	env.Report.AddPlot(PlotSpec{File: "oom-restarts.png", Title: fmt.Sprintf("Supervisor: OOM kills and restarts of %s", limited), YLabel: "count", Lines: []LineSpec{
		{Select: Selector{Name: "lokilab_supervisor_oom_kills_total", Target: "supervisor", Labels: memSel}, Legend: "OOM kills"},
		{Select: Selector{Name: "lokilab_supervisor_process_restarts_total", Target: "supervisor", Labels: memSel}, Legend: "restarts"},
	}})

	// Kafka lag and /processes, every sampling interval, in the background.
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Sys.Kafka))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	w := &oomWatch{kills: map[string]int{}, restarts: map[string]int{}, exits: map[string]string{}, usage: map[string]int64{}}
	var lagMu sync.Mutex
	var lagNow, lagPeak int64
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		t := time.NewTicker(env.Sampler.Interval())
		defer t.Stop()
		var lastErr string
		for {
			qctx, c := context.WithTimeout(wctx, 2*time.Second)
			lag, err := groupLag(qctx, adm, env.Sys.Topic, env.Sys.ConsumerGroup)
			if err != nil && err.Error() != lastErr && wctx.Err() == nil {
				lastErr = err.Error()
				env.Logf("reading the consumer group's lag: %v", err)
			}
			if err == nil {
				env.Sampler.Record("kafka", "lokilab_kafka_group_lag_records", nil, false, Point{T: time.Now(), V: float64(lag)})
				lagMu.Lock()
				lagNow, lagPeak = lag, max(lagPeak, lag)
				lagMu.Unlock()
			}
			w.poll(qctx, env)
			c()
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	defer func() { stopWatch(); <-watched }()
	lagAt := func() int64 { lagMu.Lock(); defer lagMu.Unlock(); return lagNow }

	// A steady tenant whose lines are verified at the end, and the burst.
	sc := LoadgenDefaults()
	sc.TenantPrefix, sc.Tenants, sc.StreamsPerTenant, sc.StreamsPerPush = "steady-", 1, 10, 4
	sc.LinesPerSecond, sc.BatchLines, sc.Concurrency, sc.Duration = 400, 100, 2, 0
	steady := Loadgen("steady", sc)
	if err := env.StartLoad(ctx, steady); err != nil {
		return err
	}
	if err := sleepCtx(ctx, 3*time.Second); err != nil {
		return err
	}
	bc := LoadgenDefaults()
	bc.TenantPrefix, bc.Tenants = "burst-", 1
	bc.StreamsPerTenant, bc.BatchLines, bc.StreamsPerPush = k.Int("streams"), 1000, 1000
	bc.LinesPerSecond, bc.Concurrency, bc.Duration = k.Float("rate"), 6, k.Duration("burst")
	bc.Shapes = loadgen.Mix{4, 3, 2, 0} // no stack traces: short lines, many of them
	burst := Loadgen("burst", bc)
	burstStart := time.Now()
	env.Logf("burst: %d streams, %.0f lines/s for %s against %s limited to %s (protections %v)", bc.StreamsPerTenant, bc.LinesPerSecond, bc.Duration, limited, config.ByteSize(limit), protections)
	if err := env.StartLoad(ctx, burst); err != nil {
		return err
	}
	if err := burst.Wait(ctx); err != nil {
		return err
	}
	burstEnd := time.Now()
	env.Logf("burst over after %s; lag %d records; OOM kills so far %d; watching for %s", burstEnd.Sub(burstStart).Round(time.Second), lagAt(), w.total(w.kills, "ingester"), k.Duration("watch"))

	// Watch: the crash loop, or the ingesters catching up (then stop
	// early). Two lags: the ingesters' own fetch lag (records not yet
	// read: what "caught up" means), and the group's uncommitted lag
	// (records not yet flushed: what a restart would replay, which only
	// falls as chunks are flushed).
	deadline := time.Now().Add(k.Duration("watch"))
	drainedAt := time.Duration(-1)
	fetchLag := int64(-1)
	for time.Now().Before(deadline) {
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
		if expect == "protected" {
			fetchLag = ingestersFetchLag(ctx, env)
			if fetchLag >= 0 && fetchLag <= lagDrained && w.total(w.kills, "ingester") == 0 {
				drainedAt = time.Since(burstEnd)
				break
			}
		}
	}
	_ = steady.Stop(ctx)
	w.poll(ctx, env)

	// Figures.
	pushes := burst.Pushes()
	byOutcome := map[string]int{}
	streamLimit429 := 0
	for _, p := range pushes {
		byOutcome[p.Outcome.String()]++
		if p.Outcome.Code == 429 && p.Outcome.Reason == "stream_limit" {
			streamLimit429++
		}
	}
	var outcomes []string
	for _, o := range slices.Sorted(maps.Keys(byOutcome)) {
		outcomes = append(outcomes, fmt.Sprintf("%s: %d", o, byOutcome[o]))
	}
	env.Figure("burst pushes by outcome", strings.Join(outcomes, ", "), "as the client saw them")
	kills := w.total(w.kills, "ingester")
	restarts := w.total(w.restarts, "ingester")
	w.mu.Lock()
	events := slices.Clone(w.events)
	exits := fmt.Sprint(w.exits)
	w.mu.Unlock()
	env.Figure("OOM kills (ingesters)", fmt.Sprint(kills), "the memory cgroups' oom_kill counts, as /processes reports them")
	env.Figure("restarts (ingesters)", fmt.Sprint(restarts), "by the supervisor, 1s backoff doubling while a process dies within 10s of starting")
	if len(events) > 0 {
		env.Figure("OOM kill times", strings.Join(events, "; "), "seconds since the run began")
	}
	env.Figure("last exits", exits, "/processes last_exit")
	peakRSS := 0.0
	for _, s := range env.Sampler.Select(Selector{Name: "process_resident_memory_bytes", Target: strings.TrimSuffix(limited, "s")}) {
		peakRSS = max(peakRSS, s.Max())
	}
	peakCgroup := 0.0
	for _, s := range env.Sampler.Select(Selector{Name: "lokilab_supervisor_memory_usage_bytes", Target: "supervisor", Labels: memSel}) {
		peakCgroup = max(peakCgroup, s.Max())
	}
	env.Figure("peak memory of "+limited, fmt.Sprintf("RSS %s, cgroup usage %s, limit %s", mib(peakRSS), mib(peakCgroup), mib(float64(limit))),
		"RSS from process_resident_memory_bytes (last scrape before a kill); cgroup usage counts page cache too, which the kernel reclaims before it kills")
	lagMu.Lock()
	peak, end := lagPeak, lagNow
	lagMu.Unlock()
	env.Figure("uncommitted lag", fmt.Sprintf("peak %d records, at the end %d", peak, end), "end offsets minus the group's committed offsets, from Kafka: what a restart replays; it falls only as chunks are flushed")
	if fetchLag >= 0 {
		env.Figure("fetch lag at the end", fmt.Sprintf("%d records", fetchLag), "sum of the ingesters' lokilab_ingester_partition_lag_records: records not yet read")
	}
	if drainedAt >= 0 {
		env.Figure("caught up", fmt.Sprintf("%s after the burst", drainedAt.Round(100*time.Millisecond)), fmt.Sprintf("fetch lag ≤ %d records", lagDrained))
	}

	// Checks.
	switch expect {
	case "protected":
		env.Check("no ingester was OOM-killed", "0 OOM kills", fmt.Sprintf("%d OOM kills, %d restarts", kills, restarts), kills == 0)
		env.Check("the stream limit answered the burst with 429 and Loki's message", "> 0 pushes 429 stream_limit",
			fmt.Sprintf("%d of %d pushes", streamLimit429, len(pushes)), streamLimit429 > 0)
		env.Check(limited+"'s memory stayed under its limit", "peak RSS < "+mib(float64(limit)), "peak RSS "+mib(peakRSS), peakRSS > 0 && peakRSS < float64(limit))
		env.Check("the ingesters caught up after the burst (fetch lag back to ~0)", fmt.Sprintf("≤ %d records within %s", lagDrained, k.Duration("watch")), fmt.Sprintf("%d records", fetchLag), fetchLag >= 0 && fetchLag <= lagDrained)
		if _, err := VerifyAcked(ctx, env, steady, k.Duration("verify-wait")); err != nil {
			env.Check("load steady: every acknowledged line is queryable exactly once", "verified", err.Error(), false)
		}
	case "oom":
		env.Check(limited+" was OOM-killed by the kernel", "≥ 1 OOM kill (cgroup oom_kill count)", fmt.Sprintf("%d", kills), kills >= 1)
		env.Check("crash loop: killed again while replaying its backlog after a restart", "≥ 2 OOM kills, ≥ 1 restart",
			fmt.Sprintf("%d OOM kills, %d restarts", kills, restarts), kills >= 2 && restarts >= 1)
		env.Check("the backlog stayed uncommitted: what every restart replays", "lag > 0 records at the end of the watch", fmt.Sprintf("%d records (peak %d)", end, peak), end > 0)
		if k.Bool("remedy") && limited != "ingesters" {
			return remedyOOM(ctx, env, w, limited, 4*limit, steady)
		}
		env.Report.AddNote("Nothing acknowledged is lost here either: every acknowledged line is a record in Kafka, behind the committed offset. " +
			"It cannot be read back while the ingester crash-loops; give it the memory to replay (-remedy: MemoryLimit at runtime) and it is.")
	}
	return nil
}

// remedyOOM raises the crash-looping process's limit at runtime and checks
// that it replays, becomes ready and that every acknowledged line of the
// steady load is read back: the incident's way out.
func remedyOOM(ctx context.Context, env *Env, w *oomWatch, name string, limit int64, steady *LoadgenLoad) error {
	began := time.Now()
	killsBefore := w.total(w.kills, name)
	if err := env.Faults.MemoryLimit(ctx, name, limit); err != nil {
		return fmt.Errorf("raising %s's limit: %w", name, err)
	}
	env.Logf("remedy: %s's memory limit raised to %s at runtime; waiting for it to replay and become ready", name, config.ByteSize(limit))
	// The supervisor's backoff may hold the next start back up to 30s.
	wctx, cancel := context.WithTimeout(ctx, 75*time.Second)
	defer cancel()
	var ready bool
	for !ready {
		if err := sleepCtx(wctx, 500*time.Millisecond); err != nil {
			break
		}
		p, err := env.Sys.Process(wctx, name)
		ready = err == nil && p.PID != 0 && p.Ready
	}
	w.poll(ctx, env)
	took := time.Since(began)
	kills := w.total(w.kills, name) - killsBefore
	env.Figure("remedy", fmt.Sprintf("limit raised to %s; %s ready again after %s, %d more OOM kills", config.ByteSize(limit), name, took.Round(100*time.Millisecond), kills),
		"MemoryLimit fault: memory.limit_in_bytes of the group, while the process loops")
	if !env.Check(name+" replayed its backlog and became ready with the limit raised", "ready, no further OOM kill", fmt.Sprintf("ready %v after %s, %d more OOM kills", ready, took.Round(100*time.Millisecond), kills), ready && kills == 0) {
		return nil
	}
	if _, err := VerifyAcked(ctx, env, steady, env.Knobs.Duration("verify-wait")); err != nil {
		env.Check("load steady: every acknowledged line is queryable exactly once", "verified", err.Error(), false)
	}
	return nil
}

// lagDrained is the fetch lag counted as caught up: the steady load keeps
// a few records in flight.
const lagDrained = 1000

// ingestersFetchLag sums every ingester's lokilab_ingester_partition_lag_records
// now; -1 if one of them cannot be read (dead, or too busy to answer).
func ingestersFetchLag(ctx context.Context, env *Env) int64 {
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	var sum float64
	for _, in := range env.Sys.Ingesters {
		v, err := ScrapeSum(ctx, client, in.URL+"/metrics", "lokilab_ingester_partition_lag_records", nil)
		if err != nil {
			return -1
		}
		sum += v
	}
	return int64(sum)
}

func mib(v float64) string { return fmt.Sprintf("%.0f MiB", v/(1<<20)) }

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
