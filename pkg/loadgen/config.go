package loadgen

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"time"

	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// Config is what load to push, where, and how fast. The flag names are
// short because `lokilab load` is their namespace.
type Config struct {
	// URL is the push endpoint. Default lokilab run's,
	// http://127.0.0.1:3100/loki/api/v1/push; Loki's is the same path.
	URL string `yaml:"url"`
	// Tenants is how many tenants push, named TenantPrefix1..N and sent as
	// X-Scope-OrgID; each push is one tenant's, round-robin. Default 1. 0
	// sends no header (a target with auth off files it under "fake"; one
	// with auth on answers 401). More tenants spread the load over more
	// rate limiters, stream limits and index files.
	Tenants int `yaml:"tenants"`
	// TenantPrefix names the tenants. Default "tenant-".
	TenantPrefix string `yaml:"tenant_prefix"`
	// StreamsPerTenant is each tenant's number of streams: the cardinality.
	// Default 10. Each stream costs the ingesters a head chunk in memory
	// and the store at least one chunk per flush, so raising it is how a
	// high-cardinality burst (question 9) is made; a tenant's
	// max_global_streams_per_user (5000 by default) refuses the rest with
	// 429 stream_limit.
	StreamsPerTenant int `yaml:"streams_per_tenant"`
	// StreamsPerPush is how many of the tenant's streams one push carries
	// (consecutive ones from a random one), its lines split evenly between
	// them. Default 4,
	// capped at StreamsPerTenant. A shipper tailing many files sends many
	// streams per push; more streams per push means more Kafka records per
	// push.
	StreamsPerPush int `yaml:"streams_per_push"`
	// BatchLines is the lines per push. Default 100. Larger batches cost
	// fewer requests (less HTTP and JSON overhead per line) and raise each
	// push's latency and memory; Promtail and Alloy batch up to 1MB or 1s.
	BatchLines int `yaml:"batch_lines"`
	// LinesPerSecond caps the total rate of all workers, in lines. Default
	// 1000 (about 250KB/s with the default shapes), well under a tenant's
	// default 4MB/s ingestion limit. 0, with BytesPerSecond also 0, pushes
	// as fast as the workers and the target allow: expect the target's
	// rate limit to answer 429.
	LinesPerSecond float64 `yaml:"lines_per_second"`
	// BytesPerSecond, when set, caps the total rate in line bytes instead
	// of lines (what the distributor's rate limit counts), e.g. "2MB", and
	// LinesPerSecond is ignored. Default 0: LinesPerSecond applies.
	BytesPerSecond config.ByteSize `yaml:"bytes_per_second"`
	// LineSize is the average line size. Default 0: each shape's natural
	// size (about 150 to 700 bytes). Otherwise lines are padded to a size
	// drawn uniformly from half to one and a half times it; a shape is never
	// shortened. Lines over the target's max_line_size (256KB by default)
	// are refused with 400 line_too_long.
	LineSize config.ByteSize `yaml:"line_size"`
	// Shapes is the mix of line shapes, per line: nginx access logs, logfmt
	// and JSON application logs, multi-line stack traces. Default
	// "nginx=4,logfmt=3,json=2,stacktrace=1".
	Shapes Mix `yaml:"shapes"`
	// Pattern reshapes the rate over time.
	Pattern PatternConfig `yaml:"pattern"`
	// Duration is how long to push. Default 1m; 0 pushes until the context
	// ends (Ctrl-C).
	Duration time.Duration `yaml:"duration"`
	// Concurrency is the number of workers, each with its own HTTP client
	// and connection, each waiting for its push's answer before sending
	// the next. Default 4. The rate a target can take is at most
	// Concurrency × BatchLines / push latency lines per second: raise it
	// when latency, not the target, is the limit.
	Concurrency int `yaml:"concurrency"`
	// Encoding is the push body's format: "protobuf" (snappy-compressed,
	// what Promtail and Alloy send) or "json". Default protobuf. JSON costs
	// the target several times more CPU to decode (FIELD-NOTES.md).
	Encoding string `yaml:"encoding"`
	// PushTimeout bounds one push, from sending to the answer. Default 10s,
	// longer than the distributor's Kafka write timeout, so a slow Kafka
	// shows as 503s rather than client timeouts.
	PushTimeout time.Duration `yaml:"push_timeout"`
	// AckLog, if set, is a file that every push answered 204 is appended to
	// (the format is in the package doc), for `lokilab verify`. Default
	// none. It costs about 12 bytes per acknowledged line.
	AckLog string `yaml:"ack_log"`
	// Seed makes the lines reproducible. Default 0: a random seed, printed
	// in the summary.
	Seed uint64 `yaml:"seed"`
	// RunID is put in every line's identity. Default "": drawn from the
	// seed. 1 to 32 of [0-9a-z].
	RunID string `yaml:"run_id"`
	// ProgressInterval is how often the progress line is written. Default
	// 1s.
	ProgressInterval time.Duration `yaml:"progress_interval"`
}

// PatternConfig reshapes the configured rate over time.
type PatternConfig struct {
	// Kind is "steady" (default), "square" (pushes for Duty of every
	// Period, then pauses: bursts, idle streams and flushes) or "spike"
	// (the rate times SpikeFactor for SpikeLength at the start of every
	// Period: what a rate limiter's burst is for).
	Kind string `yaml:"kind"`
	// Period of the square wave or of the spikes. Default 10s.
	Period time.Duration `yaml:"period"`
	// Duty is the square wave's on fraction. Default 0.5.
	Duty float64 `yaml:"duty"`
	// SpikeLength is how long each spike lasts. Default 1s.
	SpikeLength time.Duration `yaml:"spike_length"`
	// SpikeFactor multiplies the rate during a spike. Default 5.
	SpikeFactor float64 `yaml:"spike_factor"`
}

// DefaultURL is lokilab run's push endpoint.
const DefaultURL = "http://127.0.0.1:3100/loki/api/v1/push"

// RegisterFlags registers the load flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "url", DefaultURL, "Push endpoint (lokilab's or Loki's).")
	fs.IntVar(&c.Tenants, "tenants", 1, "Tenants pushing, named <tenant-prefix>1..N, round-robin; 0 sends no X-Scope-OrgID.")
	fs.StringVar(&c.TenantPrefix, "tenant-prefix", "tenant-", "Prefix of the tenant IDs.")
	fs.IntVar(&c.StreamsPerTenant, "streams", 10, "Streams per tenant (cardinality).")
	fs.IntVar(&c.StreamsPerPush, "streams-per-push", 4, "Streams in one push: consecutive ones from a random one of the tenant's.")
	fs.IntVar(&c.BatchLines, "batch", 100, "Lines per push.")
	fs.Float64Var(&c.LinesPerSecond, "rate", 1000, "Total lines per second; 0 with -rate-bytes 0 pushes as fast as possible.")
	fs.Var(&c.BytesPerSecond, "rate-bytes", "Total line bytes per second (e.g. 2MB); when set, -rate is ignored.")
	fs.Var(&c.LineSize, "line-size", "Average line size (e.g. 1KB); 0 keeps each shape's natural size.")
	c.Shapes = DefaultMix
	fs.Var(&c.Shapes, "shapes", "Mix of line shapes: nginx, logfmt, json, stacktrace with weights.")
	fs.StringVar(&c.Pattern.Kind, "pattern", "steady", "Rate over time: steady, square (on/off) or spike.")
	fs.DurationVar(&c.Pattern.Period, "pattern.period", 10*time.Second, "Period of the square wave or of the spikes.")
	fs.Float64Var(&c.Pattern.Duty, "pattern.duty", 0.5, "Fraction of each period the square wave pushes.")
	fs.DurationVar(&c.Pattern.SpikeLength, "pattern.spike-length", time.Second, "How long each spike lasts.")
	fs.Float64Var(&c.Pattern.SpikeFactor, "pattern.spike-factor", 5, "Rate multiplier during a spike.")
	fs.DurationVar(&c.Duration, "duration", time.Minute, "How long to push; 0 until interrupted.")
	fs.IntVar(&c.Concurrency, "concurrency", 4, "Workers, each with its own connection and one push in flight.")
	fs.StringVar(&c.Encoding, "encoding", "protobuf", "Push body format: protobuf (snappy) or json.")
	fs.DurationVar(&c.PushTimeout, "push-timeout", 10*time.Second, "Longest one push may take.")
	fs.StringVar(&c.AckLog, "ack-log", "", "Append every acknowledged (204) push's line IDs to this file, for lokilab verify.")
	fs.Uint64Var(&c.Seed, "seed", 0, "Random seed; 0 picks one.")
	fs.StringVar(&c.RunID, "run-id", "", "Run ID in every line's identity (1-32 of [0-9a-z]); default drawn from the seed.")
	fs.DurationVar(&c.ProgressInterval, "progress-interval", time.Second, "How often to print the progress line.")
}

// Validate reports a configuration that cannot run.
func (c *Config) Validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("url %q: want http(s)://host:port/path", c.URL)
	case c.Tenants < 0:
		return errors.New("tenants must not be negative")
	case c.StreamsPerTenant < 1:
		return errors.New("streams must be at least 1")
	case c.StreamsPerPush < 1:
		return errors.New("streams-per-push must be at least 1")
	case c.BatchLines < 1:
		return errors.New("batch must be at least 1 line")
	case c.LinesPerSecond < 0:
		return errors.New("rate must not be negative")
	case c.Duration < 0:
		return errors.New("duration must not be negative")
	case c.Concurrency < 1:
		return errors.New("concurrency must be at least 1")
	case c.Encoding != "protobuf" && c.Encoding != "json":
		return fmt.Errorf("encoding %q: want protobuf or json", c.Encoding)
	case c.PushTimeout <= 0:
		return errors.New("push-timeout must be positive")
	case c.RunID != "" && !validRun(c.RunID):
		return fmt.Errorf("run-id %q: want 1 to %d of [0-9a-z]", c.RunID, maxRunLen)
	case c.ProgressInterval <= 0:
		return errors.New("progress-interval must be positive")
	case c.LineSize > 64<<20:
		return errors.New("line-size is over 64MB")
	}
	total := 0
	for _, w := range c.Shapes {
		total += w
	}
	if total <= 0 {
		return errors.New("shapes: at least one shape needs a positive weight")
	}
	for i := 1; i <= c.Tenants; i++ {
		if err := tenant.ValidateID(c.tenantID(i - 1)); err != nil {
			return fmt.Errorf("tenant-prefix %q: %w", c.TenantPrefix, err)
		}
	}
	return c.Pattern.validate(c.LinesPerSecond > 0 || c.BytesPerSecond > 0)
}

func (p *PatternConfig) validate(limited bool) error {
	switch p.Kind {
	case "", "steady":
		return nil
	case "square":
		if p.Period <= 0 || p.Duty <= 0 || p.Duty > 1 {
			return errors.New("pattern square needs a positive period and a duty in (0, 1]")
		}
	case "spike":
		switch {
		case !limited:
			return errors.New("pattern spike multiplies a rate: set -rate or -rate-bytes")
		case p.Period <= 0 || p.SpikeLength <= 0 || p.SpikeLength > p.Period:
			return errors.New("pattern spike needs a positive period and a spike length no longer than it")
		case p.SpikeFactor <= 0:
			return errors.New("pattern spike needs a positive spike factor")
		}
	default:
		return fmt.Errorf("pattern %q: want steady, square or spike", p.Kind)
	}
	return nil
}

// tenantID is the i-th tenant's ID (from 0), or "" when no header is sent.
func (c *Config) tenantID(i int) string {
	if c.Tenants == 0 {
		return ""
	}
	return fmt.Sprintf("%s%d", c.TenantPrefix, i+1)
}
