package kafka

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/lokilab/lokilab/pkg/config"
)

// Config is how a component reaches the Kafka topic that is lokilab's
// write-ahead log. YAML keys follow Loki's kafka_config where the concept is
// the same.
type Config struct {
	// Address is the bootstrap broker host:port, or several separated by
	// commas. Default 127.0.0.1:9092, where `lokilab kafka` and `lokilab
	// run` listen.
	Address string `yaml:"address"`
	// Topic is the topic holding every tenant's pushes. Default "loki".
	Topic string `yaml:"topic"`
	// ClientID names this client in broker logs and kprom metrics.
	ClientID string `yaml:"client_id"`
	// DialTimeout bounds connecting to a broker. Default 2s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// WriteTimeout is how long a push waits for Kafka to acknowledge all
	// its records before it is answered 503. Default 10s, Loki's. It is
	// also the producer's record delivery timeout: a record not yet sent
	// by then is failed (a record already sent waits for the broker's
	// answer). Lower it to fail fast when Kafka stalls; raise it to ride
	// out a leader election without errors.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// ProducerMaxRecordSizeBytes caps a record's value; a stream larger
	// than this is split across records. Default 960KiB, which keeps a
	// record (value + key + headers + batch overhead) inside the broker's
	// default message.max.bytes of 1048588. Raising it needs the broker's
	// limit raised too.
	ProducerMaxRecordSizeBytes int `yaml:"producer_max_record_size_bytes"`
	// ProducerMaxBufferedBytes bounds the bytes the producer holds waiting
	// for acknowledgement; when full, a push fails at once with 503
	// (producer_buffer_full) rather than waiting for space. Default 1GiB,
	// Loki's; the distributor's max_inflight_push_bytes normally refuses
	// pushes before this fills.
	ProducerMaxBufferedBytes config.ByteSize `yaml:"producer_max_buffered_bytes"`
	// ProducerLinger is how long a partition's batch waits for more records
	// before it is sent. Default 0, not franz-go's 10ms: every push waits
	// for its records' acknowledgement, so a linger is a wait added to each
	// one, and at 16 pushes in flight lokilab bench accepted 25 MiB/s at
	// 10ms against 82-87 MiB/s at 0 (docs/performance.md). Batching does
	// not stop at 0: records produced while a request is in flight go out
	// together in the next one, so batches grow with the load by themselves.
	// A linger pays where many small produces come from few callers that do
	// not wait for each one.
	ProducerLinger time.Duration `yaml:"producer_linger"`
	// AutoCreateTopicEnabled creates the topic at start if it is missing.
	// Default true.
	AutoCreateTopicEnabled bool `yaml:"auto_create_topic_enabled"`
	// AutoCreateTopicDefaultPartitions is the partition count of a topic
	// created at start. Default 12 (Loki's is 1000, one per possible
	// ingester; 12 splits evenly over 2, 3, 4 and 6 ingesters, which is what
	// the scaling experiments need). An existing topic keeps its count.
	AutoCreateTopicDefaultPartitions int `yaml:"auto_create_topic_default_partitions"`
}

// RegisterFlags registers the Kafka flags with Loki's names.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Address, "kafka.address", "127.0.0.1:9092", "Kafka bootstrap broker address(es), comma-separated.")
	fs.StringVar(&c.Topic, "kafka.topic", "loki", "Kafka topic for pushed streams.")
	fs.StringVar(&c.ClientID, "kafka.client-id", "", "Kafka client ID; empty derives one from the component.")
	fs.DurationVar(&c.DialTimeout, "kafka.dial-timeout", 2*time.Second, "Timeout for connecting to a broker.")
	fs.DurationVar(&c.WriteTimeout, "kafka.write-timeout", 10*time.Second, "How long a push waits for Kafka to acknowledge its records.")
	fs.IntVar(&c.ProducerMaxRecordSizeBytes, "kafka.producer-max-record-size-bytes", 960<<10, "Maximum record value size; larger streams are split.")
	c.ProducerMaxBufferedBytes = 1 << 30
	fs.Var(&c.ProducerMaxBufferedBytes, "kafka.producer-max-buffered-bytes", "Maximum bytes the producer buffers awaiting acknowledgement.")
	fs.DurationVar(&c.ProducerLinger, "kafka.producer-linger", 0, "How long a batch waits for more records before it is sent.")
	fs.BoolVar(&c.AutoCreateTopicEnabled, "kafka.auto-create-topic-enabled", true, "Create the topic at start if it does not exist.")
	fs.IntVar(&c.AutoCreateTopicDefaultPartitions, "kafka.auto-create-topic-default-partitions", 12, "Partitions of a topic created at start.")
}

// Validate reports a configuration no client could use.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Brokers()) == 0 {
		errs = append(errs, errors.New("kafka: address is empty"))
	}
	if c.Topic == "" {
		errs = append(errs, errors.New("kafka: topic is empty"))
	}
	if c.WriteTimeout <= 0 {
		errs = append(errs, errors.New("kafka: write_timeout must be positive"))
	}
	if c.ProducerMaxRecordSizeBytes < minRecordSize || c.ProducerMaxRecordSizeBytes > maxRecordSize {
		errs = append(errs, fmt.Errorf("kafka: producer_max_record_size_bytes %d out of range [%d, %d]", c.ProducerMaxRecordSizeBytes, minRecordSize, maxRecordSize))
	}
	if c.AutoCreateTopicEnabled && c.AutoCreateTopicDefaultPartitions < 1 {
		errs = append(errs, errors.New("kafka: auto_create_topic_default_partitions must be at least 1"))
	}
	return errors.Join(errs...)
}

// Brokers splits Address into broker addresses.
func (c *Config) Brokers() []string {
	var out []string
	for _, a := range strings.Split(c.Address, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

const (
	// minRecordSize leaves room for a labels string and at least a small
	// entry; maxRecordSize keeps a record inside the producer's batch limit.
	minRecordSize = 4 << 10
	maxRecordSize = producerBatchMaxBytes - recordOverheadBytes
	// producerBatchMaxBytes is the largest batch the producer builds;
	// Kafka's default max.message.bytes (and kfake's) is 1048588.
	producerBatchMaxBytes = 1_048_576
	// recordOverheadBytes covers what a record adds around its value: the
	// batch header (61 bytes), the record's varint framing, a key of up to
	// 150 bytes (a tenant ID) and a traceparent header.
	recordOverheadBytes = 1 << 10
)
