package app

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/lokilab/lokilab/pkg/ingester"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/netcut"
	"github.com/lokilab/lokilab/pkg/ring"
	"github.com/lokilab/lokilab/pkg/server"
	"github.com/lokilab/lokilab/pkg/storage"
)

// IngesterConfig is an ingester process's configuration.
type IngesterConfig struct {
	// AuthEnabled requires X-Scope-OrgID on the recent-data API, as on the
	// distributor. Default false: tenant "fake".
	AuthEnabled bool               `yaml:"auth_enabled"`
	Server      server.Config      `yaml:"server"`
	Ingester    ingester.Config    `yaml:"ingester"`
	Kafka       kafka.Config       `yaml:"kafka_config"`
	Reader      kafka.ReaderConfig `yaml:"kafka_reader"`
	Storage     storage.Config     `yaml:"storage_config"`
	Memberlist  ring.Config        `yaml:"memberlist"`

	netcut *netcut.Switch // the lab's network cut (processes_faults.go); nil unless LabFaultsEnv
}

// RegisterFlags registers every component's flags.
func (c *IngesterConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.AuthEnabled, "auth.enabled", false, "Require X-Scope-OrgID on the recent-data API.")
	c.Server.RegisterFlags(fs)
	c.Ingester.RegisterFlags(fs)
	c.Kafka.RegisterFlags(fs)
	c.Reader.RegisterFlags(fs)
	c.Storage.RegisterFlags(fs)
	c.Memberlist.RegisterFlags(fs)
}

// Validate checks every component's configuration.
func (c *IngesterConfig) Validate() error {
	return errors.Join(c.Server.Validate(), c.Ingester.Validate(), c.Kafka.Validate(), c.Reader.Validate(), c.Storage.Validate())
}

// RunIngester runs an ingester process until ctx is done or
// /ingester/shutdown is called.
func RunIngester(ctx context.Context, cfg IngesterConfig, configView, defaults any, logger *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	tp, stopTracing, err := newTracing(ctx, cfg.Server, "ingester", logger)
	if err != nil {
		return err
	}
	defer stopTracing()
	srv, reg, err := newServer(cfg.Server, configView, defaults, logger, tp)
	if err != nil {
		return err
	}
	cfg.enableLabNetcut(srv, logger)
	return runIngester(ctx, cfg, srv, reg, logger, nil)
}

// runIngester runs one ingester on srv. In the all-in-one process several
// run side by side, each with its own server, ring node and registry. now
// is its clock for chunk ages and idle periods (nil: time.Now).
func runIngester(ctx context.Context, cfg IngesterConfig, srv *server.Server, reg prometheus.Registerer, logger *slog.Logger, now func() time.Time) error {
	logger = logger.With("component", "ingester", "instance", cfg.Ingester.InstanceID)
	store, err := storage.New(cfg.Storage, "ingester", reg, logger)
	if err != nil {
		return err
	}
	defer store.Close()

	var r *ring.Ring
	deps := ingester.Deps{Kafka: cfg.Kafka, Reader: cfg.Reader, Bucket: store.Bucket, AuthEnabled: cfg.AuthEnabled, Registerer: reg, Logger: logger, Now: now,
		KafkaOpts: cfg.labKafkaOpts(), TracerProvider: srv.TracerProvider()}
	if cfg.Ingester.Ownership == ingester.OwnershipRing {
		self := ring.InstanceDesc{ID: cfg.Ingester.InstanceID, Addr: srv.Addr(), Role: "ingester"}
		r, err = ring.New(cfg.Memberlist, self, reg, logger.With("component", "ring"), cfg.labRingOpts()...)
		if err != nil {
			return err
		}
		deps.Ring = r
		srv.Handle("/ring", r.RingHandler())
		srv.Handle("/memberlist", r.MemberlistHandler())
	}
	ing, err := ingester.New(cfg.Ingester, deps)
	if err != nil {
		return err
	}
	srv.AddReadinessCheck("ingester", ing.Ready)
	srv.Handle("POST /flush", ing.FlushHandler())
	srv.Handle("POST /ingester/shutdown", ing.ShutdownHandler())
	srv.Handle("GET /ingester/status", ing.StatusHandler())
	srv.Handle("GET /ingester/query_recent", cfg.peerHandler(ing.QueryHandler()))
	srv.Handle("GET /ingester/series", cfg.peerHandler(ing.SeriesHandler()))
	srv.Handle("/ingester/faults/store", store.Faults)

	// Stop order: the ingester flushes and hands its partitions back while
	// the ring still gossips and the HTTP server still answers; then the
	// ring leaves; then the server stops. Until it has left the ring the
	// ingester is a LEAVING owner the querier still asks for the lines it
	// has not flushed yet: a server stopped at SIGTERM would make every
	// query during a rolling restart partial (question 15).
	g, gctx := errgroup.WithContext(ctx)
	ingCtx, stopIngester := context.WithCancel(context.WithoutCancel(gctx))
	defer stopIngester()
	srvCtx, stopServer := context.WithCancel(context.WithoutCancel(gctx))
	defer stopServer()
	// A server that fails (rather than being stopped) takes the rest down.
	g.Go(func() error { return srv.Run(srvCtx) })
	ringCtx, stopRing := context.WithCancel(context.WithoutCancel(gctx))
	defer stopRing()
	ringDone := make(chan struct{})
	if r != nil {
		g.Go(func() error { defer close(ringDone); return r.Run(ringCtx) })
	} else {
		close(ringDone)
	}
	g.Go(func() error {
		go func() { <-gctx.Done(); stopIngester() }()
		err := ing.Run(ingCtx)
		stopRing()
		<-ringDone
		stopServer()
		if err == nil && gctx.Err() == nil {
			// /ingester/shutdown ended the ingester: end the process too.
			return errShutdownRequested
		}
		return err
	})
	logger.Info("ingester running", "http", srv.Addr(), "ownership", cfg.Ingester.Ownership)
	err = g.Wait()
	if errors.Is(err, errShutdownRequested) {
		err = nil
	}
	return err
}

var errShutdownRequested = errors.New("shutdown requested")
