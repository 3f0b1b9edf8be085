package scenario

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// TestLoadgenAdapter runs pkg/loadgen through the Load interface against a
// stub that acknowledges every other push: the ack log lands in the report
// directory, every push is observed with its outcome, and the client's
// series reach the sampler.
func TestLoadgenAdapter(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			http.Error(w, "Kafka writes are failing; circuit breaker is open", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	dir := t.TempDir()
	sampler := NewSampler(SamplerConfig{Interval: 50 * time.Millisecond}, nil, nil)

	cfg := LoadgenDefaults()
	cfg.LinesPerSecond = 2000
	cfg.BatchLines = 20
	cfg.Concurrency = 2
	cfg.Duration = 0
	l := Loadgen("stub", cfg)
	ctx := context.Background()
	if err := l.Start(ctx, LoadTarget{PushURL: srv.URL + "/loki/api/v1/push", Dir: dir, Sampler: sampler}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	if err := l.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	ps := l.Pushes()
	st := StatsOf(ps, time.Time{}, time.Time{}, nil)
	if st.Total < 4 || st.ByClass["2xx"] == 0 || st.ByClass["5xx"] == 0 || st.ByClass["2xx"]+st.ByClass["5xx"] != st.Total {
		t.Fatalf("pushes by class %v of %d", st.ByClass, st.Total)
	}
	for _, p := range ps {
		if p.Class() == "5xx" && p.Outcome.Reason != "breaker_open" {
			t.Fatalf("a 503 classified %v", p.Outcome)
		}
	}
	sum := l.Result()
	if sum.Accepted.Pushes != int64(st.ByClass["2xx"]) {
		t.Fatalf("loadgen accepted %d pushes, the observer saw %d", sum.Accepted.Pushes, st.ByClass["2xx"])
	}
	if l.AckLog() != filepath.Join(dir, "stub.acks") {
		t.Fatalf("ack log at %s", l.AckLog())
	}
	if fi, err := os.Stat(l.AckLog()); err != nil || fi.Size() == 0 {
		t.Fatalf("ack log: %v", err)
	}
	if len(sampler.Select(Selector{Name: "lokilab_load_pushes_total", Target: "load:stub", Labels: map[string]string{"outcome": "2xx"}})) != 1 {
		t.Fatal("no client series recorded in the sampler")
	}
	if len(l.Summary()) < 3 {
		t.Fatalf("summary %v", l.Summary())
	}
}
