// Package index finds the chunks of a query without listing the bucket.
//
// Chunks live in the object store under keys named by their stream's
// fingerprint and time range (<tenant>/chunks/<fingerprint>/...). A query
// says {app="api"} over the last six hours; the keys cannot answer that —
// they hold no labels — and listing a bucket is slow, paginated (S3 returns
// 1000 keys per request) and billed. The index is the map from label sets to
// chunk references that turns a selector and a time range into the exact
// list of objects to fetch, and summarises each chunk (time range, entries,
// bytes) so that a query can skip a chunk, or answer /index/stats, without
// fetching it.
//
// # Segments per tenant, per day
//
// Ingesters write the index at flush: one segment per tenant and per UTC day
// the flushed chunks touch, at index/<day>/<tenant>/<name>.idx. Splitting by
// tenant and day buys three things:
//
//   - isolation: a query lists and reads only its own tenant's prefix, so no
//     bug in matching can return another tenant's streams;
//   - retention by deletion: expiring a day deletes whole objects, with no
//     rewrite of anything that stays;
//   - bounded size: a segment holds at most one day of one tenant, and a
//     query reads only the days its range overlaps.
//
// A chunk whose [From, Through] crosses midnight is written to every day it
// overlaps, so a query for one day never needs its neighbours' segments.
//
// # Many small segments, then one
//
// Every flush writes new segments under a name unique to its writer; nobody
// reads, modifies and rewrites a shared object, because an object store has
// no append, no rename and no transaction to make that safe. The price is
// many small segments per tenant-day, each one GET for a query; Merge
// unions them and removes the duplicate references that replays and
// re-flushes create. The compactor later merges a day's segments into one,
// writing the merged segment before deleting its inputs; a reader that
// listed a segment the compactor then deleted lists the day again (see
// Client.Segments), so it sees either the inputs or the output.
//
// # The format
//
// The segment format is written by hand, because it is the lesson: symbols,
// series and postings, each section checksummed with CRC32-Castagnoli,
// documented byte by byte in docs/index-format.md. A segment is read whole —
// one GET — and decoded whole into memory, so the format needs no offset
// tables; Decode checks every structural rule, so a segment it accepts is
// one Encode could have written.
//
// # Keys are written once
//
// A segment key is written once, with one content, and never again — not
// after a failed write, not after the compactor deleted it. Ingesters name
// segments by instance, partition, wall-clock millisecond and a sequence
// number, and retry a failed write under a new name; the compactor names a
// merged segment by millisecond and a random suffix. That contract is what
// lets readers cache decoded segments by key (SegmentCache): a cached key
// is never stale, so a query lists its days — which says what exists now —
// and downloads only the segments it has not seen, with nothing to
// invalidate. A key rewritten with other content would go unnoticed by
// every reader that cached it.
package index

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// ChunkRef locates one chunk object and summarises it, so that a query can
// skip the chunk, or count it, without fetching it.
type ChunkRef struct {
	// Fingerprint is labels.Labels.Hash() of the chunk's stream.
	Fingerprint uint64
	// From and Through are the smallest and largest entry timestamps in the
	// chunk, in Unix nanoseconds, both inclusive.
	From, Through int64
	// Checksum is the CRC32-Castagnoli of the whole chunk object.
	Checksum uint32
	// Entries is the number of log lines in the chunk.
	Entries uint32
	// UncompressedBytes is the size of the lines (and structured metadata)
	// before compression: what /index/stats reports as bytes.
	UncompressedBytes uint32
	// CompressedBytes is the size of the chunk object.
	CompressedBytes uint32
}

// Key returns the chunk's object key:
//
//	<tenant>/chunks/<fingerprint %016x>/<from ms %x>-<through ms %x>-<checksum %08x>
//
// From and Through are rounded down to the millisecond (Loki's key
// precision; negative times are written as their two's complement, so the
// key never holds a '-' other than the separators). The same data gives the
// same key, so a chunk flushed twice — after a replay — overwrites itself.
// The tenant is not validated here; Client validates tenants before any key
// is built from them.
func (r ChunkRef) Key(tenant string) string {
	b := make([]byte, 0, len(tenant)+len("/chunks/")+16+1+12+1+12+1+8)
	b = append(b, tenant...)
	b = append(b, "/chunks/"...)
	b = appendHex(b, r.Fingerprint, 16)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(floorDiv(r.From, nsPerMs)), 16)
	b = append(b, '-')
	b = strconv.AppendUint(b, uint64(floorDiv(r.Through, nsPerMs)), 16)
	b = append(b, '-')
	b = appendHex(b, uint64(r.Checksum), 8)
	return string(b)
}

// appendHex appends v in lower-case hex, zero-padded to width digits.
func appendHex(b []byte, v uint64, width int) []byte {
	const digits = "0123456789abcdef"
	for i := width - 1; i >= 0; i-- {
		b = append(b, digits[(v>>(4*uint(i)))&0xf])
	}
	return b
}

const nsPerMs = 1_000_000

// ParseChunkKey is the inverse of ChunkRef.Key. The key carries only the
// fingerprint, the millisecond time range and the checksum: the returned
// ref has From and Through at whole milliseconds (so Through may be up to
// 999,999 ns earlier than the chunk's last entry — add that when a covering
// range is needed) and zero Entries and sizes. Only the exact spelling Key
// produces is accepted, and the tenant must be a valid tenant ID.
func ParseChunkKey(key string) (tenantID string, r ChunkRef, err error) {
	bad := func(why string) (string, ChunkRef, error) {
		return "", ChunkRef{}, fmt.Errorf("index: chunk key %q: %s", key, why)
	}
	parts := strings.Split(key, "/")
	if len(parts) != 4 || parts[1] != "chunks" {
		return bad("want <tenant>/chunks/<fingerprint>/<from>-<through>-<checksum>")
	}
	if err := tenant.ValidateID(parts[0]); err != nil {
		return bad(err.Error())
	}
	if len(parts[2]) != 16 {
		return bad("fingerprint is not 16 hex digits")
	}
	fp, err := strconv.ParseUint(parts[2], 16, 64)
	if err != nil {
		return bad("fingerprint is not hex")
	}
	fields := strings.Split(parts[3], "-")
	if len(fields) != 3 || len(fields[2]) != 8 {
		return bad("want <from ms hex>-<through ms hex>-<checksum 8 hex digits>")
	}
	var ms [2]int64
	for i, f := range fields[:2] {
		u, err := strconv.ParseUint(f, 16, 64)
		if err != nil {
			return bad("time is not hex")
		}
		ms[i] = int64(u)
		if ms[i] > maxMs || ms[i] < minMs {
			return bad("time out of range")
		}
	}
	sum, err := strconv.ParseUint(fields[2], 16, 32)
	if err != nil {
		return bad("checksum is not hex")
	}
	if ms[0] > ms[1] {
		return bad("from is after through")
	}
	r = ChunkRef{Fingerprint: fp, From: ms[0] * nsPerMs, Through: ms[1] * nsPerMs, Checksum: uint32(sum)}
	if r.Key(parts[0]) != key { // upper-case hex, leading zeros, ...
		return bad("not in canonical form")
	}
	return parts[0], r, nil
}

// The millisecond range whose nanoseconds fit an int64.
const (
	maxMs = (1<<63 - 1) / nsPerMs
	minMs = -(1 << 63) / nsPerMs
)

// Series is one stream of a tenant and the chunks that hold its entries.
// Every chunk's Fingerprint is Labels.Hash().
type Series struct {
	Labels labels.Labels
	Chunks []ChunkRef
}

// Stats summarises the chunks a selector and a time range would read, as
// Loki's /index/stats does. A chunk that overlaps the range counts whole.
type Stats struct {
	Streams uint64 // series with at least one chunk in the range
	Chunks  uint64
	Entries uint64
	Bytes   uint64 // uncompressed
}

// StatsOf sums the series' chunks as they are (no time filtering): use it
// on the result of a query, such as Client.Series or Merge of per-segment
// results, where duplicates across segments have been removed.
func StatsOf(series []Series) Stats {
	var st Stats
	for _, s := range series {
		if len(s.Chunks) == 0 {
			continue
		}
		st.Streams++
		for _, c := range s.Chunks {
			st.add(c)
		}
	}
	return st
}

func (st *Stats) add(c ChunkRef) {
	st.Chunks++
	st.Entries += uint64(c.Entries)
	st.Bytes += uint64(c.UncompressedBytes)
}

// Merge returns the union of the segments' series, sorted by labels, each
// with its chunk refs sorted by (From, Through, Checksum) and identical refs
// removed. The compactor merges a day's segments with it; the querier, the
// segments of a query's days. Labels are shared with the segments: treat
// them as read-only.
func Merge(segs ...*Segment) []Series {
	n := 0
	for _, s := range segs {
		n += len(s.series)
	}
	all := make([]Series, 0, n)
	for _, s := range segs {
		for i := range s.series {
			all = append(all, Series{Labels: s.series[i].labels, Chunks: s.series[i].chunks})
		}
	}
	return normalize(all)
}

// normalize sorts series by labels, merges series with equal labels, sorts
// each series' chunks and removes identical refs, and drops series with no
// chunks. It copies: the input slices are not modified, and all output
// chunks share one new backing array (one allocation instead of one per
// series).
func normalize(in []Series) []Series {
	sorted := slices.Clone(in)
	slices.SortFunc(sorted, func(a, b Series) int { return compareLabels(a.Labels, b.Labels) })

	total := 0
	for _, s := range sorted {
		total += len(s.Chunks)
	}
	backing := make([]ChunkRef, 0, total)
	out := sorted[:0] // reuses the clone: out never overtakes the read index
	for i := 0; i < len(sorted); {
		j := i + 1
		for j < len(sorted) && compareLabels(sorted[i].Labels, sorted[j].Labels) == 0 {
			j++
		}
		start := len(backing)
		for _, s := range sorted[i:j] {
			backing = append(backing, s.Chunks...)
		}
		chunks := backing[start:len(backing):len(backing)]
		slices.SortFunc(chunks, compareChunks)
		chunks = slices.Compact(chunks)
		backing = backing[:start+len(chunks)]
		if len(chunks) > 0 {
			out = append(out, Series{Labels: sorted[i].Labels, Chunks: chunks[:len(chunks):len(chunks)]})
		}
		i = j
	}
	clear(sorted[len(out):]) // let dropped label sets be collected
	return out
}

// compareLabels orders label sets lexicographically by their (name, value)
// pairs, comparing bytes; a set that is a prefix of another sorts first.
// This is the order of series in a segment.
func compareLabels(a, b labels.Labels) int {
	for i := range min(len(a), len(b)) {
		if c := strings.Compare(a[i].Name, b[i].Name); c != 0 {
			return c
		}
		if c := strings.Compare(a[i].Value, b[i].Value); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// compareChunks orders refs by (From, Through, Checksum), then by the
// remaining fields so that the order is total and identical refs are
// adjacent. (Written out rather than with cmp.Or, which would evaluate all
// seven comparisons: this runs for every ref that is sorted or decoded.)
func compareChunks(a, b ChunkRef) int {
	switch {
	case a.From != b.From:
		return cmp.Compare(a.From, b.From)
	case a.Through != b.Through:
		return cmp.Compare(a.Through, b.Through)
	case a.Checksum != b.Checksum:
		return cmp.Compare(a.Checksum, b.Checksum)
	case a.Entries != b.Entries:
		return cmp.Compare(a.Entries, b.Entries)
	case a.UncompressedBytes != b.UncompressedBytes:
		return cmp.Compare(a.UncompressedBytes, b.UncompressedBytes)
	case a.CompressedBytes != b.CompressedBytes:
		return cmp.Compare(a.CompressedBytes, b.CompressedBytes)
	}
	return cmp.Compare(a.Fingerprint, b.Fingerprint)
}

// floorDiv divides rounding towards negative infinity, so that times before
// the epoch land in the right millisecond and day.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
