package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/lokilab/lokilab/pkg/compactor"
	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/querier"
	"github.com/lokilab/lokilab/pkg/ring"
	"github.com/lokilab/lokilab/pkg/server"
	"github.com/lokilab/lokilab/pkg/storage"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// QuerierConfig is a querier process's configuration.
type QuerierConfig struct {
	// AuthEnabled requires X-Scope-OrgID on every query (401 "no org id"
	// without it). Default false: tenant "fake".
	AuthEnabled   bool                 `yaml:"auth_enabled"`
	Server        server.Config        `yaml:"server"`
	Querier       querier.Config       `yaml:"querier"`
	Storage       storage.Config       `yaml:"storage_config"`
	Limits        tenant.Limits        `yaml:"limits_config"`
	RuntimeConfig tenant.RuntimeConfig `yaml:"runtime_config"`
	// Memberlist is the querier's ring node: through it the querier finds
	// the ingesters (ring ownership) and which partitions have no live
	// owner.
	Memberlist ring.Config `yaml:"memberlist"`
	// IngesterAddresses, if set, are the ingesters' HTTP addresses, asked
	// instead of the ring's: for ingesters in group or static ownership,
	// which do not join the ring.
	IngesterAddresses []string `yaml:"ingester_addresses,omitempty"`
	// InstanceID names this querier in the ring.
	InstanceID string `yaml:"instance_id"`
}

// RegisterFlags registers every component's flags.
func (c *QuerierConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.AuthEnabled, "auth.enabled", false, "Require X-Scope-OrgID on every query.")
	c.Server.RegisterFlags(fs)
	c.Querier.RegisterFlags(fs)
	c.Storage.RegisterFlags(fs)
	c.Limits.RegisterFlags(fs)
	c.RuntimeConfig.RegisterFlags(fs)
	c.Memberlist.RegisterFlags(fs)
	fs.Var((*config.CommaList)(&c.IngesterAddresses), "querier.ingester-addresses", "Comma-separated ingester HTTP addresses to ask instead of the ring's.")
	host, _ := os.Hostname()
	fs.StringVar(&c.InstanceID, "querier.instance-id", "querier-"+host, "Name of this querier in the ring.")
}

// Validate checks every component's configuration.
func (c *QuerierConfig) Validate() error {
	return errors.Join(c.Server.Validate(), c.Querier.Validate(), c.Storage.Validate(), c.Limits.Validate(), c.Memberlist.Validate())
}

func (c *QuerierConfig) serverConfig() *server.Config { return &c.Server }

// RunQuerier runs a querier process until ctx is done.
func RunQuerier(ctx context.Context, cfg QuerierConfig, configView, defaults any, logger *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	tp, stopTracing, err := newTracing(ctx, cfg.Server, "querier", logger)
	if err != nil {
		return err
	}
	defer stopTracing()
	srv, reg, err := newServer(cfg.Server, configView, defaults, logger, tp)
	if err != nil {
		return err
	}
	logger = logger.With("component", "querier")
	store, err := storage.New(cfg.Storage, "querier", reg, logger)
	if err != nil {
		return err
	}
	defer store.Close()
	limits, err := tenant.NewOverrides(cfg.Limits, cfg.RuntimeConfig, reg, logger)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	var ingesters querier.IngesterSet
	if len(cfg.IngesterAddresses) > 0 {
		var list querier.StaticIngesters
		for _, a := range cfg.IngesterAddresses {
			list = append(list, querier.Ingester{ID: a, Addr: a})
		}
		ingesters = list
	} else {
		r, err := ring.New(cfg.Memberlist, ring.InstanceDesc{ID: cfg.InstanceID, Addr: srv.Addr(), Role: ring.RoleQuerier}, reg, logger.With("component", "ring"))
		if err != nil {
			return err
		}
		r.SetState(ring.InstanceActive)
		srv.Handle("/ring", r.RingHandler())
		srv.Handle("/memberlist", r.MemberlistHandler())
		g.Go(func() error { return r.Run(gctx) })
		ingesters = querier.RingIngesters{Ring: r}
	}
	q, err := querier.New(cfg.Querier, querier.Deps{
		Bucket: store.Bucket, Ingesters: ingesters, Limits: limits, AuthEnabled: cfg.AuthEnabled,
		Registerer: reg, Logger: logger,
	})
	if err != nil {
		return err
	}
	q.Register(srv.Handle)
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return limits.Run(gctx) })
	logger.Info("querier running", "http", "http://"+srv.Addr()+"/loki/api/v1/query_range")
	return g.Wait()
}

// lateRing is an IngesterSet over a ring node that exists only once the
// distributor has joined: the all-in-one process serves queries from the
// start and finds its ingesters when the ring is there.
type lateRing struct{ r atomic.Pointer[ring.Ring] }

func (l *lateRing) Ingesters() ([]querier.Ingester, []string) {
	r := l.r.Load()
	if r == nil {
		return nil, []string{"the ring is not joined yet: lines the ingesters hold are missing from this answer"}
	}
	return querier.RingIngesters{Ring: r}.Ingesters()
}

// CompactorConfig is a compactor process's configuration.
type CompactorConfig struct {
	Server        server.Config        `yaml:"server"`
	Compactor     compactor.Config     `yaml:"compactor"`
	Storage       storage.Config       `yaml:"storage_config"`
	Limits        tenant.Limits        `yaml:"limits_config"`
	RuntimeConfig tenant.RuntimeConfig `yaml:"runtime_config"`
}

// RegisterFlags registers every component's flags.
func (c *CompactorConfig) RegisterFlags(fs *flag.FlagSet) {
	c.Server.RegisterFlags(fs)
	c.Compactor.RegisterFlags(fs)
	c.Storage.RegisterFlags(fs)
	c.Limits.RegisterFlags(fs)
	c.RuntimeConfig.RegisterFlags(fs)
}

// Validate checks every component's configuration.
func (c *CompactorConfig) Validate() error {
	return errors.Join(c.Server.Validate(), c.Compactor.Validate(), c.Storage.Validate(), c.Limits.Validate())
}

func (c *CompactorConfig) serverConfig() *server.Config { return &c.Server }

// RunCompactor runs a compactor process until ctx is done. One compactor
// per store: two would merge the same segments and race on deletes.
func RunCompactor(ctx context.Context, cfg CompactorConfig, configView, defaults any, logger *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	srv, reg, err := newServer(cfg.Server, configView, defaults, logger, nil)
	if err != nil {
		return err
	}
	logger = logger.With("component", "compactor")
	return runCompactor(ctx, cfg.Compactor, cfg.Storage, cfg.Limits, cfg.RuntimeConfig, srv, reg, logger, nil)
}

// runCompactor runs the compactor; srv, if not nil, is served too.
func runCompactor(ctx context.Context, cfg compactor.Config, sc storage.Config, defaults tenant.Limits, rc tenant.RuntimeConfig, srv *server.Server, reg prometheus.Registerer, logger *slog.Logger, now func() time.Time) error {
	store, err := storage.New(sc, "compactor", reg, logger)
	if err != nil {
		return err
	}
	defer store.Close()
	// Its own copy of the limits (retention); in the all-in-one process
	// the distributor's copy registers the reload metrics.
	var limitsReg prometheus.Registerer
	if srv != nil {
		limitsReg = reg
	}
	limits, err := tenant.NewOverrides(defaults, rc, limitsReg, logger)
	if err != nil {
		return err
	}
	comp, err := compactor.New(cfg, store.Bucket, limits, reg, logger, now)
	if err != nil {
		return fmt.Errorf("compactor: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return comp.Run(gctx) })
	g.Go(func() error { return limits.Run(gctx) })
	if srv != nil {
		g.Go(func() error { return srv.Run(gctx) })
		logger.Info("compactor running", "http", srv.Addr(), "interval", cfg.CompactionInterval)
	}
	return g.Wait()
}
