package querier

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/pkg/tenant"
)

// blockingIngester answers /ingester/query_recent only when released, and
// counts the requests it holds: the subqueries of a metric query each ask
// it once, so what it holds is what the fan-out runs at once.
type blockingIngester struct {
	mu       sync.Mutex
	held     int
	maxHeld  int
	release  chan struct{}
	arrived  chan struct{}
	canceled chan struct{}
}

func (b *blockingIngester) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.held++
	b.maxHeld = max(b.maxHeld, b.held)
	b.mu.Unlock()
	defer func() { b.mu.Lock(); b.held--; b.mu.Unlock() }()
	b.arrived <- struct{}{}
	select {
	case <-b.release:
	case <-r.Context().Done():
		b.canceled <- struct{}{}
	}
}

// waitFor polls cond until it holds or a few seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSubqueriesInFlight runs a metric query of 8 split intervals with
// max_query_parallelism 3 against an ingester that holds every request:
// exactly 3 subqueries run at once and the gauge says so; when the client
// goes away, every held request is cancelled, the gauge falls to 0 and
// the remaining intervals never reach the ingester.
func TestSubqueriesInFlight(t *testing.T) {
	now := time.Unix(1_800_000_000, 0).Truncate(time.Hour)
	ing := &blockingIngester{release: make(chan struct{}), arrived: make(chan struct{}, 16), canceled: make(chan struct{}, 16)}
	srv := httptest.NewServer(ing)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	lim := tenant.DefaultLimits()
	lim.MaxQueryParallelism = 3
	lim.SplitQueriesByInterval = model.Duration(15 * time.Minute)
	reg := prometheus.NewRegistry()
	var cfg Config
	cfg.RegisterFlags(newFlagSet())
	q, err := New(cfg, Deps{
		Bucket: objstore.NewInMemBucket(), Ingesters: StaticIngesters{{ID: "ingester-0", Addr: u.Host}},
		Limits: fixedLimits{l: &lim}, AuthEnabled: true, Registerer: reg, Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	q.Register(func(p string, h http.Handler) { mux.Handle(p, h) })
	api := httptest.NewServer(mux)
	defer api.Close()

	// Eight 15m steps over the last 2h: eight subqueries, each asking the
	// ingester (the range is within query_ingesters_within).
	v := url.Values{
		"query": {`sum(count_over_time({app="a"}[15m]))`},
		"start": {strconv.FormatInt(now.Add(-105*time.Minute).UnixNano(), 10)},
		"end":   {strconv.FormatInt(now.UnixNano(), 10)},
		"step":  {"900"},
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.URL+"/loki/api/v1/query_range?"+v.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(tenant.Header, "t")
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	for range 3 {
		<-ing.arrived
	}
	gauge := func() float64 { return testutil.ToFloat64(q.inflight.subqueries) }
	waitFor(t, "3 subqueries in flight", func() bool { return gauge() == 3 })
	// A fourth must not start while the three are held.
	select {
	case <-ing.arrived:
		t.Fatal("a fourth subquery reached the ingester with max_query_parallelism 3")
	case <-time.After(100 * time.Millisecond):
	}

	cancel()
	if err := <-done; err == nil {
		t.Fatal("the cancelled request succeeded")
	}
	for range 3 {
		select {
		case <-ing.canceled:
		case <-time.After(5 * time.Second):
			t.Fatal("a held ingester request was not cancelled with the query")
		}
	}
	waitFor(t, "no subquery in flight", func() bool { return gauge() == 0 })
	ing.mu.Lock()
	maxHeld := ing.maxHeld
	ing.mu.Unlock()
	if maxHeld != 3 {
		t.Errorf("the ingester held up to %d requests at once, want 3", maxHeld)
	}
	// The five intervals left never asked the ingester.
	select {
	case <-ing.arrived:
		t.Error("an interval started after the query was cancelled reached the ingester")
	case <-time.After(100 * time.Millisecond):
	}
}
