package tracing

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Provider is a process's tracer provider with what it exports to.
type Provider struct {
	trace.TracerProvider
	sdk      *sdktrace.TracerProvider
	recorder *Recorder
}

// Options are what New takes beside the config.
type Options struct {
	// Service names the process in every span's resource (service.name).
	Service string
	// Processors are extra span processors (tests).
	Processors []sdktrace.SpanProcessor
}

// New builds the provider cfg asks for: a no-op one when tracing is off,
// otherwise an SDK provider sampling parent-based at cfg.SampleRatio, with
// a batching OTLP/HTTP exporter and/or the in-memory recorder.
func New(ctx context.Context, cfg Config, opts Options) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() && len(opts.Processors) == 0 {
		return &Provider{TracerProvider: noop.NewTracerProvider()}, nil
	}
	service := opts.Service
	if service == "" {
		service = "lokilab"
	}
	po := []sdktrace.TracerProviderOption{
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))),
	}
	p := &Provider{}
	if cfg.RecorderSpans > 0 {
		p.recorder = NewRecorder(cfg.RecorderSpans)
		po = append(po, sdktrace.WithSpanProcessor(p.recorder))
	}
	for _, sp := range opts.Processors {
		po = append(po, sdktrace.WithSpanProcessor(sp))
	}
	if cfg.OTLPEndpoint != "" {
		exp, err := otlptracehttp.New(ctx, endpointOptions(cfg.OTLPEndpoint)...)
		if err != nil {
			return nil, fmt.Errorf("tracing: OTLP exporter for %s: %w", cfg.OTLPEndpoint, err)
		}
		po = append(po, sdktrace.WithBatcher(exp))
	}
	p.sdk = sdktrace.NewTracerProvider(po...)
	p.TracerProvider = p.sdk
	return p, nil
}

// endpointOptions accepts a bare host:port (plain HTTP, the default path
// /v1/traces) or a URL.
func endpointOptions(ep string) []otlptracehttp.Option {
	if strings.HasPrefix(ep, "http://") || strings.HasPrefix(ep, "https://") {
		return []otlptracehttp.Option{otlptracehttp.WithEndpointURL(ep)}
	}
	return []otlptracehttp.Option{otlptracehttp.WithEndpoint(ep), otlptracehttp.WithInsecure()}
}

// Recorder is the in-memory recorder, or nil when recorder_spans is 0.
func (p *Provider) Recorder() *Recorder { return p.recorder }

// ForceFlush exports every span ended so far.
func (p *Provider) ForceFlush(ctx context.Context) error {
	if p.sdk == nil {
		return nil
	}
	return p.sdk.ForceFlush(ctx)
}

// Shutdown flushes and stops the exporters. The provider records nothing
// after it.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p.sdk == nil {
		return nil
	}
	if err := p.sdk.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}

// OrNoop returns tp, or a no-op provider when tp is nil: what a
// component's New does with the TracerProvider of its Deps.
func OrNoop(tp trace.TracerProvider) trace.TracerProvider {
	if tp == nil {
		return noop.NewTracerProvider()
	}
	return tp
}

// Enabled reports whether tp records anything: false for nil and for
// otel's no-op provider, so a hot path can skip its trace bookkeeping.
func Enabled(tp trace.TracerProvider) bool {
	switch v := tp.(type) {
	case nil, noop.TracerProvider:
		return false
	case *Provider:
		return v.sdk != nil
	}
	return true
}

// errNoRecorder is returned by the recorder's HTTP handler when there is
// none.
var errNoRecorder = errors.New("tracing: no span recorder (set -tracing.recorder-spans)")
