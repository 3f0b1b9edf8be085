package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lokilab/lokilab/pkg/ingester"
	"github.com/lokilab/lokilab/pkg/server"
)

// Scaling the ingesters of `lokilab run -processes` while it runs: what
// an operator does with `kubectl scale statefulset ingester --replicas=N`,
// here two endpoints on the gateway.
//
//   - POST /processes/ingesters starts one more ingester, ingester-<n+1>
//     after the highest number running, on free loopback ports, joining
//     the memberlist cluster through every live node. It answers 201 with
//     the process's status once its /ready answers (or 504 when it does
//     not within -processes.start-timeout; the process is then stopped and
//     forgotten again).
//   - DELETE /processes/{name} stops an ingester for good: SIGTERM, so it
//     flushes, commits and hands its partitions back (LEAVING in the ring,
//     then gone), and the supervisor neither restarts it nor lists it any
//     more. It answers 200 with how the process ended, 409 when it is the
//     last ingester or did not stop cleanly (it was SIGKILLed after
//     -processes.stop-timeout).
//
// Why only ingesters: they are the stateful, scaled component whose
// ownership moves (the lab's question 3); the distributor and the querier
// are found by fixed address, so adding one would need the gateway to
// balance over them. Why ring ownership only: ingesters in a consumer group
// are not in the ring, and the querier asks a list of them fixed at start.
//
// A new ingester's ports are free ones, not the -ingester.http-base-port
// sequence: nothing needs to know them in advance (it announces its address
// in the ring, and the querier finds it there), and the sequence's next
// port may belong to the memberlist block that follows it.

// Paths of the scaling endpoints.
const (
	ScaleIngestersPath = "/processes/ingesters"
	ScaleRemovePath    = "/processes/" // + name
)

// RemovedProcess is DELETE /processes/{name}'s answer.
type RemovedProcess struct {
	Name string `json:"name"`
	// Exit is how the process ended ("exit status 0" for a clean stop).
	Exit string `json:"exit"`
	// Took is the time from SIGTERM to its exit.
	Took time.Duration `json:"took_ns"`
	// Clean is true when it exited by itself within the stop timeout.
	Clean bool `json:"clean"`
}

// serveScale registers the scaling endpoints on the gateway. newChild is
// RunProcesses's: it writes the config file, applies memory limits and
// adds the child to the supervised set.
func (s *supervisor) serveScale(gw *server.Server, newChild func(*childSpec) (*child, error)) {
	var mu sync.Mutex // one scaling step at a time: names and ports are picked from what runs
	gw.Handle("POST "+ScaleIngestersPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		st, code, err := s.addIngester(r.Context(), newChild)
		if err != nil {
			http.Error(w, err.Error(), code)
			return
		}
		writeJSON(w, http.StatusCreated, st)
	}))
	gw.Handle("DELETE "+ScaleRemovePath+"{name}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		res, code, err := s.removeIngester(r.PathValue("name"))
		if err != nil {
			if res.Name != "" { // it stopped, but not cleanly: say how
				w.Header().Set("X-Lokilab-Exit", res.Exit)
			}
			http.Error(w, err.Error(), code)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// ingesterNumber is n of "ingester-n", or 0.
func ingesterNumber(name string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(name, "ingester-"))
	if err != nil || !strings.HasPrefix(name, "ingester-") {
		return 0
	}
	return n
}

// addIngester starts ingester-<n+1> and waits for it to be ready. The
// status code goes with the error.
func (s *supervisor) addIngester(ctx context.Context, newChild func(*childSpec) (*child, error)) (ProcessStatus, int, error) {
	if !s.up.Load() {
		return ProcessStatus{}, http.StatusServiceUnavailable, errors.New("the processes are still starting")
	}
	s.mu.Lock()
	var tmpl *child
	var joins []string
	highest := 0
	for _, c := range s.kids {
		if c.memberlist != "" {
			joins = append(joins, c.memberlist)
		}
		if c.command == "ingester" {
			// A namespaced ingester's configuration carries its
			// namespace's addresses: copy one on the host.
			if c.ns == nil {
				tmpl = c
			}
			highest = max(highest, ingesterNumber(c.name))
		}
	}
	s.mu.Unlock()
	if tmpl == nil {
		return ProcessStatus{}, http.StatusConflict, errors.New("no ingester runs on the host to copy the configuration of")
	}
	base, ok := tmpl.config.(*IngesterConfig)
	if !ok {
		return ProcessStatus{}, http.StatusInternalServerError, fmt.Errorf("%s has no ingester configuration", tmpl.name)
	}
	if base.Ingester.Ownership != ingester.OwnershipRing {
		return ProcessStatus{}, http.StatusConflict, fmt.Errorf("adding an ingester needs ring ownership (this system runs %s): the querier asks a list of group ingesters fixed at start", base.Ingester.Ownership)
	}
	ic := *base
	name := fmt.Sprintf("ingester-%d", highest+1)
	httpPort, err := freeLocalPort(ic.Server.HTTPListenAddress, false)
	if err != nil {
		return ProcessStatus{}, http.StatusInternalServerError, fmt.Errorf("%s: HTTP port: %w", name, err)
	}
	mlPort, err := freeLocalPort(ic.Memberlist.BindAddr, true)
	if err != nil {
		return ProcessStatus{}, http.StatusInternalServerError, fmt.Errorf("%s: memberlist port: %w", name, err)
	}
	mlHost, _, _ := net.SplitHostPort(tmpl.memberlist)
	ic.Ingester.InstanceID = name
	ic.Server.HTTPListenPort = httpPort
	ic.Memberlist.BindPort = mlPort
	ic.Memberlist.JoinMembers = joins
	sp := &childSpec{name: name, command: "ingester", config: &ic, extraArgs: slices.Clone(tmpl.extraArgs),
		httpAddr: dialAddr(ic.Server.HTTPListenAddress, httpPort), memberlist: net.JoinHostPort(mlHost, strconv.Itoa(mlPort))}
	c, err := newChild(sp)
	if err != nil {
		return ProcessStatus{}, http.StatusInternalServerError, err
	}
	s.logger.Info("scaling up: adding an ingester", "process", name, "http", sp.httpAddr, "memberlist", sp.memberlist)
	if err := c.start(); err != nil {
		s.forget(c)
		return ProcessStatus{}, http.StatusInternalServerError, fmt.Errorf("%s: %w", name, err)
	}
	if err := s.waitReady(ctx, name, []*child{c}); err != nil {
		_ = c.stop()
		s.forget(c)
		return ProcessStatus{}, http.StatusGatewayTimeout, err
	}
	for _, st := range s.status(ctx) {
		if st.Name == name {
			return st, 0, nil
		}
	}
	return ProcessStatus{}, http.StatusInternalServerError, fmt.Errorf("%s started but is not supervised", name)
}

// removeIngester stops an ingester with SIGTERM, waits for it, and stops
// supervising it.
func (s *supervisor) removeIngester(name string) (RemovedProcess, int, error) {
	s.mu.Lock()
	var c *child
	ingesters := 0
	for _, k := range s.kids {
		if k.command == "ingester" {
			ingesters++
		}
		if k.name == name {
			c = k
		}
	}
	s.mu.Unlock()
	switch {
	case !s.up.Load():
		return RemovedProcess{}, http.StatusServiceUnavailable, errors.New("the processes are still starting")
	case c == nil:
		return RemovedProcess{}, http.StatusNotFound, fmt.Errorf("no process %q", name)
	case c.command != "ingester":
		return RemovedProcess{}, http.StatusBadRequest, fmt.Errorf("%s is not an ingester: only ingesters are scaled", name)
	case ingesters == 1:
		return RemovedProcess{}, http.StatusConflict, fmt.Errorf("%s is the last ingester: nobody would consume the partitions", name)
	}
	s.logger.Info("scaling down: stopping an ingester for good (SIGTERM: flush, commit, hand over)", "process", name)
	began := time.Now()
	err := c.stop()
	c.mu.Lock()
	res := RemovedProcess{Name: name, Exit: c.lastExit, Took: time.Since(began), Clean: err == nil}
	c.mu.Unlock()
	s.forget(c)
	if err != nil {
		return res, http.StatusConflict, err
	}
	return res, 0, nil
}

// forget stops supervising c, which is stopped: it leaves /processes, the
// gateway's readiness and the shutdown order; its memory cgroup goes.
func (s *supervisor) forget(c *child) {
	s.mu.Lock()
	s.kids = slices.DeleteFunc(s.kids, func(k *child) bool { return k == c })
	s.mu.Unlock()
	s.metrics.up.DeleteLabelValues(c.name)
	c.mu.Lock()
	g := c.cg
	c.cg = nil
	c.mu.Unlock()
	if g != nil {
		if err := g.remove(s.rmdir); err != nil {
			s.logger.Error("memory cgroup left behind: remove it with rmdir", "process", c.name, "err", err)
		}
	}
}

// freeLocalPort returns a port on host nothing listens on now, free for
// UDP too when udp is set (memberlist binds both).
func freeLocalPort(host string, udp bool) (int, error) {
	var last error
	for range 20 {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if !udp {
			ln.Close()
			return port, nil
		}
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			pc.Close()
			return port, nil
		}
		last = err
	}
	return 0, fmt.Errorf("no port free for TCP and UDP on %s: %w", host, last)
}
