package distributor

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lokilab/lokilab/internal/metricstest"
	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
)

// streamsPush is one line in each of the streams {pod="<name>"}.
func streamsPush(id string, pods ...string) *push.Request {
	req := &push.Request{}
	for i, pod := range pods {
		ls := labels.New(labels.Label{Name: "app", Value: "api"}, labels.Label{Name: "pod", Value: pod})
		req.Streams = append(req.Streams, push.Stream{Labels: ls.String(), Entries: []push.Entry{
			{Timestamp: testNow.Add(time.Duration(i) * time.Millisecond).UnixNano(), Line: "line id=" + id + "-" + pod},
		}})
	}
	return req
}

// TestStreamLimit: a tenant at max_global_streams_per_user gets 429
// stream_limit for pushes that create new streams — before anything of
// those streams is written — while its active streams, and other tenants,
// go on; once streams go idle their slots free up.
func TestStreamLimit(t *testing.T) {
	h := newHarness(t, harnessOptions{
		auth:      true,
		overrides: "overrides:\n  noisy:\n    max_global_streams_per_user: 3\n",
		cfg:       func(c *Config) { c.StreamIdleTimeout = 10 * time.Minute },
	})
	rd := h.reader()

	if resp := h.push("noisy", streamsPush("1", "a", "b", "c"), pushtest.Protobuf); resp.code != http.StatusNoContent {
		t.Fatalf("3 streams under a limit of 3: %d %q", resp.code, resp.body)
	}
	rd.next(3)

	// Two new streams beside an active one: the active one is written, the
	// new ones are refused.
	resp := h.push("noisy", streamsPush("2", "a", "d", "e"), pushtest.Protobuf)
	want := "Maximum active stream limit exceeded when trying to create 2 new streams"
	if resp.code != http.StatusTooManyRequests || !strings.Contains(resp.body, want) || !strings.Contains(resp.body, "user: 'noisy'") {
		t.Fatalf("new streams over the limit: %d %q, want 429 %q", resp.code, resp.body, want)
	}
	recs := rd.next(1)
	if ids := pushtest.CountIDs(t, recs); ids["2-a"] != 1 || len(ids) != 1 {
		t.Fatalf("records written for the partly refused push: %v, want only 2-a", ids)
	}
	if got := metricstest.Value(t, h.reg, "loki_discarded_samples_total", "reason", "stream_limit", "tenant", "noisy"); got != 2 {
		t.Fatalf("stream_limit discards = %v, want 2", got)
	}

	// Another tenant is not affected; the noisy one keeps its active streams.
	if resp := h.push("quiet", streamsPush("3", "d", "e", "f", "g"), pushtest.Protobuf); resp.code != http.StatusNoContent {
		t.Fatalf("another tenant: %d %q", resp.code, resp.body)
	}
	if resp := h.push("noisy", streamsPush("4", "a", "b", "c"), pushtest.Protobuf); resp.code != http.StatusNoContent {
		t.Fatalf("active streams at the limit: %d %q", resp.code, resp.body)
	}

	// Idle streams free their slots.
	h.advance(11 * time.Minute)
	h.d.streams.sweep(h.clock())
	if resp := h.push("noisy", streamsPush("5", "x", "y", "z"), pushtest.Protobuf); resp.code != http.StatusNoContent {
		t.Fatalf("new streams after the old ones went idle: %d %q", resp.code, resp.body)
	}
	if got := metricstest.Value(t, h.reg, "lokilab_distributor_active_streams", "tenant", "noisy"); got != 3 {
		t.Fatalf("active streams gauge = %v, want 3", got)
	}
}

// TestStreamTrackerBoundsMemory: however many distinct streams a tenant
// tries, the tracker holds at most the limit.
func TestStreamTrackerBoundsMemory(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	tr := h.d.streams
	var ok []bool
	for i := range 10_000 {
		ok = tr.admit("t", []uint64{streamFingerprint(fmt.Sprint(i))}, 100, testNow, ok)
	}
	tr.mu.Lock()
	n := len(tr.tenants["t"])
	tr.mu.Unlock()
	if n != 100 {
		t.Fatalf("tracker holds %d streams for a limit of 100", n)
	}
}
