package ingester

import "fmt"

// waitingForHandover is the ring-ownership half of Ready: the partitions
// the ring assigns to this ingester that it has not taken yet, because
// another healthy instance still holds them (it is flushing and committing
// them before it lets go; see ringLoop).
//
// Why Ready needs it: being caught up on the partitions it owns is not
// enough. An ingester that has just (re)joined owns nothing at first —
// everything it is assigned is still being handed over by the others — so
// "no partition behind" would hold trivially and /ready would answer 200
// before the ingester consumes a single record. A rolling restart that
// waits for /ready before stopping the next ingester must not move on
// then: ready means it holds its whole share and has replayed it.
func (i *Ingester) waitingForHandover() error {
	if i.cfg.Ownership != OwnershipRing || i.ring == nil {
		return nil
	}
	var waiting []int32
	for _, id := range i.ring.DesiredPartitions(i.cfg.InstanceID) {
		if i.partition(id) == nil {
			waiting = append(waiting, id)
		}
	}
	if len(waiting) > 0 {
		return fmt.Errorf("ingester waiting for partitions %v to be handed over to it", waiting)
	}
	return nil
}
