// Package storetest reads back what ingesters flushed, through the index
// and chunk code, for tests that check "nothing acknowledged is lost".
// It is the read path reduced to its essence: find chunk refs in the index
// segments, fetch each chunk, decode it, and dedupe identical entries the
// way the querier does (a replay after a crash uploads some entries twice).
package storetest

import (
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"math"

	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/index"
)

// Entry is one stored line and the stream it belongs to.
type Entry struct {
	Stream    string
	Timestamp int64
	Line      string
}

// Result is everything stored for a tenant.
type Result struct {
	// Entries are the distinct entries found (deduplicated).
	Entries []Entry
	// Duplicates counts entries found more than once and removed: the
	// price of replays.
	Duplicates int
	// Chunks and Series are what the index referenced.
	Chunks, Series int
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Read returns every entry of tenant in the store.
func Read(ctx context.Context, bkt objstore.Bucket, tenant string) (Result, error) {
	var res Result
	series, err := index.NewClient(bkt).Series(ctx, tenant, 0, math.MaxInt64)
	if err != nil {
		return res, fmt.Errorf("reading index of %s: %w", tenant, err)
	}
	seen := make(map[Entry]bool)
	for _, s := range series {
		res.Series++
		stream := s.Labels.String()
		for _, ref := range s.Chunks {
			res.Chunks++
			key := ref.Key(tenant)
			rc, err := bkt.Get(ctx, key)
			if err != nil {
				return res, fmt.Errorf("chunk %s in the index but not in the store: %w", key, err)
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return res, fmt.Errorf("reading chunk %s: %w", key, err)
			}
			if sum := crc32.Checksum(data, castagnoli); sum != ref.Checksum {
				return res, fmt.Errorf("chunk %s: checksum %08x, index says %08x", key, sum, ref.Checksum)
			}
			c, err := chunk.Decode(data)
			if err != nil {
				return res, fmt.Errorf("decoding chunk %s: %w", key, err)
			}
			if c.Entries() != int(ref.Entries) {
				return res, fmt.Errorf("chunk %s: %d entries, index says %d", key, c.Entries(), ref.Entries)
			}
			it := c.Iterator(math.MinInt64, math.MaxInt64, chunk.Forward)
			for it.Next() {
				e := it.At()
				k := Entry{Stream: stream, Timestamp: e.Timestamp, Line: e.Line}
				if seen[k] {
					res.Duplicates++
					continue
				}
				k.Line = string([]byte(e.Line)) // At's strings alias the iterator's buffer
				seen[k] = true
				res.Entries = append(res.Entries, k)
			}
			if err := it.Err(); err != nil {
				return res, fmt.Errorf("iterating chunk %s: %w", key, err)
			}
			it.Close()
		}
	}
	return res, nil
}
