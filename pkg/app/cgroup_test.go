package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lokilab/lokilab/pkg/server"
)

func TestCgroupMemoryLimitsFlag(t *testing.T) {
	var m MemoryLimits
	if err := m.Set("ingester-2=256MiB, distributor=1GiB"); err != nil {
		t.Fatal(err)
	}
	if err := m.Set("ingesters=192MiB"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{"ingester-2": 256 << 20, "distributor": 1 << 30, "ingester-1": 192 << 20, "querier": 0} {
		if got := m.For(name); got != want {
			t.Errorf("For(%s) = %d, want %d", name, got, want)
		}
	}
	for _, bad := range []string{"ingester-2", "=1GiB", "ingester-2=lots", "ingester-2=1MiB"} {
		var m MemoryLimits
		if err := m.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
	cfg := defaultAllInOne(t, "-processes", "-processes.memory-limit", "ingester-9=256MiB", "-processes.memory-limit-mode", "soft")
	_, err := planProcesses(cfg, 12)
	if err == nil || !strings.Contains(err.Error(), `"ingester-9", which is not a process`) || !strings.Contains(err.Error(), `memory-limit-mode "soft"`) {
		t.Errorf("plan error %v, want the unknown process and mode named", err)
	}
}

// fakeCgroupRoot is a directory that looks like cgroup v1's memory
// controller to the supervisor: control files are plain files.
func fakeCgroupRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "memory.limit_in_bytes"), []byte("9223372036854771712\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestCgroupPlumbingOnAFakeRoot(t *testing.T) {
	root := fakeCgroupRoot(t)
	if err := checkCgroupRoot(root); err != nil {
		t.Fatal(err)
	}
	g, err := newMemCgroup(root, cgroupName(42, "ingester-2"), 256<<20)
	if err != nil {
		t.Fatal(err)
	}
	if g.dir != filepath.Join(root, "lokilab-42-ingester-2") {
		t.Errorf("dir %s", g.dir)
	}
	read := func(f string) string {
		b, err := os.ReadFile(filepath.Join(g.dir, f))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := read("memory.limit_in_bytes"); got != fmt.Sprint(256<<20) {
		t.Errorf("limit_in_bytes %q", got)
	}
	if got := read("memory.swappiness"); got != "0" {
		t.Errorf("swappiness %q, want 0: a limited process must be killed, not swapped", got)
	}
	if err := g.addPID(1234); err != nil || read("cgroup.procs") != "1234" {
		t.Errorf("addPID: %v, cgroup.procs %q", err, read("cgroup.procs"))
	}
	// Where the kernel has memsw, it gets the limit too, so swap cannot
	// stretch it.
	if err := os.WriteFile(filepath.Join(g.dir, "memory.memsw.limit_in_bytes"), []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SetCgroupMemoryLimit(g.dir, 128<<20); err != nil {
		t.Fatal(err)
	}
	if read("memory.memsw.limit_in_bytes") != fmt.Sprint(128<<20) || read("memory.limit_in_bytes") != fmt.Sprint(128<<20) {
		t.Errorf("runtime limit not written to both files")
	}

	// OOM kills: the oom_kill count of memory.oom_control rising.
	oom := func(n int) {
		s := fmt.Sprintf("oom_kill_disable 0\nunder_oom 0\noom_kill %d\n", n)
		if err := os.WriteFile(filepath.Join(g.dir, "memory.oom_control"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	oom(0)
	g.oomBase = 0
	if g.oomKilled(true) {
		t.Error("a SIGKILL without the count rising taken for an OOM kill (kill -9 by a user)")
	}
	oom(1)
	if !g.oomKilled(true) {
		t.Error("the count rose: an OOM kill")
	}
	if g.oomKilled(true) {
		t.Error("the same kill counted twice")
	}
	// An old kernel: no oom_kill line; a SIGKILL while failcnt rose.
	if err := os.WriteFile(filepath.Join(g.dir, "memory.oom_control"), []byte("oom_kill_disable 0\nunder_oom 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(g.dir, "memory.failcnt"), []byte("0"), 0o644)
	g.failBase = 0
	_ = os.WriteFile(filepath.Join(g.dir, "memory.failcnt"), []byte("17"), 0o644)
	if !g.oomKilled(true) {
		t.Error("no oom_kill line, SIGKILL and failcnt rising: an OOM kill")
	}
	if err := g.remove(removeCgroupDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("group not removed: %v", err)
	}
}

func TestCgroupRootNotWritableFailsLoudly(t *testing.T) {
	err := checkCgroupRoot(filepath.Join(t.TempDir(), "nothing"))
	if err == nil || !strings.Contains(err.Error(), "gomemlimit") || !strings.Contains(err.Error(), "soft GC target") {
		t.Errorf("checkCgroupRoot = %v, want a clear error naming the gomemlimit fallback for what it is", err)
	}
	// Free ports: the refusal must be the cgroup's, not a port taken by
	// another lab on this machine.
	cfg := defaultAllInOne(t, append(freePortFlags(t), "-processes", "-data.dir", t.TempDir(), "-processes.memory-limit", "ingester-2=256MiB",
		"-processes.cgroup-root", filepath.Join(t.TempDir(), "none"))...)
	logger, _ := server.NewLogger(io.Discard, "error", "logfmt")
	err = RunProcesses(context.Background(), cfg, nil, logger, "/bin/false", io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "cgroup v1's memory controller") {
		t.Errorf("RunProcesses = %v, want it to refuse to run without the limit", err)
	}
}

// TestCgroupSupervisorCreatesAndRemovesGroups runs the supervisor with a
// memory limit on kafka against a fake root, with sh as the binary (so
// kafka fails at once): the group is created with the limit, the child's
// pid is written to it, and the group is gone when the supervisor returns.
func TestCgroupSupervisorCreatesAndRemovesGroups(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	root := fakeCgroupRoot(t)
	cfg := defaultAllInOne(t, append(freePortFlags(t), "-processes", "-data.dir", t.TempDir(), "-log.level", "error",
		"-processes.memory-limit", "kafka=64MiB", "-processes.cgroup-root", root)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var logs strings.Builder
	logger, _ := server.NewLogger(&logs, "info", "logfmt")
	err = RunProcesses(ctx, cfg, nil, logger, sh, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "kafka (pid ") {
		t.Fatalf("RunProcesses = %v, want kafka's startup failure", err)
	}
	dir := filepath.Join(root, cgroupName(os.Getpid(), "kafka"))
	if !strings.Contains(logs.String(), "memory limit: a cgroup of its own") || !strings.Contains(logs.String(), dir) {
		t.Errorf("the supervisor did not log the group:\n%s", logs.String())
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("group %s left behind: %v", dir, err)
	}
}

// TestCgroupRealOOMKill puts a process that allocates without end into a
// real 32MiB memory cgroup: the kernel kills it with SIGKILL and the
// group's OOM count says so. It needs root and cgroup v1.
func TestCgroupRealOOMKill(t *testing.T) {
	root := DefaultCgroupMemoryRoot
	if err := checkCgroupRoot(root); err != nil {
		fmt.Fprintf(os.Stderr, "SKIPPING TestCgroupRealOOMKill: no writable cgroup v1 memory controller here: %v\n", err)
		t.Skipf("SKIPPED LOUDLY: no writable cgroup v1 memory controller: %v", err)
	}
	g, err := newMemCgroup(root, cgroupName(os.Getpid(), "oomtest"), 32<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.remove(removeCgroupDir); err != nil {
			t.Error(err)
		}
	})
	// tail keeps a "line" of /dev/zero in memory, and it never ends.
	cmd := exec.Command("tail", "/dev/zero")
	if err := cmd.Start(); err != nil {
		t.Skipf("SKIPPED LOUDLY: cannot start tail: %v", err)
	}
	if err := g.addPID(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("not OOM-killed within 30s under a 32MiB limit")
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !killedBySIGKILL(cmd.ProcessState) {
		t.Fatalf("exit %v (%v), want SIGKILL from the OOM killer", cmd.ProcessState, ws)
	}
	if !g.oomKilled(true) {
		t.Error("SIGKILLed, but the group's oom_kill count did not rise")
	}
	_, peak := g.usage()
	t.Logf("OOM-killed: %v, peak %d MiB under a 32MiB limit", cmd.ProcessState, peak>>20)
}
