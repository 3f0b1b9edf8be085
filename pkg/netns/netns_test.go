package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requireNetns skips the test loudly — on stderr too, so that a CI log
// read without -v shows it — where namespaces cannot be made.
func requireNetns(t *testing.T) {
	t.Helper()
	if err := Check(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "SKIPPING %s: network namespaces unavailable: %v\n", t.Name(), err)
		t.Skipf("SKIPPED LOUDLY: network namespaces unavailable: %v", err)
	}
}

// newNetwork makes a network for the test, removed when it ends however
// it ends, and checks that nothing of it is left.
func newNetwork(t *testing.T) *Network {
	t.Helper()
	var cmds []string
	n, err := New(context.Background(), Config{Log: func(c string) { cmds = append(cmds, c) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		spaces := n.Namespaces()
		if err := n.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		for _, ns := range spaces {
			if exists(t, "netns", "list").has(ns.Name) || exists(t, "-o", "link", "show").has(ns.HostLink+"@") {
				t.Errorf("%s (%s) left behind after Close", ns.Name, ns.HostLink)
			}
		}
		if t.Failed() {
			t.Logf("commands run:\n  %s", strings.Join(cmds, "\n  "))
		}
	})
	return n
}

type listing string

func (l listing) has(s string) bool { return strings.Contains(string(l), s) }

func exists(t *testing.T, args ...string) listing {
	t.Helper()
	ip, err := FindIP()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ip, args...).Output()
	if err != nil {
		t.Fatalf("ip %v: %v", args, err)
	}
	return listing(out)
}

// listenIn serves TCP inside ns on its address: a process in the
// namespace, without starting one.
func listenIn(t *testing.T, ns *Namespace) string {
	t.Helper()
	// A listener, like a dial, belongs to the namespace of the thread
	// that creates it: listen enters the namespace on a locked thread.
	ln, err := ns.listen("tcp", net.JoinHostPort(ns.Addr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	return greet(t, ln, "hello from "+ns.Process)
}

// greet answers every connection to ln with one line and closes it, until
// the test ends; it returns ln's address.
func greet(t *testing.T, ln net.Listener, line string) string {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); fmt.Fprintln(c, line) }()
		}
	}()
	return ln.Addr().String()
}

func TestCheckSaysWhyOrNothing(t *testing.T) {
	err := Check(context.Background())
	if err != nil {
		if os.Geteuid() != 0 && !strings.Contains(err.Error(), "not root") {
			t.Errorf("as euid %d, Check = %v; want it to say not root", os.Geteuid(), err)
		}
		t.Skipf("SKIPPED LOUDLY: Check says: %v", err)
	}
	if got := exists(t, "netns", "list"); got.has(NamePrefix + "check-") {
		t.Errorf("Check left its probe namespace: %s", got)
	}
}

func TestNamesFitLinuxAndOwner(t *testing.T) {
	requireNetns(t)
	n := newNetwork(t)
	ns, err := n.Add(context.Background(), "ingester-2")
	if err != nil {
		t.Fatal(err)
	}
	if len(ns.HostLink) > 15 {
		t.Errorf("host link %q longer than 15 bytes", ns.HostLink)
	}
	if want := fmt.Sprintf("lokilab-%d-ingester-2", os.Getpid()); ns.Name != want {
		t.Errorf("namespace %q, want %q", ns.Name, want)
	}
	if !n.Subnet().Contains(ns.HostAddr) || !n.Subnet().Contains(ns.Addr) || ns.Addr != ns.HostAddr.Next() {
		t.Errorf("addresses %s/%s outside %s or not a pair", ns.HostAddr, ns.Addr, n.Subnet())
	}
	if n.HostAddr() != ns.HostAddr {
		t.Errorf("network host address %s, want the first pair's host end %s", n.HostAddr(), ns.HostAddr)
	}
	if !exists(t, "-o", "link", "show", "dev", ns.HostLink).has(fmt.Sprintf("alias lokilab %d ingester-2", os.Getpid())) {
		t.Error("the host end has no alias naming its owner and process")
	}
	if _, err := n.Add(context.Background(), "ingester-2"); err == nil {
		t.Error("a second namespace for the same process was made")
	}
}

// dial dials addr from the host with a timeout.
func dial(addr string, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, timeout)
}

// dialFromInside dials addr from inside ns with a timeout.
func (ns *Namespace) dialFromInside(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return ns.DialContext(ctx, "tcp", addr)
}

// isTimeout: a cut must look like silence (a timeout), not a refusal.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestCutLosesPacketsBothWaysAndHealRestores is the package's promise,
// step by step on one pair: reachable both ways; cut, a dial from either
// side hangs into its timeout (never refused), an established connection
// stalls, the side door still works; healed, everything works again and
// the stalled connection carries on.
func TestCutLosesPacketsBothWaysAndHealRestores(t *testing.T) {
	requireNetns(t)
	ctx := context.Background()
	n := newNetwork(t)
	ns, err := n.Add(ctx, "netns-test-a")
	if err != nil {
		t.Fatal(err)
	}
	inside := listenIn(t, ns)
	hostLn, err := net.Listen("tcp", net.JoinHostPort(ns.HostAddr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	host := greet(t, hostLn, "hello from the host")
	read := func(c net.Conn) (string, error) {
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 64)
		k, err := c.Read(b)
		return strings.TrimSpace(string(b[:k])), err
	}

	// An established connection from the host, read once before the cut
	// and once after the heal.
	long, err := dial(inside, 2*time.Second)
	if err != nil {
		t.Fatalf("host → namespace before the cut: %v", err)
	}
	defer long.Close()

	steps := []struct {
		name  string
		do    func() error
		check func(t *testing.T)
	}{
		{"healed: host reaches the namespace", nil, func(t *testing.T) {
			c, err := dial(inside, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := read(c); got != "hello from netns-test-a" {
				t.Fatalf("read %q, %v", got, err)
			}
		}},
		{"healed: the namespace reaches the host", nil, func(t *testing.T) {
			c, err := ns.dialFromInside(ctx, host, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := read(c); got != "hello from the host" {
				t.Fatalf("read %q, %v", got, err)
			}
		}},
		{"cut: a dial from the host times out, not refused", func() error { return ns.Cut(ctx) }, func(t *testing.T) {
			began := time.Now()
			c, err := dial(inside, 1500*time.Millisecond)
			if err == nil {
				c.Close()
				t.Fatal("dialled through a cut")
			}
			if !isTimeout(err) || time.Since(began) < time.Second {
				t.Fatalf("dial failed with %v after %s; want a timeout after the full 1.5s", err, time.Since(began))
			}
			if st := ns.State(); !st.Cut || st.Since.IsZero() || st.Cuts != 1 {
				t.Fatalf("state %+v", st)
			}
		}},
		{"cut: a dial from the namespace times out", nil, func(t *testing.T) {
			c, err := ns.dialFromInside(ctx, host, 1500*time.Millisecond)
			if err == nil {
				c.Close()
				t.Fatal("dialled out through a cut")
			}
			if !isTimeout(err) {
				t.Fatalf("dial from inside failed with %v; want a timeout", err)
			}
		}},
		{"cut: the side door still reaches the process", nil, func(t *testing.T) {
			c, err := ns.DialContext(ctx, "tcp", inside)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := read(c); got != "hello from netns-test-a" {
				t.Fatalf("read %q, %v", got, err)
			}
		}},
		{"cut twice: nothing changes", func() error { return ns.Cut(ctx) }, func(t *testing.T) {
			if st := ns.State(); st.Cuts != 1 {
				t.Fatalf("a repeated cut counted: %+v", st)
			}
		}},
		{"healed again: both ways work, and the old connection carries on", func() error { return ns.Heal(ctx) }, func(t *testing.T) {
			c, err := dial(inside, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if c, err = ns.dialFromInside(ctx, host, 2*time.Second); err != nil {
				t.Fatal(err)
			}
			c.Close()
			if got, err := read(long); got != "hello from netns-test-a" {
				t.Fatalf("the connection made before the cut read %q, %v", got, err)
			}
			if st := ns.State(); st.Cut || !st.Since.IsZero() {
				t.Fatalf("state %+v after Heal", st)
			}
		}},
	}
	for _, s := range steps {
		if s.do != nil {
			if err := s.do(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
		if !t.Run(s.name, s.check) {
			return
		}
	}
}

// TestTwoNamespacesReachTheHostAddressAndEachOther: the second namespace
// finds the host-side processes at the network's one host address (the
// first pair's), and a cut of the first leaves the second's paths alone.
func TestTwoNamespacesReachTheHostAddressAndEachOther(t *testing.T) {
	requireNetns(t)
	ctx := context.Background()
	n := newNetwork(t)
	a, err := n.Add(ctx, "netns-test-b1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.Add(ctx, "netns-test-b2")
	if err != nil {
		if strings.Contains(err.Error(), "does not forward") {
			fmt.Fprintf(os.Stderr, "SKIPPING %s: %v\n", t.Name(), err)
			t.Skipf("SKIPPED LOUDLY: %v", err)
		}
		t.Fatal(err)
	}
	hostLn, err := net.Listen("tcp", net.JoinHostPort(n.HostAddr().String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	greet(t, hostLn, "hello from the host")
	inA := listenIn(t, a)
	if err := a.Cut(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := b.dialFromInside(ctx, hostLn.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatalf("the second namespace → the host address on the first (cut) pair: %v", err)
	}
	c.Close()
	if c, err := b.dialFromInside(ctx, inA, time.Second); err == nil || !isTimeout(err) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("the second namespace → the cut first: %v, want a timeout", err)
	}
	if err := a.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	c, err = b.dialFromInside(ctx, inA, 2*time.Second)
	if err != nil {
		t.Fatalf("the second namespace → the healed first: %v", err)
	}
	c.Close()
}

// TestSweepRemovesADeadOwnersLeftovers: a network whose owner died (a
// supervisor killed with SIGKILL) is removed by Sweep; a live owner's is
// not.
func TestSweepRemovesADeadOwnersLeftovers(t *testing.T) {
	requireNetns(t)
	ctx := context.Background()
	// A pid that no longer runs: a process started and reaped.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("SKIPPED LOUDLY: cannot run true: %v", err)
	}
	dead := cmd.Process.Pid
	if err := syscall.Kill(dead, 0); err == nil {
		t.Skipf("pid %d was reused already", dead)
	}
	orphan, err := New(ctx, Config{Owner: dead})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = orphan.Close(context.Background()) })
	ons, err := orphan.Add(ctx, "netns-test-c")
	if err != nil {
		t.Fatal(err)
	}
	live := newNetwork(t)
	lns, err := live.Add(ctx, "netns-test-d")
	if err != nil {
		t.Fatal(err)
	}
	removed, err := Sweep(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("swept: %v", removed)
	spaces, links := exists(t, "netns", "list"), exists(t, "-o", "link", "show")
	if spaces.has(ons.Name) || links.has(ons.HostLink+"@") {
		t.Errorf("the dead owner's %s / %s survived Sweep", ons.Name, ons.HostLink)
	}
	if !spaces.has(lns.Name) || !links.has(lns.HostLink+"@") {
		t.Errorf("Sweep removed the live owner's %s / %s", lns.Name, lns.HostLink)
	}
}
