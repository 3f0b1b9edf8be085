package ring

import (
	"cmp"
	"slices"
)

// partitionTokens returns partition id's n tokens. They depend on the ID
// alone, so every node computes the same ring without exchanging a token,
// and adding partition 12 leaves the tokens of 0–11 where they were: it
// takes a share of every partition's range instead of reshuffling them.
//
// The generator is splitmix64, written out here rather than math/rand,
// because the tokens must be identical on every node and every Go version,
// and the standard library does not promise its streams never change.
func partitionTokens(id int32, n int) []uint32 {
	tokens := make([]uint32, n)
	state := uint64(uint32(id))*0x9e3779b97f4a7c15 ^ 0x6c6f6b696c616221 // "lokilab!"
	for i := range tokens {
		state += 0x9e3779b97f4a7c15
		tokens[i] = uint32(mix64(state) >> 32)
	}
	return tokens
}

// mix64 is splitmix64's finalizer: every input bit affects every output bit.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// tokenTable is the ring the distributors search: the tokens of every
// ACTIVE partition, sorted, with the partition each belongs to. It is
// immutable once built and swapped whole when partition states change, so
// lookups read it without a lock.
type tokenTable struct {
	tokens     []uint32
	partitions []int32 // partitions[i] owns tokens[i]
}

func buildTable(active []int32, perPartition int) *tokenTable {
	type entry struct {
		token     uint32
		partition int32
	}
	entries := make([]entry, 0, len(active)*perPartition)
	for _, id := range active {
		for _, t := range partitionTokens(id, perPartition) {
			entries = append(entries, entry{t, id})
		}
	}
	// Two partitions may draw the same token (rarely, with 2^32 values);
	// ordering by partition too keeps the winner the same on every node.
	slices.SortFunc(entries, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.token, b.token), cmp.Compare(a.partition, b.partition))
	})
	t := &tokenTable{tokens: make([]uint32, len(entries)), partitions: make([]int32, len(entries))}
	for i, e := range entries {
		t.tokens[i], t.partitions[i] = e.token, e.partition
	}
	return t
}

// lookup returns the partition of the first token at or after token,
// wrapping around past the largest. It does not allocate.
func (t *tokenTable) lookup(token uint32) (int32, bool) {
	if len(t.tokens) == 0 {
		return 0, false
	}
	i, _ := slices.BinarySearch(t.tokens, token)
	if i == len(t.tokens) {
		i = 0
	}
	return t.partitions[i], true
}

// AssignPartitions gives each partition to one of instanceIDs by
// rendezvous (highest random weight) hashing: every instance draws a
// pseudo-random weight for every partition from the pair alone, and the
// highest draw wins. Every node that evaluates it over the same inputs gets
// the same answer, with no coordination. When an instance joins it wins
// about 1/n of the partitions, each from whoever held it; when one goes,
// only its partitions move, each to the runner-up. It returns an empty map
// when there are no instances.
//
// The price of needing no coordination is balance: the assignment is as
// uneven as n independent draws, so with 12 partitions and 3 ingesters one
// of them often gets 5 or 6. Loki sidesteps this by mapping ingester N to
// partition N by name; rendezvous keeps the lab free to start any number of
// ingesters under any names.
func AssignPartitions(partitions []int32, instanceIDs []string) map[int32]string {
	out := make(map[int32]string, len(partitions))
	if len(instanceIDs) == 0 {
		return out
	}
	hashes := make([]uint64, len(instanceIDs))
	for i, id := range instanceIDs {
		hashes[i] = fnv64(id)
	}
	for _, p := range partitions {
		best, bestWeight := -1, uint64(0)
		for i, id := range instanceIDs {
			w := mix64(hashes[i] ^ uint64(uint32(p))*0x9e3779b97f4a7c15)
			if best < 0 || w > bestWeight || (w == bestWeight && id < instanceIDs[best]) {
				best, bestWeight = i, w
			}
		}
		out[p] = instanceIDs[best]
	}
	return out
}

func fnv64(s string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * prime64
	}
	return h
}
