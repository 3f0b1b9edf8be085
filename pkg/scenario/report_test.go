package scenario

import (
	"context"
	"image"
	"image/png"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// colouredPixels counts pixels that are clearly not grey: the plotted
// lines and bars, not the white background, black axes and text.
func colouredPixels(img image.Image) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			hi, lo := max(r, g, bl), min(r, g, bl)
			if hi-lo > 0x4000 {
				n++
			}
		}
	}
	return n
}

// checkPNG asserts path is a PNG of a sensible size with a plotted series
// in it.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", path, err)
	}
	if fi.Size() == 0 || img.Bounds().Dx() < 200 || img.Bounds().Dy() < 100 {
		t.Fatalf("%s: %d bytes, %v", path, fi.Size(), img.Bounds())
	}
	if n := colouredPixels(img); n < 50 {
		t.Fatalf("%s has %d coloured pixels: nothing was plotted", path, n)
	}
}

func testScenario() *Scenario {
	return &Scenario{
		Name: "fake", Question: 7, Title: "A fake question", Hypothesis: "Things go up.",
		Knobs: []Knob{{Name: "n", Kind: KnobInt, Default: "10", Short: "2", Usage: "how many"}},
		Plots: []PlotSpec{{File: "up.png", Title: "Streams", YLabel: "streams", Lines: []LineSpec{
			{Select: Selector{Name: "loki_ingester_memory_streams"}},
			{Select: Selector{Name: "loki_distributor_bytes_received_total"}, Rate: true, Sum: true, Legend: "bytes"},
		}}},
		Look: []string{"`loki_ingester_memory_streams`"},
		Code: []CodeRef{{"pkg/scenario/report.go", "how this is written"}},
	}
}

func TestReportRenders(t *testing.T) {
	fm := &fakeMetrics{}
	srv := httptest.NewServer(fm)
	defer srv.Close()
	s := testScenario()
	start := time.Now()
	sampler := NewSampler(SamplerConfig{}, []Target{{Name: "ingester-0", URL: srv.URL}}, []Selector{
		{Name: "loki_ingester_memory_streams"}, {Name: "loki_distributor_bytes_received_total"},
	})
	for i := range 6 {
		fm.set(page(float64(i*i*100), float64(i%3), 0, 0))
		if err := sampler.Scrape(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	knobs, err := Resolve(s, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := newReport(s, knobs.List(s), true, start)
	r.AddFigure(Figure{Name: "answer", Value: "42", Note: "a | pipe"})
	r.AddTable(Table{Title: "Hops", Header: []string{"#", "hop"}, Rows: [][]string{{"1", "push"}}})
	r.AddCheck(Check{Name: "went up", Want: "up", Got: "up", Pass: true})
	r.AddBars(Bars{File: "bars.png", Title: "Latency", YLabel: "ms", Labels: []string{"a", "b", "c"}, Values: []float64{1, 5, 2}})
	r.caps = inProcessFaults{sys: &System{}}.Capabilities()
	dir := t.TempDir()
	path, err := r.Write(dir, sampler)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Passed() {
		t.Fatalf("report with passing checks and non-empty plots failed: %+v", r.Checks())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{
		"# Scenario `fake` — Q7: A fake question", "✅ **passed**", "short mode",
		"## Hypothesis", "Things go up.", "## Knobs", "| `-n` | `2` |",
		"## Figures", `| answer | 42 | a \| pipe |`, "### Hops",
		"## Checks", "| ✅ | went up |", "plot up.png shows sampled data",
		"## Plots", "![Streams](up.png)", "![Latency](bars.png)",
		"## What to look at", "## Code to read", "`pkg/scenario/report.go`",
		"## Fault hooks", "KafkaFault | ❌ not built", "## Sampling",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
	checkPNG(t, filepath.Join(dir, "up.png"))
	checkPNG(t, filepath.Join(dir, "bars.png"))
	if csv, err := os.ReadFile(filepath.Join(dir, "samples.csv")); err != nil || strings.Count(string(csv), "\n") != 1+6*3 {
		t.Fatalf("samples.csv: %v, %d lines", err, strings.Count(string(csv), "\n"))
	}
}

func TestEmptyPlotFailsTheRun(t *testing.T) {
	s := testScenario()
	r := newReport(s, nil, false, time.Now())
	r.AddCheck(Check{Name: "fine", Pass: true})
	sampler := NewSampler(SamplerConfig{}, nil, nil) // nothing sampled
	path, err := r.Write(t.TempDir(), sampler)
	if err != nil {
		t.Fatal(err)
	}
	if r.Passed() {
		t.Fatal("a report whose plot has no data passed")
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "| ❌ | plot up.png shows sampled data |") || !strings.Contains(string(b), "not drawn") {
		t.Fatalf("report.md does not show the empty plot:\n%s", b)
	}
}

func TestNoChecksIsNotAPass(t *testing.T) {
	s := testScenario()
	s.Plots = nil
	r := newReport(s, nil, false, time.Now())
	if _, err := r.Write(t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	if r.Passed() {
		t.Fatal("a run without checks passed")
	}
}
