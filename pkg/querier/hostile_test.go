package querier

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAPIHostileQueries: queries written to hurt — regexes that explode
// when compiled, nesting that would exhaust the stack, ranges at the ends
// of time, parameters that overflow — are refused with a 400 that says
// why, never a 500, a panic or a hang. Patterns that backtrack
// exponentially in other engines are just slow-free here (Go's regexp is
// linear in the input), so they are answered.
func TestAPIHostileQueries(t *testing.T) {
	const (
		rng  = "/loki/api/v1/query_range"
		inst = "/loki/api/v1/query"
	)
	ns := func(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }
	nested := strings.Repeat("sum(", 5000) + `count_over_time({app="api"}[5m])` + strings.Repeat(")", 5000)
	cases := []struct {
		name   string
		path   string
		params url.Values
		code   int
		want   string
	}{
		{"regex too large to compile", rng, url.Values{"query": {`{app="api"} |~ "(a{1000}){1000}"`}}, 400, "parse error"},
		{"regex matcher too large to compile", rng, url.Values{"query": {`{app=~"(a{1000}){1000}"}`}}, 400, "parse error"},
		{"invalid regex", rng, url.Values{"query": {`{app="api"} |~ "(unclosed"`}}, 400, "parse error"},
		{"nesting deeper than the parser allows", inst, url.Values{"query": {nested}}, 400, "parse error"},
		{"query longer than 64 KiB", rng, url.Values{"query": {`{app="api"} |= "` + strings.Repeat("x", 70<<10) + `"`}}, 400, "parse error"},
		{"invalid UTF-8 in a matcher", rng, url.Values{"query": {"{app=\"\xff\xfe\"}"}}, 400, "parse error"},
		{"range from the epoch to the end of time", rng, url.Values{"query": {`{app="api"}`}, "start": {"0"}, "end": {strconv.FormatInt(1<<62, 10)}}, 400, "the query time range exceeds the limit"},
		{"since a million hours", rng, url.Values{"query": {`{app="api"}`}, "since": {"1000000h"}}, 400, "the query time range exceeds the limit"},
		{"start past int64 nanoseconds", rng, url.Values{"query": {`{app="api"}`}, "start": {"99999999999999999999"}}, 400, "start"},
		{"range window past the limit", rng, url.Values{"query": {`sum(rate({app="api"}[1000000h]))`}}, 400, "the query time range exceeds the limit (query length: 41666d17h including the range window, limit: 30d1h)"},
		{"range window past the limit, instant", inst, url.Values{"query": {`sum(rate({app="api"}[1000000h]))`}}, 400, "the query time range exceeds the limit"},
		// The window counts, with a day of grace: Grafana's 30 days of
		// [1h] windows pass, 30 days of [2d] do not.
		{"30 days of 1h windows", rng, url.Values{"query": {`sum(count_over_time({app="api"}[1h]))`}, "since": {"720h"}, "step": {"1h"}}, 200, ""},
		{"30 days of 2d windows", rng, url.Values{"query": {`sum(count_over_time({app="api"}[2d]))`}, "since": {"720h"}, "step": {"1h"}}, 400, "the query time range exceeds the limit"},
		{"step of one nanosecond", rng, url.Values{"query": {`count_over_time({app="api"}[5m])`}, "step": {"0.000000001"}}, 400, ""},
		{"limit past int", rng, url.Values{"query": {`{app="api"}`}, "limit": {"99999999999999999999"}}, 400, "limit"},
		{"topk of a huge k", inst, url.Values{"query": {`topk(99999999999, count_over_time({app="api"}[5m]))`}}, 200, ""},
		{"backtracking-prone regex is answered", rng, url.Values{"query": {`{app="api"} |~ "(a+)+$"`}, "start": {ns(apiNow.Add(-time.Hour))}, "end": {ns(apiNow)}}, 200, ""},
	}
	tq := newTestQuerier(t, apiNow, 1, nil)
	// A line that makes a backtracking engine take forever against (a+)+$.
	tq.ingesters[0].add("t", apiLS("app", "api"), tailEntry(apiNow.Add(-time.Minute), strings.Repeat("a", 10000)+"!"))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := tq.get(t, "t", tc.path, tc.params)
			if code != tc.code || !strings.Contains(string(body), tc.want) {
				t.Errorf("%d %.300q, want %d containing %q", code, body, tc.code, tc.want)
			}
		})
	}
	// The querier still answers after all that.
	if code, body := tq.get(t, "t", rng, url.Values{"query": {`{app="api"}`}}); code != http.StatusOK {
		t.Errorf("a plain query afterwards: %d %q", code, body)
	}
}
