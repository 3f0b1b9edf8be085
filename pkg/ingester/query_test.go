package ingester

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/lokilab/lokilab/internal/kafkatest"
	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/logql"
	"github.com/lokilab/lokilab/pkg/push"
)

// TestQueryRecent: the recent-data API returns, per matching stream of the
// asking tenant only, the entries in the time range in direction order, at
// most limit, across the stream's sealed chunks and its open one.
func TestQueryRecent(t *testing.T) {
	h := newHarness(t, 2)
	cfg := h.config("ingester-0")
	cfg.ChunkTargetSize = 2 << 10 // several chunks per stream
	cfg.ChunkBlockSize = 1 << 10
	h.produce("a", "qa", 3, 200)
	h.produce("b", "qb", 3, 200)
	r := h.start(cfg)
	r.ing.authEnabled = true
	kafkatest.Eventually(t, "all consumed", h.consumedAll(r.ing))

	// What tenant a wrote to app="api" (stream 0 of pushtest.Request).
	all := h.entries("a", `{app="api", env="prod", pod="pod-0"}`)
	if len(all) != 200 {
		t.Fatalf("test setup: %d entries in the stream", len(all))
	}
	from, through := all[50].Timestamp, all[150].Timestamp
	for _, tc := range []struct {
		name  string
		dir   chunk.Direction
		limit int
		want  []push.Entry
	}{
		{"forward", chunk.Forward, 1000, all[50:150]},
		{"backward", chunk.Backward, 1000, reversed(all[50:150])},
		{"forward limit", chunk.Forward, 10, all[50:60]},
		{"backward limit", chunk.Backward, 10, reversed(all[140:150])},
		{"all", chunk.Forward, 0, all[50:150]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := RecentQuery{Tenant: "a", Matchers: []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "app", "api")},
				From: from, Through: through, Direction: tc.dir, Limit: tc.limit}
			got := map[string][]push.Entry{}
			if err := r.ing.QueryRecent(context.Background(), q, func(s string, es []push.Entry) error {
				got[s] = append(got[s], es...)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 {
				t.Fatalf("%d streams match app=\"api\", want 1: %v", len(got), keys(got))
			}
			es := got[`{app="api", env="prod", pod="pod-0"}`]
			if !slices.EqualFunc(es, tc.want, func(a, b push.Entry) bool { return a.Timestamp == b.Timestamp && a.Line == b.Line }) {
				t.Fatalf("got %d entries, want %d (first got %v, want %v)", len(es), len(tc.want), first(es), first(tc.want))
			}
		})
	}

	// A `|=` filter's block filter skips the cut blocks of in-memory
	// chunks that lack its substring (with 1 KiB blocks, most of them):
	// the answer is the same with it as without, in both directions.
	for _, query := range []string{`{app="api"} |= "qa-0-17"`, `{app="api"} |= "qa-" |= "-1" != "qa-0-11"`, `{app="api"} |= "nowhere"`} {
		for _, dir := range []chunk.Direction{chunk.Forward, chunk.Backward} {
			lq, err := logql.ParseLogQuery(query)
			if err != nil {
				t.Fatal(err)
			}
			q := RecentQuery{Tenant: "a", Matchers: lq.Matchers, From: 0, Through: math.MaxInt64, Direction: dir, Filter: lq.RawLineFilter()}
			var with, without []push.Entry
			for _, bf := range []func([]byte) bool{lq.BlockFilter(), nil} {
				q.BlockFilter = bf
				var got []push.Entry
				if err := r.ing.QueryRecent(context.Background(), q, func(_ string, es []push.Entry) error {
					got = append(got, es...)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if bf != nil {
					with = got
				} else {
					without = got
				}
			}
			if !slices.EqualFunc(with, without, func(a, b push.Entry) bool { return a.Timestamp == b.Timestamp && a.Line == b.Line }) || (len(with) == 0) != strings.Contains(query, "nowhere") {
				t.Errorf("%s %s: %d entries with the block filter, %d without", query, dir, len(with), len(without))
			}
		}
	}

	// Over HTTP, as the querier asks; tenant b sees only its own streams.
	u := "/ingester/query_recent?" + url.Values{"query": {`{env="prod"}`}, "start": {"0"}, "end": {"9223372036854775807"}, "limit": {"5"}}.Encode()
	req := httptest.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("X-Scope-OrgID", "b")
	rec := httptest.NewRecorder()
	r.ing.QueryHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("query_recent answered %d: %s", rec.Code, rec.Body)
	}
	sc := bufio.NewScanner(rec.Body)
	streams := 0
	for sc.Scan() {
		var line struct {
			Stream string      `json:"stream"`
			Values [][2]string `json:"values"`
			Error  string      `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Error != "" {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		streams++
		if len(line.Values) != 5 || !strings.HasPrefix(pushtest.LineID(line.Values[0][1]), "qb-") {
			t.Fatalf("tenant b got %d values, first %v", len(line.Values), line.Values[0])
		}
	}
	if streams != 3 {
		t.Fatalf("tenant b got %d streams, want 3", streams)
	}

	for bad, code := range map[string]int{
		"query=app":                               http.StatusBadRequest,
		"query=%7Bapp%3D%22x%22%7D&limit=-1":      http.StatusBadRequest,
		"query=%7Bapp%3D%22x%22%7D&limit=5001":    http.StatusBadRequest,
		"query=%7Bapp%3D%22x%22%7D&direction=up":  http.StatusBadRequest,
		"query=%7Bapp%3D%22x%22%7D&no-org-id=yes": http.StatusUnauthorized,
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/ingester/query_recent?"+bad, nil)
		if code != http.StatusUnauthorized {
			req.Header.Set("X-Scope-OrgID", "b")
		}
		r.ing.QueryHandler().ServeHTTP(rec, req)
		if rec.Code != code {
			t.Errorf("%s: answered %d, want %d", bad, rec.Code, code)
		}
	}

	// A log query's line filters drop lines on the ingester, before the
	// per-stream limit.
	u = "/ingester/query_recent?" + url.Values{"query": {`{env="prod"} |= "qb-0-19"`}, "start": {"0"}, "end": {"9223372036854775807"}, "limit": {"5"}}.Encode()
	req = httptest.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("X-Scope-OrgID", "b")
	rec = httptest.NewRecorder()
	r.ing.QueryHandler().ServeHTTP(rec, req)
	var filtered struct {
		Stream string      `json:"stream"`
		Values [][2]string `json:"values"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(rec.Body.Bytes()), &filtered); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("filtered query answered %d %s: %v", rec.Code, rec.Body, err)
	}
	for _, v := range filtered.Values {
		if !strings.HasPrefix(pushtest.LineID(v[1]), "qb-0-19") {
			t.Fatalf("line filter |= \"qb-0-19\" let through %q", v[1])
		}
	}
	if len(filtered.Values) != 5 {
		t.Fatalf("filtered query: %d values, want the limit, 5", len(filtered.Values))
	}

	// The series API lists the same streams with their chunk counts.
	req = httptest.NewRequest(http.MethodGet, "/ingester/series?"+url.Values{"match": {`{env="prod"}`}, "start": {"0"}, "end": {"9223372036854775807"}}.Encode(), nil)
	req.Header.Set("X-Scope-OrgID", "b")
	rec = httptest.NewRecorder()
	r.ing.SeriesHandler().ServeHTTP(rec, req)
	var series []StreamStats
	if err := json.Unmarshal(rec.Body.Bytes(), &series); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("series answered %d %s: %v", rec.Code, rec.Body, err)
	}
	entries := 0
	for _, s := range series {
		entries += s.Entries
		if s.Chunks < 1 || s.Bytes <= 0 {
			t.Errorf("stream %s: %d chunks, %d bytes", s.Labels, s.Chunks, s.Bytes)
		}
	}
	if len(series) != 3 || entries != 600 {
		t.Fatalf("tenant b: %d streams holding %d entries, want 3 and 600", len(series), entries)
	}
}

// TestMergeStreamBatches: entries come out in batches of the asked size,
// in order, with duplicates removed even when a batch boundary falls
// between a line and its twin (a replayed chunk overlapping the head).
func TestMergeStreamBatches(t *testing.T) {
	build := func(lines ...string) *chunk.Chunk {
		c := chunk.New(chunk.EncodingSnappy, 1<<10, 1<<20)
		for i, l := range lines {
			if _, err := c.Append(int64(i/2), l, nil); err != nil { // two lines per timestamp
				t.Fatal(err)
			}
		}
		return c
	}
	a := build("a0", "b0", "a1", "b1", "a2", "b2")
	b := build("b0", "a0", "b1", "c1", "a2", "b2") // c1 is new; the rest are a's
	for _, tc := range []struct {
		limit   int
		batches []int
	}{
		{0, []int{3, 3, 1}},
		{5, []int{3, 2}},
	} {
		var got []string
		var sizes []int
		its := []chunk.Iterator{a.Iterator(0, 100, chunk.Forward), b.Iterator(0, 100, chunk.Forward)}
		if err := mergeStream(its, chunk.Forward, tc.limit, 3, nil, func(es []push.Entry) error {
			sizes = append(sizes, len(es))
			for _, e := range es {
				got = append(got, fmt.Sprintf("%d:%s", e.Timestamp, e.Line))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(sizes, tc.batches) {
			t.Errorf("limit %d: batches %v, want %v", tc.limit, sizes, tc.batches)
		}
		seen := map[string]bool{}
		for _, g := range got {
			if seen[g] {
				t.Errorf("limit %d: %s twice in %v", tc.limit, g, got)
			}
			seen[g] = true
		}
		if want := min(7, cmp.Or(tc.limit, 7)); len(got) != want {
			t.Errorf("limit %d: %d entries %v, want %d", tc.limit, len(got), got, want)
		}
	}
}

// entries returns what the harness produced for one stream of tenant, in
// order.
func (h *harness) entries(tenant, stream string) []push.Entry {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.streams[tenant][stream]
}

func reversed(es []push.Entry) []push.Entry {
	out := slices.Clone(es)
	slices.Reverse(out)
	return out
}

func keys(m map[string][]push.Entry) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func first(es []push.Entry) any {
	if len(es) == 0 {
		return nil
	}
	return es[0]
}
