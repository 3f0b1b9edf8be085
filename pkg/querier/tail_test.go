package querier

import (
	"cmp"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lokilab/lokilab/internal/metricstest"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// The tail tests never move tq.now (the querier reads it concurrently):
// lines "arrive" by being added to a fake ingester with timestamps before
// now, which the next poll, reading up to now, picks up.

// tailDial opens /tail as tenantID; on a refused handshake it returns the
// response's status.
func tailDial(t *testing.T, tq *testQuerier, tenantID string, params url.Values) (*websocket.Conn, int) {
	t.Helper()
	u := "ws" + strings.TrimPrefix(tq.srv.URL, "http") + "/loki/api/v1/tail?" + params.Encode()
	h := http.Header{}
	if tenantID != "" {
		h.Set(tenant.Header, tenantID)
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.Dial(u, h)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial %s: %v", u, err)
		}
		resp.Body.Close()
		return nil, resp.StatusCode
	}
	t.Cleanup(func() { conn.Close() })
	return conn, http.StatusSwitchingProtocols
}

// tailLine is one line received, with its stream.
type tailLine struct {
	stream string
	ts     int64
	line   string
}

// tailRead reads one message within timeout and returns its lines in the
// order sent (stream by stream); it fails the test on anything else.
func tailRead(t *testing.T, conn *websocket.Conn, timeout time.Duration) []tailLine {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	var msg tailMessage
	if err := conn.ReadJSON(&msg); err != nil {
		t.Fatalf("reading a tail message: %v", err)
	}
	var out []tailLine
	for _, s := range msg.Streams {
		k := labels.FromMap(s.Stream).String()
		var prev int64
		for i, v := range s.Values {
			ts, err := strconv.ParseInt(v[0], 10, 64)
			if err != nil {
				t.Fatalf("bad timestamp %q", v[0])
			}
			if i > 0 && ts < prev {
				t.Errorf("stream %s: %q (%d) sent after a newer line (%d): want oldest first", k, v[1], ts, prev)
			}
			prev = ts
			out = append(out, tailLine{k, ts, v[1]})
		}
	}
	return out
}

// tailUntil reads messages until one holds the line last, and returns
// every line received, in order. A message never holds a line older than
// one of an earlier message.
func tailUntil(t *testing.T, conn *websocket.Conn, last string, timeout time.Duration) []tailLine {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var (
		all     []tailLine
		newest  int64
		message int
	)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("%q never arrived; received %v", last, all)
		}
		got := tailRead(t, conn, left)
		message++
		for _, l := range got {
			if l.ts < newest {
				t.Errorf("message %d: %q (%d) is older than a line of an earlier message (%d)", message, l.line, l.ts, newest)
			}
		}
		for _, l := range got {
			newest = max(newest, l.ts)
		}
		all = append(all, got...)
		if slices.ContainsFunc(got, func(l tailLine) bool { return l.line == last }) {
			return all
		}
	}
}

func tailLines(ls []tailLine) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.line
	}
	return out
}

func tailEntry(at time.Time, line string) push.Entry {
	return push.Entry{Timestamp: at.UnixNano(), Line: line}
}

// TestTailFollow: the first message holds the last limit lines since
// start, oldest first; lines arriving later come in later messages, each
// exactly once, oldest first, also when several share a timestamp.
func TestTailFollow(t *testing.T) {
	tq := newTestQuerier(t, apiNow, 2, func(c *Config) { c.TailPollInterval = 20 * time.Millisecond })
	api, apiB := apiLS("app", "api"), apiLS("app", "api", "pod", "b")
	ing0, ing1 := tq.ingesters[0], tq.ingesters[1]
	// Before start (now-45m): never sent.
	flush(t, tq.bkt, "t", api, apiLines("stored", apiNow.Add(-2*time.Hour), time.Minute, 10), "f")
	ing0.add("t", api, apiLines("early", apiNow.Add(-50*time.Minute), time.Minute, 5)...) // -50m … -46m
	// Since start: 6 lines, of which the last 4 are sent first.
	ing0.add("t", api, apiLines("since", apiNow.Add(-44*time.Minute), time.Minute, 5)...) // -44m … -40m
	ing1.add("t", apiB, tailEntry(apiNow.Add(-41*time.Minute-30*time.Second), "since-b"))
	// Another tenant's lines are never tailed.
	ing0.add("other", api, apiLines("foreign", apiNow.Add(-44*time.Minute), time.Minute, 5)...)

	conn, code := tailDial(t, tq, "t", url.Values{
		"query": {`{app="api"}`}, "limit": {"4"},
		"start": {strconv.FormatInt(apiNow.Add(-45*time.Minute).UnixNano(), 10)},
	})
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", code)
	}
	first := tailRead(t, conn, 5*time.Second)
	slices.SortFunc(first, func(a, b tailLine) int { return cmp.Compare(a.ts, b.ts) })
	if got, want := tailLines(first), []string{"since-002", "since-b", "since-003", "since-004"}; !slices.Equal(got, want) {
		t.Fatalf("first message %v, want %v", got, want)
	}

	// New lines, some in the same poll, three sharing a timestamp and
	// arriving in two batches, on two ingesters.
	same := apiNow.Add(-10 * time.Minute)
	ing0.add("t", api, tailEntry(apiNow.Add(-30*time.Minute), "new-1"))
	ing1.add("t", apiB, tailEntry(apiNow.Add(-20*time.Minute), "new-b"))
	ing0.add("t", api, tailEntry(same, "same-b"))
	time.Sleep(60 * time.Millisecond) // a few polls
	ing0.add("t", api, tailEntry(same, "same-a"), tailEntry(same, "same-c"))
	ing1.add("t", apiB, tailEntry(same, "same-b")) // another stream: another line
	time.Sleep(60 * time.Millisecond)
	// A replica of a line already sent (the same entry on another
	// ingester) is not sent again.
	ing1.add("t", api, tailEntry(same, "same-a"))
	time.Sleep(60 * time.Millisecond)
	ing0.add("t", api, tailEntry(apiNow.Add(-5*time.Minute), "last"))

	rest := tailUntil(t, conn, "last", 5*time.Second)
	seen := map[string]int{}
	for _, l := range rest {
		seen[l.stream+" "+l.line]++
		if l.ts <= first[len(first)-1].ts && l.ts != same.UnixNano() {
			t.Errorf("%q (%d) is not newer than what the first message held", l.line, l.ts)
		}
	}
	want := map[string]int{
		api.String() + " new-1": 1, apiB.String() + " new-b": 1,
		api.String() + " same-a": 1, api.String() + " same-b": 1, api.String() + " same-c": 1,
		apiB.String() + " same-b": 1, api.String() + " last": 1,
	}
	if len(seen) != len(want) {
		t.Errorf("received %v, want %v", seen, want)
	}
	for k, n := range want {
		if seen[k] != n {
			t.Errorf("%s received %d times, want %d (all: %v)", k, seen[k], n, tailLines(rest))
		}
	}
	// Nothing more: a sentinel is the next line.
	ing0.add("t", api, tailEntry(apiNow.Add(-time.Minute), "sentinel"))
	if more := tailUntil(t, conn, "sentinel", 5*time.Second); len(more) != 1 {
		t.Errorf("after the last line: %v, want only the sentinel", tailLines(more))
	}
	if v := metricstest.Value(t, tq.reg, "loki_querier_tail_active"); v != 1 {
		t.Errorf("loki_querier_tail_active = %v, want 1", v)
	}

	// The client leaves: the tail ends.
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	conn.Close()
	waitTailsGone(t, tq)
}

func waitTailsGone(t *testing.T, tq *testQuerier) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for metricstest.Value(t, tq.reg, "loki_querier_tail_active") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("loki_querier_tail_active stays above 0 after the client left")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTailFilterAndDefaults: a tail applies the query's pipeline, and
// without start sends the last hour's lines (at most limit, default 100).
func TestTailFilterAndDefaults(t *testing.T) {
	tq := newTestQuerier(t, apiNow, 1, func(c *Config) { c.TailPollInterval = 20 * time.Millisecond })
	api := apiLS("app", "api")
	tq.ingesters[0].add("t", api, apiLines("older", apiNow.Add(-90*time.Minute), time.Minute, 5)...)
	tq.ingesters[0].add("t", api, apiLines("recent", apiNow.Add(-50*time.Minute), 10*time.Second, 150)...)
	conn, code := tailDial(t, tq, "t", url.Values{"query": {`{app="api"}`}})
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", code)
	}
	first := tailRead(t, conn, 5*time.Second)
	if want := apiEntryLines(apiLines("recent", apiNow.Add(-50*time.Minute), 10*time.Second, 150))[50:]; !slices.Equal(tailLines(first), want) {
		t.Errorf("first message %d lines %v…, want the last 100 of the hour", len(first), tailLines(first)[:min(3, len(first))])
	}

	conn2, code := tailDial(t, tq, "t", url.Values{"query": {`{app="api"} |= "keep"`}, "start": {strconv.FormatInt(apiNow.Add(-time.Hour).Unix(), 10)}})
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", code)
	}
	tq.ingesters[0].add("t", api, tailEntry(apiNow.Add(-3*time.Minute), "drop me"), tailEntry(apiNow.Add(-2*time.Minute), "keep me"))
	if got := tailLines(tailUntil(t, conn2, "keep me", 5*time.Second)); !slices.Equal(got, []string{"keep me"}) {
		t.Errorf("filtered tail sent %v", got)
	}
}

// TestTailRefusals: a bad tail request is refused with a status before
// the upgrade.
func TestTailRefusals(t *testing.T) {
	tq := newTestQuerier(t, apiNow, 1, nil)
	cases := []struct {
		name   string
		tenant string
		params url.Values
		code   int
	}{
		{"metric query", "t", url.Values{"query": {`count_over_time({app="api"}[5m])`}}, http.StatusBadRequest},
		{"no tenant", "", url.Values{"query": {`{app="api"}`}}, http.StatusUnauthorized},
		{"two tenants", "a|b", url.Values{"query": {`{app="api"}`}}, http.StatusBadRequest},
		{"bad tenant", "../b", url.Values{"query": {`{app="api"}`}}, http.StatusBadRequest},
		{"syntax error", "t", url.Values{"query": {`{app="api"`}}, http.StatusBadRequest},
		{"empty query", "t", url.Values{}, http.StatusBadRequest},
		{"empty-compatible selector", "t", url.Values{"query": {`{app=~".*"}`}}, http.StatusBadRequest},
		{"limit above max", "t", url.Values{"query": {`{app="api"}`}, "limit": {"5001"}}, http.StatusBadRequest},
		{"bad limit", "t", url.Values{"query": {`{app="api"}`}, "limit": {"x"}}, http.StatusBadRequest},
		{"direction", "t", url.Values{"query": {`{app="api"}`}, "direction": {"forward"}}, http.StatusBadRequest},
		{"delay_for too long", "t", url.Values{"query": {`{app="api"}`}, "delay_for": {"6"}}, http.StatusBadRequest},
		{"bad delay_for", "t", url.Values{"query": {`{app="api"}`}, "delay_for": {"1s"}}, http.StatusBadRequest},
		{"bad start", "t", url.Values{"query": {`{app="api"}`}, "start": {"then"}}, http.StatusBadRequest},
	}
	for _, tc := range cases {
		if _, code := tailDial(t, tq, tc.tenant, tc.params); code != tc.code {
			t.Errorf("%s: status %d, want %d", tc.name, code, tc.code)
		}
	}
	tq.limits.MaxQueryParallelism = 0
	if _, code := tailDial(t, tq, "t", url.Values{"query": {`{app="api"}`}}); code != http.StatusBadRequest {
		t.Errorf("querying disabled: status %d, want 400", code)
	}
	if v := metricstest.Value(t, tq.reg, "loki_querier_tail_active"); v != 0 {
		t.Errorf("loki_querier_tail_active = %v after refusals", v)
	}
}

// TestTailMaxDuration: the server closes a tail after tail_max_duration,
// with a normal close.
func TestTailMaxDuration(t *testing.T) {
	tq := newTestQuerier(t, apiNow, 1, func(c *Config) {
		c.TailPollInterval = 20 * time.Millisecond
		c.TailMaxDuration = 300 * time.Millisecond
	})
	tq.ingesters[0].add("t", apiLS("app", "api"), apiLines("x", apiNow.Add(-10*time.Minute), time.Second, 3)...)
	start := time.Now()
	conn, code := tailDial(t, tq, "t", url.Values{"query": {`{app="api"}`}})
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", code)
	}
	if got := tailRead(t, conn, 5*time.Second); len(got) != 3 {
		t.Errorf("first message %v", got)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := conn.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("after tail_max_duration: %v, want a normal close", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 4*time.Second {
		t.Errorf("closed after %v, tail_max_duration is 300ms", d)
	}
	waitTailsGone(t, tq)
}

// TestTailSameTimestampGroup: more lines share one timestamp than a poll
// may return (max(max_entries_limit_per_query, limit)); the tail still
// sends each of them once and then goes on to newer lines, rather than
// reading the same full batch at that timestamp forever.
func TestTailSameTimestampGroup(t *testing.T) {
	tq := newTestQuerier(t, apiNow, 1, func(c *Config) { c.TailPollInterval = 20 * time.Millisecond })
	tq.limits.MaxEntriesLimitPerQuery = 10
	api := apiLS("app", "api")
	ing := tq.ingesters[0]
	ing.add("t", api, tailEntry(apiNow.Add(-30*time.Minute), "before"))
	conn, code := tailDial(t, tq, "t", url.Values{
		"query": {`{app="api"}`}, "limit": {"5"},
		"start": {strconv.FormatInt(apiNow.Add(-45*time.Minute).UnixNano(), 10)},
	})
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", code)
	}
	if got := tailLines(tailRead(t, conn, 5*time.Second)); !slices.Equal(got, []string{"before"}) {
		t.Fatalf("first message %v, want [before]", got)
	}
	same := apiNow.Add(-10 * time.Minute)
	var group []push.Entry
	for i := range 25 {
		group = append(group, tailEntry(same, "same-"+strconv.Itoa(100+i)))
	}
	ing.add("t", api, group...)
	time.Sleep(60 * time.Millisecond) // a few polls
	ing.add("t", api, tailEntry(apiNow.Add(-5*time.Minute), "after"))

	seen := map[string]int{}
	for _, l := range tailUntil(t, conn, "after", 5*time.Second) {
		seen[l.line]++
	}
	for _, e := range append(group, tailEntry(time.Time{}, "after")) {
		if seen[e.Line] != 1 {
			t.Errorf("%s received %d times, want once", e.Line, seen[e.Line])
		}
	}
	if len(seen) != len(group)+1 {
		t.Errorf("received %d distinct lines, want %d", len(seen), len(group)+1)
	}
}

// TestTailClientThatNeverReads: a client that opens a tail and never
// reads (its socket buffers full) is dropped after tail_write_timeout,
// freeing the tail, rather than held until tail_max_duration.
func TestTailClientThatNeverReads(t *testing.T) {
	tq := newTestQuerier(t, apiNow, 1, func(c *Config) {
		c.TailPollInterval = 20 * time.Millisecond
		c.TailWriteTimeout = 200 * time.Millisecond
	})
	// 5000 lines of 4 KiB: a 20 MB first message, past what loopback
	// socket buffers hold (a few MB each way).
	line := strings.Repeat("x", 4<<10)
	var es []push.Entry
	for i := range 5000 {
		es = append(es, tailEntry(apiNow.Add(-30*time.Minute+time.Duration(i)*time.Millisecond), line))
	}
	tq.ingesters[0].add("t", apiLS("app", "api"), es...)
	conn, code := tailDial(t, tq, "t", url.Values{"query": {`{app="api"}`}, "limit": {"5000"}})
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", code)
	}
	defer conn.Close()
	// Never read; the tail must start, then end on its own.
	tailActive := func() float64 { return metricstest.Value(t, tq.reg, "loki_querier_tail_active") }
	deadline := time.Now().Add(10 * time.Second)
	for tailActive() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the tail never started")
		}
		time.Sleep(time.Millisecond)
	}
	for tailActive() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a tail whose client never reads is still open; tail_write_timeout is 200ms")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
