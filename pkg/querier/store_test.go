package querier

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/index"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/logql"
	"github.com/lokilab/lokilab/pkg/push"
)

// flush writes entries as one chunk and its index segment, as an ingester
// does.
func flush(t *testing.T, bkt objstore.Bucket, tenantID string, ls labels.Labels, entries []push.Entry, name string) {
	t.Helper()
	c := chunk.New(chunk.EncodingSnappy, 1<<10, 1<<20)
	for _, e := range entries {
		if _, err := c.Append(e.Timestamp, e.Line, nil); err != nil {
			t.Fatal(err)
		}
	}
	data, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	from, through := c.Bounds()
	ref := index.ChunkRef{Fingerprint: ls.Hash(), From: from, Through: through, Checksum: crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)),
		Entries: uint32(c.Entries()), UncompressedBytes: uint32(c.UncompressedSize()), CompressedBytes: uint32(len(data))}
	if err := bkt.Upload(context.Background(), ref.Key(tenantID), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := index.NewClient(bkt).Write(context.Background(), tenantID, name, []index.Series{{Labels: ls, Chunks: []index.ChunkRef{ref}}}); err != nil {
		t.Fatal(err)
	}
}

// TestStoreStreams: a stream flushed in pieces, one piece twice with other
// chunk boundaries (a replay), comes back once, in order, within the range;
// another tenant's identical stream is never returned.
func TestStoreStreams(t *testing.T) {
	bkt := objstore.NewInMemBucket()
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	api := labels.New(labels.Label{Name: "app", Value: "api"})
	web := labels.New(labels.Label{Name: "app", Value: "web"})
	var all []push.Entry
	for i := range 300 {
		all = append(all, push.Entry{Timestamp: t0.Add(time.Duration(i) * time.Second).UnixNano(), Line: fmt.Sprintf("line %d status=%d", i, 200+i%3)})
	}
	flush(t, bkt, "a", api, all[:100], "f1")
	flush(t, bkt, "a", api, all[100:200], "f2")
	flush(t, bkt, "a", api, all[150:300], "f3-replay") // 150..199 again
	flush(t, bkt, "a", web, all[:10], "f4")
	flush(t, bkt, "b", api, all[:300], "f5") // tenant b, same labels

	s := NewStore(bkt, 4, nil, nil)
	ms := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "app", "api")}
	from, through := all[20].Timestamp, all[280].Timestamp
	streams, st, err := s.Streams(context.Background(), "a", Read{Matchers: ms, From: from, Through: through})
	if err != nil {
		t.Fatal(err)
	}
	if len(streams) != 1 || streams[0].Labels.String() != api.String() {
		t.Fatalf("streams %v, want only %s", streams, api)
	}
	got := streams[0].Entries
	want := all[20:280]
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Timestamp != want[i].Timestamp || got[i].Line != want[i].Line {
			t.Fatalf("entry %d = %v, want %v", i, got[i], want[i])
		}
	}
	if st.Duplicates != 50 || st.Chunks != 3 {
		t.Fatalf("stats %+v, want 3 chunks and 50 duplicates", st)
	}

	// A read bigger than MaxBytes is refused before any chunk is fetched.
	_, st, err = s.Streams(context.Background(), "a", Read{Matchers: ms, From: from, Through: through, MaxBytes: 1000})
	if err == nil || !strings.Contains(err.Error(), "query too large to execute on a single querier") || st.Chunks != 0 {
		t.Fatalf("read over MaxBytes: %v, %d chunks read", err, st.Chunks)
	}

	// A raw line filter drops lines before they are copied, and says so.
	keep := func(l string) bool { return strings.HasSuffix(l, "status=201") }
	streams, st, err = s.Streams(context.Background(), "a", Read{Matchers: ms, From: from, Through: through, Keep: keep})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range want {
		if keep(e.Line) {
			n++
		}
	}
	if len(streams) != 1 || len(streams[0].Entries) != n || st.Filtered+len(streams[0].Entries)+st.Duplicates != st.Entries {
		t.Fatalf("filtered read: %d entries (want %d), stats %+v", len(streams[0].Entries), n, st)
	}
	for _, e := range streams[0].Entries {
		if !keep(e.Line) {
			t.Fatalf("filtered read returned %q", e.Line)
		}
	}

	// The evaluator over the store: a count per minute equals the entries.
	e, err := logql.Parse(`sum(count_over_time({app="api"} |= "status=200" [1m]))`)
	if err != nil {
		t.Fatal(err)
	}
	at := t0.Add(2 * time.Minute)
	res, err := logql.EvalRange(e, s.Source(context.Background(), "a"), at, at, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wantN := 0
	for _, en := range all {
		if en.Timestamp > at.Add(-time.Minute).UnixNano() && en.Timestamp <= at.UnixNano() && bytes.Contains([]byte(en.Line), []byte("status=200")) {
			wantN++
		}
	}
	if len(res) != 1 || res[0].Samples[0].V != float64(wantN) {
		t.Fatalf("count = %v, want %d (duplicates must not count twice)", res, wantN)
	}
}

// TestStoreDetectsCorruptChunks: a chunk whose bytes differ from what the
// index recorded is an error, never silently wrong data.
func TestStoreDetectsCorruptChunks(t *testing.T) {
	bkt := objstore.NewInMemBucket()
	api := labels.New(labels.Label{Name: "app", Value: "api"})
	flush(t, bkt, "a", api, []push.Entry{{Timestamp: 1e18, Line: "x"}}, "f")
	series, err := index.NewClient(bkt).Series(context.Background(), "a", 0, 2e18)
	if err != nil {
		t.Fatal(err)
	}
	key := series[0].Chunks[0].Key("a")
	if err := bkt.Upload(context.Background(), key, bytes.NewReader([]byte("not the chunk"))); err != nil {
		t.Fatal(err)
	}
	_, _, err = NewStore(bkt, 1, nil, nil).Streams(context.Background(), "a", Read{Matchers: []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "app", "api")}, From: 0, Through: 2e18})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("checksum")) {
		t.Fatalf("corrupt chunk: %v", err)
	}
}
