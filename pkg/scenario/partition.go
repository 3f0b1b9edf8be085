package scenario

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/lokiclient"
)

// Partition is question 10's scenario: one ingester cut off its peers
// (its Kafka connections, its memberlist gossip, the querier's requests)
// while it keeps running, then reconnected. It shows which side of CAP
// each path of lokilab takes: writes stay available (they only need the
// distributor and Kafka, which buffers the cut ingester's partitions),
// reads stay available but say they are partial (consistency is given up
// openly, never silently), and once the cut heals the ingester catches up
// from Kafka and the answers are whole again.
func Partition() *Scenario {
	return &Scenario{
		Name:     "partition",
		Question: 10,
		Title:    "CAP theorem in log aggregation",
		Hypothesis: "With one ingester cut off its peers, every push is still accepted: the distributor needs only Kafka, which keeps the cut ingester's partitions until it can read them. " +
			"Queries keep answering, and every answer that lacks the cut ingester's data says so with a partial-result warning; once the ring calls it unhealthy the others take its partitions over, replay them from Kafka, and answers are whole again. " +
			"Once the cut heals, the ring settles on one owner per partition, the lag returns to zero and answers are whole; no acknowledged line is lost or duplicated.",
		Knobs: []Knob{
			{Name: "victim", Kind: KnobString, Default: "ingester-2", Usage: "The ingester cut off."},
			{Name: "rate", Kind: KnobFloat, Default: "1000", Short: "600", Usage: "Lines per second pushed (50-line pushes by 3 workers)."},
			{Name: "before", Kind: KnobDuration, Default: "10s", Short: "4s", Usage: "Healthy load before the cut: the baseline."},
			{Name: "cut-for", Kind: KnobDuration, Default: "30s", Short: "8s", Usage: "How long the ingester stays cut off. Past the ring's heartbeat timeout the ring marks it unhealthy and the others take its partitions over; the short run's cut ends before that, so its answers stay partial throughout."},
			{Name: "converge-within", Kind: KnobDuration, Default: "30s", Short: "20s", Usage: "After the heal, the ingester's lag must be back to zero and answers whole within this long."},
			{Name: "heal", Kind: KnobBool, Default: "true", Usage: "Heal the cut after -cut-for. false is the broken knob: the cut outlasts the convergence window, so the convergence checks fail (it is healed afterwards, so the run can verify and stop)."},
			{Name: "cut", Kind: KnobString, Default: cutNetcut, Usage: "How the victim is cut off. netcut: in-process (pkg/netcut), its connections refused and reset at once. netns: the victim runs in a network namespace of its own (-processes.netns) and the supervisor makes its veth pair lose every frame (pkg/netns), so its peers see silence and timeouts; needs root and iproute2."},
		},
		Configure: func(cfg *app.AllInOneConfig, v Values) {
			cfg.AuthEnabled = true
			if v.String("cut") == cutNetns {
				cfg.Processes.Netns = []string{v.String("victim")}
				// Silence costs the querier its per-ingester timeout on
				// every query that asks the cut ingester; at the default
				// 10s each would outlast the scenario's 5s client
				// timeout and fail instead of coming back partial.
				cfg.Querier.IngesterQueryTimeout = netnsIngesterQueryTimeout
			}
		},
		Series: []Selector{
			{Name: "lokilab_ingester_partition_lag_records", Target: "ingester"},
			{Name: "lokilab_ingester_records_consumed_total", Target: "ingester"},
			{Name: "lokilab_querier_partial_results_total", Target: "querier"},
		},
		Plots: []PlotSpec{
			{
				File: "partition-pushes.png", Title: "Pushes per second by answer, as the client saw them", YLabel: "pushes/s",
				Lines: []LineSpec{
					{Select: Selector{Name: "lokilab_load_pushes_total", Target: "load:", Labels: map[string]string{"outcome": "2xx"}}, Rate: true, Sum: true, Legend: "2xx (acknowledged)"},
					{Select: Selector{Name: "lokilab_load_pushes_total", Target: "load:", Labels: map[string]string{"outcome": "5xx"}}, Rate: true, Sum: true, Legend: "5xx"},
				},
			},
			{
				File: "partition-consumed.png", Title: "Records processed per second, per ingester", YLabel: "records/s",
				Lines: []LineSpec{
					{Select: Selector{Name: "lokilab_ingester_records_consumed_total", Target: "ingester"}, Rate: true, Legend: "{target}"},
				},
			},
			{
				File: "partition-partial.png", Title: "Partial query results (the querier's count)", YLabel: "answers",
				Lines: []LineSpec{
					{Select: Selector{Name: "lokilab_querier_partial_results_total", Target: "querier"}, Legend: "partial answers"},
				},
			},
		},
		Look: []string{
			"`GET /debug/fault/netcut` on the victim's HTTP port: whether it is cut, since when, its open Kafka connections (`lokilab_ingester_*` metrics stay scrapeable: the cut is from its peers, not from you)",
			"`/ring` on the API port: the victim turns unhealthy once its heartbeats stop arriving; the others then register as its partitions' owners (JOINING while they replay, then ACTIVE), and after the heal the partitions are handed back",
			"`lokilab_querier_partial_results_total` on the querier's `/metrics`, and the `warnings` of each query answer (`lokilab query` prints them)",
			"`lokilab_ingester_partition_lag_records` on the victim after the heal: the backlog Kafka kept, read down to zero",
			"`kcat -b <kafka> -C -t loki -p <partition> -o end` during the cut: the victim's partitions keep growing",
		},
		Code: []CodeRef{
			{"pkg/netcut/netcut.go", "the cut: a Kafka dialer, a memberlist transport and an HTTP wrapper that fail while cut"},
			{"pkg/netns/netns.go", "the cut with -knob cut=netns: a network namespace and veth pair per process, made to lose every frame"},
			{"pkg/app/processes_netns.go", "how the supervisor runs an ingester in its namespace, and POST/DELETE /processes/{name}/partition"},
			{"pkg/app/processes_faults.go", "where an ingester process gets its cut, and the lab fault endpoints"},
			{"pkg/querier/ingesters.go", "the querier's fan-out to ingesters: an ingester that does not answer makes the answer partial, with a warning"},
			{"pkg/distributor/distributor.go", "the write path: a push needs Kafka only, never an ingester"},
			{"pkg/ingester/partition.go", "a partition's consumer: fetch, process, the lag gauge"},
			{"pkg/scenario/faults_partition.go", "CutOff and Heal, the fault hooks"},
			{"pkg/scenario/partition.go", "this scenario: phases and checks"},
			{"docs/questions/10-cap-theorem.md", "the question, the design and a reference run"},
		},
		Budget:      3 * time.Minute,
		ShortBudget: 90 * time.Second,
		Processes:   func(Values) bool { return true },
		Run:         runPartition,
	}
}

// readSample is one query answer while the scenario watched.
type readSample struct {
	at       time.Time
	whole    bool // answered without a warning
	failed   bool // no answer
	warnings []string
	lines    int
	// takenOver: the ring showed every one of the victim's partitions
	// with another ACTIVE owner both before and after the query — only
	// then may an answer be whole while the victim is cut off.
	takenOver bool
	took      time.Duration
}

// The cut knob's values.
const (
	cutNetcut = "netcut"
	cutNetns  = "netns"
	// netnsIngesterQueryTimeout is the querier's per-ingester timeout with
	// cut=netns: below the scenario's 5s query timeout, so that a query
	// that waits on the silent ingester comes back partial.
	netnsIngesterQueryTimeout = 2 * time.Second
)

func runPartition(ctx context.Context, e *Env) error {
	k := e.Knobs
	victim := k.String("victim")
	vic, err := e.Sys.Ingester(victim)
	if err != nil {
		return err
	}
	how := k.String("cut")
	cutOff, heal := e.Faults.CutOff, e.Faults.Heal
	// The victim's own /metrics: directly with netcut (the cut spares
	// them); with netns through the supervisor's side door into its
	// namespace, since its address is unreachable while cut.
	vicMetrics := vic.URL + "/metrics"
	switch how {
	case cutNetcut:
	case cutNetns:
		cutOff = func(ctx context.Context, name string) error { return netnsCut(ctx, e.Sys, name, http.MethodPost) }
		heal = func(ctx context.Context, name string) error { return netnsCut(ctx, e.Sys, name, http.MethodDelete) }
		vicMetrics = e.Sys.API + "/processes/" + victim + app.ProcessHTTPInfix + "metrics"
	default:
		return fmt.Errorf("-knob cut=%q: want %s or %s", how, cutNetcut, cutNetns)
	}
	ring, err := e.Sys.Ring(ctx)
	if err != nil {
		return err
	}
	var parts []int32
	for _, p := range ring.Partitions {
		if o, _ := ring.Owner(p.ID); o == victim {
			parts = append(parts, p.ID)
		}
	}
	if len(parts) == 0 {
		return fmt.Errorf("%s owns no partition: nothing to cut off", victim)
	}
	e.Logf("%s owns partitions %v", victim, parts)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Sys.Kafka))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends := func() (int64, error) {
		o, err := adm.ListEndOffsets(ctx, e.Sys.Topic)
		if err != nil {
			return 0, err
		}
		var sum int64
		o.Each(func(l kadm.ListedOffset) {
			if slices.Contains(parts, l.Partition) {
				sum += l.Offset
			}
		})
		return sum, nil
	}
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	metric := func(name string) float64 {
		v, err := ScrapeSum(ctx, client, vicMetrics, name, nil)
		if err != nil {
			return -1
		}
		return v
	}

	lc := LoadgenDefaults()
	lc.Tenants, lc.StreamsPerTenant, lc.StreamsPerPush = 1, 24, 4
	lc.LinesPerSecond, lc.BatchLines, lc.Concurrency, lc.Duration = k.Float("rate"), 50, 3, 0
	load := Loadgen("push", lc)
	if err := e.StartLoad(ctx, load); err != nil {
		return err
	}
	tenant := lc.TenantPrefix + "1"
	q := lokiclient.New(e.Sys.API, lokiclient.WithTenant(tenant), lokiclient.WithHTTPClient(client))
	read := func() (s readSample) {
		s.at = time.Now()
		defer func() { s.took = time.Since(s.at) }()
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		res, err := q.QueryRange(qctx, lokiclient.RangeQuery{Query: `{job="lokilab-load"}`, Start: time.Now().Add(-time.Minute), End: time.Now(), Limit: 5})
		if err != nil {
			s.failed = true
			s.warnings = []string{err.Error()}
			return s
		}
		s.warnings, s.whole = res.Warnings, len(res.Warnings) == 0
		for _, st := range res.Streams {
			s.lines += len(st.Entries)
		}
		return s
	}
	if err := sleep(ctx, k.Duration("before")); err != nil {
		return err
	}
	baseline := read()

	endCut0, err := ends()
	if err != nil {
		return err
	}
	consumed0 := metric("lokilab_ingester_records_consumed_total")
	tCut := time.Now()
	e.Logf("cutting %s off its peers for %s (%s)", victim, k.Duration("cut-for"), how)
	if err := cutOff(ctx, victim); err != nil {
		return err
	}
	// takenOver reports whether every partition of the victim has an
	// ACTIVE owner other than the victim in the distributor's ring.
	takenOver := func() bool {
		v, err := e.Sys.Ring(ctx)
		if err != nil {
			return false
		}
		for _, p := range v.Partitions {
			if !slices.Contains(parts, p.ID) {
				continue
			}
			if !slices.ContainsFunc(p.Owners, func(o struct {
				ID    string `json:"id"`
				State string `json:"state"`
			}) bool {
				return o.ID != victim && o.State == "ACTIVE"
			}) {
				return false
			}
		}
		return true
	}
	var during []readSample
	takeoverAt := time.Duration(-1)
	unhealthyAt := time.Duration(-1)
	for time.Since(tCut) < k.Duration("cut-for") {
		before := takenOver()
		s := read()
		s.takenOver = before && takenOver()
		if s.takenOver && takeoverAt < 0 {
			takeoverAt = time.Since(tCut)
			e.Logf("the other ingesters own all of %s's partitions, %s into the cut", victim, ms(takeoverAt))
		}
		during = append(during, s)
		if unhealthyAt < 0 {
			if v, err := e.Sys.Ring(ctx); err == nil {
				for _, in := range v.Instances {
					if in.ID == victim && !in.Healthy {
						unhealthyAt = time.Since(tCut)
						e.Logf("the ring calls %s unhealthy, %s into the cut", victim, ms(unhealthyAt))
					}
				}
			}
		}
		if err := sleep(ctx, min(500*time.Millisecond, k.Duration("cut-for")-time.Since(tCut))); err != nil {
			return err
		}
	}
	// Who the ring says owns the victim's partitions at the end of the
	// cut, as the distributor (on the majority's side) sees it.
	owners := map[string]int{}
	if v, err := e.Sys.Ring(ctx); err == nil {
		for _, p := range v.Partitions {
			if !slices.Contains(parts, p.ID) {
				continue
			}
			for _, o := range p.Owners {
				owners[o.ID+" ("+o.State+")"]++
			}
		}
	}
	endCut1, err := ends()
	if err != nil {
		return err
	}
	consumed1 := metric("lokilab_ingester_records_consumed_total")
	buffered := endCut1 - endCut0
	tHeal := time.Now()
	healed := k.Bool("heal")
	if healed {
		e.Logf("healing the cut; %d records were written to %s's partitions meanwhile", buffered, victim)
		if err := heal(ctx, victim); err != nil {
			return err
		}
	} else {
		e.Logf("NOT healing the cut (-heal=false); %d records were written to %s's partitions meanwhile", buffered, victim)
	}

	// Convergence, one truth again: the victim healthy in the ring, every
	// partition of its with exactly one owner, ACTIVE (a takeover during
	// the cut has been handed back), every ingester's lag back to (about)
	// zero, and a whole answer. Whoever owns the partitions in the end,
	// what Kafka kept during the cut has been read.
	lagAll := func() float64 {
		var sum float64
		for _, in := range e.Sys.Ingesters {
			v, err := ScrapeSum(ctx, client, in.URL+"/metrics", "lokilab_ingester_partition_lag_records", nil)
			if err != nil {
				return -1
			}
			sum += v
		}
		return sum
	}
	settled := func() bool {
		v, err := e.Sys.Ring(ctx)
		if err != nil {
			return false
		}
		for _, in := range v.Instances {
			if in.ID == victim && !in.Healthy {
				return false
			}
		}
		for _, p := range v.Partitions {
			if slices.Contains(parts, p.ID) && (len(p.Owners) != 1 || p.Owners[0].State != "ACTIVE") {
				return false
			}
		}
		return true
	}
	var converged time.Duration = -1
	var lagPeak float64
	for time.Since(tHeal) < k.Duration("converge-within") {
		lag := lagAll()
		lagPeak = max(lagPeak, lag)
		s := read()
		// Under load the lag is never exactly 0: "back" is within one
		// second of the load's records.
		if lag >= 0 && lag <= k.Float("rate") && s.whole && settled() {
			converged = time.Since(tHeal)
			break
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	if !healed {
		// The broken knob has shown what it shows: heal now, so that the
		// run can verify every line and stop.
		if err := heal(ctx, victim); err != nil {
			return err
		}
	}
	if err := load.Stop(ctx); err != nil {
		return err
	}

	// Figures.
	ps := load.Pushes()
	cut := StatsOf(ps, tCut, tHeal, nil)
	var partial, failed, whole, silentWhole int
	var firstPartial time.Duration = -1
	var example string
	var took []time.Duration
	for _, s := range during {
		took = append(took, s.took)
		switch {
		case s.failed:
			failed++
		case s.whole:
			whole++
			if !s.takenOver {
				silentWhole++ // whole, with the victim's partitions unread by anyone
			}
		default:
			partial++
			if firstPartial < 0 {
				firstPartial = s.at.Sub(tCut)
				example = strings.Join(s.warnings, "; ")
			}
		}
	}
	e.Report.AddTable(Table{Title: "What each path did while " + victim + " was cut off", Header: []string{"path", "during the cut", "note"}, Rows: [][]string{
		{"writes (push)", fmt.Sprintf("%d pushes, %s accepted, p99 %s, max %s", cut.Total, pct(cut.Accepted, cut.Total), ms(cut.P99), ms(cut.Max)), "the distributor needs Kafka only"},
		{"Kafka", fmt.Sprintf("%d records written to %s's partitions %v", buffered, victim, parts), fmt.Sprintf("%s processed %.0f of them while cut", victim, consumed1-consumed0)},
		{"reads (query_range)", fmt.Sprintf("%d queries: %d partial, %d whole, %d failed; each took p50 %s, max %s", len(during), partial, whole, failed, ms(quantile(took, 0.5)), ms(quantile(took, 1))),
			"first partial answer " + durOrNever(firstPartial) + " into the cut"},
		{"ring", "unhealthy " + durOrNever(unhealthyAt) + " into the cut; its partitions all owned by others " + durOrNever(takeoverAt) + " into it", "its heartbeats stop reaching the others, who take its partitions over and replay them from the last commit"},
		{"ownership", "owners of its partitions at the end of the cut: " + ownerList(owners), "the distributor's view; the others take over an unhealthy owner's partitions"},
	}})
	e.Figure("the cut", cutDescription(how), "-knob cut="+how)
	e.Figure("baseline read", fmt.Sprintf("whole %v, %d lines, %s", baseline.whole, baseline.lines, ms(baseline.took)), "one query before the cut")
	e.Figure("query time during the cut", fmt.Sprintf("p50 %s, max %s over %d queries", ms(quantile(took, 0.5)), ms(quantile(took, 1)), len(took)),
		"netcut refuses at once; with netns a query that asks the silent ingester waits for the querier's per-ingester timeout")
	e.Figure("ring: "+victim+" unhealthy after", durOrNever(unhealthyAt), "its heartbeats stop reaching the others (the ring's heartbeat timeout)")
	e.Figure("pushes during the cut", fmt.Sprintf("%d, %s accepted (%s)", cut.Total, pct(cut.Accepted, cut.Total), classes(cut)), "")
	e.Figure("records Kafka buffered for "+victim, fmt.Sprint(buffered), "end offsets of its partitions, cut start to heal")
	e.Figure("partial-result warning", example, "the first partial answer's warnings")
	e.Figure("owners of "+victim+"'s partitions at the end of the cut", ownerList(owners), "ring, as the distributor sees it")
	e.Figure("convergence after the heal", durOrNever(converged), fmt.Sprintf("the victim healthy, one ACTIVE owner per partition, every ingester's lag ≤ %.0f records (a second of load), a whole answer; lag peak %.0f", k.Float("rate"), lagPeak))

	e.Check("before the cut, answers are whole", "no warning", fmt.Sprintf("whole %v (%s)", baseline.whole, strings.Join(baseline.warnings, "; ")), baseline.whole)
	e.Check("writes stay available while an ingester is cut off", "every push sent during the cut accepted",
		fmt.Sprintf("%d of %d accepted (%s)", cut.Accepted, cut.Total, classes(cut)), cut.Total > 0 && cut.Accepted == cut.Total)
	e.Check("Kafka buffers the cut-off ingester's partitions", "records written to them during the cut, (almost) none processed by it",
		fmt.Sprintf("%d written, %.0f processed", buffered, consumed1-consumed0), buffered > 0 && consumed1-consumed0 <= float64(buffered)/10)
	e.Check("reads say they are partial while the ingester's data is unreachable", "partial answers, and no whole answer until others own all its partitions",
		fmt.Sprintf("%d partial, %d whole (%d of them before a takeover), %d failed of %d", partial, whole, silentWhole, failed, len(during)),
		partial > 0 && silentWhole == 0)
	e.Check("after the heal the ingester catches up and answers are whole", "within "+k.Duration("converge-within").String(),
		durOrNever(converged), converged >= 0)
	_, err = VerifyAcked(ctx, e, load, 60*time.Second)
	return err
}

// cutDescription says what each cut does, for the report.
func cutDescription(how string) string {
	if how == cutNetns {
		return fmt.Sprintf("netns: the victim in a network namespace of its own, its veth pair losing every frame both ways (pkg/netns); peers see silence, dials and requests time out; the querier's per-ingester timeout %s", netnsIngesterQueryTimeout)
	}
	return "netcut: in-process (pkg/netcut): Kafka connections closed and dials refused, gossip dropped, the querier's requests reset at once"
}

// quantile is the q-quantile of ds (nearest rank), 0 for none.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s)-1)+0.5))]
}

// ownerList formats owner → partition counts.
func ownerList(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(out, ", ")
}

func durOrNever(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return ms(d)
}
