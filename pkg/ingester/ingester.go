// Package ingester turns Kafka records into chunks in object storage.
//
// An ingester owns some of the topic's partitions. For each it replays
// records from the partition's committed offset, appends each record's
// entries to its stream's open chunk, cuts chunks when they are full, idle
// or old, uploads them with an index segment that finds them, and only then
// commits the partition's offset — up to the oldest record whose data is
// still only in memory. Kafka is the write-ahead log (docs/adr/0001): an
// ingester killed at any instant loses nothing acknowledged, because
// whatever it held in memory is still in Kafka after its committed offset,
// and the next owner replays it. The price is duplicates: a chunk uploaded
// but not yet covered by a commit is rebuilt and uploaded again after a
// crash. Chunk keys are content addressed and queries dedupe identical
// entries, so the price is paid in storage and query work, never in
// correctness.
//
// Partition ownership comes in two modes (BRIEF.md, "Two ways to own
// partitions"): the gossiped partition ring (ownership moves only when the
// healthy ingesters change, with an explicit handover: the old owner
// flushes, commits and lets go before the new owner starts), or a Kafka
// consumer group (cooperative-sticky; every membership change is a
// rebalance). Static ownership of listed partitions serves tests.
//
// Memory is bounded by max_memory_chunk_bytes: above it the ingester stops
// polling Kafka, so records wait in the broker instead of the heap, and cuts
// its largest chunks early to flush them.
package ingester

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/index"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/ring"
)

// Ring is what the ingester needs of the partition ring in ring ownership.
// *ring.Ring implements it.
type Ring interface {
	// DesiredPartitions are the partitions the ring assigns to instance.
	DesiredPartitions(instance string) []int32
	Partitions() []ring.PartitionDesc
	Instances(role string) []ring.InstanceDesc
	IsHealthy(inst ring.InstanceDesc, now time.Time) bool
	SetOwner(partition int32, s ring.OwnerState)
	RemoveOwner(partition int32)
	SetState(s ring.InstanceState)
	Changes() <-chan struct{}
	// WaitJoined waits until the ring shows the cluster rather than this
	// node alone (or gives up after the heartbeat timeout); see ringLoop.
	WaitJoined(ctx context.Context) bool
}

// Deps are the ingester's collaborators.
type Deps struct {
	Kafka  kafka.Config
	Reader kafka.ReaderConfig
	Bucket objstore.Bucket
	// Ring is required in ring ownership and ignored otherwise.
	Ring Ring
	// AuthEnabled makes the recent-data API require X-Scope-OrgID (401
	// without it); off, every request is tenant "fake", as in Loki.
	AuthEnabled bool
	Registerer  prometheus.Registerer
	Logger      *slog.Logger
	// Now is the clock for chunk ages and idle periods; nil means
	// time.Now.
	Now func() time.Time
	// TracerProvider traces consumed records and the flushes that make
	// them durable (tracing.go); nil means none.
	TracerProvider trace.TracerProvider
	// KafkaOpts are extra options for the ingester's Kafka client: the
	// lab's network cut (pkg/netcut) passes its dialer here. Default none.
	KafkaOpts []kgo.Opt
}

// Ingester consumes partitions into chunks. Build it with New, run it with
// Run.
type Ingester struct {
	cfg         Config
	authEnabled bool
	topic       string
	group       string
	logger      *slog.Logger
	now         func() time.Time

	client *kgo.Client
	adm    *kadm.Client
	bucket objstore.Bucket
	index  *index.Client
	ring   Ring

	metrics *metrics
	memory  *memoryAccount
	traces  *traces
	// chunkPool shares zstd coders and scratch buffers among all chunks.
	chunkPool     *chunk.Pool
	chunkEncoding chunk.Encoding
	flushSlots    chan struct{}
	segmentSeq    atomic.Uint64
	segmentNonce  string // random per process: see segmentName

	// batchMu is held while a poll's records are applied, and by take and
	// release around changing a partition's state, so a batch polled for
	// one ownership of a partition never lands in the next one.
	batchMu    sync.Mutex
	mu         sync.RWMutex
	partitions map[int32]*partition
	// activeInRing records partitions announced ACTIVE in the ring.
	activeInRing map[int32]bool

	// pressure wakes the flush loop when memory is over the limit.
	pressure chan struct{}
	// shutdownRequested is closed by /ingester/shutdown.
	shutdownRequested chan struct{}
	shutdownOnce      sync.Once
	done              chan struct{}
	stopping          atomic.Bool
	// owning is set once the ingester has taken its first partitions (or,
	// in ring ownership, reconciled with the ring once): before that an
	// empty partition set does not mean "caught up".
	owning atomic.Bool
	runErr error
}

// New builds an ingester. It connects to nothing until Run.
func New(cfg Config, deps Deps) (*Ingester, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Bucket == nil {
		return nil, errors.New("ingester: no object store bucket")
	}
	if cfg.Ownership == OwnershipRing && deps.Ring == nil {
		return nil, errors.New("ingester: ring ownership needs a ring")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	enc, err := chunk.ParseEncoding(cfg.ChunkEncoding)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("ingester: registering metrics: %w", err)
	}
	i := &Ingester{
		cfg:               cfg,
		authEnabled:       deps.AuthEnabled,
		topic:             deps.Kafka.Topic,
		group:             deps.Reader.ConsumerGroup,
		logger:            deps.Logger,
		now:               deps.Now,
		bucket:            deps.Bucket,
		index:             index.NewClient(deps.Bucket),
		segmentNonce:      fmt.Sprintf("%08x", rand.Uint32()),
		ring:              deps.Ring,
		metrics:           m,
		memory:            &memoryAccount{limit: int64(cfg.MaxMemoryChunkBytes), metrics: m},
		traces:            newTraces(deps.TracerProvider),
		chunkPool:         chunk.NewPool(),
		chunkEncoding:     enc,
		flushSlots:        make(chan struct{}, cfg.ConcurrentFlushes),
		partitions:        make(map[int32]*partition),
		activeInRing:      make(map[int32]bool),
		pressure:          make(chan struct{}, 1),
		shutdownRequested: make(chan struct{}),
		done:              make(chan struct{}),
	}
	m.memoryChunkLimit.Set(float64(cfg.MaxMemoryChunkBytes))
	var extra []kgo.Opt
	if cfg.Ownership == OwnershipGroup {
		extra = i.groupOpts()
	}
	extra = append(extra, deps.KafkaOpts...)
	i.client, err = kafka.NewReaderClient(deps.Kafka, deps.Reader, "ingester-"+cfg.InstanceID, deps.Registerer, deps.Logger, extra...)
	if err != nil {
		return nil, err
	}
	i.adm = kadm.NewClient(i.client)
	return i, nil
}

// Run consumes, flushes and commits until ctx ends or /ingester/shutdown is
// called; then it stops consuming, flushes everything (flush_on_shutdown),
// commits, gives its partitions back, and returns.
func (i *Ingester) Run(ctx context.Context) error {
	defer close(i.done)
	defer i.client.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-i.shutdownRequested:
			cancel()
		case <-ctx.Done():
		}
	}()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return i.consume(gctx) })
	g.Go(func() error { return i.flushLoop(gctx) })
	switch i.cfg.Ownership {
	case OwnershipStatic:
		g.Go(func() error { return i.takeStatic(gctx) })
	case OwnershipRing:
		g.Go(func() error { return i.ringLoop(gctx) })
	}
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	i.stopping.Store(true)
	if serr := i.shutdown(context.WithoutCancel(ctx)); serr != nil {
		err = errors.Join(err, serr)
	}
	i.runErr = err
	return err
}

// shutdown flushes (if configured) and releases every partition.
func (i *Ingester) shutdown(ctx context.Context) error {
	if i.ring != nil && i.cfg.Ownership == OwnershipRing {
		i.ring.SetState(ring.InstanceLeaving)
	}
	reason := reasonShutdown
	if !i.cfg.ShutdownFlush {
		reason = ""
	}
	var errs []error
	for _, id := range i.owned() {
		if err := i.release(ctx, id, reason); err != nil {
			errs = append(errs, err)
		}
	}
	if i.cfg.Ownership == OwnershipGroup {
		// Leave the group now rather than after a session timeout, so the
		// survivors rebalance at once.
		i.client.LeaveGroup()
	}
	return errors.Join(errs...)
}

// consume polls records and hands them to their partitions. It stops
// polling while chunk memory is over its limit: the records wait in Kafka,
// where they cost nothing, instead of in this heap.
func (i *Ingester) consume(ctx context.Context) error {
	if i.cfg.Ownership == OwnershipGroup {
		// A poll blocks rebalances until AllowRebalance; leaving the
		// group at shutdown is one, so never return with it blocked.
		defer i.client.AllowRebalance()
	}
	for {
		if err := i.waitForMemory(ctx); err != nil {
			return err
		}
		fetches := i.client.PollRecords(ctx, 10000)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return ctx.Err()
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			i.logger.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
		})
		i.batchMu.Lock()
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if len(fp.Records) == 0 {
				return
			}
			if p := i.partition(fp.Partition); p != nil {
				traced := i.traces.consumeBatch(p, fp.Records)
				p.pushRecords(fp.Records, fp.HighWatermark)
				traced()
			}
		})
		i.batchMu.Unlock()
		if i.cfg.Ownership == OwnershipGroup {
			i.client.AllowRebalance()
			// A member may be assigned nothing (more members than
			// partitions); having joined is then all it takes to be ready.
			if _, gen := i.client.GroupMetadata(); gen >= 0 {
				i.owning.Store(true)
			}
		}
	}
}

func (i *Ingester) waitForMemory(ctx context.Context) error {
	over, released := i.memory.over()
	if !over {
		return nil
	}
	i.metrics.fetchPauses.Inc()
	i.metrics.fetchPaused.Set(1)
	defer i.metrics.fetchPaused.Set(0)
	i.logger.Warn("chunk memory over limit: fetching paused until flushes release memory",
		"bytes", i.memory.load(), "limit", i.cfg.MaxMemoryChunkBytes)
	for over {
		select {
		case i.pressure <- struct{}{}:
		default:
		}
		if i.cfg.Ownership == OwnershipGroup {
			// Let rebalances proceed while paused.
			i.client.AllowRebalance()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-released:
		case <-time.After(time.Second):
		}
		over, released = i.memory.over()
	}
	return nil
}

// flushLoop runs a flush cycle per partition every flush_check_period, and
// at once when memory is over its limit.
func (i *Ingester) flushLoop(ctx context.Context) error {
	t := time.NewTicker(i.cfg.FlushCheckPeriod)
	defer t.Stop()
	for {
		mode := flushDue
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-i.pressure:
			mode = flushMemory
		}
		i.flushAll(ctx, mode, "")
	}
}

// flushAll runs one flush cycle on every owned partition in parallel.
func (i *Ingester) flushAll(ctx context.Context, mode flushMode, reason string) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, id := range i.owned() {
		p := i.partition(id)
		if p == nil {
			continue
		}
		wg.Go(func() {
			if err := p.flush(ctx, mode, reason); err != nil {
				i.logger.Warn("flush incomplete; chunks kept for retry", "partition", id, "err", err)
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// memoryTarget is how many bytes of open chunks each partition may keep
// when a memory-pressure flush cuts the largest ones: half the limit,
// shared among the owned partitions, so that together they end well under
// the limit rather than each under half of it.
func (i *Ingester) memoryTarget() int64 {
	i.mu.RLock()
	n := len(i.partitions)
	i.mu.RUnlock()
	return int64(i.cfg.MaxMemoryChunkBytes) / 2 / int64(max(n, 1))
}

func (i *Ingester) partition(id int32) *partition {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.partitions[id]
}

func (i *Ingester) owned() []int32 {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return slices.Sorted(maps.Keys(i.partitions))
}

// take starts owning a partition: it reads where the partition's durable
// data ends (the committed offset) and where the partition ends now (the
// catch-up target), then consumes from the committed offset. With
// consume set (ring and static ownership) it adds the partition to the
// client; a consumer group's client consumes assigned partitions itself.
func (i *Ingester) take(ctx context.Context, id int32, consume bool) error {
	committed, ok, err := kafka.CommittedOffset(ctx, i.adm, i.group, i.topic, id)
	if err != nil {
		return err
	}
	end, err := kafka.EndOffset(ctx, i.adm, i.topic, id)
	if err != nil {
		return err
	}
	start := kgo.NewOffset().At(committed)
	if !ok {
		// Nothing committed: the partition was never flushed, so all of
		// it is to be read.
		committed = 0
		start = kgo.NewOffset().AtStart()
	}
	p := newPartition(i, id, committed, end)
	// Registered while no batch is being applied, so records polled for an
	// earlier ownership of this partition cannot land in the new state.
	i.batchMu.Lock()
	i.mu.Lock()
	i.partitions[id] = p
	i.metrics.ownedPartitions.Set(float64(len(i.partitions)))
	i.mu.Unlock()
	i.batchMu.Unlock()
	i.metrics.partitionsAcquired.Inc()
	if consume {
		i.client.AddConsumePartitions(map[string]map[int32]kgo.Offset{i.topic: {id: start}})
	}
	i.logger.Info("partition taken", "partition", id, "committed", committed, "end", end, "replay_records", max(end-committed, 0))
	return nil
}

// release stops owning a partition. With a reason it first flushes every
// chunk and commits, so the next owner replays nothing; without one (or if
// the flush fails) the next owner replays from the committed offset, which
// is still correct — only slower, with duplicates.
func (i *Ingester) release(ctx context.Context, id int32, reason string) error {
	p := i.partition(id)
	if p == nil {
		return nil
	}
	if i.cfg.Ownership != OwnershipGroup {
		i.client.RemoveConsumePartitions(map[string][]int32{i.topic: {id}})
	}
	if i.ring != nil && i.cfg.Ownership == OwnershipRing {
		i.ring.SetOwner(id, ring.OwnerLeaving)
	}
	// Wait for a batch being applied: once RemoveConsumePartitions has
	// returned, no later poll holds this partition's records, so after this
	// none can reach it.
	i.batchMu.Lock()
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	i.batchMu.Unlock()
	var err error
	how := "handover"
	if reason != "" {
		err = p.flush(ctx, flushAll, reason)
	}
	p.flushMu.Lock()
	if reason == "" || err != nil {
		how = "lost"
		p.dropAll()
	}
	p.mu.Lock()
	p.released = true
	p.mu.Unlock()
	p.flushMu.Unlock()
	i.traces.forgetPartition(id)
	i.mu.Lock()
	delete(i.partitions, id)
	delete(i.activeInRing, id)
	i.metrics.ownedPartitions.Set(float64(len(i.partitions)))
	i.mu.Unlock()
	i.metrics.partitionsReleased.WithLabelValues(how).Inc()
	i.metrics.lag.DeleteLabelValues(p.label)
	if i.ring != nil && i.cfg.Ownership == OwnershipRing {
		i.ring.RemoveOwner(id)
	}
	p.mu.Lock()
	committed := p.committed
	p.mu.Unlock()
	i.logger.Info("partition released", "partition", id, "how", how, "committed", committed)
	if err != nil {
		return fmt.Errorf("ingester: releasing partition %d: %w", id, err)
	}
	return nil
}

// dropAll forgets every chunk of a partition that is not flushed: its
// records are after the committed offset, so the next owner replays them.
func (p *partition) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.ing.metrics
	for tenant, byLabels := range p.streams {
		for _, s := range byLabels {
			if s.head != nil {
				p.sealed(s, "")
			}
			for _, sc := range s.sealed {
				p.ing.memory.add(-int64(sc.memBytes))
				m.memoryChunks.Dec()
			}
			m.memoryStreams.WithLabelValues(tenant).Dec()
		}
	}
	p.streams = nil
}

func (i *Ingester) takeStatic(ctx context.Context) error {
	for _, id := range i.cfg.StaticPartitions {
		if err := retry(ctx, i.logger, "take partition", func() error { return i.take(ctx, id, true) }); err != nil {
			return err
		}
	}
	i.owning.Store(true)
	<-ctx.Done()
	return nil
}

// retry runs f until it succeeds or ctx ends, backing off up to 5s.
func retry(ctx context.Context, logger *slog.Logger, what string, f func() error) error {
	backoff := 100 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		logger.Warn(what+" failed; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// commit commits offset for partition: through the group in group
// ownership (a member must use its generation), as a standalone commit
// otherwise.
func (i *Ingester) commit(ctx context.Context, partition int32, offset int64) error {
	if i.cfg.Ownership != OwnershipGroup {
		return kafka.CommitOffset(ctx, i.adm, i.group, i.topic, partition, offset)
	}
	var cerr error
	i.client.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{
		i.topic: {partition: {Epoch: -1, Offset: offset}},
	}, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if e := kerr.ErrorForCode(p.ErrorCode); e != nil {
					cerr = e
				}
			}
		}
	})
	if cerr != nil {
		return fmt.Errorf("ingester: committing offset %d of partition %d in group %q: %w", offset, partition, i.group, cerr)
	}
	return nil
}

// Ready reports whether the ingester has caught up on every partition it
// owns; /ready answers 503 until then, so a restarted ingester is not
// asked for recent data it has not replayed yet.
func (i *Ingester) Ready(context.Context) error {
	if i.stopping.Load() {
		return errors.New("ingester is shutting down")
	}
	if !i.owning.Load() {
		return errors.New("ingester has not taken its partitions yet")
	}
	if err := i.waitingForHandover(); err != nil { // ready_handover.go
		return err
	}
	i.mu.RLock()
	defer i.mu.RUnlock()
	var behind []int32
	for id, p := range i.partitions {
		p.mu.Lock()
		if !p.caughtUp {
			behind = append(behind, id)
		}
		p.mu.Unlock()
	}
	if len(behind) > 0 {
		slices.Sort(behind)
		return fmt.Errorf("ingester replaying partitions %v", behind)
	}
	return nil
}

// PartitionStatus is one owned partition's progress, as /ingester/status
// shows it.
type PartitionStatus struct {
	Partition     int32 `json:"partition"`
	Next          int64 `json:"next_offset"`
	Committed     int64 `json:"committed_offset"`
	HighWatermark int64 `json:"high_watermark"`
	CaughtUp      bool  `json:"caught_up"`
	Streams       int   `json:"streams"`
	Chunks        int   `json:"chunks"`
}

// Status reports every owned partition.
func (i *Ingester) Status() []PartitionStatus {
	var out []PartitionStatus
	for _, id := range i.owned() {
		p := i.partition(id)
		if p == nil {
			continue
		}
		p.mu.Lock()
		st := PartitionStatus{Partition: id, Next: p.next, Committed: p.committed, HighWatermark: p.highWatermark, CaughtUp: p.caughtUp}
		for _, byLabels := range p.streams {
			for _, s := range byLabels {
				st.Streams++
				st.Chunks += len(s.sealed)
				if s.head != nil {
					st.Chunks++
				}
			}
		}
		p.mu.Unlock()
		out = append(out, st)
	}
	return out
}

// MemoryChunkBytes is the bytes currently charged for chunks in memory.
func (i *Ingester) MemoryChunkBytes() int64 { return i.memory.load() }

// FlushHandler serves POST /flush: flush every chunk of every owned
// partition now and commit. It answers once the flush is done: 204, or 500
// with what failed (the chunks stay in memory for the next attempt).
func (i *Ingester) FlushHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := i.flushAll(r.Context(), flushAll, reasonForced); err != nil {
			http.Error(w, "flush incomplete: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// ShutdownHandler serves POST /ingester/shutdown: stop consuming, flush
// everything, commit, give the partitions back, and end Run — the clean
// way to take an ingester out (a rollout's first step). It answers once
// that is done.
func (i *Ingester) ShutdownHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i.shutdownOnce.Do(func() { close(i.shutdownRequested) })
		select {
		case <-i.done:
		case <-r.Context().Done():
			return
		}
		if i.runErr != nil {
			http.Error(w, "shutdown incomplete: "+i.runErr.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// StatusHandler serves GET /ingester/status as JSON.
func (i *Ingester) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			Instance         string            `json:"instance"`
			Ownership        string            `json:"ownership"`
			MemoryChunkBytes int64             `json:"memory_chunk_bytes"`
			Partitions       []PartitionStatus `json:"partitions"`
		}{i.cfg.InstanceID, i.cfg.Ownership, i.memory.load(), i.Status()})
	})
}
