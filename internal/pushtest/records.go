package pushtest

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/pkg/kafka"
)

// CountIDs decodes Kafka records and counts how many times each line ID
// (see LineID) occurs: 1 for every acknowledged line is the write path's
// promise.
func CountIDs(recs []*kgo.Record) (map[string]int, error) {
	counts := map[string]int{}
	for _, r := range recs {
		_, s, err := kafka.DecodeRecord(r)
		if err != nil {
			return nil, err
		}
		for _, e := range s.Entries {
			id := LineID(e.Line)
			if id == "" {
				return nil, fmt.Errorf("line without an id in %s/%d@%d: %.80q", r.Topic, r.Partition, r.Offset, e.Line)
			}
			counts[id]++
		}
	}
	return counts, nil
}
