package ring_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/lokilab/lokilab/internal/metricstest"
	"github.com/lokilab/lokilab/pkg/distributor"
	"github.com/lokilab/lokilab/pkg/ring"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// Memberlist's goroutines end with Shutdown, which Run and Kill call, with
// one exception: Shutdown does not interrupt a failure-detector probe in
// flight. Its goroutine keeps waiting for the ack (and for the TCP
// fallback ping it started) until the probe's deadline, up to a probe
// interval (1s) after Shutdown, longer than goleak waits. Those two frames
// are ignored; the rest of a memberlist that was never shut down (its
// listeners, its gossip and push/pull tickers) would still be reported.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
		goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).sendPingAndWaitForAck"),
	)
}

// The ring is what the distributor and the rate limiter were waiting for.
var (
	_ distributor.PartitionRing = (*ring.Ring)(nil)
	_ tenant.DistributorCounter = (*ring.Ring)(nil)
)

// testConfig is the default configuration on a free loopback port, with
// timings shrunk so that a test sees joins, heartbeats and timeouts within
// a second or two.
func testConfig() ring.Config {
	var cfg ring.Config
	cfg.RegisterFlags(flag.NewFlagSet("test", flag.PanicOnError))
	cfg.BindPort = 0
	cfg.GossipInterval = 20 * time.Millisecond
	cfg.PushPullInterval = time.Second
	cfg.HeartbeatPeriod = 50 * time.Millisecond
	cfg.HeartbeatTimeout = 500 * time.Millisecond
	cfg.LeaveTimeout = 2 * time.Second
	return cfg
}

// testLogger is silent unless RING_TEST_LOG is set (to debug, info, warn
// or error): a cluster under test logs every probe and leave.
func testLogger() *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv("RING_TEST_LOG"))); err != nil || os.Getenv("RING_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// node is one ring of a test cluster.
type node struct {
	*ring.Ring
	reg     *prometheus.Registry
	cancel  context.CancelFunc
	stopped chan struct{} // closed when Run has returned runErr
	runErr  error
}

// stop ends the node's Run as a shutdown would and returns its result.
func (n *node) stop() error {
	n.cancel()
	<-n.stopped
	return n.runErr
}

// startCluster starts one node per role, ID "<role>-<index>", all set
// ACTIVE before they run; the first is the seed the others join through.
// The nodes stop when the test ends.
func startCluster(tb testing.TB, cfg ring.Config, roles ...string) []*node {
	tb.Helper()
	nodes, stop := newCluster(tb, cfg, roles...)
	tb.Cleanup(stop)
	return nodes
}

// newCluster is startCluster with the stopping left to the caller.
func newCluster(tb testing.TB, cfg ring.Config, roles ...string) (nodes []*node, stop func()) {
	tb.Helper()
	for i, role := range roles {
		c := cfg
		if i > 0 {
			c.JoinMembers = []string{nodes[0].Addr()}
		}
		reg := prometheus.NewRegistry()
		self := ring.InstanceDesc{ID: fmt.Sprintf("%s-%d", role, i), Role: role, Addr: fmt.Sprintf("127.0.0.1:%d", 3100+i), Zone: "zone-a"}
		r, err := ring.New(c, self, reg, testLogger())
		if err != nil {
			for _, n := range nodes {
				n.Kill()
			}
			tb.Fatalf("New %s: %v", self.ID, err)
		}
		r.SetState(ring.InstanceActive)
		ctx, cancel := context.WithCancel(context.Background())
		n := &node{Ring: r, reg: reg, cancel: cancel, stopped: make(chan struct{})}
		go func() {
			n.runErr = r.Run(ctx)
			close(n.stopped)
		}()
		nodes = append(nodes, n)
	}
	return nodes, func() {
		// Kill rather than leave: the cluster is going away as a whole,
		// and no one is left to hear the goodbyes.
		for _, n := range nodes {
			n.Kill()
			n.cancel()
			<-n.stopped
		}
	}
}

// eventually polls cond until it holds and returns how long that took,
// failing the test after a deadline generous enough for a loaded machine
// under -race. It asserts nothing about time.
func eventually(tb testing.TB, what string, cond func() bool) time.Duration {
	tb.Helper()
	const deadline = 20 * time.Second
	start := time.Now()
	for !cond() {
		if time.Since(start) > deadline {
			tb.Fatalf("still not %s after %s", what, deadline)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// sees reports whether n sees exactly the instances ids, all healthy and in
// state.
func sees(n *node, state ring.InstanceState, ids ...string) bool {
	in := n.HealthyInstances("")
	if len(in) != len(ids) {
		return false
	}
	for i, d := range in {
		if d.ID != ids[i] || d.State != state {
			return false
		}
	}
	return true
}

func ids(nodes []*node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Self().ID)
	}
	slices.Sort(out)
	return out
}

func TestClusterConverges(t *testing.T) {
	nodes := startCluster(t, testConfig(), ring.RoleDistributor, ring.RoleDistributor, ring.RoleIngester, ring.RoleIngester, ring.RoleQuerier)
	all := ids(nodes)
	took := eventually(t, "converged on 5 ACTIVE instances", func() bool {
		for _, n := range nodes {
			if !sees(n, ring.InstanceActive, all...) {
				return false
			}
		}
		return true
	})
	t.Logf("5 nodes joined through one seed and converged in %s", took)

	for _, n := range nodes {
		if got := n.HealthyDistributors(); got != 2 {
			t.Errorf("%s: HealthyDistributors = %d, want 2", n.Self().ID, got)
		}
		if got := len(n.Instances(ring.RoleIngester)); got != 2 {
			t.Errorf("%s: %d ingesters, want 2", n.Self().ID, got)
		}
	}

	// What /metrics shows agrees with the view.
	reg := nodes[4].reg
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"lokilab_ring_members", []string{"role", "distributor", "state", "ACTIVE"}, 2},
		{"lokilab_ring_members", []string{"role", "ingester", "state", "ACTIVE"}, 2},
		{"lokilab_ring_members", []string{"role", "querier", "state", "ACTIVE"}, 1},
		{"lokilab_ring_members", []string{"role", "ingester", "state", "Unhealthy"}, 0},
		{"lokilab_ring_partitions", []string{"state", "ACTIVE"}, 12},
		{"lokilab_memberlist_members", nil, 5},
	} {
		if got := metricstest.Value(t, reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if metricstest.Value(t, reg, "lokilab_memberlist_messages_received_total", "type", "broadcast") == 0 ||
		metricstest.Value(t, reg, "lokilab_memberlist_received_bytes_total", "type", "broadcast") == 0 ||
		metricstest.Value(t, reg, "lokilab_memberlist_messages_sent_total", "type", "broadcast") == 0 {
		t.Error("gossip counters did not move")
	}

	// A state change made on one node reaches every other.
	nodes[2].SetState(ring.InstanceLeaving)
	took = eventually(t, "seeing ingester-2 LEAVING everywhere", func() bool {
		for _, n := range nodes {
			if in := n.Instances(ring.RoleIngester); len(in) != 2 || in[0].State != ring.InstanceLeaving {
				return false
			}
		}
		return true
	})
	t.Logf("one state change reached 4 nodes in %s", took)
	if metricstest.HistogramCount(t, reg, "lokilab_ring_update_propagation_seconds") == 0 {
		t.Error("no propagation observed")
	}
}

func TestPartitionStateGossips(t *testing.T) {
	nodes := startCluster(t, testConfig(), ring.RoleDistributor, ring.RoleDistributor, ring.RoleIngester)
	nodes[2].SetPartitionState(5, ring.PartitionInactive)
	nodes[2].SetPartitionState(12, ring.PartitionPending)
	eventually(t, "seeing partition 5 INACTIVE and 12 PENDING everywhere", func() bool {
		for _, n := range nodes {
			p := n.Partitions()
			if len(p) != 13 || p[5].State != ring.PartitionInactive || p[12].State != ring.PartitionPending {
				return false
			}
		}
		return true
	})
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		tok := rng.Uint32()
		want, err := nodes[0].PartitionFor(tok)
		if err != nil {
			t.Fatal(err)
		}
		if want == 5 || want == 12 {
			t.Fatalf("token %d routed to partition %d, which is not ACTIVE", tok, want)
		}
		for _, n := range nodes[1:] {
			if got, _ := n.PartitionFor(tok); got != want {
				t.Fatalf("token %d: partition %d on %s, %d on %s", tok, got, n.Self().ID, want, nodes[0].Self().ID)
			}
		}
	}
}

func TestKilledInstanceTurnsUnhealthy(t *testing.T) {
	nodes := startCluster(t, testConfig(), ring.RoleDistributor, ring.RoleDistributor, ring.RoleDistributor, ring.RoleIngester)
	eventually(t, "converged", func() bool {
		for _, n := range nodes {
			if n.HealthyDistributors() != 3 || len(n.HealthyInstances("")) != 4 {
				return false
			}
		}
		return true
	})

	victim := nodes[1]
	victim.Kill()
	<-victim.stopped
	if victim.runErr != nil {
		t.Errorf("Run after Kill = %v, want nil", victim.runErr)
	}
	survivors := []*node{nodes[0], nodes[2], nodes[3]}
	took := eventually(t, "counting 2 healthy distributors", func() bool {
		for _, n := range survivors {
			if n.HealthyDistributors() != 2 {
				return false
			}
		}
		return true
	})
	t.Logf("a killed distributor was judged unhealthy after %s (timeout %s)", took, testConfig().HeartbeatTimeout)

	// Unhealthy is not gone: it stays, flagged, until forgotten.
	for _, n := range survivors {
		if got := len(n.Instances(ring.RoleDistributor)); got != 3 {
			t.Errorf("%s lists %d distributors, want 3 (one unhealthy)", n.Self().ID, got)
		}
	}
	if got := metricstest.Value(t, nodes[0].reg, "lokilab_ring_members", "role", "distributor", "state", "Unhealthy"); got != 1 {
		t.Errorf("lokilab_ring_members{state=Unhealthy} = %v, want 1", got)
	}

	if err := nodes[3].Forget(nodes[0].Self().ID); err == nil {
		t.Error("Forget of a healthy instance succeeded")
	}
	if err := nodes[3].Forget(victim.Self().ID); err != nil {
		t.Fatalf("Forget: %v", err)
	}
	eventually(t, "the forgotten distributor gone everywhere", func() bool {
		for _, n := range survivors {
			if len(n.Instances(ring.RoleDistributor)) != 2 {
				return false
			}
		}
		return true
	})
}

func TestLeavingIngesterHandsOverPartitions(t *testing.T) {
	nodes := startCluster(t, testConfig(), ring.RoleIngester, ring.RoleIngester, ring.RoleIngester, ring.RoleIngester)
	all := ids(nodes)
	eventually(t, "converged", func() bool {
		for _, n := range nodes {
			if !sees(n, ring.InstanceActive, all...) {
				return false
			}
		}
		return true
	})
	before := desired(nodes)
	checkCover(t, before)

	leaver, survivors := nodes[1], []*node{nodes[0], nodes[2], nodes[3]}
	leaverID := leaver.Self().ID
	for _, p := range before[leaverID] {
		leaver.SetOwner(p, ring.OwnerActive)
	}
	eventually(t, "seeing the leaver's ownerships", func() bool {
		for _, n := range survivors {
			for _, p := range before[leaverID] {
				if _, ok := n.Partitions()[p].Owners[leaverID]; !ok {
					return false
				}
			}
		}
		return true
	})

	// Step 1: LEAVING. The leaver is still there, but its partitions are
	// assigned to the others, each to whoever ranks next for it.
	leaver.SetState(ring.InstanceLeaving)
	eventually(t, "the leaver's partitions assigned to the survivors", func() bool {
		for _, n := range survivors {
			if in := n.Instances(""); len(in) != 4 || in[1].State != ring.InstanceLeaving {
				return false
			}
		}
		after := desired(survivors)
		return len(leaver.DesiredPartitions(leaverID)) == 0 && covers(after)
	})
	after := desired(survivors)
	checkCover(t, after)
	for _, n := range survivors {
		id := n.Self().ID
		gained := setMinus(after[id], before[id])
		if lost := setMinus(before[id], after[id]); len(lost) > 0 {
			t.Errorf("%s lost partitions %v when another ingester left", id, lost)
		}
		if foreign := setMinus(gained, before[leaverID]); len(foreign) > 0 {
			t.Errorf("%s gained partitions %v that were not the leaver's", id, foreign)
		}
	}

	// Step 2: exit. The instance and its ownerships disappear.
	if err := leaver.stop(); err != nil {
		t.Fatalf("Run = %v, want nil on a clean stop", err)
	}
	eventually(t, "the leaver gone everywhere", func() bool {
		for _, n := range survivors {
			if len(n.Instances("")) != 3 {
				return false
			}
			for _, p := range n.Partitions() {
				if _, ok := p.Owners[leaverID]; ok {
					return false
				}
			}
		}
		return true
	})
}

func desired(nodes []*node) map[string][]int32 {
	out := map[string][]int32{}
	for _, n := range nodes {
		id := n.Self().ID
		out[id] = n.DesiredPartitions(id)
	}
	return out
}

// covers reports whether the assignments give every one of the 12
// partitions to exactly one instance.
func covers(assigned map[string][]int32) bool {
	seen := map[int32]int{}
	for _, ps := range assigned {
		for _, p := range ps {
			seen[p]++
		}
	}
	for p := range int32(12) {
		if seen[p] != 1 {
			return false
		}
	}
	return len(seen) == 12
}

func checkCover(t *testing.T, assigned map[string][]int32) {
	t.Helper()
	if !covers(assigned) {
		t.Fatalf("assignment %v does not give each of 12 partitions to exactly one ingester", assigned)
	}
}

func setMinus(a, b []int32) []int32 {
	var out []int32
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// freePort returns a loopback port memberlist could bind a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	probe, err := ring.New(testConfig(), ring.InstanceDesc{ID: "probe", Role: ring.RoleQuerier}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Kill()
	var port int
	if _, err := fmt.Sscanf(probe.Addr(), "127.0.0.1:%d", &port); err != nil {
		t.Fatal(err)
	}
	return port
}

// runOn starts a ring on port (retrying while the port is still being
// released) and returns it with a function that stops it.
func runOn(t *testing.T, port int, id string, reg prometheus.Registerer, join ...string) (*ring.Ring, func()) {
	t.Helper()
	cfg := testConfig()
	cfg.BindPort, cfg.JoinMembers = port, join
	var r *ring.Ring
	eventually(t, id+" bound to its port", func() bool {
		var err error
		r, err = ring.New(cfg, ring.InstanceDesc{ID: id, Role: ring.RoleQuerier}, reg, nil)
		return err == nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return r, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Run = %v", id, err)
		}
	}
}

// Every node of a compose file may list the same members, itself
// included. The first one up then reaches only itself, which must not
// count as joined, or it would stay a cluster of one.
func TestRunKeepsJoiningUntilNotAlone(t *testing.T) {
	self, seed := freePort(t), freePort(t)
	for seed == self {
		seed = freePort(t)
	}
	members := []string{fmt.Sprintf("127.0.0.1:%d", self), fmt.Sprintf("127.0.0.1:%d", seed)}

	reg := prometheus.NewRegistry()
	joiner, stopJoiner := runOn(t, self, "joiner", reg, members...)
	defer stopJoiner()
	// The first attempt reaches the joiner itself (a push/pull with
	// itself) and not the seed, which is not up yet.
	eventually(t, "the first join attempt made", func() bool {
		return metricstest.Value(t, reg, "lokilab_memberlist_messages_received_total", "type", "push_pull") > 0
	})
	select {
	case <-joiner.Joined():
		t.Error("Joined closed after a join that reached only the joiner itself")
	default:
	}
	// The seed starts later, and joins no one: the joiner has to find it.
	s, stopSeed := runOn(t, seed, "seed", nil)
	defer stopSeed()
	select {
	case <-s.Joined():
	default:
		t.Error("a seed (no join members) is not Joined at once")
	}
	eventually(t, "the joiner and the seed seeing each other", func() bool {
		return len(s.HealthyInstances("")) == 2 && len(joiner.HealthyInstances("")) == 2
	})
	if !joiner.WaitJoined(context.Background()) {
		t.Error("the joiner sees the seed but WaitJoined reports it alone")
	}
}

// WaitJoined gives up after the heartbeat timeout when no member answers:
// a node restarted while every peer is down must still start.
func TestWaitJoinedGivesUpAfterTheHeartbeatTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.JoinMembers = []string{fmt.Sprintf("127.0.0.1:%d", freePort(t))} // nobody there
	r, err := ring.New(cfg, ring.InstanceDesc{ID: "alone", Role: ring.RoleIngester}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Kill()
	if r.WaitJoined(context.Background()) {
		t.Error("WaitJoined = true with no member reachable")
	}
}

func TestChangesSignalsStateChanges(t *testing.T) {
	r, err := ring.New(testConfig(), ring.InstanceDesc{ID: "ingester-0", Role: ring.RoleIngester}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Kill()
	drain := func() {
		select {
		case <-r.Changes():
		default:
		}
	}
	for _, c := range []struct {
		name   string
		change func()
	}{
		{"own state", func() { r.SetState(ring.InstanceActive) }},
		{"partition state", func() { r.SetPartitionState(3, ring.PartitionInactive) }},
		{"ownership", func() { r.SetOwner(3, ring.OwnerJoining) }},
		{"ownership removed", func() { r.RemoveOwner(3) }},
	} {
		drain()
		c.change()
		select {
		case <-r.Changes():
		default:
			t.Errorf("%s: no signal on Changes", c.name)
		}
	}
}

func TestLocalWrites(t *testing.T) {
	r, err := ring.New(testConfig(), ring.InstanceDesc{ID: "ingester-0", Role: ring.RoleIngester, Addr: "127.0.0.1:3100"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Kill()

	self := r.Self()
	if self.State != ring.InstanceJoining || self.Heartbeat == 0 || self.UpdatedAt == 0 || self.RegisteredAt == 0 {
		t.Fatalf("registered as %+v, want JOINING with timestamps", self)
	}
	r.SetState(ring.InstanceLeft) // not settable: ignored
	r.SetState(ring.InstanceActive)
	if got := r.Self(); got.State != ring.InstanceActive || got.UpdatedAt <= self.UpdatedAt {
		t.Errorf("after SetState(ACTIVE): %+v", got)
	}

	r.SetOwner(2, ring.OwnerJoining)
	r.SetOwner(99, ring.OwnerJoining) // unknown partition: ignored
	r.SetOwner(4, ring.OwnerActive)
	r.RemoveOwner(4)
	d := r.Desc()
	if o := d.Partitions[2].Owners["ingester-0"]; o.State != ring.OwnerJoining {
		t.Errorf("owner of 2 = %+v, want JOINING", o)
	}
	if _, ok := d.Partitions[99]; ok {
		t.Error("SetOwner created unknown partition 99")
	}
	if o := d.Partitions[4].Owners["ingester-0"]; o.State != ring.OwnerRemoved {
		t.Errorf("Desc keeps the tombstone of a removed owner: got %+v", o)
	}
	if _, ok := r.Partitions()[4].Owners["ingester-0"]; ok {
		t.Error("Partitions shows a removed owner")
	}
	if got := r.DesiredPartitions("ingester-0"); len(got) != 12 {
		t.Errorf("a lone ingester desires %v, want all 12", got)
	}

	// Desc is a copy.
	d.Partitions[2].Owners["intruder"] = ring.OwnerDesc{State: ring.OwnerActive}
	if _, ok := r.Desc().Partitions[2].Owners["intruder"]; ok {
		t.Error("Desc shares memory with the ring")
	}

	for p := range int32(12) {
		r.SetPartitionState(p, ring.PartitionInactive)
	}
	if _, err := r.PartitionFor(1); !errors.Is(err, ring.ErrNoActivePartition) {
		t.Errorf("PartitionFor with no ACTIVE partition: err = %v", err)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  func(*ring.Config)
		self ring.InstanceDesc
	}{
		{"no ID", nil, ring.InstanceDesc{Role: ring.RoleIngester}},
		{"no role", nil, ring.InstanceDesc{ID: "x"}},
		{"timeout below period", func(c *ring.Config) { c.HeartbeatTimeout = c.HeartbeatPeriod }, ring.InstanceDesc{ID: "x", Role: "querier"}},
		{"no tokens", func(c *ring.Config) { c.TokensPerPartition = 0 }, ring.InstanceDesc{ID: "x", Role: "querier"}},
		{"bad bind address", func(c *ring.Config) { c.BindAddr = "not-an-ip" }, ring.InstanceDesc{ID: "x", Role: "querier"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig()
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			r, err := ring.New(cfg, c.self, nil, nil)
			if err == nil {
				r.Kill()
				t.Fatal("New succeeded")
			}
		})
	}
}

func TestConfigFlags(t *testing.T) {
	var cfg ring.Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if cfg.BindAddr != "127.0.0.1" || cfg.BindPort != 7946 || cfg.Partitions != 12 || cfg.HeartbeatTimeout != 10*time.Second {
		t.Errorf("unexpected defaults: %+v", cfg)
	}
	if err := fs.Parse([]string{"-memberlist.join", "a:7946, b:7946,", "-ring.partitions", "24"}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a:7946", "b:7946"}; !slices.Equal(cfg.JoinMembers, want) {
		t.Errorf("JoinMembers = %q, want %q", cfg.JoinMembers, want)
	}
	if cfg.Partitions != 24 {
		t.Errorf("Partitions = %d", cfg.Partitions)
	}
	if got := fs.Lookup("memberlist.join").Value.String(); got != "a:7946,b:7946" {
		t.Errorf("join flag prints %q", got)
	}
}
