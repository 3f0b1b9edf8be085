package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/lokilab/lokilab/internal/metricstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type exampleConfig struct {
	Port  int    `yaml:"port"`
	Level string `yaml:"level"`
}

// startServer runs a server on a free loopback port until the test ends.
func startServer(t *testing.T, opts Options, setup func(*Server)) (*Server, *prometheus.Registry, string) {
	t.Helper()
	return startServerConfig(t, testConfig(), opts, setup)
}

func startServerConfig(t *testing.T, cfg Config, opts Options, setup func(*Server)) (*Server, *prometheus.Registry, string) {
	t.Helper()
	reg := NewRegistry()
	opts.Registerer, opts.Gatherer = reg, reg
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s, reg, "http://" + s.Addr()
}

func testConfig() Config {
	return Config{
		HTTPListenAddress: "127.0.0.1", HTTPListenPort: 0,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
		GracefulShutdownTimeout: 5 * time.Second, LogLevel: "info", LogFormat: "logfmt",
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestRouteName(t *testing.T) {
	tests := map[string]string{
		"POST /loki/api/v1/push":               "loki_api_v1_push",
		"GET /loki/api/v1/label/{name}/values": "loki_api_v1_label_name_values",
		"/metrics":                             "metrics",
		"GET /debug/pprof/":                    "debug_pprof",
		"/":                                    "root",
		"GET /api/prom/push":                   "api_prom_push",
		"GET /loki/api/v1/index/stats":         "loki_api_v1_index_stats",
		"DELETE /loki/api/v1/delete/{id}/{extra}": "loki_api_v1_delete_id_extra",
	}
	for pattern, want := range tests {
		if got := RouteName(pattern); got != want {
			t.Errorf("RouteName(%q) = %q, want %q", pattern, got, want)
		}
	}
}

func TestRequestDurationIsLabelledLikeLoki(t *testing.T) {
	_, reg, base := startServer(t, Options{}, func(s *Server) {
		s.Handle("POST /loki/api/v1/push", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}))
		s.Handle("GET /teapot", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "short and stout", http.StatusTeapot)
		}))
	})
	for range 3 {
		resp, err := http.Post(base+"/loki/api/v1/push", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if code, _ := get(t, base+"/teapot"); code != http.StatusTeapot {
		t.Fatalf("teapot status %d", code)
	}
	want := `
# HELP loki_inflight_requests Current number of inflight requests.
# TYPE loki_inflight_requests gauge
loki_inflight_requests{method="GET",route="teapot"} 0
loki_inflight_requests{method="POST",route="loki_api_v1_push"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "loki_inflight_requests"); err != nil {
		t.Error(err)
	}
	if n := metricstest.HistogramCount(t, reg, "loki_request_duration_seconds", "method", "POST", "route", "loki_api_v1_push", "status_code", "204", "ws", "false"); n != 3 {
		t.Errorf("push observations = %d, want 3", n)
	}
	if n := metricstest.HistogramCount(t, reg, "loki_request_duration_seconds", "route", "teapot", "status_code", "418"); n != 1 {
		t.Errorf("teapot observations = %d, want 1", n)
	}
}

func TestPanicIsAnswered500AndCounted(t *testing.T) {
	_, reg, base := startServer(t, Options{}, func(s *Server) {
		s.Handle("GET /boom", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	})
	code, body := get(t, base+"/boom")
	if code != http.StatusInternalServerError || !strings.Contains(body, "internal server error") {
		t.Fatalf("panic answered %d %q, want 500", code, body)
	}
	if got := metricstest.Value(t, reg, "lokilab_http_handler_panics_total", "route", "boom"); got != 1 {
		t.Errorf("panics counted %v, want 1", got)
	}
	// The process survived and still serves.
	if code, _ := get(t, base+"/ready"); code != http.StatusOK {
		t.Errorf("after a panic /ready = %d", code)
	}
}

func TestReadiness(t *testing.T) {
	var failing error = errors.New("kafka unreachable")
	_, _, base := startServer(t, Options{}, func(s *Server) {
		s.AddReadinessCheck("distributor", func(context.Context) error { return failing })
	})
	code, body := get(t, base+"/ready")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "distributor not ready: kafka unreachable") {
		t.Fatalf("/ready = %d %q, want 503 naming the failing check", code, body)
	}
	failing = nil
	if code, body := get(t, base+"/ready"); code != http.StatusOK || body != "ready\n" {
		t.Fatalf("/ready = %d %q, want 200 ready", code, body)
	}
}

func TestConfigEndpoint(t *testing.T) {
	cur := &exampleConfig{Port: 3100, Level: "debug"}
	def := &exampleConfig{Port: 3100, Level: "info"}
	_, _, base := startServer(t, Options{Config: cur, DefaultConfig: def}, nil)
	tests := []struct {
		query    string
		wantCode int
		want     string
	}{
		{"", 200, "port: 3100\nlevel: debug\n"},
		{"?mode=defaults", 200, "port: 3100\nlevel: info\n"},
		{"?mode=diff", 200, "level: debug\n"},
		{"?mode=bogus", 400, "unknown mode"},
	}
	for _, tt := range tests {
		code, body := get(t, base+"/config"+tt.query)
		if code != tt.wantCode || !strings.Contains(body, tt.want) {
			t.Errorf("/config%s = %d %q, want %d containing %q", tt.query, code, body, tt.wantCode, tt.want)
		}
	}
}

func TestMetricsAndPprof(t *testing.T) {
	_, _, base := startServer(t, Options{}, nil)
	code, body := get(t, base+"/metrics")
	if code != 200 || !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "process_cpu_seconds_total") {
		t.Fatalf("/metrics lacks the Go and process collectors (%d)", code)
	}
	code, body = get(t, base+"/debug/pprof/")
	if code != 200 || !strings.Contains(body, "heap") {
		t.Fatalf("/debug/pprof/ = %d", code)
	}
	if code, _ := get(t, base+"/debug/pprof/heap?debug=1"); code != 200 {
		t.Fatalf("/debug/pprof/heap = %d", code)
	}
}

func TestGracefulShutdownLetsInflightRequestsFinish(t *testing.T) {
	reg := NewRegistry()
	s, err := New(testConfig(), Options{Registerer: reg, Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	s.Handle("GET /slow", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		_, _ = w.Write([]byte("finished"))
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	type result struct {
		code int
		body string
		err  error
	}
	resc := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + s.Addr() + "/slow")
		if err != nil {
			resc <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		resc <- result{code: resp.StatusCode, body: string(b)}
	}()
	<-started
	cancel() // SIGTERM arrives while /slow is in flight

	// Shutdown waits for the in-flight request: Run has not returned.
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) while a request was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	r := <-resc
	if r.err != nil || r.code != 200 || r.body != "finished" {
		t.Fatalf("in-flight request got %d %q %v, want 200 finished", r.code, r.body, r.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := http.Get("http://" + s.Addr() + "/ready"); err == nil {
		t.Fatal("server still accepts connections after shutdown")
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestNewRejectsBadConfig(t *testing.T) {
	reg := NewRegistry()
	for _, mutate := range []func(*Config){
		func(c *Config) { c.LogLevel = "chatty" },
		func(c *Config) { c.LogFormat = "xml" },
		func(c *Config) { c.HTTPListenPort = 70000 },
	} {
		cfg := testConfig()
		mutate(&cfg)
		if _, err := New(cfg, Options{Registerer: reg, Gatherer: reg}); err == nil {
			t.Errorf("New accepted %+v", cfg)
		}
	}
}
