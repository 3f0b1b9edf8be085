package scenario

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// A goroutine profile (?debug=1) as the runtime writes it, cut down: two
// stacks of the leak (different addresses, same functions) and one other.
const goroutineProfileText = `goroutine profile: total 45
30 @ 0x47a1ce 0x40b4a5 0x40b0f2 0xa1c3b5 0x4831c1
#	0x40b0f1	runtime.chansend1+0x11							/usr/local/go/src/runtime/chan.go:161
#	0xa1c3b4	github.com/lokilab/lokilab/pkg/querier.(*tailer).subscriber+0x74	/work/main/pkg/querier/tail_leak.go:63

12 @ 0x47a1ce 0x40b4a5 0x40b0f2 0xa1c3b9 0x4831c1
#	0x40b0f1	runtime.chansend1+0x11							/usr/local/go/src/runtime/chan.go:161
#	0xa1c3b8	github.com/lokilab/lokilab/pkg/querier.(*tailer).subscriber+0x78	/work/main/pkg/querier/tail_leak.go:63

3 @ 0x47a1ce 0x4440b7 0x4b0a65
#	0x4440b6	internal/poll.runtime_pollWait+0x56	/usr/local/go/src/runtime/netpoll.go:351
#	0x4b0a64	net/http.(*conn).serve+0x44		/usr/local/go/src/net/http/server.go:2000
`

// TestParsePprofText: stacks with the same functions add up whatever their
// addresses; the top frame skips the runtime; growth is ranked.
func TestParsePprofText(t *testing.T) {
	after, err := parsePprofText(strings.NewReader(goroutineProfileText))
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 2 || after[0].Value != 42 || after[0].Top() != "querier.(*tailer).subscriber" || after[1].Top() != "net/http.(*conn).serve" {
		t.Fatalf("parsed %+v", after)
	}
	if n := countIn(after, leakFunc); n != 42 {
		t.Errorf("countIn = %d, want 42", n)
	}
	before := []pprofStack{{Funcs: after[0].Funcs, Value: 2}, {Funcs: after[1].Funcs, Value: 3}}
	g := grownStacks(before, after)
	if len(g) != 1 || g[0].Before != 2 || g[0].Value != 42 {
		t.Errorf("grown %+v, want the leak's stack alone, 2 → 42", g)
	}
	heap := "heap profile: 3: 12288 [9: 40960] @ heap/1048576\n1: 8192 [4: 32768] @ 0x1 0x2\n#\t0x1\tbufio.NewWriterSize+0x3f\t/go/src/bufio/bufio.go:599\n#\t0x2\tgithub.com/gorilla/websocket.newConn+0x1\t/x.go:1\n\n# runtime.MemStats\n# HeapAlloc = 5242880\n# Stack = 1048576 / 1081344\n"
	hs, err := parsePprofText(strings.NewReader(heap))
	if err != nil || len(hs) != 1 || hs[0].Value != 8192 || hs[0].Top() != "bufio.NewWriterSize" {
		t.Fatalf("heap parsed %+v, %v", hs, err)
	}
	if memStat(heap, "HeapAlloc") != 5242880 || memStat(heap, "Stack") != 1048576 {
		t.Error("MemStats trailer not read")
	}
}

func runLeakForTest(t *testing.T, knobs map[string]string) *Result {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the whole system as processes, twice")
	}
	bin := lokilabBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var progress strings.Builder
	start := time.Now()
	res, err := Run(ctx, Leak(), Options{Short: true, Dir: t.TempDir(), Knobs: knobs, Progress: &progress, Binary: bin})
	t.Logf("leak %v took %s:\n%s", knobs, time.Since(start).Round(time.Millisecond), progress.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Err != nil {
		t.Fatalf("the run stopped early: %v", res.Err)
	}
	noLeftovers(t, 0)
	return res
}

// TestLeak runs question 12's scenario in short mode: the querier's
// goroutines grow with the tails closed while the fault is on, the
// goroutine profile pins them in (*tailer).subscriber, and restarted with
// the fault off the same traffic leaves them flat.
func TestLeak(t *testing.T) {
	res := runLeakForTest(t, nil)
	requirePassed(t, res)
	b, err := os.ReadFile(res.Report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### Goroutine profile (leak-on phase)", "`querier.(*tailer).subscriber`", "### Heap profile", "| fault-off | false |"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
}

// TestLeakBrokenKnobs turns both knobs the wrong way: no leak in the first
// phase, the leak in the second. Every check must fail.
func TestLeakBrokenKnobs(t *testing.T) {
	res := runLeakForTest(t, map[string]string{"leak": "false", "fixed": "false"})
	got := failedChecks(res)
	want := []string{
		"leak on: the querier's goroutines grow with the tails closed",
		"leak on: the goroutine profile names the leaking function",
		"fault off: the querier's goroutines stay flat under the same traffic",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("failed checks %q, want %q", got, want)
	}
}
