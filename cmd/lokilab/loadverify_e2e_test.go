package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoadVerifyAcrossKill9 is the lab's promise as a user checks it:
// `lokilab load` pushes to `lokilab run` and logs every acknowledged line;
// midway the whole `lokilab run` process is SIGKILLed (broker, distributor,
// ingesters and all, nothing flushed) and started again on its data
// directory; afterwards `lokilab verify` reads every acknowledged line back
// through the query API, each exactly once — some from chunks flushed before
// the kill, some replayed from Kafka, some flushed twice. Auth is on, so the
// two tenants are really two.
//
// Then the ack log is tampered with — a line that was never pushed — and
// verify must fail, naming it.
func TestLoadVerifyAcrossKill9(t *testing.T) {
	dataDir := t.TempDir()
	httpPort, kafkaPort := freePort(t), freePort(t)
	base := "http://127.0.0.1:" + httpPort
	runArgs := []string{"run", "-data.dir", dataDir, "-server.http-listen-port", httpPort,
		"-kafka.broker.listen-address", "127.0.0.1:" + kafkaPort, "-log.level", "warn",
		"-memberlist.bind-port", "0", "-ingester.http-base-port", "0", "-auth.enabled",
		// Flush and commit often, so that the kill finds lines in the
		// store, in memory and in Kafka, and the replay re-reads some
		// already flushed: duplicates the querier must remove.
		"-ingester.flush-check-period", "300ms", "-ingester.chunks-idle-period", "500ms"}
	lab := start(t, "lokilab run", bin.lokilab, runArgs...)
	waitReady(t, base+"/ready")
	waitRingOwned(t, base, 12, 3)

	ackLog := filepath.Join(t.TempDir(), "acks.log")
	const loadFor = 12 * time.Second
	loadStart := time.Now()
	load := start(t, "lokilab load", bin.lokilab, "load", "-url", base+"/loki/api/v1/push",
		"-duration", loadFor.String(), "-rate", "1500", "-tenants", "2", "-streams", "6", "-batch", "50",
		"-concurrency", "3", "-push-timeout", "5s", "-ack-log", ackLog, "-seed", "7")

	// Kill midway, once some pushes were acknowledged and are in the log
	// (it is flushed every second).
	waitLoadCond(t, 10*time.Second, "acknowledged pushes in the ack log", func() bool { return ackRecords(t, ackLog) > 0 })
	time.Sleep(time.Until(loadStart.Add(4 * time.Second)))
	before := ackRecords(t, ackLog)
	lab.kill()
	killed := time.Now()
	time.Sleep(500 * time.Millisecond)
	lab = start(t, "lokilab run (after SIGKILL)", bin.lokilab, runArgs...)
	waitReady(t, base+"/ready")
	t.Logf("lokilab run SIGKILLed with %d ack records logged; ready again after %s", before, time.Since(killed).Round(time.Millisecond))

	select {
	case <-load.done:
	case <-time.After(loadFor + 30*time.Second):
		t.Fatal("lokilab load did not finish")
	}
	out := load.out.String()
	t.Logf("lokilab load:\n%s", out)
	if load.err != nil {
		t.Fatalf("lokilab load failed: %v", load.err)
	}
	for _, want := range []string{"lines/s", "p99", "error connection_refused"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the load output lacks %q: the progress, the summary or the restart is not in it", want)
		}
	}
	if after := ackRecords(t, ackLog); after <= before {
		t.Fatalf("no push was acknowledged after the restart (%d ack records before the kill, %d at the end)", before, after)
	}

	// Every acknowledged line, exactly once. Verify waits while lines
	// are still on their way to the restarted ingesters.
	verify := exec.Command(bin.lokilab, "verify", "-url", base, "-ack-log", ackLog, "-wait", "60s", "-retry-interval", "1s")
	vout, err := verify.CombinedOutput()
	t.Logf("lokilab verify:\n%s", vout)
	if err != nil {
		t.Fatalf("lokilab verify failed after the SIGKILL: %v", err)
	}
	acked := reportNumber(t, string(vout), `acknowledged\s+([\d,]+) lines`)
	if acked < 1000 || reportNumber(t, string(vout), `missing\s+([\d,]+)`) != 0 || reportNumber(t, string(vout), `duplicated\s+([\d,]+)`) != 0 ||
		strings.Contains(string(vout), "another tenant") {
		t.Fatalf("verify's report is not every acknowledged line found once, by its own tenant")
	}
	t.Logf("copies the querier removed while verify read (replays of flushed chunks): %v",
		metricSum(t, base, "lokilab_querier_duplicates_removed_total"))

	// A line the log says was acknowledged but never was: verify must
	// fail and name it.
	tampered := filepath.Join(t.TempDir(), "tampered.log")
	b, err := os.ReadFile(ackLog)
	if err != nil {
		t.Fatal(err)
	}
	run := regexp.MustCompile(`(?m)^# run ([0-9a-z]+) `).FindSubmatch(b)
	if run == nil {
		t.Fatalf("the ack log names no run:\n%.300s", b)
	}
	b = fmt.Appendf(b, "tenant-2\t{app=\"search\", env=\"prod\", job=\"lokilab-load\", pod=\"search-3\"}\t%s-1\t99999\t%d\t\n",
		run[1], killed.UnixNano())
	if err := os.WriteFile(tampered, b, 0o644); err != nil {
		t.Fatal(err)
	}
	verify = exec.Command(bin.lokilab, "verify", "-url", base, "-ack-log", tampered, "-wait", "0")
	vout, err = verify.CombinedOutput()
	t.Logf("lokilab verify of the tampered log:\n%s", vout)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("verify of an ack log naming a line never pushed: %v, want a non-zero exit", err)
	}
	if want := fmt.Sprintf("lid=%s-1-99999", run[1]); !strings.Contains(string(vout), want) || reportNumber(t, string(vout), `missing\s+([\d,]+)`) != 1 {
		t.Fatalf("verify did not report exactly the line never pushed (%s) as missing", want)
	}
	lab.stop()
}

// ackRecords counts the records in an ack log (0 while it does not exist).
func ackRecords(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			n++
		}
	}
	return n
}

// reportNumber reads the number that re's group captures in s, commas allowed.
func reportNumber(t *testing.T, s, re string) int {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no %q in:\n%s", re, s)
	}
	n, err := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func waitLoadCond(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLoadVerifyProcessesIngesterKill9 is the same promise against the
// multi-process lab, as issue 5 states it: `lokilab load` pushes through
// the gateway of `lokilab run -processes`, one ingester process is
// SIGKILLed midway (the supervisor restarts it; it replays its partitions
// from the committed offsets), and `lokilab verify` finds every
// acknowledged line exactly once.
func TestLoadVerifyProcessesIngesterKill9(t *testing.T) {
	args := processesArgs(t, t.TempDir(),
		"-ingester.flush-check-period", "300ms", "-ingester.chunks-idle-period", "500ms")
	gw := "http://" + args.gateway
	sup := start(t, "lokilab run -processes", bin.lokilab, args.args...)
	sup.waitOutput("lokilab is running as separate processes")
	waitReady(t, gw+"/ready")

	ackLog := filepath.Join(t.TempDir(), "acks.log")
	const loadFor = 10 * time.Second
	loadStart := time.Now()
	load := start(t, "lokilab load", bin.lokilab, "load", "-url", gw+"/loki/api/v1/push",
		"-duration", loadFor.String(), "-rate", "1500", "-tenants", "2", "-streams", "6", "-batch", "50",
		"-concurrency", "3", "-push-timeout", "5s", "-ack-log", ackLog, "-seed", "11")
	waitLoadCond(t, 10*time.Second, "acknowledged pushes in the ack log", func() bool { return ackRecords(t, ackLog) > 0 })
	time.Sleep(time.Until(loadStart.Add(4 * time.Second)))
	victim := getProcesses(t, gw)["ingester-2"]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	before := ackRecords(t, ackLog)
	select {
	case <-load.done:
	case <-time.After(loadFor + 30*time.Second):
		t.Fatal("lokilab load did not finish")
	}
	t.Logf("lokilab load:\n%s", load.out.String())
	if load.err != nil {
		t.Fatalf("lokilab load failed: %v", load.err)
	}
	if after := ackRecords(t, ackLog); after <= before {
		t.Fatalf("no push was acknowledged after the kill (%d ack records at the kill, %d at the end)", before, after)
	}
	if p := getProcesses(t, gw)["ingester-2"]; p.Restarts != 1 || p.PID == victim.PID {
		t.Errorf("ingester-2 after the kill: pid %d (was %d), %d restarts; want a restart", p.PID, victim.PID, p.Restarts)
	}

	verify := exec.Command(bin.lokilab, "verify", "-url", gw, "-ack-log", ackLog, "-wait", "60s", "-retry-interval", "1s")
	vout, err := verify.CombinedOutput()
	t.Logf("lokilab verify:\n%s", vout)
	if err != nil {
		t.Fatalf("lokilab verify failed after an ingester's SIGKILL: %v", err)
	}
	if acked := reportNumber(t, string(vout), `acknowledged\s+([\d,]+) lines`); acked < 1000 ||
		reportNumber(t, string(vout), `missing\s+([\d,]+)`) != 0 || reportNumber(t, string(vout), `duplicated\s+([\d,]+)`) != 0 {
		t.Fatalf("verify's report is not every acknowledged line found once")
	}
	interrupt(t, sup)
}
