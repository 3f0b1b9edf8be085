package ingester

import (
	"context"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lokilab/lokilab/internal/kafkatest"
	"github.com/lokilab/lokilab/pkg/ring"
)

// TestRingReadyOnlyOnceHandedOver: a ring-mode ingester whose partitions
// another healthy instance still holds is not ready, although it is
// "caught up" on everything it owns (nothing); once they are handed over
// and replayed, it is. A rolling restart relies on this: it moves on to
// the next ingester when the restarted one is ready.
func TestRingReadyOnlyOnceHandedOver(t *testing.T) {
	h := newHarness(t, 4)
	h.produce("t", "before", 4, 10)

	// A holder: a ring node that owns every partition and is LEAVING, so
	// the ring assigns them all to the ingester while the holder has not
	// let go of them yet — a previous owner still flushing.
	var rc ring.Config
	rc.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	rc.BindPort = 0
	rc.Partitions = h.partitions
	rc.GossipInterval = 20 * time.Millisecond
	rc.PushPullInterval = 500 * time.Millisecond
	rc.HeartbeatPeriod = 100 * time.Millisecond
	rc.HeartbeatTimeout = 5 * time.Second
	rc.LeaveTimeout = time.Second
	holder, err := ring.New(rc, ring.InstanceDesc{ID: "holder", Addr: "holder", Role: "ingester"}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- holder.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	holder.SetState(ring.InstanceLeaving)
	for p := range int32(h.partitions) {
		holder.SetOwner(p, ring.OwnerLeaving)
	}

	m := h.startRingMember("ingester-a", holder.Addr())
	kafkatest.Eventually(t, "ingester-a reporting that it waits for the handover", func() bool {
		err := m.ing.Ready(context.Background())
		return err != nil && strings.Contains(err.Error(), "handed over")
	})
	if o := owned(m)["ingester-a"]; len(o) > 0 {
		t.Fatalf("ingester-a took %v while the holder still owned them", o)
	}
	for p := range int32(h.partitions) {
		holder.RemoveOwner(p)
	}
	kafkatest.Eventually(t, "ingester-a ready", func() bool { return m.ing.Ready(context.Background()) == nil })
	if !coverage(h.partitions, m) {
		t.Fatalf("ingester-a ready owning %v, want all %d partitions", owned(m), h.partitions)
	}
	for _, st := range m.ing.Status() {
		if !st.CaughtUp {
			t.Errorf("ingester-a ready with partition %d not caught up", st.Partition)
		}
	}
}
