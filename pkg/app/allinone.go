package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/lokilab/lokilab/pkg/compactor"
	"github.com/lokilab/lokilab/pkg/ingester"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/querier"
	"github.com/lokilab/lokilab/pkg/ring"
	"github.com/lokilab/lokilab/pkg/server"
	"github.com/lokilab/lokilab/pkg/storage"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// AllInOneConfig is `lokilab run`: the embedded broker plus every component
// in one process, sharing one data directory.
type AllInOneConfig struct {
	DistributorConfig `yaml:",inline"`
	// Ingester configures every ingester; each gets instance ID
	// ingester-<n>.
	Ingester ingester.Config    `yaml:"ingester"`
	Reader   kafka.ReaderConfig `yaml:"kafka_reader"`
	Storage  storage.Config     `yaml:"storage_config"`
	// Compactor merges the ingesters' index segments day by day.
	Compactor compactor.Config `yaml:"compactor"`
	// Querier serves Loki's query API on the distributor's port.
	Querier querier.Config `yaml:"querier"`
	// Ingesters is how many ingesters run. Default 3: enough for
	// partitions to move between them when one stops.
	Ingesters int `yaml:"ingesters"`
	// IngesterHTTPBasePort is the first ingester's HTTP port; ingester n
	// listens on base+n. Default 3101. 0 picks free ports (the banner
	// says which).
	IngesterHTTPBasePort int `yaml:"ingester_http_base_port"`
	// Distributors is how many distributors run. Default 1, on the API
	// port. More run the same distributor on ports of their own
	// (DistributorHTTPBasePort), each a member of the same ring: the
	// global rate-limit strategy then divides a tenant's rate by the
	// healthy distributors, the local one gives each the full rate
	// (question 2). The querier stays on the API port; a client spreads
	// its pushes over the distributors itself, as a load balancer would.
	Distributors int `yaml:"distributors"`
	// DistributorHTTPBasePort is the HTTP port of the second
	// distributor; distributor n (from 2) listens on base+n-2. Default
	// 3120. 0 picks free ports (the banner says which).
	DistributorHTTPBasePort int `yaml:"distributor_http_base_port"`
	// DataDir holds everything the lab persists: the broker's log under
	// kafka/, chunks and index under store/.
	DataDir       string             `yaml:"data_dir"`
	EmbeddedKafka kafka.BrokerConfig `yaml:"embedded_kafka"`
	// Processes runs the same topology as separate OS processes
	// (-processes); see processes.go.
	Processes ProcessesConfig `yaml:"processes"`
}

// RegisterFlags registers every component's flags plus the lab's own.
func (c *AllInOneConfig) RegisterFlags(fs *flag.FlagSet) {
	c.DistributorConfig.RegisterFlags(fs)
	c.Ingester.RegisterFlags(fs)
	c.Reader.RegisterFlags(fs)
	c.Storage.RegisterFlags(fs)
	c.Compactor.RegisterFlags(fs)
	c.Querier.RegisterFlags(fs)
	fs.IntVar(&c.Ingesters, "ingesters", 3, "Number of ingesters to run.")
	fs.IntVar(&c.IngesterHTTPBasePort, "ingester.http-base-port", 3101, "HTTP port of the first ingester (the others follow); 0 picks free ports.")
	fs.IntVar(&c.Distributors, "distributors", 1, "Number of distributors; the first serves the API port, the others -distributor.http-base-port and up, all in one ring.")
	fs.IntVar(&c.DistributorHTTPBasePort, "distributor.http-base-port", 3120, "HTTP port of the second distributor (the others follow); 0 picks free ports.")
	fs.StringVar(&c.DataDir, "data.dir", "lokilab-data", "Directory for everything the lab persists.")
	c.EmbeddedKafka.RegisterFlags(fs)
	c.Processes.RegisterFlags(fs)
	// The broker's and the store's directories follow -data.dir unless
	// set on their own.
	c.EmbeddedKafka.DataDir = ""
	c.Storage.Filesystem.Dir = ""
	for name, usage := range map[string]string{
		"kafka.broker.data-dir":  "Directory the embedded broker persists its log to; default <data.dir>/kafka.",
		"storage.filesystem.dir": "Root directory of the filesystem object store; default <data.dir>/store.",
	} {
		if f := fs.Lookup(name); f != nil {
			f.DefValue = ""
			f.Usage = usage
		}
	}
}

// Validate checks the configuration, filling the derived defaults.
func (c *AllInOneConfig) Validate() error {
	if c.DataDir == "" {
		return errors.New("data_dir is required")
	}
	if c.EmbeddedKafka.DataDir == "" {
		c.EmbeddedKafka.DataDir = filepath.Join(c.DataDir, "kafka")
	}
	if c.Storage.Filesystem.Dir == "" {
		c.Storage.Filesystem.Dir = filepath.Join(c.DataDir, "store")
	}
	var err error
	if c.Ingesters < 0 {
		err = errors.New("ingesters must not be negative")
	}
	if c.Distributors < 0 {
		err = errors.Join(err, errors.New("distributors must not be negative"))
	}
	if c.Processes.Enabled && c.Distributors > 1 {
		err = errors.Join(err, errors.New("distributors: the processes mode runs one distributor; more run only all in one process"))
	}
	ic := c.Ingester
	ic.InstanceID = "ingester-0"
	return errors.Join(err, c.DistributorConfig.Validate(), ic.Validate(), c.Reader.Validate(), c.Storage.Validate(), c.Compactor.Validate(), c.Querier.Validate(), c.EmbeddedKafka.Validate())
}

// RunAllInOne runs the whole lab in this process until ctx is done. banner,
// if not nil, receives a summary of what runs where once everything is up.
//
// Shutdown order: the distributor stops taking pushes while the ingesters
// flush and commit what they consumed; the broker closes last. Records
// not consumed by then wait in the broker's log for the next start.
func RunAllInOne(ctx context.Context, cfg AllInOneConfig, defaults any, logger *slog.Logger, banner io.Writer) error {
	return RunAllInOneWith(ctx, cfg, defaults, logger, AllInOneHooks{Banner: banner})
}

// AllInOneHooks let the caller of RunAllInOneWith watch and steer the
// process it runs: the lab's scenarios (pkg/scenario) inject broker faults
// through them. Every field is optional.
type AllInOneHooks struct {
	// Banner, if set, receives a summary of what runs where once
	// everything listens.
	Banner io.Writer
	// Broker, if set, is handed the embedded broker once its topic
	// exists, before any component starts. Its Cluster() is kfake's:
	// ControlKey, SleepControl and friends inject errors and stalls per
	// request kind. It must not close the broker.
	Broker func(*kafka.Broker)
	// Distributors, if set, is told every distributor's HTTP address
	// (host:port; the first is the API port's) once they listen, before
	// they are ready.
	Distributors func(addrs []string)
	// Now, if set, is the clock of the distributors (timestamp
	// validation), ingesters (chunk ages, idle periods), querier (default
	// ranges, query_ingesters_within) and compactor (retention): a
	// scenario moves it forward to show what hours or days do. Memberlist
	// heartbeats and Kafka keep real time — a jump must not make every
	// peer look dead.
	Now func() time.Time
}

// RunAllInOneWith is RunAllInOne with hooks.
func RunAllInOneWith(ctx context.Context, cfg AllInOneConfig, defaults any, logger *slog.Logger, hooks AllInOneHooks) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	banner := hooks.Banner
	broker, err := kafka.NewBroker(cfg.EmbeddedKafka, logger)
	if err != nil {
		return err
	}
	defer broker.Close()
	partitions, err := broker.EnsureTopic(ctx, cfg.Kafka.Topic, cfg.Kafka.AutoCreateTopicDefaultPartitions)
	if err != nil {
		return err
	}
	if hooks.Broker != nil {
		hooks.Broker(broker)
	}
	// Components reach the broker over loopback TCP like any Kafka client.
	cfg.Kafka.Address = broker.Addr()
	cfg.Memberlist.Partitions = partitions

	// One tracer provider for the whole process: a push's spans from the
	// distributor and from whichever ingester consumes it form one trace.
	tp, stopTracing, err := newTracing(ctx, cfg.Server, "lokilab", logger)
	if err != nil {
		return err
	}
	defer stopTracing()
	srv, reg, err := newServer(cfg.Server, &cfg, defaults, logger, tp)
	if err != nil {
		return err
	}
	// Each ingester has its own HTTP server (its /metrics, /ready, /flush)
	// and registry, as it would in its own process.
	ingesters := make([]ingesterProc, cfg.Ingesters)
	for n := range ingesters {
		ic := IngesterConfig{AuthEnabled: cfg.AuthEnabled, Server: cfg.Server, Ingester: cfg.Ingester, Kafka: cfg.Kafka, Reader: cfg.Reader, Storage: cfg.Storage, Memberlist: cfg.Memberlist}
		ic.Ingester.InstanceID = fmt.Sprintf("ingester-%d", n)
		ic.Server.HTTPListenPort = 0
		if cfg.IngesterHTTPBasePort > 0 {
			ic.Server.HTTPListenPort = cfg.IngesterHTTPBasePort + n
		}
		ic.Memberlist.BindPort = 0
		ic.Memberlist.NodeName = ""
		isrv, ireg, err := newServer(ic.Server, &ic, nil, logger, tp)
		if err != nil {
			return fmt.Errorf("ingester-%d: %w", n, err)
		}
		ingesters[n] = ingesterProc{cfg: ic, srv: isrv, reg: ireg}
	}
	// Distributors after the first: the same configuration on a port of
	// their own, with their own registry and ring node, as separate
	// processes would have.
	var extra []distributorProc
	for n := 2; n <= cfg.Distributors; n++ {
		dc := cfg.DistributorConfig
		dc.InstanceID = fmt.Sprintf("%s-%d", cfg.InstanceID, n)
		dc.Server.HTTPListenPort = 0
		if cfg.DistributorHTTPBasePort > 0 {
			dc.Server.HTTPListenPort = cfg.DistributorHTTPBasePort + n - 2
		}
		dc.Memberlist.BindPort = 0
		dc.Memberlist.NodeName = ""
		dsrv, dreg, err := newServer(dc.Server, &dc, nil, logger, tp)
		if err != nil {
			return fmt.Errorf("%s: %w", dc.InstanceID, err)
		}
		extra = append(extra, distributorProc{cfg: dc, srv: dsrv, reg: dreg})
	}
	if hooks.Distributors != nil {
		addrs := []string{srv.Addr()}
		for _, dp := range extra {
			addrs = append(addrs, dp.srv.Addr())
		}
		hooks.Distributors(addrs)
	}
	if banner != nil {
		printBanner(banner, srv.Addr(), broker.Addr(), cfg, partitions, ingesters, extra)
	}

	// The querier answers on the distributor's port, finding the
	// ingesters through the distributor's ring node once it has joined.
	qstore, err := storage.New(cfg.Storage, "querier", reg, logger.With("component", "querier"))
	if err != nil {
		return err
	}
	defer qstore.Close()
	qlimits, err := tenant.NewOverrides(cfg.Limits, cfg.RuntimeConfig, nil, logger)
	if err != nil {
		return err
	}
	// With ring ownership the ingesters are in the ring, with the
	// partitions they own; in group or static ownership they do not join
	// it, and the querier asks each by address, as the processes mode's
	// querier does (-querier.ingester-addresses). A ring would find none
	// of them, and answers would silently lack every line not yet flushed.
	var qring lateRing
	var qingesters querier.IngesterSet = &qring
	if cfg.Ingester.Ownership != ingester.OwnershipRing {
		var list querier.StaticIngesters
		for _, ip := range ingesters {
			list = append(list, querier.Ingester{ID: ip.cfg.Ingester.InstanceID, Addr: ip.srv.Addr()})
		}
		qingesters = list
	}
	q, err := querier.New(cfg.Querier, querier.Deps{
		Bucket: qstore.Bucket, Ingesters: qingesters, Limits: qlimits, AuthEnabled: cfg.AuthEnabled,
		Registerer: reg, Logger: logger.With("component", "querier"), Now: hooks.Now,
	})
	if err != nil {
		return err
	}
	q.Register(srv.Handle)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return runCompactor(gctx, cfg.Compactor, cfg.Storage, cfg.Limits, cfg.RuntimeConfig, nil, reg, logger.With("component", "compactor"), hooks.Now)
	})
	g.Go(func() error { return qlimits.Run(gctx) })
	ringReady := make(chan *ring.Ring, 1+len(extra))
	ingestersDone := make(chan struct{})
	g.Go(func() error {
		return runDistributor(gctx, cfg.DistributorConfig, srv, reg, logger, distributorHooks{
			ringReady: func(r *ring.Ring) {
				qring.r.Store(r)
				for range 1 + len(extra) {
					ringReady <- r
				}
			},
			ringStop: ingestersDone,
			now:      hooks.Now,
		})
	})
	for _, dp := range extra {
		g.Go(func() error {
			select {
			case seed := <-ringReady:
				dp.cfg.Memberlist.JoinMembers = []string{seed.Addr()}
			case <-gctx.Done():
				return nil
			}
			return runDistributor(gctx, dp.cfg, dp.srv, dp.reg, logger.With("distributor", dp.cfg.InstanceID), distributorHooks{now: hooks.Now})
		})
	}
	g.Go(func() error {
		defer close(ingestersDone)
		var seed *ring.Ring
		select {
		case seed = <-ringReady:
		case <-gctx.Done():
			return nil
		}
		ig, _ := errgroup.WithContext(gctx)
		for _, ip := range ingesters {
			ip.cfg.Memberlist.JoinMembers = []string{seed.Addr()}
			ig.Go(func() error { return runIngester(gctx, ip.cfg, ip.srv, ip.reg, logger, hooks.Now) })
		}
		return ig.Wait()
	})
	return g.Wait()
}

type distributorProc struct {
	cfg DistributorConfig
	srv *server.Server
	reg prometheus.Registerer
}

type ingesterProc struct {
	cfg IngesterConfig
	srv *server.Server
	reg prometheus.Registerer
}

func printBanner(w io.Writer, httpAddr, kafkaAddr string, cfg AllInOneConfig, partitions int, ingesters []ingesterProc, distributors []distributorProc) {
	var ing strings.Builder
	for _, dp := range distributors {
		fmt.Fprintf(&ing, "  %-15s http://%s/loki/api/v1/push  (/metrics, /ready, /distributor/status; same ring)\n", dp.cfg.InstanceID, dp.srv.Addr())
	}
	for _, ip := range ingesters {
		fmt.Fprintf(&ing, "  %-15s http://%s/ingester/status  (/metrics, /ready, POST /flush)\n", ip.cfg.Ingester.InstanceID, ip.srv.Addr())
	}
	fmt.Fprintf(w, `
lokilab is running (all in one process)

  Loki push API   http://%[1]s/loki/api/v1/push
  Loki query API  http://%[1]s/loki/api/v1/query_range  (also /query, /labels, /series, /index/stats, /tail)
  metrics         http://%[1]s/metrics  (the distributor's; each ingester serves its own)
  ring            http://%[1]s/ring     (partitions and their owners), /memberlist
  config          http://%[1]s/config   (?mode=diff shows what you changed)
  readiness       http://%[1]s/ready
  profiles        http://%[1]s/debug/pprof/
  Kafka           %[2]s  topic %[3]q, %[4]d partitions (embedded broker)
  data            %[5]s  (broker log in kafka/, chunks and index in store/)
  compactor       merges each tenant's index segments per day, every %[7]s
%[6]s
Try:
  curl -s -H 'Content-Type: application/json' http://%[1]s/loki/api/v1/push \
    --data-raw '{"streams":[{"stream":{"app":"hello"},"values":[["'$(date +%%s%%N)'","hello, lokilab"]]}]}' -w '%%{http_code}\n'
  curl -s -G http://%[1]s/loki/api/v1/query_range --data-urlencode 'query={app="hello"}'
  curl -s -G http://%[1]s/loki/api/v1/query --data-urlencode 'query=sum(count_over_time({app="hello"}[5m]))'
  kcat -b %[2]s -t %[3]s -C -e -f 'partition %%p offset %%o key %%k: %%S bytes\n'

  ls -R %[5]s/store | head   (chunks appear after flushes: POST /flush on an ingester)

Then (in another terminal; 'go run ./cmd/lokilab' is 'lokilab'):
  lokilab load -duration 30s -ack-log acks.log   realistic load with a live progress line
  lokilab verify -ack-log acks.log               prove every acknowledged line is queryable, once
  lokilab query -stats '{job="lokilab-load"} |= "error"'
  lokilab scenario --list                        experiments with reports: tour, noisy-neighbor, …

Ctrl-C stops it cleanly (ingesters flush first); restarting on the same data directory keeps the data.
'lokilab run -processes' runs the same as separate OS processes, so you can kill -9 one.
`, httpAddr, kafkaAddr, cfg.Kafka.Topic, partitions, cfg.DataDir, ing.String(), cfg.Compactor.CompactionInterval)
}

// BrokerProcessConfig is `lokilab kafka`: the embedded broker on its own,
// for the multi-process lab and for containers.
type BrokerProcessConfig struct {
	Broker     kafka.BrokerConfig `yaml:"broker"`
	Topic      string             `yaml:"topic"`
	Partitions int                `yaml:"partitions"`
	LogLevel   string             `yaml:"log_level"`
}

// RegisterFlags registers the broker process's flags.
func (c *BrokerProcessConfig) RegisterFlags(fs *flag.FlagSet) {
	c.Broker.RegisterFlags(fs)
	fs.StringVar(&c.Topic, "kafka.topic", "loki", "Topic to create at start if missing; empty creates none.")
	fs.IntVar(&c.Partitions, "kafka.auto-create-topic-default-partitions", 12, "Partitions of the topic created at start.")
	fs.StringVar(&c.LogLevel, "log.level", "info", "Log level: debug, info, warn, error.")
}

// RunBroker runs the broker until ctx is done. ready, if not nil, receives
// the advertised address once the topic exists.
func RunBroker(ctx context.Context, cfg BrokerProcessConfig, logger *slog.Logger, ready func(addr string, partitions int)) error {
	b, err := kafka.NewBroker(cfg.Broker, logger)
	if err != nil {
		return err
	}
	partitions := 0
	if cfg.Topic != "" {
		if partitions, err = b.EnsureTopic(ctx, cfg.Topic, cfg.Partitions); err != nil {
			b.Close()
			return err
		}
	}
	stopFaults, err := serveBrokerLabFaults(cfg, b, logger) // processes_faults.go: off unless LabFaultsEnv
	if err != nil {
		b.Close()
		return err
	}
	defer stopFaults()
	if ready != nil {
		ready(b.Addr(), partitions)
	}
	return b.Run(ctx)
}
