package main

import (
	"bytes"
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

	"github.com/lokilab/lokilab/internal/freeport"
)

// binaries built once for every test in this package.
var bin struct {
	lokilab, distributor, ingester, querier string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lokilab-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.lokilab = filepath.Join(dir, "lokilab")
	bin.distributor = filepath.Join(dir, "distributor")
	bin.ingester = filepath.Join(dir, "ingester")
	bin.querier = filepath.Join(dir, "querier")
	for out, pkg := range map[string]string{bin.lokilab: ".", bin.distributor: "../distributor", bin.ingester: "../ingester", bin.querier: "../querier"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", pkg, "failed:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one of the lab's processes, started for a test.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, name, path string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, cmd: exec.Command(path, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, p.out.String())
		}
	})
	return p
}

// kill sends SIGKILL: no shutdown hooks, no flush, as in an OOM kill.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.t.Fatalf("%s did not exit within 60s of SIGTERM", p.name)
	}
	if p.err != nil {
		p.t.Fatalf("%s exited uncleanly after SIGTERM: %v\n%s", p.name, p.err, p.out.String())
	}
}

// waitOutput waits until the process has printed s.
func (p *proc) waitOutput(s string) {
	p.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.out.String(), s) {
		select {
		case <-p.done:
			p.t.Fatalf("%s exited (%v) before printing %q:\n%s", p.name, p.err, s, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not print %q within 60s:\n%s", p.name, s, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitReady polls GET url until it answers 200.
func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 60s (last: %v)", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a loopback port for a process to bind later, below the
// kernel's ephemeral range (internal/freeport says why).
func freePort(t *testing.T) string {
	t.Helper()
	p, err := freeport.Block(1)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(p)
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
