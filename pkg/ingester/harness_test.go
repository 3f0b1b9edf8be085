package ingester

import (
	"context"
	"flag"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/internal/kafkatest"
	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/internal/storetest"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/storage"
)

// harness is an embedded broker with a topic, a producer writing records the
// way the distributor does, and an in-memory object store with a fault
// injector in front of it.
type harness struct {
	t          testing.TB
	partitions int
	broker     *kafka.Broker
	producer   *kgo.Client
	adm        *kadm.Client
	store      *storage.Store
	kcfg       kafka.Config
	rcfg       kafka.ReaderConfig

	mu      sync.Mutex
	written map[string][]string                // tenant → lines produced
	streams map[string]map[string][]push.Entry // tenant → stream → entries produced
}

func newHarness(t testing.TB, partitions int) *harness {
	t.Helper()
	broker := kafkatest.Broker(t, partitions)
	h := &harness{t: t, partitions: partitions, broker: broker, written: make(map[string][]string), streams: make(map[string]map[string][]push.Entry)}
	h.kcfg.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	h.kcfg.Address = broker.Addr()
	h.kcfg.ProducerLinger = time.Millisecond
	h.rcfg.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	h.rcfg.FetchMaxWait = 50 * time.Millisecond
	var err error
	h.producer, err = kafka.NewWriterClient(h.kcfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.producer.Close)
	h.adm = kadm.NewClient(h.producer)
	h.store = storage.NewInMemory("test", nil)
	return h
}

// config returns an ingester config for tests: static ownership of parts,
// timers long enough that only the test decides when chunks flush.
func (h *harness) config(id string, parts ...int32) Config {
	var cfg Config
	cfg.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	cfg.InstanceID = id
	cfg.Ownership = OwnershipStatic
	cfg.StaticPartitions = parts
	cfg.FlushBackoffMin = 10 * time.Millisecond
	cfg.FlushBackoffMax = 50 * time.Millisecond
	if len(parts) == 0 {
		for p := range h.partitions {
			cfg.StaticPartitions = append(cfg.StaticPartitions, int32(p))
		}
	}
	return cfg
}

// running is an ingester running in the background.
type running struct {
	ing    *Ingester
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func (h *harness) start(cfg Config) *running {
	h.t.Helper()
	reg := prometheus.NewRegistry()
	ing, err := New(cfg, Deps{Kafka: h.kcfg, Reader: h.rcfg, Bucket: h.store.Bucket, Registerer: reg})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{ing: ing, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- ing.Run(ctx) }()
	h.t.Cleanup(func() { r.stop() })
	return r
}

// stop ends Run (flushing if the config says so) and returns its error.
func (r *running) stop() error {
	r.cancel()
	err, ok := <-r.done
	if ok {
		close(r.done)
	}
	return err
}

// produce writes n lines in streams of tenant, spread over partitions, and
// remembers them. Lines carry unique IDs so the store check can name the
// missing ones.
func (h *harness) produce(tenant string, pushID string, streams, lines int) {
	h.t.Helper()
	req := pushtest.Request(pushtest.Options{Streams: streams, LinesPerStream: lines, ID: pushID, Seed: uint64(len(pushID))})
	var recs []*kgo.Record
	for i := range req.Streams {
		s := &req.Streams[i]
		var err error
		recs, err = kafka.EncodeStream(recs, kafka.RecordSpec{Tenant: tenant, Partition: int32(i % h.partitions), MaxValueBytes: 4096}, s)
		if err != nil {
			h.t.Fatal(err)
		}
	}
	if err := h.producer.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.streams[tenant] == nil {
		h.streams[tenant] = make(map[string][]push.Entry)
	}
	for _, s := range req.Streams {
		for _, e := range s.Entries {
			h.written[tenant] = append(h.written[tenant], e.Line)
		}
		h.streams[tenant][s.Labels] = append(h.streams[tenant][s.Labels], s.Entries...)
	}
}

// checkStored reads tenant's data back from the store and fails the test
// if any produced line is missing. It returns the duplicates removed.
func (h *harness) checkStored(tenant string) storetest.Result {
	h.t.Helper()
	res, err := storetest.Read(context.Background(), h.store.Bucket, tenant)
	if err != nil {
		h.t.Fatal(err)
	}
	got := make(map[string]bool, len(res.Entries))
	for _, e := range res.Entries {
		got[e.Line] = true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var missing []string
	for _, l := range h.written[tenant] {
		if !got[l] {
			missing = append(missing, pushtest.LineID(l))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		h.t.Fatalf("%d of %d lines of tenant %s missing from the store, e.g. %v", len(missing), len(h.written[tenant]), tenant, missing[:min(5, len(missing))])
	}
	if len(res.Entries) != len(h.written[tenant]) {
		h.t.Fatalf("store holds %d distinct entries of %s, %d were produced", len(res.Entries), tenant, len(h.written[tenant]))
	}
	return res
}

// endOffsets returns each partition's end offset.
func (h *harness) endOffsets() map[int32]int64 {
	h.t.Helper()
	ends, err := h.adm.ListEndOffsets(context.Background(), "loki")
	if err != nil {
		h.t.Fatal(err)
	}
	out := make(map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// committed returns the group's committed offset per partition.
func (h *harness) committed() map[int32]int64 {
	h.t.Helper()
	out := make(map[int32]int64)
	for p := range h.partitions {
		o, ok, err := kafka.CommittedOffset(context.Background(), h.adm, h.rcfg.ConsumerGroup, "loki", int32(p))
		if err != nil {
			h.t.Fatal(err)
		}
		if ok {
			out[int32(p)] = o
		}
	}
	return out
}

// consumedAll reports whether ing owns every partition and has processed
// every record produced so far.
func (h *harness) consumedAll(ing *Ingester) func() bool {
	ends := h.endOffsets()
	return func() bool {
		st := ing.Status()
		if len(st) != h.partitions {
			return false
		}
		for _, p := range st {
			if p.Next < ends[p.Partition] {
				return false
			}
		}
		return true
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
