package scenario

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/lokiclient"
	"github.com/lokilab/lokilab/pkg/push"
)

// This file holds what the query scenarios (slow-query, fan-out) share: a
// day of synthetic access logs loaded into the store and the ingesters, a
// way to change the tenant's query limits while the system runs, and a
// query runner that keeps the answer's stats.

// queryLimits are the per-tenant limits the query scenarios turn.
type queryLimits struct {
	// Split is split_queries_by_interval ("1h", "0s" for no split).
	Split string
	// Parallelism is max_query_parallelism.
	Parallelism int
}

func (l queryLimits) String() string {
	return fmt.Sprintf("split %s, parallelism %d", l.Split, l.Parallelism)
}

// configureQueryLab sets what both query scenarios need: auth on (one
// named tenant), ingestion limits out of the way of loading a day of logs
// in seconds, and a runtime overrides file re-read every 100ms, so a
// scenario can change the tenant's query limits between two queries as an
// operator would, without a restart.
func configureQueryLab(cfg *app.AllInOneConfig, tenantID string, lim queryLimits) {
	cfg.AuthEnabled = true
	cfg.Ingesters = 2
	cfg.Limits.IngestionRateMB = 1024
	cfg.Limits.IngestionBurstSizeMB = 1024
	path := filepath.Join(cfg.DataDir, "overrides.yaml")
	// A failure here shows as the system refusing to start.
	_ = os.MkdirAll(cfg.DataDir, 0o755)
	_ = os.WriteFile(path, overridesYAML(tenantID, lim, 0), 0o644)
	cfg.RuntimeConfig.File = path
	cfg.RuntimeConfig.Period = 100 * time.Millisecond
}

// probeLimit is the max_entries_limit_per_query of overrides version v:
// a log query asking for probeLimit(v) entries is refused until version v
// is loaded, which is how queryLab knows the querier has re-read the file
// (its overrides export no metric of their own).
func probeLimit(v int) int { return 5000 + v }

func overridesYAML(tenantID string, lim queryLimits, version int) []byte {
	return fmt.Appendf(nil, "overrides:\n  %s:\n    split_queries_by_interval: %s\n    max_query_parallelism: %d\n    max_entries_limit_per_query: %d\n",
		tenantID, lim.Split, lim.Parallelism, probeLimit(version))
}

// queryLab drives the query scenarios' system: it loads the data, sets
// the tenant's limits and runs queries.
type queryLab struct {
	e       *Env
	tenant  string
	client  *lokiclient.Client
	http    *http.Client
	version int
	limits  queryLimits
}

func newQueryLab(e *Env, tenantID string, initial queryLimits) *queryLab {
	hc := &http.Client{Timeout: 2 * time.Minute}
	return &queryLab{
		e: e, tenant: tenantID, http: hc, limits: initial,
		client: lokiclient.New(e.Sys.API, lokiclient.WithTenant(tenantID), lokiclient.WithHTTPClient(hc)),
	}
}

// setLimits rewrites the overrides file and waits until the querier
// answers with the new limits.
func (l *queryLab) setLimits(ctx context.Context, lim queryLimits) error {
	if lim == l.limits && l.version > 0 {
		return nil
	}
	l.version++
	if err := os.WriteFile(l.e.Sys.Config.RuntimeConfig.File, overridesYAML(l.tenant, lim, l.version), 0o644); err != nil {
		return fmt.Errorf("writing the overrides: %w", err)
	}
	l.limits = lim
	deadline := time.Now().Add(15 * time.Second)
	// A log query over one nanosecond of long ago: it reads nothing, and
	// is refused (400) until the new max_entries_limit_per_query is in.
	at := time.Unix(0, 1_000_000_000)
	for {
		_, err := l.client.QueryRange(ctx, lokiclient.RangeQuery{Query: `{app="probe"}`, Start: at, End: at.Add(time.Nanosecond), Limit: probeLimit(l.version)})
		var ae *lokiclient.APIError
		switch {
		case err == nil:
			l.e.Logf("limits of %s now: %s", l.tenant, lim)
			return nil
		case !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest:
			return fmt.Errorf("probing the overrides: %w", err)
		case time.Now().After(deadline):
			return fmt.Errorf("the querier did not load overrides version %d within 15s: %w", l.version, err)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// sqData describes synthetic access logs: streams {app="<app>",
// pod="pod-N"}, linesPerHour lines each, evenly spread over [from, to)
// with jitter, about 1% of them errors whose message says "timeout" (the
// only lines holding that word, in any case), and one needle line.
type sqData struct {
	app          string
	streams      int
	linesPerHour int
	from, to     time.Time
	seed         uint64
	// needleAt, if not zero, is where the one line holding needle goes
	// (in stream pod-0).
	needleAt time.Time
	needle   string
}

// sqLoaded is what a push stored: lines, bytes, and the times of the lines
// holding "timeout" (what count_over_time must find), sorted.
type sqLoaded struct {
	lines, bytes int64
	timeouts     []int64 // ns, sorted
}

// countIn is how many lines holding "timeout" have S < ts <= E: the
// window count_over_time(...[E-S]) evaluated at E reads.
func (l *sqLoaded) countIn(s, e time.Time) int {
	lo := sort.Search(len(l.timeouts), func(i int) bool { return l.timeouts[i] > s.UnixNano() })
	hi := sort.Search(len(l.timeouts), func(i int) bool { return l.timeouts[i] > e.UnixNano() })
	return hi - lo
}

func (l *sqLoaded) add(o sqLoaded) {
	l.lines += o.lines
	l.bytes += o.bytes
	l.timeouts = append(l.timeouts, o.timeouts...)
	slices.Sort(l.timeouts)
}

var (
	sqMethods = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	sqPaths   = []string{"orders", "users", "carts", "payments", "search", "inventory"}
	sqMsgs    = []string{"request served", "request served", "request served", "cache miss, read from the database", "slow request", "retrying upstream call"}
)

// sqLine returns a generated access-log line; timeout says whether it is
// one of the ~1% that mention "timeout".
func sqLine(r *rand.Rand) (line string, timeout bool) {
	m := sqMethods[r.IntN(len(sqMethods))]
	p := sqPaths[r.IntN(len(sqPaths))]
	if r.IntN(100) == 0 {
		return fmt.Sprintf("level=error method=%s path=/api/v1/%s/%d status=504 duration=%dms bytes=0 user=u%04d msg=\"upstream timeout after 30s\"",
			m, p, r.IntN(100000), 30000+r.IntN(50), r.IntN(10000)), true
	}
	return fmt.Sprintf("level=info method=%s path=/api/v1/%s/%d status=%d duration=%dms bytes=%d user=u%04d msg=%q",
		m, p, r.IntN(100000), []int{200, 200, 200, 201, 204, 404}[r.IntN(6)], 1+r.IntN(900), r.IntN(20000), r.IntN(10000), sqMsgs[r.IntN(len(sqMsgs))]), false
}

// push pushes d through the distributor, stream by stream in time order
// (each stream's batches one after another, so the ingester sees them in
// order), all streams at once.
func (l *queryLab) push(ctx context.Context, d sqData) (sqLoaded, error) {
	span := d.to.Sub(d.from)
	n := int(float64(d.linesPerHour) * span.Hours())
	if n <= 0 {
		return sqLoaded{}, nil
	}
	step := span / time.Duration(n)
	const batch = 1000
	var (
		mu    sync.Mutex
		total sqLoaded
		wg    sync.WaitGroup
		errs  = make([]error, d.streams)
	)
	for s := range d.streams {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(d.seed, uint64(s)))
			var own sqLoaded
			labels := fmt.Sprintf(`{app=%q, pod="pod-%d"}`, d.app, s)
			needleDone := d.needleAt.IsZero() || s != 0
			for i := 0; i < n; i += batch {
				st := push.Stream{Labels: labels}
				for j := i; j < min(i+batch, n); j++ {
					ts := d.from.Add(time.Duration(j)*step + time.Duration(r.Int64N(int64(step)))).UnixNano()
					line, to := sqLine(r)
					if !needleDone && ts >= d.needleAt.UnixNano() {
						line = "level=warn method=POST path=/api/v1/payments/1 status=402 msg=\"card declined\" " + d.needle
						to, needleDone = false, true
					}
					if to {
						own.timeouts = append(own.timeouts, ts)
					}
					own.lines++
					own.bytes += int64(len(line))
					st.Entries = append(st.Entries, push.Entry{Timestamp: ts, Line: line})
				}
				if err := l.pushRequest(ctx, &push.Request{Streams: []push.Stream{st}}); err != nil {
					errs[s] = err
					return
				}
			}
			mu.Lock()
			total.add(own)
			mu.Unlock()
		})
	}
	wg.Wait()
	return total, errors.Join(errs...)
}

func (l *queryLab) pushRequest(ctx context.Context, req *push.Request) error {
	body := push.EncodeSnappyProto(req)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, l.e.Sys.API+"/loki/api/v1/push", bytes.NewReader(body))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/x-protobuf")
	hr.Header.Set("X-Scope-OrgID", l.tenant)
	resp, err := l.http.Do(hr)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("push: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// appended is the entries every ingester appended so far.
func (l *queryLab) appended(ctx context.Context) (float64, error) {
	sum := 0.0
	for _, in := range l.e.Sys.Ingesters {
		v, err := ScrapeSum(ctx, l.http, in.URL+"/metrics", "lokilab_ingester_entries_appended_total", nil)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", in.Name, err)
		}
		sum += v
	}
	return sum, nil
}

// waitAppended polls the ingesters until they appended want entries in
// all: what was pushed (acknowledged once in Kafka) is then in their
// memory.
func (l *queryLab) waitAppended(ctx context.Context, want int64) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := l.appended(ctx)
		if err != nil {
			return err
		}
		if int64(got) >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the ingesters appended %.0f of %d entries within 60s", got, want)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// flushAll makes every ingester flush all it holds to the store.
func (l *queryLab) flushAll(ctx context.Context) error {
	for _, in := range l.e.Sys.Ingesters {
		if err := l.e.Sys.post(ctx, in.URL+"/flush", "", nil, http.StatusNoContent); err != nil {
			return fmt.Errorf("flushing %s: %w", in.Name, err)
		}
	}
	return nil
}

// sqAnswer is one query's answer, reduced to what the scenarios compare.
type sqAnswer struct {
	latency time.Duration // as the client saw it
	stats   lokiclient.Stats
	// value is the sum of every sample of a metric answer, or the number
	// of entries of a log answer.
	value    float64
	entries  []lokiclient.Entry
	warnings []string
}

// run asks q and returns its answer.
func (l *queryLab) run(ctx context.Context, q lokiclient.RangeQuery) (sqAnswer, error) {
	t0 := time.Now()
	res, err := l.client.QueryRange(ctx, q)
	lat := time.Since(t0)
	if err != nil {
		return sqAnswer{}, fmt.Errorf("query %s: %w", q.Query, err)
	}
	st, err := lokiclient.ParseStats(res.Stats)
	if err != nil {
		return sqAnswer{}, fmt.Errorf("query %s: stats: %w", q.Query, err)
	}
	a := sqAnswer{latency: lat, stats: st, warnings: res.Warnings}
	for _, s := range res.Series {
		for _, p := range s.Samples {
			a.value += p.Value
		}
	}
	for _, s := range res.Streams {
		a.entries = append(a.entries, s.Entries...)
		a.value += float64(len(s.Entries))
	}
	return a, nil
}

func sqMedian(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func sqMB(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

func sqTimes(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", a/b)
}
