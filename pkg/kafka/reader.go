package kafka

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/pkg/config"
)

// ReaderConfig is how an ingester reads the topic. YAML keys follow Loki's
// kafka_config where the concept exists.
type ReaderConfig struct {
	// ConsumerGroup is the group whose committed offsets say where each
	// partition's replay starts. In ring ownership it is only a place to
	// store offsets (no member ever joins it); in group ownership the
	// ingesters join it. Using one name for both lets an ingester switch
	// modes and resume where the other left off. Default
	// "lokilab-ingester".
	ConsumerGroup string `yaml:"consumer_group"`
	// FetchMaxBytes bounds one fetch response across partitions, and with it
	// the memory records wait in before the ingester processes them.
	// Default 50MiB (franz-go's). Lower it on a memory-limited ingester;
	// raising it helps catch-up throughput when records are large.
	FetchMaxBytes config.ByteSize `yaml:"fetch_max_bytes"`
	// FetchMaxPartitionBytes bounds one partition's share of a fetch.
	// Default 10MiB.
	FetchMaxPartitionBytes config.ByteSize `yaml:"fetch_max_partition_bytes"`
	// FetchMaxWait is how long the broker may hold a fetch waiting for new
	// records. Default 250ms: lower than franz-go's 5s so a lab sees lines
	// reach ingesters promptly; higher means fewer, fuller fetches.
	FetchMaxWait time.Duration `yaml:"fetch_max_wait"`
}

// RegisterFlags registers the reader flags.
func (c *ReaderConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ConsumerGroup, "kafka.consumer-group", "lokilab-ingester", "Consumer group holding the ingesters' committed offsets.")
	c.FetchMaxBytes = 50 << 20
	fs.Var(&c.FetchMaxBytes, "kafka.fetch-max-bytes", "Maximum bytes of one fetch response.")
	c.FetchMaxPartitionBytes = 10 << 20
	fs.Var(&c.FetchMaxPartitionBytes, "kafka.fetch-max-partition-bytes", "Maximum bytes of one partition in a fetch response.")
	fs.DurationVar(&c.FetchMaxWait, "kafka.fetch-max-wait", 250*time.Millisecond, "How long the broker may hold a fetch waiting for records.")
}

// Validate reports a reader configuration no consumer could use.
func (c *ReaderConfig) Validate() error {
	if c.ConsumerGroup == "" {
		return errors.New("kafka: consumer_group is empty")
	}
	if c.FetchMaxBytes == 0 || c.FetchMaxPartitionBytes == 0 || c.FetchMaxBytes > math.MaxInt32 || c.FetchMaxPartitionBytes > math.MaxInt32 {
		return errors.New("kafka: fetch_max_bytes and fetch_max_partition_bytes must be between 1 byte and 2GiB")
	}
	return nil
}

// NewReaderClient returns a consumer client with no partitions assigned yet:
// the caller adds partitions as it comes to own them (AddConsumePartitions),
// or passes group options in extra. Offsets are never committed
// automatically; ingesters commit what is durable in object storage.
func NewReaderClient(cfg Config, rc ReaderConfig, component string, reg prometheus.Registerer, logger *slog.Logger, extra ...kgo.Opt) (*kgo.Client, error) {
	if err := errors.Join(cfg.Validate(), rc.Validate()); err != nil {
		return nil, err
	}
	opts := append(commonOpts(cfg, component, reg, logger),
		kgo.FetchMaxBytes(int32(rc.FetchMaxBytes)),
		kgo.FetchMaxPartitionBytes(int32(rc.FetchMaxPartitionBytes)),
		kgo.FetchMaxWait(rc.FetchMaxWait),
		// Read only what producers' transactions committed; the
		// distributor does not use transactions, so this costs nothing
		// today and keeps a transactional producer's aborted writes out.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: new reader client: %w", err)
	}
	return cl, nil
}

// CommittedOffset returns the group's committed offset for one partition:
// the next record to read. ok is false when nothing was ever committed.
func CommittedOffset(ctx context.Context, adm *kadm.Client, group, topic string, partition int32) (offset int64, ok bool, err error) {
	resps, err := adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		// kfake answers so for a group nothing was ever committed to;
		// Kafka answers with no offsets. Both mean "start at the
		// beginning".
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("kafka: fetching committed offsets of group %q: %w", group, err)
	}
	r, found := resps.Lookup(topic, partition)
	if !found {
		return 0, false, nil
	}
	if r.Err != nil {
		return 0, false, fmt.Errorf("kafka: committed offset of %s/%d: %w", topic, partition, r.Err)
	}
	if r.At < 0 {
		return 0, false, nil
	}
	return r.At, true, nil
}

// CommitOffset commits offset (the next record to read) for one partition
// on behalf of group without being a member of it — the way a partition
// owner in ring mode records its progress. Kafka accepts such commits only
// while the group has no active members.
func CommitOffset(ctx context.Context, adm *kadm.Client, group, topic string, partition int32, offset int64) error {
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: topic, Partition: partition, At: offset, LeaderEpoch: -1})
	resps, err := adm.CommitOffsets(ctx, group, os)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		return fmt.Errorf("kafka: committing offset %d of %s/%d for group %q: %w", offset, topic, partition, group, err)
	}
	return nil
}

// EndOffset returns a partition's high watermark: the offset the next
// produced record will get.
func EndOffset(ctx context.Context, adm *kadm.Client, topic string, partition int32) (int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("kafka: listing end offsets of %q: %w", topic, err)
	}
	o, ok := ends.Lookup(topic, partition)
	if !ok {
		return 0, fmt.Errorf("kafka: no end offset for %s/%d", topic, partition)
	}
	if o.Err != nil {
		return 0, fmt.Errorf("kafka: end offset of %s/%d: %w", topic, partition, o.Err)
	}
	return o.Offset, nil
}
