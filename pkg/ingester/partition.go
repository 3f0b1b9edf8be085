package ingester

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/labels"
)

// partition is what an ingester holds for one Kafka partition it owns: the
// streams built from the partition's records and the offsets that say how
// far they are durable.
//
// Each partition is independent — its own streams, its own flushes, its
// own committed offset — so handing a partition to another ingester is
// "flush this partition, commit, stop", with nothing shared to untangle.
// A stream lives in exactly one partition, because the distributor routes
// by a hash of (tenant, labels).
type partition struct {
	id    int32
	label string // id as a metric label
	ing   *Ingester

	// flushMu serialises flush cycles of this partition (the periodic
	// one, /flush, memory pressure and the final one at release).
	flushMu sync.Mutex

	mu      sync.Mutex
	streams map[string]map[string]*stream // tenant → canonical labels → stream
	// next is the offset of the next record to process.
	next int64
	// committed is the last offset committed: every record before it is
	// durable in object storage. Written by flush cycles (under flushMu
	// and mu), read under mu.
	committed int64
	// highWatermark is the partition's end offset as of the last fetch.
	highWatermark int64
	// catchUpTarget is the end offset when the partition was taken; the
	// partition is caught up (and counts as ready) once next reaches it.
	catchUpTarget int64
	caughtUp      bool
	taken         time.Time
	// closed stops records from being applied (the partition is being
	// released); released stops flush cycles (it is gone: its chunks are
	// flushed or dropped, and a cycle that was waiting for flushMu must
	// not commit an offset computed over streams that no longer exist).
	closed   bool
	released bool
}

func newPartition(ing *Ingester, id int32, committed, catchUpTarget int64) *partition {
	p := &partition{
		id:            id,
		label:         strconv.Itoa(int(id)),
		ing:           ing,
		streams:       make(map[string]map[string]*stream),
		next:          committed,
		committed:     committed,
		highWatermark: catchUpTarget,
		catchUpTarget: catchUpTarget,
		taken:         ing.now(),
	}
	p.checkCaughtUp()
	ing.metrics.committedOffset.WithLabelValues(p.label).Set(float64(committed))
	return p
}

// pushRecords applies a batch of fetched records in offset order.
func (p *partition) pushRecords(recs []*kgo.Record, highWatermark int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		// Released while these were in flight: the next owner reads them
		// from the committed offset.
		return
	}
	now := p.ing.now()
	for _, r := range recs {
		if r.Offset < p.next {
			continue // already processed (a refetch after a reset)
		}
		if !p.caughtUp {
			p.ing.metrics.replayedRecords.WithLabelValues(p.label).Inc()
		}
		p.pushRecord(r, now)
		p.next = r.Offset + 1
	}
	p.ing.metrics.recordsConsumed.WithLabelValues(p.label).Add(float64(len(recs)))
	if highWatermark > p.highWatermark {
		p.highWatermark = highWatermark
	}
	p.ing.metrics.lag.WithLabelValues(p.label).Set(float64(max(p.highWatermark-p.next, 0)))
	p.checkCaughtUp()
}

func (p *partition) checkCaughtUp() {
	if p.caughtUp || p.next < p.catchUpTarget-p.ing.cfg.ReadyLagThreshold {
		return
	}
	p.caughtUp = true
	d := p.ing.now().Sub(p.taken)
	p.ing.metrics.catchUpDuration.Observe(d.Seconds())
	p.ing.logger.Info("partition caught up", "partition", p.id, "offset", p.next, "took", d.Round(time.Millisecond))
}

func (p *partition) pushRecord(r *kgo.Record, now time.Time) {
	tenant, ps, err := kafka.DecodeRecord(r)
	if err != nil {
		// The distributor wrote it, so this is a bug or corruption; a
		// record that cannot be decoded now never will be, so skipping it
		// is the only way forward. Loud, counted, never silent.
		p.ing.metrics.recordsCorrupt.WithLabelValues(p.label).Inc()
		p.ing.logger.Error("skipping undecodable record", "partition", p.id, "offset", r.Offset, "err", err)
		return
	}
	s := p.stream(tenant, ps.Labels, now)
	if s == nil {
		p.ing.metrics.recordsCorrupt.WithLabelValues(p.label).Inc()
		return
	}
	cfg := &p.ing.cfg
	var appended, bytes, dups int
	for i := range ps.Entries {
		e := &ps.Entries[i]
		if s.head != nil && !s.head.accepts(e.Timestamp, cfg.MaxChunkAge) {
			// Keep every chunk within max_chunk_age of entry time, so an
			// out-of-order straggler opens a chunk of its own instead of
			// stretching one chunk over hours. Nothing is rejected:
			// the line was acknowledged, so it must be stored.
			p.sealed(s, reasonOutOfOrder)
		}
		if s.head == nil {
			s.head = &openChunk{
				c:           chunk.New(p.ing.chunkEncoding, int(cfg.ChunkBlockSize), int(cfg.ChunkTargetSize), chunk.WithPool(p.ing.chunkPool)),
				firstOffset: r.Offset,
				created:     now,
			}
			p.ing.metrics.memoryChunks.Inc()
		}
		dup, err := s.head.c.Append(e.Timestamp, e.Line, e.StructuredMetadata)
		if err != nil {
			p.ing.logger.Error("append failed", "tenant", tenant, "stream", s.lstr, "err", err)
			continue
		}
		if dup {
			dups++
			continue
		}
		appended++
		bytes += e.Size()
		if s.head.c.Full() {
			p.sealed(s, reasonFull) // charges the chunk's final size
		}
	}
	// Charged once per record rather than per entry: the account is a
	// mutex and a gauge, and a record's entries are at most ~1MiB.
	if s.head != nil {
		p.charge(s.head)
	}
	s.lastAppend = now
	m := p.ing.metrics
	if appended > 0 {
		m.entriesAppended.WithLabelValues(tenant).Add(float64(appended))
		m.bytesAppended.WithLabelValues(tenant).Add(float64(bytes))
	}
	if dups > 0 {
		m.duplicates.WithLabelValues(tenant).Add(float64(dups))
	}
}

// accepts reports whether an entry at ts keeps the chunk within maxAge of
// entry time.
func (h *openChunk) accepts(ts int64, maxAge time.Duration) bool {
	if h.c.Entries() == 0 {
		return true
	}
	lo, hi := h.c.Bounds()
	return max(hi, ts)-min(lo, ts) <= int64(maxAge)
}

// charge brings the memory account up to date with the chunk's size.
func (p *partition) charge(h *openChunk) {
	n := h.c.MemoryBytes()
	p.ing.memory.add(int64(n - h.memBytes))
	h.memBytes = n
}

// sealed cuts the stream's open chunk for flushing. Sealing compresses the
// head block and frees its buffer, so the chunk's memory charge drops to
// its compressed size here — which is what makes a memory-pressure flush
// release memory even before the store has taken anything.
func (p *partition) sealed(s *stream, reason string) *sealedChunk {
	if err := s.head.c.Seal(); err != nil {
		p.ing.logger.Error("sealing chunk", "tenant", s.tenant, "stream", s.lstr, "err", err)
	}
	p.charge(s.head)
	return s.seal(reason)
}

// stream finds or creates the stream. The strings from DecodeRecord alias
// the record's buffer, so a new stream clones what it keeps; a lookup of an
// existing stream allocates nothing.
func (p *partition) stream(tenant, lstr string, now time.Time) *stream {
	byLabels := p.streams[tenant]
	if s, ok := byLabels[lstr]; ok {
		return s
	}
	ls, err := labels.Parse(lstr)
	if err != nil {
		p.ing.logger.Error("record with unparseable labels", "partition", p.id, "tenant", tenant, "labels", lstr, "err", err)
		return nil
	}
	tenant = strings.Clone(tenant)
	for i := range ls {
		ls[i].Name = strings.Clone(ls[i].Name)
		ls[i].Value = strings.Clone(ls[i].Value)
	}
	s := &stream{tenant: tenant, labels: ls, lstr: ls.String(), fp: ls.Hash(), lastAppend: now}
	if byLabels == nil {
		byLabels = make(map[string]*stream)
		p.streams[tenant] = byLabels
	}
	byLabels[s.lstr] = s
	p.ing.metrics.memoryStreams.WithLabelValues(tenant).Inc()
	p.ing.metrics.streamsCreated.WithLabelValues(tenant).Inc()
	return s
}

// committable is the offset that may be committed now: the oldest offset
// whose data is still only in memory, or, when everything is flushed, the
// next offset to process. Must hold p.mu.
func (p *partition) committable() int64 {
	o := p.next
	for _, byLabels := range p.streams {
		for _, s := range byLabels {
			if so := s.oldestOffset(); so >= 0 && so < o {
				o = so
			}
		}
	}
	return o
}

// memoryAccount is the ingester-wide count of bytes held in chunks, checked
// before every poll.
type memoryAccount struct {
	mu      sync.Mutex
	bytes   int64
	limit   int64
	cond    chan struct{} // closed and replaced when bytes drop
	metrics *metrics
}

func (a *memoryAccount) add(n int64) {
	if n == 0 {
		return
	}
	a.mu.Lock()
	a.bytes += n
	b := a.bytes
	var wake chan struct{}
	if n < 0 && a.cond != nil {
		wake, a.cond = a.cond, nil
	}
	a.mu.Unlock()
	a.metrics.memoryChunkBytes.Set(float64(b))
	if wake != nil {
		close(wake)
	}
}

// over reports whether the account is over its limit and, if so, a channel
// closed when bytes are released.
func (a *memoryAccount) over() (bool, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.limit <= 0 || a.bytes < a.limit {
		return false, nil
	}
	if a.cond == nil {
		a.cond = make(chan struct{})
	}
	return true, a.cond
}

func (a *memoryAccount) load() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bytes
}
