package scenario

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/storage"
)

// repoRoot is where "code to read" paths are relative to.
const repoRoot = "../.."

func TestScenariosAreWellFormed(t *testing.T) {
	all := All()
	if len(all) == 0 {
		t.Fatal("no scenarios")
	}
	names := map[string]bool{}
	for _, s := range all {
		t.Run(s.Name, func(t *testing.T) {
			if s.Name == "" || names[s.Name] {
				t.Fatalf("name %q empty or taken", s.Name)
			}
			names[s.Name] = true
			if s.Question < 1 || s.Question > 15 || s.Title == "" || s.Hypothesis == "" || s.Run == nil {
				t.Fatalf("question %d, title %q, hypothesis %q, run set %v", s.Question, s.Title, s.Hypothesis, s.Run != nil)
			}
			if len(s.Look) == 0 || len(s.Code) == 0 {
				t.Fatal("a scenario says what to look at and which code to read")
			}
			for _, short := range []bool{false, true} {
				if _, err := Resolve(s, short, nil); err != nil {
					t.Fatalf("knob defaults (short %v): %v", short, err)
				}
			}
			for _, p := range s.Plots {
				if !strings.HasSuffix(p.File, ".png") || len(p.Lines) == 0 {
					t.Errorf("plot %q: want a .png with lines", p.File)
				}
			}
			if got, err := Lookup(s.Name); err != nil || got.Name != s.Name {
				t.Fatalf("Lookup(%q) = %v, %v", s.Name, got, err)
			}
		})
	}
}

// TestEveryQuestionHasOneScenario: LAB.md's fifteen questions each have
// exactly one experiment, so `lokilab scenario --list` shows all fifteen.
func TestEveryQuestionHasOneScenario(t *testing.T) {
	byQuestion := map[int][]string{}
	for _, s := range All() {
		byQuestion[s.Question] = append(byQuestion[s.Question], s.Name)
	}
	for q := 1; q <= 15; q++ {
		if len(byQuestion[q]) != 1 {
			t.Errorf("question %d: scenarios %v, want exactly one", q, byQuestion[q])
		}
	}
}

// TestCodeToReadExists keeps every scenario's "code to read" list true as
// files move.
func TestCodeToReadExists(t *testing.T) {
	for _, s := range All() {
		for _, c := range s.Code {
			if filepath.IsAbs(c.Path) || strings.Contains(c.Path, "..") {
				t.Errorf("%s: %q is not repository-relative", s.Name, c.Path)
				continue
			}
			if _, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(c.Path))); err != nil {
				t.Errorf("%s: code to read %q: %v", s.Name, c.Path, err)
			}
			if c.Why == "" {
				t.Errorf("%s: %q does not say why to read it", s.Name, c.Path)
			}
		}
	}
}

func TestAllBuildsAFreshList(t *testing.T) {
	a := All()
	a[0].Name = "changed"
	if All()[0].Name == "changed" {
		t.Fatal("All returns shared state")
	}
	if _, err := Lookup("no-such-scenario"); err == nil || !strings.Contains(err.Error(), "tour") {
		t.Fatalf("Lookup of an unknown name = %v; want an error listing the scenarios", err)
	}
}

func TestResolveKnobs(t *testing.T) {
	s := &Scenario{Name: "k", Knobs: []Knob{
		{Name: "n", Kind: KnobInt, Default: "100", Short: "5"},
		{Name: "on", Kind: KnobBool, Default: "false"},
		{Name: "d", Kind: KnobDuration, Default: "1s"},
		{Name: "who", Kind: KnobString, Default: "a"},
		{Name: "f", Kind: KnobFloat, Default: "0.5"},
	}}
	for _, tc := range []struct {
		name    string
		short   bool
		set     map[string]string
		n       int
		on      bool
		d       time.Duration
		wantErr string
	}{
		{name: "defaults", n: 100, d: time.Second},
		{name: "short defaults", short: true, n: 5, d: time.Second},
		{name: "set wins over short", short: true, set: map[string]string{"n": "7", "on": "true", "d": "3ms"}, n: 7, on: true, d: 3 * time.Millisecond},
		{name: "unknown knob", set: map[string]string{"nope": "1"}, wantErr: `no knob "nope"`},
		{name: "bad int", set: map[string]string{"n": "many"}, wantErr: `"many" is not a valid int`},
		{name: "bad duration", set: map[string]string{"d": "5"}, wantErr: "not a valid duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Resolve(s, tc.short, tc.set)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Int("n") != tc.n || v.Bool("on") != tc.on || v.Duration("d") != tc.d || v.String("who") != "a" || v.Float("f") != 0.5 {
				t.Fatalf("got n=%d on=%v d=%s", v.Int("n"), v.Bool("on"), v.Duration("d"))
			}
			list := v.List(s)
			if len(list) != 5 || list[0].Set != (tc.set["n"] != "") {
				t.Fatalf("List = %+v", list)
			}
		})
	}
	v, _ := Resolve(s, false, nil)
	defer func() {
		if recover() == nil {
			t.Fatal("reading an int knob as a bool did not panic")
		}
	}()
	v.Bool("n")
}

// TestFaultHooks checks the in-process hooks: store faults reach every
// ingester's fault endpoint, hooks that are not built say so, and every
// call is recorded for the report.
func TestFaultHooks(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.Path+" "+string(b))
		mu.Unlock()
		if r.URL.Path == "/ingester/shutdown" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"faults": []any{}})
	}))
	defer srv.Close()
	sys := &System{Ingesters: []Component{{"ingester-0", srv.URL}, {"ingester-1", srv.URL}}, client: srv.Client()}
	rep := newReport(testScenario(), nil, false, time.Now())
	f := recordingFaults{inner: sys.Faults(), rep: rep, start: time.Now()}
	ctx := context.Background()

	if err := f.StoreFault(ctx, "", storage.Fault{Ops: []storage.Op{storage.OpUpload}, Rate: 1}); err != nil {
		t.Fatal(err)
	}
	if err := f.ClearStoreFaults(ctx, "ingester-1"); err != nil {
		t.Fatal(err)
	}
	if err := f.StopComponent(ctx, "ingester-0"); err != nil {
		t.Fatal(err)
	}
	if err := f.StoreFault(ctx, "ingester-9", storage.Fault{Rate: 1}); err == nil {
		t.Fatal("a fault for an unknown ingester succeeded")
	}
	mu.Lock()
	want := []string{
		`PUT /ingester/faults/store [{"ops":["upload"],"rate":1}]`,
		`PUT /ingester/faults/store [{"ops":["upload"],"rate":1}]`,
		"DELETE /ingester/faults/store ",
		"POST /ingester/shutdown ",
	}
	if strings.Join(calls, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
	mu.Unlock()

	for name, call := range map[string]func() error{
		"KillComponent":    func() error { return f.KillComponent(ctx, "ingester-0") },
		"RestartComponent": func() error { return f.RestartComponent(ctx, "ingester-0") },
		"KafkaFault":       func() error { return f.KafkaFault(ctx, KafkaFault{Request: "produce", ErrorCode: 7}) },
		"ClearKafkaFaults": func() error { return f.ClearKafkaFaults(ctx) },
		"MemoryLimit":      func() error { return f.MemoryLimit(ctx, "ingester-0", 64<<20) },
	} {
		err := call()
		var nb *NotBuiltError
		if !errors.Is(err, ErrNotBuilt) || !errors.As(err, &nb) || nb.Hook != name || nb.Why == "" {
			t.Errorf("%s = %v; want a NotBuiltError saying why", name, err)
		}
	}
	// The clock moves forward, never back.
	before := sys.now()
	if err := f.AdvanceClock(ctx, 48*time.Hour); err != nil {
		t.Fatal(err)
	}
	if d := sys.now().Sub(before); d < 48*time.Hour || d > 49*time.Hour {
		t.Errorf("the clock moved %s, want 48h", d)
	}
	if err := f.AdvanceClock(ctx, -time.Hour); err == nil {
		t.Error("the clock moved back")
	}
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if len(rep.faults) != 4+5+2 {
		t.Fatalf("%d fault calls recorded, want 11", len(rep.faults))
	}
	built := map[string]bool{}
	for _, c := range sys.Faults().Capabilities() {
		built[c.Hook] = c.Built
	}
	if !built["StoreFault"] || !built["StopComponent"] || !built["AdvanceClock"] || built["KafkaFault"] || built["KillComponent"] {
		t.Fatalf("capabilities %v", built)
	}
}

// fakeLoad is a Load that records its lifecycle.
type fakeLoad struct {
	mu      sync.Mutex
	target  LoadTarget
	stopped bool
}

func (l *fakeLoad) Name() string { return "fake" }

func (l *fakeLoad) Start(_ context.Context, t LoadTarget) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.target = t
	return nil
}

func (l *fakeLoad) Stop(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	return nil
}

func (l *fakeLoad) Summary() []Figure { return []Figure{{Name: "pushes", Value: "3"}} }

func TestLoadsAreStoppedAndSummarised(t *testing.T) {
	env := &Env{
		Sys:      &System{API: "http://127.0.0.1:1", Config: mustLabConfig(t)},
		Report:   newReport(testScenario(), nil, false, time.Now()),
		start:    time.Now(),
		progress: io.Discard,
	}
	env.Sys.Config.AuthEnabled = true
	l := &fakeLoad{}
	if err := env.StartLoad(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	if l.target.PushURL != "http://127.0.0.1:1/loki/api/v1/push" || !l.target.AuthEnabled {
		t.Fatalf("load target %+v", l.target)
	}
	env.stopLoads(context.Background())
	if !l.stopped {
		t.Fatal("the engine did not stop the load")
	}
	if f := env.Report.Figures(); len(f) != 1 || f[0].Name != "fake: pushes" {
		t.Fatalf("figures %+v", f)
	}
}

func mustLabConfig(t *testing.T) app.AllInOneConfig {
	t.Helper()
	cfg, err := LabConfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestQuestionPagesLinkToFilesThatExist keeps docs/questions/*.md's
// relative links true as files move.
func TestQuestionPagesLinkToFilesThatExist(t *testing.T) {
	pages, _ := filepath.Glob(filepath.Join(repoRoot, "docs", "questions", "*.md"))
	if len(pages) == 0 {
		t.Fatal("no question pages")
	}
	link := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
	// Code paths named in backticks (`pkg/ingester/flush.go`, `cmd/lokilab/`)
	// are repository-relative and must exist too.
	codePath := regexp.MustCompile("`((?:pkg|cmd|internal|docs|deploy|scripts)/[A-Za-z0-9_./-]*)`")
	for _, p := range pages {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range codePath.FindAllStringSubmatch(string(b), -1) {
			if _, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(m[1]))); err != nil {
				t.Errorf("%s names %s, which does not exist: %v", filepath.Base(p), m[1], err)
			}
		}
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(p), filepath.FromSlash(target))); err != nil {
				t.Errorf("%s links to %s: %v", filepath.Base(p), target, err)
			}
		}
	}
	// Every scenario has its page.
	for _, s := range All() {
		if m, _ := filepath.Glob(filepath.Join(repoRoot, "docs", "questions", fmt.Sprintf("%02d-*.md", s.Question))); len(m) != 1 {
			t.Errorf("scenario %s: want one docs/questions/%02d-*.md, found %v", s.Name, s.Question, m)
		}
	}
}

func TestReportDirIsClearedOnlyOfReports(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"report.md", "old.png", "samples.csv", "data/kafka/x"} {
		p := filepath.Join(dir, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := clearReportDir(dir); err != nil {
		t.Fatal(err)
	}
	if des, _ := os.ReadDir(dir); len(des) != 0 {
		t.Fatalf("%d entries left after clearing a report directory", len(des))
	}
	if err := os.WriteFile(filepath.Join(dir, "thesis.tex"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := clearReportDir(dir); err == nil || !strings.Contains(err.Error(), "thesis.tex") {
		t.Fatalf("clearing a directory with other files = %v, want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "thesis.tex")); err != nil {
		t.Fatal("a file the report did not write was removed")
	}
}

// TestHeadingAndCommand: a report names the question a scenario answers
// and the command that runs it again; the soak answers none and is run by
// its own command.
func TestHeadingAndCommand(t *testing.T) {
	for _, tc := range []struct {
		s                *Scenario
		heading, command string
	}{
		{Tour(), "Q1: " + Tour().Title, "lokilab scenario tour"},
		{Soak(), Soak().Title, "lokilab soak"},
	} {
		if got := tc.s.Heading(); got != tc.heading {
			t.Errorf("%s: Heading() = %q, want %q", tc.s.Name, got, tc.heading)
		}
		if got := tc.s.RunCommand(); got != tc.command {
			t.Errorf("%s: RunCommand() = %q, want %q", tc.s.Name, got, tc.command)
		}
	}
}
