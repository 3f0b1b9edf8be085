package scenario

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lokilab/lokilab/pkg/loadgen"
)

// This file adapts pkg/loadgen, the lab's realistic load, to the engine's
// Load interface. A scenario uses it like this:
//
//	cfg := LoadgenDefaults()          // `lokilab load`'s defaults
//	cfg.LinesPerSecond = 2000
//	cfg.Duration = 0                  // until Stop
//	l := Loadgen("steady", cfg)
//	if err := env.StartLoad(ctx, l); err != nil { ... }
//	...                               // break things
//	_ = l.Stop(ctx)                   // or leave it to the engine
//	l.Pushes()                        // every push: when, how long, outcome
//	VerifyAcked(ctx, env, l, 30*time.Second) // every 204'd line, exactly once
//
// What it adds to pkg/loadgen:
//
//   - the URL comes from the run (LoadTarget.PushURL);
//   - an ack log is always written, by default to <report dir>/<name>.acks
//     (a relative Config.AckLog is taken relative to the report directory),
//     so VerifyAcked can prove that nothing acknowledged was lost;
//   - every push is observed as the client saw it (PushResult: send time,
//     latency, status and reason), so a scenario can cut the run into
//     phases (before, during, after a fault) and compute each phase's
//     outcomes and latency percentiles;
//   - while it runs it records, under the sampler target "load:<name>",
//     lokilab_load_pushes_total{outcome="2xx"|"429"|"5xx"|"4xx"|"error"}
//     (cumulative, plot it with Rate) and
//     lokilab_load_push_latency_seconds{stat="p50"|"p99"|"max"} (over each
//     sampling interval), so plots show the client's view beside the
//     system's metrics;
//   - Summary turns loadgen's summary into report figures.

// LoadgenDefaults returns `lokilab load`'s defaults (1 tenant, 10 streams,
// 100-line pushes, 1000 lines/s, 4 workers, protobuf, 1m). Adjust and
// pass to Loadgen; the URL is set when the load starts.
func LoadgenDefaults() loadgen.Config {
	var cfg loadgen.Config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	return cfg
}

// PushResult is one push as the load's client saw it.
type PushResult struct {
	// At is when it was sent; Latency until its answer was read (or the
	// client gave up).
	At      time.Time
	Latency time.Duration
	// Tenant is the X-Scope-OrgID sent.
	Tenant string
	// Outcome is the status and reason (loadgen.Classify); Code 0 when
	// no answer came.
	Outcome loadgen.Outcome
	// Message is the answer's body for a push not accepted (at most
	// 512 bytes), or the transport error.
	Message string
}

// Class is the outcome's class: "2xx", "429", "4xx", "5xx" or "error"
// (no answer).
func (p PushResult) Class() string {
	switch c := p.Outcome.Code; {
	case c == 0:
		return "error"
	case c >= 200 && c < 300:
		return "2xx"
	case c == http.StatusTooManyRequests:
		return "429"
	case c >= 500:
		return "5xx"
	}
	return "4xx"
}

var pushClasses = []string{"2xx", "429", "4xx", "5xx", "error"}

// LoadgenLoad is pkg/loadgen as a Load. Build it with Loadgen; it runs
// once.
type LoadgenLoad struct {
	name string
	cfg  loadgen.Config
	// Progress, if set before Start, receives loadgen's progress line
	// every ProgressInterval.
	Progress io.Writer
	// URL, if set before Start, is where the load pushes instead of the
	// run's API port: e.g. another distributor's push endpoint
	// (System.Distributors).
	URL string

	tr      *http.Transport
	sampler *Sampler
	cancel  context.CancelFunc
	done    chan struct{}

	mu      sync.Mutex
	started bool
	pushes  []PushResult
	counts  map[string]float64
	window  []time.Duration // latencies answered since the last record
	sum     loadgen.Summary
	runErr  error
	ackLog  string
	verify  *loadgen.VerifyReport
}

// Loadgen returns a load pushing cfg (see LoadgenDefaults), named name in
// progress lines, figures and sampled series ("load:<name>"). cfg.URL is
// replaced by the run's push URL. cfg.AckLog empty means
// "<name>.acks" in the report directory.
func Loadgen(name string, cfg loadgen.Config) *LoadgenLoad {
	return &LoadgenLoad{name: name, cfg: cfg, counts: map[string]float64{}, done: make(chan struct{})}
}

// Name implements Load.
func (l *LoadgenLoad) Name() string { return l.name }

// Config is the load's configuration as it runs (URL and ack log filled
// once started).
func (l *LoadgenLoad) Config() loadgen.Config {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg
}

// AckLog is the ack log's path, once started.
func (l *LoadgenLoad) AckLog() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ackLog
}

// Start implements Load: it builds the loadgen and runs it in the
// background until cfg.Duration passes, Stop, or ctx ends.
func (l *LoadgenLoad) Start(ctx context.Context, t LoadTarget) error {
	l.mu.Lock()
	if l.started {
		l.mu.Unlock()
		return errors.New("a LoadgenLoad runs once")
	}
	l.started = true
	cfg := l.cfg
	cfg.URL = t.PushURL
	if l.URL != "" {
		cfg.URL = l.URL
	}
	if cfg.AckLog == "" {
		cfg.AckLog = l.name + ".acks"
	}
	if !filepath.IsAbs(cfg.AckLog) {
		dir := t.Dir
		if dir == "" {
			dir = "."
		}
		cfg.AckLog = filepath.Join(dir, cfg.AckLog)
	}
	l.cfg = cfg
	l.ackLog = cfg.AckLog
	l.sampler = t.Sampler
	l.mu.Unlock()

	l.tr = &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConnsPerHost: max(cfg.Concurrency, 1),
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	lg, err := loadgen.New(cfg, loadgen.Deps{Transport: observer{l}, Progress: l.Progress})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	l.mu.Lock()
	l.cancel = cancel
	l.mu.Unlock()
	go func() {
		defer close(l.done)
		sum, err := lg.Run(rctx)
		l.tr.CloseIdleConnections()
		l.mu.Lock()
		l.sum, l.runErr = sum, err
		l.mu.Unlock()
		l.record(time.Now())
	}()
	if l.sampler != nil {
		go l.sample(rctx)
	}
	return nil
}

// sample records the client's series every sampling interval.
func (l *LoadgenLoad) sample(ctx context.Context) {
	t := time.NewTicker(l.sampler.Interval())
	defer t.Stop()
	l.record(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.done:
			return
		case now := <-t.C:
			l.record(now)
		}
	}
}

func (l *LoadgenLoad) record(now time.Time) {
	if l.sampler == nil {
		return
	}
	l.mu.Lock()
	counts := make(map[string]float64, len(pushClasses))
	for _, c := range pushClasses {
		counts[c] = l.counts[c]
	}
	window := l.window
	l.window = nil
	l.mu.Unlock()
	target := "load:" + l.name
	for _, c := range pushClasses {
		l.sampler.Record(target, "lokilab_load_pushes_total", map[string]string{"outcome": c}, true, Point{T: now, V: counts[c]})
	}
	if len(window) == 0 {
		return
	}
	slices.Sort(window)
	for _, q := range []struct {
		stat string
		v    time.Duration
	}{{"p50", Percentile(window, 0.5)}, {"p99", Percentile(window, 0.99)}, {"max", window[len(window)-1]}} {
		l.sampler.Record(target, "lokilab_load_push_latency_seconds", map[string]string{"stat": q.stat}, false, Point{T: now, V: q.v.Seconds()})
	}
}

// Percentile is the q-quantile (0..1) of sorted durations, nearest rank;
// 0 for none.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Stop implements Load: it ends the load and waits for the pushes in
// flight (each bounded by the config's PushTimeout).
func (l *LoadgenLoad) Stop(ctx context.Context) error {
	l.mu.Lock()
	cancel := l.cancel
	l.mu.Unlock()
	if cancel == nil {
		return nil // never started, or its start failed
	}
	cancel()
	select {
	case <-l.done:
	case <-ctx.Done():
		return fmt.Errorf("load %s did not stop: %w", l.name, ctx.Err())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.runErr
}

// Wait waits until the load ends by itself (cfg.Duration) or ctx ends.
func (l *LoadgenLoad) Wait(ctx context.Context) error {
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Result is loadgen's summary, complete once the load has stopped.
func (l *LoadgenLoad) Result() loadgen.Summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sum
}

// Pushes returns every push so far, in the order their answers came.
func (l *LoadgenLoad) Pushes() []PushResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.pushes)
}

// Summary implements Load: loadgen's summary as figures.
func (l *LoadgenLoad) Summary() []Figure {
	l.mu.Lock()
	s := l.sum
	v := l.verify
	l.mu.Unlock()
	mbps := func(n int64) string {
		if s.Elapsed <= 0 {
			return "0"
		}
		return strconv.FormatFloat(float64(n)/s.Elapsed.Seconds()/(1<<20), 'f', 3, 64)
	}
	out := []Figure{
		{"sent", fmt.Sprintf("%d lines, %d pushes, %s MB/s", s.Sent.Lines, s.Sent.Pushes, mbps(s.Sent.Bytes)),
			fmt.Sprintf("pkg/loadgen run %s, %d workers, %s, over %s", s.Run, s.Workers, s.Encoding, s.Elapsed.Round(time.Millisecond))},
		{"accepted (2xx)", fmt.Sprintf("%d lines, %d pushes, %s MB/s", s.Accepted.Lines, s.Accepted.Pushes, mbps(s.Accepted.Bytes)), "answered 204: acknowledged, in the ack log"},
	}
	for _, r := range s.Rejected {
		out = append(out, Figure{"rejected " + r.Outcome.String(), fmt.Sprintf("%d lines, %d pushes", r.Lines, r.Pushes), "by status and reason (loadgen.Classify)"})
	}
	out = append(out, Figure{"push latency", fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s", ms(s.Latency.P50), ms(s.Latency.P90), ms(s.Latency.P99), ms(s.Latency.Max)),
		fmt.Sprintf("%d answered pushes, from sending to the answer", s.Latency.Count)})
	if s.AckLog != "" {
		out = append(out, Figure{"ack log", fmt.Sprintf("%d records", s.AckRecords), "`" + filepath.Base(s.AckLog) + "` in the report directory: `lokilab verify -ack-log` reads it"})
	}
	if v != nil {
		out = append(out, Figure{"verified", fmt.Sprintf("%d of %d acknowledged lines found, %d missing, %d duplicated", v.Found, v.Acked, v.Missing, v.Duplicated),
			fmt.Sprintf("loadgen.Verify: %d queries, %d checks in %s; %d unacknowledged lines stored anyway", v.Queries, v.Checks, v.Elapsed.Round(time.Millisecond), v.Unacked)})
	}
	return out
}

// VerifyAcked stops l if it still runs, reads its ack log back through the
// system's query API (loadgen.Verify, checking again for up to wait while
// lines are missing) and records the check "every acknowledged line is
// queryable exactly once" with the counts. The error is about the check
// itself (the log unreadable, a query refused).
func VerifyAcked(ctx context.Context, e *Env, l *LoadgenLoad, wait time.Duration) (*loadgen.VerifyReport, error) {
	if err := l.Stop(ctx); err != nil {
		return nil, err
	}
	var vc loadgen.VerifyConfig
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	vc.RegisterFlags(fs)
	vc.URL = e.Sys.API
	vc.AckLog = l.AckLog()
	vc.Wait = wait
	vc.RetryInterval = time.Second
	var log bytes.Buffer
	rep, err := loadgen.Verify(ctx, vc, &log)
	if err != nil {
		return nil, fmt.Errorf("verifying load %s: %w", l.name, err)
	}
	l.mu.Lock()
	l.verify = rep
	l.mu.Unlock()
	e.Check(fmt.Sprintf("load %s: every acknowledged line is queryable exactly once", l.name),
		"0 missing, 0 duplicated", fmt.Sprintf("%d acknowledged, %d found, %d missing, %d duplicated", rep.Acked, rep.Found, rep.Missing, rep.Duplicated),
		rep.OK(false) && rep.Acked > 0)
	if !rep.OK(false) {
		var b bytes.Buffer
		_, _ = rep.WriteTo(&b)
		e.Report.AddNote("Verify of load %s:\n\n```\n%s```", l.name, b.String())
	}
	return rep, nil
}

// observer is the loads' transport: it times every push and reads its
// answer's status and message.
type observer struct{ l *LoadgenLoad }

func (o observer) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := o.l.tr.RoundTrip(req)
	p := PushResult{At: start, Tenant: req.Header.Get("X-Scope-OrgID")}
	if err != nil {
		p.Latency = time.Since(start)
		p.Outcome = loadgen.ClassifyError(err)
		p.Message = err.Error()
		o.l.add(p)
		return nil, err
	}
	// Answers are small (204, or a one-line error): read it here, so
	// the latency covers the whole answer, and hand loadgen a copy.
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	p.Latency = time.Since(start)
	if rerr != nil {
		p.Outcome = loadgen.ClassifyError(rerr)
	} else {
		p.Outcome = loadgen.Classify(resp.StatusCode, string(body))
		if !p.Outcome.Accepted() {
			p.Message = strings.TrimSpace(string(body[:min(len(body), 512)]))
		}
	}
	o.l.add(p)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

func (l *LoadgenLoad) add(p PushResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pushes = append(l.pushes, p)
	l.counts[p.Class()]++
	if p.Outcome.Code != 0 {
		l.window = append(l.window, p.Latency)
	}
}

// PushStats summarises pushes: counts by class and latency percentiles
// of the answered ones.
type PushStats struct {
	Total    int
	ByClass  map[string]int
	Answered int
	P50, P99 time.Duration
	Max      time.Duration
	// Lines is not known per push; Accepted is the 2xx count.
	Accepted int
}

// StatsOf summarises the pushes sent in [from, to) (zero times: no
// bound) that keep returns true for (nil: all).
func StatsOf(ps []PushResult, from, to time.Time, keep func(PushResult) bool) PushStats {
	s := PushStats{ByClass: map[string]int{}}
	var lat []time.Duration
	for _, p := range ps {
		if !from.IsZero() && p.At.Before(from) || !to.IsZero() && !p.At.Before(to) || keep != nil && !keep(p) {
			continue
		}
		s.Total++
		s.ByClass[p.Class()]++
		if p.Outcome.Code != 0 {
			lat = append(lat, p.Latency)
		}
		// A push that got no answer still took its time: the max
		// includes it, so a hang shows.
		s.Max = max(s.Max, p.Latency)
	}
	s.Accepted = s.ByClass["2xx"]
	s.Answered = len(lat)
	slices.Sort(lat)
	s.P50, s.P99 = Percentile(lat, 0.5), Percentile(lat, 0.99)
	return s
}
