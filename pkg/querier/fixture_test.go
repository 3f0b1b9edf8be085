package querier

import (
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/logql"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// fakeIngester serves the ingester's recent-data API (/ingester/query_recent
// and /ingester/series, the contract pkg/ingester implements and tests)
// from streams held in a map, so querier tests control exactly what is "in
// memory". It answers with the same semantics: the tenant from
// X-Scope-OrgID, the log query's selector and raw line filters, [start,
// end), direction, a per-stream limit (0: all) and batches of at most 1000
// entries per line.
type fakeIngester struct {
	mu      sync.Mutex
	streams map[string]map[string][]push.Entry // tenant → labels → entries, sorted
	srv     *httptest.Server
}

func newFakeIngester(t *testing.T) *fakeIngester {
	f := &fakeIngester{streams: map[string]map[string][]push.Entry{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ingester/query_recent", f.serveQuery)
	mux.HandleFunc("GET /ingester/series", f.serveSeries)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// add puts entries of one stream in the ingester's memory.
func (f *fakeIngester) add(tenantID string, ls labels.Labels, es ...push.Entry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.streams[tenantID] == nil {
		f.streams[tenantID] = map[string][]push.Entry{}
	}
	k := ls.String()
	all := append(f.streams[tenantID][k], es...)
	slices.SortFunc(all, compareEntries)
	f.streams[tenantID][k] = slices.CompactFunc(all, func(a, b push.Entry) bool { return a.Timestamp == b.Timestamp && a.Line == b.Line })
}

func (f *fakeIngester) addr() string { u, _ := url.Parse(f.srv.URL); return u.Host }

// matching returns the tenant's streams matching the selector in param
// with their entries in [start, end): for "query" (a log query), only the
// entries its raw line filters keep.
func (f *fakeIngester) matching(r *http.Request, param string) (map[string][]push.Entry, error) {
	v := r.URL.Query()
	var (
		ms     []*labels.Matcher
		filter func(string) bool
	)
	if s := v.Get(param); s != "" && param == "query" {
		lq, err := logql.ParseLogQuery(s)
		if err != nil {
			return nil, err
		}
		ms, filter = lq.Matchers, lq.RawLineFilter()
	} else if s != "" {
		var err error
		if ms, err = labels.ParseMatchers(s); err != nil {
			return nil, err
		}
	}
	from, _ := strconv.ParseInt(v.Get("start"), 10, 64)
	through, _ := strconv.ParseInt(v.Get("end"), 10, 64)
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]push.Entry{}
	for k, es := range f.streams[r.Header.Get(tenant.Header)] {
		ls, _ := labels.Parse(k)
		if !ls.Matches(ms...) {
			continue
		}
		var in []push.Entry
		for _, e := range es {
			if e.Timestamp >= from && e.Timestamp < through && (filter == nil || filter(e.Line)) {
				in = append(in, e)
			}
		}
		if len(in) > 0 {
			out[k] = in
		}
	}
	return out, nil
}

func (f *fakeIngester) serveQuery(w http.ResponseWriter, r *http.Request) {
	streams, err := f.matching(r, "query")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	backward := r.URL.Query().Get("direction") != "forward"
	enc := json.NewEncoder(w)
	for k, es := range streams {
		es = slices.Clone(es)
		if backward {
			slices.Reverse(es)
		}
		if limit > 0 && len(es) > limit {
			es = es[:limit]
		}
		for len(es) > 0 {
			n := min(len(es), 1000)
			values := make([][2]string, n)
			for i, e := range es[:n] {
				values[i] = [2]string{strconv.FormatInt(e.Timestamp, 10), e.Line}
			}
			_ = enc.Encode(map[string]any{"stream": k, "values": values})
			es = es[n:]
		}
	}
}

func (f *fakeIngester) serveSeries(w http.ResponseWriter, r *http.Request) {
	streams, err := f.matching(r, "match")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out := []streamStats{}
	for k, es := range streams {
		st := streamStats{Stream: k, Chunks: 1, Entries: len(es)}
		for _, e := range es {
			st.Bytes += len(e.Line)
		}
		out = append(out, st)
	}
	_ = json.NewEncoder(w).Encode(out)
}

// testQuerier is a querier over an in-memory bucket and fake ingesters,
// with its HTTP API served by an httptest server.
type testQuerier struct {
	*Querier
	bkt       objstore.Bucket
	ingesters []*fakeIngester
	limits    *tenant.Limits // defaults for every tenant; change before querying
	// tenantLimits replaces limits for the tenants it names; fill before
	// querying.
	tenantLimits map[string]*tenant.Limits
	reg          *prometheus.Registry
	srv          *httptest.Server
	now          time.Time
}

// newTestQuerier starts a querier whose clock reads now, asking n fake
// ingesters, with auth enabled (tenants from X-Scope-OrgID). cfg changes
// the default querier config before it is built.
func newTestQuerier(t *testing.T, now time.Time, n int, cfg func(*Config)) *testQuerier {
	t.Helper()
	tq := &testQuerier{bkt: objstore.NewInMemBucket(), reg: prometheus.NewRegistry(), now: now, tenantLimits: map[string]*tenant.Limits{}}
	lim := tenant.DefaultLimits()
	tq.limits = &lim
	var set StaticIngesters
	for i := range n {
		f := newFakeIngester(t)
		tq.ingesters = append(tq.ingesters, f)
		set = append(set, Ingester{ID: "ingester-" + strconv.Itoa(i), Addr: f.addr()})
	}
	var c Config
	c.RegisterFlags(newFlagSet())
	if cfg != nil {
		cfg(&c)
	}
	q, err := New(c, Deps{
		Bucket: tq.bkt, Ingesters: set, Limits: fixedLimits{tq.limits, tq.tenantLimits}, AuthEnabled: true,
		Registerer: tq.reg, Now: func() time.Time { return tq.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	tq.Querier = q
	mux := http.NewServeMux()
	q.Register(func(p string, h http.Handler) { mux.Handle(p, h) })
	tq.srv = httptest.NewServer(mux)
	t.Cleanup(tq.srv.Close)
	return tq
}

// fixedLimits gives a tenant its own limits if it has some, else l.
type fixedLimits struct {
	l   *tenant.Limits
	per map[string]*tenant.Limits
}

func (f fixedLimits) For(id string) *tenant.Limits {
	if l, ok := f.per[id]; ok {
		return l
	}
	return f.l
}

// get calls the API as tenant (none if empty) and returns the status and
// body.
func (tq *testQuerier) get(t *testing.T, tenantID, path string, params url.Values) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, tq.srv.URL+path+"?"+params.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if tenantID != "" {
		req.Header.Set(tenant.Header, tenantID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// queryResponse is /query's and /query_range's answer, decoded.
type queryResponse struct {
	Status string `json:"status"`
	Data   struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
		Stats      statsJSON       `json:"stats"`
	} `json:"data"`
	Warnings []string `json:"warnings"`
}

func newFlagSet() *flag.FlagSet { return flag.NewFlagSet("test", flag.ContinueOnError) }
