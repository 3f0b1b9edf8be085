package querier

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/internal/metricstest"
	"github.com/lokilab/lokilab/pkg/index"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// apiNow is the querier's clock in these tests: on an hour, so that the
// split intervals (epoch-aligned hours) are predictable.
var apiNow = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// apiLS builds labels from name, value pairs.
func apiLS(kv ...string) labels.Labels {
	var ls []labels.Label
	for i := 0; i < len(kv); i += 2 {
		ls = append(ls, labels.Label{Name: kv[i], Value: kv[i+1]})
	}
	return labels.New(ls...)
}

// apiLines returns n entries "<prefix>-000", … every step from first.
func apiLines(prefix string, first time.Time, step time.Duration, n int) []push.Entry {
	es := make([]push.Entry, n)
	for i := range es {
		es[i] = push.Entry{Timestamp: first.Add(time.Duration(i) * step).UnixNano(), Line: fmt.Sprintf("%s-%03d", prefix, i)}
	}
	return es
}

type apiStream struct {
	Stream map[string]string `json:"stream"`
	Values [][2]string       `json:"values"`
}

type apiMatrix struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
}

type apiVector struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

type apiIndexStats struct {
	Streams, Chunks, Entries, Bytes uint64
}

// apiGetJSON calls the API, wants 200 and decodes {"data": …} into data
// (if not nil); it returns the whole decoded answer and the raw body.
func apiGetJSON(t *testing.T, tq *testQuerier, tenantID, path string, params url.Values, data any) (queryResponse, []byte) {
	t.Helper()
	code, body := tq.get(t, tenantID, path, params)
	if code != http.StatusOK {
		t.Fatalf("GET %s?%s as %q: status %d, body %s", path, params.Encode(), tenantID, code, body)
	}
	var qr queryResponse
	if err := json.Unmarshal(body, &qr); err != nil && !strings.Contains(err.Error(), "cannot unmarshal") {
		t.Fatalf("GET %s: decoding %s: %v", path, body, err)
	}
	if data != nil && path == "/loki/api/v1/index/stats" {
		// Loki's bare shape, no {"data": …}.
		if err := json.Unmarshal(body, data); err != nil {
			t.Fatalf("GET %s: decoding %s: %v", path, body, err)
		}
	} else if data != nil && (path == "/loki/api/v1/query" || path == "/loki/api/v1/query_range") {
		if err := json.Unmarshal(qr.Data.Result, data); err != nil {
			t.Fatalf("GET %s: decoding result %s: %v", path, qr.Data.Result, err)
		}
	} else if data != nil {
		var raw struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatalf("GET %s: decoding %s: %v", path, body, err)
		}
		if err := json.Unmarshal(raw.Data, data); err != nil {
			t.Fatalf("GET %s: decoding data %s: %v", path, raw.Data, err)
		}
	}
	return qr, body
}

// apiLogQuery runs a log query_range and returns the streams, the stats
// and the warnings.
func apiLogQuery(t *testing.T, tq *testQuerier, tenantID string, params url.Values) ([]apiStream, queryResponse) {
	t.Helper()
	qr, _ := apiGetJSON(t, tq, tenantID, "/loki/api/v1/query_range", params, nil)
	if qr.Data.ResultType != "streams" {
		t.Fatalf("resultType %q, want streams", qr.Data.ResultType)
	}
	var streams []apiStream
	if err := json.Unmarshal(qr.Data.Result, &streams); err != nil {
		t.Fatal(err)
	}
	return streams, qr
}

// apiByStream maps each stream (as labels.String) to its lines in the
// order returned.
func apiByStream(streams []apiStream) map[string][]string {
	out := map[string][]string{}
	for _, s := range streams {
		k := labels.FromMap(s.Stream).String()
		for _, v := range s.Values {
			out[k] = append(out[k], v[1])
		}
	}
	return out
}

// apiAllLines lists every line of the streams, ordered by timestamp (then
// line), so that a result can be compared with the entries written.
func apiAllLines(t *testing.T, streams []apiStream) []string {
	t.Helper()
	type tl struct {
		ts   int64
		line string
	}
	var all []tl
	for _, s := range streams {
		for _, v := range s.Values {
			ts, err := strconv.ParseInt(v[0], 10, 64)
			if err != nil {
				t.Fatalf("bad timestamp %q", v[0])
			}
			all = append(all, tl{ts, v[1]})
		}
	}
	slices.SortFunc(all, func(a, b tl) int {
		if c := cmp.Compare(a.ts, b.ts); c != 0 {
			return c
		}
		return strings.Compare(a.line, b.line)
	})
	out := make([]string, len(all))
	for i, x := range all {
		out[i] = x.line
	}
	return out
}

func apiEntryLines(es []push.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Line
	}
	return out
}

func apiRange(query string, start, end time.Time, extra ...string) url.Values {
	v := url.Values{"query": {query}, "start": {strconv.FormatInt(start.UnixNano(), 10)}, "end": {strconv.FormatInt(end.UnixNano(), 10)}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v
}

// apiFillTenants writes two tenants whose streams share label names and
// values (even one whole label set) but not a line: each tenant's lines
// and unique label values carry its letter ("lineA", "onlyA").
func apiFillTenants(t *testing.T, tq *testQuerier) {
	t.Helper()
	old := apiNow.Add(-3 * time.Hour)
	recent := apiNow.Add(-20 * time.Minute)
	flush(t, tq.bkt, "a", apiLS("app", "api", "env", "prod"), apiLines("lineA-store", old, time.Minute, 10), "a1")
	flush(t, tq.bkt, "a", apiLS("app", "web", "team", "onlyA"), apiLines("lineA-web", old, time.Minute, 5), "a2")
	tq.ingesters[0].add("a", apiLS("app", "api", "env", "prod"), apiLines("lineA-ing", recent, time.Minute, 5)...)
	flush(t, tq.bkt, "b", apiLS("app", "api", "env", "dev"), apiLines("lineB-store", old, time.Minute, 8), "b1")
	tq.ingesters[0].add("b", apiLS("app", "api", "env", "prod"), apiLines("lineB-ing", recent, time.Minute, 6)...)
	tq.ingesters[0].add("b", apiLS("app", "web", "region", "onlyB"), apiLines("lineB-web", recent, time.Minute, 3)...)
}

// apiTenantWant is what each tenant of apiFillTenants must see.
type apiTenantWant struct {
	streams     map[string]int // labels → lines
	labelNames  []string
	envValues   []string
	entries     int
	foreignMark []string // strings of the other tenant that must never appear
}

var apiTenantWants = map[string]apiTenantWant{
	"a": {
		streams: map[string]int{
			apiLS("app", "api", "env", "prod").String():   15,
			apiLS("app", "web", "team", "onlyA").String(): 5,
		},
		labelNames: []string{"app", "env", "team"}, envValues: []string{"prod"}, entries: 20,
		foreignMark: []string{"lineB", "onlyB", `"dev"`, "region"},
	},
	"b": {
		streams: map[string]int{
			apiLS("app", "api", "env", "dev").String():      8,
			apiLS("app", "api", "env", "prod").String():     6,
			apiLS("app", "web", "region", "onlyB").String(): 3,
		},
		labelNames: []string{"app", "env", "region"}, envValues: []string{"dev", "prod"}, entries: 17,
		foreignMark: []string{"lineA", "onlyA", "team"},
	},
}

// TestAPITenantIsolation: two tenants with overlapping labels, data in the
// store and in an ingester: through every endpoint each sees exactly its
// own streams, lines, labels, values and counts.
func TestAPITenantIsolation(t *testing.T) {
	tq := newTestQuerier(t, apiNow, 1, nil)
	apiFillTenants(t, tq)
	sel := `{app=~"api|web"}`
	for _, id := range []string{"a", "b"} {
		want := apiTenantWants[id]
		t.Run(id, func(t *testing.T) {
			noForeign := func(path string, body []byte) {
				t.Helper()
				for _, m := range want.foreignMark {
					if bytes.Contains(body, []byte(m)) {
						t.Errorf("%s as %s: answer holds the other tenant's %s: %s", path, id, m, body)
					}
				}
			}
			// Log query.
			streams, qr := apiLogQuery(t, tq, id, url.Values{"query": {sel}, "since": {"6h"}, "limit": {"1000"}})
			raw, _ := json.Marshal(qr)
			noForeign("query_range (log)", raw)
			got := map[string]int{}
			for k, ls := range apiByStream(streams) {
				got[k] = len(ls)
				prefix := "line" + strings.ToUpper(id)
				for _, l := range ls {
					if !strings.HasPrefix(l, prefix) {
						t.Errorf("tenant %s got line %q", id, l)
					}
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want.streams) {
				t.Errorf("log query streams %v, want %v", got, want.streams)
			}

			// Metric range query: one series per stream, the last point
			// counts every line.
			var mat []apiMatrix
			_, body := apiGetJSON(t, tq, id, "/loki/api/v1/query_range", apiRange(`count_over_time(`+sel+`[6h])`, apiNow.Add(-2*time.Minute), apiNow, "step", "60"), &mat)
			noForeign("query_range (metric)", body)
			got = map[string]int{}
			for _, s := range mat {
				last := s.Values[len(s.Values)-1]
				n, _ := strconv.Atoi(last[1].(string))
				got[labels.FromMap(s.Metric).String()] = n
			}
			if fmt.Sprint(got) != fmt.Sprint(want.streams) {
				t.Errorf("metric query %v, want %v", got, want.streams)
			}

			// Instant query.
			var vec []apiVector
			_, body = apiGetJSON(t, tq, id, "/loki/api/v1/query", url.Values{"query": {`sum(count_over_time(` + sel + `[6h]))`}, "time": {strconv.FormatInt(apiNow.Unix(), 10)}}, &vec)
			noForeign("query", body)
			if len(vec) != 1 || vec[0].Value[1] != strconv.Itoa(want.entries) {
				t.Errorf("instant sum %v, want %d", vec, want.entries)
			}

			// Label names and values.
			var names []string
			_, body = apiGetJSON(t, tq, id, "/loki/api/v1/labels", nil, &names)
			noForeign("labels", body)
			if !slices.Equal(names, want.labelNames) {
				t.Errorf("labels %v, want %v", names, want.labelNames)
			}
			var values []string
			_, body = apiGetJSON(t, tq, id, "/loki/api/v1/label/env/values", nil, &values)
			noForeign("label values", body)
			if !slices.Equal(values, want.envValues) {
				t.Errorf("env values %v, want %v", values, want.envValues)
			}
			for _, other := range []string{"team", "region"} {
				values = nil
				_, body = apiGetJSON(t, tq, id, "/loki/api/v1/label/"+other+"/values", nil, &values)
				noForeign("label values", body)
				if slices.ContainsFunc(values, func(v string) bool { return strings.HasSuffix(v, strings.ToUpper(otherTenant(id))) }) {
					t.Errorf("%s values %v leak the other tenant", other, values)
				}
			}

			// Series.
			var series []map[string]string
			_, body = apiGetJSON(t, tq, id, "/loki/api/v1/series", url.Values{"match[]": {sel}}, &series)
			noForeign("series", body)
			var gotSeries, wantSeries []string
			for _, s := range series {
				gotSeries = append(gotSeries, labels.FromMap(s).String())
			}
			for k := range want.streams {
				wantSeries = append(wantSeries, k)
			}
			slices.Sort(gotSeries)
			slices.Sort(wantSeries)
			if !slices.Equal(gotSeries, wantSeries) {
				t.Errorf("series %v, want %v", gotSeries, wantSeries)
			}

			// Index stats.
			var st apiIndexStats
			_, body = apiGetJSON(t, tq, id, "/loki/api/v1/index/stats", url.Values{"query": {sel}}, &st)
			noForeign("index/stats", body)
			if st.Streams != uint64(len(want.streams)) || st.Entries != uint64(want.entries) {
				t.Errorf("index stats %+v, want %d streams, %d entries", st, len(want.streams), want.entries)
			}
		})
	}
}

func otherTenant(id string) string {
	if id == "a" {
		return "b"
	}
	return "a"
}

// TestAPITenantHeader: no X-Scope-OrgID is 401 "no org id" on every
// endpoint; several tenants are refused unless multi-tenant queries are
// enabled; an ID with a path character is refused either way.
func TestAPITenantHeader(t *testing.T) {
	endpoints := []struct {
		path   string
		params url.Values
	}{
		{"/loki/api/v1/query_range", url.Values{"query": {`{app="api"}`}}},
		{"/loki/api/v1/query_range", url.Values{"query": {`count_over_time({app="api"}[5m])`}}},
		{"/loki/api/v1/query", url.Values{"query": {`count_over_time({app="api"}[5m])`}}},
		{"/loki/api/v1/labels", nil},
		{"/loki/api/v1/label/app/values", nil},
		{"/loki/api/v1/series", url.Values{"match[]": {`{app="api"}`}}},
		{"/loki/api/v1/index/stats", url.Values{"query": {`{app="api"}`}}},
	}
	single := newTestQuerier(t, apiNow, 1, nil)
	multi := newTestQuerier(t, apiNow, 1, func(c *Config) { c.MultiTenantQueriesEnabled = true })
	cases := []struct {
		name   string
		tq     *testQuerier
		tenant string
		code   int
		want   string
	}{
		{"no org id", single, "", http.StatusUnauthorized, "no org id"},
		{"no org id, multi enabled", multi, "", http.StatusUnauthorized, "no org id"},
		{"two tenants, multi disabled", single, "a|b", http.StatusBadRequest, "multi-tenant"},
		{"path in a tenant", single, "../b", http.StatusBadRequest, "unsupported character"},
		{"path in one of two tenants", multi, "a|../b", http.StatusBadRequest, "unsupported character"},
		{"slash in one of two tenants", multi, "a|b/c", http.StatusBadRequest, "unsupported character"},
		{"empty tenant in a list", multi, "a|", http.StatusBadRequest, "empty tenant ID"},
		{"only separators", multi, "||", http.StatusBadRequest, "empty tenant ID"},
	}
	for _, tc := range cases {
		for _, ep := range endpoints {
			code, body := tc.tq.get(t, tc.tenant, ep.path, ep.params)
			if code != tc.code || !strings.Contains(string(body), tc.want) {
				t.Errorf("%s: %s?%s: %d %q, want %d %q", tc.name, ep.path, ep.params.Encode(), code, body, tc.code, tc.want)
			}
		}
	}
}

// TestAPIMultiTenantIsolation: with multi-tenant queries enabled, "a|b"
// answers both tenants' data, each stream and series naming its tenant in
// __tenant_id__, and nothing is attributed to the wrong tenant.
func TestAPIMultiTenantIsolation(t *testing.T) {
	tq := newTestQuerier(t, apiNow, 1, func(c *Config) { c.MultiTenantQueriesEnabled = true })
	apiFillTenants(t, tq)
	sel := `{app=~"api|web"}`
	want := map[string]int{}
	total := 0
	for id, w := range apiTenantWants {
		for k, n := range w.streams {
			ls, err := labels.Parse(k)
			if err != nil {
				t.Fatal(err)
			}
			want[labels.New(append(ls, labels.Label{Name: TenantLabel, Value: id})...).String()] = n
		}
		total += w.entries
	}
	for _, hdr := range []string{"a|b", "b|a"} {
		streams, _ := apiLogQuery(t, tq, hdr, url.Values{"query": {sel}, "since": {"6h"}, "limit": {"1000"}})
		got := map[string]int{}
		for _, s := range streams {
			id := s.Stream[TenantLabel]
			if id != "a" && id != "b" {
				t.Fatalf("stream %v has no %s", s.Stream, TenantLabel)
			}
			for _, v := range s.Values {
				if !strings.HasPrefix(v[1], "line"+strings.ToUpper(id)) {
					t.Errorf("line %q attributed to tenant %s", v[1], id)
				}
			}
			got[labels.FromMap(s.Stream).String()] = len(s.Values)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: streams %v, want %v", hdr, got, want)
		}
	}

	var vec []apiVector
	apiGetJSON(t, tq, "a|b", "/loki/api/v1/query", url.Values{"query": {`sum by (` + TenantLabel + `) (count_over_time(` + sel + `[6h]))`}}, &vec)
	gotSums := map[string]string{}
	for _, v := range vec {
		gotSums[v.Metric[TenantLabel]] = v.Value[1].(string)
	}
	if gotSums["a"] != "20" || gotSums["b"] != "17" || len(gotSums) != 2 {
		t.Errorf("sum by tenant %v, want a=20 b=17", gotSums)
	}

	var series []map[string]string
	apiGetJSON(t, tq, "a|b", "/loki/api/v1/series", url.Values{"match[]": {sel}}, &series)
	if len(series) != len(want) {
		t.Errorf("series %v, want %d", series, len(want))
	}
	for _, s := range series {
		if _, ok := want[labels.FromMap(s).String()]; !ok {
			t.Errorf("series %v not expected", s)
		}
	}
	var names []string
	apiGetJSON(t, tq, "a|b", "/loki/api/v1/labels", nil, &names)
	if !slices.Contains(names, TenantLabel) || !slices.Contains(names, "team") || !slices.Contains(names, "region") {
		t.Errorf("labels %v", names)
	}
	var st apiIndexStats
	apiGetJSON(t, tq, "a|b", "/loki/api/v1/index/stats", url.Values{"query": {sel}}, &st)
	if st.Streams != uint64(len(want)) || st.Entries != uint64(total) {
		t.Errorf("index stats %+v, want %d streams, %d entries", st, len(want), total)
	}
}

// TestAPIMultiTenantLimits: a query across tenants is held to the most
// restrictive of their limits, whichever tenant it names first; each
// tenant alone keeps its own.
func TestAPIMultiTenantLimits(t *testing.T) {
	const rng = "/loki/api/v1/query_range"
	cases := []struct {
		name   string
		path   string
		params url.Values
		strict func(*tenant.Limits)
		want   string
	}{
		{"entries", rng, url.Values{"query": {`{app="api"}`}, "limit": {"20"}}, func(l *tenant.Limits) { l.MaxEntriesLimitPerQuery = 10 }, "max entries limit per query exceeded, limit > max_entries_limit_per_query (20 > 10)"},
		{"query length", rng, url.Values{"query": {`{app="api"}`}, "since": {"3h"}}, func(l *tenant.Limits) { l.MaxQueryLength = model.Duration(2 * time.Hour) }, "the query time range exceeds the limit"},
		{"series", rng, url.Values{"query": {`count_over_time({app=~"api|web"}[1h])`}}, func(l *tenant.Limits) { l.MaxQuerySeries = 1 }, "maximum number of series (1) reached for a single query"},
		{"series at series", "/loki/api/v1/series", url.Values{"match[]": {`{app=~"api|web"}`}}, func(l *tenant.Limits) { l.MaxQuerySeries = 1 }, "maximum number of series (1) reached for a single query"},
		{"querying disabled", rng, url.Values{"query": {`{app="api"}`}}, func(l *tenant.Limits) { l.MaxQueryParallelism = 0 }, "querying is disabled"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tq := newTestQuerier(t, apiNow, 1, func(c *Config) { c.MultiTenantQueriesEnabled = true })
			apiFillTenants(t, tq)
			strict := tenant.DefaultLimits()
			tc.strict(&strict)
			tq.tenantLimits["b"] = &strict
			for _, hdr := range []string{"a|b", "b|a"} {
				if code, body := tq.get(t, hdr, tc.path, tc.params); code != http.StatusBadRequest || !strings.Contains(string(body), tc.want) {
					t.Errorf("as %s: %d %.200q, want 400 containing %q", hdr, code, body, tc.want)
				}
			}
			if code, body := tq.get(t, "a", tc.path, tc.params); code != http.StatusOK {
				t.Errorf("as a alone: %d %.200q, want 200", code, body)
			}
		})
	}
}

// TestAPIBadQueries: what a client gets wrong is a 4xx with Loki's words.
func TestAPIBadQueries(t *testing.T) {
	const (
		rng    = "/loki/api/v1/query_range"
		inst   = "/loki/api/v1/query"
		series = "/loki/api/v1/series"
	)
	now := apiNow
	ns := func(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }
	cases := []struct {
		name   string
		path   string
		params url.Values
		limits func(*tenant.Limits)
		code   int
		want   string
	}{
		{"syntax error", rng, url.Values{"query": {`{app="api"`}}, nil, 400, "parse error at line 1, col"},
		{"syntax error instant", inst, url.Values{"query": {`count_over_time({app="api"}[5m]`}}, nil, 400, "parse error at line 1, col"},
		{"unknown function", rng, url.Values{"query": {`nope({app="api"}[5m])`}}, nil, 400, "parse error"},
		{"empty query", rng, url.Values{"query": {""}}, nil, 400, "parse error"},
		{"blank query", rng, url.Values{"query": {"  "}}, nil, 400, "parse error"},
		{"empty-compatible matcher", rng, url.Values{"query": {`{app=~".*"}`}}, nil, 400, errNeedMatcher},
		{"empty-compatible matcher in a metric query", inst, url.Values{"query": {`sum(rate({app=~".*", env!="x"}[5m]))`}}, nil, 400, errNeedMatcher},
		{"empty-compatible matcher at series", series, url.Values{"match[]": {`{app=~".*"}`}}, nil, 400, "queries require at least one regexp or equality matcher that does not have an empty-compatible value"},
		{"empty-compatible matchers at series", series, url.Values{"match[]": {`{app=~".*", env!="x"}`}}, nil, 400, "queries require at least one regexp or equality matcher"},
		{"no match at series", series, nil, nil, 400, "match[]"},
		{"bad match at series", series, url.Values{"match[]": {`{app=}`}}, nil, 400, "match[]"},
		{"log query at instant", inst, url.Values{"query": {`{app="api"}`}}, nil, 400, "log queries are not supported as an instant query type"},
		{"range too long", rng, url.Values{"query": {`{app="api"}`}, "since": {"2h"}}, func(l *tenant.Limits) { l.MaxQueryLength = model.Duration(time.Hour) }, 400, "the query time range exceeds the limit (query length:"},
		{"metric range too long", rng, url.Values{"query": {`count_over_time({app="api"}[5m])`}, "start": {ns(now.Add(-722 * time.Hour))}, "end": {ns(now)}}, nil, 400, "the query time range exceeds the limit (query length: 722h0m0s, limit: 30d1h)"},
		{"series range too long", series, url.Values{"match[]": {`{app="api"}`}, "start": {ns(now.Add(-2 * time.Hour))}}, func(l *tenant.Limits) { l.MaxQueryLength = model.Duration(time.Hour) }, 400, "the query time range exceeds the limit"},
		{"end before start", rng, url.Values{"query": {`{app="api"}`}, "start": {ns(now)}, "end": {ns(now.Add(-time.Minute))}}, nil, 400, "invalid query, through < from"},
		{"end before start at series", series, url.Values{"match[]": {`{app="api"}`}, "start": {ns(now)}, "end": {ns(now.Add(-time.Minute))}}, nil, 400, "invalid query, through < from"},
		{"limit above max", rng, url.Values{"query": {`{app="api"}`}, "limit": {"5001"}}, nil, 400, "max entries limit per query exceeded, limit > max_entries_limit_per_query (5001 > 5000)"},
		{"limit above lowered max", rng, url.Values{"query": {`{app="api"}`}, "limit": {"11"}}, func(l *tenant.Limits) { l.MaxEntriesLimitPerQuery = 10 }, 400, "max entries limit per query exceeded"},
		{"limit not a number", rng, url.Values{"query": {`{app="api"}`}, "limit": {"ten"}}, nil, 400, "limit"},
		{"negative limit", rng, url.Values{"query": {`{app="api"}`}, "limit": {"-1"}}, nil, 400, "limit"},
		{"too many series", rng, url.Values{"query": {`count_over_time({app="api"}[1h])`}}, func(l *tenant.Limits) { l.MaxQuerySeries = 1 }, 400, "maximum number of series (1) reached for a single query"},
		{"too many series instant", inst, url.Values{"query": {`count_over_time({app="api"}[1h])`}}, func(l *tenant.Limits) { l.MaxQuerySeries = 1 }, 400, "maximum number of series (1) reached for a single query"},
		{"too many series at series", series, url.Values{"match[]": {`{app="api"}`}}, func(l *tenant.Limits) { l.MaxQuerySeries = 1 }, 400, "maximum number of series (1) reached for a single query"},
		{"zero step", rng, url.Values{"query": {`count_over_time({app="api"}[5m])`}, "step": {"0"}}, nil, 400, "zero or negative query resolution step widths are not accepted"},
		{"negative step", rng, url.Values{"query": {`count_over_time({app="api"}[5m])`}, "step": {"-5"}}, nil, 400, "zero or negative query resolution step widths are not accepted"},
		{"bad step", rng, url.Values{"query": {`count_over_time({app="api"}[5m])`}, "step": {"often"}}, nil, 400, "step"},
		{"too many points", rng, url.Values{"query": {`count_over_time({app="api"}[5m])`}, "since": {"24h"}, "step": {"1s"}}, nil, 400, "exceeded maximum resolution of 11000 points"},
		{"bad direction", rng, url.Values{"query": {`{app="api"}`}, "direction": {"sideways"}}, nil, 400, "direction"},
		{"querying disabled", rng, url.Values{"query": {`{app="api"}`}}, func(l *tenant.Limits) { l.MaxQueryParallelism = 0 }, 400, "querying is disabled"},
		{"querying disabled at labels", "/loki/api/v1/labels", nil, func(l *tenant.Limits) { l.MaxQueryParallelism = 0 }, 400, "querying is disabled"},
		{"bad label name", "/loki/api/v1/label/1-bad/values", nil, nil, 400, "invalid label name"},
		{"index stats without query", "/loki/api/v1/index/stats", nil, nil, 400, "query"},
		{"bad since", rng, url.Values{"query": {`{app="api"}`}, "since": {"a while"}}, nil, 400, "since"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tq := newTestQuerier(t, apiNow, 1, nil)
			tq.ingesters[0].add("t", apiLS("app", "api", "pod", "p0"), apiLines("x", now.Add(-10*time.Minute), time.Second, 3)...)
			tq.ingesters[0].add("t", apiLS("app", "api", "pod", "p1"), apiLines("y", now.Add(-10*time.Minute), time.Second, 3)...)
			if tc.limits != nil {
				tc.limits(tq.limits)
			}
			code, body := tq.get(t, "t", tc.path, tc.params)
			if code != tc.code || !strings.Contains(string(body), tc.want) {
				t.Errorf("%s?%s: %d %q, want %d containing %q", tc.path, tc.params.Encode(), code, body, tc.code, tc.want)
			}
		})
	}
	// The series limit counts series, not lines: two streams are fine
	// with a limit of two.
	tq := newTestQuerier(t, apiNow, 1, nil)
	tq.ingesters[0].add("t", apiLS("app", "api", "pod", "p0"), apiLines("x", now.Add(-10*time.Minute), time.Second, 3)...)
	tq.ingesters[0].add("t", apiLS("app", "api", "pod", "p1"), apiLines("y", now.Add(-10*time.Minute), time.Second, 3)...)
	tq.limits.MaxQuerySeries = 2
	var mat []apiMatrix
	apiGetJSON(t, tq, "t", rng, url.Values{"query": {`count_over_time({app="api"}[1h])`}}, &mat)
	if len(mat) != 2 {
		t.Errorf("%d series, want 2", len(mat))
	}
}

// TestAPIQueryTimeout: a query that cannot finish within query_timeout is
// Loki's 504 "request timed out", for log and metric queries, whether the
// time runs out before or while an ingester answers.
func TestAPIQueryTimeout(t *testing.T) {
	queries := []url.Values{
		{"query": {`{app="api"}`}},
		{"query": {`{app="api"} |= "x"`}},
		{"query": {`count_over_time({app="api"}[5m])`}},
		{"query": {`sum(rate({app="api"}[5m]))`}, "since": {"3h"}},
	}
	t.Run("expired", func(t *testing.T) {
		tq := newTestQuerier(t, apiNow, 1, nil)
		tq.ingesters[0].add("t", apiLS("app", "api"), apiLines("x", apiNow.Add(-10*time.Minute), time.Second, 100)...)
		flush(t, tq.bkt, "t", apiLS("app", "api"), apiLines("x", apiNow.Add(-50*time.Minute), time.Second, 100), "f")
		tq.limits.QueryTimeout = model.Duration(time.Nanosecond)
		for _, q := range queries {
			code, body := tq.get(t, "t", "/loki/api/v1/query_range", q)
			if code != http.StatusGatewayTimeout || !strings.Contains(string(body), "request timed out") {
				t.Errorf("%s: %d %q, want 504 request timed out", q.Get("query"), code, body)
			}
		}
		code, body := tq.get(t, "t", "/loki/api/v1/query", url.Values{"query": {`count_over_time({app="api"}[5m])`}})
		if code != http.StatusGatewayTimeout || !strings.Contains(string(body), "request timed out") {
			t.Errorf("instant: %d %q, want 504 request timed out", code, body)
		}
	})
	t.Run("store only", func(t *testing.T) {
		// No ingester to notice the deadline: the store reads must.
		tq := newTestQuerier(t, apiNow, 0, nil)
		flush(t, tq.bkt, "t", apiLS("app", "api"), apiLines("x", apiNow.Add(-5*time.Hour), time.Second, 100), "f")
		tq.limits.QueryTimeout = model.Duration(time.Nanosecond)
		for _, q := range queries {
			q = maps.Clone(q)
			q.Set("since", "6h")
			code, body := tq.get(t, "t", "/loki/api/v1/query_range", q)
			if code != http.StatusGatewayTimeout || !strings.Contains(string(body), "request timed out") {
				t.Errorf("%s: %d %q, want 504 request timed out", q.Get("query"), code, body)
			}
		}
		for _, path := range []string{"/loki/api/v1/series", "/loki/api/v1/labels", "/loki/api/v1/index/stats"} {
			q := url.Values{"match[]": {`{app="api"}`}, "query": {`{app="api"}`}, "since": {"6h"}}
			if code, body := tq.get(t, "t", path, q); code != http.StatusGatewayTimeout {
				t.Errorf("%s: %d %q, want 504", path, code, body)
			}
		}
	})
	t.Run("slow ingester", func(t *testing.T) {
		tq := newTestQuerier(t, apiNow, 1, nil)
		// The ingester hangs until the querier gives up on it.
		tq.ingesters[0].srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		})
		tq.limits.QueryTimeout = model.Duration(100 * time.Millisecond)
		for _, q := range queries {
			start := time.Now()
			code, body := tq.get(t, "t", "/loki/api/v1/query_range", q)
			if code != http.StatusGatewayTimeout || !strings.Contains(string(body), "request timed out") {
				t.Errorf("%s: %d %q, want 504 request timed out", q.Get("query"), code, body)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("%s: answered after %v, query_timeout is 100ms", q.Get("query"), d)
			}
		}
	})
}

// TestAPIIngesterDownPartial: an ingester that cannot be reached makes the
// answer partial: 200 with what the others and the store hold, a warning
// naming it, and the partial metrics counting it. A healthy answer has no
// warnings at all.
func TestAPIIngesterDownPartial(t *testing.T) {
	setup := func(t *testing.T) *testQuerier {
		tq := newTestQuerier(t, apiNow, 2, nil)
		flush(t, tq.bkt, "t", apiLS("app", "api", "pod", "p0"), apiLines("store", apiNow.Add(-50*time.Minute), time.Minute, 10), "f")
		tq.ingesters[0].add("t", apiLS("app", "api", "pod", "p0"), apiLines("ing0", apiNow.Add(-30*time.Minute), time.Minute, 5)...)
		tq.ingesters[1].add("t", apiLS("app", "api", "pod", "p1"), apiLines("ing1", apiNow.Add(-30*time.Minute), time.Minute, 5)...)
		return tq
	}
	logQ := url.Values{"query": {`{app="api"}`}, "limit": {"1000"}}
	metricQ := url.Values{"query": {`sum by (pod) (count_over_time({app="api"}[1h]))`}, "start": {strconv.FormatInt(apiNow.Unix(), 10)}, "end": {strconv.FormatInt(apiNow.Unix(), 10)}, "step": {"60"}}

	t.Run("healthy", func(t *testing.T) {
		tq := setup(t)
		streams, qr := apiLogQuery(t, tq, "t", logQ)
		lines := apiAllLines(t, streams)
		if len(lines) != 20 || len(qr.Warnings) != 0 {
			t.Errorf("lines %v warnings %v, want 20 lines, no warning", lines, qr.Warnings)
		}
		_, body := apiGetJSON(t, tq, "t", "/loki/api/v1/query_range", logQ, nil)
		if bytes.Contains(body, []byte("warnings")) {
			t.Errorf("healthy answer has a warnings field: %s", body)
		}
		if qr.Data.Stats.Ingester.TotalReached != 2 {
			t.Errorf("ingesters reached %d, want 2", qr.Data.Stats.Ingester.TotalReached)
		}
		if v := metricstest.Value(t, tq.reg, "lokilab_querier_partial_results_total"); v != 0 {
			t.Errorf("partial results %v, want 0", v)
		}
		if v := metricstest.Sum(t, tq.reg, "lokilab_querier_queries_total", "outcome", "success"); v != 2 {
			t.Errorf("successful queries %v, want 2", v)
		}
	})

	for _, how := range []string{"closed", "500"} {
		t.Run(how, func(t *testing.T) {
			tq := setup(t)
			switch how {
			case "closed":
				tq.ingesters[1].srv.Close()
			case "500":
				tq.ingesters[1].srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Error(w, "out of memory, sorry", http.StatusInternalServerError)
				})
			}
			partial0 := metricstest.Value(t, tq.reg, "lokilab_querier_partial_results_total")

			streams, qr := apiLogQuery(t, tq, "t", logQ)
			got := apiByStream(streams)
			p0 := apiLS("app", "api", "pod", "p0").String()
			wantP0 := append(apiEntryLines(apiLines("ing0", apiNow.Add(-30*time.Minute), time.Minute, 5)), apiEntryLines(apiLines("store", apiNow.Add(-50*time.Minute), time.Minute, 10))...)
			slices.Sort(wantP0)
			gotP0 := slices.Clone(got[p0])
			slices.Sort(gotP0)
			if len(got) != 1 || !slices.Equal(gotP0, wantP0) {
				t.Errorf("partial answer %v, want only %s with %v", got, p0, wantP0)
			}
			if len(qr.Warnings) != 1 || !strings.Contains(qr.Warnings[0], "ingester-1") || !strings.Contains(qr.Warnings[0], tq.ingesters[1].addr()) {
				t.Errorf("warnings %q, want one naming ingester-1", qr.Warnings)
			}
			if how == "500" && (len(qr.Warnings) == 0 || !strings.Contains(qr.Warnings[0], "500")) {
				t.Errorf("warnings %q, want the ingester's 500", qr.Warnings)
			}
			if qr.Data.Stats.Ingester.TotalReached != 1 {
				t.Errorf("ingesters reached %d, want 1", qr.Data.Stats.Ingester.TotalReached)
			}
			partial1 := metricstest.Value(t, tq.reg, "lokilab_querier_partial_results_total")
			if partial1 != partial0+1 {
				t.Errorf("lokilab_querier_partial_results_total %v → %v, want one more partial answer", partial0, partial1)
			}
			if v := metricstest.Value(t, tq.reg, "lokilab_querier_queries_total", "type", "log", "outcome", "partial"); v != 1 {
				t.Errorf("partial log queries %v, want 1", v)
			}
			if v := metricstest.Sum(t, tq.reg, "lokilab_querier_queries_total", "outcome", "success"); v != 0 {
				t.Errorf("a partial answer counted as a success (%v)", v)
			}

			// A metric query: the same warning, the same outcome.
			var mat []apiMatrix
			mqr, _ := apiGetJSON(t, tq, "t", "/loki/api/v1/query_range", metricQ, &mat)
			if len(mat) != 1 || mat[0].Metric["pod"] != "p0" || mat[0].Values[0][1] != "15" {
				t.Errorf("partial metric answer %v, want pod p0 = 15", mat)
			}
			if len(mqr.Warnings) != 1 || !strings.Contains(mqr.Warnings[0], "ingester-1") {
				t.Errorf("metric warnings %q", mqr.Warnings)
			}
			if v := metricstest.Value(t, tq.reg, "lokilab_querier_queries_total", "type", "metric", "outcome", "partial"); v != 1 {
				t.Errorf("partial metric queries %v, want 1", v)
			}
			partial2 := metricstest.Value(t, tq.reg, "lokilab_querier_partial_results_total")
			if partial2 != partial1+1 {
				t.Errorf("lokilab_querier_partial_results_total %v → %v after a metric query, want one more", partial1, partial2)
			}

			// The metadata APIs warn too.
			sqr, body := apiGetJSON(t, tq, "t", "/loki/api/v1/series", url.Values{"match[]": {`{app="api"}`}}, nil)
			if len(sqr.Warnings) != 1 || !strings.Contains(sqr.Warnings[0], "ingester-1") {
				t.Errorf("series warnings %q", sqr.Warnings)
			}
			if !bytes.Contains(body, []byte(`"p0"`)) || bytes.Contains(body, []byte(`"p1"`)) {
				t.Errorf("series %s, want p0 only", body)
			}
			iqr, _ := apiGetJSON(t, tq, "t", "/loki/api/v1/index/stats", url.Values{"query": {`{app="api"}`}}, nil)
			if len(iqr.Warnings) != 1 {
				t.Errorf("index stats warnings %q", iqr.Warnings)
			}
		})
	}
}

// TestAPIIngesterAndStoreReplayDuplicates: a stream whose older part was
// flushed twice with different chunk boundaries (a replay) and whose
// recent part is in an ingester, overlapping the last flushed minutes,
// comes back with every line once, in order, in both directions and with
// limits that cut inside the overlaps; the stats count the duplicates.
func TestAPIIngesterAndStoreReplayDuplicates(t *testing.T) {
	tq := newTestQuerier(t, apiNow, 1, nil)
	ls := apiLS("app", "api")
	// 10:50:00 … 11:23:10, across the 11:00 split.
	all := apiLines("l", apiNow.Add(-70*time.Minute), 10*time.Second, 200)
	flush(t, tq.bkt, "t", ls, all[:100], "f1")
	flush(t, tq.bkt, "t", ls, all[100:160], "f2")
	flush(t, tq.bkt, "t", ls, all[50:130], "f3-replay") // 80 lines again
	flush(t, tq.bkt, "t", ls, all[130:170], "f4-replay")
	tq.ingesters[0].add("t", ls, all[150:]...) // 150…169 also flushed
	lines := apiEntryLines(all)
	rev := slices.Clone(lines)
	slices.Reverse(rev)

	base := func(extra ...string) url.Values {
		return apiRange(`{app="api"}`, apiNow.Add(-2*time.Hour), apiNow, extra...)
	}
	cases := []struct {
		direction string
		limit     int
		want      []string
	}{
		{"forward", 1000, lines},
		{"backward", 1000, rev},
		{"backward", 40, rev[:40]},   // inside the ingester only
		{"backward", 45, rev[:45]},   // cut inside the overlap
		{"backward", 120, rev[:120]}, // into the replayed chunks
		{"forward", 60, lines[:60]},  // inside the replay overlap
		{"forward", 155, lines[:155]},
		{"forward", 165, lines[:165]},
		{"forward", 199, lines[:199]},
	}
	for _, tc := range cases {
		streams, qr := apiLogQuery(t, tq, "t", base("direction", tc.direction, "limit", strconv.Itoa(tc.limit)))
		if len(streams) != 1 {
			t.Fatalf("%s %d: %d streams, want 1", tc.direction, tc.limit, len(streams))
		}
		got := apiByStream(streams)[ls.String()]
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s limit %d: got %d lines %v…, want %d lines %v…", tc.direction, tc.limit, len(got), got[:min(5, len(got))], len(tc.want), tc.want[:min(5, len(tc.want))])
		}
		if tc.limit == 1000 {
			st := qr.Data.Stats
			dups := st.Querier.Store.Chunk.TotalDuplicates + st.Ingester.Store.Chunk.TotalDuplicates
			// 50…129 and 130…159 flushed twice (110), 150…169 flushed and in
			// the ingester (20; 150…159 count once more since they are
			// already deduplicated within the store).
			if dups != 130 {
				t.Errorf("%s: %d duplicates reported (store %d, ingester %d), want 130", tc.direction, dups, st.Querier.Store.Chunk.TotalDuplicates, st.Ingester.Store.Chunk.TotalDuplicates)
			}
			if st.Summary.TotalEntriesReturned != 200 {
				t.Errorf("entries returned %d, want 200", st.Summary.TotalEntriesReturned)
			}
		}
	}
	// A metric query counts each line once.
	var vec []apiVector
	apiGetJSON(t, tq, "t", "/loki/api/v1/query", url.Values{"query": {`sum(count_over_time({app="api"}[2h]))`}}, &vec)
	if len(vec) != 1 || vec[0].Value[1] != "200" {
		t.Errorf("count %v, want 200", vec)
	}
	if v := metricstest.Value(t, tq.reg, "lokilab_querier_duplicates_removed_total"); v <= 0 {
		t.Errorf("lokilab_querier_duplicates_removed_total = %v, want > 0", v)
	}
}

// TestAPIQueryIngestersWithin: a range older than query_ingesters_within
// reads only the store, whatever the ingesters hold; a recent one asks
// them.
func TestAPIQueryIngestersWithin(t *testing.T) {
	tq := newTestQuerier(t, apiNow, 1, func(c *Config) { c.QueryIngestersWithin = time.Hour })
	ls := apiLS("app", "api")
	tq.ingesters[0].add("t", ls, apiLines("old-ing", apiNow.Add(-150*time.Minute), time.Minute, 10)...)
	tq.ingesters[0].add("t", ls, apiLines("new-ing", apiNow.Add(-10*time.Minute), time.Minute, 5)...)
	flush(t, tq.bkt, "t", ls, apiLines("old-store", apiNow.Add(-170*time.Minute), time.Minute, 10), "f")

	streams, qr := apiLogQuery(t, tq, "t", apiRange(`{app="api"}`, apiNow.Add(-3*time.Hour), apiNow.Add(-2*time.Hour), "limit", "1000"))
	got := apiAllLines(t, streams)
	if want := apiEntryLines(apiLines("old-store", apiNow.Add(-170*time.Minute), time.Minute, 10)); !slices.Equal(got, want) {
		t.Errorf("old range: %v, want the store's lines only %v", got, want)
	}
	if qr.Data.Stats.Ingester.TotalReached != 0 || qr.Data.Stats.Ingester.TotalLinesSent != 0 {
		t.Errorf("old range asked the ingesters: %+v", qr.Data.Stats.Ingester)
	}
	// The same for a metric query and the series API.
	var vec []apiVector
	apiGetJSON(t, tq, "t", "/loki/api/v1/query", url.Values{"query": {`sum(count_over_time({app="api"}[1h]))`}, "time": {strconv.FormatInt(apiNow.Add(-2*time.Hour).Unix(), 10)}}, &vec)
	if len(vec) != 1 || vec[0].Value[1] != "10" {
		t.Errorf("old count %v, want 10 (the store's)", vec)
	}
	var st apiIndexStats
	apiGetJSON(t, tq, "t", "/loki/api/v1/index/stats", url.Values{"query": {`{app="api"}`}, "start": {strconv.FormatInt(apiNow.Add(-3*time.Hour).UnixNano(), 10)}, "end": {strconv.FormatInt(apiNow.Add(-2*time.Hour).UnixNano(), 10)}}, &st)
	if st.Entries != 10 || st.Chunks != 1 {
		t.Errorf("old index stats %+v, want the store's chunk only", st)
	}

	streams, qr = apiLogQuery(t, tq, "t", url.Values{"query": {`{app="api"}`}, "since": {"30m"}})
	got = apiAllLines(t, streams)
	if want := apiEntryLines(apiLines("new-ing", apiNow.Add(-10*time.Minute), time.Minute, 5)); !slices.Equal(got, want) {
		t.Errorf("recent range: %v, want %v", got, want)
	}
	if qr.Data.Stats.Ingester.TotalReached != 1 {
		t.Errorf("recent range: ingesters reached %d, want 1", qr.Data.Stats.Ingester.TotalReached)
	}
}

// TestAPISplitByInterval: a log query walks the hours in its direction and
// stops once it has limit lines.
func TestAPISplitByInterval(t *testing.T) {
	tq := newTestQuerier(t, apiNow, 1, nil)
	ls := apiLS("app", "api")
	var all []push.Entry
	for h := 3; h >= 1; h-- {
		es := apiLines(fmt.Sprintf("h%d", h), apiNow.Add(-time.Duration(h)*time.Hour+time.Minute), 3*time.Minute, 15)
		flush(t, tq.bkt, "t", ls, es, fmt.Sprintf("f%d", h))
		all = append(all, es...)
	}
	lines := apiEntryLines(all)
	q := func(direction string, limit int) ([]string, int, int) {
		streams, qr := apiLogQuery(t, tq, "t", url.Values{"query": {`{app="api"}`}, "since": {"3h"}, "direction": {direction}, "limit": {strconv.Itoa(limit)}})
		got := apiByStream(streams)[ls.String()]
		return got, qr.Data.Stats.Summary.Splits, qr.Data.Stats.Querier.Store.TotalChunksRef
	}
	rev := slices.Clone(lines)
	slices.Reverse(rev)
	cases := []struct {
		direction string
		limit     int
		want      []string
		splits    int
	}{
		{"backward", 10, rev[:10], 1},
		{"backward", 15, rev[:15], 1},
		{"backward", 16, rev[:16], 2},
		{"backward", 100, rev, 3},
		{"forward", 10, lines[:10], 1},
		{"forward", 20, lines[:20], 2},
		{"forward", 100, lines, 3},
	}
	for _, tc := range cases {
		got, splits, chunks := q(tc.direction, tc.limit)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s %d: %v, want %v", tc.direction, tc.limit, got, tc.want)
		}
		if splits != tc.splits || chunks != tc.splits {
			t.Errorf("%s %d: %d splits, %d chunks read, want %d", tc.direction, tc.limit, splits, chunks, tc.splits)
		}
	}
}

// TestAPIChunkCache: a repeated query reads its chunks from the cache.
func TestAPIChunkCache(t *testing.T) {
	tq := newTestQuerier(t, apiNow, 1, nil)
	ls := apiLS("app", "api")
	flush(t, tq.bkt, "t", ls, apiLines("a", apiNow.Add(-50*time.Minute), time.Minute, 20), "f1")
	flush(t, tq.bkt, "t", ls, apiLines("b", apiNow.Add(-29*time.Minute), time.Minute, 20), "f2")
	q := url.Values{"query": {`{app="api"}`}, "limit": {"1000"}}

	streams, first := apiLogQuery(t, tq, "t", q)
	if n := len(apiAllLines(t, streams)); n != 40 {
		t.Fatalf("%d lines, want 40", n)
	}
	c := first.Data.Stats.Cache.Chunk
	if c.EntriesFound != 0 || c.EntriesRequested != 2 || first.Data.Stats.Querier.Store.TotalChunksDownloaded != 2 {
		t.Errorf("first query: cache %+v, downloaded %d; want 2 requested, 0 found, 2 downloaded", c, first.Data.Stats.Querier.Store.TotalChunksDownloaded)
	}
	hits := metricstest.Value(t, tq.reg, "lokilab_querier_chunk_cache_hits_total")

	streams, second := apiLogQuery(t, tq, "t", q)
	if n := len(apiAllLines(t, streams)); n != 40 {
		t.Fatalf("cached: %d lines, want 40", n)
	}
	c = second.Data.Stats.Cache.Chunk
	if c.EntriesFound != 2 || second.Data.Stats.Querier.Store.TotalChunksDownloaded != 0 {
		t.Errorf("second query: cache %+v, downloaded %d; want 2 found, 0 downloaded", c, second.Data.Stats.Querier.Store.TotalChunksDownloaded)
	}
	if h := metricstest.Value(t, tq.reg, "lokilab_querier_chunk_cache_hits_total"); h != hits+2 {
		t.Errorf("cache hits %v → %v, want +2", hits, h)
	}
	if v := metricstest.Value(t, tq.reg, "lokilab_querier_chunk_cache_items"); v != 2 {
		t.Errorf("cache items %v, want 2", v)
	}
}

// TestAPICorruptChunk: a chunk object that no longer matches the index is
// a 500 naming the checksum, never a silently wrong answer; it is not
// cached either.
func TestAPICorruptChunk(t *testing.T) {
	tq := newTestQuerier(t, apiNow, 1, nil)
	ls := apiLS("app", "api")
	flush(t, tq.bkt, "t", ls, apiLines("a", apiNow.Add(-50*time.Minute), time.Minute, 20), "f1")
	var keys []string
	err := tq.bkt.Iter(context.Background(), "t/chunks/", func(k string) error { keys = append(keys, k); return nil }, objstore.WithRecursiveIter())
	if err != nil || len(keys) != 1 {
		t.Fatalf("chunk keys %v, %v", keys, err)
	}
	if err := tq.bkt.Upload(context.Background(), keys[0], strings.NewReader("garbage, not a chunk")); err != nil {
		t.Fatal(err)
	}
	for _, q := range []url.Values{
		{"query": {`{app="api"}`}},
		{"query": {`count_over_time({app="api"}[1h])`}},
	} {
		for range 2 {
			code, body := tq.get(t, "t", "/loki/api/v1/query_range", q)
			if code != http.StatusInternalServerError || !strings.Contains(string(body), "checksum") {
				t.Errorf("%s: %d %q, want 500 mentioning the checksum", q.Get("query"), code, body)
			}
		}
	}
	if v := metricstest.Value(t, tq.reg, "lokilab_querier_chunk_cache_items"); v != 0 {
		t.Errorf("a corrupt chunk was cached (%v items)", v)
	}
	if v := metricstest.Value(t, tq.reg, "lokilab_querier_queries_total", "type", "log", "outcome", "error"); v != 2 {
		t.Errorf("failed log queries %v, want 2", v)
	}
}

// TestChunkCacheLRU: the cache stays within its bytes, evicts the least
// recently used first and does not take items above an eighth of its
// size.
func TestChunkCacheLRU(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := NewChunkCache(800, reg) // items up to 100 bytes
	item := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 100) }
	key := func(i int) string { return "k" + strconv.Itoa(i) }
	cached := func() (bytes, items int) {
		return int(metricstest.Value(t, reg, "lokilab_querier_chunk_cache_bytes")), int(metricstest.Value(t, reg, "lokilab_querier_chunk_cache_items"))
	}
	for i := range 8 {
		c.Put(key(i), item(i))
	}
	if b, n := cached(); b != 800 || n != 8 {
		t.Fatalf("%d bytes, %d items; want 800, 8", b, n)
	}
	// k0 used: k1 is now the least recently used.
	if d, ok := c.Get(key(0)); !ok || !bytes.Equal(d, item(0)) {
		t.Fatalf("k0: %v %v", d, ok)
	}
	c.Put(key(8), item(8))
	if _, ok := c.Get(key(1)); ok {
		t.Error("k1, the least recently used, was not evicted")
	}
	for _, i := range []int{0, 2, 3, 4, 5, 6, 7, 8} {
		if _, ok := c.Get(key(i)); !ok {
			t.Errorf("%s evicted", key(i))
		}
	}
	// Putting a cached key again (two queries fetched it at once) counts
	// as a use: k0 (read first above) is no longer the least recently
	// used, k2 is.
	c.Put(key(0), item(0))
	c.Put(key(10), item(10))
	if _, ok := c.Get(key(0)); !ok {
		t.Error("k0, put again, was evicted")
	}
	if _, ok := c.Get(key(2)); ok {
		t.Error("k2, the least recently used, was not evicted")
	}
	if b, _ := cached(); b > 800 {
		t.Errorf("%d bytes cached, max 800", b)
	}
	// Smaller items: several evictions for one large one.
	for i := 100; i < 120; i++ {
		c.Put(key(i), []byte{1, 2, 3})
		if b, _ := cached(); b > 800 {
			t.Fatalf("%d bytes cached, max 800", b)
		}
	}
	c.Put(key(9), item(9))
	if b, _ := cached(); b > 800 {
		t.Errorf("%d bytes cached, max 800", b)
	}
	if _, ok := c.Get(key(9)); !ok {
		t.Error("k9 not cached")
	}
	// Too large: not cached, nothing evicted.
	_, before := cached()
	c.Put("big", make([]byte, 101))
	if _, ok := c.Get("big"); ok {
		t.Error("an item above an eighth of the cache was cached")
	}
	if _, n := cached(); n != before {
		t.Errorf("%d items after a refused put, want %d", n, before)
	}
	if v := metricstest.Value(t, reg, "lokilab_querier_chunk_cache_evictions_total"); v < 2 {
		t.Errorf("evictions %v", v)
	}
	if v := metricstest.Value(t, reg, "lokilab_querier_chunk_cache_misses_total"); v < 2 {
		t.Errorf("misses %v", v)
	}
}

// TestAPITimeParams: start and end as RFC3339, Unix seconds, Unix
// nanoseconds or float seconds; since; anything else is a 400.
func TestAPITimeParams(t *testing.T) {
	tq := newTestQuerier(t, apiNow, 1, nil)
	// One line at 11:30:00.5 in the ingester, one at 10:30:00 in the store.
	at := apiNow.Add(-30*time.Minute + 500*time.Millisecond)
	tq.ingesters[0].add("t", apiLS("app", "api"), push.Entry{Timestamp: at.UnixNano(), Line: "recent"})
	flush(t, tq.bkt, "t", apiLS("app", "api"), []push.Entry{{Timestamp: apiNow.Add(-90 * time.Minute).UnixNano(), Line: "older"}}, "f")

	sec := func(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
	nsec := func(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }
	cases := []struct {
		name        string
		start, end  string
		since       string
		want        []string
		wantBadPart string // a 400 naming this parameter
	}{
		{name: "default: the last hour", want: []string{"recent"}},
		{name: "since", since: "2h", want: []string{"older", "recent"}},
		{name: "since seconds", since: "7200", want: []string{"older", "recent"}},
		{name: "since before end", since: "1h", end: sec(apiNow.Add(-time.Hour)), want: []string{"older"}},
		{name: "RFC3339", start: apiNow.Add(-2 * time.Hour).Format(time.RFC3339), end: apiNow.Format(time.RFC3339), want: []string{"older", "recent"}},
		{name: "RFC3339 with zone", start: apiNow.Add(-2 * time.Hour).In(time.FixedZone("x", 3600)).Format(time.RFC3339), end: apiNow.Add(-time.Hour).In(time.FixedZone("x", -3600)).Format(time.RFC3339), want: []string{"older"}},
		{name: "RFC3339Nano start inclusive", start: at.Format(time.RFC3339Nano), end: apiNow.Format(time.RFC3339Nano), want: []string{"recent"}},
		{name: "RFC3339Nano end exclusive", start: apiNow.Add(-2 * time.Hour).Format(time.RFC3339Nano), end: at.Format(time.RFC3339Nano), want: []string{"older"}},
		{name: "Unix seconds", start: sec(apiNow.Add(-2 * time.Hour)), end: sec(apiNow), want: []string{"older", "recent"}},
		{name: "Unix seconds exclude", start: sec(apiNow.Add(-time.Hour)), end: sec(apiNow), want: []string{"recent"}},
		{name: "Unix ns start inclusive", start: nsec(at), end: nsec(apiNow), want: []string{"recent"}},
		{name: "Unix ns start one after", start: nsec(at.Add(1)), end: nsec(apiNow), want: nil},
		{name: "Unix ns end exclusive", start: nsec(apiNow.Add(-2 * time.Hour)), end: nsec(at), want: []string{"older"}},
		{name: "Unix ns end one after", start: nsec(apiNow.Add(-2 * time.Hour)), end: nsec(at.Add(1)), want: []string{"older", "recent"}},
		{name: "float seconds", start: sec(at) + ".5", end: sec(apiNow) + ".0", want: []string{"recent"}},
		{name: "float seconds after", start: sec(at) + ".75", end: sec(apiNow) + ".0", want: nil},
		{name: "float seconds end", start: sec(apiNow.Add(-2*time.Hour)) + ".25", end: sec(at) + ".25", want: []string{"older"}},
		{name: "bad start", start: "yesterday", wantBadPart: "start"},
		{name: "bad end", end: "2026-13-01T00:00:00Z", wantBadPart: "end"},
		{name: "bad float", start: "1.2.3", wantBadPart: "start"},
		{name: "bad since", since: "-", wantBadPart: "since"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := url.Values{"query": {`{app="api"}`}}
			for k, s := range map[string]string{"start": tc.start, "end": tc.end, "since": tc.since} {
				if s != "" {
					v.Set(k, s)
				}
			}
			if tc.wantBadPart != "" {
				code, body := tq.get(t, "t", "/loki/api/v1/query_range", v)
				if code != http.StatusBadRequest || !strings.Contains(string(body), tc.wantBadPart) {
					t.Errorf("%d %q, want 400 naming %q", code, body, tc.wantBadPart)
				}
				return
			}
			streams, _ := apiLogQuery(t, tq, "t", v)
			if got := apiAllLines(t, streams); !slices.Equal(got, tc.want) {
				t.Errorf("%v, want %v", got, tc.want)
			}
		})
	}

	// The instant query's time and the metadata APIs' start and end.
	var vec []apiVector
	apiGetJSON(t, tq, "t", "/loki/api/v1/query", url.Values{"query": {`sum(count_over_time({app="api"}[1h]))`}, "time": {apiNow.Add(-time.Hour).Format(time.RFC3339)}}, &vec)
	if len(vec) != 1 || vec[0].Value[1] != "1" || vec[0].Value[0] != float64(apiNow.Add(-time.Hour).Unix()) {
		t.Errorf("instant at -1h: %v, want 1 at %s", vec, sec(apiNow.Add(-time.Hour)))
	}
	for _, bad := range []struct{ path, param string }{
		{"/loki/api/v1/query", "time"},
		{"/loki/api/v1/labels", "start"},
		{"/loki/api/v1/labels", "end"},
		{"/loki/api/v1/series", "start"},
		{"/loki/api/v1/index/stats", "end"},
	} {
		v := url.Values{"query": {`count_over_time({app="api"}[1h])`}, "match[]": {`{app="api"}`}, bad.param: {"noon"}}
		if bad.path == "/loki/api/v1/index/stats" {
			v.Set("query", `{app="api"}`)
		}
		code, body := tq.get(t, "t", bad.path, v)
		if code != http.StatusBadRequest || !strings.Contains(string(body), bad.param) {
			t.Errorf("%s with bad %s: %d %q, want 400", bad.path, bad.param, code, body)
		}
	}
}

// TestAPIIndexStatsAndSeries: /index/stats and /series sum the store's
// chunks and the ingesters' streams.
func TestAPIIndexStatsAndSeries(t *testing.T) {
	tq := newTestQuerier(t, apiNow, 2, nil)
	p0, p1, web := apiLS("app", "api", "pod", "p0"), apiLS("app", "api", "pod", "p1"), apiLS("app", "web")
	flush(t, tq.bkt, "t", p0, apiLines("p0-first", apiNow.Add(-5*time.Hour), time.Minute, 10), "f1")
	flush(t, tq.bkt, "t", p0, apiLines("p0-second", apiNow.Add(-2*time.Hour), time.Minute, 5), "f2")
	flush(t, tq.bkt, "t", web, apiLines("web", apiNow.Add(-2*time.Hour), time.Minute, 4), "f3")
	tq.ingesters[0].add("t", p0, apiLines("p0-mem", apiNow.Add(-20*time.Minute), time.Minute, 3)...)
	tq.ingesters[1].add("t", p1, apiLines("p1-mem", apiNow.Add(-20*time.Minute), time.Minute, 7)...)

	// What the index says of the store's api chunks.
	series, err := index.NewClient(tq.bkt).Series(context.Background(), "t", 0, apiNow.UnixNano(), labels.MustNewMatcher(labels.MatchEqual, "app", "api"))
	if err != nil {
		t.Fatal(err)
	}
	stored := index.StatsOf(series)
	if stored.Chunks != 2 || stored.Entries != 15 {
		t.Fatalf("index: %+v", stored)
	}
	memBytes := uint64(len("p0-mem-000")*3 + len("p1-mem-000")*7)

	var st apiIndexStats
	apiGetJSON(t, tq, "t", "/loki/api/v1/index/stats", url.Values{"query": {`{app="api"}`}}, &st)
	want := apiIndexStats{Streams: 2, Chunks: 2 + 2, Entries: 15 + 10, Bytes: stored.Bytes + memBytes}
	if st != want {
		t.Errorf("index stats %+v, want %+v", st, want)
	}
	// A range leaving out the older chunk.
	apiGetJSON(t, tq, "t", "/loki/api/v1/index/stats", url.Values{"query": {`{app="api"}`}, "start": {strconv.FormatInt(apiNow.Add(-3*time.Hour).Unix(), 10)}}, &st)
	want = apiIndexStats{Streams: 2, Chunks: 1 + 2, Entries: 5 + 10, Bytes: uint64(len("p0-second-000")*5) + memBytes}
	if st != want {
		t.Errorf("index stats of the last 3h %+v, want %+v", st, want)
	}
	// A selector of one stream.
	apiGetJSON(t, tq, "t", "/loki/api/v1/index/stats", url.Values{"query": {`{pod="p1"}`}}, &st)
	if want := (apiIndexStats{Streams: 1, Chunks: 1, Entries: 7, Bytes: uint64(len("p1-mem-000") * 7)}); st != want {
		t.Errorf("index stats of p1 %+v, want %+v", st, want)
	}
	// Nothing matches.
	apiGetJSON(t, tq, "t", "/loki/api/v1/index/stats", url.Values{"query": {`{app="none"}`}}, &st)
	if st != (apiIndexStats{}) {
		t.Errorf("index stats of nothing %+v", st)
	}

	seriesOf := func(params url.Values) []string {
		var got []map[string]string
		apiGetJSON(t, tq, "t", "/loki/api/v1/series", params, &got)
		var out []string
		for _, s := range got {
			out = append(out, labels.FromMap(s).String())
		}
		return out
	}
	if got, want := seriesOf(url.Values{"match[]": {`{app="api"}`}}), []string{p0.String(), p1.String()}; !slices.Equal(got, want) {
		t.Errorf("series %v, want %v", got, want)
	}
	if got, want := seriesOf(url.Values{"match[]": {`{app="api"}`, `{app="web"}`}}), []string{p0.String(), p1.String(), web.String()}; !slices.Equal(got, want) {
		t.Errorf("series of two selectors %v, want %v", got, want)
	}
	if got, want := seriesOf(url.Values{"match[]": {`{app=~".+", pod!="p0"}`}}), []string{p1.String(), web.String()}; !slices.Equal(got, want) {
		t.Errorf("series %v, want %v", got, want)
	}
	// Only the store's older chunks in range: the ingesters' recent
	// streams are not listed.
	old := url.Values{"match[]": {`{app="api"}`}, "start": {strconv.FormatInt(apiNow.Add(-6*time.Hour).Unix(), 10)}, "end": {strconv.FormatInt(apiNow.Add(-4*time.Hour).Unix(), 10)}}
	if got, want := seriesOf(old), []string{p0.String()}; !slices.Equal(got, want) {
		t.Errorf("old series %v, want %v", got, want)
	}
	var names []string
	apiGetJSON(t, tq, "t", "/loki/api/v1/labels", nil, &names)
	if want := []string{"app", "pod"}; !slices.Equal(names, want) {
		t.Errorf("labels %v, want %v", names, want)
	}
	var values []string
	apiGetJSON(t, tq, "t", "/loki/api/v1/label/pod/values", url.Values{"query": {`{app="api"}`}}, &values)
	if want := []string{"p0", "p1"}; !slices.Equal(values, want) {
		t.Errorf("pod values %v, want %v", values, want)
	}
	apiGetJSON(t, tq, "t", "/loki/api/v1/label/app/values", nil, &values)
	if want := []string{"api", "web"}; !slices.Equal(values, want) {
		t.Errorf("app values %v, want %v", values, want)
	}
}

// The tests below expose what looks like bugs in the querier (they fail
// until it is fixed); their names stay out of the usual -run patterns.
