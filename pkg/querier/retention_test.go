package querier

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/lokilab/lokilab/pkg/compactor"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// TestRetentionThroughQueries: the compactor applies a tenant's
// retention_period and a retention_stream rule on an injected clock; the
// query API then answers exactly the lines of the chunks that have not
// expired — before the sweep (the index no longer names the expired
// chunks) and after it (their objects are gone), without an error — and
// another tenant keeps everything.
func TestRetentionThroughQueries(t *testing.T) {
	day0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	tq := newTestQuerier(t, day0.Add(72*time.Hour), 0, nil)
	prod := labels.New(labels.Label{Name: "app", Value: "api"}, labels.Label{Name: "env", Value: "prod"})
	debug := labels.New(labels.Label{Name: "app", Value: "debug"}, labels.Label{Name: "env", Value: "dev"})
	// One chunk per stream per hour for three days, a line every 10
	// minutes: a chunk's newest line is at :50.
	type line struct {
		stream  string
		e       push.Entry
		through int64 // the newest entry of the line's chunk
	}
	var lines []line
	for _, tn := range []string{"a", "b"} {
		for h := range 72 {
			for _, ls := range []labels.Labels{prod, debug} {
				var es []push.Entry
				for m := 0; m < 60; m += 10 {
					ts := day0.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
					es = append(es, push.Entry{Timestamp: ts.UnixNano(), Line: fmt.Sprintf("%s %s hour=%d minute=%d", tn, ls.Get("app"), h, m)})
				}
				flush(t, tq.bkt, tn, ls, es, fmt.Sprintf("%s-%d", ls.Get("app"), h))
				if tn == "a" {
					for _, e := range es {
						lines = append(lines, line{ls.String(), e, es[len(es)-1].Timestamp})
					}
				}
			}
		}
	}

	la := tenant.DefaultLimits()
	la.RetentionPeriod = model.Duration(48 * time.Hour)
	la.RetentionStream = []tenant.StreamRetention{{Selector: `{app="debug"}`, Priority: 1, Period: model.Duration(12 * time.Hour)}}
	var (
		mu  sync.Mutex
		now = day0.Add(72 * time.Hour)
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var cc compactor.Config
	cc.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	cc.RetentionEnabled = true
	cc.RetentionDeleteDelay = 2 * time.Hour
	comp, err := compactor.New(cc, tq.bkt, fixedLimits{tq.limits, map[string]*tenant.Limits{"a": &la}}, prometheus.NewRegistry(), nil, clock)
	if err != nil {
		t.Fatal(err)
	}

	// want is tenant a's lines whose chunk has not expired at now.
	want := func(now time.Time) map[string]int {
		out := map[string]int{}
		for _, l := range lines {
			period := 48 * time.Hour
			if l.stream == debug.String() {
				period = 12 * time.Hour
			}
			if l.through >= now.Add(-period).UnixNano() {
				out[l.e.Line]++
			}
		}
		return out
	}
	got := func(tn string) map[string]int {
		t.Helper()
		out := map[string]int{}
		v := url.Values{"query": {`{env=~".+"}`}, "start": {strconv.FormatInt(day0.UnixNano(), 10)},
			"end": {strconv.FormatInt(day0.Add(73*time.Hour).UnixNano(), 10)}, "limit": {"5000"}, "direction": {"forward"}}
		code, body := tq.get(t, tn, "/loki/api/v1/query_range", v)
		var r queryResponse
		if err := json.Unmarshal(body, &r); err != nil || code != 200 {
			t.Fatalf("tenant %s: %d %s", tn, code, body)
		}
		var streams []streamJSON
		if err := json.Unmarshal(r.Data.Result, &streams); err != nil {
			t.Fatal(err)
		}
		for _, s := range streams {
			for _, kv := range s.Values {
				out[kv[1]]++
			}
		}
		return out
	}
	check := func(when string) {
		t.Helper()
		w, g := want(clock()), got("a")
		if len(w) == 0 || len(w) == len(lines) {
			t.Fatalf("%s: test setup: %d of %d lines kept", when, len(w), len(lines))
		}
		for l := range w {
			if g[l] != 1 {
				t.Fatalf("%s: unexpired line %q answered %d times", when, l, g[l])
			}
		}
		for l := range g {
			if w[l] == 0 {
				t.Fatalf("%s: expired line %q still answered", when, l)
			}
		}
		if b := got("b"); len(b) != len(lines) {
			t.Fatalf("%s: tenant b (no retention) answered %d of %d lines", when, len(b), len(lines))
		}
		t.Logf("%s: tenant a answers %d of %d lines, tenant b all", when, len(g), len(lines))
	}

	if err := comp.Compact(t.Context()); err != nil {
		t.Fatal(err)
	}
	check("marked, not swept")
	mu.Lock()
	now = now.Add(3 * time.Hour)
	mu.Unlock()
	if err := comp.Compact(t.Context()); err != nil {
		t.Fatal(err)
	}
	check("swept")
}
