package ingester

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/lokilab/lokilab/pkg/index"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// flushMode says which open chunks a flush cycle cuts.
type flushMode int

const (
	// flushDue cuts chunks that are idle or too old; full chunks were cut
	// when they filled.
	flushDue flushMode = iota
	// flushAll cuts every open chunk (/flush, shutdown, handover).
	flushAll
	// flushMemory also cuts the largest open chunks until what remains
	// open is under half the memory limit.
	flushMemory
)

// flushItem is one sealed chunk picked for this cycle, with its stream.
type flushItem struct {
	s  *stream
	sc *sealedChunk
}

// flush runs one flush cycle of the partition:
//
//  1. cut the open chunks that are due (idle, max age, or all for a forced
//     flush) and pick every sealed chunk whose retry time has come;
//  2. encode and upload them, at most concurrent_flushes at once across the
//     ingester; a failed upload keeps its chunk for a later attempt with
//     backoff;
//  3. write one index segment per tenant (and day) for the uploaded chunks:
//     only now are they durable, because a chunk nobody can find is as good
//     as lost;
//  4. drop the durable chunks from memory and commit the partition's offset
//     up to the oldest record still held only in memory.
//
// It returns the first error, after doing all it could; whatever failed
// stays in memory and is retried by the next cycle.
func (p *partition) flush(ctx context.Context, mode flushMode, reason string) error {
	// Computed before p.mu is taken: the lock order is i.mu, then p.mu.
	memTarget := p.ing.memoryTarget()
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	p.mu.Lock()
	released := p.released
	p.mu.Unlock()
	if released {
		return nil
	}
	start := p.ing.now()
	items := p.pick(mode, reason, start, memTarget)
	// Traced only when a traced push's chunk is among the items.
	ctx, span := p.ing.traces.startFlush(ctx, p, items, reason)
	errUpload := p.upload(ctx, items)
	errIndex := p.index(ctx, items)
	p.dropDurable(items)
	errCommit := p.commit(ctx)
	p.ing.metrics.flushDuration.Observe(p.ing.now().Sub(start).Seconds())
	err := errors.Join(errUpload, errIndex, errCommit)
	span.end(items, err)
	return err
}

func (p *partition) pick(mode flushMode, reason string, now time.Time, memTarget int64) []flushItem {
	p.mu.Lock()
	defer p.mu.Unlock()
	cfg := &p.ing.cfg
	var open []*stream
	for _, byLabels := range p.streams {
		for _, s := range byLabels {
			if s.head == nil {
				continue
			}
			switch {
			case mode == flushAll:
				p.sealed(s, reason)
			case now.Sub(s.lastAppend) >= cfg.ChunkIdlePeriod:
				p.sealed(s, reasonIdle)
			case now.Sub(s.head.created) >= cfg.MaxChunkAge:
				p.sealed(s, reasonMaxAge)
			default:
				open = append(open, s)
			}
		}
	}
	if mode == flushMemory {
		// Cut the largest open chunks first: fewest objects for the most
		// memory released.
		slices.SortFunc(open, func(a, b *stream) int { return b.head.memBytes - a.head.memBytes })
		var openBytes int64
		for _, s := range open {
			openBytes += int64(s.head.memBytes)
		}
		for _, s := range open {
			if openBytes <= memTarget {
				break
			}
			openBytes -= int64(s.head.memBytes)
			p.sealed(s, reasonMemory)
		}
	}
	var items []flushItem
	for _, byLabels := range p.streams {
		for _, s := range byLabels {
			for _, sc := range s.sealed {
				if mode == flushAll || !now.Before(sc.retryAt) {
					items = append(items, flushItem{s, sc})
				}
			}
		}
	}
	return items
}

// upload encodes and uploads the items not uploaded yet. Sealed chunks are
// immutable and only this partition's flush (serialised by flushMu) touches
// their flush state, so no lock is held while the store works.
func (p *partition) upload(ctx context.Context, items []flushItem) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for _, it := range items {
		if it.sc.uploaded {
			continue
		}
		select {
		case p.ing.flushSlots <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return errors.Join(firstErr, ctx.Err())
		}
		wg.Add(1)
		go func() {
			defer func() { <-p.ing.flushSlots; wg.Done() }()
			if err := p.uploadOne(ctx, it); err != nil {
				p.ing.metrics.flushFailures.WithLabelValues("upload").Inc()
				p.failed(it.sc)
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return firstErr
}

func (p *partition) uploadOne(ctx context.Context, it flushItem) error {
	sc := it.sc
	// Encode cuts the chunk's head block (the first time; after that it
	// only copies the compressed blocks, so every attempt uploads the same
	// bytes to the same key); queries snapshot chunks under p.mu, so the
	// cut must not run beside them.
	p.mu.Lock()
	data, err := sc.c.Encode()
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("ingester: encoding chunk of %s %s: %w", it.s.tenant, it.s.lstr, err)
	}
	// The final cut may have grown the chunk; the encoded copy is charged
	// while the upload holds it, and released after, so a store outage
	// holds only the chunks themselves.
	if mem := sc.c.MemoryBytes(); mem != sc.memBytes {
		p.ing.memory.add(int64(mem - sc.memBytes))
		sc.memBytes = mem
	}
	p.ing.memory.add(int64(len(data)))
	defer p.ing.memory.add(-int64(len(data)))
	from, through := sc.c.Bounds()
	sc.ref = index.ChunkRef{
		Fingerprint:       it.s.fp,
		From:              from,
		Through:           through,
		Checksum:          crc32.Checksum(data, castagnoli),
		Entries:           uint32(sc.c.Entries()),
		UncompressedBytes: uint32(sc.c.UncompressedSize()),
		CompressedBytes:   uint32(len(data)),
	}
	octx, cancel := context.WithTimeout(ctx, p.ing.cfg.FlushOpTimeout)
	defer cancel()
	key := sc.ref.Key(it.s.tenant)
	octx, span := p.ing.traces.child(octx, "store.put_chunk", attribute.String("key", key), attribute.Int("bytes", len(data)))
	err = p.ing.bucket.Upload(octx, key, bytes.NewReader(data))
	endSpan(span, err)
	if err != nil {
		return fmt.Errorf("ingester: uploading chunk %s: %w", key, err)
	}
	sc.uploaded = true
	return nil
}

// failed schedules the chunk's next attempt with exponential backoff.
func (p *partition) failed(sc *sealedChunk) {
	sc.attempts++
	d := p.ing.cfg.FlushBackoffMin << min(sc.attempts-1, 20)
	sc.retryAt = p.ing.now().Add(min(d, p.ing.cfg.FlushBackoffMax))
}

// index writes one segment per tenant for the uploaded, not yet indexed
// chunks of this cycle and marks them durable.
func (p *partition) index(ctx context.Context, items []flushItem) error {
	byTenant := make(map[string]map[*stream][]*sealedChunk)
	for _, it := range items {
		if !it.sc.uploaded {
			continue
		}
		if byTenant[it.s.tenant] == nil {
			byTenant[it.s.tenant] = make(map[*stream][]*sealedChunk)
		}
		byTenant[it.s.tenant][it.s] = append(byTenant[it.s.tenant][it.s], it.sc)
	}
	var errs []error
	for tenant, streams := range byTenant {
		series := make([]index.Series, 0, len(streams))
		for s, scs := range streams {
			refs := make([]index.ChunkRef, len(scs))
			for i, sc := range scs {
				refs[i] = sc.ref
			}
			series = append(series, index.Series{Labels: s.labels, Chunks: refs})
		}
		name := p.ing.segmentName(p.id)
		octx, cancel := context.WithTimeout(ctx, p.ing.cfg.FlushOpTimeout)
		octx, span := p.ing.traces.child(octx, "index.write", attribute.String("tenant", tenant), attribute.Int("series", len(series)))
		keys, err := p.ing.index.Write(octx, tenant, name, series)
		endSpan(span, err)
		cancel()
		if err != nil {
			p.ing.metrics.flushFailures.WithLabelValues("index").Inc()
			for _, scs := range streams {
				for _, sc := range scs {
					p.failed(sc)
				}
			}
			errs = append(errs, fmt.Errorf("ingester: writing index segment %s for tenant %s: %w", name, tenant, err))
			continue
		}
		p.ing.metrics.indexSegments.Add(float64(len(keys)))
		for _, scs := range streams {
			for _, sc := range scs {
				sc.durable = true
			}
		}
	}
	return errors.Join(errs...)
}

// dropDurable removes durable chunks from their streams, and streams left
// with nothing from the partition.
func (p *partition) dropDurable(items []flushItem) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.ing.metrics
	now := p.ing.now()
	touched := make(map[*stream]struct{})
	for _, it := range items {
		sc := it.sc
		if !sc.durable {
			continue
		}
		touched[it.s] = struct{}{}
		m.chunksFlushed.WithLabelValues(sc.reason).Inc()
		m.chunkSize.Observe(float64(sc.ref.CompressedBytes))
		m.chunkEntries.Observe(float64(sc.ref.Entries))
		if sc.ref.CompressedBytes > 0 {
			m.chunkCompression.Observe(float64(sc.ref.UncompressedBytes) / float64(sc.ref.CompressedBytes))
		}
		m.chunkAge.Observe(now.Sub(sc.created).Seconds())
		p.ing.memory.add(-int64(sc.memBytes))
		p.ing.metrics.memoryChunks.Dec()
	}
	for s := range touched {
		s.sealed = slices.DeleteFunc(s.sealed, func(sc *sealedChunk) bool { return sc.durable })
		if s.empty() {
			delete(p.streams[s.tenant], s.lstr)
			if len(p.streams[s.tenant]) == 0 {
				delete(p.streams, s.tenant)
			}
			m.memoryStreams.WithLabelValues(s.tenant).Dec()
			m.streamsRemoved.WithLabelValues(s.tenant).Inc()
		}
	}
}

// commit records the partition's progress in Kafka: the offset of the
// oldest record whose data is not yet durable. A failed commit is harmless
// (a crash would replay a little more) and retried next cycle.
func (p *partition) commit(ctx context.Context) error {
	p.mu.Lock()
	o, committed := p.committable(), p.committed
	p.mu.Unlock()
	if o <= committed {
		return nil
	}
	_, span := p.ing.traces.child(ctx, "kafka.commit_offset", partitionAttr(p.id), attribute.Int64("offset", o))
	err := p.ing.commit(ctx, p.id, o)
	endSpan(span, err)
	if err != nil {
		p.ing.metrics.commitFailures.WithLabelValues(p.label).Inc()
		return err
	}
	p.mu.Lock()
	p.committed = o
	p.mu.Unlock()
	p.ing.metrics.commits.WithLabelValues(p.label).Inc()
	p.ing.metrics.committedOffset.WithLabelValues(p.label).Set(float64(o))
	return nil
}

// segmentName names an index segment uniquely across ingesters, partitions
// and restarts: instance, partition, wall-clock milliseconds, a sequence
// number within the process and a random nonce per process. A name must
// never be written twice with different content — queriers cache decoded
// segments by key (index.SegmentCache) — and the first four alone repeat
// when a restarted process flushes in the millisecond an earlier one did
// (its sequence starts again at 1), when the clock steps back, or when two
// processes run with one instance ID (the default, ingester-0).
func (i *Ingester) segmentName(partition int32) string {
	return i.cfg.InstanceID + "-p" + strconv.Itoa(int(partition)) + "-" +
		strconv.FormatInt(i.now().UnixMilli(), 10) + "-" + strconv.FormatUint(i.segmentSeq.Add(1), 10) + "-" + i.segmentNonce
}
