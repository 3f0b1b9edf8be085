package ingester

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/config"
)

// Ownership modes: how an ingester comes to own Kafka partitions.
const (
	// OwnershipRing gives each partition to one ingester through the
	// gossiped partition ring. Ownership moves only when the set of healthy
	// ingesters changes, and the old owner hands over (flush, commit,
	// release) before the new one starts: no group rebalances.
	OwnershipRing = "ring"
	// OwnershipGroup joins a Kafka consumer group (cooperative-sticky) and
	// lets the group coordinator assign partitions; every membership change
	// is a rebalance.
	OwnershipGroup = "group"
	// OwnershipStatic consumes a fixed list of partitions: for tests and for
	// single-ingester setups that need no ring.
	OwnershipStatic = "static"
)

// Config is the ingester's configuration. YAML keys follow Loki's ingester
// block where the concept exists.
type Config struct {
	// InstanceID names this ingester in the ring, in index segment names
	// and in metrics. Default "ingester-0".
	InstanceID string `yaml:"instance_id"`
	// Ownership is ring (default), group or static; see the constants.
	Ownership string `yaml:"ownership"`
	// StaticPartitions are the partitions consumed in static ownership.
	StaticPartitions []int32 `yaml:"static_partitions"`
	// GroupInstanceID turns on static group membership in group ownership:
	// a restarted ingester with the same ID gets its partitions back without
	// a rebalance, if it returns within the session timeout. Empty (the
	// default) means dynamic membership.
	GroupInstanceID string `yaml:"group_instance_id"`
	// GroupSessionTimeout is how long the group coordinator waits for a
	// silent member before reassigning its partitions. Default 6s (kfake's
	// minimum; Kafka's default is 45s): short, so a killed ingester's
	// partitions move within seconds in the lab.
	GroupSessionTimeout time.Duration `yaml:"group_session_timeout"`

	// ChunkEncoding is the chunk codec: snappy (default), zstd or none.
	// zstd stores ~1.5-2x fewer bytes for ~3x the CPU; none is for
	// measuring what compression buys.
	ChunkEncoding string `yaml:"chunk_encoding"`
	// ChunkBlockSize is the most uncompressed bytes a block holds (its
	// serialised entries, timestamps included): the head block is cut and
	// compressed before an entry would take it past this size, which also
	// bounds an active stream's head memory. Default 256KB, Loki's.
	// Smaller blocks let queries skip more and decompress less; larger
	// blocks compress better.
	ChunkBlockSize config.ByteSize `yaml:"chunk_block_size"`
	// ChunkTargetSize is the compressed size at which a chunk is cut and
	// flushed (reason "full"). Default 1.5MB, Loki's. Larger chunks mean
	// fewer objects and PUTs but more memory per stream and more lost work
	// to replay.
	ChunkTargetSize config.ByteSize `yaml:"chunk_target_size"`
	// MaxChunkAge flushes a chunk this long after its first entry arrived
	// (reason "max_age"), bounding how much a crash replays and how stale
	// the store is. Default 2h, Loki's. It also bounds a chunk's span of
	// entry time: an entry that would stretch the open chunk past it opens
	// a new chunk instead.
	MaxChunkAge time.Duration `yaml:"max_chunk_age"`
	// ChunkIdlePeriod flushes a chunk that received nothing for this long
	// (reason "idle"). Default 30m, Loki's.
	ChunkIdlePeriod time.Duration `yaml:"chunk_idle_period"`
	// FlushCheckPeriod is how often chunks are checked for flushing and
	// offsets committed. Default 30s, Loki's. The committed offset lags by
	// up to this plus the flush time, which is what a crash replays.
	FlushCheckPeriod time.Duration `yaml:"flush_check_period"`
	// ConcurrentFlushes bounds the chunk uploads in flight per ingester.
	// Default 32, Loki's.
	ConcurrentFlushes int `yaml:"concurrent_flushes"`
	// FlushOpTimeout bounds one chunk upload or index write. Default 10m
	// (Loki's), far above a healthy PUT so only a hung store trips it.
	FlushOpTimeout time.Duration `yaml:"flush_op_timeout"`
	// FlushBackoffMin and FlushBackoffMax bound the exponential backoff
	// between attempts to flush a chunk whose upload failed. The chunk stays
	// in memory, and the partition's committed offset stays behind it, until
	// an attempt succeeds. Defaults 1s and 1m.
	FlushBackoffMin time.Duration `yaml:"flush_backoff_min"`
	FlushBackoffMax time.Duration `yaml:"flush_backoff_max"`
	// MaxMemoryChunkBytes bounds the uncompressed bytes held in chunks not
	// yet flushed. Above it the ingester stops polling Kafka (records wait
	// there, lag grows) and flushes its largest chunks early (reason
	// "memory") until it is below again. Default 1GiB; 0 disables the bound,
	// which is how the OOM experiment lets an ingester grow until the kernel
	// kills it.
	MaxMemoryChunkBytes config.ByteSize `yaml:"max_memory_chunk_bytes"`
	// ReadyLagThreshold is how many records behind the partitions' end
	// offsets (as measured when each partition was taken) an ingester may
	// be and still report ready. Default 0: ready once caught up, so a
	// restarted ingester is not sent queries while it replays.
	ReadyLagThreshold int64 `yaml:"ready_lag_threshold"`
	// ShutdownFlush flushes every chunk and commits on a clean shutdown, so
	// a restart replays nothing. Default true; off, a restart replays from
	// the last committed offset (what the rollout experiment compares).
	ShutdownFlush bool `yaml:"flush_on_shutdown"`
}

// RegisterFlags registers the ingester flags with Loki's names.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.InstanceID, "ingester.instance-id", "ingester-0", "Name of this ingester in the ring, metrics and index segment names.")
	fs.StringVar(&c.Ownership, "ingester.ownership", OwnershipRing, "How partitions are owned: ring, group or static.")
	fs.Func("ingester.static-partitions", "Comma-separated partitions consumed in static ownership.", func(s string) error {
		ps, err := parsePartitions(s)
		c.StaticPartitions = ps
		return err
	})
	fs.StringVar(&c.GroupInstanceID, "ingester.group-instance-id", "", "Static group membership ID in group ownership; empty is dynamic.")
	fs.DurationVar(&c.GroupSessionTimeout, "ingester.group-session-timeout", 6*time.Second, "Consumer group session timeout in group ownership.")
	fs.StringVar(&c.ChunkEncoding, "ingester.chunk-encoding", "snappy", "Chunk codec: snappy, zstd or none.")
	c.ChunkBlockSize = 256 << 10
	fs.Var(&c.ChunkBlockSize, "ingester.chunks-block-size", "Uncompressed size at which a chunk block is cut.")
	c.ChunkTargetSize = 1536 << 10
	fs.Var(&c.ChunkTargetSize, "ingester.chunk-target-size", "Compressed size at which a chunk is cut and flushed.")
	fs.DurationVar(&c.MaxChunkAge, "ingester.max-chunk-age", 2*time.Hour, "Flush a chunk this long after its first entry.")
	fs.DurationVar(&c.ChunkIdlePeriod, "ingester.chunks-idle-period", 30*time.Minute, "Flush a chunk that received nothing for this long.")
	fs.DurationVar(&c.FlushCheckPeriod, "ingester.flush-check-period", 30*time.Second, "How often chunks are checked for flushing and offsets committed.")
	fs.IntVar(&c.ConcurrentFlushes, "ingester.concurrent-flushes", 32, "Chunk uploads in flight per ingester.")
	fs.DurationVar(&c.FlushOpTimeout, "ingester.flush-op-timeout", 10*time.Minute, "Timeout of one chunk upload or index write.")
	fs.DurationVar(&c.FlushBackoffMin, "ingester.flush-op-backoff-min-period", time.Second, "Minimum backoff after a failed flush.")
	fs.DurationVar(&c.FlushBackoffMax, "ingester.flush-op-backoff-max-period", time.Minute, "Maximum backoff after failed flushes.")
	c.MaxMemoryChunkBytes = 1 << 30
	fs.Var(&c.MaxMemoryChunkBytes, "ingester.max-memory-chunk-bytes", "Uncompressed chunk bytes held before fetching pauses; 0 disables.")
	fs.Int64Var(&c.ReadyLagThreshold, "ingester.ready-lag-threshold", 0, "Records behind the end offsets at which the ingester still reports ready.")
	fs.BoolVar(&c.ShutdownFlush, "ingester.flush-on-shutdown", true, "Flush all chunks and commit on a clean shutdown.")
}

// Validate reports a configuration the ingester cannot run with.
func (c *Config) Validate() error {
	var errs []error
	if c.InstanceID == "" {
		errs = append(errs, errors.New("ingester: instance_id is empty"))
	}
	switch c.Ownership {
	case OwnershipRing, OwnershipGroup:
	case OwnershipStatic:
		if len(c.StaticPartitions) == 0 {
			errs = append(errs, errors.New("ingester: static ownership needs static_partitions"))
		}
	default:
		errs = append(errs, fmt.Errorf("ingester: unknown ownership %q (want ring, group or static)", c.Ownership))
	}
	if _, err := chunk.ParseEncoding(c.ChunkEncoding); err != nil {
		errs = append(errs, fmt.Errorf("ingester: chunk_encoding: %w", err))
	}
	if c.ChunkBlockSize == 0 || c.ChunkTargetSize == 0 {
		errs = append(errs, errors.New("ingester: chunk_block_size and chunk_target_size must be positive"))
	}
	if c.MaxChunkAge <= 0 || c.ChunkIdlePeriod <= 0 || c.FlushCheckPeriod <= 0 {
		errs = append(errs, errors.New("ingester: max_chunk_age, chunk_idle_period and flush_check_period must be positive"))
	}
	if c.ConcurrentFlushes < 1 {
		errs = append(errs, errors.New("ingester: concurrent_flushes must be at least 1"))
	}
	if c.FlushBackoffMin <= 0 || c.FlushBackoffMax < c.FlushBackoffMin {
		errs = append(errs, errors.New("ingester: flush backoff needs 0 < min <= max"))
	}
	return errors.Join(errs...)
}

func parsePartitions(s string) ([]int32, error) {
	var ps []int32
	for f := range strings.SplitSeq(s, ",") {
		p, err := strconv.ParseInt(strings.TrimSpace(f), 10, 32)
		if err != nil || p < 0 {
			return nil, fmt.Errorf("bad partition %q", f)
		}
		ps = append(ps, int32(p))
	}
	return ps, nil
}
