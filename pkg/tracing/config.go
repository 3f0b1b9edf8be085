package tracing

import (
	"flag"
	"fmt"
)

// Config switches tracing on and says where spans go. With both the OTLP
// endpoint and the recorder off (the default) tracing is a no-op.
type Config struct {
	// OTLPEndpoint is an OTLP/HTTP collector (Tempo, Jaeger, the
	// OpenTelemetry collector): host:port (plain HTTP, path /v1/traces) or
	// a full URL. Default empty: no export. Spans are batched and sent in
	// the background; an unreachable collector costs dropped spans, never
	// a slower push.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// SampleRatio is the fraction of new traces recorded (a request with
	// a sampled traceparent is always recorded: parent-based). Default
	// 1: the lab is small and every trace is worth seeing; lower it under
	// sustained load, where each sampled push costs about ten spans.
	SampleRatio float64 `yaml:"sample_ratio"`
	// RecorderSpans keeps the last N finished spans in memory and serves
	// them at /debug/traces (the trace scenario reads them there).
	// Default 0: off. Each span costs a few hundred bytes.
	RecorderSpans int `yaml:"recorder_spans"`
}

// RegisterFlags registers the tracing flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.OTLPEndpoint, "tracing.otlp-endpoint", "", "OTLP/HTTP trace collector (host:port or URL); empty: no export.")
	fs.Float64Var(&c.SampleRatio, "tracing.sample-ratio", 1, "Fraction of new traces recorded (parent-based: sampled parents are always kept).")
	fs.IntVar(&c.RecorderSpans, "tracing.recorder-spans", 0, "Keep the last N finished spans in memory and serve them at /debug/traces; 0: off.")
}

// Validate reports a configuration tracing cannot run with.
func (c *Config) Validate() error {
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		return fmt.Errorf("tracing: sample_ratio %v: want 0..1", c.SampleRatio)
	}
	if c.RecorderSpans < 0 {
		return fmt.Errorf("tracing: recorder_spans %d must not be negative", c.RecorderSpans)
	}
	return nil
}

// Enabled reports whether spans are recorded at all.
func (c *Config) Enabled() bool { return c.OTLPEndpoint != "" || c.RecorderSpans > 0 }
