// Package netcut cuts one process off the network from the inside: a
// Switch that, while cut, fails the process's Kafka connections, drops its
// memberlist gossip both ways and resets the connections its query
// endpoints receive — without stopping the process.
//
// Why in-process as well as a real network fault: the lab's processes
// share one loopback interface, where a port-level firewall cannot tell
// one ingester's outgoing Kafka connections from another's. The faithful
// version, a network namespace per process behind a veth pair, is
// pkg/netns (`lokilab run -processes.netns=…`); it needs root and
// iproute2, and this cut works anywhere. A cut at the three places where
// the process meets its peers (the Kafka dialer, the memberlist
// transport, the HTTP handlers the querier calls) gives the same view
// from the outside: the
// broker sees the member's connections drop and its session expire,
// memberlist peers stop hearing it and mark it dead, the querier's
// requests to it fail — while inside, the process keeps running and
// keeps what it holds in memory, as a partitioned process does.
//
// What it does not imitate: packets are refused at once rather than lost
// into a timeout (a dial fails with "connection refused", not after the
// dial timeout: pkg/netns shows the difference), and the process's other traffic (the object store, its
// /metrics, /ready) still flows — a partition from its peers, not from the
// world.
//
// The Switch is off unless a process is started with the lab's faults on
// (see pkg/app's LabFaultsEnv): no production path pays for it.
package netcut

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrCut is the error a cut connection, dial or packet write returns.
var ErrCut = errors.New("netcut: cut off from its peers (lab fault)")

// Switch is one process's cut. The zero value is not usable: use New.
type Switch struct {
	cut atomic.Bool
	// since is when the current cut began (UnixNano), 0 while healed.
	since atomic.Int64
	// cuts counts Cut calls that cut (not repeats), for the status.
	cuts atomic.Int64

	mu    sync.Mutex
	conns map[*conn]struct{}
}

// New returns a Switch, healed.
func New() *Switch { return &Switch{conns: map[*conn]struct{}{}} }

// Cut cuts the process off: every connection made through Dialer is
// closed now and new ones fail until Heal; memberlist packets are dropped
// both ways and streams refused; wrapped handlers reset their connections.
func (s *Switch) Cut() {
	if s.cut.Swap(true) {
		return
	}
	s.since.Store(time.Now().UnixNano())
	s.cuts.Add(1)
	s.mu.Lock()
	conns := s.conns
	s.conns = map[*conn]struct{}{}
	s.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
}

// Heal ends the cut: new dials succeed again (clients reconnect on their
// own), gossip flows, handlers serve.
func (s *Switch) Heal() {
	if s.cut.Swap(false) {
		s.since.Store(0)
	}
}

// IsCut reports whether the process is cut off now.
func (s *Switch) IsCut() bool { return s.cut.Load() }

// Dialer returns a dial function for kgo.Dialer (or any client taking
// one): it dials with base (a zero net.Dialer when nil) while healed and
// fails with ErrCut while cut; the connections it returns are closed when
// a cut begins.
func (s *Switch) Dialer(base *net.Dialer) func(ctx context.Context, network, host string) (net.Conn, error) {
	if base == nil {
		base = &net.Dialer{}
	}
	return func(ctx context.Context, network, host string) (net.Conn, error) {
		if s.IsCut() {
			return nil, fmt.Errorf("dial %s %s: %w", network, host, ErrCut)
		}
		c, err := base.DialContext(ctx, network, host)
		if err != nil {
			return nil, err
		}
		w := &conn{Conn: c, s: s}
		s.mu.Lock()
		s.conns[w] = struct{}{}
		s.mu.Unlock()
		// A cut that began while we dialled: this connection must not
		// outlive it.
		if s.IsCut() {
			_ = w.Close()
			return nil, fmt.Errorf("dial %s %s: %w", network, host, ErrCut)
		}
		return w, nil
	}
}

// conn is a connection made through Dialer, tracked so a cut can close it.
type conn struct {
	net.Conn
	s *Switch
}

func (c *conn) Read(b []byte) (int, error) {
	if c.s.IsCut() {
		return 0, ErrCut
	}
	return c.Conn.Read(b)
}

func (c *conn) Write(b []byte) (int, error) {
	if c.s.IsCut() {
		return 0, ErrCut
	}
	return c.Conn.Write(b)
}

func (c *conn) Close() error {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}

// Handler wraps h: while cut, a request's connection is reset without an
// answer (hijacked and closed), as a peer across a partition sees it;
// healed, h serves.
func (s *Switch) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.IsCut() {
			h.ServeHTTP(w, r)
			return
		}
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // a reset, not a polite close
			}
			_ = c.Close()
			return
		}
		// HTTP/2 or a recorder: no connection to drop; a 503 is the
		// closest answer.
		http.Error(w, ErrCut.Error(), http.StatusServiceUnavailable)
	})
}

// Status is the Switch's state, as its admin endpoint reports it.
type Status struct {
	Cut bool `json:"cut"`
	// Since is when the current cut began; zero while healed.
	Since time.Time `json:"since,omitzero"`
	// Cuts is how many times it was cut.
	Cuts int64 `json:"cuts"`
	// OpenConns is the connections made through Dialer that are open.
	OpenConns int `json:"open_conns"`
}

// Status reports the Switch's state.
func (s *Switch) Status() Status {
	st := Status{Cut: s.IsCut(), Cuts: s.cuts.Load()}
	if ns := s.since.Load(); ns != 0 {
		st.Since = time.Unix(0, ns)
	}
	s.mu.Lock()
	st.OpenConns = len(s.conns)
	s.mu.Unlock()
	return st
}

// Transport wraps a memberlist transport: while cut, packets to and from
// peers are dropped (a write reports success, as UDP into a partition
// does) and streams fail both ways. Healed, it passes everything through.
// Close it with Shutdown, as memberlist does.
func (s *Switch) Transport(inner memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	t := &transport{NodeAwareTransport: inner, s: s,
		packets: make(chan *memberlist.Packet), streams: make(chan net.Conn),
		closing: make(chan struct{}), done: make(chan struct{})}
	go t.forwardPackets()
	go t.forwardStreams()
	return t
}

type transport struct {
	memberlist.NodeAwareTransport
	s           *Switch
	packets     chan *memberlist.Packet
	streams     chan net.Conn
	closing     chan struct{} // Shutdown began: drain, hand nothing on
	closingOnce sync.Once
	done        chan struct{} // the inner transport is shut down: stop
	shutdown    sync.Once
}

func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.s.IsCut() {
		return time.Now(), nil // lost on the way
	}
	return t.NodeAwareTransport.WriteTo(b, addr)
}

func (t *transport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	if t.s.IsCut() {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, addr)
}

func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.s.IsCut() {
		return nil, fmt.Errorf("memberlist dial %s: %w", addr, ErrCut)
	}
	return t.NodeAwareTransport.DialTimeout(addr, timeout)
}

func (t *transport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.s.IsCut() {
		return nil, fmt.Errorf("memberlist dial %s: %w", addr.Addr, ErrCut)
	}
	return t.NodeAwareTransport.DialAddressTimeout(addr, timeout)
}

func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packets }
func (t *transport) StreamCh() <-chan net.Conn           { return t.streams }

// Shutdown first switches the forwarders to draining (what arrives is
// dropped, not handed on), then shuts the inner transport down, then stops
// the forwarders. Stopping them first hangs: memberlist's own transport
// waits in Shutdown for its listeners, and a listener blocked handing over
// a packet that nobody takes any more never returns.
func (t *transport) Shutdown() error {
	t.closingOnce.Do(func() { close(t.closing) })
	err := t.NodeAwareTransport.Shutdown()
	t.shutdown.Do(func() { close(t.done) })
	return err
}

// forwardPackets passes incoming packets on while healed and drops them
// while cut.
func (t *transport) forwardPackets() {
	in := t.NodeAwareTransport.PacketCh()
	for {
		select {
		case p := <-in:
			if t.s.IsCut() {
				continue
			}
			select {
			case t.packets <- p:
			case <-t.closing: // dropped; keep draining the inner transport
			}
		case <-t.done:
			return
		}
	}
}

// forwardStreams passes incoming streams on while healed and closes them
// while cut.
func (t *transport) forwardStreams() {
	in := t.NodeAwareTransport.StreamCh()
	for {
		select {
		case c := <-in:
			if t.s.IsCut() {
				_ = c.Close()
				continue
			}
			select {
			case t.streams <- c:
			case <-t.closing:
				_ = c.Close()
			}
		case <-t.done:
			return
		}
	}
}
