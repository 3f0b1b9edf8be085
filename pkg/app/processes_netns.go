package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/lokilab/lokilab/pkg/netns"
	"github.com/lokilab/lokilab/pkg/server"
)

// Ingesters in network namespaces of their own (-processes.netns), for a
// partition made of real packet loss (question 10).
//
// Addresses. On loopback a namespaced ingester could reach nobody: its
// namespace has a loopback of its own. So with -processes.netns the
// supervisor first builds the namespaces (pkg/netns: one veth pair each,
// 10.213.X.(4k+1) on the host end, 10.213.X.(4k+2) inside) and then plans
// the processes around them:
//
//   - a namespaced ingester listens, for HTTP and memberlist, on its
//     namespace's address; the ring announces that address to the querier;
//   - the broker listens on, and advertises, the host's address on that
//     network (netns.Network.HostAddr) instead of loopback, so that its
//     metadata points every client, on either side, at one reachable
//     address;
//   - every host-side memberlist node binds and advertises that address
//     too: gossip goes both ways, and a node is dialled back at the
//     address it advertises;
//   - the HTTP ports of the host-side processes stay where they were
//     (loopback by default): the gateway and the querier call them from
//     the host, and an ingester calls no one's HTTP.
//
// What stays out of reach from a namespace: anything else on the host's
// loopback, such as an S3 endpoint or a trace collector on 127.0.0.1 (the
// lab's default store is the filesystem, which the namespace shares).
//
// Launch: `ip netns exec <namespace> lokilab ingester …`, rather than
// entering the namespace from the supervisor's spawner thread before the
// fork: the command is the one a user would type, /processes shows it,
// and ip execs the binary, so the pid, the process group, Pdeathsig and a
// memory cgroup apply as to any child.
//
// The cut: POST /processes/{name}/partition cuts the namespace's pair
// (netns.Namespace.Cut: every frame lost, both ways), DELETE heals it,
// GET reports it. The supervisor itself keeps a path in: its readiness
// probes, and /processes/{name}/http/… (a proxy to the process's own HTTP
// port), go through the namespace's side door — a socket opened inside
// the namespace — as a node's agent reaches its pods during a partition
// of the node from its peers. So /processes shows a cut ingester running
// and ready, with "partition": {"cut": true}, and its /metrics stay
// readable, while its peers hear nothing from it.

// Paths of the partition endpoints, after /processes/{name}.
const (
	PartitionPathSuffix = "/partition"
	ProcessHTTPInfix    = "/http/"
)

// validateNetns checks -processes.netns: ingesters of this system, each
// once.
func (p ProcessesConfig) validateNetns(cfg AllInOneConfig) error {
	var errs []error
	seen := map[string]bool{}
	for _, name := range p.Netns {
		n := ingesterNumber(name)
		switch {
		case n < 1 || n > cfg.Ingesters:
			errs = append(errs, fmt.Errorf("-processes.netns names %q: only ingesters run in a namespace of their own (ingester-1…ingester-%d)", name, cfg.Ingesters))
		case seen[name]:
			errs = append(errs, fmt.Errorf("-processes.netns names %q twice", name))
		}
		seen[name] = true
	}
	return errors.Join(errs...)
}

// netPlan is where processes listen when some run in network namespaces.
// A nil *netPlan is no namespaces: every method leaves the plan alone.
type netPlan struct {
	// host is the host's address on the namespaces' network.
	host string
	// addrs is each namespaced process's address in its namespace.
	addrs map[string]string
}

// apply moves the broker and the memberlist nodes from cfg's addresses to
// the host's address on the namespaces' network (ports unchanged).
func (np *netPlan) apply(cfg *AllInOneConfig) {
	if np == nil {
		return
	}
	_, port, _ := net.SplitHostPort(cfg.EmbeddedKafka.ListenAddress)
	cfg.EmbeddedKafka.ListenAddress = net.JoinHostPort(np.host, port)
	cfg.EmbeddedKafka.AdvertiseAddress = ""
	cfg.Memberlist.BindAddr, cfg.Memberlist.AdvertiseAddr = np.host, ""
}

// addrOf is name's address in its namespace, "" if it has none.
func (np *netPlan) addrOf(name string) string {
	if np == nil {
		return ""
	}
	return np.addrs[name]
}

// setupNetns makes a namespace for each of names (none: nothing to do)
// after removing what killed supervisors left behind. closeFn removes
// them; it logs what it could not remove.
func setupNetns(ctx context.Context, names []string, logger *slog.Logger) (spaces map[string]*netns.Namespace, np *netPlan, closeFn func(), err error) {
	if len(names) == 0 {
		return nil, nil, func() {}, nil
	}
	if err := netns.Check(ctx); err != nil {
		return nil, nil, nil, fmt.Errorf("-processes.netns=%s: network namespaces are unavailable here: %w", strings.Join(names, ","), err)
	}
	if removed, err := netns.Sweep(ctx, nil); len(removed) > 0 || err != nil {
		logger.Warn("removed network namespaces left by supervisors that died", "removed", removed, "err", err)
	}
	network, err := netns.New(ctx, netns.Config{Log: func(cmd string) { logger.Debug("netns", "cmd", cmd) }})
	if err != nil {
		return nil, nil, nil, err
	}
	closeFn = func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := network.Close(cctx); err != nil {
			logger.Error("network namespaces left behind: remove them with ip netns del / ip link del", "err", err)
		}
	}
	spaces = map[string]*netns.Namespace{}
	np = &netPlan{addrs: map[string]string{}}
	for _, name := range names {
		ns, err := network.Add(ctx, name)
		if err != nil {
			closeFn()
			return nil, nil, nil, fmt.Errorf("-processes.netns: %w", err)
		}
		spaces[name], np.addrs[name] = ns, ns.Addr.String()
		logger.Info("network namespace: the process runs behind a veth pair that POST /processes/{name}/partition cuts",
			"process", name, "netns", ns.Name, "addr", ns.Addr, "host_end", ns.HostLink+" "+ns.HostAddr.String())
	}
	np.host = network.HostAddr().String()
	logger.Info("the broker and memberlist listen on the host's address on the namespaces' network, not loopback", "addr", np.host)
	return spaces, np, closeFn, nil
}

// isolate gives c its namespace, if the plan put it in one: the launch
// goes through ip netns exec and the probes through the side door. A
// process planned on the host (an ingester added later under a name once
// namespaced) stays on the host.
func (s *supervisor) isolate(c *child) {
	ns := s.spaces[c.name]
	if ns == nil {
		return
	}
	if host, _, _ := net.SplitHostPort(c.httpAddr); host != ns.Addr.String() {
		return
	}
	c.ns = ns
	c.nsClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, DialContext: ns.DialContext}}
}

// servePartition registers the partition endpoints on the gateway.
func (s *supervisor) servePartition(gw *server.Server) {
	cut := func(w http.ResponseWriter, r *http.Request, do func(*netns.Namespace, context.Context) error, verb string) {
		c, code, err := s.namespaced(r.PathValue("name"))
		if err != nil {
			http.Error(w, err.Error(), code)
			return
		}
		if do != nil {
			if err := do(c.ns, r.Context()); err != nil {
				http.Error(w, fmt.Sprintf("%s %s: %v", verb, c.name, err), http.StatusInternalServerError)
				return
			}
			s.logger.Warn("partition: "+verb, "process", c.name, "netns", c.ns.Name, "host_end", c.ns.HostLink)
		}
		writeJSON(w, http.StatusOK, PartitionStatus{Name: c.name, Netns: c.ns.Name, Addr: c.ns.Addr.String(), HostLink: c.ns.HostLink, State: c.ns.State()})
	}
	gw.Handle("POST "+ScaleRemovePath+"{name}"+PartitionPathSuffix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cut(w, r, (*netns.Namespace).Cut, "cut off its peers (every frame on its veth pair lost)")
	}))
	gw.Handle("DELETE "+ScaleRemovePath+"{name}"+PartitionPathSuffix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cut(w, r, (*netns.Namespace).Heal, "healed")
	}))
	gw.Handle("GET "+ScaleRemovePath+"{name}"+PartitionPathSuffix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cut(w, r, nil, "")
	}))
	gw.Handle(ScaleRemovePath+"{name}"+ProcessHTTPInfix+"{path...}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.proxyToProcess(w, r)
	}))
}

// PartitionStatus is the partition endpoints' answer.
type PartitionStatus struct {
	Name     string      `json:"name"`
	Netns    string      `json:"netns"`
	Addr     string      `json:"addr"`
	HostLink string      `json:"host_link"`
	State    netns.State `json:"partition"`
}

// namespaced finds a running namespaced process by name; the status code
// goes with the error.
func (s *supervisor) namespaced(name string) (*child, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.kids {
		if c.name != name {
			continue
		}
		if c.ns == nil {
			return nil, http.StatusConflict, fmt.Errorf("%s runs in the host's network namespace: start the lab with -processes.netns=%s to cut it with real packet loss (or use its in-process cut, /debug/fault/netcut)", name, name)
		}
		return c, 0, nil
	}
	return nil, http.StatusNotFound, fmt.Errorf("no process %q", name)
}

// proxyToProcess forwards /processes/{name}/http/{path} to the process's
// own HTTP port: through the side door for a namespaced process, so it
// answers while cut off; directly otherwise.
func (s *supervisor) proxyToProcess(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.mu.Lock()
	var c *child
	for _, k := range s.kids {
		if k.name == name {
			c = k
		}
	}
	s.mu.Unlock()
	if c == nil || c.httpAddr == "" {
		http.Error(w, fmt.Sprintf("no process %q with an HTTP port", name), http.StatusNotFound)
		return
	}
	transport := http.DefaultTransport
	if c.ns != nil {
		transport = &http.Transport{Proxy: nil, DisableKeepAlives: true, DialContext: c.ns.DialContext}
	}
	target := &url.URL{Scheme: "http", Host: c.httpAddr}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = target.Scheme, target.Host, target.Host
			pr.Out.URL.Path, pr.Out.URL.RawPath = "/"+r.PathValue("path"), ""
		},
		Transport: transport,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, fmt.Sprintf("%s at %s: %v", name, c.httpAddr, err), http.StatusBadGateway)
		},
	}
	rp.ServeHTTP(w, r)
}
