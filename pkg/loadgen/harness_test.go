package loadgen

import (
	"context"
	"flag"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lokilab/lokilab/pkg/push"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeLoki plays a Loki push endpoint: it decodes every push with
// pkg/push, as the distributor does, remembers it, and answers as answer
// says (204 when answer is nil).
type fakeLoki struct {
	t *testing.T
	// answer gives the status and body for the n-th push (from 0).
	answer func(n int) (int, string)
	// latency is how long each push takes to answer.
	latency time.Duration

	mu     sync.Mutex
	pushes []received
}

// received is one push as the endpoint saw it.
type received struct {
	at          time.Time // when it arrived, before the endpoint's latency
	tenant      string
	contentType string
	req         *push.Request
	status      int
}

func (f *fakeLoki) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, _, err := push.ReadRequest(r, push.ReadOptions{MaxBytes: 64 << 20})
	if err != nil {
		f.t.Errorf("the push does not decode: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	at := time.Now()
	if f.latency > 0 {
		time.Sleep(f.latency)
	}
	f.mu.Lock()
	n := len(f.pushes)
	status, body := http.StatusNoContent, ""
	if f.answer != nil {
		status, body = f.answer(n)
	}
	f.pushes = append(f.pushes, received{
		at: at, tenant: r.Header.Get("X-Scope-OrgID"), contentType: r.Header.Get("Content-Type"),
		req: req, status: status,
	})
	f.mu.Unlock()
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	http.Error(w, body, status)
}

func (f *fakeLoki) received() []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.pushes)
}

// handlerTransport carries requests to a handler in memory: no sockets,
// so a test can run inside a synctest bubble, where time is fake and a
// goroutine blocked on a real connection would hold the clock still.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	defer r.Body.Close()
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// testConfig is the defaults, as the flags give them, for a push to f in
// memory.
func testConfig(t testing.TB, mutate func(*Config)) Config {
	t.Helper()
	var cfg Config
	cfg.RegisterFlags(newFlagSet())
	cfg.URL = "http://loki.test/loki/api/v1/push"
	cfg.Seed = 42
	cfg.Duration = 2 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	return cfg
}

// run runs a Loadgen against f in memory and returns its summary.
func run(t *testing.T, ctx context.Context, cfg Config, f *fakeLoki, deps Deps) Summary {
	t.Helper()
	deps.Transport = handlerTransport{f}
	l, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := l.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// sentLine is one line as the endpoint received it.
type sentLine struct {
	tenant, stream, line string
	ts                   int64
}

// lines returns every line of the pushes, in the order received.
func lines(pushes []received) (out []sentLine) {
	for _, p := range pushes {
		for _, s := range p.req.Streams {
			for _, e := range s.Entries {
				out = append(out, sentLine{p.tenant, s.Labels, e.Line, e.Timestamp})
			}
		}
	}
	return out
}

func newFlagSet() *flag.FlagSet { return flag.NewFlagSet("test", flag.ContinueOnError) }
