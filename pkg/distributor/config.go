package distributor

import (
	"errors"
	"flag"
	"time"

	"github.com/lokilab/lokilab/pkg/config"
)

// Config is the distributor's own configuration. Limits that vary per tenant
// live in tenant.Limits; Kafka settings in kafka.Config.
type Config struct {
	// MaxRecvMsgSize bounds a push body, both as sent and after
	// decompression; larger bodies get 413. Default 100MiB, Loki's. One
	// request can hold several times this while it is decoded (the body,
	// its decompressed form, the decoded lines).
	MaxRecvMsgSize config.ByteSize `yaml:"max_recv_msg_size"`
	// MaxInflightPushBytes bounds the memory pushes hold: each request is
	// charged for its body, its decompressed form and its decoding as soon
	// as their sizes are known (the body by Content-Length before it is
	// read), and its records from encoding until Kafka answers for them,
	// which can outlast the push's answer. A push that would exceed it gets
	// 503 at once; a push alone in flight is always admitted. Default
	// 512MiB. This is what keeps a slow or stalled Kafka, or a burst of
	// large pushes, from growing the distributor until it is OOM-killed:
	// memory stays bounded and clients see back-pressure they can retry.
	// 0 disables the limit.
	MaxInflightPushBytes config.ByteSize `yaml:"max_inflight_push_bytes"`
	// Breaker is the circuit breaker around Kafka writes.
	Breaker BreakerConfig `yaml:"kafka_circuit_breaker"`
	// StreamIdleTimeout is how long a stream counts as active for
	// max_global_streams_per_user after its last push. Default 30m, the
	// ingesters' chunk_idle_period: by then an idle stream's chunk is
	// flushed and it no longer costs ingester memory. Shorter frees a
	// tenant's slots sooner, at the price of admitting streams the
	// ingesters still hold.
	StreamIdleTimeout time.Duration `yaml:"stream_idle_timeout"`
	// TracePropagation copies the push's trace context into every Kafka
	// record's traceparent header (RECORD.md), so the ingesters' spans
	// join the push's trace. Default true; it costs ~70 bytes a record.
	// false is the trace scenario's broken knob: the trace ends at Kafka.
	TracePropagation bool `yaml:"kafka_trace_propagation"`
}

// BreakerConfig configures the circuit breaker around Kafka writes.
//
// Closed, every push is written. After ConsecutiveFailures failed writes in a
// row the breaker opens: pushes fail at once with 503 instead of each waiting
// the full write timeout, which frees the distributor's memory and the
// clients' connections while Kafka is down. After OpenTimeout it lets
// HalfOpenRequests probe pushes through; their success closes it, a failure
// opens it again.
type BreakerConfig struct {
	// Enabled turns the breaker on. Default true.
	Enabled bool `yaml:"enabled"`
	// ConsecutiveFailures that open the breaker. Default 5.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// OpenTimeout is how long the breaker stays open before probing.
	// Default 5s: short enough that a recovered Kafka is used again soon,
	// long enough that a dead one is not hammered.
	OpenTimeout time.Duration `yaml:"open_timeout"`
	// HalfOpenRequests is how many probe pushes may run while half-open.
	// Default 1.
	HalfOpenRequests int `yaml:"half_open_requests"`
}

// RegisterFlags registers the distributor flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.MaxRecvMsgSize = 100 << 20
	fs.Var(&c.MaxRecvMsgSize, "distributor.max-recv-msg-size", "Maximum push body size, compressed and decompressed.")
	c.MaxInflightPushBytes = 512 << 20
	fs.Var(&c.MaxInflightPushBytes, "distributor.max-inflight-push-bytes", "Maximum bytes held by pushes being decoded or awaiting Kafka; more gets 503. 0 disables.")
	fs.DurationVar(&c.StreamIdleTimeout, "distributor.stream-idle-timeout", 30*time.Minute, "How long a stream counts as active for the stream limit after its last push.")
	fs.BoolVar(&c.Breaker.Enabled, "distributor.kafka-breaker.enabled", true, "Enable the circuit breaker around Kafka writes.")
	fs.IntVar(&c.Breaker.ConsecutiveFailures, "distributor.kafka-breaker.consecutive-failures", 5, "Consecutive failed Kafka writes that open the breaker.")
	fs.DurationVar(&c.Breaker.OpenTimeout, "distributor.kafka-breaker.open-timeout", 5*time.Second, "How long the breaker stays open before probing Kafka.")
	fs.IntVar(&c.Breaker.HalfOpenRequests, "distributor.kafka-breaker.half-open-requests", 1, "Probe pushes allowed while the breaker is half-open.")
	fs.BoolVar(&c.TracePropagation, "distributor.kafka-trace-propagation", true, "Copy the push's trace context into each Kafka record's traceparent header.")
}

// Validate reports a configuration the distributor cannot run with.
func (c *Config) Validate() error {
	if c.StreamIdleTimeout <= 0 {
		return errors.New("distributor: stream_idle_timeout must be positive")
	}
	if c.MaxRecvMsgSize == 0 {
		return errors.New("distributor: max_recv_msg_size must be positive")
	}
	if c.Breaker.Enabled && (c.Breaker.ConsecutiveFailures < 1 || c.Breaker.HalfOpenRequests < 1 || c.Breaker.OpenTimeout <= 0) {
		return errors.New("distributor: kafka_circuit_breaker needs consecutive_failures and half_open_requests of at least 1 and a positive open_timeout")
	}
	return nil
}
