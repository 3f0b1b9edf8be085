package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/server"
)

// AllInOneConfig is `lokilab run`: the embedded broker plus every component
// in one process, sharing one data directory.
type AllInOneConfig struct {
	DistributorConfig `yaml:",inline"`
	// DataDir holds everything the lab persists: the broker's log under
	// kafka/ (and, as components arrive, chunks and index under store/).
	DataDir       string             `yaml:"data_dir"`
	EmbeddedKafka kafka.BrokerConfig `yaml:"embedded_kafka"`
}

// RegisterFlags registers every component's flags plus the lab's own.
func (c *AllInOneConfig) RegisterFlags(fs *flag.FlagSet) {
	c.DistributorConfig.RegisterFlags(fs)
	fs.StringVar(&c.DataDir, "data.dir", "lokilab-data", "Directory for everything the lab persists.")
	c.EmbeddedKafka.RegisterFlags(fs)
	// The broker's data dir follows -data.dir unless set on its own.
	c.EmbeddedKafka.DataDir = ""
	if f := fs.Lookup("kafka.broker.data-dir"); f != nil {
		f.DefValue = ""
		f.Usage = "Directory the embedded broker persists its log to; default <data.dir>/kafka."
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
	return errors.Join(c.DistributorConfig.Validate(), c.EmbeddedKafka.Validate())
}

// RunAllInOne runs the whole lab in this process until ctx is done. banner,
// if not nil, receives a summary of what runs where once everything is up.
func RunAllInOne(ctx context.Context, cfg AllInOneConfig, defaults any, logger *slog.Logger, banner io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	broker, err := kafka.NewBroker(cfg.EmbeddedKafka, logger)
	if err != nil {
		return err
	}
	defer broker.Close()
	partitions, err := broker.EnsureTopic(ctx, cfg.Kafka.Topic, cfg.Kafka.AutoCreateTopicDefaultPartitions)
	if err != nil {
		return err
	}
	// Components reach the broker over loopback TCP like any Kafka client.
	cfg.Kafka.Address = broker.Addr()

	reg := server.NewRegistry()
	srv, err := server.New(cfg.Server, server.Options{
		Registerer: reg, Gatherer: reg, Logger: logger,
		Config: &cfg, DefaultConfig: defaults,
	})
	if err != nil {
		return err
	}
	if banner != nil {
		printBanner(banner, srv.Addr(), broker.Addr(), cfg, partitions)
	}
	return runDistributor(ctx, cfg.DistributorConfig, srv, reg, logger)
}

func printBanner(w io.Writer, httpAddr, kafkaAddr string, cfg AllInOneConfig, partitions int) {
	fmt.Fprintf(w, `
lokilab is running (all in one process)

  Loki push API   http://%[1]s/loki/api/v1/push
  metrics         http://%[1]s/metrics
  config          http://%[1]s/config   (?mode=diff shows what you changed)
  readiness       http://%[1]s/ready
  profiles        http://%[1]s/debug/pprof/
  Kafka           %[2]s  topic %[3]q, %[4]d partitions (embedded broker)
  data            %[5]s

Try:
  curl -s -H 'Content-Type: application/json' http://%[1]s/loki/api/v1/push \
    --data-raw '{"streams":[{"stream":{"app":"hello"},"values":[["'$(date +%%s%%N)'","hello, lokilab"]]}]}' -w '%%{http_code}\n'
  kcat -b %[2]s -t %[3]s -C -e -f 'partition %%p offset %%o key %%k: %%S bytes\n'

Ctrl-C stops it cleanly; restarting on the same data directory keeps the data.
`, httpAddr, kafkaAddr, cfg.Kafka.Topic, partitions, cfg.DataDir)
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
	if ready != nil {
		ready(b.Addr(), partitions)
	}
	return b.Run(ctx)
}
