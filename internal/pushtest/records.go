package pushtest

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/pkg/kafka"
)

// CountIDs decodes Kafka records and counts how many times each line ID
// (see LineID) occurs: 1 for every acknowledged line is the write path's
// promise. A record that does not decode, or a line without an ID, fails t.
func CountIDs(t testing.TB, recs []*kgo.Record) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, r := range recs {
		_, s, err := kafka.DecodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range s.Entries {
			id := LineID(e.Line)
			if id == "" {
				t.Fatalf("line without an id in %s/%d@%d: %.80q", r.Topic, r.Partition, r.Offset, e.Line)
			}
			counts[id]++
		}
	}
	return counts
}
