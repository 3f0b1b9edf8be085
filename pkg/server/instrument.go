package server

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/lokilab/lokilab/pkg/tracing"
)

type metrics struct {
	duration *prometheus.HistogramVec
	inflight *prometheus.GaugeVec
	reqBytes *prometheus.HistogramVec
	panics   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "loki_request_duration_seconds",
			Help: "Time (in seconds) spent serving HTTP requests.",
			// Classic buckets for Prometheus 2.x and dashboards, plus
			// native buckets for anyone scraping with native histograms on.
			Buckets:                         []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 25, 50, 100},
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"method", "route", "status_code", "ws"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "loki_inflight_requests",
			Help: "Current number of inflight requests.",
		}, []string{"method", "route"}),
		reqBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "loki_request_message_bytes",
			Help:    "Size (in bytes) of messages received in the request, as sent (compressed).",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 10), // 1 KiB .. 256 MiB
		}, []string{"method", "route"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_http_handler_panics_total",
			Help: "Handler panics recovered and answered with 500. Any increase is a bug.",
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{m.duration, m.inflight, m.reqBytes, m.panics} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: registering metrics: %w", err)
		}
	}
	return m, nil
}

// RouteName turns a ServeMux pattern into Loki's route label:
// "POST /loki/api/v1/label/{name}/values" → "loki_api_v1_label_name_values".
func RouteName(pattern string) string {
	if _, path, ok := strings.Cut(pattern, " "); ok {
		pattern = path
	}
	var b strings.Builder
	underscore := false
	for _, r := range pattern {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			if underscore && b.Len() > 0 {
				b.WriteByte('_')
			}
			underscore = false
			b.WriteRune(r)
		default:
			underscore = true
		}
	}
	if b.Len() == 0 {
		return "root"
	}
	return b.String()
}

func (s *Server) instrument(route string, next http.Handler) http.Handler {
	// Scrapes, readiness polls and profiles are operations on the process,
	// polled every few seconds: spans for them would bury the requests
	// worth tracing.
	traced := route != "metrics" && route != "ready" && !strings.HasPrefix(route, "debug_")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// One server span per request, continuing the client's trace when
		// it sent a traceparent. With tracing off the tracer is a no-op
		// that still carries the client's span context to the handler.
		ctx, span := r.Context(), trace.SpanFromContext(r.Context())
		if traced {
			ctx, span = s.tracer.Start(tracing.Extract(ctx, propagation.HeaderCarrier(r.Header)),
				"HTTP "+r.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer))
			r = r.WithContext(ctx)
		}
		ws := strconv.FormatBool(strings.EqualFold(r.Header.Get("Upgrade"), "websocket"))
		inflight := s.metrics.inflight.WithLabelValues(r.Method, route)
		inflight.Inc()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			inflight.Dec()
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler { //nolint:errorlint // sentinel compared by identity, as net/http does
					panic(p)
				}
				s.metrics.panics.WithLabelValues(route).Inc()
				s.logger.Error("handler panic", "route", route, "panic", p, "stack", string(debug.Stack()))
				if !rec.wroteHeader {
					http.Error(rec, "internal server error", http.StatusInternalServerError)
				}
			}
			status := rec.status
			if !rec.wroteHeader {
				status = http.StatusOK
			}
			elapsed := time.Since(start)
			tracing.Observe(ctx, s.metrics.duration.WithLabelValues(r.Method, route, strconv.Itoa(status), ws), elapsed.Seconds())
			if traced {
				span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", status))
				if status >= 500 {
					span.SetStatus(codes.Error, http.StatusText(status))
				}
				span.End()
			}
			if r.ContentLength > 0 {
				s.metrics.reqBytes.WithLabelValues(r.Method, route).Observe(float64(r.ContentLength))
			}
			level := slog.LevelDebug
			// A 503 from /ready is the answer "not yet", polled by
			// supervisors and load balancers through every start and
			// restart: not worth a warning each time.
			if status >= 500 && !(route == "ready" && status == http.StatusServiceUnavailable) {
				level = slog.LevelWarn
			}
			s.logger.Log(r.Context(), level, "request", "method", r.Method, "route", route, "status", status, "duration", elapsed, "remote", r.RemoteAddr)
		}()
		next.ServeHTTP(rec, r)
	})
}

// statusRecorder remembers the status code written. It passes Flush and
// Hijack through so streaming and websocket handlers (tail) keep working.
type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = http.StatusOK, true
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("response writer does not support hijacking")
	}
	r.status, r.wroteHeader = http.StatusSwitchingProtocols, true
	return h.Hijack()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
