package chunk

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/lokilab/lokilab/pkg/push"
)

// FuzzDecode checks that Decode and iteration never panic, that what
// decodes iterates consistently in both directions, and that re-encoding a
// decoded chunk preserves its entries.
func FuzzDecode(f *testing.F) {
	for _, enc := range allEncodings {
		f.Add(smallChunk(f, enc))
		f.Add(mustEncode(f, New(enc, 0, 0)))
		// Small seeds: the fuzzer mutates and minimises them faster.
		c := New(enc, 128, 0)
		appendAll(f, c, randomEntries(rand.New(rand.NewPCG(uint64(enc), 9)), 12, -5000, 3000))
		f.Add(mustEncode(f, c))
	}
	f.Add([]byte("LKCH\x01\x01"))
	f.Add([]byte{})

	// One pool for all inputs, as in a process: a zstd encoder per input
	// would make every execution allocate megabytes.
	pool := NewPool()
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, pool, b)
		// Almost every mutation breaks a checksum, which would keep the
		// fuzzer out of everything behind them: try each input again with
		// its checksums made right.
		checkDecode(t, pool, repairChecksums(b))
	})
}

func checkDecode(t *testing.T, pool *Pool, b []byte) {
	c, err := Decode(b, WithPool(pool))
	if err != nil {
		return
	}
	fw, ok := iterateAll(c, Forward)
	bw, okb := iterateAll(c, Backward)
	// Skipping every block finds the same damage, and counts what
	// iterating returns.
	var sk Skipped
	skipAll := c.FilteredIterator(math.MinInt64, math.MaxInt64, Forward, func([]byte) bool { return false }, &sk)
	for skipAll.Next() {
		t.Fatal("a filtered iterator rejecting every block returned an entry")
	}
	if (skipAll.Err() == nil) != ok {
		t.Fatalf("iterating: ok %v; skipping every block: %v", ok, skipAll.Err())
	}
	if !ok || !okb {
		return // a damaged block, reported as an error
	}
	var lineBytes int64
	for _, e := range fw {
		lineBytes += int64(len(e.Line))
	}
	if sk.Blocks != c.Blocks() || sk.Entries != len(fw) || sk.LineBytes != lineBytes {
		t.Fatalf("skipped %+v; %d blocks iterate to %d entries of %d line bytes", sk, c.Blocks(), len(fw), lineBytes)
	}
	// Entries at math.MaxInt64 are outside every [from, through).
	if _, maxT := c.Bounds(); maxT != math.MaxInt64 && len(fw) != c.Entries() {
		t.Fatalf("iterated %d entries, Entries() = %d", len(fw), c.Entries())
	}
	if !slices.IsSortedFunc(fw, func(a, b push.Entry) int { return int(min(max(a.Timestamp-b.Timestamp, -1), 1)) }) {
		t.Fatal("forward iteration is not sorted")
	}
	slices.Reverse(bw)
	if !equalEntries(fw, bw) {
		t.Fatalf("backward is not forward reversed: %s", firstDiff(bw, fw))
	}

	again, err := c.Encode()
	if err != nil {
		t.Fatalf("re-encoding: %v", err)
	}
	d, err := Decode(again, WithPool(pool))
	if err != nil {
		t.Fatalf("decoding the re-encoded chunk: %v", err)
	}
	got, ok := iterateAll(d, Forward)
	if !ok || !equalEntries(got, fw) {
		t.Fatalf("re-encoded chunk iterates differently: %s", firstDiff(got, fw))
	}
	// Decoding normalises (e.g. overlong varints), so encoding is a
	// fixed point after one round.
	if third, _ := d.Encode(); !bytes.Equal(third, again) {
		t.Fatal("encoding a re-encoded chunk changed its bytes")
	}
}

// repairChecksums returns a copy of b with the block CRCs and the meta CRC
// that b's trailer and meta section point at recomputed, as far as they can
// be found.
func repairChecksums(b []byte) []byte {
	b = slices.Clone(b)
	if len(b) < headerSize+crcSize+trailerSize {
		return b
	}
	metaEnd := len(b) - trailerSize - crcSize
	metaOff := binary.BigEndian.Uint64(b[len(b)-trailerSize:])
	if metaOff < headerSize || metaOff >= uint64(metaEnd) {
		return b
	}
	r := reader{b: b[metaOff:metaEnd]}
	for n := r.uvarint(); n > 0 && r.err == nil; n-- {
		r.uvarint()
		r.varint()
		r.uvarint()
		off, length := r.uvarint(), r.uvarint()
		r.uvarint()
		if r.err == nil && off <= metaOff && length <= metaOff-off && metaOff-off-length >= crcSize {
			binary.BigEndian.PutUint32(b[off+length:], crc32c(b[off:off+length]))
		}
	}
	crc := crc32.Update(crc32c(b[:headerSize]), crc32.MakeTable(crc32.Castagnoli), b[metaOff:metaEnd])
	binary.BigEndian.PutUint32(b[metaEnd:], crc)
	return b
}

func iterateAll(c *Chunk, dir Direction) ([]push.Entry, bool) {
	it := c.Iterator(math.MinInt64, math.MaxInt64, dir)
	defer it.Close()
	var out []push.Entry
	for it.Next() {
		out = append(out, clone(it.At()))
	}
	return out, it.Err() == nil
}
