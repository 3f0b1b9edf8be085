package querier

import (
	"cmp"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/thanos-io/objstore"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sync/errgroup"

	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/index"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/logql"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/tracing"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// StoreStats says what reading the store cost, as Loki's query stats do.
type StoreStats struct {
	Chunks            int // chunk objects read
	CacheHits         int // of which from the chunk cache
	CompressedBytes   int64
	DecompressedBytes int64 // lines in the time range
	Entries           int   // entries decoded in the time range
	Duplicates        int   // identical entries removed (replays, re-flushes)
	// Filtered entries (and their bytes) were dropped by the raw line
	// filter while decoding, never copied. They include the entries of
	// skipped blocks.
	Filtered      int
	FilteredBytes int64
	// BlocksSkipped is the blocks Read.BlockFilter rejected, and
	// EntriesSkipped their entries in the range: dropped without being
	// decoded one by one. They are counted in Entries, DecompressedBytes,
	// Filtered and FilteredBytes too; see readChunk for why.
	BlocksSkipped  int
	EntriesSkipped int
}

func (s *StoreStats) add(o StoreStats) {
	s.Chunks += o.Chunks
	s.CacheHits += o.CacheHits
	s.CompressedBytes += o.CompressedBytes
	s.DecompressedBytes += o.DecompressedBytes
	s.Entries += o.Entries
	s.Duplicates += o.Duplicates
	s.Filtered += o.Filtered
	s.FilteredBytes += o.FilteredBytes
	s.BlocksSkipped += o.BlocksSkipped
	s.EntriesSkipped += o.EntriesSkipped
}

// Store reads streams from the object store.
type Store struct {
	bkt         objstore.Bucket
	index       *index.Client
	pool        *chunk.Pool
	cache       *ChunkCache // nil: no cache
	concurrency int
}

// NewStore reads bkt, fetching at most concurrency chunks at once, through
// cache if it is not nil, and reading the index through segments if it is
// not nil.
func NewStore(bkt objstore.Bucket, concurrency int, cache *ChunkCache, segments *index.SegmentCache) *Store {
	return &Store{bkt: bkt, index: index.NewClient(bkt, index.WithSegmentCache(segments)), pool: chunk.NewPool(), cache: cache, concurrency: max(concurrency, 1)}
}

// Index is the store's index client, for the label and series APIs.
func (s *Store) Index() *index.Client { return s.index }

// Read is what Streams reads.
type Read struct {
	Matchers []*labels.Matcher
	// From and Through bound entry timestamps in ns: From <= ts < Through.
	From, Through int64
	// Keep, if not nil, sees each decoded line before it is copied: a
	// query's line filters run there, so the lines they drop are never
	// allocated.
	Keep func(line string) bool
	// BlockFilter, if not nil, sees each decompressed block before its
	// entries are decoded and rejects the blocks that cannot hold a line
	// Keep accepts (logql.LogQuery.BlockFilter: a block lacking a `|=`
	// substring), which are then skipped whole. It must never reject a
	// block holding such a line, and is meaningful only with Keep.
	BlockFilter func(block []byte) bool
	// MaxBytes refuses, before any chunk is fetched, a read whose chunks
	// hold more line bytes than this (the index knows each chunk's size);
	// 0 is no limit.
	MaxBytes int64
}

// Streams returns tenant's streams matching r.Matchers with their entries
// in the range that r.Keep accepts, each stream's entries in time order
// (equal timestamps by line), identical entries once.
//
// Memory is the kept entries in the range: the querier splits a query into
// intervals to bound it, and r.MaxBytes refuses an interval too big.
func (s *Store) Streams(ctx context.Context, tenantID string, r Read) ([]logql.StreamEntries, StoreStats, error) {
	ms, from, through := r.Matchers, r.From, r.Through
	var st StoreStats
	if through <= from {
		return nil, st, nil
	}
	series, err := s.index.Series(ctx, tenantID, from, through-1, ms...)
	if err != nil {
		return nil, st, err
	}
	type job struct {
		stream int
		ref    index.ChunkRef
	}
	var (
		jobs  []job
		bytes int64
	)
	for i, se := range series {
		for _, ref := range se.Chunks {
			jobs = append(jobs, job{i, ref})
			bytes += int64(ref.UncompressedBytes)
		}
	}
	if r.MaxBytes > 0 && bytes > r.MaxBytes {
		return nil, st, errTooManyBytes(bytes, r.MaxBytes)
	}
	perStream := make([][]push.Entry, len(series))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.concurrency)
	for _, j := range jobs {
		g.Go(func() error {
			entries, cst, err := s.readChunk(gctx, tenantID, j.ref, r)
			if err != nil {
				return err
			}
			mu.Lock()
			perStream[j.stream] = append(perStream[j.stream], entries...)
			st.add(cst)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, st, err
	}
	out := make([]logql.StreamEntries, 0, len(series))
	for i, se := range series {
		es := perStream[i]
		slices.SortFunc(es, func(a, b push.Entry) int {
			if c := cmp.Compare(a.Timestamp, b.Timestamp); c != 0 {
				return c
			}
			return strings.Compare(a.Line, b.Line)
		})
		n := len(es)
		es = slices.CompactFunc(es, func(a, b push.Entry) bool { return a.Timestamp == b.Timestamp && a.Line == b.Line })
		st.Duplicates += n - len(es)
		if len(es) > 0 {
			out = append(out, logql.StreamEntries{Labels: se.Labels, Entries: es})
		}
	}
	return out, st, nil
}

// readChunk fetches one chunk (from the cache if it holds it), checks it
// against the index, and returns copies of its entries in [r.From,
// r.Through) that r.Keep accepts.
//
// What the stats count when r.BlockFilter skips a block: its entries in
// the range are counted as decompressed (Entries, DecompressedBytes) and
// as dropped by the line filter (Filtered, FilteredBytes), exactly as if
// each had been decoded and handed to Keep, and BlocksSkipped and
// EntriesSkipped say how many were skipped. That is honest — the block
// was fetched, decompressed and searched from end to end, and every one
// of its lines was rejected by the query's filter, only faster — and it
// keeps a query's totalBytesProcessed and totalLinesProcessed a measure of
// the data it had to read, independent of how cleverly it was read: a
// `|= "x"` query and the equivalent `|~ "x"` (which no block filter can
// serve) report the same work, as Loki's would, and the stats of a split
// query add up to those of the unsplit one. The cost is a walk over the
// skipped block's entry framing to count them (chunk.Skipped); the other
// choice, counting nothing for skipped blocks, would make the stats say a
// rare needle reads less data than a common one, which is backwards.
func (s *Store) readChunk(ctx context.Context, tenantID string, ref index.ChunkRef, r Read) ([]push.Entry, StoreStats, error) {
	from, through, keep := r.From, r.Through, r.Keep
	st := StoreStats{Chunks: 1}
	key := ref.Key(tenantID)
	data, ok := []byte(nil), false
	if s.cache != nil {
		data, ok = s.cache.Get(key)
	}
	if ok {
		st.CacheHits++
	} else {
		_, span := tracing.Child(ctx, "store.get_chunk", attribute.String("key", key))
		rc, err := s.bkt.Get(ctx, key)
		if err != nil {
			tracing.End(span, err)
			return nil, st, fmt.Errorf("querier: chunk %s: %w", key, err)
		}
		data, err = io.ReadAll(rc)
		rc.Close()
		span.SetAttributes(attribute.Int("bytes", len(data)))
		tracing.End(span, err)
		if err != nil {
			return nil, st, fmt.Errorf("querier: reading chunk %s: %w", key, err)
		}
		// Checked before it is cached: a corrupt object never enters.
		if sum := crc32.Checksum(data, castagnoli); sum != ref.Checksum {
			return nil, st, fmt.Errorf("querier: chunk %s: checksum %08x, the index says %08x", key, sum, ref.Checksum)
		}
		if s.cache != nil {
			s.cache.Put(key, data)
		}
	}
	st.CompressedBytes = int64(len(data))
	c, err := chunk.Decode(data, chunk.WithPool(s.pool))
	if err != nil {
		return nil, st, fmt.Errorf("querier: decoding chunk %s: %w", key, err)
	}
	if c.Entries() != int(ref.Entries) {
		return nil, st, fmt.Errorf("querier: chunk %s holds %d entries, the index says %d", key, c.Entries(), ref.Entries)
	}
	var skipped chunk.Skipped
	it := c.FilteredIterator(from, through, chunk.Forward, r.BlockFilter, &skipped)
	defer it.Close()
	var out []push.Entry
	for it.Next() {
		e := it.At()
		st.Entries++
		st.DecompressedBytes += int64(len(e.Line))
		if keep != nil && !keep(e.Line) {
			st.Filtered++
			st.FilteredBytes += int64(len(e.Line))
			continue
		}
		out = append(out, e.Clone())
	}
	if err := it.Err(); err != nil {
		return nil, st, fmt.Errorf("querier: chunk %s: %w", key, err)
	}
	st.BlocksSkipped = skipped.Blocks
	st.EntriesSkipped = skipped.Entries
	st.Entries += skipped.Entries
	st.DecompressedBytes += skipped.LineBytes
	st.Filtered += skipped.Entries
	st.FilteredBytes += skipped.LineBytes
	return out, st, nil
}

// errTooManyBytes is Loki's refusal of a query split too big for one
// querier.
func errTooManyBytes(bytes, limit int64) error {
	return badRequest("query too large to execute on a single querier: (query: %s, limit: %s); consider adding more specific stream selectors, reduce the time range of the query, or adjust parallelization settings",
		config.ByteSize(bytes), config.ByteSize(limit))
}

// Source adapts the store to logql's evaluator for one tenant.
func (s *Store) Source(ctx context.Context, tenantID string) logql.Source {
	return func(q *logql.LogQuery, from, through int64, emit func(logql.StreamEntries) error) error {
		streams, _, err := s.Streams(ctx, tenantID, Read{Matchers: q.Matchers, From: from, Through: through, Keep: q.RawLineFilter(), BlockFilter: q.BlockFilter()})
		if err != nil {
			return err
		}
		for _, st := range streams {
			if err := emit(st); err != nil {
				return err
			}
		}
		return nil
	}
}
