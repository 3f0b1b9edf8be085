package ring

import (
	"fmt"
	"maps"
	"time"
)

// Roles an instance can have. The ring does not interpret them beyond
// filtering: [Ring.HealthyDistributors] counts RoleDistributor and
// [Ring.DesiredPartitions] assigns partitions among RoleIngester.
const (
	RoleDistributor = "distributor"
	RoleIngester    = "ingester"
	RoleQuerier     = "querier"
	RoleCompactor   = "compactor"
)

// InstanceState is an instance's place in its lifecycle. The order of the
// values is the merge's tie-break: of two entries with equal timestamps the
// later state wins.
type InstanceState uint8

const (
	// InstanceJoining is the state an instance registers in: present,
	// not yet serving (an ingester replaying its partitions).
	InstanceJoining InstanceState = iota + 1
	// InstanceActive serves.
	InstanceActive
	// InstanceLeaving is still running but on its way out: its partitions
	// are assigned to others so they move before it goes.
	InstanceLeaving
	// InstanceLeft is the tombstone of an instance that left or was
	// forgotten. Views hide it; it is garbage-collected after
	// LeftTombstoneTTL. Only the ring writes it (Run on exit, Forget).
	InstanceLeft
)

var instanceStateNames = [...]string{"", "JOINING", "ACTIVE", "LEAVING", "LEFT"}

func (s InstanceState) String() string {
	if int(s) < len(instanceStateNames) && s != 0 {
		return instanceStateNames[s]
	}
	return fmt.Sprintf("InstanceState(%d)", uint8(s))
}

// MarshalText encodes the state as its name, which is what JSON shows.
func (s InstanceState) MarshalText() ([]byte, error) {
	return marshalState(instanceStateNames[:], uint8(s))
}

// UnmarshalText decodes a state name, rejecting unknown ones.
func (s *InstanceState) UnmarshalText(b []byte) error {
	v, err := unmarshalState(instanceStateNames[:], b, "instance")
	*s = InstanceState(v)
	return err
}

// PartitionState is a partition's state. Only an operator changes it.
type PartitionState uint8

const (
	// PartitionPending exists but receives no writes yet: a partition
	// being added, whose owner can start consuming before traffic arrives.
	PartitionPending PartitionState = iota + 1
	// PartitionActive receives writes: PartitionFor routes tokens to it.
	PartitionActive
	// PartitionInactive receives no new writes but still needs an owner
	// until what was written to it has been flushed: a partition being
	// removed.
	PartitionInactive
)

var partitionStateNames = [...]string{"", "PENDING", "ACTIVE", "INACTIVE"}

func (s PartitionState) String() string {
	if int(s) < len(partitionStateNames) && s != 0 {
		return partitionStateNames[s]
	}
	return fmt.Sprintf("PartitionState(%d)", uint8(s))
}

// MarshalText encodes the state as its name.
func (s PartitionState) MarshalText() ([]byte, error) {
	return marshalState(partitionStateNames[:], uint8(s))
}

// UnmarshalText decodes a state name, rejecting unknown ones.
func (s *PartitionState) UnmarshalText(b []byte) error {
	v, err := unmarshalState(partitionStateNames[:], b, "partition")
	*s = PartitionState(v)
	return err
}

// OwnerState is an instance's ownership of one partition.
type OwnerState uint8

const (
	// OwnerJoining is a new owner catching up (replaying the partition
	// from its committed offset); it does not serve queries for it yet.
	OwnerJoining OwnerState = iota + 1
	// OwnerActive consumes the partition and serves its recent data.
	OwnerActive
	// OwnerLeaving is releasing the partition (flushing, committing) for
	// its new owner.
	OwnerLeaving
	// OwnerRemoved is the tombstone of an ownership, written by
	// RemoveOwner, Forget and Run's exit. Views hide it; it is
	// garbage-collected after LeftTombstoneTTL.
	OwnerRemoved
)

var ownerStateNames = [...]string{"", "JOINING", "ACTIVE", "LEAVING", "REMOVED"}

func (s OwnerState) String() string {
	if int(s) < len(ownerStateNames) && s != 0 {
		return ownerStateNames[s]
	}
	return fmt.Sprintf("OwnerState(%d)", uint8(s))
}

// MarshalText encodes the state as its name.
func (s OwnerState) MarshalText() ([]byte, error) { return marshalState(ownerStateNames[:], uint8(s)) }

// UnmarshalText decodes a state name, rejecting unknown ones.
func (s *OwnerState) UnmarshalText(b []byte) error {
	v, err := unmarshalState(ownerStateNames[:], b, "owner")
	*s = OwnerState(v)
	return err
}

func marshalState(names []string, v uint8) ([]byte, error) {
	if v == 0 || int(v) >= len(names) {
		return nil, fmt.Errorf("ring: invalid state %d", v)
	}
	return []byte(names[v]), nil
}

func unmarshalState(names []string, b []byte, kind string) (uint8, error) {
	for i := 1; i < len(names); i++ {
		if string(b) == names[i] {
			return uint8(i), nil
		}
	}
	return 0, fmt.Errorf("ring: unknown %s state %q", kind, b)
}

// InstanceDesc is one instance's entry. Its owner writes it; see the
// package doc for the merge.
type InstanceDesc struct {
	// ID is unique in the cluster and stable across restarts of the same
	// instance (a restart re-registers under it).
	ID string `json:"id"`
	// Addr is the component's HTTP address (host:port), for the querier
	// to reach ingesters and for people reading /ring.
	Addr string `json:"addr"`
	// Zone is the failure domain, for zone-aware decisions; may be empty.
	Zone string `json:"zone,omitempty"`
	// Role is one of the Role constants.
	Role  string        `json:"role"`
	State InstanceState `json:"state"`
	// Heartbeat is the unix time in nanoseconds the instance last
	// signalled it was alive, every HeartbeatPeriod.
	Heartbeat int64 `json:"heartbeat"`
	// RegisteredAt is the unix time in nanoseconds the instance (this
	// process) registered.
	RegisteredAt int64 `json:"registered_at"`
	// UpdatedAt is the unix time in nanoseconds of the entry's last
	// change other than the heartbeat: the last-writer-wins version.
	UpdatedAt int64 `json:"updated_at"`
}

// OwnerDesc is one instance's ownership of a partition. The instance
// writes it.
type OwnerDesc struct {
	State OwnerState `json:"state"`
	// UpdatedAt is the unix time in nanoseconds of the last change: the
	// last-writer-wins version.
	UpdatedAt int64 `json:"updated_at"`
}

// PartitionDesc is one partition: its state and its owners.
type PartitionDesc struct {
	ID    int32          `json:"id"`
	State PartitionState `json:"state"`
	// StateChangedAt is the unix time in nanoseconds State was set: its
	// last-writer-wins version. The configured partitions exist at 0 in
	// state ACTIVE, so every node agrees on them without a message.
	StateChangedAt int64 `json:"state_changed_at"`
	// Owners maps instance ID to its ownership. Each entry is versioned on
	// its own, so two ingesters changing their ownership at once do not
	// overwrite each other.
	Owners map[string]OwnerDesc `json:"owners,omitempty"`
}

// Desc is the gossiped state: every node holds one and merges what others
// send into it.
type Desc struct {
	Instances  map[string]InstanceDesc `json:"instances,omitempty"`
	Partitions map[int32]PartitionDesc `json:"partitions,omitempty"`
}

// Clone returns a deep copy.
func (d *Desc) Clone() Desc {
	c := Desc{Instances: maps.Clone(d.Instances)}
	if d.Partitions != nil {
		c.Partitions = make(map[int32]PartitionDesc, len(d.Partitions))
		for id, p := range d.Partitions {
			p.Owners = maps.Clone(p.Owners)
			c.Partitions[id] = p
		}
	}
	return c
}

// Merge folds other into d. Per instance, per partition state and per
// owner entry the larger timestamp wins; equal timestamps are broken by
// state order and then by the remaining fields; heartbeats merge by
// maximum. A tombstone is an entry like any other, so a newer one hides
// what it replaces. Merge is commutative, associative and idempotent, so
// copies that have seen the same updates are equal whatever the order.
// It reports whether d changed. other is not modified and d shares no
// memory with it afterwards.
func (d *Desc) Merge(other *Desc) (changed bool) {
	return d.merge(other, nil)
}

// changeSet records which keys a merge changed, so the ring can
// re-broadcast them, measure their propagation and decide whom to tell.
type changeSet struct {
	instances  map[string]bool // ID → the register changed (false: heartbeat only)
	partitions map[int32]bool  // partition whose state changed
	owners     map[ownerKey]bool
}

type ownerKey struct {
	partition int32
	instance  string
}

func newChangeSet() *changeSet {
	return &changeSet{instances: map[string]bool{}, partitions: map[int32]bool{}, owners: map[ownerKey]bool{}}
}

// structural reports a change other than heartbeats: one a reader of the
// ring may act on.
func (c *changeSet) structural() bool {
	if len(c.partitions) > 0 || len(c.owners) > 0 {
		return true
	}
	for _, reg := range c.instances {
		if reg {
			return true
		}
	}
	return false
}

func (d *Desc) merge(other *Desc, cs *changeSet) (changed bool) {
	for id, in := range other.Instances {
		cur, ok := d.Instances[id]
		merged := in
		if ok {
			merged = mergeInstance(cur, in)
		}
		if ok && merged == cur {
			continue
		}
		if d.Instances == nil {
			d.Instances = map[string]InstanceDesc{}
		}
		d.Instances[id] = merged
		changed = true
		if cs != nil {
			cs.instances[id] = cs.instances[id] || !ok || instanceNewer(merged, cur)
		}
	}
	for id, in := range other.Partitions {
		cur, ok := d.Partitions[id]
		if !ok {
			in.Owners = maps.Clone(in.Owners)
			if d.Partitions == nil {
				d.Partitions = map[int32]PartitionDesc{}
			}
			d.Partitions[id] = in
			changed = true
			if cs != nil {
				cs.partitions[id] = true
				for owner := range in.Owners {
					cs.owners[ownerKey{id, owner}] = true
				}
			}
			continue
		}
		pchanged := false
		if partitionNewer(in, cur) {
			cur.State, cur.StateChangedAt = in.State, in.StateChangedAt
			pchanged = true
			if cs != nil {
				cs.partitions[id] = true
			}
		}
		for owner, o := range in.Owners {
			co, ok := cur.Owners[owner]
			if ok && !ownerNewer(o, co) {
				continue
			}
			if cur.Owners == nil {
				cur.Owners = map[string]OwnerDesc{}
			}
			cur.Owners[owner] = o
			pchanged = true
			if cs != nil {
				cs.owners[ownerKey{id, owner}] = true
			}
		}
		if pchanged {
			d.Partitions[id] = cur
			changed = true
		}
	}
	return changed
}

// mergeInstance joins two versions of one instance entry: the newer
// register (every field but the heartbeat) and the larger heartbeat.
func mergeInstance(a, b InstanceDesc) InstanceDesc {
	hb := max(a.Heartbeat, b.Heartbeat)
	if instanceNewer(b, a) {
		a = b
	}
	a.Heartbeat = hb
	return a
}

// instanceNewer reports whether a's register wins over b's: by UpdatedAt,
// then by state order, then by the other fields so that the order is total
// and the merge commutative even for two writers that should not exist.
func instanceNewer(a, b InstanceDesc) bool {
	switch {
	case a.UpdatedAt != b.UpdatedAt:
		return a.UpdatedAt > b.UpdatedAt
	case a.State != b.State:
		return a.State > b.State
	case a.Addr != b.Addr:
		return a.Addr > b.Addr
	case a.Zone != b.Zone:
		return a.Zone > b.Zone
	case a.Role != b.Role:
		return a.Role > b.Role
	default:
		return a.RegisteredAt > b.RegisteredAt
	}
}

func partitionNewer(a, b PartitionDesc) bool {
	if a.StateChangedAt != b.StateChangedAt {
		return a.StateChangedAt > b.StateChangedAt
	}
	return a.State > b.State
}

func ownerNewer(a, b OwnerDesc) bool {
	if a.UpdatedAt != b.UpdatedAt {
		return a.UpdatedAt > b.UpdatedAt
	}
	return a.State > b.State
}

// GC removes the tombstones (LEFT instances, REMOVED owners) written
// before now − ttl and returns how many it removed. It is not part of
// Merge, which must not depend on the clock: each node collects its own,
// and a node that has not yet sends a tombstone to one that has, which
// merely brings it back until the next collection.
func (d *Desc) GC(now time.Time, ttl time.Duration) (removed int) {
	cutoff := now.Add(-ttl).UnixNano()
	for id, in := range d.Instances {
		if in.State == InstanceLeft && in.UpdatedAt < cutoff {
			delete(d.Instances, id)
			removed++
		}
	}
	for id, p := range d.Partitions {
		n := 0
		for _, o := range p.Owners {
			if o.State == OwnerRemoved && o.UpdatedAt < cutoff {
				n++
			}
		}
		if n == 0 {
			continue
		}
		owners := make(map[string]OwnerDesc, len(p.Owners)-n)
		for owner, o := range p.Owners {
			if o.State != OwnerRemoved || o.UpdatedAt >= cutoff {
				owners[owner] = o
			}
		}
		p.Owners = owners
		d.Partitions[id] = p
		removed += n
	}
	return removed
}

// validate reports a decoded Desc that no correct node sends: keys that
// disagree with the IDs inside, empty IDs, negative partitions, missing
// states. Decoding already rejected unknown state names.
func (d *Desc) validate() error {
	for id, in := range d.Instances {
		if id == "" || in.ID != id {
			return fmt.Errorf("instance key %q holds ID %q", id, in.ID)
		}
		if in.State == 0 {
			return fmt.Errorf("instance %q: no state", id)
		}
	}
	for id, p := range d.Partitions {
		if id < 0 || p.ID != id {
			return fmt.Errorf("partition key %d holds ID %d", id, p.ID)
		}
		if p.State == 0 {
			return fmt.Errorf("partition %d: no state", id)
		}
		for owner, o := range p.Owners {
			if owner == "" || o.State == 0 {
				return fmt.Errorf("partition %d: invalid owner %q", id, owner)
			}
		}
	}
	return nil
}
