package faultmatrix

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lokilab/lokilab/pkg/lokiclient"
)

// push is one push as the load's client saw it.
type push struct {
	start, end time.Time
	ok         bool // answered 2xx
}

// recorder is the load's transport: it carries every push (over its own
// connections, as the load's workers would) and records when it was sent,
// when its answer came and whether it was accepted.
type recorder struct {
	inner http.RoundTripper
	mu    sync.Mutex
	log   []push
	// inflight counts pushes sent and not yet answered: a kill "mid
	// request" waits for one.
	inflight int
}

func newRecorder() *recorder {
	return &recorder{inner: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second}}
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	r.mu.Lock()
	r.inflight++
	r.mu.Unlock()
	resp, err := r.inner.RoundTrip(req)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inflight--
	r.log = append(r.log, push{start: start, end: time.Now(), ok: err == nil && resp.StatusCode/100 == 2})
	return resp, err
}

func (r *recorder) busy() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inflight > 0
}

func (r *recorder) all() []push {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.log)
	slices.SortFunc(out, func(a, b push) int { return a.start.Compare(b.start) })
	return out
}

// writeRecovery is how long after the fault's end writes were back: until
// the answer of the first accepted push sent after the last push rejected
// since the fault began. 0 when none was rejected: writes never stopped.
func writeRecovery(pushes []push, faultStart, faultEnd time.Time) time.Duration {
	var lastBad time.Time
	for _, p := range pushes {
		if !p.ok && !p.start.Before(faultStart) {
			lastBad = p.start
		}
	}
	if lastBad.IsZero() {
		return 0
	}
	for _, p := range pushes {
		if p.ok && p.start.After(lastBad) {
			return max(p.end.Sub(faultEnd), 0)
		}
	}
	return -1
}

// waitWhole polls from the fault's end until every process is running and
// ready and a recent query for each tenant comes back without a
// partial-result warning; it returns how long that took after from, or -1
// if it did not happen within limit.
func (e *env) waitWhole(ctx context.Context, from time.Time, limit time.Duration) time.Duration {
	deadline := from.Add(limit)
	for time.Now().Before(deadline) {
		if e.whole(ctx) {
			return time.Since(from)
		}
		if sleepCtx(ctx, 250*time.Millisecond) != nil {
			return -1
		}
	}
	return -1
}

// ReadProbe queries every 500ms from now until stop is closed and counts
// the answers: whole, partial (a warning names what is missing) or failed.
type ReadProbe struct {
	Whole, Partial, Failed int
	// Warning is one of the partial answers' warnings, for the notes.
	Warning string
}

// probeReads queries every 500ms until stop is closed.
func (e *env) probeReads(ctx context.Context, stop <-chan struct{}) ReadProbe {
	var p ReadProbe
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := lokiclient.New(e.sys.API, lokiclient.WithTenant("tenant-1"), lokiclient.WithHTTPClient(e.client)).
			QueryRange(qctx, lokiclient.RangeQuery{Query: `{job="lokilab-load"}`, Start: time.Now().Add(-time.Minute), End: time.Now(), Limit: 1})
		cancel()
		switch {
		case err != nil:
			p.Failed++
		case len(res.Warnings) > 0:
			p.Partial++
			p.Warning = res.Warnings[0]
		default:
			p.Whole++
		}
		select {
		case <-stop:
			return p
		case <-ctx.Done():
			return p
		case <-t.C:
		}
	}
}

func (e *env) whole(ctx context.Context) bool {
	st, err := e.sys.Processes(ctx)
	if err != nil {
		return false
	}
	for _, p := range st.Processes {
		if !p.Ready {
			return false
		}
	}
	for _, tenant := range []string{"tenant-1", "tenant-2"} {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := lokiclient.New(e.sys.API, lokiclient.WithTenant(tenant), lokiclient.WithHTTPClient(e.client)).
			QueryRange(qctx, lokiclient.RangeQuery{Query: `{job="lokilab-load"}`, Start: time.Now().Add(-time.Minute), End: time.Now(), Limit: 1})
		cancel()
		if err != nil || len(res.Warnings) > 0 {
			return false
		}
	}
	return true
}

// querierMetric sums a counter on the querier process's /metrics (0 when
// it cannot be read).
func (e *env) querierMetric(ctx context.Context, name string) float64 {
	var url string
	for _, t := range e.sys.MetricsTargets() {
		if t.Name == "querier" {
			url = t.URL
		}
	}
	if url == "" {
		return 0
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0
	}
	sum := 0.0
	for n, f := range fams {
		if !strings.EqualFold(n, name) {
			continue
		}
		for _, m := range f.GetMetric() {
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
		}
	}
	return sum
}
