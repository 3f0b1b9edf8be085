package ring

import (
	"context"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate is the ring as memberlist sees it: memberlist calls it to fill
// gossip packets with queued changes (GetBroadcasts), to hand over a
// received change (NotifyMsg), and on both sides of a full state exchange
// (LocalState, then MergeRemoteState with the other side's).
type delegate struct{ r *Ring }

var _ memberlist.Delegate = delegate{}

// NodeMeta is empty: everything about an instance travels in the Desc,
// where it merges, instead of in memberlist's per-node metadata.
func (delegate) NodeMeta(int) []byte { return nil }

func (d delegate) NotifyMsg(b []byte) { d.r.receive(b, msgBroadcast, false) }

func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	msgs := d.r.queue.get(overhead, limit)
	for _, m := range msgs {
		d.r.m.sent(msgBroadcast, len(m))
	}
	return msgs
}

func (d delegate) LocalState(bool) []byte {
	d.r.mu.RLock()
	b, err := encodeDesc(&d.r.desc)
	d.r.mu.RUnlock()
	if err != nil {
		d.r.logger.Error("ring: encode state for push/pull", "err", err)
		return nil
	}
	d.r.m.sent(msgPushPull, len(b))
	return b
}

func (d delegate) MergeRemoteState(buf []byte, join bool) {
	if len(buf) == 0 {
		return // a peer with nothing to say (or an encoding failure there)
	}
	d.r.receive(buf, msgPushPull, join)
}

// nodeEvents keeps memberlist's view of nodes for /memberlist, including
// the ones that left or died (memberlist's Members lists only the living),
// and logs the transitions. Memberlist calls it with its own locks held, so
// it must not call back into memberlist.
type nodeEvents struct {
	logger *slog.Logger
	mu     sync.Mutex
	nodes  map[string]nodeEvent
}

type nodeEvent struct {
	Name  string    `json:"name"`
	Addr  string    `json:"addr"`
	State string    `json:"state"`
	Since time.Time `json:"since"`
}

func newNodeEvents(logger *slog.Logger) *nodeEvents {
	return &nodeEvents{logger: logger, nodes: map[string]nodeEvent{}}
}

var _ memberlist.EventDelegate = (*nodeEvents)(nil)

func (e *nodeEvents) NotifyJoin(n *memberlist.Node) {
	e.record(n, "alive")
	e.logger.Info("ring: memberlist node joined", "node", n.Name, "addr", n.Address())
}

func (e *nodeEvents) NotifyLeave(n *memberlist.Node) {
	state := "dead"
	if n.State == memberlist.StateLeft {
		state = "left"
	}
	e.record(n, state)
	e.logger.Info("ring: memberlist node gone", "node", n.Name, "addr", n.Address(), "state", state)
}

func (e *nodeEvents) NotifyUpdate(n *memberlist.Node) { e.record(n, "alive") }

func (e *nodeEvents) record(n *memberlist.Node, state string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nodes[n.Name] = nodeEvent{Name: n.Name, Addr: n.Address(), State: state, Since: time.Now()}
}

// prune forgets nodes gone since before cutoff, so that a lab restarting
// components under new names does not grow the map forever.
func (e *nodeEvents) prune(cutoff time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for name, n := range e.nodes {
		if n.State != "alive" && n.Since.Before(cutoff) {
			delete(e.nodes, name)
		}
	}
}

func (e *nodeEvents) snapshot() map[string]nodeEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.nodes)
}

// logWriter routes memberlist's log lines, which carry their level as a
// "[DEBUG]", "[INFO]", "[WARN]" or "[ERR]" prefix, to slog at that level,
// so its warnings (a peer reachable over TCP but not UDP, a failed push/
// pull) show at the component's log level while its debug chatter does not.
type logWriter struct{ l *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelDebug
	for _, lv := range []struct {
		prefix string
		level  slog.Level
	}{
		{"[ERR]", slog.LevelError},
		{"[ERROR]", slog.LevelError},
		{"[WARN]", slog.LevelWarn},
		{"[INFO]", slog.LevelInfo},
		{"[DEBUG]", slog.LevelDebug},
	} {
		if rest, ok := strings.CutPrefix(msg, lv.prefix); ok {
			msg, level = strings.TrimSpace(rest), lv.level
			break
		}
	}
	if level > slog.LevelDebug && strings.Contains(msg, "use of closed network connection") {
		// A probe racing with this node's own shutdown: expected, and
		// alarming only to someone reading the log at Ctrl-C.
		level = slog.LevelDebug
	}
	w.l.Log(context.Background(), level, msg)
	return len(p), nil
}
