package querier

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/logql"
	"github.com/lokilab/lokilab/pkg/push"
)

// TestStoreBlockFilter: with a query's block filter the store returns
// exactly what it returns without one, skips the blocks that lack a `|=`
// substring, and reports the same work in its stats — a skipped block's
// lines count as decompressed and as filtered, so that totalBytesProcessed
// does not depend on whether a block filter could be used (a substring
// and the equivalent regex report the same bytes) or on how the range was
// split.
func TestStoreBlockFilter(t *testing.T) {
	bkt := objstore.NewInMemBucket()
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	api := labels.New(labels.Label{Name: "app", Value: "api"})
	var all []push.Entry
	for i := range 3000 {
		line := fmt.Sprintf("ts=%d level=info msg=\"request served\" status=%d", i, 200+i%3)
		if i == 1234 || i == 2500 {
			line += " needle"
		}
		all = append(all, push.Entry{Timestamp: t0.Add(time.Duration(i) * time.Second).UnixNano(), Line: line})
	}
	// flush cuts 1 KiB blocks: about 15 lines each, 200 blocks in all,
	// the needle in two of them.
	flush(t, bkt, "a", api, all[:1000], "f1")
	flush(t, bkt, "a", api, all[1000:2000], "f2")
	flush(t, bkt, "a", api, all[1500:], "f3-replay")
	s := NewStore(bkt, 2, nil, nil)
	from, through := all[10].Timestamp, all[2990].Timestamp
	mid := all[1700].Timestamp

	read := func(t *testing.T, query string, from, through int64, prefilter bool) ([]push.Entry, StoreStats) {
		t.Helper()
		lq, err := logql.ParseLogQuery(query)
		if err != nil {
			t.Fatal(err)
		}
		r := Read{Matchers: lq.Matchers, From: from, Through: through, Keep: lq.RawLineFilter()}
		if prefilter {
			r.BlockFilter = lq.BlockFilter()
		}
		streams, st, err := s.Streams(context.Background(), "a", r)
		if err != nil {
			t.Fatal(err)
		}
		var es []push.Entry
		for _, se := range streams {
			es = append(es, se.Entries...)
		}
		return es, st
	}
	// withoutSkips is st as a read without a block filter reports it.
	withoutSkips := func(st StoreStats) StoreStats {
		st.BlocksSkipped, st.EntriesSkipped = 0, 0
		return st
	}

	for _, tc := range []struct {
		name, query string
		want        int  // entries returned
		skips       bool // blocks skipped
	}{
		{"rare needle", `{app="api"} |= "needle"`, 2, true},
		{"two substrings", `{app="api"} |= "needle" |= "ts=2500 "`, 1, true},
		{"needle and a negative filter", `{app="api"} |= "needle" != "ts=1234 "`, 1, true},
		{"a substring in every block", `{app="api"} |= "status=201"`, 994, false},
		{"a regex: no block filter", `{app="api"} |~ "need+le"`, 2, false},
		{"no filter", `{app="api"}`, 2980, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plain, pst := read(t, tc.query, from, through, false)
			got, st := read(t, tc.query, from, through, true)
			if !reflect.DeepEqual(got, plain) || len(got) != tc.want {
				t.Fatalf("%d entries with the block filter, %d without, want %d", len(got), len(plain), tc.want)
			}
			for _, e := range got {
				if strings.Contains(tc.query, "needle") && !strings.Contains(e.Line, "needle") {
					t.Fatalf("returned %q", e.Line)
				}
			}
			if withoutSkips(st) != pst {
				t.Errorf("stats with the block filter %+v, without %+v: want the same but for the skips", st, pst)
			}
			if (st.BlocksSkipped > 0) != tc.skips || (st.EntriesSkipped > 0) != tc.skips {
				t.Errorf("skipped %d blocks (%d entries), want skips: %v", st.BlocksSkipped, st.EntriesSkipped, tc.skips)
			}
			if tc.skips && st.EntriesSkipped < st.Entries*9/10 {
				t.Errorf("skipped %d of %d entries, want nearly all", st.EntriesSkipped, st.Entries)
			}
			// Split at an instant inside a chunk (and a block): the two
			// halves add up to the whole.
			_, a := read(t, tc.query, from, mid, true)
			_, b := read(t, tc.query, mid, through, true)
			a.add(b)
			if a.Entries != st.Entries || a.DecompressedBytes != st.DecompressedBytes || a.FilteredBytes != st.FilteredBytes {
				t.Errorf("split read: %+v, whole: %+v", a, st)
			}
		})
	}

	// A substring and the regex that means the same report the same work.
	_, sub := read(t, `{app="api"} |= "needle"`, from, through, true)
	_, re := read(t, `{app="api"} |~ "needle"`, from, through, true)
	if withoutSkips(sub) != re {
		t.Errorf("substring %+v, regex %+v: want the same work", sub, re)
	}
}
