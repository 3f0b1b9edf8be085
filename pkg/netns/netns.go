// Package netns partitions a process from its peers with a real network
// fault: a Linux network namespace of its own, joined to the host by a
// veth pair, built and cut with iproute2's ip(8).
//
// Why, beside pkg/netcut: netcut cuts a process from the inside, at the
// three places it meets its peers, and its cut is a refusal — a dial fails
// at once, a connection is reset. A partition on a real network is mostly
// silence: packets leave and nothing comes back, so a dial hangs until its
// timeout, an established connection stalls and retransmits, a gossip probe
// goes unanswered until the failure detector gives up. Which timeout fires
// first, and what it costs while it waits, is half of what a partition
// teaches; here the kernel provides it and no line of the process knows.
//
// # The layout
//
// A Network belongs to one owner (a supervisor, by pid). It takes a /24 of
// 10.213.0.0/16 that no address on the machine uses, 10.213.X.0/24, and
// for the k-th process it isolates (k from 0) makes
//
//	namespace  lokilab-<owner pid>-<process>            (ip netns add)
//	veth pair  host end ll<pid hex>-<X hex><k hex> ──── eth0 in the namespace
//	addresses  host end 10.213.X.(4k+1)/30               eth0 10.213.X.(4k+2)/30
//	           lo up in the namespace, default route via the host end
//
// Names carry the owner's pid so that two labs on one machine never meet,
// and so that Sweep can tell a dead owner's leftovers from a live one's.
// Interface names stay within Linux's 15 bytes (IFNAMSIZ-1), hence the
// hex. Each host end carries an alias naming its owner and process, for
// whoever reads `ip link`.
//
// The host reaches a namespace through that pair's /30. A namespace reaches
// the host at any of the host's addresses through its default route; the
// first pair's host end (Network.HostAddr) is the one address a
// supervisor's host-side processes listen on, so every namespace finds
// them at one place. Namespaces reach each other through the host, which
// forwards between the pairs — where ip_forward is 1 and no firewall drops
// forwarded packets (docker's FORWARD policy does); Add tries it and says
// so when it cannot.
//
// # The cut
//
// Each end of a pair holds a permanent neighbour entry for the other end's
// address with its real MAC, so no ARP is ever sent. Cut replaces both with
// a MAC nobody has (02:00:00:00:00:00): frames still leave, cross the veth,
// and the far end discards them as addressed to someone else. Nothing is
// refused and the sender is told nothing: TCP retransmits into its
// timeouts, UDP vanishes — the loss a dead switch port gives. Heal puts the
// real MACs back, and connections that have not timed out carry on where
// they stalled. Traffic inside the namespace (its loopback, its own address)
// and on the host is untouched: a partition from the peers, not a crash.
//
// Alternatives rejected:
//   - ip link set down: the host's route to the namespace goes with the
//     link, so the host's packets for it leave by the default route (to
//     the real network), and the namespace side gets "no route to host" at
//     once — errors, not silence.
//   - tc netem loss 100%: the usual tool, and the one to reach for to add
//     delay or partial loss; but sch_netem is a kernel module that many
//     kernels (this lab's reference VM included) do not ship.
//   - a pfifo qdisc of limit 0: works everywhere, but the drop happens in
//     the sender's own queue, and its kernel tells TCP (a local congestion
//     signal a real network never sends).
//   - iptables/nftables DROP: host-wide firewall state, shared with docker
//     and every other user of the machine, and two kernel back ends.
//
// # Why ip(8) and not netlink from Go
//
// iproute2 is what an operator types, and the commands are the lesson:
// every step is one `ip` invocation that can be read, copied and run by
// hand (Network.Log sees each). The one thing done in Go is the side door
// (Namespace.DialContext): a socket opened from inside the namespace,
// which a cut does not reach — the operator's path to a partitioned
// process, as a node agent reaches its pods.
//
// Everything here needs root (CAP_SYS_ADMIN for namespaces, CAP_NET_ADMIN
// for links). Check says in plain words why it cannot work on a machine,
// so that callers can refuse or skip loudly instead of pretending.
package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// NamePrefix starts every namespace this package makes:
// lokilab-<owner pid>-<process>.
const NamePrefix = "lokilab-"

// linkPrefix starts every host-side veth end: ll<pid hex>-<X><k>.
const linkPrefix = "ll"

// nsLink is the namespace's end of its pair, as the process inside sees it.
const nsLink = "eth0"

// bogusMAC is the neighbour address a cut installs: locally administered,
// owned by no interface, so frames sent to it are dropped by the receiver.
const bogusMAC = "02:00:00:00:00:00"

// maxPerNetwork is how many /30s fit a /24.
const maxPerNetwork = 64

// Config configures a Network.
type Config struct {
	// Owner names the network's objects: the pid of the process whose
	// lifetime they share (the supervisor's). Default: this process's.
	Owner int
	// IP is the ip(8) binary. Default: found by FindIP.
	IP string
	// Log, when set, is called with every command run, as a shell would
	// show it.
	Log func(cmd string)
}

// Network is one owner's set of namespaces, each joined to the host by a
// veth pair of its own. Its methods are safe for concurrent use.
type Network struct {
	cfg    Config
	subnet netip.Prefix // 10.213.X.0/24

	mu     sync.Mutex
	spaces []*Namespace
	closed bool
}

// Namespace is one isolated process's network namespace and veth pair.
type Namespace struct {
	// Name is the namespace's (ip netns list; /run/netns/<Name>).
	Name string
	// Process is the name of the process it is for.
	Process string
	// HostLink is the pair's host end; Link its end in the namespace.
	HostLink, Link string
	// HostAddr is the host end's address, Addr the namespace end's: the
	// address the process inside listens on and is reached at.
	HostAddr, Addr netip.Addr

	net            *Network
	hostMAC, nsMAC string

	mu    sync.Mutex
	cut   bool
	since time.Time
	cuts  int
}

// FindIP returns the path of ip(8): on PATH, or in /usr/sbin or /sbin,
// which a non-login root shell's PATH may lack.
func FindIP() (string, error) {
	if p, err := exec.LookPath("ip"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/bin/ip", "/usr/bin/ip"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("no ip binary (iproute2) on PATH or in /usr/sbin, /sbin: install iproute2 (apt-get install iproute2)")
}

// Check says why network namespaces with veth pairs cannot be used on this
// machine, in words a user can act on, or returns nil. It tries what a
// Network does — a namespace and a veth pair, removed at once — because
// root alone is not enough (a container without CAP_SYS_ADMIN, a kernel
// without veth).
func Check(ctx context.Context) error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("network namespaces are a Linux feature; this is %s", runtime.GOOS)
	}
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("not root (euid %d): creating network namespaces and veth pairs needs CAP_SYS_ADMIN and CAP_NET_ADMIN; run as root", uid)
	}
	ip, err := FindIP()
	if err != nil {
		return err
	}
	r := runner{ip: ip}
	tag := rand.Uint32() & 0xffffff
	name := fmt.Sprintf("%scheck-%d-%06x", NamePrefix, os.Getpid(), tag)
	if _, err := r.run(ctx, "netns", "add", name); err != nil {
		return fmt.Errorf("cannot create a network namespace (a container without CAP_SYS_ADMIN, or /run/netns not writable?): %w", err)
	}
	defer func() { _, _ = r.run(context.WithoutCancel(ctx), "netns", "del", name) }()
	link := fmt.Sprintf("llchk%06x", tag)
	if _, err := r.run(ctx, "link", "add", link, "type", "veth", "peer", "name", nsLink, "netns", name); err != nil {
		return fmt.Errorf("cannot create a veth pair (a kernel without veth?): %w", err)
	}
	_, _ = r.run(context.WithoutCancel(ctx), "link", "del", link)
	if _, err := os.Stat(nsPath(name)); err != nil {
		return fmt.Errorf("ip netns add made no %s to open (unusual /run): %w", nsPath(name), err)
	}
	return nil
}

// New reserves a /24 for a network of namespaces. Nothing is created
// until Add.
func New(ctx context.Context, cfg Config) (*Network, error) {
	if cfg.Owner == 0 {
		cfg.Owner = os.Getpid()
	}
	if cfg.IP == "" {
		ip, err := FindIP()
		if err != nil {
			return nil, err
		}
		cfg.IP = ip
	}
	n := &Network{cfg: cfg}
	subnet, err := n.freeSubnet(ctx)
	if err != nil {
		return nil, err
	}
	n.subnet = subnet
	return n, nil
}

// Subnet is the /24 the network's pairs take their /30s from.
func (n *Network) Subnet() netip.Prefix { return n.subnet }

// HostAddr is the host's address on the network that every namespace
// reaches: the first pair's host end (invalid before the first Add). It is
// the host's own address, so it keeps working for the host and the other
// namespaces while that first pair is cut.
func (n *Network) HostAddr() netip.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.spaces) == 0 {
		return netip.Addr{}
	}
	return n.spaces[0].HostAddr
}

// Namespaces returns the namespaces made so far, in the order of Add.
func (n *Network) Namespaces() []*Namespace {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.spaces)
}

// freeSubnet picks 10.213.X.0/24 with X used by no address or route on the
// machine, starting at a place derived from the owner's pid so that two
// labs starting at once are unlikely to race for the same X.
func (n *Network) freeSubnet(ctx context.Context) (netip.Prefix, error) {
	r := n.runner()
	out, err := r.run(ctx, "-4", "-o", "addr", "show")
	if err != nil {
		return netip.Prefix{}, err
	}
	routes, err := r.run(ctx, "-4", "route", "show", "table", "all")
	if err != nil {
		return netip.Prefix{}, err
	}
	used := string(out) + "\n" + string(routes)
	start := n.cfg.Owner % 250
	for i := range 250 {
		x := (start+i)%250 + 1 // 1…250
		if !strings.Contains(used, fmt.Sprintf(" 10.213.%d.", x)) {
			return netip.MustParsePrefix(fmt.Sprintf("10.213.%d.0/24", x)), nil
		}
	}
	return netip.Prefix{}, errors.New("no free /24 in 10.213.0.0/16: every 10.213.X.0/24 has an address on this machine (leftovers of killed labs? see Sweep)")
}

// Add makes a namespace for process, with its veth pair, addresses, routes
// and neighbour entries, healed. On failure what was made is removed.
func (n *Network) Add(ctx context.Context, process string) (*Namespace, error) {
	if process == "" || strings.ContainsAny(process, "/ \t\n") {
		return nil, fmt.Errorf("netns: process name %q cannot name a namespace", process)
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, errors.New("netns: network closed")
	}
	k := len(n.spaces)
	if k >= maxPerNetwork {
		n.mu.Unlock()
		return nil, fmt.Errorf("netns: a network holds at most %d namespaces", maxPerNetwork)
	}
	x := n.subnet.Addr().As4()[2]
	base := netip.AddrFrom4([4]byte{10, 213, x, byte(4 * k)})
	ns := &Namespace{
		Name:     fmt.Sprintf("%s%d-%s", NamePrefix, n.cfg.Owner, process),
		Process:  process,
		HostLink: fmt.Sprintf("%s%x-%02x%x", linkPrefix, n.cfg.Owner, x, k),
		Link:     nsLink,
		HostAddr: base.Next(),
		Addr:     base.Next().Next(),
		net:      n,
	}
	n.spaces = append(n.spaces, ns) // Close removes it even if Add fails halfway
	n.mu.Unlock()
	if len(ns.HostLink) > 15 {
		return nil, fmt.Errorf("netns: interface name %q is longer than Linux's 15 bytes", ns.HostLink)
	}
	if err := ns.create(ctx); err != nil {
		return nil, errors.Join(err, ns.remove(context.WithoutCancel(ctx)))
	}
	if k > 0 {
		if err := ns.reaches(ctx, n.spaces[0]); err != nil {
			return nil, errors.Join(err, ns.remove(context.WithoutCancel(ctx)))
		}
	}
	return ns, nil
}

// reaches checks that ns reaches other: namespaces reach each other only
// through the host, which must forward between the pairs. Many hosts do
// not — ip_forward=0, or a firewall whose FORWARD policy is DROP (docker
// sets one) — and processes that cannot gossip with each other would fail
// in ways far from the cause; so a second namespace is tried at once.
func (ns *Namespace) reaches(ctx context.Context, other *Namespace) error {
	ln, err := other.listen("tcp", net.JoinHostPort(other.Addr.String(), "0"))
	if err != nil {
		return fmt.Errorf("netns: probing forwarding: %w", err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := ns.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return fmt.Errorf("netns: %s cannot reach %s through the host, which does not forward between them "+
			"(net.ipv4.ip_forward=0, or a firewall FORWARD policy of DROP, as docker sets): isolate one process, or let the host forward %s: %w",
			ns.Process, other.Process, ns.net.subnet, err)
	}
	return c.Close()
}

func (ns *Namespace) create(ctx context.Context) error {
	r := ns.net.runner()
	in := func(args ...string) []string { return append([]string{"-n", ns.Name}, args...) }
	host, addr := ns.HostAddr.String()+"/30", ns.Addr.String()+"/30"
	steps := [][]string{
		{"netns", "add", ns.Name},
		{"link", "add", ns.HostLink, "type", "veth", "peer", "name", ns.Link, "netns", ns.Name},
		{"link", "set", "dev", ns.HostLink, "alias", fmt.Sprintf("lokilab %d %s", ns.net.cfg.Owner, ns.Process)},
		{"addr", "add", host, "dev", ns.HostLink},
		{"link", "set", "dev", ns.HostLink, "up"},
		in("link", "set", "dev", "lo", "up"),
		in("addr", "add", addr, "dev", ns.Link),
		in("link", "set", "dev", ns.Link, "up"),
		in("route", "add", "default", "via", ns.HostAddr.String()),
	}
	for _, s := range steps {
		if _, err := r.run(ctx, s...); err != nil {
			return fmt.Errorf("netns: setting up %s for %s: %w", ns.Name, ns.Process, err)
		}
	}
	var err error
	if ns.hostMAC, err = ns.mac(ctx, nil, ns.HostLink); err != nil {
		return err
	}
	if ns.nsMAC, err = ns.mac(ctx, []string{"-n", ns.Name}, ns.Link); err != nil {
		return err
	}
	return ns.setNeighbours(ctx, ns.nsMAC, ns.hostMAC)
}

// mac reads an interface's MAC address with ip -j link show.
func (ns *Namespace) mac(ctx context.Context, pre []string, dev string) (string, error) {
	out, err := ns.net.runner().run(ctx, append(pre, "-j", "link", "show", "dev", dev)...)
	if err != nil {
		return "", err
	}
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 || links[0].Address == "" {
		return "", fmt.Errorf("netns: no MAC address for %s in %q (%v)", dev, out, err)
	}
	return links[0].Address, nil
}

// setNeighbours writes the permanent neighbour entries: on the host end,
// the namespace's address at toNS; in the namespace, the host end's
// address at toHost.
func (ns *Namespace) setNeighbours(ctx context.Context, toNS, toHost string) error {
	r := ns.net.runner()
	if _, err := r.run(ctx, "neigh", "replace", ns.Addr.String(), "lladdr", toNS, "dev", ns.HostLink, "nud", "permanent"); err != nil {
		return fmt.Errorf("netns: %s: %w", ns.Process, err)
	}
	if _, err := r.run(ctx, "-n", ns.Name, "neigh", "replace", ns.HostAddr.String(), "lladdr", toHost, "dev", ns.Link, "nud", "permanent"); err != nil {
		return fmt.Errorf("netns: %s: %w", ns.Process, err)
	}
	return nil
}

// Cut makes the pair lose every frame, both ways (see the package doc).
// Cutting a cut namespace does nothing.
func (ns *Namespace) Cut(ctx context.Context) error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.cut {
		return nil
	}
	if err := ns.setNeighbours(ctx, bogusMAC, bogusMAC); err != nil {
		// Half cut is worse than not cut: put the real entries back.
		return errors.Join(err, ns.setNeighbours(context.WithoutCancel(ctx), ns.nsMAC, ns.hostMAC))
	}
	ns.cut, ns.since = true, time.Now()
	ns.cuts++
	return nil
}

// Heal ends a cut: frames reach the other end again. Healing a namespace
// that is not cut does nothing.
func (ns *Namespace) Heal(ctx context.Context) error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if !ns.cut {
		return nil
	}
	if err := ns.setNeighbours(ctx, ns.nsMAC, ns.hostMAC); err != nil {
		return err
	}
	ns.cut, ns.since = false, time.Time{}
	return nil
}

// State is a namespace's cut, as a status page shows it.
type State struct {
	Cut bool `json:"cut"`
	// Since is when the current cut began (zero while healed).
	Since time.Time `json:"since,omitzero"`
	// Cuts counts the cuts so far.
	Cuts int `json:"cuts"`
}

// State reports whether the namespace is cut now.
func (ns *Namespace) State() State {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return State{Cut: ns.cut, Since: ns.since, Cuts: ns.cuts}
}

// Command returns a command running name with args inside the namespace:
// ip netns exec <Name> name args…. ip(8) enters the namespace and execs
// name, so the process keeps the pid Start gives it (signals, cgroups and
// Pdeathsig apply to it as to any child), and inherits the environment.
func (ns *Namespace) Command(name string, args ...string) *exec.Cmd {
	return exec.Command(ns.net.cfg.IP, append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Close removes every namespace and veth pair of the network. A process
// still running inside keeps its namespace alive until it exits, but
// loses its link at once. Safe to call more than once.
func (n *Network) Close(ctx context.Context) error {
	n.mu.Lock()
	spaces := n.spaces
	n.spaces, n.closed = nil, true
	n.mu.Unlock()
	var errs []error
	for _, ns := range spaces {
		errs = append(errs, ns.remove(ctx))
	}
	return errors.Join(errs...)
}

// remove deletes the pair (both ends go with one) and the namespace,
// ignoring what is already gone.
func (ns *Namespace) remove(ctx context.Context) error {
	return removeObjects(ctx, ns.net.runner(), ns.HostLink, ns.Name)
}

func removeObjects(ctx context.Context, r runner, link, name string) error {
	var errs []error
	if link != "" {
		if _, err := r.run(ctx, "link", "del", "dev", link); err != nil && !gone(err) {
			errs = append(errs, err)
		}
	}
	if name != "" {
		if _, err := r.run(ctx, "netns", "del", name); err != nil && !gone(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// gone reports whether ip failed because the object does not exist.
func gone(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Cannot find device") || strings.Contains(s, "No such file") || strings.Contains(s, "does not exist")
}

// Sweep removes the namespaces and veth host ends this package made for
// owners that are no longer running (alive reports whether a pid runs; nil
// means "signal 0 reaches it"): what a supervisor killed with SIGKILL left
// behind. A live owner's are never touched. It returns what it removed.
func Sweep(ctx context.Context, alive func(pid int) bool) ([]string, error) {
	if alive == nil {
		alive = pidAlive
	}
	return sweep(ctx, func(pid int) bool { return !alive(pid) })
}

// RemoveOwned removes every namespace and veth host end made for owner,
// whether it runs or not: for a caller that knows the owner is gone.
func RemoveOwned(ctx context.Context, owner int) ([]string, error) {
	return sweep(ctx, func(pid int) bool { return pid == owner })
}

func sweep(ctx context.Context, remove func(pid int) bool) ([]string, error) {
	ip, err := FindIP()
	if err != nil {
		return nil, err
	}
	r := runner{ip: ip}
	var removed []string
	var errs []error
	links, err := r.run(ctx, "-o", "link", "show")
	if err != nil {
		return nil, err
	}
	for line := range strings.SplitSeq(string(links), "\n") {
		// "12: ll1a2b-d500@if11: <BROADCAST,…"
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		pidHex, _, ok := strings.Cut(strings.TrimPrefix(name, linkPrefix), "-")
		if !strings.HasPrefix(name, linkPrefix) || !ok {
			continue
		}
		pid, err := strconv.ParseInt(pidHex, 16, 64)
		if err != nil || !remove(int(pid)) {
			continue
		}
		if err := removeObjects(ctx, r, name, ""); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "link "+name)
	}
	spaces, err := r.run(ctx, "netns", "list")
	if err != nil {
		return removed, errors.Join(append(errs, err)...)
	}
	for line := range strings.SplitSeq(string(spaces), "\n") {
		// "lokilab-4242-ingester-2 (id: 3)"
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], NamePrefix) {
			continue
		}
		pidStr, _, ok := strings.Cut(strings.TrimPrefix(f[0], NamePrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || !remove(pid) {
			continue // a check- probe, or not ours
		}
		if err := removeObjects(ctx, r, "", f[0]); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "netns "+f[0])
	}
	return removed, errors.Join(errs...)
}

func (n *Network) runner() runner { return runner{ip: n.cfg.IP, log: n.cfg.Log} }

// runner runs ip(8).
type runner struct {
	ip  string
	log func(string)
}

// run runs ip with args and returns its stdout; the error names the
// command and carries ip's own message.
func (r runner) run(ctx context.Context, args ...string) ([]byte, error) {
	line := "ip " + strings.Join(args, " ")
	if r.log != nil {
		r.log(line)
	}
	cmd := exec.CommandContext(ctx, r.ip, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("%s: %s", line, msg)
	}
	return stdout.Bytes(), nil
}

// nsPath is where ip netns keeps a namespace open.
func nsPath(name string) string { return "/run/netns/" + name }
