package index

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/lokilab/lokilab/pkg/labels"
)

// mustLabels parses a selector-form label set.
func mustLabels(t testing.TB, s string) labels.Labels {
	t.Helper()
	ls, err := labels.Parse(s)
	if err != nil {
		t.Fatalf("labels.Parse(%q): %v", s, err)
	}
	return ls
}

// chunk returns a ref of the stream ls with the given time range; the
// other fields are derived from the range so that refs differ.
func chunk(ls labels.Labels, from, through int64) ChunkRef {
	return ChunkRef{
		Fingerprint:       ls.Hash(),
		From:              from,
		Through:           through,
		Checksum:          uint32(from*31 + through),
		Entries:           uint32(through-from) + 1,
		UncompressedBytes: 100,
		CompressedBytes:   40,
	}
}

// stream returns a series with one chunk per [from, through] pair.
func stream(t testing.TB, lset string, ranges ...int64) Series {
	t.Helper()
	ls := mustLabels(t, lset)
	s := Series{Labels: ls}
	for i := 0; i+1 < len(ranges); i += 2 {
		s.Chunks = append(s.Chunks, chunk(ls, ranges[i], ranges[i+1]))
	}
	return s
}

func mustEncode(t testing.TB, series []Series) []byte {
	t.Helper()
	b, err := Encode(series)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return b
}

func mustSegment(t testing.TB, series ...Series) *Segment {
	t.Helper()
	seg, err := Decode(mustEncode(t, series))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return seg
}

// genSeries makes n streams of label shapes found in practice: shared
// values (app, env), unique ones (instance), labels only some streams have
// (team), long and non-ASCII values, and k chunks each at varied times.
func genSeries(n, k int, rnd *rand.Rand) []Series {
	envs := []string{"prod", "dev", "staging"}
	out := make([]Series, 0, n)
	for i := range n {
		m := map[string]string{
			"app":      fmt.Sprintf("app-%d", i%97),
			"env":      envs[i%len(envs)],
			"instance": fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250),
		}
		if i%3 == 0 {
			m["team"] = "ünïcödé-" + strings.Repeat("x", i%200) // multi-byte lengths
		}
		if i%7 == 0 {
			m["namespace"] = "kube-system"
		}
		ls := labels.FromMap(m)
		s := Series{Labels: ls}
		t := int64(1_700_000_000_000_000_000) + rnd.Int64N(1e12)
		for range k {
			d := rnd.Int64N(2 * 3600e9)
			r := chunk(ls, t, t+d)
			r.Checksum = rnd.Uint32()
			r.Entries = rnd.Uint32N(100000)
			r.UncompressedBytes = rnd.Uint32()
			r.CompressedBytes = rnd.Uint32N(2 << 20)
			s.Chunks = append(s.Chunks, r)
			t += d + rnd.Int64N(3600e9) - 1800e9 // chunks may overlap
		}
		out = append(out, s)
	}
	return out
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	edge := []Series{
		stream(t, `{}`, 5, 5), // no labels at all
		stream(t, `{a="x"}`, -9e18, -9e18+1, 0, 0, 9e18, 9e18), // far past, epoch and far future
		stream(t, `{a="x", b="y"}`, math.MinInt64, math.MaxInt64),
		stream(t, `{z="`+strings.Repeat("v", 5000)+`"}`, 1, 2), // a long value
	}
	edge[0].Chunks[0].Entries = math.MaxUint32
	edge[0].Chunks[0].UncompressedBytes = math.MaxUint32
	edge[0].Chunks[0].CompressedBytes = math.MaxUint32
	edge[0].Chunks[0].Checksum = math.MaxUint32

	tests := []struct {
		name   string
		series []Series
	}{
		{"empty", nil},
		{"edge values", edge},
		{"one stream", genSeries(1, 1, rnd)},
		{"many streams", genSeries(2000, 5, rnd)},
		{"many chunks per stream", genSeries(10, 500, rnd)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustEncode(t, tt.series)
			seg, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			want := normalize(tt.series)
			if got := Merge(seg); !equalSeries(got, want) {
				t.Fatalf("decoded %d series, want %d; first difference: %s", len(got), len(want), firstDiff(got, want))
			}
			if got := seg.Series(math.MinInt64, math.MaxInt64); !equalSeries(got, want) {
				t.Fatalf("Series over all time differs: %s", firstDiff(got, want))
			}
			// The encoding is a function of the set: input order does not matter.
			shuffled := slices.Clone(tt.series)
			rnd.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if !bytes.Equal(mustEncode(t, shuffled), b) {
				t.Fatal("encoding depends on input order")
			}
		})
	}
}

// equalSeries compares element by element, so that nil and empty slices
// are equal.
func equalSeries(a, b []Series) bool {
	return slices.EqualFunc(a, b, func(x, y Series) bool {
		return slices.Equal(x.Labels, y.Labels) && slices.Equal(x.Chunks, y.Chunks)
	})
}

func firstDiff(got, want []Series) string {
	for i := range min(len(got), len(want)) {
		if !equalSeries(got[i:i+1], want[i:i+1]) {
			return fmt.Sprintf("series %d: got %s %+v, want %s %+v", i, got[i].Labels, got[i].Chunks, want[i].Labels, want[i].Chunks)
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(got), len(want))
}

func TestEncodeNormalises(t *testing.T) {
	a := mustLabels(t, `{app="a"}`)
	in := []Series{
		{Labels: mustLabels(t, `{app="b"}`), Chunks: []ChunkRef{chunk(mustLabels(t, `{app="b"}`), 10, 20)}},
		{Labels: a, Chunks: []ChunkRef{chunk(a, 30, 40), chunk(a, 10, 20)}},
		{Labels: a, Chunks: []ChunkRef{chunk(a, 10, 20), chunk(a, 10, 25)}}, // same stream again, one ref repeated
		{Labels: mustLabels(t, `{app="c"}`)},                                // no chunks: nothing to find
	}
	before := fmt.Sprint(in)
	seg := mustSegment(t, in...)
	if fmt.Sprint(in) != before {
		t.Fatal("Encode modified its input")
	}
	want := []Series{
		{Labels: a, Chunks: []ChunkRef{chunk(a, 10, 20), chunk(a, 10, 25), chunk(a, 30, 40)}},
		in[0],
	}
	if got := Merge(seg); !equalSeries(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestEncodeRejects(t *testing.T) {
	good := mustLabels(t, `{app="a"}`)
	tests := []struct {
		name    string
		series  Series
		wantErr string
	}{
		{"invalid label name", Series{Labels: labels.Labels{{Name: "a-b", Value: "x"}}}, `invalid label name "a-b"`},
		{"empty value", Series{Labels: labels.Labels{{Name: "a", Value: ""}}}, `label "a" has an empty value`},
		{"unsorted names", Series{Labels: labels.Labels{{Name: "b", Value: "1"}, {Name: "a", Value: "2"}}}, "not sorted and unique"},
		{"duplicate names", Series{Labels: labels.Labels{{Name: "a", Value: "1"}, {Name: "a", Value: "2"}}}, "not sorted and unique"},
		{"foreign fingerprint", Series{Labels: good, Chunks: []ChunkRef{{Fingerprint: 42, From: 1, Through: 2}}}, "is not the labels' hash"},
		{"through before from", Series{Labels: good, Chunks: []ChunkRef{chunk(good, 2, 1)}}, "through 1 is before from 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Encode([]Series{tt.series})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "index: encode: ") {
				t.Fatalf("Encode error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	a, b := mustLabels(t, `{app="a"}`), mustLabels(t, `{app="b"}`)
	s1 := mustSegment(t,
		Series{Labels: a, Chunks: []ChunkRef{chunk(a, 10, 20), chunk(a, 30, 40)}},
	)
	s2 := mustSegment(t,
		Series{Labels: a, Chunks: []ChunkRef{chunk(a, 30, 40), chunk(a, 50, 60)}}, // 30-40 again: a replayed flush
		Series{Labels: b, Chunks: []ChunkRef{chunk(b, 10, 20)}},
	)
	changed := chunk(a, 10, 20)
	changed.Checksum++ // same range, different data: a different chunk
	s3 := mustSegment(t, Series{Labels: a, Chunks: []ChunkRef{changed}})

	tests := []struct {
		name string
		segs []*Segment
		want []Series
	}{
		{"nothing", nil, nil},
		{"one segment is itself", []*Segment{s1}, []Series{{Labels: a, Chunks: []ChunkRef{chunk(a, 10, 20), chunk(a, 30, 40)}}}},
		{"identical refs once, different refs all", []*Segment{s2, s1}, []Series{
			{Labels: a, Chunks: []ChunkRef{chunk(a, 10, 20), chunk(a, 30, 40), chunk(a, 50, 60)}},
			{Labels: b, Chunks: []ChunkRef{chunk(b, 10, 20)}},
		}},
		{"same range with another checksum is kept", []*Segment{s1, s3}, []Series{
			{Labels: a, Chunks: []ChunkRef{chunk(a, 10, 20), changed, chunk(a, 30, 40)}},
		}},
		{"a segment merged with itself", []*Segment{s2, s2}, Merge(s2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Merge(tt.segs...); !equalSeries(got, tt.want) {
				t.Fatalf("Merge = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStatsOf(t *testing.T) {
	series := []Series{stream(t, `{a="1"}`, 0, 9, 10, 19), stream(t, `{a="2"}`, 0, 4), {Labels: mustLabels(t, `{a="3"}`)}}
	want := Stats{Streams: 2, Chunks: 3, Entries: 10 + 10 + 5, Bytes: 300}
	if got := StatsOf(series); got != want {
		t.Fatalf("StatsOf = %+v, want %+v", got, want)
	}
}

func TestChunkKey(t *testing.T) {
	ls := mustLabels(t, `{app="api"}`)
	tests := []struct {
		name string
		ref  ChunkRef
		want string
	}{
		{"typical", ChunkRef{Fingerprint: ls.Hash(), From: 1_700_000_000_123_456_789, Through: 1_700_000_060_999_999_999, Checksum: 0xdeadbeef},
			fmt.Sprintf("fake/chunks/%016x/18bcfe5687b-18bcfe65647-deadbeef", ls.Hash())},
		{"zero padded", ChunkRef{Fingerprint: 0xab, From: 0, Through: 999_999, Checksum: 7},
			"fake/chunks/00000000000000ab/0-0-00000007"},
		{"before the epoch rounds down", ChunkRef{Fingerprint: 1, From: -1, Through: 0, Checksum: 1},
			"fake/chunks/0000000000000001/ffffffffffffffff-0-00000001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := tt.ref.Key("fake")
			if key != tt.want {
				t.Fatalf("Key = %s, want %s", key, tt.want)
			}
			tenantID, got, err := ParseChunkKey(key)
			if err != nil {
				t.Fatal(err)
			}
			want := ChunkRef{
				Fingerprint: tt.ref.Fingerprint,
				From:        floorDiv(tt.ref.From, nsPerMs) * nsPerMs,
				Through:     floorDiv(tt.ref.Through, nsPerMs) * nsPerMs,
				Checksum:    tt.ref.Checksum,
			}
			if tenantID != "fake" || got != want {
				t.Fatalf("ParseChunkKey = %q, %+v; want fake, %+v", tenantID, got, want)
			}
			if got.Key(tenantID) != key {
				t.Fatal("the parsed ref does not give the same key")
			}
		})
	}
}

func TestChunkKeySameDataSameKey(t *testing.T) {
	ls := mustLabels(t, `{app="api"}`)
	a, b := chunk(ls, 1e18, 1e18+5e9), chunk(ls, 1e18, 1e18+5e9)
	b.Entries = 0 // the summary is not part of the identity
	if a.Key("t") != b.Key("t") {
		t.Fatal("the same chunk gets two keys")
	}
	b.Checksum++
	if a.Key("t") == b.Key("t") {
		t.Fatal("different chunk data gets the same key")
	}
}

func TestParseChunkKeyRejects(t *testing.T) {
	tests := []struct {
		key, wantErr string
	}{
		{"", "want <tenant>/chunks/"},
		{"fake/chunks/00000000000000ab", "want <tenant>/chunks/"},
		{"fake/chonks/00000000000000ab/0-0-00000007", "want <tenant>/chunks/"},
		{"fake/chunks/00000000000000ab/0-0-00000007/x", "want <tenant>/chunks/"},
		{"../chunks/00000000000000ab/0-0-00000007", "tenant ID is '.' or '..'"},
		{"/chunks/00000000000000ab/0-0-00000007", "no org id"},
		{"fake/chunks/ab/0-0-00000007", "not 16 hex digits"},
		{"fake/chunks/00000000000000xy/0-0-00000007", "fingerprint is not hex"},
		{"fake/chunks/00000000000000ab/0-0", "want <from ms hex>"},
		{"fake/chunks/00000000000000ab/0-0-7", "want <from ms hex>"},
		{"fake/chunks/00000000000000ab/g-0-00000007", "time is not hex"},
		{"fake/chunks/00000000000000ab/-1-0-00000007", "want <from ms hex>"},
		{"fake/chunks/00000000000000ab/0-0-0000000z", "checksum is not hex"},
		{"fake/chunks/00000000000000ab/2-1-00000007", "from is after through"},
		{"fake/chunks/00000000000000ab/7fffffffffffffff-7fffffffffffffff-00000007", "time out of range"},
		{"fake/chunks/00000000000000AB/0-0-00000007", "not in canonical form"},
		{"fake/chunks/00000000000000ab/00-0-00000007", "not in canonical form"},
		{"fake/chunks/00000000000000ab/0-0-0000000A", "not in canonical form"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			_, _, err := ParseChunkKey(tt.key)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseChunkKey(%q) error = %v, want one containing %q", tt.key, err, tt.wantErr)
			}
		})
	}
}

func TestDayOf(t *testing.T) {
	tests := []struct {
		ts   int64
		want int
	}{
		{0, 0},
		{nsPerDay - 1, 0},
		{nsPerDay, 1},
		{-1, -1},
		{-nsPerDay, -1},
		{-nsPerDay - 1, -2},
		{1_700_000_000e9, 19675}, // 2023-11-14
	}
	for _, tt := range tests {
		if got := DayOf(tt.ts); got != tt.want {
			t.Errorf("DayOf(%d) = %d, want %d", tt.ts, got, tt.want)
		}
		from, through := DayBounds(tt.want)
		if tt.ts < from || tt.ts > through || DayOf(from) != tt.want || DayOf(through) != tt.want || DayOf(through+1) != tt.want+1 {
			t.Errorf("DayBounds(%d) = [%d, %d] does not bound %d", tt.want, from, through, tt.ts)
		}
	}
}

func ExampleChunkRef_Key() {
	r := ChunkRef{Fingerprint: 0x1a2b3c4d5e6f7788, From: 1_700_000_000_000_000_000, Through: 1_700_000_120_500_000_000, Checksum: 0xcafe}
	fmt.Println(r.Key("team-a"))
	fmt.Println(SegmentKey(DayOf(r.From), "team-a", "ingester-0-1700000125000-1"))
	// Output:
	// team-a/chunks/1a2b3c4d5e6f7788/18bcfe56800-18bcfe73eb4-0000cafe
	// index/19675/team-a/ingester-0-1700000125000-1.idx
}
