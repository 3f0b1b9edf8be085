package querier

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
)

// TestMaxQuerierBytesRead: a split interval that would read more line
// bytes than max_querier_bytes_read is refused with Loki's 400, whether
// the bytes are in the store (refused before any chunk is fetched) or in
// an ingester (refused as they arrive); under the limit it answers.
func TestMaxQuerierBytesRead(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	ls := labels.New(labels.Label{Name: "app", Value: "api"})
	lines := func(from time.Time) []push.Entry {
		var es []push.Entry
		for i := range 100 {
			es = append(es, push.Entry{Timestamp: from.Add(time.Duration(i) * time.Second).UnixNano(), Line: fmt.Sprintf("%03d %s", i, strings.Repeat("x", 96))})
		}
		return es
	}
	for _, where := range []string{"store", "ingester"} {
		t.Run(where, func(t *testing.T) {
			tq := newTestQuerier(t, now, 1, nil)
			if where == "store" {
				flush(t, tq.bkt, "a", ls, lines(now.Add(-30*time.Minute)), "f")
			} else {
				tq.ingesters[0].add("a", ls, lines(now.Add(-30*time.Minute))...)
			}
			q := url.Values{"query": {`{app="api"}`}, "limit": {"1000"}}
			tq.limits.MaxQuerierBytesRead = 5000 // 50 of the 100-byte lines
			code, body := tq.get(t, "a", "/loki/api/v1/query_range", q)
			if code != http.StatusBadRequest || !strings.Contains(string(body), "query too large to execute on a single querier") {
				t.Fatalf("over the limit: %d %s", code, body)
			}
			tq.limits.MaxQuerierBytesRead = 20000
			if code, body := tq.get(t, "a", "/loki/api/v1/query_range", q); code != http.StatusOK {
				t.Fatalf("under the limit: %d %s", code, body)
			}
		})
	}
}
