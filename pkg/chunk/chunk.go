package chunk

import (
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

// headBlock holds the entries not yet cut, in arena: each entry's body
// (everything but its timestamp, serialised as in a block), appended in
// arrival order.
//
// While every entry has arrived in timestamp order (the usual case), each
// body is preceded by its timestamp encoded as the block format stores it
// (a varint for the first entry, then uvarint deltas), so the arena is byte
// for byte the serialised block, and the head keeps nothing else: no
// per-entry index. cut compresses the arena as it is; an iterator parses
// it as it would a decompressed block (parseBlock); a duplicate can only
// be one of the trailing entries with the newest timestamp, found by
// parsing the arena from runOff. The index this replaced cost 16 bytes per
// entry plus its spare capacity, a tenth of the head's memory
// (docs/performance.md, "Ingester memory per active stream").
//
// The first entry out of order (a straggler) switches the head to indexed
// mode for the rest of the block: index is built by parsing the arena,
// then keeps (timestamp, body range) of every entry sorted by timestamp,
// then by append order. Stragglers' bodies are appended without a
// timestamp prefix; cut serialises the block from index, and duplicate
// checks and iterators use index. Keeping index sorted on insertion is
// cheap (a binary search and a short memmove of 16-byte elements). The
// index is dropped at the cut, so only blocks that received a straggler
// pay for one.
type headBlock struct {
	arena []byte
	// n is the number of entries, minT and maxT their smallest and largest
	// timestamps. In order, maxT is the last entry's timestamp, the base
	// of the next one's delta.
	n          int
	minT, maxT int64
	// size is the bytes of the serialised block: len(arena) in order, and
	// more in indexed mode (stragglers' timestamps are not in the arena).
	// It is what the block size bounds.
	size int
	// runOff is, in order, the arena offset of the first entry whose
	// timestamp is maxT: where a duplicate check starts.
	runOff int
	// index is nil while the entries are in order (unordered is false).
	index     []entryRef
	unordered bool
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

// meta describes the head as the block it serialises to.
func (h *headBlock) meta() blockMeta {
	return blockMeta{entries: h.n, minT: h.minT, maxT: h.maxT, size: h.size}
}

// growth is how much an entry at ts with an n-byte body, inserted at pos
// of an indexed head (ignored otherwise), adds to the head's serialised
// size: its body and its timestamp's encoding, and for a straggler the
// change in its neighbours' deltas. The block's size is thus known
// exactly, whatever order the entries arrived in.
func (h *headBlock) growth(ts int64, n, pos int) int {
	switch {
	case h.n == 0:
		return varintLen(ts) + n
	case ts >= h.maxT:
		return uvarintLen64(uint64(ts)-uint64(h.maxT)) + n
	case pos == 0:
		// The new first entry: its varint, and the old first's varint
		// becomes a delta.
		first := h.index[0].ts
		return varintLen(ts) + uvarintLen64(uint64(first)-uint64(ts)) - varintLen(first) + n
	}
	prev, next := h.index[pos-1].ts, h.index[pos].ts
	return uvarintLen64(uint64(ts)-uint64(prev)) + uvarintLen64(uint64(next)-uint64(ts)) - uvarintLen64(uint64(next)-uint64(prev)) + n
}

// hasDuplicate reports whether the head holds an entry with timestamp ts,
// line and metadata md (in the same order). Duplicates have the same
// timestamp, so it compares with each entry of that timestamp: a long run
// of equal timestamps (clients that stamp lines with second precision)
// makes appending the run quadratic in its length, bounded by the entries
// of one block.
func (h *headBlock) hasDuplicate(ts int64, line string, md []labels.Label) bool {
	if h.n == 0 || ts > h.maxT || ts < h.minT {
		return false
	}
	if h.index != nil {
		i := sort.Search(len(h.index), func(i int) bool { return h.index[i].ts > ts })
		for i--; i >= 0 && h.index[i].ts == ts; i-- {
			if e := h.index[i]; bodyEqual(h.arena[e.off:e.end], line, md) {
				return true
			}
		}
		return false
	}
	if ts != h.maxT {
		// In order, only the trailing run has timestamp maxT; Append
		// indexes the head before asking about an earlier timestamp.
		return false
	}
	// Each entry of the run is its timestamp (a varint for the block's
	// first entry, a uvarint delta otherwise: the run's first from the
	// entry before, zero for the rest) and its body.
	for off := h.runOff; off < len(h.arena); {
		var l int
		if off == 0 {
			_, l = binary.Varint(h.arena)
		} else {
			_, l = binary.Uvarint(h.arena[off:])
		}
		off += l
		end := off + bodyLen(h.arena[off:])
		if bodyEqual(h.arena[off:end], line, md) {
			return true
		}
		off = end
	}
	return false
}

// bodyLen is the length of the entry body that b starts with. The head
// wrote it, so it is not checked.
func bodyLen(b []byte) int {
	r := reader{b: b}
	r.bytes(r.uvarint()) // line
	for nmd := r.uvarint(); nmd > 0; nmd-- {
		r.bytes(r.uvarint()) // name
		r.bytes(r.uvarint()) // value
	}
	return len(b) - len(r.b)
}

// bodyEqual reports whether body is the serialised form of line and md,
// without serialising them: a duplicate check costs no copy.
func bodyEqual(body []byte, line string, md []labels.Label) bool {
	r := reader{b: body}
	if string(r.bytes(r.uvarint())) != line || r.uvarint() != uint64(len(md)) {
		return false
	}
	for _, l := range md {
		if string(r.bytes(r.uvarint())) != l.Name || string(r.bytes(r.uvarint())) != l.Value {
			return false
		}
	}
	return r.err == nil && len(r.b) == 0
}

// buildIndex switches the head to indexed mode, for a straggler: the
// in-order arena is a serialised block, so parseBlock indexes it.
func (h *headBlock) buildIndex() error {
	bm := h.meta()
	idx, err := parseBlock(h.arena, &bm, make([]entryRef, 0, h.n+h.n/4+1))
	if err != nil {
		// Only a bug in this file can get here: the head wrote the arena.
		return fmt.Errorf("chunk: indexing the head block: %w", err)
	}
	h.index, h.unordered = idx, true
	return nil
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
// The head block is cut (compressed) before an entry that would take its
// serialised size past the block size, so no block is larger than the
// block size unless one entry alone is, and a head's arena is allocated
// for exactly a block: an Append occasionally costs a block's compression.
// The block size thus counts the serialised block, timestamps and framing
// included, which makes blocks hold 2-3% fewer line bytes than counting
// lines alone would (Loki counts lines, and cuts after the entry that
// reaches the size); in exchange the head's memory is bounded by the block
// size itself (docs/performance.md). Append returns an error on a decoded
// (read-only) chunk, and for an entry larger than a block may be.
// (Cutting can fail only if the zstd encoder cannot be built; the entry is
// then not added.)
func (c *Chunk) Append(ts int64, line string, md []labels.Label) (dup bool, err error) {
	if c.readOnly {
		return false, ErrReadOnly
	}
	n := entryBodySize(line, md)
	if n > MaxBlockSize-binary.MaxVarintLen64 {
		return false, fmt.Errorf("chunk: entry of %d bytes does not fit in a block (max %d)", n, MaxBlockSize-binary.MaxVarintLen64)
	}
	h := &c.head
	straggler := h.n > 0 && ts < h.maxT
	if straggler && !h.unordered {
		// The first straggler switches the head to indexed mode, before
		// the duplicate check: a replayed entry may repeat any entry of
		// the head, and the index finds those of its timestamp.
		if err := h.buildIndex(); err != nil {
			return false, err
		}
	}
	// Checked before any cut: a duplicate of an entry in the head is
	// dropped even when this entry would have started a new block.
	if h.hasDuplicate(ts, line, md) {
		return true, nil
	}
	// Where the entry goes in an indexed head: after every entry with a
	// timestamp <= ts (stable for equal timestamps; an append in order).
	pos := len(h.index)
	if straggler {
		pos = sort.Search(pos, func(i int) bool { return h.index[i].ts > ts })
	}
	grow := h.growth(ts, n, pos)
	if h.n > 0 && h.size+grow > c.blockSize {
		if err := c.cut(); err != nil {
			return false, err
		}
		pos, grow = 0, h.growth(ts, n, 0)
	}
	// The arena grows by at most grow: a straggler's timestamp is kept
	// only in the index.
	if cap(h.arena)-len(h.arena) < grow {
		h.arena = c.growArena(h.arena, grow)
	}
	if !h.unordered {
		start := len(h.arena)
		if h.n == 0 {
			h.arena = binary.AppendVarint(h.arena, ts)
		} else {
			h.arena = binary.AppendUvarint(h.arena, uint64(ts)-uint64(h.maxT))
		}
		if h.n == 0 || ts > h.maxT {
			h.runOff = start
		}
	}
	off := len(h.arena)
	h.arena = appendEntryBody(h.arena, line, md)
	if h.unordered {
		h.index = slices.Insert(h.index, pos, entryRef{ts: ts, off: uint32(off), end: uint32(len(h.arena))})
	}
	if h.n == 0 {
		h.minT, h.maxT = ts, ts
	}
	h.n++
	h.size += grow
	h.minT = min(h.minT, ts)
	h.maxT = max(h.maxT, ts)

	c.entries++
	c.minT = min(c.minT, ts)
	c.maxT = max(c.maxT, ts)
	c.size += len(line)
	for _, l := range md {
		c.size += len(l.Name) + len(l.Value)
	}
	return false, nil
}

// growArena returns b with room for n more bytes. It doubles the capacity
// where append would grow a large slice by 1.25x: a head block reaches the
// block size in about 10 copies instead of about 25, and allocates about
// twice its final size on the way instead of four to five times
// (ingester's BenchmarkPartitionPush, same run: 125MB allocated per 200k
// lines instead of 171MB, time unchanged within noise). It never grows past
// the block size, which Append keeps the head within, unless one entry
// alone is larger: the last doubling allocates exactly a block, so a full
// head's arena is the block size, not the block size plus what doubling
// overshoots (with the default 256 KiB, a byte more would cost the heap a
// whole extra 8 KiB page).
//
// Once the head needs half a block or more, it first tries an arena from
// the Pool: Seal gives a sealed chunk's arena back there, so a busy stream
// fills chunk after chunk in one recycled arena instead of growing (and
// zeroing) a new one each time.
func (c *Chunk) growArena(b []byte, n int) []byte {
	need := len(b) + n
	size := max(min(2*cap(b), c.blockSize), need)
	if size >= c.blockSize/2 {
		if a := c.pool.getArena(size, max(size, c.blockSize)); a != nil {
			return append((*a)[:0], b...)
		}
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

func uvarintLen(n int) int { return uvarintLen64(uint64(n)) }

func uvarintLen64(n uint64) int {
	l := 1
	for ; n >= 0x80; n >>= 7 {
		l++
	}
	return l
}

// varintLen is the size of binary.AppendVarint's output for v.
func varintLen(v int64) int {
	u := uint64(v) << 1 // zig-zag, as binary.PutVarint
	if v < 0 {
		u = ^u
	}
	return uvarintLen64(u)
}

// cut compresses the head block into a new part with its CRC, and empties
// the head. An in-order head's arena is the serialised block; an indexed
// one is serialised from its index first.
func (c *Chunk) cut() error {
	h := &c.head
	if h.n == 0 {
		return nil
	}
	raw := h.arena
	if h.unordered {
		rawp := c.pool.getBuf()
		defer c.pool.putBuf(rawp)
		raw = slices.Grow(*rawp, h.size)
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
		entries: h.n,
		minT:    h.minT,
		maxT:    h.maxT,
		offset:  headerSize + c.stored,
		length:  len(part) - crcSize,
		size:    len(raw),
	})
	c.stored += len(part)
	c.partsCap += cap(part)
	c.cutRaw += len(raw)

	// The index goes with the block: the next one may arrive in order.
	h.index, h.unordered, h.n, h.size, h.runOff = nil, false, 0, 0, 0
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
		c.pool.putArena(&a)
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
	n := c.head.size
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
