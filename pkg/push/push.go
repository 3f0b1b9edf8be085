// Package push is the push model of Loki's API and its wire codecs.
//
// A push is a list of streams; a stream is a label set and its entries; an
// entry is a nanosecond timestamp, a line and optional structured metadata
// (per-line key/value pairs that are not part of the stream's identity, such
// as a trace ID). Clients send pushes as JSON or as snappy-compressed
// protobuf (see push.proto beside this file for the wire format, which is
// Loki's); the distributor writes each validated stream into Kafka in the
// same protobuf stream encoding, so one decoder serves HTTP and Kafka.
//
// # Memory
//
// The decoders are on the hottest path of the system, so they are written to
// allocate per request, not per line. DecodeProto returns strings that alias
// the buffer it decoded, which must not be modified afterwards. DecodeJSON
// copies every string it keeps into one arena allocated per request (its
// pooled parser's buffer is reused, so nothing may alias it). Either way a
// 1000-line push costs a handful of allocations instead of several thousand.
// The price is that one retained line keeps its whole request's buffer
// alive, which is why the ingester copies lines into its chunks rather than
// keeping the strings.
package push

import (
	"strings"
	"unsafe"

	"github.com/lokilab/lokilab/pkg/labels"
)

// Request is one push: the streams of a PushRequest.
type Request struct {
	Streams []Stream
}

// Stream is a label set and its entries. Labels is the label set as the
// client spelled it ({a="b"}); the distributor parses and canonicalises it.
type Stream struct {
	Labels  string
	Entries []Entry
}

// Entry is one log line.
type Entry struct {
	// Timestamp is Unix time in nanoseconds.
	Timestamp int64
	Line      string
	// StructuredMetadata is optional per-line metadata, in the order sent.
	StructuredMetadata []labels.Label
}

// Size is the entry's size as counted by limits and metrics: the line plus
// the names and values of its structured metadata.
func (e *Entry) Size() int {
	n := len(e.Line)
	for _, l := range e.StructuredMetadata {
		n += len(l.Name) + len(l.Value)
	}
	return n
}

// Clone returns a copy that shares no memory with e: decoders and chunk
// iterators hand out entries whose strings alias buffers they reuse.
func (e *Entry) Clone() Entry {
	c := Entry{Timestamp: e.Timestamp, Line: strings.Clone(e.Line)}
	if len(e.StructuredMetadata) > 0 {
		c.StructuredMetadata = make([]labels.Label, len(e.StructuredMetadata))
		for i, l := range e.StructuredMetadata {
			c.StructuredMetadata[i] = labels.Label{Name: strings.Clone(l.Name), Value: strings.Clone(l.Value)}
		}
	}
	return c
}

// Entries is the number of entries in the request.
func (r *Request) Entries() int {
	n := 0
	for i := range r.Streams {
		n += len(r.Streams[i].Entries)
	}
	return n
}

// labelAlloc hands out small label slices carved from larger blocks, so a
// request with structured metadata on every line costs one allocation per
// block of lines instead of one per line.
type labelAlloc struct{ block []labels.Label }

const labelBlock = 256

// make returns an empty slice with capacity n.
func (a *labelAlloc) make(n int) []labels.Label {
	if n > labelBlock/4 {
		return make([]labels.Label, 0, n)
	}
	if cap(a.block)-len(a.block) < n {
		a.block = make([]labels.Label, 0, labelBlock)
	}
	l := len(a.block)
	a.block = a.block[:l+n]
	// Full slice expression: an append by the caller past n cannot run
	// into the next caller's labels.
	return a.block[l : l : l+n]
}

// aliasString returns a string sharing b's memory. Callers promise b is never
// modified afterwards (see the package doc).
func aliasString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}
