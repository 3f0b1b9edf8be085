package tenant

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/lokilab/lokilab/pkg/config"
)

// RuntimeConfig names the overrides file, Loki's runtime_config block.
type RuntimeConfig struct {
	// File is a YAML file with per-tenant overrides:
	//
	//	overrides:
	//	  tenant-a:
	//	    ingestion_rate_mb: 1
	//
	// Fields a tenant does not mention keep the defaults. Empty: no file,
	// every tenant gets the defaults.
	File string `yaml:"file"`
	// Period is how often the file is re-read. Default 10s, Loki's: a
	// change takes effect within one period, without a restart.
	Period time.Duration `yaml:"period"`
}

// RegisterFlags registers the runtime config flags with Loki's names.
func (c *RuntimeConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.File, "runtime-config.file", "", "YAML file with per-tenant limit overrides, re-read periodically.")
	fs.DurationVar(&c.Period, "runtime-config.reload-period", 10*time.Second, "How often the runtime config file is re-read.")
}

// LimitsSource is how components read limits: always the current value for
// the tenant, defaults included.
type LimitsSource interface {
	For(tenant string) *Limits
}

// Overrides serves each tenant's limits: the defaults, overlaid with the
// tenant's entry in the runtime config file. The file is re-read every
// Period by Run; a file that fails to parse or validate is reported (log and
// loki_runtime_config_last_reload_successful 0) and the previous overrides
// stay in force, so a typo never removes limits.
type Overrides struct {
	defaults Limits
	cfg      RuntimeConfig
	logger   *slog.Logger

	current atomic.Pointer[map[string]*Limits]

	mu       sync.Mutex // serializes reloads
	lastHash [sha256.Size]byte
	lastErr  error // the outcome of parsing the file with lastHash

	reloadSuccess prometheus.Gauge
	reloads       *prometheus.CounterVec
	configHash    *prometheus.GaugeVec
}

// NewOverrides loads the runtime config file once (failing if it cannot) and
// returns the overrides. reg may be nil.
func NewOverrides(defaults Limits, cfg RuntimeConfig, reg prometheus.Registerer, logger *slog.Logger) (*Overrides, error) {
	if err := defaults.Validate(); err != nil {
		return nil, fmt.Errorf("default limits: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := &Overrides{
		defaults: defaults,
		cfg:      cfg,
		logger:   logger,
		reloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loki_runtime_config_last_reload_successful",
			Help: "Whether the last runtime config (overrides) reload succeeded.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_runtime_config_reloads_total",
			Help: "Runtime config reloads that found a changed file, by result.",
		}, []string{"result"}),
		configHash: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "loki_runtime_config_hash",
			Help: "Hash of the runtime config file currently in force.",
		}, []string{"sha256"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{o.reloadSuccess, o.reloads, o.configHash} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("tenant: registering metrics: %w", err)
			}
		}
	}
	empty := map[string]*Limits{}
	o.current.Store(&empty)
	if cfg.File != "" {
		if err := o.Reload(); err != nil {
			return nil, err
		}
	}
	o.reloadSuccess.Set(1)
	return o, nil
}

// For returns tenant's limits. The pointer is shared and must not be
// modified; it is replaced, not mutated, on reload.
func (o *Overrides) For(tenant string) *Limits {
	if l, ok := (*o.current.Load())[tenant]; ok {
		return l
	}
	return &o.defaults
}

// Run re-reads the file every Period until ctx is done.
func (o *Overrides) Run(ctx context.Context) error {
	if o.cfg.File == "" || o.cfg.Period <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(o.cfg.Period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := o.Reload(); err != nil {
				o.logger.Error("runtime config reload failed; keeping the previous overrides", "file", o.cfg.File, "err", err)
			}
		}
	}
}

// Reload reads the file now. An unchanged file is not parsed again: it
// returns the outcome it had (so a broken file is logged once per change, not
// every period). On error the previous overrides stay in force.
func (o *Overrides) Reload() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	raw, err := os.ReadFile(o.cfg.File)
	if err != nil {
		o.reloadSuccess.Set(0)
		return fmt.Errorf("runtime config: %w", err)
	}
	sum := sha256.Sum256(raw)
	if sum == o.lastHash {
		if o.lastErr != nil {
			o.reloadSuccess.Set(0)
		} else {
			o.reloadSuccess.Set(1)
		}
		return o.lastErr
	}
	o.lastHash = sum
	m, err := o.parse(raw)
	if err != nil {
		o.lastErr = fmt.Errorf("runtime config %s: %w", o.cfg.File, err)
		o.reloadSuccess.Set(0)
		o.reloads.WithLabelValues("failure").Inc()
		return o.lastErr
	}
	o.lastErr = nil
	o.current.Store(&m)
	o.reloadSuccess.Set(1)
	o.reloads.WithLabelValues("success").Inc()
	o.configHash.Reset()
	o.configHash.WithLabelValues(hex.EncodeToString(sum[:])).Set(1)
	o.logger.Info("runtime config loaded", "file", o.cfg.File, "tenants", len(m))
	return nil
}

// parse decodes the overrides, each tenant starting from a copy of the
// defaults so that omitted fields inherit them.
func (o *Overrides) parse(raw []byte) (map[string]*Limits, error) {
	var doc struct {
		Overrides map[string]yaml.Node `yaml:"overrides"`
	}
	if err := config.DecodeYAML(raw, &doc); err != nil {
		return nil, err
	}
	m := make(map[string]*Limits, len(doc.Overrides))
	for id, node := range doc.Overrides {
		if err := ValidateID(id); err != nil {
			return nil, fmt.Errorf("invalid override for tenant %s: %w", sanitize(id), err)
		}
		l := o.defaults
		raw, err := yaml.Marshal(&node)
		if err != nil {
			return nil, err
		}
		if err := config.DecodeYAML(raw, &l); err != nil {
			return nil, fmt.Errorf("invalid override for tenant %s: %w", id, err)
		}
		if err := l.Validate(); err != nil {
			return nil, fmt.Errorf("invalid override for tenant %s: %w", id, err)
		}
		m[id] = &l
	}
	return m, nil
}
