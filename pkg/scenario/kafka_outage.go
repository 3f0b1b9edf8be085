package scenario

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/lokilab/lokilab/pkg/app"
)

// KafkaOutage is question 8's scenario: the circuit breaker around the
// distributor's Kafka writes, watched through a broker outage.
func KafkaOutage() *Scenario {
	return &Scenario{
		Name:     "kafka-outage",
		Question: 8,
		Title:    "Circuit breaker",
		Hypothesis: "When Kafka stops acknowledging produce requests, the distributor's circuit breaker opens after a few failed writes, " +
			"and from then on pushes fail fast with 503 instead of each holding a connection for the whole write timeout; no push hangs past the write timeout. " +
			"The breaker probes Kafka (half-open) after its open timeout and closes once a probe succeeds, so pushes are accepted again within seconds of the broker recovering. " +
			"Every push answered 204, before, during or after the outage, is queryable exactly once.",
		Knobs: []Knob{
			{Name: "fault", Kind: KnobString, Default: "stall", Usage: "How the broker fails produce requests: `stall` holds them (a stuck broker: each write waits for the write timeout) or `error` answers UNKNOWN_SERVER_ERROR at once (a broker refusing writes)."},
			{Name: "breaker", Kind: KnobBool, Default: "true", Usage: "The distributor's circuit breaker (distributor.kafka-breaker.enabled). false is the broken knob: with -fault stall every push waits the full write timeout, so the fail-fast and breaker checks fail."},
			{Name: "rate", Kind: KnobFloat, Default: "2000", Usage: "Lines per second pushed (50-line pushes by 4 workers)."},
			{Name: "before", Kind: KnobDuration, Default: "10s", Short: "4s", Usage: "Healthy load before the fault: the baseline."},
			{Name: "fault-for", Kind: KnobDuration, Default: "25s", Short: "12s", Usage: "How long the broker fails produce requests."},
			{Name: "after", Kind: KnobDuration, Default: "15s", Short: "8s", Usage: "Load after the broker recovers."},
			{Name: "write-timeout", Kind: KnobDuration, Default: "2s", Usage: "kafka_config.write_timeout: the longest a push waits for Kafka (10s by default; shorter here so the outage shows in seconds)."},
			{Name: "open-timeout", Kind: KnobDuration, Default: "5s", Usage: "distributor.kafka-breaker.open-timeout: how long the breaker stays open before it lets a probe through."},
			{Name: "recover-within", Kind: KnobDuration, Default: "12s", Usage: "After the fault clears, every push must succeed within this long (the open timeout plus a probe)."},
		},
		Configure: func(cfg *app.AllInOneConfig, k Values) {
			cfg.AuthEnabled = true
			cfg.Ingesters = 2
			cfg.Kafka.WriteTimeout = k.Duration("write-timeout")
			cfg.Distributor.Breaker.Enabled = k.Bool("breaker")
			cfg.Distributor.Breaker.OpenTimeout = k.Duration("open-timeout")
		},
		Series: []Selector{
			{Name: "lokilab_distributor_kafka_breaker_state", Target: "distributor"},
			{Name: "lokilab_distributor_kafka_breaker_transitions_total", Target: "distributor"},
			{Name: "lokilab_distributor_push_failures_total", Target: "distributor"},
			{Name: "lokilab_distributor_lines_acknowledged_total", Target: "distributor"},
			{Name: "lokilab_distributor_inflight_push_bytes", Target: "distributor"},
			{Name: "lokilab_distributor_kafka_late_writes_total", Target: "distributor"},
		},
		Plots: []PlotSpec{
			{
				File: "kafka-outage-pushes.png", Title: "Pushes per second by answer, as the client saw them", YLabel: "pushes/s",
				Lines: []LineSpec{
					{Select: Selector{Name: "lokilab_load_pushes_total", Target: "load:", Labels: map[string]string{"outcome": "2xx"}}, Rate: true, Sum: true, Legend: "2xx (acknowledged)"},
					{Select: Selector{Name: "lokilab_load_pushes_total", Target: "load:", Labels: map[string]string{"outcome": "5xx"}}, Rate: true, Sum: true, Legend: "5xx"},
					{Select: Selector{Name: "lokilab_load_pushes_total", Target: "load:", Labels: map[string]string{"outcome": "error"}}, Rate: true, Sum: true, Legend: "no answer"},
				},
			},
			{
				File: "kafka-outage-latency.png", Title: "Push latency per sampling interval, as the client saw it", YLabel: "seconds",
				Lines: []LineSpec{
					{Select: Selector{Name: "lokilab_load_push_latency_seconds", Target: "load:", Labels: map[string]string{"stat": "p99"}}, Legend: "p99"},
					{Select: Selector{Name: "lokilab_load_push_latency_seconds", Target: "load:", Labels: map[string]string{"stat": "max"}}, Legend: "max"},
				},
			},
			{
				File: "kafka-outage-breaker.png", Title: "Circuit breaker state (0 closed, 1 half-open, 2 open)", YLabel: "state",
				Lines: []LineSpec{
					{Select: Selector{Name: "lokilab_distributor_kafka_breaker_state", Target: "distributor"}, Legend: "state"},
				},
			},
		},
		Look: []string{
			"`lokilab_distributor_kafka_breaker_state` (0 closed, 1 half-open, 2 open) and `lokilab_distributor_kafka_breaker_transitions_total{state}` on the API port's `/metrics`.",
			"`lokilab_distributor_push_failures_total{reason}`: `kafka_timeout` or `kafka_error` while the breaker is closed, `breaker_open` once it is open.",
			"`/distributor/status` on the API port: the breaker's state as text.",
			"`lokilab_distributor_kafka_write_duration_seconds{result}`: every write that reached Kafka, and how long it waited.",
			"`lokilab_distributor_inflight_push_bytes`: with a stalled broker and no breaker, the bytes held by pushes awaiting Kafka.",
			"`lokilab_distributor_kafka_late_writes_total`: pushes answered 503 whose records Kafka stored afterwards — duplicates for a retrying client, removed at query time.",
		},
		Code: []CodeRef{
			{"pkg/distributor/distributor.go", "the breaker around the Kafka write: Allow, the write timeout, what counts as a failure"},
			{"pkg/distributor/config.go", "BreakerConfig: consecutive failures, open timeout, half-open probes"},
			{"pkg/kafka/client.go", "the producer: idempotent, acks=all, a record delivery timeout"},
			{"pkg/kafka/broker.go", "the embedded kfake broker whose Cluster() the fault hook drives"},
			{"pkg/scenario/faults.go", "KafkaFault: kfake Fault for errors, ControlKey + SleepControl for stalls"},
			{"pkg/scenario/loadgen.go", "the client's view: every push's answer and latency"},
			{"pkg/scenario/kafka_outage.go", "this scenario: phases, checks"},
			{"docs/questions/08-circuit-breaker.md", "the question, the design and a reference run"},
		},
		Budget:      3 * time.Minute,
		ShortBudget: 90 * time.Second,
		Run:         runKafkaOutage,
	}
}

// breakerReading is the breaker's transition counters at one moment.
type breakerReading struct{ open, halfOpen, closed float64 }

func readBreaker(ctx context.Context, e *Env) (breakerReading, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	url := e.Sys.API + "/metrics"
	var r breakerReading
	var errs []error
	for _, s := range []struct {
		state string
		v     *float64
	}{{"open", &r.open}, {"half-open", &r.halfOpen}, {"closed", &r.closed}} {
		v, err := ScrapeSum(ctx, c, url, "lokilab_distributor_kafka_breaker_transitions_total", map[string]string{"state": s.state})
		errs = append(errs, err)
		*s.v = v
	}
	return r, errors.Join(errs...)
}

func breakerState(ctx context.Context, e *Env) (float64, error) {
	return ScrapeSum(ctx, &http.Client{Timeout: 5 * time.Second}, e.Sys.API+"/metrics", "lokilab_distributor_kafka_breaker_state", nil)
}

func runKafkaOutage(ctx context.Context, e *Env) error {
	k := e.Knobs
	writeTimeout := k.Duration("write-timeout")
	var fault KafkaFault
	switch k.String("fault") {
	case "stall":
		// Held until cleared: the delay outlasts the fault.
		fault = KafkaFault{Request: "produce", Delay: k.Duration("fault-for") + time.Minute}
	case "error":
		fault = KafkaFault{Request: "produce", ErrorCode: kerr.UnknownServerError.Code}
	default:
		return fmt.Errorf("-fault %q: want stall or error", k.String("fault"))
	}

	cfg := LoadgenDefaults()
	cfg.LinesPerSecond = k.Float("rate")
	cfg.BatchLines = 50
	cfg.Concurrency = 4
	cfg.StreamsPerTenant = 8
	cfg.Duration = 0
	cfg.PushTimeout = writeTimeout + 10*time.Second
	load := Loadgen("push", cfg)
	if err := e.StartLoad(ctx, load); err != nil {
		return err
	}
	if err := sleep(ctx, k.Duration("before")); err != nil {
		return err
	}

	b0, err := readBreaker(ctx, e)
	if err != nil {
		return err
	}
	tFault := time.Now()
	e.Logf("injecting the fault: %+v", fault)
	if err := e.Faults.KafkaFault(ctx, fault); err != nil {
		return err
	}
	// Watch the breaker's state while the fault lasts, to say when it
	// opened.
	var opened time.Time
	faultEnd := tFault.Add(k.Duration("fault-for"))
	for time.Now().Before(faultEnd) {
		if opened.IsZero() {
			if st, err := breakerState(ctx, e); err == nil && st == 2 {
				opened = time.Now()
				e.Logf("the breaker is open, %s after the fault began", ms(opened.Sub(tFault)))
			}
		}
		if err := sleep(ctx, min(100*time.Millisecond, time.Until(faultEnd))); err != nil {
			return err
		}
	}
	b1, err := readBreaker(ctx, e)
	if err != nil {
		return err
	}
	tClear := time.Now()
	e.Logf("clearing the fault")
	if err := e.Faults.ClearKafkaFaults(ctx); err != nil {
		return err
	}
	if err := sleep(ctx, k.Duration("after")); err != nil {
		return err
	}
	b2, err := readBreaker(ctx, e)
	if err != nil {
		return err
	}
	finalState, err := breakerState(ctx, e)
	if err != nil {
		return err
	}
	if err := load.Stop(ctx); err != nil {
		return err
	}

	ps := load.Pushes()
	o := outageOf(ps, tFault, tClear, writeTimeout)
	o.opened = opened
	checkOutage(e, o, outageFigures{
		b0: b0, b1: b1, b2: b2, finalState: finalState,
		writeTimeout: writeTimeout, recoverWithin: k.Duration("recover-within"),
	})
	e.Report.AddNote("The fault was `%s` on every produce request from %.1fs to %.1fs after the run began; "+
		"\"steady fault\" counts the pushes sent from the first one the open breaker refused (%.1fs; without a breaker, two write timeouts after the fault began) until it was cleared: "+
		"the first writes have then failed, each after the write timeout, and the breaker, if on, has opened. Its slow answers are the breaker's half-open probes.",
		k.String("fault"), tFault.Sub(e.start).Seconds(), tClear.Sub(e.start).Seconds(), o.steadyFrom.Sub(e.start).Seconds())

	_, err = VerifyAcked(ctx, e, load, 30*time.Second)
	return err
}

// outage is one run's pushes cut into phases.
type outage struct {
	tFault, tClear, opened time.Time
	steadyFrom             time.Time
	before, fault          PushStats
	after                  PushStats
	// steady5xx are the 5xx answers of the steady fault.
	steady5xx PushStats
	// recovery is from the fault's clearing until the answer of the last
	// push that failed after it; -1 when no push succeeded after it.
	recovery time.Duration
	maxAll   time.Duration
}

func outageOf(ps []PushResult, tFault, tClear time.Time, writeTimeout time.Duration) outage {
	o := outage{tFault: tFault, tClear: tClear}
	// Before: answered before the fault began. The fault: every other
	// push sent before it was cleared (a push in flight when it began
	// belongs to it).
	answeredBefore := func(p PushResult) bool { return p.At.Add(p.Latency).Before(tFault) }
	o.before = StatsOf(ps, time.Time{}, tFault, answeredBefore)
	o.fault = StatsOf(ps, time.Time{}, tClear, func(p PushResult) bool { return !answeredBefore(p) })
	// The steady fault starts with the first push the open breaker
	// refused; without one (no breaker), after two write timeouts, when
	// a breaker would have seen its failures (4 workers, 5 failures).
	steady := tFault.Add(2 * writeTimeout)
	for _, p := range ps {
		if p.Outcome.Reason == "breaker_open" && p.At.After(tFault) && p.At.Before(steady) {
			steady = p.At
		}
	}
	o.steadyFrom = steady
	o.steady5xx = StatsOf(ps, steady, tClear, func(p PushResult) bool { return p.Class() == "5xx" })
	o.after = StatsOf(ps, tClear, time.Time{}, nil)
	o.maxAll = StatsOf(ps, time.Time{}, time.Time{}, nil).Max
	var lastFail time.Time
	ok := false
	for _, p := range ps {
		if p.At.Before(tClear) {
			continue
		}
		if p.Class() == "2xx" {
			ok = true
			continue
		}
		if end := p.At.Add(p.Latency); end.After(lastFail) {
			lastFail = end
		}
	}
	switch {
	case !ok:
		o.recovery = -1
	case lastFail.IsZero():
		o.recovery = 0
	default:
		o.recovery = lastFail.Sub(tClear)
	}
	return o
}

type outageFigures struct {
	b0, b1, b2    breakerReading
	finalState    float64
	writeTimeout  time.Duration
	recoverWithin time.Duration
}

func pct(n, of int) string {
	if of == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}

func classes(s PushStats) string {
	var parts []string
	for _, c := range pushClasses {
		if n := s.ByClass[c]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", c, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func checkOutage(e *Env, o outage, f outageFigures) {
	rows := [][]string{}
	for _, ph := range []struct {
		name string
		s    PushStats
	}{{"before the fault", o.before}, {"the fault (all of it)", o.fault}, {"steady fault (5xx only)", o.steady5xx}, {"after the fault", o.after}} {
		rows = append(rows, []string{ph.name, fmt.Sprint(ph.s.Total), classes(ph.s), pct(ph.s.Accepted, ph.s.Total), ms(ph.s.P50), ms(ph.s.P99), ms(ph.s.Max)})
	}
	e.Report.AddTable(Table{Title: "Pushes by phase, as the client saw them", Header: []string{"phase", "pushes", "answers", "accepted", "p50", "p99", "max"}, Rows: rows})
	for _, r := range rows {
		e.Figure("pushes "+r[0], fmt.Sprintf("%s pushes, %s accepted; p99 %s, max %s", r[1], r[3], r[5], r[6]), r[2])
	}
	opened := "never"
	if !o.opened.IsZero() {
		opened = ms(o.opened.Sub(o.tFault)) + " after the fault began"
	}
	e.Figure("breaker opened", opened, "first scrape of lokilab_distributor_kafka_breaker_state = 2 (scraped every 100 ms)")
	e.Figure("breaker transitions during the fault", fmt.Sprintf("open %g, half-open %g, closed %g", f.b1.open-f.b0.open, f.b1.halfOpen-f.b0.halfOpen, f.b1.closed-f.b0.closed), "lokilab_distributor_kafka_breaker_transitions_total{state}")
	e.Figure("breaker transitions after it", fmt.Sprintf("open %g, half-open %g, closed %g", f.b2.open-f.b1.open, f.b2.halfOpen-f.b1.halfOpen, f.b2.closed-f.b1.closed), "")
	rec := "no push succeeded after the fault"
	if o.recovery >= 0 {
		rec = ms(o.recovery)
	}
	e.Figure("recovery", rec, "from clearing the fault until the answer of the last push that failed after it")

	e.Check("before the fault, every push is accepted", "100% 2xx", fmt.Sprintf("%s of %d (%s)", pct(o.before.Accepted, o.before.Total), o.before.Total, classes(o.before)),
		o.before.Total > 0 && o.before.Accepted == o.before.Total)
	e.Check("the breaker opened during the fault", "≥ 1 transition to open", fmt.Sprintf("%g", f.b1.open-f.b0.open), f.b1.open > f.b0.open)
	failFast := f.writeTimeout / 4
	e.Check("pushes fail fast during the steady fault", fmt.Sprintf("5xx p99 < %s (a quarter of the %s write timeout)", ms(failFast), f.writeTimeout),
		fmt.Sprintf("p99 %s over %d 5xx answers (p50 %s)", ms(o.steady5xx.P99), o.steady5xx.Total, ms(o.steady5xx.P50)),
		o.steady5xx.Total > 0 && o.steady5xx.P99 < failFast)
	limit := f.writeTimeout + time.Second
	e.Check("no push hangs", fmt.Sprintf("every push answered within %s (the write timeout + 1s), none unanswered", limit),
		fmt.Sprintf("max %s; %d unanswered", ms(o.maxAll), o.fault.ByClass["error"]+o.after.ByClass["error"]+o.before.ByClass["error"]),
		o.maxAll <= limit && o.fault.ByClass["error"]+o.after.ByClass["error"]+o.before.ByClass["error"] == 0)
	e.Check("the fault answers 5xx, nothing else", "only 2xx and 5xx during the fault", classes(o.fault),
		o.fault.ByClass["5xx"] > 0 && o.fault.ByClass["2xx"]+o.fault.ByClass["5xx"] == o.fault.Total)
	e.Check("the breaker probed (half-open) and closed again", "≥ 1 transition to half-open, then to closed; state closed at the end",
		fmt.Sprintf("half-open %g, closed %g since the fault began; state %g at the end", f.b2.halfOpen-f.b0.halfOpen, f.b2.closed-f.b0.closed, f.finalState),
		f.b2.halfOpen > f.b0.halfOpen && f.b2.closed > f.b0.closed && f.finalState == 0)
	e.Check("pushes succeed again soon after the fault", fmt.Sprintf("every push succeeds from ≤ %s after the fault clears", f.recoverWithin), rec,
		o.recovery >= 0 && o.recovery <= f.recoverWithin && o.after.Accepted > 0)
}
