package ingester

import (
	"time"

	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/index"
	"github.com/lokilab/lokilab/pkg/labels"
)

// Flush reasons, the reason label of loki_ingester_chunks_flushed_total.
// Loki's names where Loki has the reason.
const (
	reasonFull       = "full"
	reasonIdle       = "idle"
	reasonMaxAge     = "max_age"
	reasonForced     = "forced"   // /flush
	reasonShutdown   = "shutdown" // clean stop with flush_on_shutdown
	reasonHandover   = "handover" // the partition moves to another ingester
	reasonMemory     = "memory"   // over max_memory_chunk_bytes
	reasonOutOfOrder = "out_of_order_window"
)

// stream is one tenant's stream within one partition: the chunk being
// appended (head) and the chunks cut from it that wait to be flushed.
//
// Every chunk remembers the Kafka offset of the first record that put an
// entry in it. The partition's committable offset is the smallest of those
// over all streams: everything before it is in object storage, everything
// from it on can be replayed. That one number is the whole of the
// "offsets follow durability" invariant.
type stream struct {
	tenant string
	labels labels.Labels
	lstr   string // canonical labels, owned (not aliasing a record)
	fp     uint64

	head *openChunk
	// sealed are cut chunks in cut order, waiting for (or retrying) their
	// flush.
	sealed []*sealedChunk

	lastAppend time.Time
}

type openChunk struct {
	c           *chunk.Chunk
	firstOffset int64
	created     time.Time
	memBytes    int // what this chunk is charged in the memory account
}

type sealedChunk struct {
	c           *chunk.Chunk
	firstOffset int64
	reason      string
	memBytes    int
	created     time.Time

	// ref is filled by each upload attempt (the same every time: a sealed
	// chunk encodes to the same bytes).
	ref index.ChunkRef
	// uploaded is set once the object is in the store; the chunk is durable
	// only once an index segment pointing at it is written too.
	uploaded bool
	// durable is set once the index segment is written too.
	durable  bool
	attempts int
	retryAt  time.Time
}

// oldestOffset is the first offset whose data this stream still holds only
// in memory, or -1.
func (s *stream) oldestOffset() int64 {
	o := int64(-1)
	if s.head != nil {
		o = s.head.firstOffset
	}
	for _, sc := range s.sealed {
		if o < 0 || sc.firstOffset < o {
			o = sc.firstOffset
		}
	}
	return o
}

// seal cuts the head chunk for flushing.
func (s *stream) seal(reason string) *sealedChunk {
	h := s.head
	s.head = nil
	sc := &sealedChunk{c: h.c, firstOffset: h.firstOffset, reason: reason, memBytes: h.memBytes, created: h.created}
	s.sealed = append(s.sealed, sc)
	return sc
}

func (s *stream) empty() bool { return s.head == nil && len(s.sealed) == 0 }
