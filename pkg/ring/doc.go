// Package ring is lokilab's membership: which components are running and in
// which state, which Kafka partitions exist and which ingester owns each. It
// is gossiped with hashicorp/memberlist and written by hand rather than taken
// from a ring library, because the mechanism is the lesson (see
// docs/adr/0002-own-ring-on-memberlist.md): a reader can follow a change from
// the gossip message that carries it to the partition owner it moves, in
// this one package.
//
// # What is gossiped
//
// Memberlist only knows which processes answer its probes. What the
// components read is one value every node keeps a copy of, the [Desc]:
//
//   - Instances: per instance ID, its role (distributor, ingester, querier,
//     compactor), its HTTP address and zone, its state (JOINING → ACTIVE →
//     LEAVING), the time it last wrote a heartbeat, and the time its entry
//     last changed.
//   - Partitions: per Kafka partition, its state (PENDING, ACTIVE, INACTIVE)
//     and the instances that own it, each with an ownership state (JOINING
//     while it catches up, ACTIVE, LEAVING while it hands over).
//
// A change travels as a small Desc holding only the changed entries; a full
// state exchange carries the whole Desc. Both are JSON, so /memberlist can
// show exactly what is on the wire.
//
// # A merge that needs no coordinator
//
// Every node folds what it receives into its copy with [Desc.Merge]. There
// is no leader to order updates, and gossip delivers them late, twice, or in
// any order, so for the copies to end up equal the merge must not care: it
// is commutative, associative and idempotent (a join-semilattice; a
// "state-based CRDT").
//
// That is easy here because every key has one writer whose timestamps only
// grow. An instance alone writes its own entry and its own ownership of each
// partition, stamping each write with max(wall clock, last stamp + 1), so
// per key "the larger timestamp wins" (last-writer-wins) is simply "the
// writer's latest word". Ties, which a correct writer never produces, are
// broken by state order and then by the remaining fields, so that even a
// misconfigured pair of processes sharing an ID converges to the same value
// everywhere. The heartbeat is a second register in the instance entry that
// merges by maximum, so a heartbeat and a state change that cross on the wire
// never undo each other.
//
// Deletion is a write like any other: a tombstone (an instance in state
// LEFT, an owner in state REMOVED) that wins by timestamp over the entry it
// replaces and hides it from every view. Tombstones are garbage-collected
// after LeftTombstoneTTL. That TTL is the one place where the merge meets
// the clock: a node that was cut off for longer than the TTL and still holds
// the old entry can bring it back after the tombstone is gone. Cassandra's
// gc_grace_seconds is the same trade-off; the default (5m) is far longer
// than anything the lab disconnects.
//
// Two writes break the one-writer rule on purpose. An operator may forget an
// unhealthy instance (the button on /ring), which writes a tombstone on its
// behalf; and any node may change a partition's state (an operator scaling
// the topic). If a forgotten instance turns out to be alive, it sees a newer
// entry about itself that it did not write and refutes it by rewriting its
// own with a larger timestamp: memberlist's incarnation numbers in
// miniature. Partition states are set by one operator at a time; two
// concurrent ones are ordered by their clocks.
//
// # Heartbeats and health
//
// Every HeartbeatPeriod an instance rewrites its Heartbeat. Another node
// calls it healthy while now − Heartbeat ≤ HeartbeatTimeout and it has not
// left. Nothing is removed for being unhealthy: a crashed instance stays in
// the ring, marked unhealthy, until it comes back under the same ID or is
// forgotten. Memberlist's own failure detector (SWIM probes) decides only
// whom to gossip with; the ring's health is its own rule on its own data,
// so it is visible on /ring and tunable in one place.
//
// The heartbeat age compares a timestamp written by one clock with another
// clock. On one machine they agree; across machines NTP keeps them within
// milliseconds, far below the timeout, but a clock off by seconds shifts
// the verdict by as much.
//
// # Broadcasts and push/pull
//
// A change is delivered two ways. First as a broadcast: queued, and
// piggybacked on the gossip packets (UDP, at most ~1400 bytes) memberlist
// sends to three random peers every GossipInterval, each message sent
// RetransmitMult·⌈log10(N+1)⌉ times (4 up to 9 nodes). A node that learns
// something new from a broadcast broadcasts it again, so a change spreads
// like an epidemic and reaches every node in O(log N) rounds. The queue holds
// one message per key, so a newer heartbeat replaces an unsent older one.
// (The queue is the ring's own rather than memberlist's
// TransmitLimitedQueue, which can lose messages: see broadcastQueue.)
//
// Broadcasts can be lost (UDP, a peer briefly unreachable, a message
// replaced before it was sent). Push/pull is the anti-entropy behind them:
// every PushPullInterval a node exchanges its full Desc with one random peer
// over TCP and both merge, so whatever the broadcasts missed converges
// within a few intervals. A joining node learns the whole state the same
// way. It costs the full state in both directions, which is why it runs
// seconds apart while broadcasts run every few hundred milliseconds.
//
// # The partition ring, and why ownership moves only deliberately
//
// Distributors route a stream by its token (a hash of tenant and labels) to
// a partition: each partition has TokensPerPartition tokens derived from its
// ID alone, so every node computes the same ring with no coordination, and
// a token belongs to the first ACTIVE partition token at or after it. What
// decides where a stream is written is therefore the set of ACTIVE
// partitions, which only an operator changes (SetPartitionState). Which
// ingesters are alive does not enter into it: when an ingester crashes its
// partitions keep receiving records, which wait in Kafka for their owner.
//
// Ownership of partitions by ingesters is computed, not negotiated: every
// ingester evaluates [AssignPartitions] (rendezvous hashing) over the same
// gossiped view and takes the partitions that fall to it. It moves when an
// ingester joins, declares itself LEAVING, or has been silent for
// HeartbeatTimeout, and then only the partitions that the change concerns
// move; every other ingester keeps consuming undisturbed. An ingester that
// restarts within the timeout moves nothing. Ownership states make each
// hand-over visible: the new owner registers JOINING while it catches up,
// the old one LEAVING until it lets go.
//
// A Kafka consumer group, the alternative lokilab also runs, answers the
// same question by rebalancing: every join, leave or session timeout starts
// a group-wide round in which (with the eager protocol) every member gives
// up every partition, and (with cooperative-sticky) every member still has
// to take part. Comparing pause time, duplicates and lag of the two is one
// of the lab's experiments.
package ring
