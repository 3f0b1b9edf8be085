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
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/ingester"
)

// ScaleIngesters is question 3, ingester scaling strategy: the ring-mode
// system under steady load goes from three ingesters to four, then to
// two, and the scenario watches what moves.
//
// Up: the supervisor starts ingester-4 (POST /processes/ingesters). It
// joins the ring; rendezvous hashing (pkg/ring/tokens.go) now gives it
// about a quarter of the partitions, each taken from the one ingester that
// had it — nothing moves between the old three. Each old owner sees the
// newcomer, flushes and commits the partition and removes itself as its
// owner; only then does the newcomer take it, so it replays almost
// nothing.
//
// Down: the supervisor stops ingester-4, then ingester-3, with SIGTERM
// (DELETE /processes/{name}), as a StatefulSet scales down from the
// highest ordinal. Each leaver marks itself LEAVING — which takes it out
// of the assignment at once, so its partitions are given to the others —
// flushes and commits every partition, removes itself as owner, and
// leaves the ring. The check that it was graceful is Kafka's: the offset
// committed for each of its partitions after it left is at least the
// position it had reached before the SIGTERM, so the next owner re-reads
// nothing the leaver had consumed.
//
// Throughout, pushes go to Kafka and never notice; every acknowledged line
// is read back at the end.
func ScaleIngesters() *Scenario {
	return &Scenario{
		Name:     "scale-ingesters",
		Question: 3,
		Title:    "Ingester scaling strategy",
		Hypothesis: "With ring ownership, scaling 3 → 4 → 2 ingesters under load moves only the partitions the ring reassigns: up, only partitions given to the newcomer, each from one old owner; " +
			"down, only the leavers' partitions, after each leaver went LEAVING, flushed and committed everything it had consumed, and left. " +
			"Streams and bytes spread over whoever owns the partitions, pushes never fail, and no acknowledged line is lost.",
		Knobs: []Knob{
			{Name: "add", Kind: KnobInt, Default: "1", Usage: "Ingesters added to the three (the up step)."},
			{Name: "remove", Kind: KnobInt, Default: "2", Usage: "Ingesters then removed, highest number first (the down step): 1 and 2 give 3 → 4 → 2."},
			{Name: "shutdown-flush", Kind: KnobBool, Default: "true", Usage: "-ingester.flush-on-shutdown. false is a broken knob: a leaver drops what it holds instead of flushing it, so the check that it committed everything it had consumed fails (and its partitions' next owners replay; nothing is lost, Kafka still has it)."},
			{Name: "rate", Kind: KnobFloat, Default: "1000", Short: "600", Usage: "Lines per second of the steady load (20-line pushes of 4 of 48 streams, so every partition gets records)."},
			{Name: "phase", Kind: KnobDuration, Default: "8s", Short: "4s", Usage: "Steady load at each size before measuring it (per-ingester streams and bytes are taken over this time)."},
			{Name: "settle-timeout", Kind: KnobDuration, Default: "40s", Short: "30s", Usage: "How long a scaling step may take until every partition has one ACTIVE owner, the one the ring assigns."},
			{Name: "verify-wait", Kind: KnobDuration, Default: "20s", Short: "10s", Usage: "How long the check that no acknowledged line was lost keeps reading while lines are missing."},
		},
		Processes: func(Values) bool { return true },
		Configure: func(cfg *app.AllInOneConfig, k Values) {
			cfg.Ingester.Ownership = ingester.OwnershipRing
			cfg.Ingester.ShutdownFlush = k.Bool("shutdown-flush")
		},
		Look: []string{
			"`GET /ring` on the gateway (the distributor's view) while it scales: owners per partition with their state (JOINING, ACTIVE, LEAVING), `assigned_to` where ownership is heading, instances JOINING/ACTIVE/LEAVING",
			"`GET /processes`: the added ingester with its ports; a removed one disappears once it has exited",
			"each ingester's `/metrics`: `loki_ingester_memory_streams`, `lokilab_ingester_bytes_appended_total`, `lokilab_ingester_owned_partitions`, `lokilab_ingester_partitions_acquired_total`, `lokilab_ingester_partitions_released_total{how}` (handover = flushed and committed, lost = dropped)",
			"each ingester's `GET /ingester/status`: per partition, the next offset and the committed one",
			"system.log: \"scaling up\" / \"scaling down\" from the supervisor, \"partition released\" with how and the committed offset from the ingesters",
		},
		Code: []CodeRef{
			{Path: "pkg/ring/tokens.go", Why: "AssignPartitions: rendezvous hashing, why adding one member moves only the partitions it wins"},
			{Path: "pkg/ingester/ownership.go", Why: "the ring loop: take only what nobody healthy holds, release (flush, commit, remove owner) what is no longer assigned"},
			{Path: "pkg/ingester/ingester.go", Why: "shutdown: LEAVING first, then every partition released with a flush"},
			{Path: "pkg/ring/ring.go", Why: "DesiredPartitions: a LEAVING ingester gets none; leave writes the LEFT tombstone"},
			{Path: "pkg/app/processes_scale.go", Why: "the supervisor's scaling endpoints: add ingester-<n+1> on free ports, remove one with SIGTERM"},
			{Path: "pkg/scenario/scale_ingesters.go", Why: "this scenario: settle detection, moves, per-ingester figures, the committed-offset check"},
		},
		Budget:      4 * time.Minute,
		ShortBudget: 2 * time.Minute,
		Run:         runScaleIngesters,
	}
}

// settled says whether every partition has exactly one owner, ACTIVE, the
// one the ring assigns, and the ring's ingesters are exactly members.
func (v RingView) settled(members []string) (map[int32]string, string) {
	var ings []string
	for _, in := range v.Instances {
		if in.Role == "ingester" {
			ings = append(ings, in.ID)
		}
	}
	slices.Sort(ings)
	if !slices.Equal(ings, members) {
		return nil, fmt.Sprintf("ingesters in the ring %v, want %v", ings, members)
	}
	return v.owners()
}

// owners returns each partition's owner if every partition has exactly
// one, ACTIVE, the one the ring assigns; otherwise why not.
func (v RingView) owners() (map[int32]string, string) {
	if len(v.Partitions) == 0 {
		return nil, "no partitions"
	}
	owners := map[int32]string{}
	for _, p := range v.Partitions {
		if len(p.Owners) != 1 || p.Owners[0].State != "ACTIVE" || p.Owners[0].ID != p.AssignedTo {
			return nil, fmt.Sprintf("partition %d: owners %v, assigned to %q", p.ID, p.Owners, p.AssignedTo)
		}
		owners[p.ID] = p.AssignedTo
	}
	return owners, ""
}

// scaleStep is what one scaling step saw while the ring settled.
type scaleStep struct {
	took time.Duration
	// states: every state each instance was seen in, in order.
	states map[string][]string
	// ownersSeen: every owner each partition had while it settled.
	ownersSeen map[int32]map[string]bool
	after      map[int32]string
}

// waitSettled polls the ring every 50ms until it settles on members.
func waitSettled(ctx context.Context, sys *System, members []string, timeout time.Duration, began time.Time) (scaleStep, error) {
	st := scaleStep{states: map[string][]string{}, ownersSeen: map[int32]map[string]bool{}}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	slices.Sort(members)
	last := "no ring read yet"
	for {
		if v, err := sys.Ring(ctx); err != nil {
			last = err.Error()
		} else {
			for _, in := range v.Instances {
				if in.Role != "ingester" {
					continue
				}
				if s := st.states[in.ID]; len(s) == 0 || s[len(s)-1] != in.State {
					st.states[in.ID] = append(s, in.State)
				}
			}
			for _, p := range v.Partitions {
				if st.ownersSeen[p.ID] == nil {
					st.ownersSeen[p.ID] = map[string]bool{}
				}
				for _, o := range p.Owners {
					st.ownersSeen[p.ID][o.ID] = true
				}
			}
			owners, why := v.settled(members)
			if owners != nil {
				st.after, st.took = owners, time.Since(began)
				return st, nil
			}
			last = why
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("the ring did not settle on %v within %s: %s", members, timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ingStats is one ingester's figures at one moment.
type ingStats struct {
	streams, chunkBytes, appended, owned, acquired float64
	released                                       map[string]float64
}

func scrapeIngester(ctx context.Context, client *http.Client, url string) (ingStats, error) {
	st := ingStats{released: map[string]float64{}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return st, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	fams, err := ParseMetrics(resp.Body)
	if err != nil {
		return st, err
	}
	for name, fam := range fams {
		for _, m := range fam.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			switch name {
			case "loki_ingester_memory_streams":
				st.streams += v
			case "lokilab_ingester_memory_chunk_bytes":
				st.chunkBytes += v
			case "lokilab_ingester_bytes_appended_total":
				st.appended += v
			case "lokilab_ingester_owned_partitions":
				st.owned += v
			case "lokilab_ingester_partitions_acquired_total":
				st.acquired += v
			case "lokilab_ingester_partitions_released_total":
				for _, l := range m.GetLabel() {
					if l.GetName() == "how" {
						st.released[l.GetValue()] += v
					}
				}
			}
		}
	}
	return st, nil
}

// scaleWatch scrapes the current ingesters every 500ms for the plots.
type scaleWatch struct {
	env    *Env
	client *http.Client
	mu     sync.Mutex
	ings   []Component
}

func (w *scaleWatch) set(ings []Component) {
	w.mu.Lock()
	w.ings = slices.Clone(ings)
	w.mu.Unlock()
}

func (w *scaleWatch) run(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		w.mu.Lock()
		ings := slices.Clone(w.ings)
		w.mu.Unlock()
		for _, in := range ings {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := scrapeIngester(sctx, w.client, in.URL)
			cancel()
			if err != nil {
				continue // stopping or not up yet: a gap in its lines
			}
			now := time.Now()
			w.env.Sampler.Record(in.Name, "lokilab_scale_streams", nil, false, Point{T: now, V: st.streams})
			w.env.Sampler.Record(in.Name, "lokilab_scale_owned_partitions", nil, false, Point{T: now, V: st.owned})
			w.env.Sampler.Record(in.Name, "lokilab_scale_bytes_appended_total", nil, true, Point{T: now, V: st.appended})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// scalePhase is the system at one size: who owns what, and each
// ingester's streams and bytes over the phase.
type scalePhase struct {
	label  string
	owners map[int32]string
	stats  map[string]ingStats
	rate   map[string]float64 // bytes appended per second over the phase
}

// measurePhase runs the load for d at the current size and measures it.
func measurePhase(ctx context.Context, env *Env, client *http.Client, label string, owners map[int32]string, d time.Duration) (scalePhase, error) {
	ph := scalePhase{label: label, owners: owners, stats: map[string]ingStats{}, rate: map[string]float64{}}
	first := map[string]ingStats{}
	t0 := time.Now()
	for _, in := range env.Sys.Ingesters {
		st, err := scrapeIngester(ctx, client, in.URL)
		if err != nil {
			return ph, fmt.Errorf("%s: %w", in.Name, err)
		}
		first[in.Name] = st
	}
	if err := sleepCtx(ctx, d); err != nil {
		return ph, err
	}
	secs := time.Since(t0).Seconds()
	for _, in := range env.Sys.Ingesters {
		st, err := scrapeIngester(ctx, client, in.URL)
		if err != nil {
			return ph, fmt.Errorf("%s: %w", in.Name, err)
		}
		ph.stats[in.Name] = st
		ph.rate[in.Name] = (st.appended - first[in.Name].appended) / secs
	}
	return ph, nil
}

// leaverCheck is what a graceful removal is judged by.
type leaverCheck struct {
	name       string
	partitions []int32
	// position before the SIGTERM and the offset committed in Kafka
	// after the exit, per partition.
	before, committed map[int32]int64
	behind            []int32 // committed < before
	// states are the states /ring showed it in while it left (polled
	// every 50ms: LEAVING often lasts less than a gossip round there);
	// leavingLogged and leftLogged are its own log's account:
	// "ring: instance state" state=LEAVING, then "ring: left".
	states                    []string
	leavingLogged, leftLogged bool
	goneErr, removeErr        error
}

// leaverLog reads what an ingester logged about leaving the ring from the
// system's log (each child's lines prefixed "<name> | ").
func leaverLog(path, name string) (leaving, left bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, false
	}
	for line := range strings.Lines(string(b)) {
		who, msg, ok := strings.Cut(line, " | ")
		if !ok || strings.TrimSpace(who) != name {
			continue
		}
		if strings.Contains(msg, `msg="ring: instance state"`) && strings.Contains(msg, "state=LEAVING") {
			leaving = true
		}
		if leaving && strings.Contains(msg, `msg="ring: left"`) {
			left = true
		}
	}
	return leaving, left
}

func ingesterPartitions(ctx context.Context, sys *System, url string) (map[int32]int64, error) {
	var st struct {
		Partitions []ingester.PartitionStatus `json:"partitions"`
	}
	if err := sys.getJSON(ctx, url+"/ingester/status", &st); err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for _, p := range st.Partitions {
		out[p.Partition] = p.Next
	}
	return out, nil
}

func runScaleIngesters(ctx context.Context, env *Env) error {
	k := env.Knobs
	sys := env.Sys
	add, remove := k.Int("add"), k.Int("remove")
	start := len(sys.Ingesters)
	if add < 1 || remove < 1 || remove >= start+add {
		return fmt.Errorf("-add %d -remove %d: want at least one of each, and at least one ingester left of %d", add, remove, start+add)
	}
	settle := k.Duration("settle-timeout")
	client := &http.Client{Timeout: 2 * time.Second}
	cl, err := kgo.NewClient(kgo.SeedBrokers(sys.Kafka))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	w := &scaleWatch{env: env, client: client}
	w.set(sys.Ingesters)
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() { defer close(watched); w.run(wctx) }()
	defer func() { stopWatch(); <-watched }()

	lc := LoadgenDefaults()
	lc.TenantPrefix, lc.Tenants, lc.StreamsPerTenant, lc.StreamsPerPush = "scale-", 1, 48, 4
	lc.LinesPerSecond, lc.BatchLines, lc.Concurrency, lc.Duration = k.Float("rate"), 20, 4, 0
	load := Loadgen("steady", lc)
	if err := env.StartLoad(ctx, load); err != nil {
		return err
	}
	loadStart := time.Now()

	members := func() []string {
		var out []string
		for _, in := range sys.Ingesters {
			out = append(out, in.Name)
		}
		return out
	}
	// The system is ready once every partition has an ACTIVE owner; an
	// ingester that claimed a partition before it saw the others may still
	// hold a JOINING claim a ring tick longer. Scaling starts from a
	// settled ring, so wait for it.
	v0, err := waitSettled(ctx, sys, members(), settle, time.Now())
	if err != nil {
		return fmt.Errorf("before scaling: %w", err)
	}
	owners0 := v0.after
	var phases []scalePhase
	ph, err := measurePhase(ctx, env, client, fmt.Sprintf("%d ingesters", start), owners0, k.Duration("phase"))
	if err != nil {
		return err
	}
	phases = append(phases, ph)

	// Up.
	env.Logf("scaling up: %d → %d ingesters", start, start+add)
	upBegan := time.Now()
	var added []string
	for range add {
		name, err := env.Faults.AddIngester(ctx)
		if err != nil {
			return err
		}
		added = append(added, name)
		env.Logf("%s started and ready (its /ready)", name)
	}
	if err := sys.waitIngesters(ctx, start+add, settle); err != nil {
		return err
	}
	w.set(sys.Ingesters)
	up, err := waitSettled(ctx, sys, members(), settle, upBegan)
	if err != nil {
		return err
	}
	env.Logf("scaled up in %s: the ring settled", dur(up.took))
	ph, err = measurePhase(ctx, env, client, fmt.Sprintf("%d ingesters", start+add), up.after, k.Duration("phase"))
	if err != nil {
		return err
	}
	phases = append(phases, ph)

	// Down: highest number first.
	names := members()
	slices.SortFunc(names, func(a, b string) int { return ingesterOrdinal(b) - ingesterOrdinal(a) })
	leaving := names[:remove]
	env.Logf("scaling down: %d → %d ingesters, removing %v one at a time (SIGTERM)", start+add, start+add-remove, leaving)
	downBegan := time.Now()
	var leavers []leaverCheck
	for _, name := range leaving {
		in, err := sys.Ingester(name)
		if err != nil {
			return err
		}
		lc := leaverCheck{name: name, committed: map[int32]int64{}}
		if lc.before, err = ingesterPartitions(ctx, sys, in.URL); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		lc.partitions = slices.Sorted(maps.Keys(lc.before))
		// Watch the ring while it leaves: LEAVING, then gone.
		rctx, stopRing := context.WithCancel(ctx)
		ringDone := make(chan scaleStep, 1)
		var goneErr error
		rest := slices.DeleteFunc(members(), func(n string) bool { return n == name })
		go func() {
			st, err := waitSettled(rctx, sys, rest, settle, time.Now())
			goneErr = err
			ringDone <- st
		}()
		env.Logf("removing %s (partitions %v, positions %v)", name, lc.partitions, lc.before)
		lc.removeErr = env.Faults.RemoveComponent(ctx, name)
		st := <-ringDone
		stopRing()
		lc.states, lc.goneErr = st.states[name], goneErr
		lc.leavingLogged, lc.leftLogged = leaverLog(filepath.Join(env.Dir, "system.log"), name)
		commits, err := adm.FetchOffsets(ctx, sys.ConsumerGroup)
		if err != nil {
			return fmt.Errorf("reading committed offsets: %w", err)
		}
		for _, p := range lc.partitions {
			c := int64(-1)
			if o, ok := commits.Lookup(sys.Topic, p); ok && o.Err == nil {
				c = o.At
			}
			lc.committed[p] = c
			if c < lc.before[p] {
				lc.behind = append(lc.behind, p)
			}
		}
		env.Logf("%s removed (err %v); ring states seen %v; committed %v", name, lc.removeErr, lc.states, lc.committed)
		leavers = append(leavers, lc)
		if err := sys.waitIngesters(ctx, len(rest), settle); err != nil {
			return err
		}
		w.set(sys.Ingesters)
	}
	down, err := waitSettled(ctx, sys, members(), settle, downBegan)
	if err != nil {
		return err
	}
	env.Logf("scaled down in %s: the ring settled", dur(down.took))
	ph, err = measurePhase(ctx, env, client, fmt.Sprintf("%d ingesters", start+add-remove), down.after, k.Duration("phase"))
	if err != nil {
		return err
	}
	phases = append(phases, ph)
	pushes := StatsOf(load.Pushes(), loadStart, time.Time{}, nil)
	stopWatch()
	<-watched

	scaleReport(env, phases, added, leavers, up, down, pushes)
	_, err = VerifyAcked(ctx, env, load, k.Duration("verify-wait"))
	return err
}

// ingesterOrdinal is n of ingester-n (0 for other names).
func ingesterOrdinal(name string) int {
	var n int
	if _, err := fmt.Sscanf(name, "ingester-%d", &n); err != nil {
		return 0
	}
	return n
}

// moves compares two ownership maps: the partitions whose owner changed,
// as "p: from → to".
func moves(before, after map[int32]string) (moved []int32, desc []string) {
	for _, p := range slices.Sorted(maps.Keys(after)) {
		if before[p] != after[p] {
			moved = append(moved, p)
			desc = append(desc, fmt.Sprintf("%d: %s → %s", p, before[p], after[p]))
		}
	}
	return moved, desc
}

func scaleReport(env *Env, phases []scalePhase, added []string, leavers []leaverCheck, up, down scaleStep, pushes PushStats) {
	// Ownership table: partition × size.
	own := Table{Title: "Partition owners at each size (from /ring once settled)", Header: []string{"partition"}}
	for _, ph := range phases {
		own.Header = append(own.Header, ph.label)
	}
	for _, p := range slices.Sorted(maps.Keys(phases[0].owners)) {
		row := []string{fmt.Sprint(p)}
		for i, ph := range phases {
			cell := ph.owners[p]
			if i > 0 && ph.owners[p] != phases[i-1].owners[p] {
				cell += " (moved)"
			}
			row = append(row, cell)
		}
		own.Rows = append(own.Rows, row)
	}
	env.Report.AddTable(own)

	per := Table{Title: "Per ingester at each size (end of each phase)", Header: []string{"size", "ingester", "partitions", "streams in memory", "chunk bytes in memory", "bytes appended/s over the phase"}}
	for _, ph := range phases {
		for _, name := range slices.Sorted(maps.Keys(ph.stats)) {
			st := ph.stats[name]
			n := 0
			for _, o := range ph.owners {
				if o == name {
					n++
				}
			}
			per.Rows = append(per.Rows, []string{ph.label, name, fmt.Sprint(n), fmt.Sprintf("%.0f", st.streams), fmt.Sprintf("%.0f", st.chunkBytes), fmt.Sprintf("%.0f", ph.rate[name])})
		}
	}
	env.Report.AddTable(per)

	upMoved, upDesc := moves(phases[0].owners, phases[1].owners)
	downMoved, downDesc := moves(phases[1].owners, phases[2].owners)
	env.Figure("up: partitions moved", fmt.Sprintf("%d of %d in %s: %s", len(upMoved), len(phases[1].owners), dur(up.took), strings.Join(upDesc, ", ")),
		"from the first AddIngester call until every partition had one ACTIVE owner, the assigned one")
	env.Figure("down: partitions moved", fmt.Sprintf("%d of %d in %s: %s", len(downMoved), len(phases[2].owners), dur(down.took), strings.Join(downDesc, ", ")),
		"from the first removal until the ring settled on the survivors")
	for _, ph := range phases {
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(ph.stats)) {
			parts = append(parts, fmt.Sprintf("%s %.0f streams %.0f B/s", name, ph.stats[name].streams, ph.rate[name]))
		}
		env.Figure(ph.label+": per ingester", strings.Join(parts, "; "), "loki_ingester_memory_streams at the phase's end; lokilab_ingester_bytes_appended_total's rate over it")
	}
	// Transient owners: a partition seen with an owner that is neither
	// its owner before nor after the step (the newcomer grabbing
	// partitions before gossip showed it the others).
	transient := 0
	for p, seen := range up.ownersSeen {
		for o := range seen {
			if o != phases[0].owners[p] && o != phases[1].owners[p] {
				transient++
			}
		}
	}
	env.Figure("up: transient owners", fmt.Sprint(transient), "owners seen in /ring (polled every 50ms) that were neither the partition's owner before nor after the step; a ring-mode ingester that takes partitions before it has seen its peers shows here")
	env.Figure("pushes during the scaling", fmt.Sprintf("%d sent, %d accepted, %d 5xx, %d errors; p99 %s", pushes.Total, pushes.Accepted, pushes.ByClass["5xx"], pushes.ByClass["error"], pushes.P99.Round(time.Millisecond)),
		"pushes go to Kafka: which ingester consumes a partition is invisible to them")

	env.Report.AddPlot(PlotSpec{File: "scale-bytes.png", Title: "Bytes appended per second, per ingester (3 → 4 → 2)", YLabel: "bytes/s",
		Lines: []LineSpec{{Select: Selector{Name: "lokilab_scale_bytes_appended_total"}, Rate: true}}})
	env.Report.AddPlot(PlotSpec{File: "scale-partitions.png", Title: "Partitions owned, per ingester", YLabel: "partitions",
		Lines: []LineSpec{{Select: Selector{Name: "lokilab_scale_owned_partitions"}}}})

	// Checks.
	newcomers := map[string]bool{}
	for _, n := range added {
		newcomers[n] = true
	}
	upOK := len(upMoved) > 0
	for _, p := range upMoved {
		upOK = upOK && newcomers[phases[1].owners[p]]
	}
	env.Check("up: only partitions assigned to the newcomer moved, each from one old owner", "> 0 moved, every one to "+strings.Join(added, ", "),
		fmt.Sprintf("%d moved: %s", len(upMoved), strings.Join(upDesc, ", ")), upOK)
	leaverParts := map[int32]bool{}
	var names []string
	for _, l := range leavers {
		names = append(names, l.name)
		for _, p := range l.partitions {
			leaverParts[p] = true
		}
	}
	downOK := len(downMoved) > 0
	for _, p := range downMoved {
		downOK = downOK && leaverParts[p]
	}
	env.Check("down: only the leavers' partitions moved", "> 0 moved, every one from "+strings.Join(names, ", "),
		fmt.Sprintf("%d moved: %s", len(downMoved), strings.Join(downDesc, ", ")), downOK)
	for _, l := range leavers {
		env.Check(l.name+": stopped cleanly by SIGTERM and no longer supervised", "exit status 0", errString(l.removeErr, "exit status 0"), l.removeErr == nil)
		env.Check(l.name+": went LEAVING in the ring, then left it", "its log: state LEAVING, then \"ring: left\"; gone from /ring",
			fmt.Sprintf("LEAVING logged %v, left logged %v; /ring showed it %v, then %s", l.leavingLogged, l.leftLogged, l.states, errString(l.goneErr, "not at all")),
			l.leavingLogged && l.leftLogged && l.goneErr == nil)
		env.Check(l.name+": flushed and committed everything it had consumed before handing over", "committed offset ≥ its position before SIGTERM, every partition",
			fmt.Sprintf("%d of %d partitions behind (before %v, committed %v)", len(l.behind), len(l.partitions), l.before, l.committed), len(l.behind) == 0 && len(l.partitions) > 0)
	}
	last := phases[len(phases)-1]
	busy := 0
	for _, r := range last.rate {
		if r > 0 {
			busy++
		}
	}
	env.Check("every remaining ingester takes a share of the load", fmt.Sprintf("%d of %d appending bytes", len(last.rate), len(last.rate)), fmt.Sprintf("%d", busy), busy == len(last.rate) && busy > 0)
	env.Check("pushes never failed while the ingesters scaled", "0 5xx, 0 errors", fmt.Sprintf("%d 5xx, %d errors of %d", pushes.ByClass["5xx"], pushes.ByClass["error"], pushes.Total),
		pushes.ByClass["5xx"] == 0 && pushes.ByClass["error"] == 0 && pushes.Accepted > 0)
}

func errString(err error, ok string) string {
	if err == nil {
		return ok
	}
	var nb *NotBuiltError
	if errors.As(err, &nb) {
		return "not built: " + nb.Why
	}
	return err.Error()
}
