package scenario

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// leakFunc is the function the lab's deliberate leak parks its goroutines
// in (pkg/querier/tail_leak.go): what the goroutine profile must name.
const leakFunc = "querier.(*tailer).subscriber"

// Leak is question 12's scenario: the lab's deliberate goroutine leak in
// the querier's /tail (querier.lab_leak_tail_subscribers) under steady
// load and a stream of short-lived tails, found with the querier's own
// metrics and pprof, then the system restarted without it.
func Leak() *Scenario {
	return &Scenario{
		Name:     "leak",
		Question: 12,
		Title:    "Go memory leak investigation",
		Hypothesis: "With the lab's tail leak on, every /tail a client closes leaves a goroutine behind in the querier: under steady load and a stream of short tails " +
			"the querier's goroutines and heap grow, and two goroutine profiles taken a phase apart name the leaking function, (*tailer).subscriber, with a count that grew by about the number of tails closed. " +
			"Restarted with the fault off (the fix deployed), the same traffic leaves the querier's goroutines flat.",
		Knobs: []Knob{
			{Name: "leak", Kind: KnobBool, Default: "true", Usage: "querier.lab_leak_tail_subscribers in the first phase. false is a broken knob: nothing leaks and the growth checks fail."},
			{Name: "fixed", Kind: KnobBool, Default: "true", Usage: "The second phase restarts the system with the fault off. false is the broken knob: it still leaks and the \"flat\" check fails."},
			{Name: "phase", Kind: KnobDuration, Default: "60s", Short: "10s", Usage: "How long each phase opens and closes tails."},
			{Name: "tails-per-second", Kind: KnobFloat, Default: "10", Short: "8", Usage: "Tails opened (and closed after their first message) per second."},
			{Name: "lines-per-second", Kind: KnobFloat, Default: "1000", Usage: "The steady push load under the tails (what they tail)."},
			{Name: "min-fraction", Kind: KnobFloat, Default: "0.5", Usage: "With the leak on, the querier's goroutines must grow by at least this fraction of the tails closed (and at least 20)."},
			{Name: "flat-bound", Kind: KnobInt, Default: "20", Usage: "With the fault off, the querier's goroutines may grow by at most this many (connection pools to the ingesters grow and shrink with the queries)."},
		},
		// Separate processes: the querier's goroutines, heap and profiles
		// are its own, and the leaked goroutines die with its process, not
		// with the lab's.
		Processes: func(Values) bool { return true },
		Configure: func(cfg *app.AllInOneConfig, k Values) { cfg.Querier.LabLeakTailSubscribers = k.Bool("leak") },
		Series: []Selector{
			{Name: "go_goroutines", Target: "querier"},
			{Name: "go_memstats_heap_inuse_bytes", Target: "querier"},
			{Name: "go_memstats_stack_inuse_bytes", Target: "querier"},
			{Name: "process_resident_memory_bytes", Target: "querier"},
			{Name: "loki_querier_tail_active", Target: "querier"},
		},
		Plots: []PlotSpec{
			{File: "leak-goroutines.png", Title: "The querier's goroutines: leak on, then restarted with it off", YLabel: "goroutines", Lines: []LineSpec{
				{Select: Selector{Name: "go_goroutines", Target: "querier"}, Legend: "leak on"},
				{Select: Selector{Name: "go_goroutines", Target: "fixed:querier"}, Legend: "fault off"},
			}},
			{File: "leak-memory.png", Title: "The querier's heap and goroutine stacks in use", YLabel: "bytes", Lines: []LineSpec{
				{Select: Selector{Name: "go_memstats_heap_inuse_bytes", Target: "querier"}, Legend: "heap, leak on"},
				{Select: Selector{Name: "go_memstats_stack_inuse_bytes", Target: "querier"}, Legend: "stacks, leak on"},
				{Select: Selector{Name: "go_memstats_heap_inuse_bytes", Target: "fixed:querier"}, Legend: "heap, fault off"},
				{Select: Selector{Name: "go_memstats_stack_inuse_bytes", Target: "fixed:querier"}, Legend: "stacks, fault off"},
			}},
		},
		Look: []string{
			"`go_goroutines`, `go_memstats_stack_inuse_bytes` and `go_memstats_heap_inuse_bytes` on the querier's `/metrics`: lines that climb with traffic and never come down (a goroutine leak costs stack first, heap only for what it pins).",
			"`loki_querier_tail_active`: the tails open now — flat while goroutines climb, so the goroutines are not live tails.",
			"`/debug/pprof/goroutine?debug=1` on the querier, twice: the stack whose count grows is the leak (here `(*tailer).subscriber` at a channel send).",
			"`go tool pprof -diff_base heap-1.pb.gz heap-2.pb.gz` of two `/debug/pprof/heap` profiles: what the leaked goroutines keep reachable.",
			"`/config` on the querier: `lab_leak_tail_subscribers: true` while the fault is on.",
		},
		Code: []CodeRef{
			{"pkg/querier/tail_leak.go", "the lab's bug: an unbuffered channel nobody receives from once the client has gone, and the one-character fix"},
			{"pkg/querier/tail.go", "serveTail: the tail's lifetime, its context and the goroutine that notices the client leaving"},
			{"pkg/querier/config.go", "lab_leak_tail_subscribers (-querier.lab-leak-tail-subscribers), off by default"},
			{"pkg/server/server.go", "/debug/pprof/ on every component"},
			{"pkg/scenario/leak.go", "this scenario: the tail churn, the profiles and how they are read"},
			{"docs/questions/12-memory-leak.md", "the question, the pprof steps and a reference run"},
		},
		Budget:      5 * time.Minute,
		ShortBudget: 2 * time.Minute,
		Run:         runLeak,
	}
}

// tailChurn opens tails against api at rate per second, each closed by the
// client after its first message (or a few seconds), like a dashboard
// panel refreshing or a CLI user pressing Ctrl-C.
type tailChurn struct {
	api    string
	opened atomic.Int64
	closed atomic.Int64
	failed atomic.Int64
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startTailChurn(ctx context.Context, api string, rate float64) *tailChurn {
	ctx, cancel := context.WithCancel(ctx)
	c := &tailChurn{api: api, cancel: cancel}
	const workers = 4
	every := time.Duration(float64(workers) * float64(time.Second) / rate)
	u := strings.Replace(api, "http://", "ws://", 1) + "/loki/api/v1/tail?" + url.Values{"query": {`{app="checkout"}`}, "limit": {"5"}}.Encode()
	for range workers {
		c.wg.Go(func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				c.once(ctx, u)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	return c
}

func (c *tailChurn) once(ctx context.Context, u string) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.DialContext(ctx, u, http.Header{tenant.Header: {soakTenant}})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		if ctx.Err() == nil {
			c.failed.Add(1)
		}
		return
	}
	c.opened.Add(1)
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, _, _ = conn.ReadMessage() // the first lines, or the deadline
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = conn.Close()
	c.closed.Add(1)
}

func (c *tailChurn) stop() {
	c.cancel()
	c.wg.Wait()
}

// pprofStack is one stack of a text profile (goroutine or heap,
// ?debug=1): its functions, innermost first, and its value.
type pprofStack struct {
	Funcs []string
	// Value is the goroutine count, or the heap's in-use bytes.
	Value int64
}

// Key identifies the stack by its functions.
func (s pprofStack) Key() string { return strings.Join(s.Funcs, " ← ") }

// Top is the innermost frame outside the runtime: the code that pins it.
func (s pprofStack) Top() string {
	for _, f := range s.Funcs {
		if !strings.HasPrefix(f, "runtime.") && !strings.HasPrefix(f, "internal/") && !strings.HasPrefix(f, "sync.") {
			return f
		}
	}
	if len(s.Funcs) > 0 {
		return s.Funcs[0]
	}
	return "?"
}

// parsePprofText reads a goroutine or heap profile in the text format
// (?debug=1): records start with "N @ addrs" (goroutines) or
// "inuse_objects: inuse_bytes [alloc_objects: alloc_bytes] @ addrs"
// (heap), then one "#\taddr\tfunc+off\tfile:line" line per frame. Stacks
// with the same functions are added up.
func parsePprofText(r io.Reader) ([]pprofStack, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	byKey := map[string]*pprofStack{}
	var order []string
	var cur *pprofStack
	flush := func() {
		if cur == nil || len(cur.Funcs) == 0 {
			cur = nil
			return
		}
		k := cur.Key()
		if s, ok := byKey[k]; ok {
			s.Value += cur.Value
		} else {
			byKey[k] = cur
			order = append(order, k)
		}
		cur = nil
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#\t"):
			if cur == nil {
				continue
			}
			f := strings.Split(line, "\t")
			if len(f) >= 3 {
				fn := f[2]
				if i := strings.LastIndex(fn, "+0x"); i > 0 {
					fn = fn[:i]
				}
				cur.Funcs = append(cur.Funcs, strings.TrimPrefix(fn, "github.com/lokilab/lokilab/pkg/"))
			}
		case strings.Contains(line, " @ "):
			flush()
			head := strings.TrimSpace(line[:strings.Index(line, " @ ")])
			var v int64
			if strings.Contains(head, ":") { // heap: "objects: bytes [..]"
				f := strings.Fields(head)
				if len(f) >= 2 {
					v, _ = strconv.ParseInt(f[1], 10, 64)
				}
			} else {
				v, _ = strconv.ParseInt(head, 10, 64)
			}
			cur = &pprofStack{Value: v}
		default:
			flush()
		}
	}
	flush()
	out := make([]pprofStack, 0, len(order))
	for _, k := range order {
		out = append(out, *byKey[k])
	}
	return out, sc.Err()
}

// stackGrowth is a stack's value in two profiles.
type stackGrowth struct {
	pprofStack
	Before int64
}

// grownStacks returns the stacks of after whose value grew since before,
// most growth first.
func grownStacks(before, after []pprofStack) []stackGrowth {
	prev := map[string]int64{}
	for _, s := range before {
		prev[s.Key()] += s.Value
	}
	var out []stackGrowth
	for _, s := range after {
		if s.Value > prev[s.Key()] {
			out = append(out, stackGrowth{pprofStack: s, Before: prev[s.Key()]})
		}
	}
	slices.SortStableFunc(out, func(a, b stackGrowth) int {
		return int((b.Value - b.Before) - (a.Value - a.Before))
	})
	return out
}

// countIn is the total value of the stacks in which fn appears.
func countIn(ss []pprofStack, fn string) int64 {
	var n int64
	for _, s := range ss {
		for _, f := range s.Funcs {
			if strings.HasSuffix(f, fn) {
				n += s.Value
				break
			}
		}
	}
	return n
}

// leakProfiles are one moment's profiles of the querier.
type leakProfiles struct {
	goroutines, heap []pprofStack
	// heapAlloc and stackInuse are exact runtime.MemStats the heap
	// profile ends with ("# HeapAlloc", "# Stack"), after the collection
	// gc=1 asked for: live heap bytes and goroutine stack bytes.
	heapAlloc, stackInuse int64
}

// memStat reads "# Name = value" from a heap profile's MemStats trailer.
func memStat(text, name string) int64 {
	i := strings.Index(text, "# "+name+" = ")
	if i < 0 {
		return 0
	}
	rest := text[i+len("# "+name+" = "):]
	if j := strings.IndexAny(rest, "\n/"); j >= 0 { // "# Stack = inuse / sys"
		rest = rest[:j]
	}
	v, _ := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
	return v
}

// captureProfiles fetches the querier's goroutine and heap profiles as
// text, and saves them, with the heap's binary form for `go tool pprof
// -diff_base`, in dir as <name>-goroutine.txt, <name>-heap.txt,
// <name>-heap.pb.gz and <name>-goroutine.pb.gz.
func captureProfiles(ctx context.Context, base, dir, name string) (leakProfiles, error) {
	c := &http.Client{Timeout: 30 * time.Second}
	get := func(path, file string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("pprof %s: %w", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("pprof %s: %s", path, resp.Status)
		}
		if err != nil {
			return nil, err
		}
		return b, os.WriteFile(filepath.Join(dir, name+"-"+file), b, 0o644)
	}
	var p leakProfiles
	g, err := get("/debug/pprof/goroutine?debug=1", "goroutine.txt")
	if err != nil {
		return p, err
	}
	if p.goroutines, err = parsePprofText(strings.NewReader(string(g))); err != nil {
		return p, err
	}
	// gc=1: a collection first, so in-use means reachable.
	h, err := get("/debug/pprof/heap?debug=1&gc=1", "heap.txt")
	if err != nil {
		return p, err
	}
	if p.heap, err = parsePprofText(strings.NewReader(string(h))); err != nil {
		return p, err
	}
	p.heapAlloc, p.stackInuse = memStat(string(h), "HeapAlloc"), memStat(string(h), "Stack")
	if _, err = get("/debug/pprof/heap", "heap.pb.gz"); err != nil {
		return p, err
	}
	_, err = get("/debug/pprof/goroutine", "goroutine.pb.gz")
	return p, err
}
