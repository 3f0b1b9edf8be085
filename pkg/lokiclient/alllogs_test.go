package lokiclient

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeEntry is one entry a fake server holds.
type fakeEntry struct {
	labels map[string]string
	ts     int64
	line   string
}

func (e fakeEntry) key() string {
	return LabelsString(e.labels) + "\x00" + strconv.FormatInt(e.ts, 10) + "\x00" + e.line
}

// fakeLoki answers /query_range log queries over a fixed list of entries
// the way Loki does: entries in [start, end), the first limit in the
// direction's order, grouped by stream. Unlike lokilab's querier it keeps
// identical entries (so the client's duplicate counting can be checked),
// and with shuffleTies it breaks ties at one timestamp in a random order
// each time (the client must not rely on a stable tie order).
type fakeLoki struct {
	mu          sync.Mutex
	entries     []fakeEntry
	maxLimit    int
	shuffleTies bool
	warnings    []string
	rng         *rand.Rand
	requests    int
	limits      []int
}

func (f *fakeLoki) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	if r.URL.Path != "/loki/api/v1/query_range" {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	start, _ := strconv.ParseInt(q.Get("start"), 10, 64)
	end, _ := strconv.ParseInt(q.Get("end"), 10, 64)
	limit, _ := strconv.Atoi(q.Get("limit"))
	f.limits = append(f.limits, limit)
	if f.maxLimit > 0 && limit > f.maxLimit {
		http.Error(w, fmt.Sprintf("max entries limit per query exceeded, limit > max_entries_limit_per_query (%d > %d)", limit, f.maxLimit), http.StatusBadRequest)
		return
	}
	var in []fakeEntry
	for _, e := range f.entries {
		if e.ts >= start && e.ts < end {
			in = append(in, e)
		}
	}
	if f.shuffleTies {
		f.rng.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
		slices.SortStableFunc(in, func(a, b fakeEntry) int { return cmp.Compare(a.ts, b.ts) })
	} else {
		slices.SortStableFunc(in, func(a, b fakeEntry) int {
			return cmp.Or(cmp.Compare(a.ts, b.ts), cmp.Compare(LabelsString(a.labels), LabelsString(b.labels)), cmp.Compare(a.line, b.line))
		})
	}
	if q.Get("direction") != "forward" {
		slices.Reverse(in)
	}
	if len(in) > limit {
		in = in[:limit]
	}
	type stream struct {
		Stream map[string]string `json:"stream"`
		Values [][2]string       `json:"values"`
	}
	var result []*stream
	byKey := map[string]*stream{}
	for _, e := range in {
		k := LabelsString(e.labels)
		s := byKey[k]
		if s == nil {
			s = &stream{Stream: e.labels}
			byKey[k] = s
			result = append(result, s)
		}
		s.Values = append(s.Values, [2]string{strconv.FormatInt(e.ts, 10), e.line})
	}
	if result == nil {
		result = []*stream{}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"status":   "success",
		"data":     map[string]any{"resultType": "streams", "result": result, "stats": map[string]any{}},
		"warnings": f.warnings,
	})
}

// collect runs AllLogs and returns what it delivered, as keys, with each
// page's size.
func collect(t *testing.T, c *Client, start, end int64, pageSize int) (got []string, pages []int, err error) {
	t.Helper()
	err = c.AllLogs(context.Background(), `{app=~".+"}`, time.Unix(0, start), time.Unix(0, end), pageSize, func(ss []Stream) error {
		n := 0
		for _, s := range ss {
			for _, e := range s.Entries {
				got = append(got, fakeEntry{s.Labels, e.Timestamp.UnixNano(), e.Line}.key())
				n++
			}
		}
		pages = append(pages, n)
		return nil
	})
	return got, pages, err
}

// want is the multiset of entries in [start, end), sorted.
func want(es []fakeEntry, start, end int64) []string {
	var out []string
	for _, e := range es {
		if e.ts >= start && e.ts < end {
			out = append(out, e.key())
		}
	}
	slices.Sort(out)
	return out
}

func checkSame(t *testing.T, got, want []string) {
	t.Helper()
	got = slices.Clone(got)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("delivered %d entries, want %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestAllLogsPageEdges(t *testing.T) {
	api := map[string]string{"app": "api"}
	web := map[string]string{"app": "web"}
	const T = int64(1_764_410_400_000_000_000)
	var sameTs []fakeEntry // 250 entries at one timestamp, two streams
	for i := range 250 {
		ls := api
		if i%2 == 1 {
			ls = web
		}
		sameTs = append(sameTs, fakeEntry{ls, T, fmt.Sprintf("line %03d", i)})
	}
	// Identical entries — the same line of the same stream at the same
	// instant, pushed twice — are really in the answer twice and must be
	// delivered twice, even when a page edge falls between them.
	var dups []fakeEntry
	for i := range 40 {
		e := fakeEntry{api, T + int64(i/10), fmt.Sprintf("dup %d", i%3)}
		dups = append(dups, e)
	}
	var spread []fakeEntry
	for i := range 300 {
		spread = append(spread, fakeEntry{web, T + int64(i)*1e6, "l" + strconv.Itoa(i)})
	}

	tests := []struct {
		name     string
		entries  []fakeEntry
		pageSize int
		shuffle  bool
	}{
		{"more entries at one timestamp than a page", sameTs, 100, false},
		{"one timestamp, ties in random order", sameTs, 7, true},
		{"a page as big as the group", sameTs, 250, false},
		{"duplicates across page edges", dups, 4, false},
		{"duplicates, ties in random order", dups, 3, true},
		{"distinct timestamps", spread, 50, false},
		{"everything mixed", slices.Concat(spread, sameTs, dups), 33, true},
		{"page of one", slices.Concat(dups[:12], spread[:20]), 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeLoki{entries: tt.entries, shuffleTies: tt.shuffle, rng: rand.New(rand.NewPCG(1, 2))}
			srv := httptest.NewServer(f)
			defer srv.Close()
			start, end := T-1, T+int64(time.Hour)
			got, pages, err := collect(t, New(srv.URL), start, end, tt.pageSize)
			if err != nil {
				t.Fatal(err)
			}
			checkSame(t, got, want(tt.entries, start, end))
			for _, n := range pages {
				// Ties in a new order on every answer may bring more
				// new entries into a page that also skips.
				if n > tt.pageSize && !tt.shuffle {
					t.Fatalf("a page delivered %d entries, more than the page size %d", n, tt.pageSize)
				}
			}
		})
	}
}

// TestAllLogsRandom: any data, any page size, any tie order — every entry
// exactly as often as it is stored, and the range's edges respected.
func TestAllLogsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 60 {
		var es []fakeEntry
		n := rng.IntN(400)
		for range n {
			ls := map[string]string{"app": []string{"a", "b", "c"}[rng.IntN(3)]}
			es = append(es, fakeEntry{ls, int64(rng.IntN(20)), "x" + strconv.Itoa(rng.IntN(4))})
		}
		f := &fakeLoki{entries: es, shuffleTies: round%2 == 0, rng: rand.New(rand.NewPCG(uint64(round), 9))}
		srv := httptest.NewServer(f)
		start, end := int64(rng.IntN(5)), int64(10+rng.IntN(12))
		got, _, err := collect(t, New(srv.URL), start, end, 1+rng.IntN(30))
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		checkSame(t, got, want(es, start, end))
	}
}

func TestAllLogsWarningsAndErrors(t *testing.T) {
	ls := map[string]string{"app": "api"}
	var es []fakeEntry
	for i := range 30 {
		es = append(es, fakeEntry{ls, 100, "same " + strconv.Itoa(i)})
	}

	t.Run("warnings make a PartialError after every page", func(t *testing.T) {
		f := &fakeLoki{entries: es, warnings: []string{"ingester ingester-2 could not be queried"}}
		srv := httptest.NewServer(f)
		defer srv.Close()
		var seen []string
		c := New(srv.URL, WithWarningHandler(func(path string, ws []string) { seen = append(seen, ws...) }))
		got, _, err := collect(t, c, 0, 1000, 10)
		var pe *PartialError
		if !errors.As(err, &pe) || len(pe.Warnings) != 1 || pe.Warnings[0] != f.warnings[0] {
			t.Fatalf("err = %v, want a PartialError with the warning once", err)
		}
		checkSame(t, got, want(es, 0, 1000))
		if len(seen) != f.requests {
			t.Fatalf("warning handler called %d times for %d requests", len(seen), f.requests)
		}
	})

	t.Run("a group bigger than the server allows is an error, not less data", func(t *testing.T) {
		f := &fakeLoki{entries: es, maxLimit: 20}
		srv := httptest.NewServer(f)
		defer srv.Close()
		_, _, err := collect(t, New(srv.URL), 0, 1000, 15)
		var ae *APIError
		if !errors.As(err, &ae) || ae.StatusCode != 400 {
			t.Fatalf("err = %v, want the server's 400", err)
		}
		if f.limits[0] != 15 || f.limits[1] != 30 {
			t.Fatalf("limits asked %v, want 15 then 30 (15 new + 15 to skip)", f.limits)
		}
	})

	t.Run("an error from fn stops the reading", func(t *testing.T) {
		srv := httptest.NewServer(&fakeLoki{entries: es})
		defer srv.Close()
		stop := errors.New("enough")
		calls := 0
		err := New(srv.URL).AllLogs(context.Background(), `{app="api"}`, time.Unix(0, 0), time.Unix(0, 1000), 5, func([]Stream) error {
			calls++
			return stop
		})
		if !errors.Is(err, stop) || calls != 1 {
			t.Fatalf("err = %v after %d calls, want %v after 1", err, calls, stop)
		}
	})

	t.Run("an empty range asks nothing", func(t *testing.T) {
		f := &fakeLoki{entries: es}
		srv := httptest.NewServer(f)
		defer srv.Close()
		if _, _, err := collect(t, New(srv.URL), 100, 100, 5); err != nil || f.requests != 0 {
			t.Fatalf("err %v, %d requests", err, f.requests)
		}
	})
}
