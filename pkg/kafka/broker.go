package kafka

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/pkg/config"
)

// BrokerConfig configures the embedded broker.
type BrokerConfig struct {
	// DataDir persists the log and consumer offsets. It is required:
	// without it kfake keeps every record in memory (3M records ≈ 1.1 GB RSS,
	// FIELD-NOTES.md), and a restart would forget everything the ingesters
	// have not flushed, breaking "Kafka is the write-ahead log".
	DataDir string `yaml:"data_dir"`
	// ListenAddress is host:port to listen on. Default 127.0.0.1:9092;
	// 0.0.0.0:9092 to serve containers or other hosts.
	ListenAddress string `yaml:"listen_address"`
	// AdvertiseAddress is the host:port clients are told to connect to in
	// metadata responses. Default: the listen address (with the port
	// resolved). Set it when listening on 0.0.0.0, to an address clients can
	// reach, such as kafka:9092 inside a compose network.
	AdvertiseAddress string `yaml:"advertise_address"`
	// SyncWrites fsyncs every produced batch before acknowledging it.
	// Default false, like Kafka's default: an acknowledged batch survives
	// the process being killed (it is in the page cache) but not the
	// machine losing power. True trades throughput for that too.
	SyncWrites bool `yaml:"sync_writes"`
	// RetentionPeriod deletes log segments older than this. Default 24h.
	// It must comfortably exceed the longest time an ingester holds data
	// before flushing it (max chunk age plus flush retries): Kafka is the
	// only copy of unflushed data, and retention deleting it is data loss.
	RetentionPeriod time.Duration `yaml:"retention_period"`
	// RetentionBytes caps each partition's log; 0 means no size cap. The
	// same warning as RetentionPeriod applies.
	RetentionBytes config.ByteSize `yaml:"retention_bytes"`
	// RetentionCheckInterval is how often retention runs (Kafka's
	// log.cleaner.backoff.ms). Default 5m.
	RetentionCheckInterval time.Duration `yaml:"retention_check_interval"`
}

// RegisterFlags registers the embedded broker's flags.
func (c *BrokerConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "kafka.broker.data-dir", "lokilab-data/kafka", "Directory the embedded broker persists its log to.")
	fs.StringVar(&c.ListenAddress, "kafka.broker.listen-address", "127.0.0.1:9092", "Embedded broker listen address.")
	fs.StringVar(&c.AdvertiseAddress, "kafka.broker.advertise-address", "", "Address advertised to clients; default the listen address.")
	fs.BoolVar(&c.SyncWrites, "kafka.broker.sync-writes", false, "fsync each produced batch before acknowledging it.")
	fs.DurationVar(&c.RetentionPeriod, "kafka.broker.retention-period", 24*time.Hour, "Delete log segments older than this.")
	fs.Var(&c.RetentionBytes, "kafka.broker.retention-bytes", "Per-partition log size cap; 0 for none.")
	fs.DurationVar(&c.RetentionCheckInterval, "kafka.broker.retention-check-interval", 5*time.Minute, "How often retention runs.")
}

// Validate reports a configuration the broker cannot start with.
func (c *BrokerConfig) Validate() error {
	if c.DataDir == "" {
		return errors.New("kafka broker: data_dir is required (without it every record stays in memory)")
	}
	if _, _, err := net.SplitHostPort(c.ListenAddress); err != nil {
		return fmt.Errorf("kafka broker: listen_address: %w", err)
	}
	if c.AdvertiseAddress != "" {
		if _, _, err := net.SplitHostPort(c.AdvertiseAddress); err != nil {
			return fmt.Errorf("kafka broker: advertise_address: %w", err)
		}
	}
	if c.RetentionPeriod <= 0 {
		return errors.New("kafka broker: retention_period must be positive")
	}
	if c.RetentionCheckInterval <= 0 {
		return errors.New("kafka broker: retention_check_interval must be positive")
	}
	return nil
}

// Broker is a single-node Kafka broker running in this process, on
// franz-go's kfake. It speaks the Kafka protocol on a real TCP port, so
// other processes, containers and non-Go clients (kcat) use it like any
// Kafka; it persists to DataDir and, restarted on the same directory, keeps
// its records and committed consumer offsets.
type Broker struct {
	cfg     BrokerConfig
	cluster *kfake.Cluster
	logger  *slog.Logger
}

// NewBroker starts the broker; it is listening when NewBroker returns.
func NewBroker(cfg BrokerConfig, logger *slog.Logger, extra ...kfake.Opt) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		return nil, fmt.Errorf("kafka broker: listen on %s: %w", cfg.ListenAddress, err)
	}
	advertise := cfg.AdvertiseAddress
	if advertise == "" {
		advertise = ln.Addr().String()
		if host, port, _ := net.SplitHostPort(advertise); net.ParseIP(host).IsUnspecified() {
			// 0.0.0.0 is not an address a client can dial; loopback is
			// the only one certain to work.
			advertise = net.JoinHostPort("127.0.0.1", port)
		}
	}
	used := false
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DataDir(cfg.DataDir),
		kfake.WithLogger(kfakeLogger{logger.With("component", "kafka-broker")}),
		// kfake asks for one listener per broker; hand it ours, reporting
		// the advertised address as its own so metadata responses carry it.
		kfake.ListenFn(func(string, string) (net.Listener, error) {
			if used {
				return nil, errors.New("kafka broker: only one listener")
			}
			used = true
			return advertisedListener{Listener: ln, addr: hostPort(advertise)}, nil
		}),
		kfake.BrokerConfigs(map[string]string{
			"log.cleaner.backoff.ms": strconv.FormatInt(cfg.RetentionCheckInterval.Milliseconds(), 10),
		}),
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(append(opts, extra...)...)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("kafka broker: %w", err)
	}
	logger.Info("embedded kafka broker started", "listen", ln.Addr().String(), "advertise", advertise, "data_dir", cfg.DataDir)
	return &Broker{cfg: cfg, cluster: c, logger: logger}, nil
}

// Addr is the address clients should bootstrap from.
func (b *Broker) Addr() string { return b.cluster.ListenAddrs()[0] }

// Cluster exposes kfake's controls (Fault, ControlKey, SleepControl) for
// tests and scenarios that inject broker faults.
func (b *Broker) Cluster() *kfake.Cluster { return b.cluster }

// EnsureTopic creates topic with the given partitions and the broker's
// retention if it does not exist, and applies the configured retention to
// it if it does, so that changing the retention flags takes effect on
// restart. It returns the topic's partition count.
func (b *Broker) EnsureTopic(ctx context.Context, topic string, partitions int) (int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	configs := b.retentionConfigs()
	n, err := EnsureTopic(ctx, cl, topic, partitions, configs)
	if err != nil {
		return 0, err
	}
	var alter []kadm.AlterConfig
	for k, v := range configs {
		alter = append(alter, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: v})
	}
	resp, err := kadm.NewClient(cl).AlterTopicConfigs(ctx, alter, topic)
	if err == nil {
		for _, r := range resp {
			err = errors.Join(err, r.Err)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("kafka broker: setting retention on %q: %w", topic, err)
	}
	return n, nil
}

func (b *Broker) retentionConfigs() map[string]*string {
	ms := strconv.FormatInt(b.cfg.RetentionPeriod.Milliseconds(), 10)
	bytes := "-1"
	if b.cfg.RetentionBytes > 0 {
		bytes = strconv.FormatUint(uint64(b.cfg.RetentionBytes), 10)
	}
	return map[string]*string{"retention.ms": &ms, "retention.bytes": &bytes}
}

// Run serves until ctx is done, then closes the broker, persisting its
// state.
func (b *Broker) Run(ctx context.Context) error {
	<-ctx.Done()
	b.Close()
	return nil
}

// Close stops the broker and saves its state to DataDir. It is safe to call
// more than once.
func (b *Broker) Close() {
	b.cluster.Close()
	b.logger.Info("embedded kafka broker stopped")
}

// advertisedListener is a listener that reports a chosen address as its own.
type advertisedListener struct {
	net.Listener
	addr net.Addr
}

func (l advertisedListener) Addr() net.Addr { return l.addr }

// hostPort is a net.Addr for a host:port that may be a DNS name.
type hostPort string

func (hostPort) Network() string  { return "tcp" }
func (a hostPort) String() string { return string(a) }
