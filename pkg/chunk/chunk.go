package chunk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"sort"
	"sync/atomic"
	"unsafe"

	"github.com/lokilab/lokilab/pkg/labels"
)

// Sizes. The defaults are Loki's (chunk_block_size, chunk_target_size).
const (
	// DefaultBlockSize is the uncompressed size at which the head block is
	// cut: 256 KiB. See the package doc for why.
	DefaultBlockSize = 256 << 10
	// DefaultTargetSize is the compressed size at which a chunk reports
	// Full: 1.5 MiB.
	DefaultTargetSize = 1536 << 10
	// MaxBlockSize is the largest uncompressed block the format allows
	// (16 MiB). It bounds what a reader allocates for a block whatever the
	// object claims, and therefore also the largest entry: an entry that
	// does not fit in a block on its own is rejected by Append.
	MaxBlockSize = 16 << 20
)

// Layout constants; FORMAT.md explains each.
const (
	magic       = 0x4C4B4348 // "LKCH"
	formatV1    = 1
	headerSize  = 6 // magic, version, encoding
	crcSize     = 4
	trailerSize = 8 // meta section offset
)

// ErrReadOnly is returned by Append on a chunk returned by Decode.
var ErrReadOnly = errors.New("chunk: decoded chunks are read-only")

// Chunk is one stream's entries: a mutable head block plus cut (compressed)
// blocks while it is being built in the ingester; read-only after Decode.
//
// Append, Encode and AppendEncode change the chunk; every other method only
// reads it. The package doc says what is safe concurrently.
type Chunk struct {
	enc        Encoding
	blockSize  int
	targetSize int
	pool       *Pool
	readOnly   bool

	// data is the object's prefix: the header, then, for a decoded chunk,
	// every block's stored bytes (compressed data and CRC) back to back.
	// Bytes once written never change, so iterators may keep a view of it.
	data []byte
	// parts holds, for a chunk being built, each cut block's stored bytes
	// in a slice of its own, in cut order: the object is assembled only by
	// AppendEncode. One contiguous buffer grown block by block would be
	// reallocated, zeroed and copied about five times on the way to the
	// target size, which cost a third of the time of building a chunk
	// (BenchmarkBuildVsSnappy). An element once appended never changes.
	parts [][]byte
	// stored is the bytes in parts, and partsCap their capacity.
	stored, partsCap int
	// blocks describes the cut blocks, in the order they were cut. An
	// element once appended never changes.
	blocks []blockMeta
	// cutRaw is the sum of the cut blocks' uncompressed sizes, for the
	// compression ratio that Full uses to estimate the head.
	cutRaw int

	head headBlock

	entries    int
	minT, maxT int64
	// size is the line and metadata bytes appended (UncompressedSize).
	size int
}

// blockMeta is one entry of the meta section.
type blockMeta struct {
	entries    int
	minT, maxT int64
	offset     int // of the block's first stored byte in the object
	length     int // stored (compressed) bytes, excluding the CRC
	size       int // uncompressed bytes
}

// headBlock holds entries not yet cut. Each entry's body (everything but
// its timestamp, serialised as in a block) is appended to arena, and index
// keeps (timestamp, body range) sorted by timestamp, then by append order.
// Keeping index sorted on insertion is cheap (entries mostly arrive in
// order, so it is an append; otherwise a binary search and a short memmove
// of 16-byte elements), and it makes duplicate detection, cutting and
// snapshotting for iterators straightforward.
//
// While every entry has arrived in timestamp order (the usual case), each
// body in arena is preceded by its timestamp encoded as the block format
// stores it (a varint for the first entry, then uvarint deltas), so the
// arena is byte for byte the serialised block and cut compresses it as it
// is, without copying it first: one memmove of a whole block less per cut
// (docs/performance.md has BenchmarkBuildVsSnappy's figures). The first
// entry out of order sets unordered and its body gets no prefix; cut then
// serialises the block from index instead.
type headBlock struct {
	arena     []byte
	index     []entryRef
	unordered bool
	// bodies is the bytes of entry bodies in arena, which is what the
	// block size counts (the timestamps' few bytes each are not counted,
	// as before they were kept in arena).
	bodies int
	// shared is set when an iterator took a view of arena, which must then
	// not be overwritten: the next cut starts a new arena instead of
	// reusing this one.
	shared atomic.Bool
}

// entryRef locates an entry's body in a buffer (the head's arena or a
// decompressed block).
type entryRef struct {
	ts       int64
	off, end uint32
}

// New returns an empty chunk that compresses blocks with enc, cuts the head
// block when it holds blockSize bytes (DefaultBlockSize when <= 0, at most
// MaxBlockSize/2) and reports Full at about targetSize compressed bytes
// (DefaultTargetSize when <= 0). An unknown enc is replaced by snappy.
func New(enc Encoding, blockSize, targetSize int, opts ...Option) *Chunk {
	o := applyOptions(opts)
	if !enc.valid() {
		enc = EncodingSnappy
	}
	if blockSize <= 0 {
		blockSize = DefaultBlockSize
	}
	blockSize = min(blockSize, MaxBlockSize/2)
	if targetSize <= 0 {
		targetSize = DefaultTargetSize
	}
	c := &Chunk{
		enc:        enc,
		blockSize:  blockSize,
		targetSize: targetSize,
		pool:       o.pool,
		minT:       math.MaxInt64,
		maxT:       math.MinInt64,
	}
	c.data = appendHeader(make([]byte, 0, headerSize), enc)
	return c
}

func appendHeader(b []byte, enc Encoding) []byte {
	b = binary.BigEndian.AppendUint32(b, magic)
	return append(b, formatV1, byte(enc))
}

// Append adds an entry, copying line and metadata (callers' strings alias
// reused Kafka record buffers). Entries may arrive out of order (the
// ingester enforces the out-of-order window); an exact duplicate of an entry
// already in the head block (same timestamp, line and metadata, metadata in
// the same order) is dropped and reported with dup=true. Duplicates of
// entries already cut into blocks are not detected: that would cost a
// decompression per append, and query-time dedupe removes them.
//
// When the head block reaches the block size it is cut (sorted, serialised
// and compressed), so an Append occasionally costs a block's compression.
// Append returns an error on a decoded (read-only) chunk, and for an entry
// larger than a block may be. (Cutting can fail only if the zstd encoder
// cannot be built; the entry is then kept in the head.)
func (c *Chunk) Append(ts int64, line string, md []labels.Label) (dup bool, err error) {
	if c.readOnly {
		return false, ErrReadOnly
	}
	n := entryBodySize(line, md)
	if n > MaxBlockSize-binary.MaxVarintLen64 {
		return false, fmt.Errorf("chunk: entry of %d bytes does not fit in a block (max %d)", n, MaxBlockSize-binary.MaxVarintLen64)
	}
	h := &c.head
	if len(h.index) > 0 && len(h.arena)+n+len(h.index)*binary.MaxVarintLen64 > MaxBlockSize-binary.MaxVarintLen64 {
		// Keep the serialised block within the format's limit, counting
		// the worst case for its timestamps. Only entries or block sizes
		// of megabytes get here.
		if err := c.cut(); err != nil {
			return false, err
		}
	}

	start := len(h.arena)
	if cap(h.arena)-start < n+binary.MaxVarintLen64 {
		// The arena holds the bodies (the block size) plus their
		// timestamps: estimate the block's final size from the
		// timestamps' share so far.
		full := c.blockSize
		if h.bodies > 0 {
			full = int(int64(c.blockSize) * int64(len(h.arena)) / int64(h.bodies))
		}
		h.arena = c.growArena(h.arena, n+binary.MaxVarintLen64, full)
	}
	// Insert after every entry with a timestamp <= ts: stable for equal
	// timestamps, and a plain append for in-order entries, which are
	// prefixed with their timestamp as the block format stores it.
	pos := len(h.index)
	inOrder := pos == 0 || ts >= h.index[pos-1].ts
	switch {
	case pos == 0:
		h.arena = binary.AppendVarint(h.arena, ts)
	case inOrder:
		h.arena = binary.AppendUvarint(h.arena, uint64(ts)-uint64(h.index[pos-1].ts))
	default:
		pos = sort.Search(pos, func(i int) bool { return h.index[i].ts > ts })
	}
	off := len(h.arena)
	h.arena = appendEntryBody(h.arena, line, md)
	body := h.arena[off:]
	// Duplicates have the same timestamp: compare with each entry of that
	// timestamp. A long run of equal timestamps (clients that stamp lines
	// with second precision) makes this quadratic in the run's length,
	// bounded by the entries of one block.
	for i := pos - 1; i >= 0 && h.index[i].ts == ts; i-- {
		if e := h.index[i]; bytes.Equal(h.arena[e.off:e.end], body) {
			h.arena = h.arena[:start]
			return true, nil
		}
	}
	if !inOrder {
		h.unordered = true
	}
	h.bodies += len(body)
	h.index = slices.Insert(h.index, pos, entryRef{ts: ts, off: uint32(off), end: uint32(len(h.arena))})

	c.entries++
	c.minT = min(c.minT, ts)
	c.maxT = max(c.maxT, ts)
	c.size += len(line)
	for _, l := range md {
		c.size += len(l.Name) + len(l.Value)
	}
	if h.bodies >= c.blockSize {
		return false, c.cut()
	}
	return false, nil
}

// growArena returns b with room for n more bytes. It doubles the capacity
// where append would grow a large slice by 1.25x: a head block reaches the
// block size in about 10 copies instead of about 25, and allocates about
// twice its final size on the way instead of four to five times
// (ingester's BenchmarkPartitionPush, same run: 125MB allocated per 200k
// lines instead of 171MB, time unchanged within noise). It does not grow
// past full, the expected size of a whole block, plus this entry, since the
// head is cut there; past it (full is an estimate) it grows by a
// sixteenth of it at a time, so that a low estimate costs a few copies
// rather than one per entry.
//
// Once the head needs half a block or more, it first tries a buffer from
// the Pool: Seal gives a sealed chunk's arena back there, so a busy stream
// fills chunk after chunk in one recycled arena instead of growing (and
// zeroing) a new one each time.
func (c *Chunk) growArena(b []byte, n, full int) []byte {
	size := max(2*cap(b), len(b)+n)
	size = min(size, max(full+n, len(b)+n+full/16))
	if size >= full/2 {
		bp := c.pool.getBuf()
		if cap(*bp) >= size {
			return append((*bp)[:0], b...)
		}
		c.pool.putBuf(bp)
	}
	nb := make([]byte, len(b), size)
	copy(nb, b)
	return nb
}

// entryBodySize is the size of appendEntryBody's output.
func entryBodySize(line string, md []labels.Label) int {
	n := uvarintLen(len(line)) + len(line) + uvarintLen(len(md))
	for _, l := range md {
		n += uvarintLen(len(l.Name)) + len(l.Name) + uvarintLen(len(l.Value)) + len(l.Value)
	}
	return n
}

// appendEntryBody appends an entry as it is stored in a block, less the
// timestamp: line length, line, metadata count, then each name and value
// with its length.
func appendEntryBody(b []byte, line string, md []labels.Label) []byte {
	b = binary.AppendUvarint(b, uint64(len(line)))
	b = append(b, line...)
	b = binary.AppendUvarint(b, uint64(len(md)))
	for _, l := range md {
		b = binary.AppendUvarint(b, uint64(len(l.Name)))
		b = append(b, l.Name...)
		b = binary.AppendUvarint(b, uint64(len(l.Value)))
		b = append(b, l.Value...)
	}
	return b
}

func uvarintLen(n int) int {
	l := 1
	for ; n >= 0x80; n >>= 7 {
		l++
	}
	return l
}

// cut serialises the head block in timestamp order, compresses it into a
// new part with its CRC, and empties the head.
func (c *Chunk) cut() error {
	h := &c.head
	if len(h.index) == 0 {
		return nil
	}
	raw := h.arena // in order: the arena is the serialised block
	if h.unordered {
		rawp := c.pool.getBuf()
		defer c.pool.putBuf(rawp)
		raw = slices.Grow(*rawp, len(h.arena)+len(h.index)*binary.MaxVarintLen64)
		prev := h.index[0].ts
		raw = binary.AppendVarint(raw, prev)
		for i, e := range h.index {
			if i > 0 {
				// Unsigned subtraction: the delta of two int64s in order
				// always fits a uint64, even across the whole int64 range.
				raw = binary.AppendUvarint(raw, uint64(e.ts)-uint64(prev))
				prev = e.ts
			}
			raw = append(raw, h.arena[e.off:e.end]...)
		}
		*rawp = raw // keep the grown buffer for the next cut
	}

	// Compress into a scratch buffer with room for the codec's worst case,
	// then keep an exact-size copy: a block costs its compressed size.
	outp := c.pool.getBuf()
	defer c.pool.putBuf(outp)
	out, err := c.pool.compress(c.enc, *outp, raw)
	if err != nil {
		return err
	}
	out = binary.BigEndian.AppendUint32(out, crc32c(out))
	*outp = out
	// append to an empty slice allocates without zeroing what it copies.
	part := append([]byte(nil), out...)
	c.parts = append(c.parts, part)
	c.blocks = append(c.blocks, blockMeta{
		entries: len(h.index),
		minT:    h.index[0].ts,
		maxT:    h.index[len(h.index)-1].ts,
		offset:  headerSize + c.stored,
		length:  len(part) - crcSize,
		size:    len(raw),
	})
	c.stored += len(part)
	c.partsCap += cap(part)
	c.cutRaw += len(raw)

	h.index = h.index[:0]
	h.unordered, h.bodies = false, 0
	if h.shared.Load() {
		// An iterator may still read the old arena: leave it to them.
		h.arena = nil
		h.shared.Store(false)
	} else {
		h.arena = h.arena[:0]
	}
	return nil
}

// Seal cuts the head block and frees the head's buffers, for a chunk that
// is complete: from then on it holds only compressed blocks, which is all
// Encode and Iterator need. The ingester seals a chunk when it stops
// appending to it, so a chunk waiting for its upload costs its compressed
// size, not its compressed size plus an idle head buffer of up to a block.
// Append still works afterwards, with new buffers.
func (c *Chunk) Seal() error {
	if c.readOnly {
		return nil
	}
	if err := c.cut(); err != nil {
		return err
	}
	// An iterator that took a view of the arena keeps it alive by itself;
	// otherwise the arena goes back to the pool for the next chunk.
	if a := c.head.arena; cap(a) > 0 && !c.head.shared.Load() {
		a = a[:0]
		c.pool.putBuf(&a)
	}
	c.head.arena, c.head.index = nil, nil
	c.head.shared.Store(false)
	return nil
}

func crc32c(b []byte) uint32 {
	// MakeTable returns the package's cached Castagnoli table (and uses the
	// CPU's CRC32 instruction where there is one); no allocation.
	return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
}

// Full reports whether the chunk has reached its target size and should be
// flushed. The rule: the stored size of the cut blocks plus an estimate of
// the head block's compressed size is at least the target. The estimate is
// the head's uncompressed bytes times the compression ratio of the blocks
// cut so far (the head's uncompressed bytes when none has been cut yet), so
// chunks of well-compressing streams are not flushed early for an
// uncompressed head, and a chunk overshoots its target by at most about one
// block's compressed size.
func (c *Chunk) Full() bool {
	return c.CompressedSize()+c.headEstimate() >= c.targetSize
}

func (c *Chunk) headEstimate() int {
	n := len(c.head.arena)
	if c.cutRaw == 0 {
		return n
	}
	return int(int64(n) * int64(c.CompressedSize()) / int64(c.cutRaw))
}

// CompressedSize is the stored size of the cut blocks (compressed data and
// checksums). The head block is not counted until it is cut; Encode adds
// the header, meta section and trailer (tens of bytes per block).
func (c *Chunk) CompressedSize() int { return len(c.data) - headerSize + c.stored }

// Entries is the number of entries in the chunk (duplicates dropped).
func (c *Chunk) Entries() int { return c.entries }

// Bounds returns the smallest and largest timestamp in the chunk, both
// inclusive, or (0, 0) for an empty chunk.
func (c *Chunk) Bounds() (minT, maxT int64) {
	if c.entries == 0 {
		return 0, 0
	}
	return c.minT, c.maxT
}

// UncompressedSize is the bytes of lines and structured metadata names and
// values appended, as counted by limits (push.Entry.Size). A decoded chunk
// does not know it without decompressing every block, so for one it is the
// blocks' uncompressed size, which also counts the entries' framing (a few
// bytes each).
func (c *Chunk) UncompressedSize() int { return c.size }

// MemoryBytes approximates the memory the chunk holds: its buffers'
// capacities and fixed overhead. The ingester sums it for its memory limit.
// For a decoded chunk it includes the object's bytes, which it keeps alive.
func (c *Chunk) MemoryBytes() int {
	return int(unsafe.Sizeof(*c)) +
		cap(c.data) +
		c.partsCap + cap(c.parts)*int(unsafe.Sizeof([]byte(nil))) +
		cap(c.blocks)*int(unsafe.Sizeof(blockMeta{})) +
		cap(c.head.arena) +
		cap(c.head.index)*int(unsafe.Sizeof(entryRef{}))
}

// Encoding is the chunk's codec.
func (c *Chunk) Encoding() Encoding { return c.enc }

// Blocks is the number of cut blocks; the head block is not counted.
func (c *Chunk) Blocks() int { return len(c.blocks) }

// Encode cuts the head block and returns the full object bytes, in a new
// slice the caller owns. The chunk stays appendable: a later Encode includes
// the entries appended since (in further blocks).
func (c *Chunk) Encode() ([]byte, error) { return c.AppendEncode(nil) }

// AppendEncode is Encode appending to dst, for callers that reuse a buffer.
func (c *Chunk) AppendEncode(dst []byte) ([]byte, error) {
	if !c.readOnly {
		if err := c.cut(); err != nil {
			return dst, err
		}
	}
	start := len(dst)
	dst = slices.Grow(dst, len(c.data)+c.stored+1+len(c.blocks)*(6*binary.MaxVarintLen64)+crcSize+trailerSize)
	dst = append(dst, c.data...)
	for _, p := range c.parts {
		dst = append(dst, p...)
	}
	metaOff := len(dst)
	dst = binary.AppendUvarint(dst, uint64(len(c.blocks)))
	for _, b := range c.blocks {
		dst = binary.AppendUvarint(dst, uint64(b.entries))
		dst = binary.AppendVarint(dst, b.minT)
		dst = binary.AppendUvarint(dst, uint64(b.maxT)-uint64(b.minT))
		dst = binary.AppendUvarint(dst, uint64(b.offset))
		dst = binary.AppendUvarint(dst, uint64(b.length))
		dst = binary.AppendUvarint(dst, uint64(b.size))
	}
	crc := crc32.Update(crc32c(dst[start:start+headerSize]), crc32.MakeTable(crc32.Castagnoli), dst[metaOff:])
	dst = binary.BigEndian.AppendUint32(dst, crc)
	return binary.BigEndian.AppendUint64(dst, uint64(metaOff-start)), nil
}
