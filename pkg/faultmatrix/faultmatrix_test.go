package faultmatrix

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// built is the lokilab binary the labs run as (the test binary is not
// lokilab), built once for the package's tests and removed by TestMain.
var built struct {
	once     sync.Once
	dir, bin string
	err      error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

func buildLokilab(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "lokilab-faultmatrix-bin-"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "lokilab")
		if out, err := exec.Command("go", "build", "-o", built.bin, "github.com/lokilab/lokilab/cmd/lokilab").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("building lokilab: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// TestFaultMatrixShort is the matrix's CI form: every fault once against a
// fresh multi-process lab with a small load, and not one acknowledged
// line may be missing. A fault that cannot run here (the OOM fault
// without a writable cgroup v1 memory controller) is logged as skipped,
// loudly; a fault whose run failed fails the test, since nothing was
// proven for it.
func TestFaultMatrixShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ten multi-process labs, one after the other")
	}
	bin := buildLokilab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	var progress strings.Builder
	began := time.Now()
	results, err := Run(ctx, Config{Binary: bin, Dir: t.TempDir(), Short: true, Progress: &progress})
	t.Logf("fault matrix (short) took %s:\n%s", time.Since(began).Round(time.Second), progress.String())
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	if err := WriteTable(&table, results); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
	want := 0
	for _, f := range Faults() {
		if !f.LongOnly {
			want++
		}
	}
	if len(results) != want {
		t.Fatalf("%d results for %d faults", len(results), want)
	}
	for _, r := range results {
		switch {
		case r.Skipped != "":
			t.Logf("SKIPPED %s: %s", r.Fault, r.Skipped)
		case r.Err != "":
			t.Errorf("%s: the run failed, nothing was proven: %s", r.Fault, r.Err)
		case r.Lost():
			t.Errorf("%s: %d of %d acknowledged lines missing", r.Fault, r.Missing, r.AckedLines)
		case r.AckedLines == 0:
			t.Errorf("%s: no acknowledged line to check", r.Fault)
		}
	}
}

// TestFaultMatrixCatchesLoss shows the matrix can fail: the same run, but
// an acknowledged line the lab never received is added to the ack log
// before verify (a fault whose "heal" forges an acknowledgement), and the
// row must report it missing.
func TestFaultMatrixCatchesLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a multi-process lab")
	}
	bin := buildLokilab(t)
	forged := Fault{
		Name: "forged-ack", What: "an acknowledgement for a line never pushed, appended to the ack log",
		Inject: func(context.Context, *env) error { return nil },
		Heal: func(_ context.Context, e *env) error {
			// The load's first record, as worker 99's: same tenant,
			// stream and run, lines that were never pushed.
			// (The log is flushed every second: wait for a record.)
			var b []byte
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				var err error
				if b, err = os.ReadFile(filepath.Join(e.dir, "acks.log")); err != nil {
					return err
				}
				for _, l := range strings.Split(string(b), "\n") {
					f := strings.Split(l, "\t")
					if strings.HasPrefix(l, "#") || len(f) != 6 {
						continue
					}
					run, _, _ := strings.Cut(f[2], "-")
					f[2], f[3], f[5] = run+"-99", "1", ""
					e.extraAcks = strings.Join(f, "\t") + "\n"
					return nil
				}
			}
			return fmt.Errorf("no record in the ack log within 10s:\n%.300s", b)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := Config{Binary: bin, Dir: t.TempDir(), Short: true, Load: 8 * time.Second, FaultAt: 2 * time.Second, FaultFor: time.Second, VerifyWait: 3 * time.Second}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	r := runOne(ctx, cfg, forged)
	t.Logf("%+v", r)
	if r.Err != "" {
		t.Fatalf("the run failed: %s", r.Err)
	}
	if !r.Lost() || r.Missing != 1 {
		t.Fatalf("missing %d, want exactly the forged line", r.Missing)
	}
}
