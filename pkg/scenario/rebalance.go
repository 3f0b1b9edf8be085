package scenario

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
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

// Rebalance is question 6, Kafka consumer group rebalancing: the same
// steady load and the same fault — one ingester killed with SIGKILL, which
// the supervisor restarts a second later — against the two ways lokilab
// owns partitions, one system after the other.
//
// ring: each partition's owner follows from the ring's healthy members by
// rendezvous hashing. The victim restarts under the same instance ID
// before its heartbeat is old enough for anyone to call it unhealthy, so
// nothing is reassigned: only its own partitions stop, until the new
// process has replayed them from the last commit. The survivors never
// notice.
//
// group: a Kafka consumer group, cooperative-sticky, dynamic membership.
// The restarted process is a new member; its old member still holds the
// victim's partitions until the coordinator's session timeout expires;
// then the group rebalances and partitions are assigned again among the
// members. Cooperative-sticky keeps what each survivor had, but the
// victim's partitions stay unconsumed for about the session timeout.
func Rebalance() *Scenario {
	return &Scenario{
		Name:     "rebalance",
		Question: 6,
		Title:    "Kafka consumer group rebalancing",
		Hypothesis: "Killing one of three ingesters (kill -9; the supervisor restarts it) pauses only the victim's partitions in both modes, " +
			"but for different lengths and reasons: with ring ownership nothing is reassigned (it is back before its heartbeat times out) and the pause is the restart plus the replay; " +
			"with a consumer group the victim's partitions wait for the coordinator's session timeout, then a rebalance assigns them again. " +
			"Each mode replays what was not committed, the lag peaks and drains, and no acknowledged line is lost.",
		Knobs: []Knob{
			{Name: "ownership", Kind: KnobString, Default: "both", Usage: "ring, group or both (ring first, then group, each on a system of its own: the same load and the same kill)."},
			{Name: "expect", Kind: KnobString, Default: "auto", Usage: "Whose expectations to check: auto (each mode its own), ring or group (that mode's expectations against every mode). -ownership ring -expect group is a broken knob: the group's \"the victim's partitions waited for the session timeout\" check fails."},
			{Name: "victim", Kind: KnobString, Default: "ingester-2", Usage: "The ingester killed with SIGKILL."},
			{Name: "session-timeout", Kind: KnobDuration, Default: "6s", Usage: "-ingester.group-session-timeout in group mode: how long the coordinator waits for a silent member before a rebalance takes its partitions. Lower pauses less after a crash, but a GC pause or a slow network then triggers rebalances."},
			{Name: "rate", Kind: KnobFloat, Default: "1000", Short: "600", Usage: "The steady load's lines per second (20-line pushes of 4 of 24 streams: every partition gets records several times a second, so a pause shows)."},
			{Name: "before", Kind: KnobDuration, Default: "6s", Short: "4s", Usage: "Steady load before the kill: the baseline of lag and per-partition gaps."},
			{Name: "watch", Kind: KnobDuration, Default: "25s", Short: "16s", Usage: "How long to watch after the kill, per mode."},
			{Name: "verify-wait", Kind: KnobDuration, Default: "20s", Short: "10s", Usage: "How long the check that no acknowledged line was lost keeps reading while lines are missing."},
		},
		Processes: func(Values) bool { return true },
		Configure: configureRebalance,
		Look: []string{
			"each ingester's `GET /ingester/status`: the partitions it owns now, their committed offsets",
			"`lokilab_ingester_partition_lag_records{partition}` (deleted when a partition is released: its presence is ownership), `lokilab_ingester_records_consumed_total{partition}`, `lokilab_ingester_replayed_records_total`, `lokilab_ingester_partitions_acquired_total`, `lokilab_ingester_partitions_released_total{how}`",
			"ring mode: `GET /ring` on the gateway: the victim's heartbeat age and partition owners while it restarts",
			"group mode: the ingesters' log lines about assigned and revoked partitions in system.log; `kadm` DescribeGroups on the consumer group shows its members and generation",
			"`GET /processes`: the victim's restarts and last exit (\"signal: killed\")",
		},
		Code: []CodeRef{
			{Path: "docs/adr/0007-partition-handover.md", Why: "why ring ownership exists beside a consumer group, and what a dead owner costs"},
			{Path: "pkg/ingester/config.go", Why: "-ingester.ownership ring|group|static, the group session timeout, static membership"},
			{Path: "pkg/ingester/ownership.go", Why: "both modes: the ring loop and its handover; the group's options (cooperative-sticky, revoke flushes and commits, lost drops)"},
			{Path: "pkg/ingester/ingester.go", Why: "acquiring and releasing a partition: replay from the committed offset, partitions_acquired_total"},
			{Path: "pkg/ingester/partition.go", Why: "the fetch loop: records consumed and replayed per partition, the lag gauge"},
			{Path: "pkg/ring/config.go", Why: "heartbeat_timeout: how long a dead owner keeps its partitions in the ring"},
			{Path: "pkg/scenario/rebalance.go", Why: "this scenario: how the pause, the replay, the lag and the moves are measured"},
		},
		Budget:      4 * time.Minute,
		ShortBudget: 2 * time.Minute,
		Run:         runRebalance,
	}
}

// rebalanceModes are the ownership modes a run covers, in order.
func rebalanceModes(k Values) ([]string, error) {
	switch o := k.String("ownership"); o {
	case "both":
		return []string{ingester.OwnershipRing, ingester.OwnershipGroup}, nil
	case ingester.OwnershipRing, ingester.OwnershipGroup:
		return []string{o}, nil
	default:
		return nil, fmt.Errorf("-ownership %q: want ring, group or both", o)
	}
}

func configureRebalance(cfg *app.AllInOneConfig, k Values) {
	modes, err := rebalanceModes(k)
	if err == nil {
		cfg.Ingester.Ownership = modes[0]
	}
	cfg.Ingester.GroupSessionTimeout = k.Duration("session-timeout")
}

// pauseThreshold is the gap without a consumed record counted as a pause:
// the steady load gives every partition records several times a second.
const pauseThreshold = 2 * time.Second

// checkReadyGroup is checkReady for ingesters in a consumer group: they
// are not in the ring, so they are found in /processes, and ready means
// their /ready answers.
func (s *System) checkReadyGroup(ctx context.Context, ingesters int) error {
	st, err := s.Processes(ctx)
	if err != nil {
		return err
	}
	var ings []Component
	for _, p := range st.Processes {
		if strings.HasPrefix(p.Name, "ingester-") && p.PID != 0 && p.Ready {
			ings = append(ings, Component{Name: p.Name, URL: "http://" + p.Addr})
		}
	}
	if len(ings) != ingesters {
		return fmt.Errorf("%d of %d ingesters running and ready", len(ings), ingesters)
	}
	var dists []Component
	if a := s.distAddrs.Load(); a != nil {
		for _, addr := range *a {
			dists = append(dists, Component{Name: "distributor", URL: "http://" + addr})
		}
	}
	if len(dists) != 1 {
		return errors.New("the distributor is not listening yet")
	}
	slices.SortFunc(ings, func(a, b Component) int { return strings.Compare(a.Name, b.Name) })
	s.Distributors, s.Ingesters = dists, ings
	s.Partitions = s.Config.Kafka.AutoCreateTopicDefaultPartitions
	return nil
}

// rbWatch samples every ingester's partition metrics and Kafka's end
// offsets, and keeps what the figures need: per-partition progress and
// owners, replays, acquisitions and the lag, with counter resets (a
// restarted process) handled.
type rbWatch struct {
	env    *Env
	sys    *System
	mode   string
	adm    *kadm.Client
	client *http.Client

	mu       sync.Mutex
	start    map[string]float64            // process_start_time_seconds per ingester
	prev     map[string]float64            // last counter value per ingester/series
	consumed map[int32]float64             // records processed per partition (replays too)
	total    float64                       // sum of consumed
	lastProg map[int32]time.Time           // last time a partition's records were processed
	owners   map[int32]string              // now (from the lag gauge's presence)
	seen     map[int32]map[string]struct{} // every owner seen since mark
	lastPos  map[int32]int64               // last known position (end - lag)
	replayed float64
	acquired float64
	dups     float64
	lag      int64
	// since mark (the kill)
	killAt   time.Time
	maxGap   map[int32]time.Duration
	allStall time.Duration // longest stretch with no partition consumed at all
	lastAny  time.Time
	lagPeak  int64
	baseGap  map[int32]time.Duration // before the kill
	baseLag  int64
	markVals [3]float64 // replayed, acquired, dups at the kill
}

func newRBWatch(env *Env, sys *System, mode string, adm *kadm.Client) *rbWatch {
	return &rbWatch{env: env, sys: sys, mode: mode, adm: adm, client: &http.Client{Timeout: 2 * time.Second},
		start: map[string]float64{}, prev: map[string]float64{}, consumed: map[int32]float64{}, lastProg: map[int32]time.Time{},
		owners: map[int32]string{}, seen: map[int32]map[string]struct{}{}, lastPos: map[int32]int64{},
		maxGap: map[int32]time.Duration{}, baseGap: map[int32]time.Duration{}}
}

// delta returns the increase of a counter of one ingester since the last
// scrape. known says the ingester's process was seen before: a series it
// shows for the first time then counts from 0 (a new partition, or a
// restarted process, whose counters start again).
func (w *rbWatch) delta(key string, v float64, known bool) float64 {
	p, ok := w.prev[key]
	w.prev[key] = v
	switch {
	case !ok && !known:
		return 0 // the first scrape of the watch: the baseline
	case !ok, v < p:
		return v
	}
	return v - p
}

func (w *rbWatch) tick(ctx context.Context) {
	now := time.Now()
	ingesters, partitions := w.sys.view() // a scale step may rewrite them meanwhile
	ends, err := w.adm.ListEndOffsets(ctx, w.sys.Topic)
	endOf := map[int32]int64{}
	if err == nil {
		ends.Each(func(o kadm.ListedOffset) { endOf[o.Partition] = o.Offset })
	}
	type scrape struct {
		name string
		fams map[string]float64 // key: family{partition} → value
		ok   bool
	}
	var res []scrape
	for _, in := range ingesters {
		sc := scrape{name: in.Name, fams: map[string]float64{}}
		req, rerr := http.NewRequestWithContext(ctx, http.MethodGet, in.URL+"/metrics", nil)
		if rerr == nil {
			if resp, derr := w.client.Do(req); derr == nil {
				fams, perr := ParseMetrics(resp.Body)
				resp.Body.Close()
				if perr == nil {
					sc.ok = true
					for name, fam := range fams {
						if !strings.HasPrefix(name, "lokilab_ingester_") && name != "process_start_time_seconds" {
							continue
						}
						for _, m := range fam.GetMetric() {
							part := ""
							for _, l := range m.GetLabel() {
								if l.GetName() == "partition" {
									part = l.GetValue()
								}
							}
							v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
							sc.fams[name+"{"+part+"}"] += v
						}
					}
				}
			}
		}
		res = append(res, sc)
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	owners := map[int32]string{}
	lagNow := map[int32]int64{}
	progressed := false
	for _, sc := range res {
		if !sc.ok {
			continue
		}
		st := sc.fams["process_start_time_seconds{}"]
		old, known := w.start[sc.name]
		if known && old != st {
			// A new process: its counters start from 0.
			for k := range w.prev {
				if strings.HasPrefix(k, sc.name+"/") {
					delete(w.prev, k)
				}
			}
		}
		w.start[sc.name] = st
		for key, v := range sc.fams {
			name, part, _ := strings.Cut(strings.TrimSuffix(key, "}"), "{")
			d := 0.0
			switch name {
			case "lokilab_ingester_records_consumed_total", "lokilab_ingester_replayed_records_total",
				"lokilab_ingester_partitions_acquired_total", "lokilab_ingester_duplicate_entries_total":
				d = w.delta(sc.name+"/"+key, v, known)
			}
			pn, perr := strconv.Atoi(part)
			p := int32(pn)
			switch name {
			case "lokilab_ingester_records_consumed_total":
				if perr == nil && d > 0 {
					w.consumed[p] += d
					w.total += d
					w.lastProg[p] = now
					progressed = true
				}
			case "lokilab_ingester_replayed_records_total":
				w.replayed += d
			case "lokilab_ingester_partitions_acquired_total":
				w.acquired += d
			case "lokilab_ingester_duplicate_entries_total":
				w.dups += d
			case "lokilab_ingester_partition_lag_records":
				if perr == nil {
					owners[p] = sc.name
					lagNow[p] = max(lagNow[p], int64(v))
				}
			}
		}
	}
	if progressed || w.lastAny.IsZero() {
		w.lastAny = now
	}
	// The lag: what an owner reports; for a partition nobody owns, the
	// records written since its position was last known.
	var lag int64
	for p := range int32(partitions) {
		end, known := endOf[p]
		if l, ok := lagNow[p]; ok {
			lag += l
			if known {
				w.lastPos[p] = end - l
			}
		} else if pos, ok := w.lastPos[p]; ok && known {
			lag += max(end-pos, 0)
		}
		if _, ok := w.lastProg[p]; !ok {
			w.lastProg[p] = now
		}
		gap := now.Sub(w.lastProg[p])
		if w.killAt.IsZero() {
			w.baseGap[p] = max(w.baseGap[p], gap)
		} else {
			w.maxGap[p] = max(w.maxGap[p], gap)
			if o, ok := owners[p]; ok {
				if w.seen[p] == nil {
					w.seen[p] = map[string]struct{}{}
				}
				w.seen[p][o] = struct{}{}
			}
		}
	}
	w.owners = owners
	w.lag = lag
	if w.killAt.IsZero() {
		w.baseLag = max(w.baseLag, lag)
	} else {
		w.lagPeak = max(w.lagPeak, lag)
		w.allStall = max(w.allStall, now.Sub(w.lastAny))
	}
	at := Point{T: now}
	rec := func(name string, counter bool, v float64) {
		at.V = v
		w.env.Sampler.Record(w.mode, name, nil, counter, at)
	}
	rec("lokilab_rebalance_lag_records", false, float64(lag))
	rec("lokilab_rebalance_records_consumed_total", true, w.total)
	rec("lokilab_rebalance_replayed_records_total", true, w.replayed)
}

// mark notes the kill: gaps, moves and counters are measured from here.
func (w *rbWatch) mark() map[int32]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.killAt = time.Now()
	w.lastAny = w.killAt
	w.markVals = [3]float64{w.replayed, w.acquired, w.dups}
	return maps.Clone(w.owners)
}

func (w *rbWatch) run(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		qctx, c := context.WithTimeout(ctx, 2*time.Second)
		w.tick(qctx)
		c()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// rbResult is what one mode measured.
type rbResult struct {
	mode                               string
	victimParts, survivorParts         []int32
	pauseVictim, pauseSurvivors        time.Duration
	baseGap                            time.Duration
	allStall                           time.Duration
	replayed, acquired, dups           float64
	lagPeak, baseLag, lagEnd           int64
	moved, movedSurvivors, movedBack   int
	restarted                          bool
	restarts                           int
	victimResumed, survivorsKeptOwners bool
}

func runRebalance(ctx context.Context, env *Env) error {
	k := env.Knobs
	modes, err := rebalanceModes(k)
	if err != nil {
		return err
	}
	expect := k.String("expect")
	if expect != "auto" && expect != ingester.OwnershipRing && expect != ingester.OwnershipGroup {
		return fmt.Errorf("-expect %q: want auto, ring or group", expect)
	}
	first := env.Sys
	defer func() { env.Sys = first }() // the engine stops the first system; later ones are stopped here
	var results []rbResult
	for i, mode := range modes {
		sys := first
		faults := env.Faults
		if i > 0 {
			env.Logf("stopping the %s system; starting one with -ingester.ownership=%s", modes[i-1], mode)
			stopCtx, c := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			err := env.Sys.Stop(stopCtx)
			c()
			if err != nil {
				return fmt.Errorf("stopping the %s system: %w", modes[i-1], err)
			}
			cfg := first.Config
			cfg.Ingester.Ownership = mode
			cfg.DataDir = filepath.Join(first.Config.DataDir, mode)        // removed with the first's
			cfg.EmbeddedKafka.DataDir, cfg.Storage.Filesystem.Dir = "", "" // follow DataDir
			// It logs to system.log after the first (stopped) system.
			logw, err := os.OpenFile(filepath.Join(env.Dir, "system.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				return err
			}
			defer logw.Close()
			sys, err = StartProcesses(ctx, cfg, first.procs.binary, logw)
			if err != nil {
				return fmt.Errorf("starting the %s system: %w", mode, err)
			}
			defer func() {
				stopCtx, c := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				defer c()
				if err := sys.Stop(stopCtx); err != nil {
					env.Report.addError(fmt.Errorf("stopping the %s system: %w", mode, err))
				}
			}()
			faults = recordingFaults{inner: sys.Faults(), rep: env.Report, start: env.start}
		}
		env.Sys = sys
		r, err := rebalanceMode(ctx, env, sys, faults, mode)
		if err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
		results = append(results, r)
	}
	rebalanceReport(env, results, expect)
	return nil
}

func rebalanceMode(ctx context.Context, env *Env, sys *System, faults Faults, mode string) (rbResult, error) {
	k := env.Knobs
	victim := k.String("victim")
	if _, err := sys.Ingester(victim); err != nil {
		return rbResult{}, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(sys.Kafka))
	if err != nil {
		return rbResult{}, err
	}
	defer cl.Close()
	w := newRBWatch(env, sys, mode, kadm.NewClient(cl))
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.run(wctx) }()
	defer func() { stop(); <-done }()

	lc := LoadgenDefaults()
	lc.TenantPrefix, lc.Tenants, lc.StreamsPerTenant, lc.StreamsPerPush = "rebalance-", 1, 24, 4
	lc.LinesPerSecond, lc.BatchLines, lc.Concurrency, lc.Duration = k.Float("rate"), 20, 4, 0
	load := Loadgen("steady-"+mode, lc)
	if err := env.StartLoad(ctx, load); err != nil {
		return rbResult{}, err
	}
	if err := sleepCtx(ctx, k.Duration("before")); err != nil {
		return rbResult{}, err
	}
	before := w.mark()
	r := rbResult{mode: mode}
	for p := range int32(sys.Partitions) {
		if before[p] == victim {
			r.victimParts = append(r.victimParts, p)
		} else {
			r.survivorParts = append(r.survivorParts, p)
		}
	}
	env.Logf("%s: killing %s (owns partitions %v) with SIGKILL", mode, victim, r.victimParts)
	if err := faults.KillComponent(ctx, victim); err != nil {
		return r, err
	}
	if err := sleepCtx(ctx, k.Duration("watch")); err != nil {
		return r, err
	}
	stop()
	<-done
	if p, err := sys.Process(ctx, victim); err == nil {
		r.restarts, r.restarted = p.Restarts, p.Restarts >= 1 && p.PID != 0 && p.Ready
	}

	w.mu.Lock()
	r.victimResumed = true
	for _, p := range r.victimParts {
		r.pauseVictim = max(r.pauseVictim, w.maxGap[p])
		if !w.lastProg[p].After(w.killAt) {
			r.victimResumed = false
		}
	}
	for _, p := range r.survivorParts {
		r.pauseSurvivors = max(r.pauseSurvivors, w.maxGap[p])
	}
	for _, g := range w.baseGap {
		r.baseGap = max(r.baseGap, g)
	}
	r.survivorsKeptOwners = true
	for p := range int32(sys.Partitions) {
		changed := false
		for o := range w.seen[p] {
			if o != before[p] {
				changed = true
			}
		}
		if changed {
			r.moved++
			if before[p] != victim {
				r.movedSurvivors++
				r.survivorsKeptOwners = false
			}
			if w.owners[p] == before[p] {
				r.movedBack++
			}
		}
	}
	r.allStall = w.allStall
	r.replayed, r.acquired, r.dups = w.replayed-w.markVals[0], w.acquired-w.markVals[1], w.dups-w.markVals[2]
	r.lagPeak, r.baseLag, r.lagEnd = w.lagPeak, w.baseLag, w.lag
	w.mu.Unlock()
	env.Logf("%s: victim's partitions paused %s, survivors' %s; replayed %.0f; lag peak %d; %d partitions moved", mode,
		r.pauseVictim.Round(100*time.Millisecond), r.pauseSurvivors.Round(100*time.Millisecond), r.replayed, r.lagPeak, r.moved)

	if _, err := VerifyAcked(ctx, env, load, k.Duration("verify-wait")); err != nil {
		env.Check(fmt.Sprintf("load %s: every acknowledged line is queryable exactly once", load.Name()), "verified", err.Error(), false)
	}
	return r, nil
}

func rebalanceReport(env *Env, results []rbResult, expect string) {
	k := env.Knobs
	sess := k.Duration("session-timeout")
	heartbeat := env.Sys.Config.Memberlist.HeartbeatTimeout
	t := Table{Title: "ring vs group: one ingester killed (kill -9) under steady load", Header: []string{"ownership", "victim's partitions", "their longest pause", "survivors' longest pause", "all partitions stalled", "records replayed", "partitions acquired", "partitions moved (survivors')", "lag peak (baseline)", "lag at the end"}}
	for _, r := range results {
		t.Rows = append(t.Rows, []string{r.mode, fmt.Sprint(r.victimParts), dur(r.pauseVictim), dur(r.pauseSurvivors), dur(r.allStall),
			fmt.Sprintf("%.0f", r.replayed), fmt.Sprintf("%.0f", r.acquired), fmt.Sprintf("%d (%d)", r.moved, r.movedSurvivors),
			fmt.Sprintf("%d (%d)", r.lagPeak, r.baseLag), fmt.Sprint(r.lagEnd)})
		env.Figure(r.mode+": pause", fmt.Sprintf("victim's partitions %s, survivors' %s, whole topic %s", dur(r.pauseVictim), dur(r.pauseSurvivors), dur(r.allStall)),
			fmt.Sprintf("longest time a partition had no record processed after the kill (baseline before the kill: %s)", dur(r.baseGap)))
		env.Figure(r.mode+": re-read", fmt.Sprintf("%.0f records replayed, %.0f duplicate entries dropped", r.replayed, r.dups),
			"lokilab_ingester_replayed_records_total: records processed again from the last commit after taking a partition")
		env.Figure(r.mode+": moves", fmt.Sprintf("%.0f partitions acquired; %d changed owner (%d of the survivors'), %d back with the first owner at the end", r.acquired, r.moved, r.movedSurvivors, r.movedBack),
			"owners from the presence of lokilab_ingester_partition_lag_records{partition}, sampled every 250ms: an ownership shorter than that shows only in partitions acquired (system.log: \"partition taken\")")
		env.Figure(r.mode+": lag", fmt.Sprintf("peak %d records (baseline %d), %d at the end", r.lagPeak, r.baseLag, r.lagEnd),
			"records written and not yet processed; for an unowned partition, written since its position was last known")
	}
	env.Report.AddTable(t)
	env.Figure("timeouts", fmt.Sprintf("ring heartbeat_timeout %s; group session timeout %s", heartbeat, sess), "how long a dead owner keeps its partitions")

	var lagLines, rateLines []LineSpec
	for _, r := range results {
		lagLines = append(lagLines, LineSpec{Select: Selector{Name: "lokilab_rebalance_lag_records", Target: r.mode}, Legend: r.mode, Sum: true})
		rateLines = append(rateLines, LineSpec{Select: Selector{Name: "lokilab_rebalance_records_consumed_total", Target: r.mode}, Legend: r.mode, Sum: true, Rate: true})
	}
	env.Report.AddPlot(PlotSpec{File: "rebalance-lag.png", Title: "Records not yet processed, per mode (kill at +" + k.Duration("before").String() + " in each)", YLabel: "records", Lines: lagLines})
	env.Report.AddPlot(PlotSpec{File: "rebalance-consumed.png", Title: "Records processed per second (replays included), per mode", YLabel: "records/s", Lines: rateLines})

	for _, r := range results {
		mode := r.mode
		if expect != "auto" {
			mode = expect
		}
		p := r.mode + ": "
		env.Check(p+"the victim was restarted by the supervisor and its partitions consumed again", "restarted, ready, every one of its partitions progressing",
			fmt.Sprintf("restarts %d, ready %v, resumed %v", r.restarts, r.restarted, r.victimResumed), r.restarted && r.victimResumed)
		// A partition's records come in bursts (pushes), so "no pause"
		// means no gap longer than the worst seen before the kill plus 1s.
		allowed := max(pauseThreshold, r.baseGap+time.Second)
		env.Check(p+"the survivors' partitions never paused", "< "+dur(allowed)+" (the gap before the kill + 1s)", dur(r.pauseSurvivors), r.pauseSurvivors < allowed)
		env.Check(p+"what was not committed was replayed", "> 0 records", fmt.Sprintf("%.0f", r.replayed), r.replayed > 0)
		switch mode {
		case ingester.OwnershipRing:
			env.Check(p+"nothing was reassigned: the victim came back within heartbeat_timeout", "0 partitions changed owner (sampled every 250ms)", fmt.Sprint(r.moved), r.moved == 0)
			env.Check(p+"the victim's partitions paused for its restart and replay only", "< "+dur(sess-time.Second)+" (session timeout - 1s)", dur(r.pauseVictim), r.pauseVictim < sess-time.Second)
		case ingester.OwnershipGroup:
			env.Check(p+"the victim's partitions waited for the session timeout (the dead member held them)", "≥ "+dur(sess-time.Second)+" (session timeout - 1s)", dur(r.pauseVictim), r.pauseVictim >= sess-time.Second)
			env.Check(p+"a rebalance assigned partitions after the kill", "> 0 acquired", fmt.Sprintf("%.0f", r.acquired), r.acquired > 0)
		}
	}
}

func dur(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }
