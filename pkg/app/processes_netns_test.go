package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lokilab/lokilab/internal/freeport"
	"github.com/lokilab/lokilab/pkg/netns"
	"github.com/lokilab/lokilab/pkg/server"
)

// TestProcessesPlanWithANamespacedIngester: with ingester-2 in a
// namespace, it listens on its namespace's address, the broker and every
// other memberlist node on the host's address on that network, and the
// host-side HTTP ports stay on loopback. Without namespaces the plan is
// the loopback one (TestProcessesPlanPortsAndMembership).
func TestProcessesPlanWithANamespacedIngester(t *testing.T) {
	cfg := defaultAllInOne(t, "-processes", "-data.dir", "/lab", "-processes.netns", "ingester-2")
	np := &netPlan{host: "10.213.7.1", addrs: map[string]string{"ingester-2": "10.213.7.2"}}
	plan, err := planProcessesIn(cfg, 12, np)
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ name, http, memberlist string }
	want := []row{
		{"kafka", "", ""},
		{"distributor", "127.0.0.1:3110", "10.213.7.1:7946"},
		{"ingester-1", "127.0.0.1:3101", "10.213.7.1:7947"},
		{"ingester-2", "10.213.7.2:3102", "10.213.7.2:7948"},
		{"ingester-3", "127.0.0.1:3103", "10.213.7.1:7949"},
		{"querier", "127.0.0.1:3200", "10.213.7.1:7950"},
		{"compactor", "127.0.0.1:3300", ""},
	}
	for i, sp := range plan {
		if got := (row{sp.name, sp.httpAddr, sp.memberlist}); got != want[i] {
			t.Errorf("planned %+v, want %+v", got, want[i])
		}
	}
	if plan[0].kafkaAddr != "10.213.7.1:9092" {
		t.Errorf("kafka at %q, want the host's address on the namespaces' network", plan[0].kafkaAddr)
	}
	if b := plan[0].config.(*BrokerProcessConfig); b.Broker.ListenAddress != "10.213.7.1:9092" || b.Broker.AdvertiseAddress != "" {
		t.Errorf("broker listens on %q, advertises %q", b.Broker.ListenAddress, b.Broker.AdvertiseAddress)
	}
	i2 := plan[3].config.(*IngesterConfig)
	if i2.Server.HTTPListenAddress != "10.213.7.2" || i2.Memberlist.BindAddr != "10.213.7.2" || i2.Kafka.Address != "10.213.7.1:9092" {
		t.Errorf("ingester-2: http on %q, memberlist on %q, kafka at %q", i2.Server.HTTPListenAddress, i2.Memberlist.BindAddr, i2.Kafka.Address)
	}
	if want := "10.213.7.1:7946,10.213.7.1:7947,10.213.7.1:7949,10.213.7.1:7950"; strings.Join(i2.Memberlist.JoinMembers, ",") != want {
		t.Errorf("ingester-2 joins through %v, want %s", i2.Memberlist.JoinMembers, want)
	}
	if i1 := plan[2].config.(*IngesterConfig); i1.Server.HTTPListenAddress != "127.0.0.1" || !strings.Contains(strings.Join(i1.Memberlist.JoinMembers, ","), "10.213.7.2:7948") {
		t.Errorf("ingester-1: http on %q, joins %v", i1.Server.HTTPListenAddress, i1.Memberlist.JoinMembers)
	}
	if len(plan[3].ports) != 0 {
		t.Errorf("the namespaced ingester's ports are checked on the host: %v", plan[3].ports)
	}
}

func TestProcessesNetnsValidation(t *testing.T) {
	tests := []struct {
		netns, want string
	}{
		{"querier", `-processes.netns names "querier": only ingesters`},
		{"ingester-4", `-processes.netns names "ingester-4": only ingesters run in a namespace of their own (ingester-1…ingester-3)`},
		{"ingester-1,ingester-1", `names "ingester-1" twice`},
	}
	for _, tt := range tests {
		cfg := defaultAllInOne(t, "-processes", "-processes.netns", tt.netns)
		_, err := planProcesses(cfg, 12)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("-processes.netns=%s: error %v, want %q", tt.netns, err, tt.want)
		}
	}
}

// TestProcessesNetnsCutAndHeal runs the real lab as processes with
// ingester-2 in a network namespace: it is reachable from the host at its
// namespace's address and joins the ring; POST /processes/ingester-2/
// partition makes connections to it time out (not refused) while the
// supervisor still sees it ready through the side door; DELETE heals it;
// and when the supervisor stops, the namespace is gone. Root, iproute2
// and a Go toolchain (to build lokilab).
func TestProcessesNetnsCutAndHeal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the lab as processes")
	}
	if err := netns.Check(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "SKIPPING %s: network namespaces unavailable: %v\n", t.Name(), err)
		t.Skipf("SKIPPED LOUDLY: network namespaces unavailable: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "lokilab")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/lokilab/lokilab/cmd/lokilab").CombinedOutput(); err != nil {
		t.Fatalf("building lokilab: %v\n%s", err, out)
	}
	gwPort, err := freeport.Block(1)
	if err != nil {
		t.Fatal(err)
	}
	args := append(freePortFlags(t), "-processes", "-data.dir", t.TempDir(), "-log.level", "warn",
		"-ingesters", "2", "-processes.netns", "ingester-2", "-ring.heartbeat-timeout", "4s")
	args[1] = fmt.Sprint(gwPort) // -server.http-listen-port
	cfg := defaultAllInOne(t, args...)
	ctx, cancel := context.WithCancel(context.Background())
	var logs strings.Builder
	logger, _ := server.NewLogger(&syncWriter{w: &logs}, "info", "logfmt")
	done := make(chan error, 1)
	go func() { done <- RunProcesses(ctx, cfg, nil, logger, bin, io.Discard, io.Discard) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("RunProcesses: %v", err)
			}
		case <-time.After(2 * time.Minute):
			t.Error("the supervisor did not stop within 2m")
		}
	}
	t.Cleanup(func() {
		stop()
		if removed, _ := netns.RemoveOwned(context.Background(), os.Getpid()); len(removed) > 0 {
			t.Errorf("left behind after the supervisor stopped (now removed): %v", removed)
		}
	})
	gw := fmt.Sprintf("http://127.0.0.1:%d", gwPort)

	// Ready: every process, and ingester-2 in its namespace.
	var i2 ProcessStatus
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var st ProcessesStatus
		err := getJSON(gw+"/processes", &st)
		ready := err == nil && len(st.Processes) == 6
		for _, p := range st.Processes {
			ready = ready && p.Ready
			if p.Name == "ingester-2" {
				i2 = p
			}
		}
		if ready {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the supervisor ended while starting: %v\n%s", err, logs.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 3m: %+v, %v", st, err)
		}
	}
	wantNS := fmt.Sprintf("lokilab-%d-ingester-2", os.Getpid())
	if i2.Netns != wantNS || !strings.HasPrefix(i2.Addr, "10.213.") || i2.Partition == nil || i2.Partition.Cut ||
		strings.Join(i2.Command[:4], " ") != "ip netns exec "+wantNS {
		t.Fatalf("ingester-2 in /processes: %+v", i2)
	}
	t.Logf("ingester-2 runs in %s at %s: %s", i2.Netns, i2.Addr, strings.Join(i2.Command, " "))

	reach := func(timeout time.Duration) error {
		c, err := net.DialTimeout("tcp", i2.Addr, timeout)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := reach(2 * time.Second); err != nil {
		t.Fatalf("the host cannot reach ingester-2 at %s: %v", i2.Addr, err)
	}
	// Its HTTP through the host's path, and its ring entry at its
	// namespace's address (it gossiped its way into the ring across the pair).
	var ring struct {
		Instances []struct {
			ID      string `json:"id"`
			Addr    string `json:"addr"`
			Healthy bool   `json:"healthy"`
		} `json:"instances"`
	}
	if err := getJSON(gw+"/ring?format=json", &ring); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, in := range ring.Instances {
		if in.ID == "ingester-2" {
			found = in.Addr == i2.Addr && in.Healthy
		}
	}
	if !found {
		t.Fatalf("ingester-2 not healthy in the ring at %s: %+v", i2.Addr, ring.Instances)
	}

	// The cut.
	var ps PartitionStatus
	if err := doJSON(http.MethodPost, gw+"/processes/ingester-2/partition", &ps); err != nil || !ps.State.Cut {
		t.Fatalf("POST partition: %+v, %v", ps, err)
	}
	began := time.Now()
	err = reach(1500 * time.Millisecond)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() || time.Since(began) < time.Second {
		t.Fatalf("a dial to the cut ingester: %v after %s; want a timeout after the full 1.5s", err, time.Since(began))
	}
	// The supervisor's side door: /processes still sees it ready, and
	// its /metrics are readable through the gateway.
	var st ProcessesStatus
	if err := getJSON(gw+"/processes", &st); err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Processes {
		if p.Name == "ingester-2" && (!p.Ready || p.Partition == nil || !p.Partition.Cut) {
			t.Errorf("cut ingester-2 in /processes: ready %v, partition %+v; want ready (side door) and cut", p.Ready, p.Partition)
		}
	}
	resp, err := http.Get(gw + "/processes/ingester-2/http/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "lokilab_ingester_") {
		t.Errorf("the cut ingester's /metrics through the side door: %d %.200q", resp.StatusCode, b)
	}
	// A host-side process has no namespace to cut.
	if err := doJSON(http.MethodPost, gw+"/processes/ingester-1/partition", nil); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("cutting ingester-1 (on the host): %v, want 409", err)
	}

	// The heal.
	if err := doJSON(http.MethodDelete, gw+"/processes/ingester-2/partition", &ps); err != nil || ps.State.Cut {
		t.Fatalf("DELETE partition: %+v, %v", ps, err)
	}
	if err := reach(2 * time.Second); err != nil {
		t.Fatalf("after the heal the host cannot reach ingester-2: %v", err)
	}

	stop()
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), wantNS) {
		t.Errorf("%s still listed after the supervisor stopped:\n%s", wantNS, out)
	}
}

// syncWriter serialises writes from the supervisor's goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func getJSON(url string, v any) error {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func doJSON(method, url string, v any) error {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(b, v)
}
