package ring_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lokilab/lokilab/pkg/ring"
)

// randomDesc draws a Desc from a small universe of keys, timestamps and
// states, so that random pairs collide on keys and tie on timestamps: the
// cases a merge can get wrong.
func randomDesc(rng *rand.Rand) ring.Desc {
	var d ring.Desc
	for range rng.IntN(5) {
		id := fmt.Sprintf("i%d", rng.IntN(4))
		if d.Instances == nil {
			d.Instances = map[string]ring.InstanceDesc{}
		}
		d.Instances[id] = ring.InstanceDesc{
			ID:           id,
			Addr:         fmt.Sprintf("10.0.0.%d:3100", rng.IntN(2)),
			Role:         []string{ring.RoleIngester, ring.RoleDistributor}[rng.IntN(2)],
			State:        ring.InstanceState(1 + rng.IntN(4)),
			Heartbeat:    int64(rng.IntN(6)),
			RegisteredAt: int64(rng.IntN(2)),
			UpdatedAt:    int64(rng.IntN(4)),
		}
	}
	for range rng.IntN(4) {
		id := int32(rng.IntN(3))
		if d.Partitions == nil {
			d.Partitions = map[int32]ring.PartitionDesc{}
		}
		p := ring.PartitionDesc{ID: id, State: ring.PartitionState(1 + rng.IntN(3)), StateChangedAt: int64(rng.IntN(3))}
		for range rng.IntN(3) {
			if p.Owners == nil {
				p.Owners = map[string]ring.OwnerDesc{}
			}
			p.Owners[fmt.Sprintf("i%d", rng.IntN(4))] = ring.OwnerDesc{State: ring.OwnerState(1 + rng.IntN(4)), UpdatedAt: int64(rng.IntN(4))}
		}
		d.Partitions[id] = p
	}
	return d
}

// canon is a Desc's canonical form: JSON sorts map keys and omits empty
// maps, so two Descs with the same entries print the same.
func canon(t *testing.T, d ring.Desc) string {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func merged(ds ...ring.Desc) ring.Desc {
	var out ring.Desc
	for _, d := range ds {
		out.Merge(&d)
	}
	return out
}

func TestMergeIsASemilattice(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 0))
	for i := range 2000 {
		a, b, c := randomDesc(rng), randomDesc(rng), randomDesc(rng)

		ab, ba := a.Clone(), b.Clone()
		ab.Merge(&b)
		ba.Merge(&a)
		if canon(t, ab) != canon(t, ba) {
			t.Fatalf("case %d: not commutative:\na⊔b = %s\nb⊔a = %s", i, canon(t, ab), canon(t, ba))
		}

		left := merged(a, b)
		left.Merge(&c)
		bc := merged(b, c)
		right := a.Clone()
		right.Merge(&bc)
		if canon(t, left) != canon(t, right) {
			t.Fatalf("case %d: not associative:\n(a⊔b)⊔c = %s\na⊔(b⊔c) = %s", i, canon(t, left), canon(t, right))
		}

		aa := a.Clone()
		if aa.Merge(&a) {
			t.Fatalf("case %d: merging a Desc into itself reported a change", i)
		}
		if canon(t, aa) != canon(t, a) {
			t.Fatalf("case %d: not idempotent", i)
		}

		// changed is reported exactly when something changed.
		before := canon(t, a)
		x := a.Clone()
		changed := x.Merge(&b)
		if changed != (canon(t, x) != before) {
			t.Fatalf("case %d: Merge reported changed=%v, state went from %s to %s", i, changed, before, canon(t, x))
		}
		if x.Merge(&b) {
			t.Fatalf("case %d: merging the same Desc twice reported a second change", i)
		}
	}
}

// Replicas that receive the same updates, in any order, any number of
// times, end up equal: what the algebra buys.
func TestMergeConvergesWhateverTheDelivery(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for round := range 200 {
		updates := make([]ring.Desc, 8)
		for i := range updates {
			updates[i] = randomDesc(rng)
		}
		var want string
		for replica := range 4 {
			var d ring.Desc
			order := rng.Perm(len(updates))
			order = append(order, rng.Perm(len(updates))[:3]...) // duplicates
			for _, i := range order {
				d.Merge(&updates[i])
			}
			if replica == 0 {
				want = canon(t, d)
			} else if got := canon(t, d); got != want {
				t.Fatalf("round %d: replica %d diverged:\n%s\nwant\n%s", round, replica, got, want)
			}
		}
	}
}

func TestMergeRules(t *testing.T) {
	inst := func(state ring.InstanceState, updated, hb int64) ring.Desc {
		return ring.Desc{Instances: map[string]ring.InstanceDesc{"a": {ID: "a", Role: ring.RoleIngester, State: state, UpdatedAt: updated, Heartbeat: hb}}}
	}
	owner := func(state ring.OwnerState, updated int64) ring.Desc {
		return ring.Desc{Partitions: map[int32]ring.PartitionDesc{0: {ID: 0, State: ring.PartitionActive, Owners: map[string]ring.OwnerDesc{"a": {State: state, UpdatedAt: updated}}}}}
	}
	part := func(state ring.PartitionState, changed int64) ring.Desc {
		return ring.Desc{Partitions: map[int32]ring.PartitionDesc{0: {ID: 0, State: state, StateChangedAt: changed}}}
	}
	for _, c := range []struct {
		name          string
		local, remote ring.Desc
		want          ring.Desc
		wantChanged   bool
	}{
		{"newer state wins", inst(ring.InstanceJoining, 1, 1), inst(ring.InstanceActive, 2, 2), inst(ring.InstanceActive, 2, 2), true},
		{"older state loses", inst(ring.InstanceActive, 2, 2), inst(ring.InstanceJoining, 1, 1), inst(ring.InstanceActive, 2, 2), false},
		{"newer tombstone hides the instance", inst(ring.InstanceActive, 2, 5), inst(ring.InstanceLeft, 3, 2), inst(ring.InstanceLeft, 3, 5), true},
		{"older tombstone loses to a re-registration", inst(ring.InstanceJoining, 9, 9), inst(ring.InstanceLeft, 3, 3), inst(ring.InstanceJoining, 9, 9), false},
		{"heartbeat merges by maximum under an older state", inst(ring.InstanceLeaving, 5, 6), inst(ring.InstanceActive, 4, 8), inst(ring.InstanceLeaving, 5, 8), true},
		{"equal timestamps: the later state wins", inst(ring.InstanceLeaving, 5, 5), inst(ring.InstanceActive, 5, 5), inst(ring.InstanceLeaving, 5, 5), false},
		{"newer owner tombstone removes the owner", owner(ring.OwnerActive, 2), owner(ring.OwnerRemoved, 3), owner(ring.OwnerRemoved, 3), true},
		{"older owner tombstone loses", owner(ring.OwnerJoining, 4), owner(ring.OwnerRemoved, 3), owner(ring.OwnerJoining, 4), false},
		{"gossiped partition state overrides the implicit ACTIVE at 0", part(ring.PartitionActive, 0), part(ring.PartitionInactive, 7), part(ring.PartitionInactive, 7), true},
		{"implicit ACTIVE at 0 does not override a gossiped state", part(ring.PartitionPending, 7), part(ring.PartitionActive, 0), part(ring.PartitionPending, 7), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := c.local.Clone()
			if got := d.Merge(&c.remote); got != c.wantChanged {
				t.Errorf("changed = %v, want %v", got, c.wantChanged)
			}
			if canon(t, d) != canon(t, c.want) {
				t.Errorf("got %s, want %s", canon(t, d), canon(t, c.want))
			}
		})
	}
}

func TestGCRemovesOnlyExpiredTombstones(t *testing.T) {
	now := time.Unix(1000, 0)
	ttl := time.Minute
	old, recent := now.Add(-2*ttl).UnixNano(), now.Add(-ttl/2).UnixNano()
	d := ring.Desc{
		Instances: map[string]ring.InstanceDesc{
			"left-long-ago": {ID: "left-long-ago", State: ring.InstanceLeft, UpdatedAt: old},
			"left-recently": {ID: "left-recently", State: ring.InstanceLeft, UpdatedAt: recent},
			"silent":        {ID: "silent", State: ring.InstanceActive, UpdatedAt: old, Heartbeat: old},
		},
		Partitions: map[int32]ring.PartitionDesc{0: {ID: 0, State: ring.PartitionActive, Owners: map[string]ring.OwnerDesc{
			"removed-long-ago": {State: ring.OwnerRemoved, UpdatedAt: old},
			"removed-recently": {State: ring.OwnerRemoved, UpdatedAt: recent},
			"owner":            {State: ring.OwnerActive, UpdatedAt: old},
		}}},
	}
	snapshot := d.Clone()
	if n := d.GC(now, ttl); n != 2 {
		t.Errorf("GC removed %d, want 2", n)
	}
	for _, id := range []string{"left-recently", "silent"} {
		if _, ok := d.Instances[id]; !ok {
			t.Errorf("GC removed instance %s", id)
		}
	}
	if _, ok := d.Instances["left-long-ago"]; ok {
		t.Error("expired instance tombstone kept")
	}
	owners := d.Partitions[0].Owners
	if _, ok := owners["removed-long-ago"]; ok || len(owners) != 2 {
		t.Errorf("owners after GC: %v", owners)
	}
	if len(snapshot.Partitions[0].Owners) != 3 {
		t.Error("GC changed a clone")
	}
	if n := d.GC(now.Add(ttl), ttl); n != 2 {
		t.Errorf("second GC a TTL later removed %d, want 2", n)
	}
}

func TestStatesEncodeAsNames(t *testing.T) {
	b, err := json.Marshal(ring.InstanceDesc{ID: "a", State: ring.InstanceLeaving})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["state"] != "LEAVING" {
		t.Errorf("state encodes as %v", m["state"])
	}
	var in ring.InstanceDesc
	if err := json.Unmarshal([]byte(`{"state":"SLEEPING"}`), &in); err == nil {
		t.Error("unknown state name decoded")
	}
	if _, err := json.Marshal(ring.InstanceDesc{}); err == nil {
		t.Error("zero state encoded")
	}
	for _, c := range []struct{ got, want string }{
		{ring.InstanceLeft.String(), "LEFT"},
		{ring.PartitionInactive.String(), "INACTIVE"},
		{ring.OwnerRemoved.String(), "REMOVED"},
		{ring.OwnerState(9).String(), "OwnerState(9)"},
	} {
		if c.got != c.want {
			t.Errorf("String() = %q, want %q", c.got, c.want)
		}
	}
}
