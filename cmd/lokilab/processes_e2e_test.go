package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lokilab/lokilab/internal/freeport"
	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/app"
)

// TestProcessesKill9AnIngester is the walk-through of README's "Many
// processes" with the real binary: `lokilab run -processes`, push and query
// through the gateway, kill -9 one ingester child under load, and check
// that the supervisor restarts it and that every acknowledged push is then
// answered exactly once. A Ctrl-C (SIGINT) stops everything with exit 0 and
// no process left behind; a second run on the same data directory answers
// the same lines, now from the store; and a supervisor killed with SIGKILL
// takes its children with it (Pdeathsig).
func TestProcessesKill9AnIngester(t *testing.T) {
	dataDir := t.TempDir()
	args := processesArgs(t, dataDir,
		// Chunks cut and flushed often, so answers mix store and memory.
		"-ingester.flush-check-period", "300ms", "-ingester.chunks-idle-period", "500ms",
		"-ingester.chunk-target-size", "8KB", "-ingester.chunks-block-size", "2KB",
		"-distributor.ingestion-rate-limit-mb", "1000", "-distributor.ingestion-burst-size-mb", "1000")
	gw := "http://" + args.gateway

	began := time.Now()
	sup := start(t, "lokilab run -processes", bin.lokilab, args.args...)
	sup.waitOutput("lokilab is running as separate processes")
	waitReady(t, gw+"/ready")
	t.Logf("all 7 processes ready %s after the start", time.Since(began).Round(10*time.Millisecond))
	procs := getProcesses(t, gw)
	if len(procs) != 7 {
		t.Fatalf("/processes lists %d processes, want 7: %+v", len(procs), procs)
	}
	for _, p := range procs {
		if p.PID == 0 || p.State != "running" || !p.Ready || !strings.Contains(sup.out.String(), fmt.Sprint(p.PID)) {
			t.Errorf("%s: pid %d, state %s, ready %v (and the banner must give its pid)", p.Name, p.PID, p.State, p.Ready)
		}
	}

	// The gateway takes pushes for the distributor and queries for the
	// querier.
	first := pushtest.Request(pushtest.Options{Streams: 3, LinesPerStream: 10, ID: "first"})
	if code, body, err := pushTo(gw+"/loki/api/v1/push", first, pushtest.JSON); err != nil || code != http.StatusNoContent {
		t.Fatalf("push through the gateway: %d %q %v", code, body, err)
	}
	waitAnswered(t, gw, "the first push", func(q queried) bool { return len(q.copies) == 30 })

	load := startPushLoad(t, gw+"/loki/api/v1/push", 4, 6, 3)
	time.Sleep(1500 * time.Millisecond)
	victim := procs["ingester-2"]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if q := queryAll(t, gw, `{env="prod"}`); !strings.Contains(strings.Join(q.warnings, "\n"), "ingester-2") {
		t.Errorf("ingester-2 was just killed, yet the answer has no warning naming it: %q", q.warnings)
	}
	var back app.ProcessStatus
	waitFor(t, "the supervisor to restart ingester-2", 30*time.Second, func() bool {
		back = getProcesses(t, gw)["ingester-2"]
		return back.Restarts == 1 && back.PID != victim.PID && back.PID != 0 && back.State == "running"
	})
	t.Logf("ingester-2 restarted as pid %d %s after the kill", back.PID, time.Since(killed).Round(10*time.Millisecond))
	waitFor(t, "the restarted ingester-2 to be ready (replayed)", 60*time.Second, func() bool {
		return getProcesses(t, gw)["ingester-2"].Ready
	})
	t.Logf("ingester-2 ready again %s after the kill; pushes during it all: %s", time.Since(killed).Round(10*time.Millisecond), load.outcomes())
	if !strings.Contains(sup.out.String(), "process=ingester-2") || !strings.Contains(sup.out.String(), `exit="signal: killed"`) {
		t.Errorf("the supervisor did not say that ingester-2 was killed:\n%s", sup.out.String())
	}
	time.Sleep(500 * time.Millisecond)
	load.finish()

	check := func(when string) {
		t.Helper()
		var q queried
		waitAnswered(t, gw, when, func(got queried) bool { q = got; return true })
		r := load.check(q.copies)
		if len(r.lost) > 0 {
			t.Fatalf("%s: %d acknowledged lines missing from the answer, e.g. %v", when, len(r.lost), r.lost[:min(5, len(r.lost))])
		}
		if r.dups > 0 {
			t.Fatalf("%s: %d lines answered more than once", when, r.dups)
		}
		for id, n := range q.copies {
			if strings.HasPrefix(id, "first-") && n != 1 {
				t.Fatalf("%s: line %s answered %d times", when, id, n)
			}
		}
		if r.ackedPushes == 0 {
			t.Fatal("no push was acknowledged: the test proved nothing")
		}
		t.Logf("%s: %d acknowledged pushes (%d lines) answered once each", when, r.ackedPushes, r.ackedPushes*load.streams*load.lines)
	}
	check("after the restart")
	answered := time.Since(killed)
	t.Logf("whole answers again %s after the kill", answered.Round(10*time.Millisecond))

	// Ctrl-C: every process stops, in order, and none is left.
	pids := []int{victim.PID}
	for _, p := range getProcesses(t, gw) {
		pids = append(pids, p.PID)
	}
	stopping := time.Now()
	interrupt(t, sup)
	t.Logf("SIGINT: the supervisor exited 0 after %s", time.Since(stopping).Round(10*time.Millisecond))
	assertGone(t, pids, time.Second)

	// Again on the same data directory: the same lines, once each, now
	// read from the store the ingesters flushed to on their way out.
	sup = start(t, "lokilab run -processes (again)", bin.lokilab, args.args...)
	waitReady(t, gw+"/ready")
	check("after a restart on the same data directory")

	// A supervisor killed outright takes its children with it.
	pids = pids[:0]
	for _, p := range getProcesses(t, gw) {
		pids = append(pids, p.PID)
	}
	sup.kill()
	assertGone(t, pids, 5*time.Second)
}

type processesRun struct {
	gateway string
	args    []string
}

// processesArgs picks free ports for every process of `lokilab run
// -processes` (the ingesters' HTTP ports and the memberlist ports in
// blocks, as the supervisor numbers them) and returns the command line.
func processesArgs(t *testing.T, dataDir string, extra ...string) processesRun {
	t.Helper()
	// One block below the kernel's ephemeral range (internal/freeport
	// says why): gateway, kafka, distributor, querier, compactor, three
	// ingesters' HTTP ports, five memberlist nodes.
	base, err := freeport.Block(13)
	if err != nil {
		t.Fatal(err)
	}
	port := func(i int) string { return strconv.Itoa(base + i) }
	gateway := "127.0.0.1:" + port(0)
	args := []string{"run", "-processes", "-data.dir", dataDir, "-log.level", "warn",
		"-server.http-listen-port", port(0),
		"-kafka.broker.listen-address", "127.0.0.1:" + port(1),
		"-processes.distributor-port", port(2),
		"-processes.querier-port", port(3),
		"-processes.compactor-port", port(4),
		"-ingester.http-base-port", port(5),
		"-memberlist.bind-port", port(8),
		"-kafka.auto-create-topic-default-partitions", "4"}
	return processesRun{gateway: gateway, args: append(args, extra...)}
}

// getProcesses reads GET /processes on the gateway, by process name.
func getProcesses(t *testing.T, gw string) map[string]app.ProcessStatus {
	t.Helper()
	resp, err := http.Get(gw + "/processes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st app.ProcessesStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]app.ProcessStatus)
	for _, p := range st.Processes {
		out[p.Name] = p
	}
	return out
}

// waitAnswered waits until a query for every pushtest line through gw
// answers without a warning and ok accepts it.
func waitAnswered(t *testing.T, gw, what string, ok func(queried) bool) {
	t.Helper()
	var last queried
	waitFor(t, what+": a whole answer", 60*time.Second, func() bool {
		last = queryAll(t, gw, `{env="prod"}`)
		return len(last.warnings) == 0 && ok(last)
	})
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// interrupt sends SIGINT, as Ctrl-C does, and waits for exit status 0.
func interrupt(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(90 * time.Second):
		t.Fatalf("%s did not exit within 90s of SIGINT", p.name)
	}
	if p.err != nil {
		t.Fatalf("%s exited uncleanly after SIGINT: %v", p.name, p.err)
	}
}

// assertGone fails unless every pid has exited within d. A zombie (dead,
// not yet reaped by whoever inherited it) counts as gone.
func assertGone(t *testing.T, pids []int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				t.Fatalf("process %d (%s) is still running", pid, strings.ReplaceAll(string(cmdline), "\x00", " "))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state …; comm may hold spaces and parentheses.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}
