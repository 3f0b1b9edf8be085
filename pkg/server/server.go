// Package server is the HTTP server every lokilab component runs: the
// component's own routes plus the operational endpoints an operator expects
// of a Prometheus-style system.
//
//	/metrics        Prometheus exposition of the registry the main built
//	/ready          200 "ready" when every readiness check passes, else 503
//	/config         the effective configuration as YAML (?mode=defaults|diff)
//	/debug/pprof/   Go profiles, for the lab's memory and latency questions
//
// Every route is instrumented with Loki's loki_request_duration_seconds
// histogram (labels method, route, status_code, ws), so what a user learns
// reading Loki's dashboards applies here. Handlers that panic answer 500 and
// are counted instead of taking the process down.
//
// The listener is bound in New, not in Run, so a caller (a test, or a main
// that prints a banner) knows the address before serving starts.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/tracing"
)

// Options are the server's dependencies.
type Options struct {
	// Registerer receives the server's own metrics; Gatherer is what
	// /metrics exposes. NewRegistry returns a registry that is both.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	Logger     *slog.Logger
	// Config is served at /config; DefaultConfig, when set, at
	// /config?mode=defaults and as the baseline of /config?mode=diff.
	Config        any
	DefaultConfig any
	// Tracing, if set, gives every route a server span (W3C traceparent
	// honoured) and exemplars on loki_request_duration_seconds, and its
	// recorder, if any, is served at /debug/traces. Nil: no spans.
	Tracing *tracing.Provider
}

// Server is an HTTP server with lokilab's operational endpoints.
type Server struct {
	cfg     Config
	opts    Options
	logger  *slog.Logger
	mux     *http.ServeMux
	ln      net.Listener
	srv     *http.Server
	metrics *metrics
	tracer  trace.Tracer

	mu     sync.Mutex
	checks []readinessCheck

	shuttingDown atomic.Bool
}

type readinessCheck struct {
	name  string
	check func(context.Context) error
}

// NewRegistry returns a registry with the Go runtime and process collectors
// registered, as every component's /metrics should have.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// New binds the listener and registers the operational endpoints. Serving
// starts with Run.
func New(cfg Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil || opts.Gatherer == nil {
		return nil, errors.New("server: Registerer and Gatherer are required")
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(cfg.HTTPListenAddress, strconv.Itoa(cfg.HTTPListenPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("server: listen on %s: %w", addr, err)
	}
	s := &Server{
		cfg:     cfg,
		opts:    opts,
		logger:  opts.Logger,
		mux:     http.NewServeMux(),
		ln:      ln,
		metrics: m,
		tracer:  tracing.OrNoop(nil).Tracer("lokilab/server"),
	}
	if opts.Tracing != nil {
		s.tracer = opts.Tracing.Tracer("lokilab/server")
	}
	s.srv = &http.Server{
		Handler:           s.mux,
		ReadTimeout:       cfg.ReadTimeout,
		ReadHeaderTimeout: min(cfg.ReadTimeout, 10*time.Second),
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		// 1 MiB of headers is plenty for any Loki client; the default is
		// the same, written down so the bound is visible.
		MaxHeaderBytes: 1 << 20,
		ErrorLog:       slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}

	s.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{
		Registry:          opts.Registerer,
		EnableOpenMetrics: true, // exemplars need OpenMetrics
	}))
	s.Handle("GET /ready", http.HandlerFunc(s.serveReady))
	s.Handle("GET /config", http.HandlerFunc(s.serveConfig))
	s.Handle("GET /debug/pprof/", http.HandlerFunc(pprof.Index))
	s.Handle("GET /debug/pprof/cmdline", http.HandlerFunc(pprof.Cmdline))
	s.Handle("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	s.Handle("GET /debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
	s.Handle("GET /debug/pprof/trace", http.HandlerFunc(pprof.Trace))
	if opts.Tracing != nil && opts.Tracing.Recorder() != nil {
		s.Handle("GET /debug/traces", tracing.Handler(opts.Tracing.Recorder()))
	}
	return s, nil
}

// TracerProvider is the provider the server's spans come from, for the
// components behind it (nil when the server has none).
func (s *Server) TracerProvider() trace.TracerProvider {
	if s.opts.Tracing == nil {
		return nil
	}
	return s.opts.Tracing
}

// Addr is the address the server listens on, with the port resolved.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Logger is the server's logger, for handlers that want the same sink.
func (s *Server) Logger() *slog.Logger { return s.logger }

// Handle registers h for pattern (net/http ServeMux syntax, e.g.
// "POST /loki/api/v1/push") behind the instrumentation middleware. The
// route label is derived from the pattern's path the way Loki names its
// routes: "/loki/api/v1/push" becomes "loki_api_v1_push".
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, s.instrument(RouteName(pattern), h))
}

// AddReadinessCheck adds a check that /ready runs; the component is ready
// when every check returns nil.
func (s *Server) AddReadinessCheck(name string, check func(context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, readinessCheck{name, check})
}

// Run serves until ctx is done, then stops accepting connections, marks
// itself not ready and gives in-flight requests GracefulShutdownTimeout to
// finish. It returns nil after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	s.logger.Info("http server listening", "addr", s.Addr())

	select {
	case err := <-errc:
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	s.shuttingDown.Store(true)
	s.logger.Info("http server shutting down", "grace", s.cfg.GracefulShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.GracefulShutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		s.srv.Close()
		return fmt.Errorf("server: graceful shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	if s.shuttingDown.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	s.mu.Lock()
	checks := append([]readinessCheck(nil), s.checks...)
	s.mu.Unlock()
	for _, c := range checks {
		if err := c.check(r.Context()); err != nil {
			http.Error(w, fmt.Sprintf("%s not ready: %v", c.name, err), http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ready\n"))
}

// serveConfig prints the effective configuration. mode=defaults prints the
// defaults and mode=diff only the values that differ from them, like Loki.
func (s *Server) serveConfig(w http.ResponseWriter, r *http.Request) {
	var v any
	switch mode := r.URL.Query().Get("mode"); mode {
	case "":
		v = s.opts.Config
	case "defaults":
		v = s.opts.DefaultConfig
	case "diff":
		d, err := diffConfig(s.opts.DefaultConfig, s.opts.Config)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		v = d
	default:
		http.Error(w, fmt.Sprintf("unknown mode %q: want defaults or diff", mode), http.StatusBadRequest)
		return
	}
	if v == nil || (reflect.ValueOf(v).Kind() == reflect.Pointer && reflect.ValueOf(v).IsNil()) {
		http.Error(w, "no configuration registered", http.StatusNotFound)
		return
	}
	out, err := config.YAML(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(out)
}
