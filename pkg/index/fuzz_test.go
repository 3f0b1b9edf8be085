package index

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lokilab/lokilab/pkg/labels"
)

// FuzzDecode feeds Decode arbitrary bytes, twice: as given, which exercises
// the framing and checksum checks, and with every section's CRC recomputed,
// so that mutations reach the structural checks behind the checksums
// instead of dying at the first CRC. Whatever decodes must answer queries
// without panicking and survive Merge → Encode → Decode unchanged.
func FuzzDecode(f *testing.F) {
	rnd := rand.New(rand.NewPCG(5, 6))
	for _, series := range [][]Series{
		nil,
		{stream(f, `{a="x"}`, 10, 15)},
		{stream(f, `{app="api", env="prod"}`, 100, 199, 300, 399), stream(f, `{app="web"}`, -5, 50), stream(f, `{}`, 1, 1)},
		genSeries(12, 3, rnd),
	} {
		b, err := Encode(series)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Add([]byte("LKIX\x01"))
	f.Add([]byte("LKIX\x01\x00\x00\x00\x00\x00\x00\x00\x00"))

	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecoded(t, b)
		checkDecoded(t, restampCRCs(b))
	})
}

func checkDecoded(t *testing.T, b []byte) {
	seg, err := Decode(b)
	if err != nil {
		if seg != nil {
			t.Fatal("Decode returned a segment with an error")
		}
		return
	}
	merged := Merge(seg)
	if all := seg.Series(math.MinInt64, math.MaxInt64); !equalSeries(all, merged) {
		t.Fatalf("Series over all time differs from Merge: %s", firstDiff(all, merged))
	}
	// Query with matchers built from the segment's own names and values,
	// which exercise postings, and a few that scan.
	for _, name := range seg.LabelNames(math.MinInt64, math.MaxInt64) {
		for _, v := range seg.LabelValues(name, math.MinInt64, math.MaxInt64) {
			ms := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, name, v)}
			if len(seg.Series(math.MinInt64, math.MaxInt64, ms...)) == 0 {
				t.Fatalf("%s=%q is a listed value, but selects no series", name, v)
			}
			seg.Stats(0, math.MaxInt64, ms...)
			break
		}
		seg.Series(-1<<40, 1<<40, labels.MustNewMatcher(labels.MatchRegexp, name, ".+"), labels.MustNewMatcher(labels.MatchNotEqual, "a", "x"))
	}

	enc, err := Encode(merged)
	if err != nil {
		t.Fatalf("a decoded segment does not re-encode: %v", err)
	}
	again, err := Decode(enc)
	if err != nil {
		t.Fatalf("a re-encoded segment does not decode: %v", err)
	}
	if got := Merge(again); !equalSeries(got, merged) {
		t.Fatalf("re-encoding changed the segment: %s", firstDiff(got, merged))
	}
}

// restampCRCs returns a copy of b with the CRC of every section whose
// length fits recomputed.
func restampCRCs(b []byte) []byte {
	c := append([]byte(nil), b...)
	if len(c) < headerSize {
		return c
	}
	off := headerSize
	for range 3 {
		if len(c)-off < sectionOverlay {
			break
		}
		n := int(binary.BigEndian.Uint32(c[off:]))
		if n > len(c)-off-sectionOverlay {
			break
		}
		binary.BigEndian.PutUint32(c[off+4+n:], crc32c(c[off+4:off+4+n]))
		off += n + sectionOverlay
	}
	return c
}
