package chunk

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"unsafe"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
)

// Direction is the order in which an iterator returns entries.
type Direction uint8

// The directions, as in Loki's query API.
const (
	Forward  Direction = iota // oldest first
	Backward                  // newest first
)

// String returns "forward" or "backward", as Loki's API spells them.
func (d Direction) String() string {
	if d == Backward {
		return "backward"
	}
	return "forward"
}

// Iterator walks a chunk's entries in time order. The usual loop:
//
//	it := c.Iterator(from, through, chunk.Forward)
//	defer it.Close()
//	for it.Next() {
//		e := it.At()
//		...
//	}
//	if err := it.Err(); err != nil { ... }
type Iterator interface {
	// Next advances to the next entry and reports whether there is one.
	// It returns false at the end and on error.
	Next() bool
	// At returns the current entry. Its strings may alias internal
	// buffers: they are valid until the next Next call; callers copy what
	// they keep.
	At() push.Entry
	// Err returns the error that stopped the iteration, if any. Damaged
	// blocks are reported here (wrapping ErrCorrupt), when reached.
	Err() error
	// Close releases the iterator's buffers. It is safe to call twice.
	Close() error
}

// Iterator returns the entries with from <= ts < through, oldest first for
// Forward and newest first for Backward. Entries with equal timestamps come
// in the order they were appended for Forward, and in reverse for Backward:
// Backward is exactly Forward reversed.
//
// Each block is sorted, but blocks (and the head) may overlap in time when
// entries arrived out of order, so the iterator merges them: a k-way merge
// over a heap of sources, one per block whose time range overlaps the query
// and one for the head. A block is decompressed only when the merge reaches
// its first (last, backward) timestamp, so non-overlapping blocks are
// decompressed one at a time, into one reused buffer.
//
// The head block's entries are snapshotted when Iterator is called; see the
// package doc for the locking this needs while the chunk is appended to.
func (c *Chunk) Iterator(from, through int64, dir Direction) Iterator {
	return c.FilteredIterator(from, through, dir, nil, nil)
}

// Skipped counts the blocks a FilteredIterator skipped and the entries it
// therefore never returned, for callers that report what a query
// processed: a skipped block was still decompressed and searched, and its
// lines were rejected by the caller's filter as surely as if each had been
// handed to it, so a caller's "lines processed" should include them.
type Skipped struct {
	Blocks  int // blocks mayMatch rejected
	Entries int // their entries with from <= ts < through
	// LineBytes is those entries' line bytes (not their metadata), as a
	// caller counting each returned entry's len(Line) would have counted.
	LineBytes int64
}

// FilteredIterator is Iterator for a caller that drops every line lacking
// some bytes anyway (a query's `|= "text"` filters): mayMatch sees each
// block's decompressed bytes once, and a block it rejects is skipped
// without its entries being returned. mayMatch must only reject a block
// that holds no entry the caller wants, e.g. because a substring every
// wanted line contains occurs nowhere in it; the caller still filters the
// lines of the blocks it accepts (a match may straddle two entries' bytes).
// A rare substring then costs one memchr-speed scan per block instead of a
// parse, a decode and a search per line. The head block is never skipped.
// A nil mayMatch is Iterator.
//
// If skipped is not nil, each skipped block is added to it, with its
// entries in the time range and their line bytes. Counting walks the
// block's entry framing once (countBlock: a few varints per entry, none of
// the line bytes read), which also checks the block as iterating it would
// have: a damaged block is reported by Err whether skipped or not. With a
// nil skipped a rejected block is not walked at all, and damage inside it
// goes unnoticed (its CRC was still checked by Decode); the ingester, which
// reads blocks it wrote itself and reports no scan statistics, does that.
func (c *Chunk) FilteredIterator(from, through int64, dir Direction, mayMatch func(block []byte) bool, skipped *Skipped) Iterator {
	it := &iterator{
		mayMatch: mayMatch,
		skipped:  skipped,
		enc:      c.enc,
		pool:     c.pool,
		data:     c.data[:len(c.data):len(c.data)],
		parts:    c.parts[:len(c.parts):len(c.parts)],
		from:     from,
		through:  through,
		dir:      dir,
	}
	if from >= through || c.entries == 0 {
		return it
	}
	n := 0
	for i := range c.blocks {
		if c.blocks[i].overlaps(from, through) {
			n++
		}
	}
	it.sources = make([]source, 0, n+1)
	for i, bm := range c.blocks {
		if bm.overlaps(from, through) {
			it.sources = append(it.sources, source{rank: i, bm: bm})
		}
	}
	if h := &c.head; h.n > 0 {
		arena := h.arena[:len(h.arena):len(h.arena)]
		switch {
		case h.unordered:
			// Indexed: snapshot the refs in the range; they point into
			// the arena's bytes, which never change.
			lo, hi := searchRange(h.index, from, through)
			if lo < hi {
				h.shared.Store(true)
				s := source{rank: len(c.blocks), head: true, opened: true, buf: arena, refs: slices.Clone(h.index[lo:hi])}
				s.lo, s.hi = 0, len(s.refs)
				it.sources = append(it.sources, s)
			}
		case h.maxT >= from && h.minT < through:
			// In order, the arena is a serialised block: the head joins
			// the merge as a block already decompressed, parsed when the
			// merge reaches it, outside the caller's lock. Bytes below
			// len(arena) are never written again (shared stops the next
			// cut from reusing them), so the view stays valid while
			// Append adds entries after it.
			h.shared.Store(true)
			it.sources = append(it.sources, source{rank: len(c.blocks), head: true, bm: h.meta(), buf: arena})
		}
	}
	it.heap = make([]*source, len(it.sources))
	for i := range it.sources {
		s := &it.sources[i]
		if s.opened {
			s.start(dir)
		} else if dir == Forward {
			// An unopened block stands in the heap at the bound where
			// its entries start, so that it is opened just in time.
			s.key = s.bm.minT
		} else {
			s.key = s.bm.maxT
		}
		it.heap[i] = s
	}
	for i := len(it.heap)/2 - 1; i >= 0; i-- {
		it.down(i)
	}
	return it
}

func (bm *blockMeta) overlaps(from, through int64) bool {
	return bm.maxT >= from && bm.minT < through
}

// searchRange returns the refs with from <= ts < through as refs[lo:hi].
func searchRange(refs []entryRef, from, through int64) (lo, hi int) {
	lo = sort.Search(len(refs), func(i int) bool { return refs[i].ts >= from })
	hi = lo + sort.Search(len(refs)-lo, func(i int) bool { return refs[lo+i].ts >= through })
	return lo, hi
}

// source is one sorted run of entries in the merge: a cut block or the
// head's snapshot.
type source struct {
	// rank orders sources by append time: a block's index, and the head
	// after every block. It breaks ties between equal timestamps.
	rank int
	// head marks the head block's source: an in-order head starts
	// unopened with buf set (open only parses it), an indexed one opened.
	head   bool
	bm     blockMeta
	opened bool
	// key is the timestamp the heap orders by: the current entry's, or
	// for an unopened block the bound at which its entries start.
	key int64

	buf     []byte     // entry bodies: decompressed block, stored block or head arena
	scratch *[]byte    // owned decompression buffer, reused by later blocks
	refs    []entryRef // entries of buf, sorted by time
	i       int        // current entry
	lo, hi  int        // refs[lo:hi] are inside the query's time range
}

// start positions the source at its first entry in direction dir.
func (s *source) start(dir Direction) {
	if dir == Forward {
		s.i = s.lo
	} else {
		s.i = s.hi - 1
	}
	s.key = s.refs[s.i].ts
}

type iterator struct {
	enc           Encoding
	pool          *Pool
	data          []byte
	parts         [][]byte // a chunk being built keeps its blocks here
	mayMatch      func(block []byte) bool
	skipped       *Skipped
	from, through int64
	dir           Direction

	sources []source
	heap    []*source
	// cur is the source of the entry At returns; it is heap[0] and is
	// advanced by the next call to Next.
	cur *source
	// Buffers of exhausted blocks, for the next block to open.
	spareBufs []*[]byte
	spareRefs [][]entryRef

	entry push.Entry
	md    []labels.Label
	err   error
}

func (it *iterator) Next() bool {
	if it.err != nil {
		return false
	}
	if s := it.cur; s != nil {
		it.cur = nil
		if it.dir == Forward {
			s.i++
		} else {
			s.i--
		}
		if s.i >= s.lo && s.i < s.hi {
			s.key = s.refs[s.i].ts
			it.down(0)
		} else {
			it.pop()
			it.release(s)
		}
	}
	for len(it.heap) > 0 {
		s := it.heap[0]
		if !s.opened {
			if err := it.open(s); err != nil {
				it.err = fmt.Errorf("chunk: %w: block %d: %v", ErrCorrupt, s.rank, err)
				return false
			}
			if s.lo == s.hi {
				it.pop()
				it.release(s)
				continue
			}
			s.start(it.dir)
			it.down(0)
			continue
		}
		it.cur = s
		it.decode(s.buf, s.refs[s.i])
		return true
	}
	return false
}

// open decompresses and parses a block, reusing a spare buffer.
func (it *iterator) open(s *source) error {
	s.opened = true
	if n := len(it.spareRefs); n > 0 {
		s.refs, it.spareRefs = it.spareRefs[n-1][:0], it.spareRefs[:n-1]
	}
	if s.head {
		// An in-order head block: already serialised, never skipped.
		return it.parse(s)
	}
	var stored []byte
	if s.rank < len(it.parts) {
		stored = it.parts[s.rank][:s.bm.length]
	} else {
		stored = it.data[s.bm.offset : s.bm.offset+s.bm.length]
	}
	if it.enc == EncodingNone {
		if len(stored) != s.bm.size {
			return fmt.Errorf("stored %d bytes, meta says %d", len(stored), s.bm.size)
		}
		s.buf = stored // no copy: entries alias the chunk's bytes
	} else {
		if n := len(it.spareBufs); n > 0 {
			s.scratch, it.spareBufs = it.spareBufs[n-1], it.spareBufs[:n-1]
		} else {
			s.scratch = it.pool.getBuf()
		}
		raw, err := it.pool.decompress(it.enc, *s.scratch, stored, s.bm.size)
		if err != nil {
			return err
		}
		*s.scratch = raw // keep the grown buffer for the next block
		s.buf = raw
	}
	if it.mayMatch != nil && !it.mayMatch(s.buf) {
		if it.skipped != nil {
			n, err := countBlock(s.buf, &s.bm, it.from, it.through)
			if err != nil {
				return err
			}
			it.skipped.Blocks++
			it.skipped.Entries += n.entries
			it.skipped.LineBytes += n.lineBytes
		}
		s.lo, s.hi = 0, 0 // nothing wanted here: Next drops the block
		return nil
	}
	return it.parse(s)
}

// parse indexes an opened block's entries and finds those in the range.
func (it *iterator) parse(s *source) error {
	// Decode checked that entries fits in the block's size (and the head
	// counts its own), so this allocation is bounded; sizing it once
	// saves parseBlock the copies of growing it entry by entry.
	if cap(s.refs) < s.bm.entries {
		s.refs = make([]entryRef, 0, s.bm.entries)
	}
	var err error
	if s.refs, err = parseBlock(s.buf, &s.bm, s.refs); err != nil {
		return err
	}
	s.lo, s.hi = searchRange(s.refs, it.from, it.through)
	return nil
}

// release hands an exhausted block's buffers to the blocks still to come.
func (it *iterator) release(s *source) {
	// The head's buf is the chunk's arena and its scratch nil; its refs,
	// like a block's, are the iterator's own.
	if s.scratch != nil {
		it.spareBufs = append(it.spareBufs, s.scratch)
	}
	if s.refs != nil {
		it.spareRefs = append(it.spareRefs, s.refs)
	}
	s.scratch, s.refs, s.buf = nil, nil, nil
}

// decode sets it.entry to the entry at ref in buf. The bytes were checked by
// parseBlock (or written by Append), so decoding cannot fail.
func (it *iterator) decode(buf []byte, ref entryRef) {
	b := buf[ref.off:ref.end]
	next := func() []byte {
		n, l := binary.Uvarint(b)
		v := b[l : l+int(n)]
		b = b[l+int(n):]
		return v
	}
	line := next()
	nmd, l := binary.Uvarint(b)
	b = b[l:]
	it.md = it.md[:0]
	for range nmd {
		name := next()
		it.md = append(it.md, labels.Label{Name: aliasString(name), Value: aliasString(next())})
	}
	it.entry = push.Entry{Timestamp: ref.ts, Line: aliasString(line)}
	if len(it.md) > 0 {
		it.entry.StructuredMetadata = it.md
	}
}

func (it *iterator) At() push.Entry { return it.entry }

func (it *iterator) Err() error { return it.err }

func (it *iterator) Close() error {
	for _, s := range it.heap {
		it.release(s)
	}
	for _, b := range it.spareBufs {
		it.pool.putBuf(b)
	}
	it.heap, it.sources, it.spareBufs, it.spareRefs, it.cur = nil, nil, nil, nil, nil
	it.entry = push.Entry{}
	return nil
}

// before reports whether a's current entry comes before b's in the
// iterator's direction: by timestamp, then by append order (rank).
func (it *iterator) before(a, b *source) bool {
	if a.key != b.key {
		return (a.key < b.key) == (it.dir == Forward)
	}
	return (a.rank < b.rank) == (it.dir == Forward)
}

// down restores the heap order below i after heap[i]'s key changed.
func (it *iterator) down(i int) {
	h := it.heap
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && it.before(h[r], h[l]) {
			m = r
		}
		if !it.before(h[m], h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// pop removes heap[0].
func (it *iterator) pop() {
	n := len(it.heap) - 1
	it.heap[0] = it.heap[n]
	it.heap[n] = nil
	it.heap = it.heap[:n]
	it.down(0)
}

// aliasString returns a string sharing b's memory, saving a copy per line;
// the Iterator contract makes it valid only until the next Next.
func aliasString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}
