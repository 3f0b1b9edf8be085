package ingester

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lokilab/lokilab/internal/kafkatest"
	"github.com/lokilab/lokilab/internal/metricstest"
	"github.com/lokilab/lokilab/pkg/ring"
)

// ringMember is an ingester in ring ownership with its own ring node.
type ringMember struct {
	*running
	ring     *ring.Ring
	ringDone chan error
	stopRing context.CancelFunc
}

func (h *harness) startRingMember(id string, join ...string) *ringMember {
	h.t.Helper()
	return h.startRingMemberWith(id, nil, join...)
}

// startRingMemberWith is startRingMember with a chance to change the ring's
// configuration first.
func (h *harness) startRingMemberWith(id string, adjust func(*ring.Config), join ...string) *ringMember {
	h.t.Helper()
	var rc ring.Config
	rc.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	rc.BindPort = 0
	rc.JoinMembers = join
	rc.Partitions = h.partitions
	rc.GossipInterval = 20 * time.Millisecond
	rc.PushPullInterval = 500 * time.Millisecond
	rc.HeartbeatPeriod = 100 * time.Millisecond
	rc.HeartbeatTimeout = time.Second
	rc.LeaveTimeout = time.Second
	if adjust != nil {
		adjust(&rc)
	}
	reg := prometheus.NewRegistry()
	r, err := ring.New(rc, ring.InstanceDesc{ID: id, Addr: id, Role: "ingester"}, reg, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	cfg := h.config(id)
	cfg.Ownership = OwnershipRing
	cfg.StaticPartitions = nil
	cfg.FlushCheckPeriod = 100 * time.Millisecond
	cfg.ChunkIdlePeriod = 200 * time.Millisecond
	ing, err := New(cfg, Deps{Kafka: h.kcfg, Reader: h.rcfg, Bucket: h.store.Bucket, Ring: r, Registerer: reg})
	if err != nil {
		h.t.Fatal(err)
	}
	ringCtx, stopRing := context.WithCancel(context.Background())
	ingCtx, cancel := context.WithCancel(context.Background())
	m := &ringMember{
		running:  &running{ing: ing, reg: reg, cancel: cancel, done: make(chan error, 1)},
		ring:     r,
		ringDone: make(chan error, 1),
		stopRing: stopRing,
	}
	go func() { m.ringDone <- r.Run(ringCtx) }()
	go func() {
		err := ing.Run(ingCtx)
		stopRing() // as in the process: the ring leaves after the handover
		m.done <- err
	}()
	h.t.Cleanup(func() { m.stop(); stopRing(); <-m.ringDone })
	return m
}

// kill makes the member vanish as under kill -9: the ring goes silent
// without leaving, and the ingester stops without flushing or committing.
func (m *ringMember) kill() {
	m.ring.Kill()
	m.ing.cfg.ShutdownFlush = false
	m.stop()
}

func owned(ms ...*ringMember) map[string][]int32 {
	out := make(map[string][]int32)
	for _, m := range ms {
		for _, st := range m.ing.Status() {
			out[m.ing.cfg.InstanceID] = append(out[m.ing.cfg.InstanceID], st.Partition)
		}
	}
	return out
}

// coverage checks that the members own every partition exactly once.
func coverage(partitions int, ms ...*ringMember) bool {
	var all []int32
	for _, ps := range owned(ms...) {
		all = append(all, ps...)
	}
	slices.Sort(all)
	if len(all) != partitions {
		return false
	}
	for i, p := range all {
		if p != int32(i) {
			return false
		}
	}
	return true
}

// TestRingOwnershipMovesWithoutLoss: three ingesters share six partitions
// through the ring under continuous writes. One leaves cleanly (it flushes
// and hands its partitions over), then one dies (it goes silent holding
// unflushed chunks; its partitions move once its heartbeat is stale and the
// new owner replays them). Every line written is stored in the end.
func TestRingOwnershipMovesWithoutLoss(t *testing.T) {
	h := newHarness(t, 6)
	a := h.startRingMember("ingester-a")
	b := h.startRingMember("ingester-b", a.ring.Addr())
	c := h.startRingMember("ingester-c", a.ring.Addr())
	kafkatest.Eventually(t, "three ingesters sharing all partitions", func() bool {
		o := owned(a, b, c)
		return coverage(6, a, b, c) && len(o["ingester-a"]) > 0 && len(o["ingester-b"]) > 0 && len(o["ingester-c"]) > 0
	})
	t.Logf("ownership with three: %v", owned(a, b, c))

	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		batches atomic.Int64
	)
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			h.produce("t", fmt.Sprintf("r%d", i), 6, 10)
			batches.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	})
	waitBatches := func(n int64) {
		target := batches.Load() + n
		kafkatest.Eventually(t, "more writes", func() bool { return batches.Load() >= target })
	}

	waitBatches(20)
	if err := c.stop(); err != nil {
		t.Fatalf("ingester-c did not leave cleanly: %v", err)
	}
	kafkatest.Eventually(t, "a and b owning all partitions after c left", func() bool { return coverage(6, a, b) })
	t.Logf("ownership after ingester-c left: %v", owned(a, b))
	if got := metricstest.Value(t, c.reg, "lokilab_ingester_partitions_released_total", "how", "handover"); got == 0 {
		t.Error("ingester-c released no partition by handover")
	}

	waitBatches(20)
	died := time.Now()
	b.kill()
	kafkatest.Eventually(t, "a owning all partitions after b died", func() bool { return coverage(6, a) })
	t.Logf("ingester-a owns everything %s after ingester-b died (heartbeat timeout 1s)", time.Since(died).Round(10*time.Millisecond))

	waitBatches(20)
	stop.Store(true)
	wg.Wait()
	kafkatest.Eventually(t, "everything consumed", h.consumedAll(a.ing))
	if err := a.ing.flushAll(context.Background(), flushAll, reasonForced); err != nil {
		t.Fatal(err)
	}
	res := h.checkStored("t")
	t.Logf("%d batches written; stored %d entries in %d chunks; %d duplicates from the replay removed at read",
		batches.Load(), len(res.Entries), res.Chunks, res.Duplicates)
}

// TestRingPartitionsMustMatchTheTopic: an ingester whose ring has a
// different partition count from the topic refuses to run, saying which
// flag fixes it, instead of leaving partitions unread.
func TestRingPartitionsMustMatchTheTopic(t *testing.T) {
	h := newHarness(t, 3)
	var rc ring.Config
	rc.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	rc.BindPort = 0
	rc.Partitions = 12
	r, err := ring.New(rc, ring.InstanceDesc{ID: "ingester-x", Role: "ingester"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Kill()
	cfg := h.config("ingester-x")
	cfg.Ownership, cfg.StaticPartitions = OwnershipRing, nil
	ing, err := New(cfg, Deps{Kafka: h.kcfg, Reader: h.rcfg, Bucket: h.store.Bucket, Ring: r})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = ing.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "set -ring.partitions=3") {
		t.Fatalf("Run with 12 ring partitions over a 3-partition topic: %v", err)
	}
}

// TestRingJoinerTakesOnlyItsShare: an ingester that starts (or restarts)
// next to running owners takes only the partitions the ring gives it, and
// only after their owners hand them over — even when its join is slow.
// Before the ingester waited for its ring to join, it saw itself alone, took
// all six partitions while a and b were still consuming them, and gave most
// back once gossip arrived: two owners of the same records in between.
//
// The join is made slow on purpose: c's only join address is a port where
// nothing listens yet; 300 ms later a forwarder to a's gossip port opens
// there, and c's retries reach a through it.
func TestRingJoinerTakesOnlyItsShare(t *testing.T) {
	h := newHarness(t, 6)
	a := h.startRingMember("ingester-a")
	b := h.startRingMember("ingester-b", a.ring.Addr())
	kafkatest.Eventually(t, "two ingesters sharing all partitions", func() bool {
		o := owned(a, b)
		return coverage(6, a, b) && len(o["ingester-a"]) > 0 && len(o["ingester-b"]) > 0
	})
	h.produce("t", "before", 6, 10)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	latePort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	c := h.startRingMemberWith("ingester-c", func(rc *ring.Config) {
		// Long enough that c does not give up waiting for the join.
		rc.HeartbeatTimeout = 10 * time.Second
	}, fmt.Sprintf("127.0.0.1:%d", latePort))

	time.Sleep(300 * time.Millisecond) // c is retrying its join meanwhile
	if o := owned(c)["ingester-c"]; len(o) > 0 {
		t.Errorf("ingester-c owns %v before its ring joined anyone", o)
	}
	// Now open the door: a TCP forwarder to a's gossip port (memberlist's
	// join is one push/pull over TCP; gossip then goes to a directly).
	fwd, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", latePort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fwd.Close() })
	go forward(fwd, a.ring.Addr())

	kafkatest.Eventually(t, "three ingesters sharing all partitions", func() bool {
		o := owned(a, b, c)
		return coverage(6, a, b, c) && len(o["ingester-c"]) > 0
	})
	share := len(owned(c)["ingester-c"])
	acquired := metricstest.Value(t, c.reg, "lokilab_ingester_partitions_acquired_total")
	released := metricstest.Value(t, c.reg, "lokilab_ingester_partitions_released_total", "how", "handover")
	if acquired != float64(share) || released != 0 {
		t.Errorf("ingester-c acquired %v partitions and handed %v back to end with %d: it claimed partitions others owned", acquired, released, share)
	}
}

// forward relays every connection accepted on l to addr until l closes.
func forward(l net.Listener, addr string) {
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			out, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer out.Close()
			go func() { _, _ = io.Copy(out, in) }()
			_, _ = io.Copy(in, out)
		}()
	}
}
