// Package lokiclienttest serves lokilab's real querier over an in-memory
// object store, for tests of query API clients (pkg/lokiclient, lokilab
// query, lokilab verify): entries are stored as chunks with their index
// segment exactly as an ingester's flush writes them, and the querier
// answers from there. There are no ingesters: what a test stores is what
// the store holds.
package lokiclienttest

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/index"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/querier"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// Querier is a running querier. URL is its API's base URL.
type Querier struct {
	URL    string
	Bucket objstore.Bucket
	// Limits apply to every tenant; change them before querying.
	Limits *tenant.Limits
	seq    atomic.Int64
}

// Entry is one line to store.
type Entry struct {
	Time time.Time
	Line string
}

// New starts a querier (auth on: requests need X-Scope-OrgID) that polls
// for tails every 20ms, and stops it when the test ends. cfg, if not nil,
// changes the querier's configuration first.
func New(t testing.TB, cfg func(*querier.Config)) *Querier {
	t.Helper()
	var c querier.Config
	c.RegisterFlags(flag.NewFlagSet("querier", flag.ContinueOnError))
	c.TailPollInterval = 20 * time.Millisecond
	if cfg != nil {
		cfg(&c)
	}
	lim := tenant.DefaultLimits()
	q := &Querier{Bucket: objstore.NewInMemBucket(), Limits: &lim}
	qr, err := querier.New(c, querier.Deps{Bucket: q.Bucket, Limits: sameLimits{q.Limits}, AuthEnabled: true, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	qr.Register(func(p string, h http.Handler) { mux.Handle(p, h) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	q.URL = srv.URL
	return q
}

type sameLimits struct{ l *tenant.Limits }

func (s sameLimits) For(string) *tenant.Limits { return s.l }

// Store writes entries of one stream as one chunk and an index segment
// naming it, as an ingester's flush does. Storing entries again (with
// other chunk boundaries) is what a replay after a crash does: the
// querier returns each entry once.
func (q *Querier) Store(t testing.TB, tenantID string, ls map[string]string, entries ...Entry) {
	t.Helper()
	var lbs []labels.Label
	for n, v := range ls {
		lbs = append(lbs, labels.Label{Name: n, Value: v})
	}
	set := labels.New(lbs...)
	c := chunk.New(chunk.EncodingSnappy, 16<<10, 1<<20)
	for _, e := range entries {
		if _, err := c.Append(e.Time.UnixNano(), e.Line, nil); err != nil {
			t.Fatal(err)
		}
	}
	data, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	from, through := c.Bounds()
	ref := index.ChunkRef{Fingerprint: set.Hash(), From: from, Through: through,
		Checksum: crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)),
		Entries:  uint32(c.Entries()), UncompressedBytes: uint32(c.UncompressedSize()), CompressedBytes: uint32(len(data))}
	ctx := context.Background()
	if err := q.Bucket.Upload(ctx, ref.Key(tenantID), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("test-flush-%d", q.seq.Add(1))
	if _, err := index.NewClient(q.Bucket).Write(ctx, tenantID, name, []index.Series{{Labels: set, Chunks: []index.ChunkRef{ref}}}); err != nil {
		t.Fatal(err)
	}
}
