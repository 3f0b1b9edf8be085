package index

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/lokilab/lokilab/pkg/labels"
)

func TestDecodeDetectsEveryBitFlip(t *testing.T) {
	b := mustEncode(t, []Series{
		stream(t, `{app="api", env="prod"}`, 100, 199, 300, 399),
		stream(t, `{app="web"}`, 0, 50),
	})
	for i := range b {
		for bit := range 8 {
			c := []byte(string(b))
			c[i] ^= 1 << bit
			if _, err := Decode(c); err == nil {
				t.Fatalf("flipping bit %d of byte %d went unnoticed", bit, i)
			}
		}
	}
}

func TestDecodeDetectsTruncationAndExtension(t *testing.T) {
	b := mustEncode(t, []Series{stream(t, `{app="api"}`, 1, 2), stream(t, `{app="web"}`, 3, 4)})
	for n := range len(b) {
		if _, err := Decode(b[:n]); err == nil {
			t.Fatalf("a segment truncated to %d of %d bytes decoded", n, len(b))
		}
	}
	if _, err := Decode(append(b[:len(b):len(b)], 0)); err == nil || !strings.Contains(err.Error(), "unexpected bytes after the last section") {
		t.Fatalf("a segment with a trailing byte: error %v", err)
	}
}

// Hand-built segments with valid checksums exercise the structural checks
// behind the CRCs: a reader must not trust a checksummed body either.

func uv(vs ...uint64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.AppendUvarint(b, v)
	}
	return b
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// rawSegment frames bodies as sections behind a header.
func rawSegment(version byte, bodies ...[]byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magic)
	b = append(b, version)
	for _, body := range bodies {
		b = appendSection(b, func(b []byte) []byte { return append(b, body...) })
	}
	return b
}

func symbolsBody(syms ...string) []byte {
	b := uv(uint64(len(syms)))
	for _, s := range syms {
		b = append(b, uv(uint64(len(s)))...)
		b = append(b, s...)
	}
	return b
}

// rawChunk encodes a chunk; from is the varint or uvarint delta, as the
// position requires.
func rawChunk(from []byte, throughDelta uint64) []byte {
	return cat(from, uv(throughDelta), be32(7), uv(1, 1, 1))
}

func varint(v int64) []byte { return binary.AppendVarint(nil, v) }

func TestDecodeRejectsMalformedStructure(t *testing.T) {
	// Baseline: symbols "a", "x", "y"; series {a="x"} and {a="y"}, one chunk
	// each; postings a=x → [0], a=y → [1].
	fpX := labels.Labels{{Name: "a", Value: "x"}}.Hash()
	fpY := labels.Labels{{Name: "a", Value: "y"}}.Hash()
	syms := symbolsBody("a", "x", "y")
	serX := cat(be64(fpX), uv(1, 0, 1), uv(1), rawChunk(varint(10), 5))
	serY := cat(be64(fpY), uv(1, 0, 2), uv(1), rawChunk(varint(10), 5))
	series := cat(uv(2, 2, 2), serX, serY) // 2 series, 2 labels, 2 chunks in all
	postings := cat(uv(1), uv(0, 2), uv(1, 1, 0), uv(2, 1, 1))

	if _, err := Decode(rawSegment(FormatVersion, syms, series, postings)); err != nil {
		t.Fatalf("the baseline does not decode: %v", err)
	}

	tests := []struct {
		name    string
		seg     []byte
		wantErr string
	}{
		{"empty input", nil, "too short for a segment header"},
		{"bad magic", append([]byte("LKIY\x01"), rawSegment(FormatVersion, syms, series, postings)[5:]...), "bad magic"},
		{"unknown version", rawSegment(2, syms, series, postings), "unsupported format version 2"},
		{"missing section", rawSegment(FormatVersion, syms, series), "postings section: truncated"},
		{"extra section", rawSegment(FormatVersion, syms, series, postings, nil), "unexpected bytes after the last section"},
		{"section length past the end", cat(rawSegment(FormatVersion, syms, series), be32(1<<31), be32(0)), "postings section: length 2147483648 exceeds"},

		{"symbols unsorted", rawSegment(FormatVersion, symbolsBody("a", "y", "x"), series, postings), "symbols must be sorted and unique"},
		{"symbols duplicated", rawSegment(FormatVersion, symbolsBody("a", "x", "x"), series, postings), "symbols must be sorted and unique"},
		{"symbol count larger than the section", rawSegment(FormatVersion, cat(uv(1000), syms[1:]), series, postings), "count 1000 exceeds"},
		{"symbol longer than the section", rawSegment(FormatVersion, cat(uv(1, 50), []byte("abc")), series, postings), "symbol 0: count 50 exceeds"},
		{"bytes after the symbols", rawSegment(FormatVersion, cat(syms, []byte{0}), series, postings), "symbols section: unexpected bytes"},

		{"series count larger than the section", rawSegment(FormatVersion, syms, cat(uv(1<<40, 1, 1), serX), postings), "count 1099511627776 exceeds"},
		{"symbol reference out of range", rawSegment(FormatVersion, syms, cat(uv(1, 1, 1), be64(fpX), uv(1, 0, 3), uv(1), rawChunk(varint(10), 5)), postings), "symbol reference out of range"},
		{"label names unsorted", rawSegment(FormatVersion, symbolsBody("a", "b", "x"),
			cat(uv(1, 2, 1), be64(labels.Labels{{Name: "b", Value: "x"}, {Name: "a", Value: "x"}}.Hash()), uv(2, 1, 2, 0, 2), uv(1), rawChunk(varint(10), 5)), postings), "label names are not sorted and unique"},
		{"invalid label name", rawSegment(FormatVersion, symbolsBody("-", "x"),
			cat(uv(1, 1, 1), be64(labels.Labels{{Name: "-", Value: "x"}}.Hash()), uv(1, 0, 1), uv(1), rawChunk(varint(10), 5)), postings), `invalid label -="x"`},
		{"empty label value", rawSegment(FormatVersion, symbolsBody("", "a"),
			cat(uv(1, 1, 1), be64(labels.Labels{{Name: "a", Value: ""}}.Hash()), uv(1, 1, 0), uv(1), rawChunk(varint(10), 5)), postings), `invalid label a=""`},
		{"series without chunks", rawSegment(FormatVersion, syms, cat(uv(1, 1, 1), be64(fpX), uv(1, 0, 1), uv(0), rawChunk(varint(10), 5)), postings), "series 0: no chunks"},
		{"fingerprint is not the hash", rawSegment(FormatVersion, syms, cat(uv(1, 1, 1), be64(fpY), uv(1, 0, 1), uv(1), rawChunk(varint(10), 5)), postings), "fingerprint"},
		{"series unsorted", rawSegment(FormatVersion, syms, cat(uv(2, 2, 2), serY, serX), postings), "series are not sorted by labels and unique"},
		{"series duplicated", rawSegment(FormatVersion, syms, cat(uv(2, 2, 2), serX, serX), postings), "series are not sorted by labels and unique"},
		{"chunks duplicated", rawSegment(FormatVersion, syms, cat(uv(1, 1, 2), be64(fpX), uv(1, 0, 1), uv(2), rawChunk(varint(10), 5), rawChunk(uv(0), 5)), postings), "chunks are not sorted and unique"},
		{"chunk through overflows", rawSegment(FormatVersion, syms, cat(uv(1, 1, 1), be64(fpX), uv(1, 0, 1), uv(1), rawChunk(varint(1<<62), 1<<63)), postings), "time range overflows"},
		{"chunk from delta wraps", rawSegment(FormatVersion, syms, cat(uv(1, 1, 2), be64(fpX), uv(1, 0, 1), uv(2), rawChunk(varint(10), 5), rawChunk(uv(1<<64-1), 0)), postings), "time range overflows"},
		{"entries over 32 bits", rawSegment(FormatVersion, syms, cat(uv(1, 1, 1), be64(fpX), uv(1, 0, 1), uv(1), varint(10), uv(5), be32(7), uv(1<<32, 1, 1)), postings), "value exceeds 32 bits"},
		{"truncated chunk", rawSegment(FormatVersion, syms, cat(uv(1, 1, 1), be64(fpX), uv(1, 0, 1), uv(1), varint(10), uv(5), be32(7), uv(1, 1)), postings), "series 0: count 1 exceeds"},
		{"more labels than the total", rawSegment(FormatVersion, syms, cat(uv(2, 1, 2), serX, serY), postings), "series 1: 1 labels, more than the 0 the section's total leaves"},
		{"more chunks than the total", rawSegment(FormatVersion, syms, cat(uv(2, 2, 1), serX, serY), postings), "series 1: 1 chunks, more than the 0 the section's total leaves"},
		{"fewer labels than the total", rawSegment(FormatVersion, syms, cat(uv(2, 3, 2), serX, serY), postings), "the series hold 2 labels and 2 chunks, the section's totals say 3 and 2"},
		{"bytes after the series", rawSegment(FormatVersion, syms, cat(series, []byte{0}), postings), "series section: unexpected bytes"},

		{"postings list a series without the label", rawSegment(FormatVersion, syms, series, cat(uv(1), uv(0, 2), uv(1, 1, 1), uv(2, 1, 0))), `a="x": lists series 1, which does not have that label`},
		{"postings miss a label", rawSegment(FormatVersion, syms, series, cat(uv(1), uv(0, 1), uv(1, 1, 0))), "postings index 1 labels, the series have 2"},
		{"postings list a series twice", rawSegment(FormatVersion, syms, series, cat(uv(1), uv(0, 1), uv(1, 2, 0, 0))), "series IDs are not sorted and unique"},
		{"posting out of range", rawSegment(FormatVersion, syms, series, cat(uv(1), uv(0, 2), uv(1, 1, 5), uv(2, 1, 1))), "out of range (2 series)"},
		{"posting delta wraps into range", rawSegment(FormatVersion, syms, series, cat(uv(1), uv(0, 1), uv(2, 2, 1, 1<<64-1))), "out of range (2 series)"},
		{"more postings than labels", rawSegment(FormatVersion, syms, series, cat(uv(1), uv(0, 1), uv(1, 3, 0, 1, 1))), "3 series IDs, but 2 labels are left"},
		{"postings values unsorted", rawSegment(FormatVersion, syms, series, cat(uv(1), uv(0, 2), uv(2, 1, 1), uv(1, 1, 0))), "values not sorted and unique"},
		{"postings names duplicated", rawSegment(FormatVersion, syms, series, cat(uv(2), uv(0, 1), uv(1, 1, 0), uv(0, 1), uv(2, 1, 1))), "names not sorted and unique"},
		{"postings name without values", rawSegment(FormatVersion, syms, series, cat(uv(1), uv(0, 0), make([]byte, 5))), `name "a": no values`},
		{"bytes after the postings", rawSegment(FormatVersion, syms, series, cat(postings, []byte{0})), "postings section: unexpected bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seg, err := Decode(tt.seg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Decode error = %v, want one containing %q", err, tt.wantErr)
			}
			if seg != nil {
				t.Fatal("a segment came back with the error")
			}
		})
	}
}

func TestDecodeRejectsOversizedInput(t *testing.T) {
	// Only the length is looked at: a large zeroed slice is cheap to make
	// because its pages are never touched.
	b := make([]byte, MaxSegmentSize+1)
	if _, err := Decode(b); err == nil || !strings.Contains(err.Error(), "exceeds the maximum") {
		t.Fatalf("Decode of %d bytes: error %v", len(b), err)
	}
}
