package chunk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// ErrCorrupt is wrapped by every error Decode and iterators return for bytes
// that are not a valid chunk.
var ErrCorrupt = errors.New("corrupt")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("chunk: %w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// Smallest encodings, used to bound counts read from the object by the
// bytes that could hold them, so that no count makes Decode allocate more
// than the input justifies.
const (
	minBlockMetaSize = 6 // six one-byte varints
	minEntrySize     = 3 // timestamp, line length, metadata count
	minLabelSize     = 2 // name length, value length
)

// Decode parses an object written by Encode. It checks the magic number,
// version and codec, the meta section and its CRC, the placement of every
// block and every block's CRC, and returns a read-only chunk whose blocks
// are decompressed lazily by iterators (which check the blocks' contents).
// The chunk keeps b: the caller must not modify it afterwards.
//
// Decode never panics, and allocates in proportion to len(b) whatever the
// bytes claim; an iterator then allocates at most the uncompressed size of
// each block it opens, which the format limits to MaxBlockSize. Errors wrap
// ErrCorrupt.
func Decode(b []byte, opts ...Option) (*Chunk, error) {
	if len(b) < headerSize+1+crcSize+trailerSize {
		return nil, corrupt("%d bytes is too short for a chunk", len(b))
	}
	if m := binary.BigEndian.Uint32(b); m != magic {
		return nil, corrupt("bad magic number %#08x, want %#08x", m, magic)
	}
	if v := b[4]; v != formatV1 {
		return nil, corrupt("unsupported format version %d", v)
	}
	enc := Encoding(b[5])
	if !enc.valid() {
		return nil, corrupt("unknown encoding %d", b[5])
	}

	metaEnd := len(b) - trailerSize - crcSize
	metaOff := binary.BigEndian.Uint64(b[len(b)-trailerSize:])
	if metaOff < headerSize || metaOff >= uint64(metaEnd) {
		return nil, corrupt("meta section offset %d outside [%d, %d)", metaOff, headerSize, metaEnd)
	}
	meta := b[metaOff:metaEnd]
	want := binary.BigEndian.Uint32(b[metaEnd:])
	got := crc32.Update(crc32c(b[:headerSize]), crc32.MakeTable(crc32.Castagnoli), meta)
	if got != want {
		return nil, corrupt("meta section checksum %#08x, want %#08x", got, want)
	}

	r := reader{b: meta}
	n := r.uvarint()
	if r.err == nil && n > uint64(len(meta)/minBlockMetaSize) {
		return nil, corrupt("meta section claims %d blocks in %d bytes", n, len(meta))
	}
	c := &Chunk{
		enc:        enc,
		blockSize:  DefaultBlockSize,
		targetSize: DefaultTargetSize,
		pool:       applyOptions(opts).pool,
		readOnly:   true,
		data:       b[:metaOff:metaOff],
		blocks:     make([]blockMeta, 0, n),
		minT:       math.MaxInt64,
		maxT:       math.MinInt64,
	}
	next := uint64(headerSize) // blocks are back to back from the header on
	for i := uint64(0); i < n && r.err == nil; i++ {
		entries, minT, span := r.uvarint(), r.varint(), r.uvarint()
		offset, length, size := r.uvarint(), r.uvarint(), r.uvarint()
		if r.err != nil {
			break
		}
		switch {
		case entries == 0:
			return nil, corrupt("block %d is empty", i)
		case size > MaxBlockSize:
			return nil, corrupt("block %d: %d uncompressed bytes exceeds the %d limit", i, size, MaxBlockSize)
		case entries > size/minEntrySize:
			return nil, corrupt("block %d: %d entries cannot fit in %d bytes", i, entries, size)
		case span > uint64(math.MaxInt64)-uint64(minT):
			return nil, corrupt("block %d: max time overflows", i)
		case enc == EncodingNone && length != size:
			return nil, corrupt("block %d: %d bytes stored uncompressed, meta says %d", i, length, size)
		case offset != next:
			return nil, corrupt("block %d at offset %d, want %d", i, offset, next)
		case length > metaOff-offset || metaOff-offset-length < crcSize:
			return nil, corrupt("block %d (%d bytes at %d) overruns the meta section at %d", i, length, offset, metaOff)
		}
		stored := b[offset : offset+length]
		if got, want := crc32c(stored), binary.BigEndian.Uint32(b[offset+length:]); got != want {
			return nil, corrupt("block %d checksum %#08x, want %#08x", i, got, want)
		}
		bm := blockMeta{
			entries: int(entries),
			minT:    minT,
			maxT:    int64(uint64(minT) + span),
			offset:  int(offset),
			length:  int(length),
			size:    int(size),
		}
		c.blocks = append(c.blocks, bm)
		c.entries += bm.entries
		c.size += bm.size
		c.cutRaw += bm.size
		c.minT = min(c.minT, bm.minT)
		c.maxT = max(c.maxT, bm.maxT)
		next = offset + length + crcSize
	}
	if r.err != nil {
		return nil, corrupt("meta section: %v", r.err)
	}
	if len(r.b) != 0 {
		return nil, corrupt("%d unexpected bytes at the end of the meta section", len(r.b))
	}
	if next != metaOff {
		return nil, corrupt("%d bytes between the last block and the meta section", metaOff-next)
	}
	return c, nil
}

// reader reads varints, remembering the first error so that callers check
// once after a group of reads.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errVarint(n)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errVarint(n)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes returns the next n bytes, n having been read from the input.
func (r *reader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("length %d exceeds the %d bytes left", n, len(r.b))
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func errVarint(n int) error {
	if n == 0 {
		return errors.New("truncated varint")
	}
	return errors.New("varint overflows 64 bits")
}

// parseBlock checks a decompressed block against its meta and appends a
// reference to each entry's body to refs. Entries are in timestamp order:
// the first timestamp is a varint, each next one a uvarint delta from the
// one before.
func parseBlock(raw []byte, bm *blockMeta, refs []entryRef) ([]entryRef, error) {
	_, err := walkBlock(raw, bm, 0, 0, &refs)
	return refs, err
}

// countBlock checks a decompressed block against its meta as parseBlock
// does, and counts its entries with from <= ts < through and their lines'
// bytes, without keeping a reference to any: what a FilteredIterator
// reports for a block it skips (Skipped).
func countBlock(raw []byte, bm *blockMeta, from, through int64) (blockCount, error) {
	return walkBlock(raw, bm, from, through, nil)
}

// blockCount is what countBlock counts.
type blockCount struct {
	entries   int
	lineBytes int64
}

// walkBlock is parseBlock and countBlock: one walk over the format, so
// that both check a block the same way. With refs it appends every entry
// and counts nothing (the iterator finds the range with searchRange);
// without, it counts the entries in [from, through). The branch per entry
// costs nothing measurable next to the varint reads around it.
func walkBlock(raw []byte, bm *blockMeta, from, through int64, refs *[]entryRef) (blockCount, error) {
	var n blockCount
	r := reader{b: raw}
	ts := r.varint()
	for i := 0; i < bm.entries; i++ {
		if i > 0 {
			d := r.uvarint()
			if r.err == nil && d > uint64(math.MaxInt64)-uint64(ts) {
				return n, errors.New("timestamp overflows")
			}
			ts = int64(uint64(ts) + d)
		}
		off := len(raw) - len(r.b)
		line := r.bytes(r.uvarint())
		nmd := r.uvarint()
		if r.err == nil && nmd > uint64(len(r.b)/minLabelSize) {
			return n, fmt.Errorf("entry %d claims %d metadata pairs in %d bytes", i, nmd, len(r.b))
		}
		for j := uint64(0); j < nmd && r.err == nil; j++ {
			r.bytes(r.uvarint()) // name
			r.bytes(r.uvarint()) // value
		}
		if r.err != nil {
			return n, fmt.Errorf("entry %d: %w", i, r.err)
		}
		if i == 0 && ts != bm.minT {
			return n, fmt.Errorf("first timestamp %d, meta says %d", ts, bm.minT)
		}
		if refs != nil {
			*refs = append(*refs, entryRef{ts: ts, off: uint32(off), end: uint32(len(raw) - len(r.b))})
		} else if ts >= from && ts < through {
			n.entries++
			n.lineBytes += int64(len(line))
		}
	}
	if len(r.b) != 0 {
		return n, fmt.Errorf("%d bytes after entry %d", len(r.b), bm.entries)
	}
	if ts != bm.maxT {
		return n, fmt.Errorf("last timestamp %d, meta says %d", ts, bm.maxT)
	}
	return n, nil
}
