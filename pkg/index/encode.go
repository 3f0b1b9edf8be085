package index

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"slices"

	"github.com/lokilab/lokilab/pkg/labels"
)

// The segment format; docs/index-format.md describes it byte by byte.
const (
	// FormatVersion is the version byte after the magic. A reader rejects
	// versions it does not know.
	FormatVersion = 1
	// MaxSegmentSize bounds an encoded segment: 256 MiB, about six million
	// chunk refs, the index of several TB of one tenant's logs in one day.
	// Decode rejects larger input before allocating, so a corrupt or hostile
	// object cannot make a reader allocate without bound.
	MaxSegmentSize = 256 << 20

	magic      = 0x4C4B4958 // "LKIX"
	headerSize = 5          // magic, version
)

// crc32c is the section checksum, CRC32 with the Castagnoli polynomial
// (hardware-accelerated on amd64 and arm64). MakeTable returns a table the
// standard library builds once.
func crc32c(b []byte) uint32 {
	return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
}

// Encode builds a segment from series. Series are sorted by labels and
// series with equal labels merged; chunk refs are sorted by (From, Through,
// Checksum) and identical refs removed; series left without chunks are
// dropped. The input is not modified.
//
// Encode rejects series it could not index faithfully: label names that
// are invalid, duplicated or unsorted, empty values (an empty value means
// the label is absent), chunk refs whose Fingerprint is not the labels'
// Hash, and refs with Through before From.
func Encode(series []Series) ([]byte, error) {
	b, err := encode(series)
	if err != nil {
		return nil, fmt.Errorf("index: encode: %w", err)
	}
	return b, nil
}

func encode(series []Series) ([]byte, error) {
	for _, s := range series {
		if err := validateSeries(s); err != nil {
			return nil, err
		}
	}
	series = normalize(series)
	if uint64(len(series)) > math.MaxUint32 {
		return nil, fmt.Errorf("%d series, more than a segment can address", len(series))
	}

	// Symbols: every distinct name and value, sorted, so that comparing two
	// symbol references compares the strings.
	refs := make(map[string]uint32)
	nlabels, nchunks := 0, 0
	for _, s := range series {
		nlabels += len(s.Labels)
		nchunks += len(s.Chunks)
		for _, l := range s.Labels {
			refs[l.Name] = 0
			refs[l.Value] = 0
		}
	}
	symbols := make([]string, 0, len(refs))
	for s := range refs {
		symbols = append(symbols, s)
	}
	slices.Sort(symbols)
	for i, s := range symbols {
		refs[s] = uint32(i)
	}

	b := make([]byte, 0, estimateSize(symbols, series, nlabels))
	b = binary.BigEndian.AppendUint32(b, magic)
	b = append(b, FormatVersion)

	b = appendSection(b, func(b []byte) []byte {
		b = binary.AppendUvarint(b, uint64(len(symbols)))
		for _, s := range symbols {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		return b
	})

	// Series, collecting one posting per label on the way: series IDs are
	// assigned in order, so each postings list comes out sorted.
	postings := make([]posting, 0, nlabels)
	b = appendSection(b, func(b []byte) []byte {
		b = binary.AppendUvarint(b, uint64(len(series)))
		b = binary.AppendUvarint(b, uint64(nlabels))
		b = binary.AppendUvarint(b, uint64(nchunks))
		for id, s := range series {
			b = binary.BigEndian.AppendUint64(b, s.Labels.Hash())
			b = binary.AppendUvarint(b, uint64(len(s.Labels)))
			for _, l := range s.Labels {
				name, value := refs[l.Name], refs[l.Value]
				b = binary.AppendUvarint(b, uint64(name))
				b = binary.AppendUvarint(b, uint64(value))
				postings = append(postings, posting{name, value, uint32(id)})
			}
			b = appendChunks(b, s.Chunks)
		}
		return b
	})

	slices.SortFunc(postings, func(a, b posting) int {
		return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.value, b.value), cmp.Compare(a.id, b.id))
	})
	b = appendSection(b, func(b []byte) []byte { return appendPostings(b, postings) })

	if len(b) > MaxSegmentSize {
		return nil, fmt.Errorf("segment of %d bytes exceeds the maximum of %d", len(b), MaxSegmentSize)
	}
	return b, nil
}

// validateSeries checks what Decode will check, so that Encode never writes
// a segment Decode rejects.
func validateSeries(s Series) error {
	for i, l := range s.Labels {
		switch {
		case !labels.IsValidName(l.Name):
			return fmt.Errorf("series %s: invalid label name %q", s.Labels, l.Name)
		case l.Value == "":
			return fmt.Errorf("series %s: label %q has an empty value", s.Labels, l.Name)
		case i > 0 && s.Labels[i-1].Name >= l.Name:
			return fmt.Errorf("series %s: label names are not sorted and unique", s.Labels)
		}
	}
	fp := s.Labels.Hash()
	for _, c := range s.Chunks {
		if c.Fingerprint != fp {
			return fmt.Errorf("series %s: chunk fingerprint %016x is not the labels' hash %016x", s.Labels, c.Fingerprint, fp)
		}
		if c.Through < c.From {
			return fmt.Errorf("series %s: chunk through %d is before from %d", s.Labels, c.Through, c.From)
		}
	}
	return nil
}

// posting says that series id has the label name=value (symbol refs).
type posting struct {
	name, value, id uint32
}

// appendSection appends a section: a 4-byte big-endian length, the body
// written by body, and the CRC32-Castagnoli of the body.
func appendSection(b []byte, body func([]byte) []byte) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0)
	b = body(b)
	// A body over 4 GiB would be far over MaxSegmentSize; Encode rejects the
	// whole segment after the fact, so the truncated length is never read.
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return binary.BigEndian.AppendUint32(b, crc32c(b[start+4:]))
}

// appendChunks writes a series' chunk refs, sorted by From: each From as the
// difference from the previous one, and Through as the difference from From,
// which keeps both to a few bytes.
func appendChunks(b []byte, chunks []ChunkRef) []byte {
	b = binary.AppendUvarint(b, uint64(len(chunks)))
	for i, c := range chunks {
		if i == 0 {
			b = binary.AppendVarint(b, c.From)
		} else {
			// uint64 arithmetic: exact for any sorted pair of int64s.
			b = binary.AppendUvarint(b, uint64(c.From)-uint64(chunks[i-1].From))
		}
		b = binary.AppendUvarint(b, uint64(c.Through)-uint64(c.From))
		b = binary.BigEndian.AppendUint32(b, c.Checksum)
		b = binary.AppendUvarint(b, uint64(c.Entries))
		b = binary.AppendUvarint(b, uint64(c.UncompressedBytes))
		b = binary.AppendUvarint(b, uint64(c.CompressedBytes))
	}
	return b
}

// appendPostings writes the postings grouped by name, then value: the
// label-name table and, under each name, its values with their series IDs,
// delta-encoded.
func appendPostings(b []byte, ps []posting) []byte {
	names := 0
	for i := range ps {
		if i == 0 || ps[i].name != ps[i-1].name {
			names++
		}
	}
	b = binary.AppendUvarint(b, uint64(names))
	for i := 0; i < len(ps); {
		name := ps[i].name
		end := i
		values := 0
		for end < len(ps) && ps[end].name == name {
			if end == i || ps[end].value != ps[end-1].value {
				values++
			}
			end++
		}
		b = binary.AppendUvarint(b, uint64(name))
		b = binary.AppendUvarint(b, uint64(values))
		for i < end {
			value := ps[i].value
			j := i
			for j < end && ps[j].value == value {
				j++
			}
			b = binary.AppendUvarint(b, uint64(value))
			b = binary.AppendUvarint(b, uint64(j-i))
			prev := uint32(0)
			for k, p := range ps[i:j] {
				if k == 0 {
					b = binary.AppendUvarint(b, uint64(p.id))
				} else {
					b = binary.AppendUvarint(b, uint64(p.id-prev))
				}
				prev = p.id
			}
			i = j
		}
	}
	return b
}

// estimateSize guesses the encoded size, so that Encode grows its buffer
// once or not at all.
func estimateSize(symbols []string, series []Series, nlabels int) int {
	n := headerSize + 3*8
	for _, s := range symbols {
		n += len(s) + 2
	}
	for _, s := range series {
		n += 10 + len(s.Chunks)*20
	}
	return n + nlabels*(4+3)
}
