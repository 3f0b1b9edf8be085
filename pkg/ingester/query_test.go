package ingester

import (
	"bufio"
	"context"
	"encoding/json"
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := RecentQuery{Tenant: "a", Matchers: []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "app", "api")},
				From: from, Through: through, Direction: tc.dir, Limit: tc.limit}
			got := map[string][]push.Entry{}
			if err := r.ing.QueryRecent(context.Background(), q, func(s string, es []push.Entry) error {
				got[s] = es
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
		"query=%7Bapp%3D%22x%22%7D&limit=0":       http.StatusBadRequest,
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
