package chunk

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"testing"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
)

// smallChunk is a few entries in three blocks, with metadata.
func smallChunk(t testing.TB, enc Encoding) []byte {
	t.Helper()
	c := New(enc, 40, 0)
	for i, e := range []push.Entry{
		{Timestamp: 1_000, Line: "GET /api/v1/orders 200", StructuredMetadata: []labels.Label{{Name: "trace_id", Value: "7f3a"}}},
		{Timestamp: 1_500, Line: "GET /api/v1/orders 200"},
		{Timestamp: 1_200, Line: "POST /api/v1/orders 201"},
		{Timestamp: 2_000, Line: "GET /healthz 200", StructuredMetadata: []labels.Label{{Name: "user", Value: "42"}}},
		{Timestamp: 2_000, Line: "GET /healthz 500"},
	} {
		if _, err := c.Append(e.Timestamp, e.Line, e.StructuredMetadata); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	b := mustEncode(t, c)
	if c.Blocks() < 2 {
		t.Fatalf("small chunk has %d blocks, want several", c.Blocks())
	}
	return b
}

// decodeAndIterate decodes b and iterates it fully in both directions,
// returning the first error.
func decodeAndIterate(b []byte) error {
	c, err := Decode(b)
	if err != nil {
		return err
	}
	for _, dir := range []Direction{Forward, Backward} {
		it := c.Iterator(math.MinInt64, math.MaxInt64, dir)
		for it.Next() {
			_ = it.At()
		}
		if err := it.Err(); err != nil {
			return err
		}
		_ = it.Close()
	}
	return nil
}

func TestDecodeRejectsEveryFlippedBit(t *testing.T) {
	// Every byte of the object is covered by the magic number, the
	// version, a block CRC or the meta CRC, or points at them (the
	// trailer), so Decode itself must catch every single-bit error.
	for _, enc := range allEncodings {
		t.Run(enc.String(), func(t *testing.T) {
			orig := smallChunk(t, enc)
			b := make([]byte, len(orig))
			for i := range b {
				for bit := range 8 {
					copy(b, orig)
					b[i] ^= 1 << bit
					_, err := Decode(b)
					if err == nil {
						t.Errorf("byte %d bit %d flipped: Decode succeeded", i, bit)
					} else if !errors.Is(err, ErrCorrupt) {
						t.Errorf("byte %d bit %d flipped: error %v does not wrap ErrCorrupt", i, bit, err)
					}
				}
			}
		})
	}
}

func TestDecodeRejectsEveryTruncation(t *testing.T) {
	for _, enc := range allEncodings {
		t.Run(enc.String(), func(t *testing.T) {
			b := smallChunk(t, enc)
			for n := range len(b) {
				if err := decodeAndIterate(b[:n:n]); err == nil {
					t.Errorf("truncated to %d of %d bytes: no error", n, len(b))
				}
			}
			if err := decodeAndIterate(append(b[:len(b):len(b)], 0)); err == nil {
				t.Error("one byte appended: no error")
			}
		})
	}
}

// rewrite decodes the object's meta section, lets edit change the blocks'
// stored bytes and meta, and re-encodes it with correct checksums, so tests
// can build objects that are damaged in ways CRCs do not catch (as a buggy
// writer would produce).
func rewrite(t *testing.T, b []byte, edit func(data []byte, blocks []blockMeta) []byte) []byte {
	t.Helper()
	c := mustDecode(t, b)
	c.data = edit(append([]byte(nil), c.data...), c.blocks)
	for i := range c.blocks {
		bm := &c.blocks[i]
		if bm.offset+bm.length+crcSize > len(c.data) {
			continue // the edit moved the block out of the data
		}
		binary.BigEndian.PutUint32(c.data[bm.offset+bm.length:], crc32.Checksum(c.data[bm.offset:bm.offset+bm.length], crc32.MakeTable(crc32.Castagnoli)))
	}
	out, err := c.AppendEncode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDecodeChecksStructure(t *testing.T) {
	b := smallChunk(t, EncodingNone)
	tests := []struct {
		name string
		edit func(data []byte, blocks []blockMeta) []byte
	}{
		{"empty block", func(d []byte, bs []blockMeta) []byte { bs[0].entries = 0; return d }},
		{"block too large", func(d []byte, bs []blockMeta) []byte { bs[0].size = MaxBlockSize + 1; return d }},
		{"more entries than bytes", func(d []byte, bs []blockMeta) []byte { bs[0].entries = bs[0].size; return d }},
		{"block not where the previous one ends", func(d []byte, bs []blockMeta) []byte { bs[1].offset++; return d }},
		{"block overruns meta", func(d []byte, bs []blockMeta) []byte { bs[len(bs)-1].length += 100; return d }},
		{"gap before meta", func(d []byte, bs []blockMeta) []byte { return append(d, 0, 0, 0, 0, 0) }},
		{"max time overflows", func(d []byte, bs []blockMeta) []byte { bs[0].maxT = math.MinInt64; bs[0].minT = 1; return d }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(rewrite(t, b, tt.edit))
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("Decode: %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestIteratorChecksBlockContents(t *testing.T) {
	// Blocks whose CRC is right but whose contents disagree with the meta
	// section: Decode accepts them (it does not decompress), iterators
	// report them.
	tests := []struct {
		name string
		enc  Encoding
		edit func(data []byte, blocks []blockMeta) []byte
	}{
		{"wrong entry count", EncodingNone, func(d []byte, bs []blockMeta) []byte { bs[0].entries--; return d }},
		{"wrong min time", EncodingNone, func(d []byte, bs []blockMeta) []byte { bs[0].minT--; bs[0].maxT--; return d }},
		{"wrong max time", EncodingNone, func(d []byte, bs []blockMeta) []byte { bs[0].maxT++; return d }},
		{"line longer than block", EncodingNone, func(d []byte, bs []blockMeta) []byte { d[bs[0].offset+2] = 0x7f; return d }},
		{"wrong uncompressed size", EncodingSnappy, func(d []byte, bs []blockMeta) []byte { bs[0].size--; return d }},
		{"garbage zstd", EncodingZstd, func(d []byte, bs []blockMeta) []byte { d[bs[0].offset] ^= 0xff; return d }},
		{"garbage snappy", EncodingSnappy, func(d []byte, bs []blockMeta) []byte { d[bs[0].offset+1] ^= 0xff; return d }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := decodeAndIterate(rewrite(t, smallChunk(t, tt.enc), tt.edit)); !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v, want an error wrapping ErrCorrupt", err)
			}
		})
	}
}

func TestDecodeRejectsHeaders(t *testing.T) {
	b := smallChunk(t, EncodingSnappy)
	tests := []struct {
		name string
		edit func(b []byte)
	}{
		{"bad magic", func(b []byte) { b[0] = 'X' }},
		{"future version", func(b []byte) { b[4] = 2 }},
		{"unknown encoding", func(b []byte) { b[5] = 9 }},
		{"codec byte changed", func(b []byte) { b[5] = byte(EncodingZstd) }},
		{"meta offset past the end", func(b []byte) { binary.BigEndian.PutUint64(b[len(b)-8:], math.MaxUint64) }},
		{"meta offset into the header", func(b []byte) { binary.BigEndian.PutUint64(b[len(b)-8:], 2) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := append([]byte(nil), b...)
			tt.edit(c)
			if _, err := Decode(c); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Decode: %v, want ErrCorrupt", err)
			}
		})
	}
}
