package scenario

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/lokilab/lokilab/pkg/app"
)

// The lokilab binary processes mode runs, built once per test binary (a
// test binary is not lokilab) and removed by TestMain.
var built struct {
	once     sync.Once
	dir, bin string
	err      error
}

func lokilabBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "lokilab-scenario-bin-")
		if built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "lokilab")
		out, err := exec.Command("go", "build", "-o", built.bin, "github.com/lokilab/lokilab/cmd/lokilab").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("building lokilab: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

func removeBuiltBinary() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

// requireCgroups skips, loudly, where memory cgroups cannot be made.
func requireCgroups(t *testing.T) {
	t.Helper()
	root := app.DefaultCgroupMemoryRoot
	probe := filepath.Join(root, fmt.Sprintf("lokilab-probe-test-%d", os.Getpid()))
	err := os.Mkdir(probe, 0o755)
	if err == nil {
		err = os.Remove(probe)
		if _, serr := os.Stat(filepath.Join(root, "memory.limit_in_bytes")); serr != nil {
			err = serr
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "SKIPPING %s: needs root and a writable cgroup v1 memory controller at %s: %v\n", t.Name(), root, err)
		t.Skipf("SKIPPED LOUDLY: needs root and a writable cgroup v1 memory controller at %s: %v", root, err)
	}
}

// noLeftovers checks that a run left no memory cgroup and no process of
// its supervisor behind.
func noLeftovers(t *testing.T, supervisorPID int) {
	t.Helper()
	prefix := fmt.Sprintf("lokilab-%d-", supervisorPID)
	des, _ := os.ReadDir(app.DefaultCgroupMemoryRoot)
	for _, de := range des {
		if strings.HasPrefix(de.Name(), prefix) {
			t.Errorf("memory cgroup %s left behind", de.Name())
		}
	}
	if supervisorPID > 0 && syscall.Kill(supervisorPID, 0) == nil {
		t.Errorf("supervisor %d still running", supervisorPID)
	}
}

// TestProcessesModeKillRestartAndMemoryLimit starts the system as
// processes with a memory cgroup on ingester-2, kills ingester-1 (the
// supervisor restarts it), restarts ingester-3, changes ingester-2's limit
// at runtime, and stops: no process or cgroup is left.
func TestProcessesModeKillRestartAndMemoryLimit(t *testing.T) {
	requireCgroups(t)
	bin := lokilabBinary(t)
	cfg, err := LabConfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server.LogLevel = "warn"
	cfg.Processes.MemoryLimits = app.MemoryLimits{"ingester-2": 512 << 20}
	ctx := context.Background()
	sys, err := StartProcesses(ctx, cfg, bin, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	supPID := sys.procs.cmd.Process.Pid
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := sys.Stop(stopCtx); err != nil {
			t.Errorf("Stop: %v", err)
		}
		noLeftovers(t, supPID)
	})
	f := sys.Faults()
	for _, c := range f.Capabilities() {
		if c.Hook == "KillComponent" && !c.Built {
			t.Fatal("KillComponent not built in processes mode")
		}
	}
	if len(sys.MetricsTargets()) != 4+3 {
		t.Errorf("metrics targets %v: want supervisor, distributor, querier, compactor and 3 ingesters", sys.MetricsTargets())
	}

	before, err := sys.Process(ctx, "ingester-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.KillComponent(ctx, "ingester-1"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		p, err := sys.Process(ctx, "ingester-1")
		if err == nil && p.PID != 0 && p.PID != before.PID && p.Ready && p.Restarts == 1 {
			if !strings.Contains(p.LastExit, "killed") || strings.Contains(p.LastExit, "oom") {
				t.Errorf("last exit %q, want a plain SIGKILL (not an OOM kill: ingester-1 has no cgroup)", p.LastExit)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingester-1 not restarted and ready: %+v %v", p, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := f.RestartComponent(ctx, "ingester-3"); err != nil {
		t.Fatal(err)
	}

	p2, err := sys.Process(ctx, "ingester-2")
	if err != nil {
		t.Fatal(err)
	}
	if p2.Cgroup == "" || p2.MemoryLimit != 512<<20 {
		t.Fatalf("ingester-2: cgroup %q limit %d, want a group with 512MiB", p2.Cgroup, p2.MemoryLimit)
	}
	procs, err := os.ReadFile(filepath.Join(p2.Cgroup, "cgroup.procs"))
	if err != nil || !strings.Contains(string(procs), fmt.Sprint(p2.PID)) {
		t.Errorf("ingester-2 (pid %d) not in its group: %q %v", p2.PID, procs, err)
	}
	if err := f.MemoryLimit(ctx, "ingester-2", 384<<20); err != nil {
		t.Fatal(err)
	}
	if p2, _ = sys.Process(ctx, "ingester-2"); p2.MemoryLimit != 384<<20 {
		t.Errorf("limit after MemoryLimit: %d, want 384MiB", p2.MemoryLimit)
	}
	if err := f.MemoryLimit(ctx, "ingester-1", 384<<20); err == nil || !strings.Contains(err.Error(), "no memory cgroup") {
		t.Errorf("MemoryLimit on a process without a group: %v", err)
	}

	// A broker fault through the broker process's own endpoint: a push is
	// refused while produce requests fail, and accepted once cleared.
	push := func() (int, string) {
		body := fmt.Sprintf(`{"streams":[{"stream":{"app":"kfault"},"values":[["%d","line"]]}]}`, time.Now().UnixNano())
		resp, err := http.Post(sys.API+"/loki/api/v1/push", "application/json", strings.NewReader(body))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if err := f.KafkaFault(ctx, KafkaFault{Request: "produce", ErrorCode: kerr.UnknownServerError.Code}); err != nil {
		t.Fatal(err)
	}
	if code, body := push(); code != http.StatusServiceUnavailable || !strings.Contains(body, "UNKNOWN_SERVER_ERROR") {
		t.Errorf("push during a produce fault: %d %q, want 503 UNKNOWN_SERVER_ERROR", code, body)
	}
	if err := f.ClearKafkaFaults(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := push(); code != http.StatusNoContent {
		t.Errorf("push after the fault was cleared: %d %q, want 204", code, body)
	}
}
