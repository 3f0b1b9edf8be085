// Package storetest reads back what ingesters flushed, for tests that check
// "nothing acknowledged is lost". It reads through the production read
// path (querier.Store: index segments → chunk refs → checksummed chunks →
// entries, identical entries from replays removed and counted) and
// flattens the result into what such a test compares.
package storetest

import (
	"context"
	"math"

	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/pkg/querier"
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

// Read returns every entry of tenant in the store.
func Read(ctx context.Context, bkt objstore.Bucket, tenant string) (Result, error) {
	// No matchers: every stream of the tenant.
	streams, st, err := querier.NewStore(bkt, 8, nil, nil).Streams(ctx, tenant, querier.Read{From: math.MinInt64, Through: math.MaxInt64})
	if err != nil {
		return Result{}, err
	}
	res := Result{Duplicates: st.Duplicates, Chunks: st.Chunks, Series: len(streams)}
	for _, s := range streams {
		ls := s.Labels.String()
		for _, e := range s.Entries {
			res.Entries = append(res.Entries, Entry{Stream: ls, Timestamp: e.Timestamp, Line: e.Line})
		}
	}
	return res, nil
}
