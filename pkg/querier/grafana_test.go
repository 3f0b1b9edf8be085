package querier

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
)

// TestGrafanaRequests: the requests Grafana's Loki data source sends
// (read from its source: "Save & test", Explore's logs and log volume, the
// label browser) succeed and answer what the UI reads.
func TestGrafanaRequests(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	tq := newTestQuerier(t, now, 1, nil)
	for i, lvl := range []string{"info", "error", "info", "warn"} {
		ls := labels.New(labels.Label{Name: "service_name", Value: "checkout"}, labels.Label{Name: "pod", Value: fmt.Sprint(i)})
		var es []push.Entry
		for m := range 30 {
			es = append(es, push.Entry{Timestamp: now.Add(-time.Duration(m) * time.Minute).UnixNano(), Line: fmt.Sprintf("level=%s msg=\"order %d\"", lvl, m)})
		}
		flush(t, tq.bkt, "a", ls, es[10:], fmt.Sprint("f", i))
		tq.ingesters[0].add("a", ls, es[:12]...)
	}
	ns := func(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }
	// Grafana's range ends at "now"; a log query's end is exclusive, as in
	// Loki, so the line stamped exactly now would be left out.
	start, end := ns(now.Add(-time.Hour)), ns(now.Add(time.Second))

	type check func(t *testing.T, r queryResponse, body []byte)
	for _, tc := range []struct {
		name, path string
		params     url.Values
		check      check
	}{
		{"save and test", "/loki/api/v1/query", url.Values{"query": {"vector(1)+vector(1)"}, "time": {"4"}}, func(t *testing.T, r queryResponse, body []byte) {
			var v []vectorJSON
			if err := json.Unmarshal(r.Data.Result, &v); err != nil || r.Data.ResultType != "vector" || len(v) != 1 || v[0].Value[1] != "2" {
				t.Fatalf("Grafana needs one sample of value 2: %s", body)
			}
		}},
		{"explore logs", "/loki/api/v1/query_range", url.Values{"query": {"{service_name=\"checkout\"} |= ``"}, "start": {start}, "end": {end},
			"limit": {"1000"}, "direction": {"backward"}, "step": {"2000ms"}}, func(t *testing.T, r queryResponse, body []byte) {
			var s []streamJSON
			if err := json.Unmarshal(r.Data.Result, &s); err != nil || r.Data.ResultType != "streams" || len(s) != 4 || len(s[0].Values) != 30 {
				t.Fatalf("4 streams of 30 lines expected: %.300s", body)
			}
		}},
		{"log volume", "/loki/api/v1/query_range", url.Values{"query": {`sum by (level, detected_level) (count_over_time({service_name="checkout"} | logfmt | drop __error__[1m]))`},
			"start": {start}, "end": {end}, "step": {"60"}}, func(t *testing.T, r queryResponse, body []byte) {
			var m []matrixJSON
			if err := json.Unmarshal(r.Data.Result, &m); err != nil || r.Data.ResultType != "matrix" || len(m) != 3 {
				t.Fatalf("one series per level expected: %.300s", body)
			}
			total := 0.0
			for _, s := range m {
				for _, v := range s.Values {
					f, _ := strconv.ParseFloat(v[1].(string), 64)
					total += f
				}
			}
			if total != 120 {
				t.Fatalf("the volume sums to %v lines, want 120: %.300s", total, body)
			}
		}},
		{"label names", "/loki/api/v1/labels", url.Values{"start": {start}, "end": {end}}, nil},
		{"label values", "/loki/api/v1/label/pod/values", url.Values{"start": {start}, "end": {end}, "query": {`{service_name="checkout"}`}}, nil},
		{"series", "/loki/api/v1/series", url.Values{"match[]": {`{service_name="checkout"}`}, "start": {start}, "end": {end}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := tq.get(t, "a", tc.path, tc.params)
			if code != http.StatusOK {
				t.Fatalf("%d %s", code, body)
			}
			var generic struct {
				Status   string          `json:"status"`
				Data     json.RawMessage `json:"data"`
				Warnings []string        `json:"warnings"`
			}
			if err := json.Unmarshal(body, &generic); err != nil || generic.Status != "success" || len(generic.Data) < 3 {
				t.Fatalf("not a success response: %s", body)
			}
			if len(generic.Warnings) > 0 {
				t.Fatalf("warnings %q", generic.Warnings)
			}
			if tc.check != nil {
				var r queryResponse
				if err := json.Unmarshal(body, &r); err != nil {
					t.Fatal(err)
				}
				tc.check(t, r, body)
			}
		})
	}
	// The query-size estimate: Loki answers /index/stats bare, and that
	// is how Grafana reads it.
	code, body := tq.get(t, "a", "/loki/api/v1/index/stats", url.Values{"query": {`{service_name="checkout"}`}, "start": {start}, "end": {end}})
	var st struct {
		Streams, Chunks, Entries, Bytes *uint64
	}
	if err := json.Unmarshal(body, &st); code != http.StatusOK || err != nil || st.Streams == nil || st.Chunks == nil || st.Entries == nil || st.Bytes == nil || *st.Entries == 0 {
		t.Errorf("index stats: %d %s, want Loki's bare {streams, chunks, entries, bytes}", code, body)
	}
	if bytes.Contains(body, []byte(`"data"`)) || bytes.Contains(body, []byte(`"warnings"`)) {
		t.Errorf("index stats: %s, want no envelope and no warnings when whole", body)
	}
}
