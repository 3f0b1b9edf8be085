package lokiclient

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lokilab/lokilab/pkg/lokiclient/lokiclienttest"
)

type testEntry = lokiclienttest.Entry

// TestAgainstQuerier: every call against lokilab's querier, and AllLogs
// through a group of 1,200 entries at one timestamp with chunks stored
// twice (a replay: the querier removes those duplicates, so the client
// must deliver each entry once).
func TestAgainstQuerier(t *testing.T) {
	rq := lokiclienttest.New(t, nil)
	ctx := context.Background()
	t0 := time.Now().Add(-30 * time.Minute).Truncate(time.Second)
	api, web := map[string]string{"app": "api", "env": "prod"}, map[string]string{"app": "web", "env": "prod"}

	var apiEs, webEs []testEntry
	for i := range 600 { // 1,200 entries at t0 in two streams
		apiEs = append(apiEs, testEntry{Time: t0, Line: fmt.Sprintf("api same-instant %04d", i)})
		webEs = append(webEs, testEntry{Time: t0, Line: fmt.Sprintf("web same-instant %04d", i)})
	}
	for i := range 300 { // then one every 100ms
		apiEs = append(apiEs, testEntry{Time: t0.Add(time.Duration(i+1) * 100 * time.Millisecond), Line: fmt.Sprintf("api later %04d", i)})
	}
	rq.Store(t, "team-a", api, apiEs[:700]...)
	rq.Store(t, "team-a", api, apiEs[500:]...) // a replay: 500..699 again
	rq.Store(t, "team-a", web, webEs...)
	rq.Store(t, "team-b", map[string]string{"app": "other"}, testEntry{Time: t0, Line: "b's line"})

	c := New(rq.URL, WithTenant("team-a"))
	start, end := t0.Add(-time.Minute), t0.Add(time.Minute)

	t.Run("AllLogs", func(t *testing.T) {
		got := map[string]int{}
		var prev time.Time
		pages := 0
		err := c.AllLogs(ctx, `{env="prod"}`, start, end, 500, func(ss []Stream) error {
			pages++
			for _, s := range ss {
				for _, e := range s.Entries {
					got[LabelsString(s.Labels)+" "+e.Line]++
					if e.Timestamp.Before(prev) {
						return fmt.Errorf("%v after %v: not oldest first", e.Timestamp, prev)
					}
				}
			}
			for _, s := range ss {
				if last := s.Entries[len(s.Entries)-1].Timestamp; last.After(prev) {
					prev = last
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(apiEs)+len(webEs) {
			t.Fatalf("%d distinct entries, want %d", len(got), len(apiEs)+len(webEs))
		}
		for k, n := range got {
			if n != 1 {
				t.Fatalf("%q delivered %d times", k, n)
			}
		}
		if pages < 3 {
			t.Fatalf("%d pages for 1,500 entries in pages of 500", pages)
		}
	})

	t.Run("QueryRange logs", func(t *testing.T) {
		res, err := c.QueryRange(ctx, RangeQuery{Query: `{app="api"} |= "later"`, Start: start, End: end, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if res.Type != "streams" || len(res.Streams) != 1 || len(res.Streams[0].Entries) != 5 {
			t.Fatalf("result %+v", res)
		}
		e := res.Streams[0].Entries[0] // backward: the newest first
		if e.Line != "api later 0299" || !e.Timestamp.Equal(t0.Add(300*100*time.Millisecond)) {
			t.Fatalf("newest entry %+v", e)
		}
		st, err := ParseStats(res.Stats)
		if err != nil || st.Summary.TotalEntriesReturned != 5 || st.Querier.Store.TotalChunksRef == 0 {
			t.Fatalf("stats %+v, %v", st, err)
		}
	})

	t.Run("QueryRange metric", func(t *testing.T) {
		res, err := c.QueryRange(ctx, RangeQuery{Query: `sum by (app) (count_over_time({env="prod"}[1m]))`, Start: t0, End: t0.Add(time.Minute), Step: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if res.Type != "matrix" || len(res.Series) != 2 {
			t.Fatalf("result %+v", res)
		}
		s := res.Series[0]
		if s.Metric["app"] != "api" || len(s.Samples) != 3 || !s.Samples[1].Time.Equal(t0.Add(30*time.Second)) {
			t.Fatalf("series %+v", s)
		}
		// (t0-1m, t0]: the 600 at t0; (t0-30s, t0+30s]: those and the
		// 300 later ones; (t0, t0+1m]: the later ones.
		if s.Samples[0].Value != 600 || s.Samples[1].Value != 900 || s.Samples[2].Value != 300 {
			t.Fatalf("samples %+v", s.Samples)
		}
	})

	t.Run("Query instant", func(t *testing.T) {
		res, err := c.Query(ctx, `count_over_time({app="web"}[1m])`, t0.Add(time.Second), 0)
		if err != nil {
			t.Fatal(err)
		}
		if res.Type != "vector" || len(res.Series) != 1 || len(res.Series[0].Samples) != 1 || res.Series[0].Samples[0].Value != 600 {
			t.Fatalf("result %+v", res)
		}
		res, err = c.Query(ctx, `vector(1)+vector(1)`, time.Time{}, 0)
		if err != nil || res.Series[0].Samples[0].Value != 2 {
			t.Fatalf("vector(1)+vector(1) = %+v, %v", res, err)
		}
	})

	t.Run("Labels, LabelValues, Series", func(t *testing.T) {
		names, err := c.Labels(ctx, start, end)
		if err != nil || !slices.Equal(names, []string{"app", "env"}) {
			t.Fatalf("labels %v, %v", names, err)
		}
		values, err := c.LabelValues(ctx, "app", start, end)
		if err != nil || !slices.Equal(values, []string{"api", "web"}) {
			t.Fatalf("values %v, %v", values, err)
		}
		series, err := c.Series(ctx, []string{`{app="web"}`, `{app="nope"}`}, start, end)
		if err != nil || len(series) != 1 || LabelsString(series[0]) != `{app="web", env="prod"}` {
			t.Fatalf("series %v, %v", series, err)
		}
		b, err := New(rq.URL, WithTenant("team-b")).LabelValues(ctx, "app", start, end)
		if err != nil || !slices.Equal(b, []string{"other"}) {
			t.Fatalf("team-b's values %v, %v", b, err)
		}
	})

	t.Run("errors carry Loki's message", func(t *testing.T) {
		_, err := New(rq.URL).Labels(ctx, start, end)
		var ae *APIError
		if !errors.As(err, &ae) || ae.StatusCode != 401 || ae.Message != "no org id" {
			t.Fatalf("without a tenant: %v", err)
		}
		_, err = c.QueryRange(ctx, RangeQuery{Query: `{app="api"`, Start: start, End: end})
		if !errors.As(err, &ae) || ae.StatusCode != 400 || !strings.Contains(ae.Message, "parse error") {
			t.Fatalf("bad query: %v", err)
		}
		_, err = c.Query(ctx, `{app="api"}`, time.Time{}, 0)
		if !errors.As(err, &ae) || !strings.Contains(ae.Message, "log queries are not supported as an instant query") {
			t.Fatalf("instant log query: %v", err)
		}
	})
}

// TestTailAgainstQuerier: the last lines first, then a line flushed while
// tailing, then the context ends the tail.
func TestTailAgainstQuerier(t *testing.T) {
	rq := lokiclienttest.New(t, nil)
	now := time.Now()
	ls := map[string]string{"app": "tail"}
	var es []testEntry
	for i := range 20 {
		es = append(es, testEntry{Time: now.Add(-time.Minute + time.Duration(i)*time.Second), Line: fmt.Sprintf("old %02d", i)})
	}
	rq.Store(t, "t", ls, es...)
	c := New(rq.URL, WithTenant("t"))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []string
	flushed := false
	err := c.Tail(ctx, `{app="tail"}`, now.Add(-5*time.Minute), 3, 0, func(ss []Stream) error {
		for _, s := range ss {
			for _, e := range s.Entries {
				got = append(got, e.Line)
			}
		}
		if !flushed {
			flushed = true
			rq.Store(t, "t", ls, testEntry{Time: time.Now(), Line: "new"})
		}
		if slices.Contains(got, "new") {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Tail returned %v, want context.Canceled", err)
	}
	if want := []string{"old 17", "old 18", "old 19", "new"}; !slices.Equal(got, want) {
		t.Fatalf("tailed %q, want %q", got, want)
	}

	err = c.Tail(context.Background(), `sum(rate({app="tail"}[1m]))`, time.Time{}, 0, 0, func([]Stream) error { return nil })
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 400 || !strings.Contains(ae.Message, "log query") {
		t.Fatalf("tail of a metric query: %v", err)
	}
}
