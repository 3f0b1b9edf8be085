package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/lokilab/lokilab/pkg/labels"
)

// Segment is a decoded index segment. It is immutable and safe for
// concurrent use. Everything it returns shares its memory: label sets
// returned by its methods, and by Merge, must not be modified.
type Segment struct {
	series []segSeries // sorted by labels; a series' ID is its index
	names  []nameEntry // the label-name table, sorted by name
}

type segSeries struct {
	labels     labels.Labels
	chunks     []ChunkRef // sorted by (From, Through, Checksum)
	minT, maxT int64      // the smallest From and the largest Through
}

// nameEntry is one label name with its values and, for each value, the
// postings list: the sorted IDs of the series that have name=value.
type nameEntry struct {
	name   string
	values []string // sorted
	lists  [][]uint32
}

// Minimum encoded sizes, which bound how many elements a count read from
// the input may claim before anything is allocated for them.
const (
	minChunkSize   = 1 + 1 + 4 + 1 + 1 + 1 // from, through, checksum, entries, sizes
	minSeriesSize  = 8 + 1 + 1 + minChunkSize
	minValueSize   = 1 + 1 + 1 // value ref, count, one ID
	minNameSize    = 1 + 1 + minValueSize
	minLabelSize   = 2
	minSymbolSize  = 1
	sectionOverlay = 4 + 4 // length and CRC around each body
)

// Decode parses and checks a segment. It verifies every section's CRC and
// every structural rule of docs/index-format.md — sorted and unique
// symbols, series, labels, chunks and postings, references in range,
// fingerprints equal to the labels' hash, postings that agree with the
// series — so that whatever it accepts, Encode would write again as the
// same segment. It never panics on bad input and allocates at most about
// 20 times len(b) (2–3 times for real segments; see "Limits" in the
// format document).
func Decode(b []byte) (*Segment, error) {
	if len(b) > MaxSegmentSize {
		return nil, fmt.Errorf("index: segment of %d bytes exceeds the maximum of %d", len(b), MaxSegmentSize)
	}
	if len(b) < headerSize {
		return nil, fmt.Errorf("index: %d bytes are too short for a segment header", len(b))
	}
	if m := binary.BigEndian.Uint32(b); m != magic {
		return nil, fmt.Errorf("index: bad magic %08x: not an index segment", m)
	}
	if v := b[4]; v != FormatVersion {
		return nil, fmt.Errorf("index: unsupported format version %d (this reader knows %d)", v, FormatVersion)
	}
	rest := b[headerSize:]
	var bodies [3][]byte
	for i, name := range [...]string{"symbols", "series", "postings"} {
		var err error
		bodies[i], rest, err = readSection(rest)
		if err != nil {
			return nil, fmt.Errorf("index: %s section: %w", name, err)
		}
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("index: %d unexpected bytes after the last section", len(rest))
	}

	symbols, err := decodeSymbols(bodies[0])
	if err != nil {
		return nil, fmt.Errorf("index: symbols section: %w", err)
	}
	seg := &Segment{}
	refs, err := seg.decodeSeries(bodies[1], symbols)
	if err != nil {
		return nil, fmt.Errorf("index: series section: %w", err)
	}
	if err := seg.decodePostings(bodies[2], symbols, refs); err != nil {
		return nil, fmt.Errorf("index: postings section: %w", err)
	}
	return seg, nil
}

// readSection splits off one section and checks its CRC.
func readSection(b []byte) (body, rest []byte, err error) {
	if len(b) < sectionOverlay {
		return nil, nil, fmt.Errorf("truncated: %d bytes left, a section needs at least %d", len(b), sectionOverlay)
	}
	n := uint64(binary.BigEndian.Uint32(b))
	if n > uint64(len(b)-sectionOverlay) {
		return nil, nil, fmt.Errorf("length %d exceeds the %d bytes left", n, len(b)-sectionOverlay)
	}
	body = b[4 : 4+n]
	stored := binary.BigEndian.Uint32(b[4+n:])
	if sum := crc32c(body); sum != stored {
		return nil, nil, fmt.Errorf("checksum mismatch: stored %08x, computed %08x", stored, sum)
	}
	return body, b[4+n+4:], nil
}

func decodeSymbols(body []byte) ([]string, error) {
	d := newDecbuf(body)
	n := d.count(minSymbolSize)
	// One string holds the bytes of all symbols, and every label name and
	// value of the segment is a substring of it: one allocation instead of
	// one per symbol.
	all := string(body)
	symbols := make([]string, n)
	for i := range symbols {
		l := d.count(1)
		off := d.offset()
		d.skip(l)
		if d.err != nil {
			return nil, fmt.Errorf("symbol %d: %w", i, d.err)
		}
		symbols[i] = all[off : off+l]
		if i > 0 && symbols[i-1] >= symbols[i] {
			return nil, fmt.Errorf("symbol %d (%q) is not after %q: symbols must be sorted and unique", i, symbols[i], symbols[i-1])
		}
	}
	return symbols, d.end()
}

// labelRefs holds the symbol references of every label of the segment, a
// name and a value per label, and where each series' labels start in it; the
// postings are checked against it.
type labelRefs struct {
	refs  []uint32 // name, value, name, value, ...
	start []int    // series i has refs[2*start[i] : 2*start[i+1]]
}

func (r *labelRefs) of(id int) []uint32 { return r.refs[2*r.start[id] : 2*r.start[id+1]] }

func (s *Segment) decodeSeries(body []byte, symbols []string) (*labelRefs, error) {
	d := newDecbuf(body)
	n := d.count(minSeriesSize)
	// The section states its totals up front, so the labels and chunks of
	// all series go into two arrays allocated once at their exact size; a
	// series that would overflow them is an error, never a reallocation.
	nlabels := d.count(minLabelSize)
	nchunks := d.count(minChunkSize)
	if d.err != nil {
		return nil, d.err
	}
	s.series = make([]segSeries, n)
	lrefs := &labelRefs{refs: make([]uint32, 0, 2*nlabels), start: make([]int, n+1)}
	all := make(labels.Labels, 0, nlabels)
	chunks := make([]ChunkRef, 0, nchunks)
	for i := range s.series {
		fp := d.be64()
		nl := d.count(minLabelSize)
		if nl > cap(all)-len(all) {
			return nil, fmt.Errorf("series %d: %d labels, more than the %d the section's total leaves", i, nl, cap(all)-len(all))
		}
		for j := range nl {
			name, value := d.uvarint(), d.uvarint()
			if d.err != nil {
				break
			}
			if name >= uint64(len(symbols)) || value >= uint64(len(symbols)) {
				return nil, fmt.Errorf("series %d: label %d: symbol reference out of range", i, j)
			}
			if j > 0 && uint32(name) <= lrefs.refs[len(lrefs.refs)-2] {
				return nil, fmt.Errorf("series %d: label names are not sorted and unique", i)
			}
			l := labels.Label{Name: symbols[name], Value: symbols[value]}
			if !labels.IsValidName(l.Name) || l.Value == "" {
				return nil, fmt.Errorf("series %d: invalid label %s=%q", i, l.Name, l.Value)
			}
			lrefs.refs = append(lrefs.refs, uint32(name), uint32(value))
			all = append(all, l)
		}
		lrefs.start[i+1] = len(all)

		nc := d.count(minChunkSize)
		if d.err == nil && nc == 0 {
			return nil, fmt.Errorf("series %d: no chunks", i)
		}
		if nc > cap(chunks)-len(chunks) {
			return nil, fmt.Errorf("series %d: %d chunks, more than the %d the section's total leaves", i, nc, cap(chunks)-len(chunks))
		}
		c0 := len(chunks)
		var prev ChunkRef
		for k := range nc {
			c := ChunkRef{Fingerprint: fp}
			if k == 0 {
				c.From = d.varint()
			} else {
				// uint64 arithmetic wraps; a From that went backwards wrapped.
				c.From = int64(uint64(prev.From) + d.uvarint())
			}
			c.Through = int64(uint64(c.From) + d.uvarint())
			c.Checksum = d.be32()
			c.Entries = d.uvarint32()
			c.UncompressedBytes = d.uvarint32()
			c.CompressedBytes = d.uvarint32()
			if d.err != nil {
				break
			}
			if c.Through < c.From || (k > 0 && c.From < prev.From) {
				return nil, fmt.Errorf("series %d: chunk %d: time range overflows", i, k)
			}
			if k > 0 && compareChunks(prev, c) >= 0 {
				return nil, fmt.Errorf("series %d: chunk %d: chunks are not sorted and unique", i, k)
			}
			chunks = append(chunks, c)
			prev = c
		}
		if d.err != nil {
			return nil, fmt.Errorf("series %d: %w", i, d.err)
		}

		ser := &s.series[i]
		ser.labels = all[lrefs.start[i]:len(all):len(all)]
		ser.chunks = chunks[c0:len(chunks):len(chunks)]
		if h := ser.labels.Hash(); h != fp {
			return nil, fmt.Errorf("series %d: fingerprint %016x is not the labels' hash %016x", i, fp, h)
		}
		if i > 0 && compareRefs(lrefs.of(i-1), lrefs.of(i)) >= 0 {
			return nil, fmt.Errorf("series %d: series are not sorted by labels and unique", i)
		}
		ser.minT, ser.maxT = ser.chunks[0].From, ser.chunks[0].Through
		for _, c := range ser.chunks[1:] {
			ser.maxT = max(ser.maxT, c.Through)
		}
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	if len(all) != nlabels || len(chunks) != nchunks {
		return nil, fmt.Errorf("the series hold %d labels and %d chunks, the section's totals say %d and %d", len(all), len(chunks), nlabels, nchunks)
	}
	return lrefs, nil
}

// compareRefs compares two label sets by their symbol references, which
// order like the strings because symbols are sorted.
func compareRefs(a, b []uint32) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}

func (s *Segment) decodePostings(body []byte, symbols []string, lrefs *labelRefs) error {
	d := newDecbuf(body)
	n := d.count(minNameSize)
	if d.err != nil {
		return d.err
	}
	// Every label of every series is in exactly one postings list, so the
	// IDs fit an array sized by the label count, allocated once; a list
	// that would overflow it is an error, which bounds the allocation too.
	nlabels := len(lrefs.refs) / 2
	ids := make([]uint32, 0, nlabels)
	s.names = make([]nameEntry, n)
	prevName := -1
	for i := range s.names {
		name := d.uvarint()
		nv := d.count(minValueSize)
		if d.err != nil {
			return fmt.Errorf("name %d: %w", i, d.err)
		}
		if name >= uint64(len(symbols)) || int(name) <= prevName {
			return fmt.Errorf("name %d: reference out of range or names not sorted and unique", i)
		}
		if nv == 0 {
			return fmt.Errorf("name %q: no values", symbols[name])
		}
		prevName = int(name)
		e := &s.names[i]
		e.name = symbols[name]
		e.values = make([]string, nv)
		e.lists = make([][]uint32, nv)
		prevValue := -1
		for j := range e.values {
			value := d.uvarint()
			nids := d.count(1)
			if d.err != nil {
				return fmt.Errorf("%s: value %d: %w", e.name, j, d.err)
			}
			if value >= uint64(len(symbols)) || int(value) <= prevValue {
				return fmt.Errorf("%s: value %d: reference out of range or values not sorted and unique", e.name, j)
			}
			prevValue = int(value)
			e.values[j] = symbols[value]
			if nids == 0 || nids > cap(ids)-len(ids) {
				return fmt.Errorf("%s=%q: %d series IDs, but %d labels are left to index", e.name, e.values[j], nids, cap(ids)-len(ids))
			}
			start := len(ids)
			id := uint64(0)
			for k := range nids {
				delta := d.uvarint()
				if k > 0 && delta == 0 {
					return fmt.Errorf("%s=%q: series IDs are not sorted and unique", e.name, e.values[j])
				}
				if d.err != nil {
					return fmt.Errorf("%s=%q: series ID %d: %w", e.name, e.values[j], k, d.err)
				}
				// Both bounds: a huge delta could wrap id back into range.
				if delta >= uint64(len(s.series)) || id+delta >= uint64(len(s.series)) {
					return fmt.Errorf("%s=%q: series ID %d: out of range (%d series)", e.name, e.values[j], k, len(s.series))
				}
				id += delta
				if !lrefs.has(int(id), uint32(name), uint32(value)) {
					return fmt.Errorf("%s=%q: lists series %d, which does not have that label", e.name, e.values[j], id)
				}
				ids = append(ids, uint32(id))
			}
			e.lists[j] = ids[start:len(ids):len(ids)]
		}
	}
	if err := d.end(); err != nil {
		return err
	}
	// Each (name, value, ID) was checked to be a label of that series and
	// appears once (names, values and IDs are strictly increasing), so
	// equal counts mean every label is indexed.
	if len(ids) != nlabels {
		return fmt.Errorf("postings index %d labels, the series have %d", len(ids), nlabels)
	}
	return nil
}

// has reports whether series id has the label name=value (symbol refs).
func (r *labelRefs) has(id int, name, value uint32) bool {
	refs := r.of(id)
	i := sort.Search(len(refs)/2, func(i int) bool { return refs[2*i] >= name })
	return i < len(refs)/2 && refs[2*i] == name && refs[2*i+1] == value
}

// decbuf reads the primitives of the format from a section body. The first
// error sticks: later reads return zero values, and callers check err once
// after a group of reads, as in Prometheus' tsdb/encoding.
type decbuf struct {
	b   []byte
	n   int // length of the body, for offsets in errors
	err error
}

func newDecbuf(b []byte) decbuf { return decbuf{b: b, n: len(b)} }

func (d *decbuf) offset() int { return d.n - len(d.b) }

func (d *decbuf) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%s at offset %d", what, d.offset())
	}
}

func (d *decbuf) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("invalid or truncated uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decbuf) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("invalid or truncated varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decbuf) uvarint32() uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.fail("value exceeds 32 bits")
		return 0
	}
	return uint32(v)
}

func (d *decbuf) be32() uint32 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 4 {
		d.fail("truncated uint32")
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decbuf) be64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail("truncated uint64")
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// count reads a uvarint count of elements that take at least minSize bytes
// each, and fails if the rest of the body could not hold them: a count is
// never trusted before it is used to size an allocation or a loop.
func (d *decbuf) count(minSize int) int {
	v := d.uvarint()
	if d.err == nil && v > uint64(len(d.b)/minSize) {
		d.fail(fmt.Sprintf("count %d exceeds what the %d bytes left can hold", v, len(d.b)))
		return 0
	}
	return int(v)
}

func (d *decbuf) skip(n int) {
	if d.err == nil {
		d.b = d.b[n:] // count checked n <= len(d.b)
	}
}

// end fails if bytes are left over: every byte of a section has a meaning.
func (d *decbuf) end() error {
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return errors.New("unexpected bytes after the last element")
	}
	return nil
}
