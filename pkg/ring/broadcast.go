package ring

import (
	"cmp"
	"math"
	"slices"
	"sync"
)

// broadcastQueue holds the changes waiting to be gossiped: the latest
// message per key, each sent RetransmitMult·⌈log10(N+1)⌉ times (N the
// cluster size) and then dropped. That many sends to random peers, plus the
// re-broadcast by every node that learns something new, reach the whole
// cluster with high probability; push/pull catches the rest.
//
// It does what memberlist's TransmitLimitedQueue does, and exists because
// that queue (v0.7.0) can silently drop a message: it resets its ID
// counter when it runs empty in the middle of replacing a message, and a
// later message of the same length then gets the same ID and overwrites the
// first in its B-tree (hashicorp/memberlist#263 and #322, open). The ring
// replaces messages by key constantly, and heartbeat messages all have the
// same length, so the bug struck within seconds: an instance's heartbeats
// vanished from its own queue and the others heard of it only through
// push/pull. A map and a sort over a few dozen entries cannot collide.
type broadcastQueue struct {
	numNodes       func() int
	retransmitMult int

	mu    sync.Mutex
	seq   uint64
	items map[string]*queued
}

type queued struct {
	key       string
	msg       []byte
	transmits int
	seq       uint64        // queue order: of two equally sent messages, the newer goes first
	done      chan struct{} // closed once sent its full number of times, or replaced
}

func newBroadcastQueue(numNodes func() int, retransmitMult int) *broadcastQueue {
	return &broadcastQueue{numNodes: numNodes, retransmitMult: retransmitMult, items: map[string]*queued{}}
}

// push queues msg under key, replacing a message still queued under it, and
// returns a channel closed once msg has been sent its full number of times
// or replaced in turn.
func (q *broadcastQueue) push(key string, msg []byte) <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if old, ok := q.items[key]; ok {
		close(old.done)
	}
	q.seq++
	it := &queued{key: key, msg: msg, seq: q.seq, done: make(chan struct{})}
	q.items[key] = it
	return it.done
}

// get returns the messages to piggyback on one gossip packet: the least
// sent first (so a new change overtakes old ones that have had turns), as
// many as fit in limit bytes with overhead bytes each.
func (q *broadcastQueue) get(overhead, limit int) [][]byte {
	n := q.numNodes() // outside the lock: it takes memberlist's
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil
	}
	sendLimit := q.retransmitMult * int(math.Ceil(math.Log10(float64(n+1))))
	order := make([]*queued, 0, len(q.items))
	for _, it := range q.items {
		order = append(order, it)
	}
	slices.SortFunc(order, func(a, b *queued) int {
		return cmp.Or(cmp.Compare(a.transmits, b.transmits), cmp.Compare(b.seq, a.seq))
	})
	var out [][]byte
	used := 0
	for _, it := range order {
		if used+overhead+len(it.msg) > limit {
			continue
		}
		used += overhead + len(it.msg)
		out = append(out, it.msg)
		if it.transmits++; it.transmits >= sendLimit {
			delete(q.items, it.key)
			close(it.done)
		}
	}
	return out
}

// len returns the number of queued messages.
func (q *broadcastQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
