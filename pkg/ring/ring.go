package ring

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrNoActivePartition is returned by PartitionFor when no partition is
// ACTIVE, so there is nowhere to write.
var ErrNoActivePartition = errors.New("ring: no ACTIVE partition")

// Ring is one instance's membership: it registers the instance, keeps its
// heartbeat, gossips and merges the Desc, and answers lookups from its
// local copy. Lookups never wait for the network.
type Ring struct {
	cfg    Config
	logger *slog.Logger
	now    func() time.Time
	m      *metrics
	events *nodeEvents

	// ml is set once New has created the memberlist; an atomic because
	// memberlist's goroutines (the broadcast queue's NumNodes) read it
	// from the moment they start, before New returns.
	ml    atomic.Pointer[memberlist.Memberlist]
	queue *broadcastQueue

	table   atomic.Pointer[tokenTable] // ACTIVE partitions' tokens, for PartitionFor
	changes chan struct{}

	mu   sync.RWMutex
	desc Desc
	// self and owned are what this instance last wrote about itself: the
	// authority that refutes anything else written under its ID.
	self      InstanceDesc
	owned     map[int32]OwnerDesc
	lastStamp int64
	healthy   map[string]bool // last health verdict per instance, to notice changes

	// joined is closed once this node has exchanged state with another
	// (or at once for a seed, which has no one to join): from then on the
	// ring shows the cluster, not only this node.
	joined     chan struct{}
	joinedOnce sync.Once

	lifeMu  sync.Mutex // orders Kill against Run's exit
	stopped bool       // memberlist has been shut down
	killed  chan struct{}
	kill    sync.Once
}

// New registers self (in state JOINING) and starts its memberlist node, so
// the bound address is known and other nodes can join through it before
// Run. self needs an ID and a Role; its state and timestamps are set here.
// reg may be nil. Call Run to join the cluster and keep the instance
// alive, or Kill to release a Ring that will not run.
func New(cfg Config, self InstanceDesc, reg prometheus.Registerer, logger *slog.Logger, opts ...Option) (*Ring, error) {
	return newRing(cfg, self, reg, logger, time.Now, opts...)
}

// newRing is New with the clock that stamps writes and judges health,
// which tests replace.
func newRing(cfg Config, self InstanceDesc, reg prometheus.Registerer, logger *slog.Logger, now func() time.Time, opts ...Option) (*Ring, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if self.ID == "" || self.Role == "" {
		return nil, errors.New("ring: instance needs an ID and a role")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Ring{
		cfg:     cfg,
		logger:  logger,
		now:     now,
		events:  newNodeEvents(logger),
		changes: make(chan struct{}, 1),
		owned:   map[int32]OwnerDesc{},
		healthy: map[string]bool{},
		killed:  make(chan struct{}),
		joined:  make(chan struct{}),
	}
	if len(cfg.JoinMembers) == 0 {
		r.markJoined() // a seed: the cluster starts here
	}
	r.m = newMetrics(r)

	stamp := r.stampLocked()
	self.State = InstanceJoining
	self.RegisteredAt, self.Heartbeat, self.UpdatedAt = stamp, stamp, stamp
	r.self = self
	r.desc = Desc{Instances: map[string]InstanceDesc{self.ID: self}, Partitions: map[int32]PartitionDesc{}}
	for id := range int32(cfg.Partitions) {
		r.desc.Partitions[id] = PartitionDesc{ID: id, State: PartitionActive}
	}
	r.rebuildTableLocked()
	r.updateHealthLocked(r.now())

	mc := memberlist.DefaultLANConfig()
	mc.Name = cmp.Or(cfg.NodeName, self.ID)
	mc.BindAddr, mc.BindPort = cfg.BindAddr, cfg.BindPort
	mc.AdvertiseAddr, mc.AdvertisePort = cfg.AdvertiseAddr, cmp.Or(cfg.AdvertisePort, cfg.BindPort)
	mc.GossipInterval = cfg.GossipInterval
	mc.PushPullInterval = cfg.PushPullInterval
	// A restarted instance that comes back on another port may take its
	// name back once the ring would have called the old one unhealthy.
	mc.DeadNodeReclaimTime = cfg.HeartbeatTimeout
	mc.Delegate = delegate{r}
	mc.Events = r.events
	mc.Logger = log.New(logWriter{logger}, "", 0)
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.applyTransport(mc); err != nil {
		return nil, err
	}
	r.queue = newBroadcastQueue(r.numMembers, mc.RetransmitMult)

	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("ring: start memberlist on %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
	}
	r.ml.Store(ml)
	if reg != nil {
		if err := reg.Register(r.m); err != nil {
			_ = ml.Shutdown()
			return nil, fmt.Errorf("ring: register metrics: %w", err)
		}
	}
	r.mu.Lock()
	r.queueInstanceLocked(r.self) // the registration, gossiped once joined
	r.mu.Unlock()
	return r, nil
}

// Run joins the cluster through JoinMembers, retrying with backoff until
// one answers (none configured: this node is a seed), and heartbeats until
// ctx ends. Then it leaves: it writes its tombstone (state LEFT, and every
// ownership REMOVED), waits up to LeaveTimeout for that to be gossiped,
// announces its departure to memberlist and shuts the node down. It
// returns nil on a clean stop, also after Kill.
//
// Leaving is abrupt for whatever the instance owned. A component that hands
// work over (an ingester) first sets InstanceLeaving, waits until its
// partitions have new owners, and only then ends Run's context.
func (r *Ring) Run(ctx context.Context) error {
	var join sync.WaitGroup
	joinCtx, stopJoin := context.WithCancel(ctx)
	defer stopJoin()
	if len(r.cfg.JoinMembers) > 0 {
		join.Go(func() { r.joinLoop(joinCtx) })
	}
	t := time.NewTicker(r.cfg.HeartbeatPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			stopJoin()
			join.Wait()
			return r.leave()
		case <-r.killed:
			stopJoin()
			join.Wait()
			return nil
		case <-t.C:
			r.heartbeat()
		}
	}
}

// joinLoop contacts JoinMembers until this node is no longer alone. A join
// that reaches only this node itself (every node in a compose file listing
// the same members, this one first up) does not count: it would leave the
// node a cluster of one for good. Once another node has joined this one,
// there is nothing left to do either.
func (r *Ring) joinLoop(ctx context.Context) {
	const maxBackoff = 10 * time.Second
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if r.numMembers() > 1 {
			r.markJoined()
			r.announce()
			return
		}
		n, err := r.ml.Load().Join(r.cfg.JoinMembers)
		switch {
		case err == nil && r.numMembers() > 1:
			r.logger.Info("ring: joined", "contacted", n, "members", r.numMembers())
			r.markJoined()
			r.announce()
			return
		case err == nil:
			r.logger.Debug("ring: joined only this node, retrying", "members", r.cfg.JoinMembers, "backoff", backoff)
		case attempt == 1 || backoff == maxBackoff:
			r.logger.Warn("ring: join failed, retrying", "members", r.cfg.JoinMembers, "attempt", attempt, "backoff", backoff, "err", err)
		default:
			r.logger.Debug("ring: join failed, retrying", "members", r.cfg.JoinMembers, "attempt", attempt, "backoff", backoff, "err", err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (r *Ring) markJoined() { r.joinedOnce.Do(func() { close(r.joined) }) }

// Joined is closed once this node has merged the state of at least one
// other member (memberlist's join is a full push/pull, so at that moment
// the ring holds every instance and owner the peer knew), or at once when
// no JoinMembers are configured. Before it closes, the ring shows only this
// node: a component that decides from the ring — an ingester choosing which
// partitions to take — must wait for it, or it would see nobody else and
// claim everything.
func (r *Ring) Joined() <-chan struct{} { return r.joined }

// WaitJoined waits until Joined closes, ctx ends, or the heartbeat timeout
// has passed, and reports whether the node joined. The bound is the
// heartbeat timeout because that is the ring's own verdict on silence: an
// owner this node has not heard from for that long would count as dead
// even if the join had reached it, so deciding alone after it is what the
// ring would decide anyway (a node restarted while every peer is down must
// not wait forever).
func (r *Ring) WaitJoined(ctx context.Context) bool {
	t := time.NewTimer(r.cfg.HeartbeatTimeout)
	defer t.Stop()
	select {
	case <-r.joined:
		return true
	case <-ctx.Done():
	case <-t.C:
	}
	return false
}

// announce queues this instance's own entries again once it has joined.
// The member it joined through learned them in the join's push/pull but
// does not pass a join's state on, and the broadcasts queued before the
// join may have been spent on the only peer then known; without this the
// rest of the cluster would hear of the instance only at its next
// heartbeat.
func (r *Ring) announce() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queueInstanceLocked(r.self)
	for p := range r.owned {
		r.queueOwnerLocked(p, r.self.ID)
	}
}

func (r *Ring) leave() error {
	r.mu.Lock()
	stamp := r.stampLocked()
	r.self.State, r.self.UpdatedAt = InstanceLeft, stamp
	last := r.queueInstanceLocked(r.writeSelfLocked())
	for p, o := range r.owned {
		if o.State != OwnerRemoved {
			r.writeOwnerLocked(p, OwnerDesc{State: OwnerRemoved, UpdatedAt: stamp})
		}
	}
	r.mu.Unlock()
	r.signal()

	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	if r.stopped {
		return nil
	}
	r.stopped = true
	ml := r.ml.Load()
	if ml.NumMembers() > 1 && r.cfg.LeaveTimeout > 0 {
		// The tombstone is queued with the ownership tombstones, which go
		// out in the same packets; once it has been sent its full number
		// of times, the others have too, or nearly.
		t := time.NewTimer(r.cfg.LeaveTimeout)
		select {
		case <-last:
		case <-t.C:
			r.logger.Warn("ring: leaving before the final state was fully gossiped", "timeout", r.cfg.LeaveTimeout)
		}
		t.Stop()
		if err := ml.Leave(r.cfg.LeaveTimeout); err != nil {
			r.logger.Warn("ring: memberlist leave", "err", err)
		}
	}
	if err := ml.Shutdown(); err != nil {
		return fmt.Errorf("ring: shut down memberlist: %w", err)
	}
	r.logger.Info("ring: left")
	return nil
}

// Kill stops gossip and heartbeats at once, without leaving: to the
// others the instance simply goes silent, as after kill -9 or a cut
// network cable, and turns unhealthy after HeartbeatTimeout. Run returns
// nil. It is a lab and test hook; it also releases a Ring whose Run was
// never called.
func (r *Ring) Kill() {
	r.kill.Do(func() { close(r.killed) })
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	if r.stopped {
		return
	}
	r.stopped = true
	_ = r.ml.Load().Shutdown()
}

func (r *Ring) heartbeat() {
	r.mu.Lock()
	if r.self.State == InstanceLeft {
		r.mu.Unlock()
		return
	}
	r.self.Heartbeat = r.stampLocked()
	r.queueInstanceLocked(r.writeSelfLocked())
	now := r.now()
	r.desc.GC(now, r.cfg.LeftTombstoneTTL)
	changed := r.updateHealthLocked(now)
	r.mu.Unlock()
	r.events.prune(now.Add(-r.cfg.LeftTombstoneTTL))
	if changed {
		r.signal()
	}
}

// receive decodes and merges a message from another node: a broadcast, or
// the remote half of a push/pull.
func (r *Ring) receive(b []byte, kind msgKind, join bool) {
	r.m.received(kind, len(b))
	other, err := decodeDesc(b)
	if err != nil {
		r.m.invalid.Add(1)
		r.logger.Warn("ring: dropping invalid message", "type", kind, "bytes", len(b), "err", err)
		return
	}
	r.mu.Lock()
	cs := newChangeSet()
	if !r.desc.merge(other, cs) {
		r.mu.Unlock()
		return
	}
	now := r.now()
	if !join {
		// A join's push/pull brings old state, whose age says nothing
		// about how fast gossip is.
		r.observePropagationLocked(cs, now)
	}
	r.refuteLocked(cs)
	if len(cs.partitions) > 0 {
		r.rebuildTableLocked()
	}
	if !join {
		// Pass on what was news here: the epidemic that carries a change
		// past the few peers its writer gossiped it to. A join's state is
		// old news to everyone but the joiner.
		r.rebroadcastLocked(cs)
	}
	structural := cs.structural()
	healthChanged := r.updateHealthLocked(now)
	r.mu.Unlock()
	if structural || healthChanged {
		r.signal()
	}
}

// observePropagationLocked records, for every entry written elsewhere that
// changed here, how long ago its writer stamped it: the time the change
// took to arrive. It relies on the writer's clock agreeing with this one;
// on one machine it does.
func (r *Ring) observePropagationLocked(cs *changeSet, now time.Time) {
	observe := func(stamp int64) {
		if stamp > 0 {
			r.m.propagation.Observe(max(0, time.Duration(now.UnixNano()-stamp).Seconds()))
		}
	}
	for id, register := range cs.instances {
		if id == r.self.ID {
			continue
		}
		in := r.desc.Instances[id]
		if register {
			observe(in.UpdatedAt)
		} else {
			observe(in.Heartbeat)
		}
	}
	for id := range cs.partitions {
		observe(r.desc.Partitions[id].StateChangedAt)
	}
	for k := range cs.owners {
		if k.instance != r.self.ID {
			observe(r.desc.Partitions[k.partition].Owners[k.instance].UpdatedAt)
		}
	}
}

// refuteLocked restores what this instance wrote about itself when a merge
// brought something newer under its ID: a tombstone from an operator who
// forgot it while it was alive, or entries of an earlier process with the
// same ID. Rewriting with a larger timestamp makes this instance's word the
// latest again everywhere.
func (r *Ring) refuteLocked(cs *changeSet) {
	if _, ok := cs.instances[r.self.ID]; ok {
		cur := r.desc.Instances[r.self.ID]
		r.self.Heartbeat = max(r.self.Heartbeat, cur.Heartbeat)
		if cur != r.self {
			r.logger.Warn("ring: refuting an entry written under this instance's ID", "instance", r.self.ID, "state", cur.State, "updated_at", cur.UpdatedAt)
			r.self.UpdatedAt = max(r.stampLocked(), cur.UpdatedAt+1)
			r.queueInstanceLocked(r.writeSelfLocked())
		}
	}
	for k := range cs.owners {
		if k.instance != r.self.ID {
			continue
		}
		cur := r.desc.Partitions[k.partition].Owners[k.instance]
		mine, ok := r.owned[k.partition]
		if !ok {
			if cur.State == OwnerRemoved {
				continue
			}
			// An ownership this process never claimed: its predecessor's.
			// The partition starts over from its committed offset, so the
			// claim is void until this process makes its own.
			mine.State = OwnerRemoved
		}
		if cur != mine {
			r.logger.Info("ring: refuting an ownership written under this instance's ID", "partition", k.partition, "state", cur.State)
			mine.UpdatedAt = max(r.stampLocked(), cur.UpdatedAt+1)
			r.writeOwnerLocked(k.partition, mine)
		}
	}
}

func (r *Ring) rebroadcastLocked(cs *changeSet) {
	for id := range cs.instances {
		if id != r.self.ID {
			r.queueInstanceLocked(r.desc.Instances[id])
		}
	}
	for id := range cs.partitions {
		r.queuePartitionLocked(id)
	}
	for k := range cs.owners {
		if k.instance != r.self.ID {
			r.queueOwnerLocked(k.partition, k.instance)
		}
	}
}

// stampLocked returns a timestamp larger than any this Ring returned
// before: the wall clock, unless it went backwards (an NTP step), in which
// case one past the last stamp, so this writer's versions always grow.
func (r *Ring) stampLocked() int64 {
	r.lastStamp = max(r.now().UnixNano(), r.lastStamp+1)
	return r.lastStamp
}

// writeSelfLocked puts r.self into the Desc and returns it.
func (r *Ring) writeSelfLocked() InstanceDesc {
	r.desc.Instances[r.self.ID] = r.self
	return r.self
}

// writeOwnerLocked records and queues this instance's ownership of p.
func (r *Ring) writeOwnerLocked(p int32, o OwnerDesc) {
	r.owned[p] = o
	part := r.desc.Partitions[p]
	if part.Owners == nil {
		part.Owners = map[string]OwnerDesc{}
	}
	part.Owners[r.self.ID] = o
	r.desc.Partitions[p] = part
	r.queueOwnerLocked(p, r.self.ID)
}

// queueLocked queues delta for gossip under name, replacing what is still
// queued under it, and returns a channel closed once it has been sent its
// full number of times or replaced.
func (r *Ring) queueLocked(name string, delta *Desc) <-chan struct{} {
	msg, err := encodeDesc(delta)
	switch {
	case err != nil:
		r.logger.Error("ring: cannot gossip change", "key", name, "err", err)
	case len(msg) > maxBroadcastSize:
		r.logger.Debug("ring: change too large to broadcast, left to push/pull", "key", name, "bytes", len(msg))
	default:
		return r.queue.push(name, msg)
	}
	done := make(chan struct{})
	close(done)
	return done
}

func (r *Ring) queueInstanceLocked(in InstanceDesc) <-chan struct{} {
	return r.queueLocked("instance/"+in.ID, &Desc{Instances: map[string]InstanceDesc{in.ID: in}})
}

func (r *Ring) queuePartitionLocked(id int32) {
	p := r.desc.Partitions[id]
	p.Owners = nil
	r.queueLocked("partition/"+strconv.Itoa(int(id)), &Desc{Partitions: map[int32]PartitionDesc{id: p}})
}

func (r *Ring) queueOwnerLocked(id int32, owner string) {
	p := r.desc.Partitions[id]
	p.Owners = map[string]OwnerDesc{owner: p.Owners[owner]}
	r.queueLocked("owner/"+strconv.Itoa(int(id))+"/"+owner, &Desc{Partitions: map[int32]PartitionDesc{id: p}})
}

// rebuildTableLocked swaps in the token table of the partitions now ACTIVE.
func (r *Ring) rebuildTableLocked() {
	var active []int32
	for id, p := range r.desc.Partitions {
		if p.State == PartitionActive {
			active = append(active, id)
		}
	}
	r.table.Store(buildTable(active, r.cfg.TokensPerPartition))
}

// updateHealthLocked re-judges every instance's health at now and reports
// whether any verdict changed, or an instance came or went.
func (r *Ring) updateHealthLocked(now time.Time) (changed bool) {
	seen := 0
	for id, in := range r.desc.Instances {
		if in.State == InstanceLeft {
			continue
		}
		seen++
		h := r.IsHealthy(in, now)
		if old, ok := r.healthy[id]; !ok || old != h {
			r.healthy[id] = h
			changed = true
		}
	}
	if seen != len(r.healthy) {
		for id := range r.healthy {
			if in, ok := r.desc.Instances[id]; !ok || in.State == InstanceLeft {
				delete(r.healthy, id)
			}
		}
		changed = true
	}
	return changed
}

// signal tells a Changes reader that something changed, without blocking:
// signals that arrive before the reader looks coalesce into one.
func (r *Ring) signal() {
	select {
	case r.changes <- struct{}{}:
	default:
	}
}

func (r *Ring) numMembers() int {
	if ml := r.ml.Load(); ml != nil {
		return ml.NumMembers()
	}
	return 1
}

// Addr returns the host:port other nodes reach this memberlist node at:
// the one to pass to others' JoinMembers.
func (r *Ring) Addr() string {
	return r.ml.Load().LocalNode().Address()
}

// Changes returns a channel that receives a value after the ring changed
// in a way a reader may act on: an instance registered, changed state or
// left, an instance's health verdict flipped, a partition's state or
// owners changed. Heartbeats alone do not signal. Signals coalesce, so a
// reader re-reads the whole view rather than counting them. There is one
// channel per Ring: give it one reader.
func (r *Ring) Changes() <-chan struct{} { return r.changes }

// SetState sets this instance's state to JOINING, ACTIVE or LEAVING and
// gossips it. Other states are ignored (LEFT is written by Run on exit),
// as is every call once the instance has left.
func (r *Ring) SetState(s InstanceState) {
	if s < InstanceJoining || s > InstanceLeaving {
		r.logger.Error("ring: SetState: not a state an instance can set", "state", s)
		return
	}
	r.mu.Lock()
	if r.self.State == s || r.self.State == InstanceLeft {
		r.mu.Unlock()
		return
	}
	r.self.State, r.self.UpdatedAt = s, r.stampLocked()
	r.queueInstanceLocked(r.writeSelfLocked())
	r.logger.Info("ring: instance state", "instance", r.self.ID, "state", s)
	r.mu.Unlock()
	r.signal()
}

// Self returns this instance's entry as it last wrote it.
func (r *Ring) Self() InstanceDesc {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.self
}

// Desc returns a deep copy of the gossiped state as this node sees it,
// tombstones included.
func (r *Ring) Desc() Desc {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.desc.Clone()
}

// Instances returns the instances of role ("" for all), healthy or not,
// sorted by ID. Left instances are not included.
func (r *Ring) Instances(role string) []InstanceDesc {
	return r.instances(role, time.Time{})
}

// HealthyInstances returns the healthy instances of role ("" for all),
// sorted by ID.
func (r *Ring) HealthyInstances(role string) []InstanceDesc {
	return r.instances(role, r.now())
}

// instances lists role's instances, only the healthy ones at now unless
// now is zero.
func (r *Ring) instances(role string, now time.Time) []InstanceDesc {
	r.mu.RLock()
	var out []InstanceDesc
	for _, in := range r.desc.Instances {
		if in.State == InstanceLeft || (role != "" && in.Role != role) {
			continue
		}
		if !now.IsZero() && !r.IsHealthy(in, now) {
			continue
		}
		out = append(out, in)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b InstanceDesc) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// IsHealthy reports whether inst is healthy at now: it has not left and
// its last heartbeat is at most HeartbeatTimeout old.
func (r *Ring) IsHealthy(inst InstanceDesc, now time.Time) bool {
	return inst.State != InstanceLeft && inst.State != 0 &&
		now.UnixNano()-inst.Heartbeat <= int64(r.cfg.HeartbeatTimeout)
}

// HealthyDistributors returns the number of healthy distributors, at least
// 1 (this one may not have registered as a distributor, and a global rate
// limit must not divide by zero). It implements tenant.DistributorCounter.
func (r *Ring) HealthyDistributors() int {
	now := r.now()
	n := 0
	r.mu.RLock()
	for _, in := range r.desc.Instances {
		if in.Role == RoleDistributor && r.IsHealthy(in, now) {
			n++
		}
	}
	r.mu.RUnlock()
	return max(n, 1)
}

// PartitionFor returns the ACTIVE partition owning token: the one with the
// first token at or after it, wrapping around. It reads an immutable table
// through an atomic pointer, so it takes no lock and does not allocate. It
// implements distributor.PartitionRing.
func (r *Ring) PartitionFor(token uint32) (int32, error) {
	p, ok := r.table.Load().lookup(token)
	if !ok {
		return 0, ErrNoActivePartition
	}
	return p, nil
}

// Partitions returns every partition, sorted by ID, with its current
// owners (removed ones left out).
func (r *Ring) Partitions() []PartitionDesc {
	r.mu.RLock()
	out := make([]PartitionDesc, 0, len(r.desc.Partitions))
	for _, p := range r.desc.Partitions {
		owners := p.Owners
		p.Owners = nil
		for id, o := range owners {
			if o.State == OwnerRemoved {
				continue
			}
			if p.Owners == nil {
				p.Owners = map[string]OwnerDesc{}
			}
			p.Owners[id] = o
		}
		out = append(out, p)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b PartitionDesc) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// SetPartitionState sets partition id's state and gossips it; a partition
// not yet known is created. Only PENDING, ACTIVE and INACTIVE are states.
// Setting a partition ACTIVE makes distributors write to it; INACTIVE
// stops new writes while it keeps an owner to drain it.
func (r *Ring) SetPartitionState(id int32, s PartitionState) {
	if s < PartitionPending || s > PartitionInactive || id < 0 {
		r.logger.Error("ring: SetPartitionState: invalid partition or state", "partition", id, "state", s)
		return
	}
	r.mu.Lock()
	p, ok := r.desc.Partitions[id]
	if ok && p.State == s {
		r.mu.Unlock()
		return
	}
	p.ID, p.State, p.StateChangedAt = id, s, max(r.stampLocked(), p.StateChangedAt+1)
	r.desc.Partitions[id] = p
	r.rebuildTableLocked()
	r.queuePartitionLocked(id)
	r.mu.Unlock()
	r.logger.Info("ring: partition state", "partition", id, "state", s)
	r.signal()
}

// SetOwner records this instance as owner of partition in state s
// (JOINING, ACTIVE or LEAVING) and gossips it. A partition this node does
// not know is ignored.
func (r *Ring) SetOwner(partition int32, s OwnerState) {
	if s < OwnerJoining || s > OwnerLeaving {
		r.logger.Error("ring: SetOwner: not a state an owner can set", "state", s)
		return
	}
	r.setOwner(partition, s)
}

// RemoveOwner withdraws this instance's ownership of partition, leaving a
// tombstone so that the removal wins over the ownership everywhere.
func (r *Ring) RemoveOwner(partition int32) {
	r.setOwner(partition, OwnerRemoved)
}

func (r *Ring) setOwner(partition int32, s OwnerState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.desc.Partitions[partition]; !ok {
		r.logger.Warn("ring: ownership of an unknown partition ignored", "partition", partition, "state", s)
		return
	}
	cur, ok := r.owned[partition]
	if (ok && cur.State == s) || (!ok && s == OwnerRemoved) || r.self.State == InstanceLeft {
		return
	}
	r.writeOwnerLocked(partition, OwnerDesc{State: s, UpdatedAt: r.stampLocked()})
	r.signal()
}

// DesiredPartitions returns the partitions AssignPartitions gives to
// selfID, sorted: every partition, whatever its state (an INACTIVE one
// still needs draining), shared among the healthy ingesters that are
// JOINING or ACTIVE. A LEAVING ingester gets none, so its partitions find
// new owners while it is still there to hand them over.
func (r *Ring) DesiredPartitions(selfID string) []int32 {
	now := r.now()
	r.mu.RLock()
	var ingesters []string
	for _, in := range r.desc.Instances {
		if in.Role == RoleIngester && (in.State == InstanceJoining || in.State == InstanceActive) && r.IsHealthy(in, now) {
			ingesters = append(ingesters, in.ID)
		}
	}
	partitions := make([]int32, 0, len(r.desc.Partitions))
	for id := range r.desc.Partitions {
		partitions = append(partitions, id)
	}
	r.mu.RUnlock()
	var mine []int32
	for p, owner := range AssignPartitions(partitions, ingesters) {
		if owner == selfID {
			mine = append(mine, p)
		}
	}
	slices.Sort(mine)
	return mine
}

// Forget writes a tombstone for an unhealthy instance, as if it had left,
// and removes its ownerships: what an operator does for an instance that
// crashed and will not return under its ID. A healthy instance, or this
// one, cannot be forgotten; should a forgotten instance be alive after all,
// it refutes the tombstone.
func (r *Ring) Forget(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	in, ok := r.desc.Instances[id]
	switch {
	case !ok || in.State == InstanceLeft:
		return fmt.Errorf("ring: forget %q: no such instance", id)
	case id == r.self.ID:
		return fmt.Errorf("ring: forget %q: an instance cannot forget itself", id)
	case r.IsHealthy(in, r.now()):
		return fmt.Errorf("ring: forget %q: instance is healthy", id)
	}
	in.State, in.UpdatedAt = InstanceLeft, max(r.stampLocked(), in.UpdatedAt+1)
	r.desc.Instances[id] = in
	r.queueInstanceLocked(in)
	for pid, p := range r.desc.Partitions {
		o, ok := p.Owners[id]
		if !ok || o.State == OwnerRemoved {
			continue
		}
		p.Owners[id] = OwnerDesc{State: OwnerRemoved, UpdatedAt: max(r.stampLocked(), o.UpdatedAt+1)}
		r.queueOwnerLocked(pid, id)
	}
	r.updateHealthLocked(r.now())
	r.logger.Info("ring: forgot instance", "instance", id)
	r.signal()
	return nil
}
