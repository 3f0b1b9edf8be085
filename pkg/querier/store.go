// Package querier answers queries over what lokilab stored. This first
// part reads the object store: index segments find the chunks of a
// selector's streams, chunks are fetched in parallel (bounded), checked
// against their index checksum, decoded and merged per stream, with the
// duplicates that replays create removed and counted. The HTTP API, the
// ingesters' recent data and query limits build on it (issue 4).
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
	"golang.org/x/sync/errgroup"

	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/index"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/logql"
	"github.com/lokilab/lokilab/pkg/push"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// StoreStats says what reading the store cost, as Loki's query stats do.
type StoreStats struct {
	Chunks          int // chunk objects fetched
	CompressedBytes int64
	Entries         int // entries decoded in the time range
	Duplicates      int // identical entries removed (replays, re-flushes)
}

// Store reads streams from the object store.
type Store struct {
	bkt         objstore.Bucket
	index       *index.Client
	pool        *chunk.Pool
	concurrency int
}

// NewStore reads bkt, fetching at most concurrency chunks at once.
func NewStore(bkt objstore.Bucket, concurrency int) *Store {
	return &Store{bkt: bkt, index: index.NewClient(bkt), pool: chunk.NewPool(), concurrency: max(concurrency, 1)}
}

// Streams returns tenant's streams matching ms with their entries in
// [from, through) (ns), each stream's entries in time order (equal
// timestamps by line), identical entries once.
//
// Memory is the entries in the range: the querier bounds the range and the
// entries it asks for (issue 4 adds the limits).
func (s *Store) Streams(ctx context.Context, tenantID string, ms []*labels.Matcher, from, through int64) ([]logql.StreamEntries, StoreStats, error) {
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
	var jobs []job
	for i, se := range series {
		for _, r := range se.Chunks {
			jobs = append(jobs, job{i, r})
		}
	}
	perStream := make([][]push.Entry, len(series))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.concurrency)
	for _, j := range jobs {
		g.Go(func() error {
			entries, size, err := s.readChunk(gctx, tenantID, j.ref, from, through)
			if err != nil {
				return err
			}
			mu.Lock()
			perStream[j.stream] = append(perStream[j.stream], entries...)
			st.Chunks++
			st.CompressedBytes += size
			st.Entries += len(entries)
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

// readChunk fetches one chunk, checks it against the index, and returns
// copies of its entries in [from, through).
func (s *Store) readChunk(ctx context.Context, tenantID string, ref index.ChunkRef, from, through int64) ([]push.Entry, int64, error) {
	key := ref.Key(tenantID)
	rc, err := s.bkt.Get(ctx, key)
	if err != nil {
		return nil, 0, fmt.Errorf("querier: chunk %s: %w", key, err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, 0, fmt.Errorf("querier: reading chunk %s: %w", key, err)
	}
	if sum := crc32.Checksum(data, castagnoli); sum != ref.Checksum {
		return nil, 0, fmt.Errorf("querier: chunk %s: checksum %08x, the index says %08x", key, sum, ref.Checksum)
	}
	c, err := chunk.Decode(data, chunk.WithPool(s.pool))
	if err != nil {
		return nil, 0, fmt.Errorf("querier: decoding chunk %s: %w", key, err)
	}
	if c.Entries() != int(ref.Entries) {
		return nil, 0, fmt.Errorf("querier: chunk %s holds %d entries, the index says %d", key, c.Entries(), ref.Entries)
	}
	it := c.Iterator(from, through, chunk.Forward)
	defer it.Close()
	var out []push.Entry
	for it.Next() {
		e := it.At()
		out = append(out, e.Clone())
	}
	if err := it.Err(); err != nil {
		return nil, 0, fmt.Errorf("querier: chunk %s: %w", key, err)
	}
	return out, int64(len(data)), nil
}

// Source adapts the store to logql's evaluator for one tenant.
func (s *Store) Source(ctx context.Context, tenantID string) logql.Source {
	return func(q *logql.LogQuery, from, through int64) ([]logql.StreamEntries, error) {
		streams, _, err := s.Streams(ctx, tenantID, q.Matchers, from, through)
		return streams, err
	}
}
