package kafka

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// TraceparentHeader is the record header carrying the W3C trace context of
// the push that wrote the record.
const TraceparentHeader = "traceparent"

// ErrEntryTooLarge is returned when one entry cannot fit in a record even
// on its own.
var ErrEntryTooLarge = errors.New("entry too large for a Kafka record")

// RecordSpec says where a stream's records go and what they carry beside the
// stream.
type RecordSpec struct {
	Tenant    string
	Partition int32
	// Traceparent, if set, is copied into every record's headers.
	Traceparent string
	// MaxValueBytes caps each record's value; the stream is split into as
	// many records as needed, in entry order.
	MaxValueBytes int
}

// EncodeStream appends to dst the records holding stream s (labels already
// canonical, entries in order) and returns dst. See RECORD.md.
//
// Splitting keeps entry order: record i holds a contiguous run of entries,
// and records of one stream go to one partition, so a consumer reading the
// partition in order sees the stream's entries in the order they were
// pushed. Each record repeats the labels, so any one record is meaningful on
// its own.
func EncodeStream(dst []*kgo.Record, spec RecordSpec, s *push.Stream) ([]*kgo.Record, error) {
	base := push.LabelsFieldSize(s.Labels)
	var headers []kgo.RecordHeader
	if spec.Traceparent != "" {
		headers = []kgo.RecordHeader{{Key: TraceparentHeader, Value: []byte(spec.Traceparent)}}
	}
	key := []byte(spec.Tenant)
	emit := func(entries []push.Entry, size int) {
		part := push.Stream{Labels: s.Labels, Entries: entries}
		dst = append(dst, &kgo.Record{
			Key:       key,
			Value:     push.AppendStream(make([]byte, 0, size), &part),
			Headers:   headers,
			Partition: spec.Partition,
		})
	}
	start, size := 0, base
	for i := range s.Entries {
		es := push.EntryFieldSize(&s.Entries[i])
		if base+es > spec.MaxValueBytes {
			return dst, fmt.Errorf("%w: entry %d of stream %s needs %d bytes, the record limit is %d",
				ErrEntryTooLarge, i, s.Labels, base+es, spec.MaxValueBytes)
		}
		if size+es > spec.MaxValueBytes {
			emit(s.Entries[start:i], size)
			start, size = i, base
		}
		size += es
	}
	if start < len(s.Entries) {
		emit(s.Entries[start:], size)
	}
	return dst, nil
}

// DecodeRecord returns the tenant and stream a record holds. The tenant ID
// is validated again: records are read by ingesters that turn tenant IDs
// into object-store paths, and a record may have been written by any Kafka
// client, not only a distributor. The stream's strings alias r.Value.
func DecodeRecord(r *kgo.Record) (string, push.Stream, error) {
	tenantID := string(r.Key)
	if err := tenant.ValidateID(tenantID); err != nil {
		return "", push.Stream{}, fmt.Errorf("record %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	var s push.Stream
	if err := push.DecodeStream(r.Value, &s); err != nil {
		return "", push.Stream{}, fmt.Errorf("record %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	return tenantID, s, nil
}

// Traceparent returns the record's traceparent header, or "".
func Traceparent(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == TraceparentHeader {
			return string(h.Value)
		}
	}
	return ""
}
