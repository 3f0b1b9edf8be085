// Package app assembles lokilab's components into processes: the
// standalone distributor (cmd/distributor), the standalone broker (`lokilab
// kafka`) and the all-in-one lab (`lokilab run`). Each process is a config
// struct composed of the components' configs, and a Run function that builds
// the components in dependency order and shuts them down in reverse:
// the HTTP server stops taking pushes, then the producer flushes what it
// holds, then (all-in-one) the broker persists and closes.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/lokilab/lokilab/pkg/distributor"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/ring"
	"github.com/lokilab/lokilab/pkg/server"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// DistributorConfig is a distributor process's configuration. The YAML
// layout follows Loki's (server, distributor, kafka_config, limits_config,
// runtime_config, auth_enabled).
type DistributorConfig struct {
	// AuthEnabled requires X-Scope-OrgID on every request (401 "no org id"
	// without it). Default false: every request is tenant "fake", as in
	// Loki with auth disabled.
	AuthEnabled   bool                 `yaml:"auth_enabled"`
	Server        server.Config        `yaml:"server"`
	Distributor   distributor.Config   `yaml:"distributor"`
	Kafka         kafka.Config         `yaml:"kafka_config"`
	Limits        tenant.Limits        `yaml:"limits_config"`
	RuntimeConfig tenant.RuntimeConfig `yaml:"runtime_config"`
	// Memberlist is the distributor's ring node: through it the
	// distributor finds each stream's partition and counts the healthy
	// distributors the global rate limit is divided among.
	Memberlist ring.Config `yaml:"memberlist"`
	// InstanceID names this distributor in the ring. Default
	// "distributor-<hostname>".
	InstanceID string `yaml:"instance_id"`
}

// RegisterFlags registers every component's flags.
func (c *DistributorConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.AuthEnabled, "auth.enabled", false, "Require X-Scope-OrgID on every request.")
	c.Server.RegisterFlags(fs)
	c.Distributor.RegisterFlags(fs)
	c.Kafka.RegisterFlags(fs)
	c.Limits.RegisterFlags(fs)
	c.RuntimeConfig.RegisterFlags(fs)
	c.Memberlist.RegisterFlags(fs)
	host, _ := os.Hostname()
	fs.StringVar(&c.InstanceID, "distributor.instance-id", "distributor-"+host, "Name of this distributor in the ring.")
}

// Validate checks every component's configuration, and the one constraint
// between them: a push may wait write_timeout for Kafka, so the HTTP server
// must allow longer than that to answer, or clients would see a dropped
// connection instead of the 503.
func (c *DistributorConfig) Validate() error {
	err := errors.Join(c.Server.Validate(), c.Distributor.Validate(), c.Kafka.Validate(), c.Limits.Validate(), c.Memberlist.Validate())
	if c.Server.WriteTimeout > 0 && c.Server.WriteTimeout <= c.Kafka.WriteTimeout {
		err = errors.Join(err, fmt.Errorf("server.http_server_write_timeout (%s) must exceed kafka_config.write_timeout (%s)",
			c.Server.WriteTimeout, c.Kafka.WriteTimeout))
	}
	return err
}

// RunDistributor runs a distributor process until ctx is done. configView
// and defaults are what /config shows.
func RunDistributor(ctx context.Context, cfg DistributorConfig, configView, defaults any, logger *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	tp, stopTracing, err := newTracing(ctx, cfg.Server, "distributor", logger)
	if err != nil {
		return err
	}
	defer stopTracing()
	srv, reg, err := newServer(cfg.Server, configView, defaults, logger, tp)
	if err != nil {
		return err
	}
	return runDistributor(ctx, cfg, srv, reg, logger, distributorHooks{})
}

// distributorHooks let the all-in-one process share the distributor's ring
// node with its ingesters.
type distributorHooks struct {
	// ringReady, if set, is told the ring node once it exists, so
	// ingesters can join through it.
	ringReady func(*ring.Ring)
	// ringStop, if set, keeps the ring node up after ctx ends, until it is
	// closed: the ingesters hand their partitions over and leave while the
	// node they gossip through is still there, instead of everyone leaving
	// at once and each waiting out its leave timeout.
	ringStop <-chan struct{}
	// now, if set, is the clock the distributor validates timestamps
	// against (a scenario's clock control); nil is time.Now.
	now func() time.Time
}

// runDistributor runs the distributor on srv.
func runDistributor(ctx context.Context, cfg DistributorConfig, srv *server.Server, reg prometheus.Registerer, logger *slog.Logger, hooks distributorHooks) error {
	overrides, err := tenant.NewOverrides(cfg.Limits, cfg.RuntimeConfig, reg, logger)
	if err != nil {
		return err
	}
	producer, err := kafka.NewWriterClient(cfg.Kafka, reg, logger)
	if err != nil {
		return err
	}
	defer producer.Close()

	// Routes exist from the start and answer 503 until Kafka is reachable,
	// so an early client sees "not ready" rather than 404.
	var current atomic.Pointer[distributor.Distributor]
	notReady := fmt.Sprintf("waiting for Kafka topic %q at %s", cfg.Kafka.Topic, cfg.Kafka.Address)
	srv.AddReadinessCheck("distributor", func(context.Context) error {
		if current.Load() == nil {
			return errors.New(notReady)
		}
		return nil
	})
	srv.Handle("POST /loki/api/v1/push", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := current.Load()
		if d == nil {
			http.Error(w, "distributor not ready: "+notReady, http.StatusServiceUnavailable)
			return
		}
		d.ServeHTTP(w, r)
	}))
	var partitions int
	srv.Handle("GET /distributor/status", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		d := current.Load()
		if d == nil {
			http.Error(w, notReady, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "kafka topic: %s (%d partitions)\ncircuit breaker: %s\ninflight push bytes: %d\n",
			cfg.Kafka.Topic, partitions, d.BreakerState(), d.InflightBytes())
	}))

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return overrides.Run(gctx) })
	g.Go(func() error {
		n, err := waitForTopic(gctx, producer, cfg.Kafka, logger)
		if err != nil {
			if gctx.Err() != nil {
				return nil
			}
			return err
		}
		// The ring's partitions are the topic's: a mismatch would route
		// streams to partitions nobody consumes, or leave some unused.
		rcfg := cfg.Memberlist
		if rcfg.Partitions != n {
			logger.Info("ring partitions follow the topic", "ring.partitions", rcfg.Partitions, "topic_partitions", n)
			rcfg.Partitions = n
		}
		r, err := ring.New(rcfg, ring.InstanceDesc{ID: cfg.InstanceID, Addr: srv.Addr(), Role: "distributor"}, reg, logger.With("component", "ring"))
		if err != nil {
			return err
		}
		r.SetState(ring.InstanceActive)
		srv.Handle("/ring", r.RingHandler())
		srv.Handle("/memberlist", r.MemberlistHandler())
		ringCtx := gctx
		if hooks.ringStop != nil {
			var stop context.CancelFunc
			ringCtx, stop = context.WithCancel(context.WithoutCancel(gctx))
			go func() { <-hooks.ringStop; stop() }()
		}
		g.Go(func() error { return r.Run(ringCtx) })
		if hooks.ringReady != nil {
			hooks.ringReady(r)
		}
		d, err := distributor.New(cfg.Distributor, distributor.Deps{
			Limits:      overrides,
			RateLimiter: tenant.NewRateLimiter(overrides, r, nil),
			Producer:    producer,
			Partitions:  r,
			Kafka:       cfg.Kafka,
			AuthEnabled: cfg.AuthEnabled,
			Registerer:  reg,
			Logger:      logger.With("component", "distributor"),
			Now:         hooks.now,
			// The server's provider: one per process.
			TracerProvider: srv.TracerProvider(),
		})
		if err != nil {
			return err
		}
		partitions = n // written before current is published, read after
		current.Store(d)
		logger.Info("distributor ready", "push", "http://"+srv.Addr()+"/loki/api/v1/push", "topic", cfg.Kafka.Topic, "partitions", n)
		return d.Run(gctx)
	})
	err = g.Wait()

	// The HTTP server has drained; hand Kafka what the producer still
	// holds before closing it.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Kafka.WriteTimeout)
	defer cancel()
	if ferr := producer.Flush(fctx); ferr != nil {
		logger.Warn("kafka producer flush on shutdown incomplete", "err", ferr)
	}
	return err
}

// waitForTopic ensures the topic exists, retrying while Kafka is not
// reachable (a broker starting beside us in compose), and returns its
// partition count.
func waitForTopic(ctx context.Context, cl *kgo.Client, cfg kafka.Config, logger *slog.Logger) (int, error) {
	create := 0
	if cfg.AutoCreateTopicEnabled {
		create = cfg.AutoCreateTopicDefaultPartitions
	}
	backoff := 250 * time.Millisecond
	for {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := kafka.EnsureTopic(tctx, cl, cfg.Topic, create, nil)
		cancel()
		if err == nil {
			return n, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		logger.Warn("waiting for Kafka", "address", cfg.Address, "topic", cfg.Topic, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
