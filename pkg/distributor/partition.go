package distributor

import "errors"

// PartitionRing maps a stream's token to the Kafka partition that holds it.
// The partition ring (pkg/ring, gossiped over memberlist) implements it;
// tests use StaticPartitions.
type PartitionRing interface {
	PartitionFor(token uint32) (int32, error)
}

// StaticPartitions spreads tokens over a fixed number of partitions by
// modulo. Every stream keeps its partition for as long as the count is
// unchanged, which is all the ordering a stream needs; what it cannot do is
// change the count without moving most streams, which is what the
// partition ring's tokens are for.
type StaticPartitions int32

// PartitionFor returns token mod n.
func (n StaticPartitions) PartitionFor(token uint32) (int32, error) {
	if n <= 0 {
		return 0, errors.New("no partitions")
	}
	return int32(token % uint32(n)), nil
}

// StreamToken is the stream's position on the ring: a 32-bit FNV-1a hash of
// the tenant ID and the stream's canonical labels, with a separator byte
// that cannot occur in a tenant ID. The tenant is part of the hash so that
// the same labels in two tenants spread over different partitions, and one
// tenant's hot stream does not collide with everyone's.
func StreamToken(tenantID, canonicalLabels string) uint32 {
	const (
		offset32 = 2166136261
		prime32  = 16777619
	)
	h := uint32(offset32)
	for i := 0; i < len(tenantID); i++ {
		h = (h ^ uint32(tenantID[i])) * prime32
	}
	h = (h ^ 0xff) * prime32
	for i := 0; i < len(canonicalLabels); i++ {
		h = (h ^ uint32(canonicalLabels[i])) * prime32
	}
	return h
}
