package push

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lokilab/lokilab/pkg/labels"
)

// Field numbers of push.proto.
const (
	fieldRequestStreams = 1

	fieldStreamLabels  = 1
	fieldStreamEntries = 2
	fieldStreamHash    = 3

	fieldEntryTimestamp = 1
	fieldEntryLine      = 2
	fieldEntryMetadata  = 3

	fieldLabelName  = 1
	fieldLabelValue = 2

	fieldTimestampSeconds = 1
	fieldTimestampNanos   = 2
)

// Timestamps are int64 nanoseconds, so a google.protobuf.Timestamp must stay
// within what that can hold (years 1678 to 2262).
const (
	minSeconds = math.MinInt64 / 1_000_000_000
	maxSeconds = math.MaxInt64 / 1_000_000_000
)

// AppendProto appends the PushRequest encoding of req to b.
func AppendProto(b []byte, req *Request) []byte {
	for i := range req.Streams {
		s := &req.Streams[i]
		b = protowire.AppendTag(b, fieldRequestStreams, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(StreamSize(s)))
		b = AppendStream(b, s)
	}
	return b
}

// StreamSize is the length of s's StreamAdapter encoding.
func StreamSize(s *Stream) int {
	n := stringFieldSize(fieldStreamLabels, s.Labels)
	for i := range s.Entries {
		n += messageFieldSize(fieldStreamEntries, EntrySize(&s.Entries[i]))
	}
	return n
}

// EntrySize is the length of e's EntryAdapter encoding.
func EntrySize(e *Entry) int {
	n := messageFieldSize(fieldEntryTimestamp, timestampSize(e.Timestamp))
	n += stringFieldSize(fieldEntryLine, e.Line)
	for _, l := range e.StructuredMetadata {
		n += messageFieldSize(fieldEntryMetadata, labelSize(l))
	}
	return n
}

// AppendStream appends the StreamAdapter encoding of s to b (without a tag or
// length prefix: this is a Kafka record value as it stands).
func AppendStream(b []byte, s *Stream) []byte {
	b = appendStringField(b, fieldStreamLabels, s.Labels)
	for i := range s.Entries {
		b = AppendEntryField(b, &s.Entries[i])
	}
	return b
}

// AppendEntryField appends e as field 2 of a StreamAdapter. Callers that
// build a stream encoding entry by entry (the Kafka record splitter) use it
// with EntryFieldSize.
func AppendEntryField(b []byte, e *Entry) []byte {
	b = protowire.AppendTag(b, fieldStreamEntries, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(EntrySize(e)))
	sec, nsec := splitTimestamp(e.Timestamp)
	b = protowire.AppendTag(b, fieldEntryTimestamp, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(timestampSize(e.Timestamp)))
	if sec != 0 {
		b = protowire.AppendTag(b, fieldTimestampSeconds, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(sec))
	}
	if nsec != 0 {
		b = protowire.AppendTag(b, fieldTimestampNanos, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(nsec))
	}
	b = appendStringField(b, fieldEntryLine, e.Line)
	for _, l := range e.StructuredMetadata {
		b = protowire.AppendTag(b, fieldEntryMetadata, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(labelSize(l)))
		b = appendStringField(b, fieldLabelName, l.Name)
		b = appendStringField(b, fieldLabelValue, l.Value)
	}
	return b
}

// EntryFieldSize is the number of bytes AppendEntryField writes for e.
func EntryFieldSize(e *Entry) int {
	return messageFieldSize(fieldStreamEntries, EntrySize(e))
}

// LabelsFieldSize is the number of bytes the labels field of a stream
// encoding takes.
func LabelsFieldSize(ls string) int { return stringFieldSize(fieldStreamLabels, ls) }

func splitTimestamp(ns int64) (sec int64, nsec int32) {
	sec, rem := ns/1e9, ns%1e9
	if rem < 0 {
		sec, rem = sec-1, rem+1e9
	}
	return sec, int32(rem)
}

func timestampSize(ns int64) int {
	sec, nsec := splitTimestamp(ns)
	n := 0
	if sec != 0 {
		n += protowire.SizeTag(fieldTimestampSeconds) + protowire.SizeVarint(uint64(sec))
	}
	if nsec != 0 {
		n += protowire.SizeTag(fieldTimestampNanos) + protowire.SizeVarint(uint64(nsec))
	}
	return n
}

func labelSize(l labels.Label) int {
	return stringFieldSize(fieldLabelName, l.Name) + stringFieldSize(fieldLabelValue, l.Value)
}

// stringFieldSize follows proto3: an empty string is not written.
func stringFieldSize(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

func messageFieldSize(num protowire.Number, size int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(size)
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// DecodeProto decodes a serialized (uncompressed) PushRequest into dst,
// replacing its streams. The strings in dst alias b: b must not be modified
// afterwards.
func DecodeProto(b []byte, dst *Request) error {
	n, err := countField(b, fieldRequestStreams)
	if err != nil {
		return fmt.Errorf("push request: %w", err)
	}
	if cap(dst.Streams) < n {
		dst.Streams = make([]Stream, 0, n)
	}
	dst.Streams = dst.Streams[:0]
	var alloc labelAlloc
	for len(b) > 0 {
		num, typ, v, rest, err := consumeField(b)
		if err != nil {
			return fmt.Errorf("push request: %w", err)
		}
		b = rest
		if num != fieldRequestStreams {
			continue
		}
		if typ != protowire.BytesType {
			return fmt.Errorf("push request: streams field has wire type %d, want bytes", typ)
		}
		dst.Streams = append(dst.Streams, Stream{})
		if err := decodeStream(v, &dst.Streams[len(dst.Streams)-1], &alloc); err != nil {
			return fmt.Errorf("push request: stream %d: %w", len(dst.Streams)-1, err)
		}
	}
	return nil
}

// DecodeStream decodes a StreamAdapter encoding (a Kafka record value) into
// dst. The strings in dst alias b.
func DecodeStream(b []byte, dst *Stream) error {
	var alloc labelAlloc
	return decodeStream(b, dst, &alloc)
}

func decodeStream(b []byte, dst *Stream, alloc *labelAlloc) error {
	n, err := countField(b, fieldStreamEntries)
	if err != nil {
		return err
	}
	*dst = Stream{Entries: make([]Entry, 0, n)}
	for len(b) > 0 {
		num, typ, v, rest, err := consumeField(b)
		if err != nil {
			return err
		}
		b = rest
		switch num {
		case fieldStreamLabels:
			if typ != protowire.BytesType {
				return fmt.Errorf("labels field has wire type %d, want bytes", typ)
			}
			dst.Labels = aliasString(v)
		case fieldStreamEntries:
			if typ != protowire.BytesType {
				return fmt.Errorf("entries field has wire type %d, want bytes", typ)
			}
			dst.Entries = append(dst.Entries, Entry{})
			if err := decodeEntry(v, &dst.Entries[len(dst.Entries)-1], alloc); err != nil {
				return fmt.Errorf("entry %d: %w", len(dst.Entries)-1, err)
			}
		case fieldStreamHash:
			// Ignored: lokilab computes its own stream hash.
		}
	}
	return nil
}

func decodeEntry(b []byte, e *Entry, alloc *labelAlloc) error {
	// A missing timestamp field means the zero time (Loki's schema makes it
	// non-nullable); validation rejects it as too old rather than this
	// decoder guessing "now".
	for len(b) > 0 {
		num, typ, v, rest, err := consumeField(b)
		if err != nil {
			return err
		}
		b = rest
		switch num {
		case fieldEntryTimestamp:
			if typ != protowire.BytesType {
				return fmt.Errorf("timestamp field has wire type %d, want bytes", typ)
			}
			ts, err := decodeTimestamp(v)
			if err != nil {
				return err
			}
			e.Timestamp = ts
		case fieldEntryLine:
			if typ != protowire.BytesType {
				return fmt.Errorf("line field has wire type %d, want bytes", typ)
			}
			e.Line = aliasString(v)
		case fieldEntryMetadata:
			if typ != protowire.BytesType {
				return fmt.Errorf("structured metadata field has wire type %d, want bytes", typ)
			}
			if e.StructuredMetadata == nil {
				// Size the slice once; most entries carry none or a few.
				nmeta, _ := countField(rest, fieldEntryMetadata)
				e.StructuredMetadata = alloc.make(nmeta + 1)
			}
			l, err := decodeLabelPair(v)
			if err != nil {
				return err
			}
			e.StructuredMetadata = append(e.StructuredMetadata, l)
		}
	}
	return nil
}

func decodeTimestamp(b []byte) (int64, error) {
	var sec, nsec int64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, fmt.Errorf("timestamp: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.VarintType {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return 0, fmt.Errorf("timestamp: %w", protowire.ParseError(m))
			}
			b = b[m:]
			continue
		}
		v, m := protowire.ConsumeVarint(b)
		if m < 0 {
			return 0, fmt.Errorf("timestamp: %w", protowire.ParseError(m))
		}
		b = b[m:]
		switch num {
		case fieldTimestampSeconds:
			sec = int64(v)
		case fieldTimestampNanos:
			nsec = int64(int32(v))
		}
	}
	if nsec < 0 || nsec >= 1e9 {
		return 0, fmt.Errorf("timestamp: nanos %d out of range [0, 1e9)", nsec)
	}
	// sec*1e9 + nsec must fit an int64. splitTimestamp rounds seconds down,
	// so the lowest representable instant has seconds one below
	// MinInt64/1e9 (which rounds toward zero) and a large nanos part.
	switch {
	case sec > maxSeconds || (sec == maxSeconds && nsec > math.MaxInt64%1_000_000_000):
		return 0, fmt.Errorf("timestamp: %d seconds is outside the range of int64 nanoseconds", sec)
	case sec < minSeconds-1 || (sec == minSeconds-1 && nsec < 1_000_000_000+math.MinInt64%1_000_000_000):
		return 0, fmt.Errorf("timestamp: %d seconds is outside the range of int64 nanoseconds", sec)
	case sec == minSeconds-1:
		return (sec+1)*1e9 + (nsec - 1e9), nil // sec*1e9 alone would overflow
	}
	return sec*1e9 + nsec, nil
}

func decodeLabelPair(b []byte) (labels.Label, error) {
	var l labels.Label
	for len(b) > 0 {
		num, typ, v, rest, err := consumeField(b)
		if err != nil {
			return l, fmt.Errorf("structured metadata: %w", err)
		}
		b = rest
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case fieldLabelName:
			l.Name = aliasString(v)
		case fieldLabelValue:
			l.Value = aliasString(v)
		}
	}
	return l, nil
}

// consumeField reads one field. For bytes fields v is the payload; for other
// wire types v is nil and the value is skipped.
func consumeField(b []byte) (num protowire.Number, typ protowire.Type, v, rest []byte, err error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, nil, nil, wireError(n)
	}
	b = b[n:]
	if typ == protowire.BytesType {
		v, n = protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, 0, nil, nil, wireError(n)
		}
		return num, typ, v, b[n:], nil
	}
	n = protowire.ConsumeFieldValue(num, typ, b)
	if n < 0 {
		return 0, 0, nil, nil, wireError(n)
	}
	return num, typ, nil, b[n:], nil
}

// countField counts the occurrences of field num in a message, to size a
// slice once instead of growing it.
func countField(b []byte, num protowire.Number) (int, error) {
	count := 0
	for len(b) > 0 {
		n, _, _, rest, err := consumeField(b)
		if err != nil {
			return 0, err
		}
		if n == num {
			count++
		}
		b = rest
	}
	return count, nil
}

// wireError names a malformed-wire condition; a truncated buffer is
// io.ErrUnexpectedEOF.
func wireError(n int) error { return protowire.ParseError(n) }
