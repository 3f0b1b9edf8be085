package ingester

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/ring"
)

// ringLoop keeps the owned partitions equal to what the ring assigns this
// ingester, reconciling whenever the ring changes (and every second, so
// health timeouts are noticed).
//
// The handover protocol, which is all the ring's ownership is:
//
//   - A partition is taken only when no other healthy instance lists itself
//     as its owner. The new owner registers as JOINING, replays from the
//     committed offset to the end offset it saw when it took the partition,
//     then announces itself ACTIVE.
//   - A partition no longer assigned here is released: the owner marks
//     itself LEAVING, stops consuming, flushes and commits, then removes
//     itself — which is what lets the new owner start, from an offset that
//     leaves nothing to replay.
//   - An owner that dies is not waited for: once its heartbeat is older than
//     the ring's timeout it is not healthy, and the new owner replays from
//     the last commit. Nothing is lost; replayed lines are duplicates the
//     read path removes.
//
// Nothing is reconciled before the ring has joined the cluster. Until its
// first push/pull with a peer, the ring shows this instance alone: every
// partition looks desired here and held by no one, so a restarted ingester
// would take all of them — partitions the survivors are consuming — and
// hand most back a moment later, two owners reading and flushing the same
// records in between. (No line is lost that way, but the duplicate work
// and the offsets committed out of order are exactly what the handover
// protocol exists to prevent.)
//
// The protocol has one window it does not close: ingesters that join at
// the same moment may each take a partition before gossip shows them the
// other's claim. Ownership here is gossip, not consensus; the second owner
// sees the first within a gossip interval and the extra copy costs
// duplicates, never lines.
func (i *Ingester) ringLoop(ctx context.Context) error {
	if err := i.checkRingPartitions(ctx); err != nil {
		return err
	}
	if !i.ring.WaitJoined(ctx) {
		if ctx.Err() != nil {
			return nil
		}
		i.logger.Warn("ring: no peer answered within the heartbeat timeout; owning partitions from this node's view alone")
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		i.reconcile(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-i.ring.Changes():
		case <-t.C:
		}
	}
}

// checkRingPartitions refuses to start when the ring's partitions are not
// the topic's: the ring would assign partitions that do not exist, or leave
// some no ingester ever reads — lines acknowledged into them would wait in
// Kafka forever.
func (i *Ingester) checkRingPartitions(ctx context.Context) error {
	var n int
	err := retry(ctx, i.logger, "reading the topic's partition count", func() error {
		var err error
		n, err = kafka.TopicPartitions(ctx, i.client, i.topic)
		return err
	})
	if err != nil {
		return err
	}
	if r := len(i.ring.Partitions()); r != n {
		return fmt.Errorf("ingester: the ring has %d partitions but topic %q has %d; set -ring.partitions=%d", r, i.topic, n, n)
	}
	return nil
}

func (i *Ingester) reconcile(ctx context.Context) {
	desired := make(map[int32]bool)
	for _, id := range i.ring.DesiredPartitions(i.cfg.InstanceID) {
		desired[id] = true
	}
	for _, id := range i.owned() {
		if !desired[id] {
			if err := i.release(ctx, id, reasonHandover); err != nil {
				i.logger.Warn("handover flush incomplete; the next owner replays", "partition", id, "err", err)
			}
		}
	}
	held := i.heldElsewhere()
	for id := range desired {
		if i.partition(id) != nil || held[id] {
			continue
		}
		i.ring.SetOwner(id, ring.OwnerJoining)
		if err := i.take(ctx, id, true); err != nil {
			i.logger.Warn("taking partition failed; will retry", "partition", id, "err", err)
			i.ring.RemoveOwner(id)
		}
	}
	// Announce caught-up partitions ACTIVE, and this instance ACTIVE once
	// all of them are.
	all := true
	for _, id := range i.owned() {
		p := i.partition(id)
		if p == nil {
			continue
		}
		p.mu.Lock()
		caughtUp := p.caughtUp
		p.mu.Unlock()
		i.mu.Lock()
		announce := caughtUp && !i.activeInRing[id]
		if announce {
			i.activeInRing[id] = true
		}
		i.mu.Unlock()
		if announce {
			i.ring.SetOwner(id, ring.OwnerActive)
		}
		all = all && caughtUp
	}
	if all && !i.stopping.Load() {
		i.ring.SetState(ring.InstanceActive)
	}
	i.owning.Store(true)
}

// heldElsewhere returns the partitions that another healthy instance still
// owns (in any owner state).
func (i *Ingester) heldElsewhere() map[int32]bool {
	now := i.now()
	healthy := make(map[string]bool)
	for _, inst := range i.ring.Instances("ingester") {
		healthy[inst.ID] = i.ring.IsHealthy(inst, now)
	}
	held := make(map[int32]bool)
	for _, pd := range i.ring.Partitions() {
		for owner := range pd.Owners {
			if owner != i.cfg.InstanceID && healthy[owner] {
				held[pd.ID] = true
			}
		}
	}
	return held
}

// groupOpts are the consumer group settings of group ownership: the
// cooperative-sticky balancer (a rebalance revokes only partitions that
// move), rebalances blocked while a poll is processed (so a partition is
// never revoked mid-batch), and no automatic commits — a revoked partition
// is flushed and committed in the revoke callback, before the group lets
// another member take it.
func (i *Ingester) groupOpts() []kgo.Opt {
	opts := []kgo.Opt{
		kgo.ConsumerGroup(i.group),
		kgo.ConsumeTopics(i.topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.BlockRebalanceOnPoll(),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(i.cfg.GroupSessionTimeout),
		kgo.HeartbeatInterval(max(i.cfg.GroupSessionTimeout/6, 100*time.Millisecond)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(func(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
			for _, id := range assigned[i.topic] {
				if err := retry(ctx, i.logger, "take assigned partition", func() error { return i.take(ctx, id, false) }); err != nil {
					return
				}
			}
			i.owning.Store(true)
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
			reason := reasonHandover
			if i.stopping.Load() && !i.cfg.ShutdownFlush {
				reason = ""
			}
			for _, id := range revoked[i.topic] {
				if err := i.release(context.WithoutCancel(ctx), id, reason); err != nil {
					i.logger.Warn("revoked partition not fully flushed; the next owner replays", "partition", id, "err", err)
				}
			}
		}),
		kgo.OnPartitionsLost(func(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
			// Lost (session expired): another member may already own these,
			// and our commits would be refused. Drop without flushing.
			for _, id := range lost[i.topic] {
				_ = i.release(ctx, id, "")
			}
		}),
	}
	if i.cfg.GroupInstanceID != "" {
		opts = append(opts, kgo.InstanceID(i.cfg.GroupInstanceID))
	}
	return opts
}
