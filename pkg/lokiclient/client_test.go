package lokiclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestRequests: what the client sends — paths under a prefix, times as
// nanoseconds, the tenant header, defaults left to the server — and how
// it reads errors and both shapes of /index/stats.
func TestRequests(t *testing.T) {
	var got *http.Request
	answer := `{"status":"success","data":{"resultType":"streams","result":[]}}`
	status := 200
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.WriteHeader(status)
		_, _ = w.Write([]byte(answer))
	}))
	defer srv.Close()
	ctx := context.Background()
	at := time.Unix(1795946400, 5)

	c := New(srv.URL+"/loki-gw/", WithTenant("team-a"))
	if _, err := c.QueryRange(ctx, RangeQuery{Query: `{a="b"}`, Start: at, End: at.Add(time.Second), Step: 1500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	q := got.URL.Query()
	if got.URL.Path != "/loki-gw/loki/api/v1/query_range" || q.Get("start") != "1795946400000000005" || q.Get("end") != "1795946401000000005" ||
		q.Get("step") != "1.5" || q.Has("limit") || q.Has("direction") || got.Header.Get(TenantHeader) != "team-a" {
		t.Fatalf("sent %s %v", got.URL, got.Header)
	}

	// Without a scheme, http is meant; without a tenant, no header.
	c = New(strings.TrimPrefix(srv.URL, "http://"))
	if _, err := c.Query(ctx, `vector(1)`, time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	if got.URL.Path != "/loki/api/v1/query" || got.URL.Query().Has("time") || got.Header.Get(TenantHeader) != "" {
		t.Fatalf("sent %s %v", got.URL, got.Header)
	}

	answer = `{"status":"success","data":{"streams":2,"chunks":3,"entries":4,"bytes":5}}`
	st, err := c.IndexStats(ctx, `{a="b"}`, time.Time{}, time.Time{})
	if err != nil || st != (IndexStats{2, 3, 4, 5}) {
		t.Fatalf("wrapped index stats %+v, %v", st, err)
	}
	answer = `{"streams":1,"chunks":2,"entries":3,"bytes":4}` // Loki's bare shape
	if st, err = c.IndexStats(ctx, `{a="b"}`, time.Time{}, time.Time{}); err != nil || st != (IndexStats{1, 2, 3, 4}) {
		t.Fatalf("bare index stats %+v, %v", st, err)
	}

	for body, want := range map[string]string{
		"max entries limit per query exceeded\n":                "max entries limit per query exceeded",
		`{"status":"error","errorType":"bad_data","error":"x"}`: "x",
		"": "Bad Request",
	} {
		answer, status = body, 400
		_, err := c.Labels(ctx, time.Time{}, time.Time{})
		var ae *APIError
		if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Message != want {
			t.Fatalf("answer %q: err %v, want message %q", body, err, want)
		}
	}
}
