package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Target is one /metrics endpoint the sampler scrapes.
type Target struct {
	// Name identifies the component, e.g. "distributor" or "ingester-1".
	Name string
	// URL is the full URL of its /metrics.
	URL string
}

// Selector chooses series to record: the samples named Name whose labels
// include every pair of Labels, from targets whose name starts with
// Target (empty: every target). A histogram or a summary is sampled as its
// Name_sum and Name_count series, so select those names.
type Selector struct {
	Name   string
	Labels map[string]string
	Target string
}

func (s Selector) String() string {
	var b strings.Builder
	if s.Target != "" {
		b.WriteString(s.Target + ":")
	}
	b.WriteString(s.Name)
	if len(s.Labels) > 0 {
		b.WriteString(labelString(s.Labels))
	}
	return b.String()
}

func (s Selector) matches(target, name string, ls map[string]string) bool {
	if s.Name != name || !strings.HasPrefix(target, s.Target) {
		return false
	}
	for k, v := range s.Labels {
		if ls[k] != v {
			return false
		}
	}
	return true
}

// Point is one sample.
type Point struct {
	T time.Time
	V float64
}

// Series is one recorded series: a sample name and label set on one
// target, over time.
type Series struct {
	Target string
	Name   string
	Labels map[string]string
	// Counter is true for counters and the _sum and _count of histograms
	// and summaries: series whose rate is meaningful.
	Counter bool
	Points  []Point
}

// Key identifies the series: target, name and labels.
func (s *Series) Key() string { return s.Target + ":" + s.Name + labelString(s.Labels) }

// Last returns the latest point.
func (s *Series) Last() (Point, bool) {
	if len(s.Points) == 0 {
		return Point{}, false
	}
	return s.Points[len(s.Points)-1], true
}

// Max returns the largest value recorded (0 for no points).
func (s *Series) Max() float64 {
	m := 0.0
	for i, p := range s.Points {
		if i == 0 || p.V > m {
			m = p.V
		}
	}
	return m
}

// Rate returns the per-second rate between consecutive points, stamped at
// the later one. A value lower than the one before is a counter reset (a
// restarted process): the increase is then the new value, as Prometheus'
// rate() counts it.
func (s *Series) Rate() []Point { return rate(s.Points) }

func rate(ps []Point) []Point {
	if len(ps) < 2 {
		return nil
	}
	out := make([]Point, 0, len(ps)-1)
	for i := 1; i < len(ps); i++ {
		dt := ps[i].T.Sub(ps[i-1].T).Seconds()
		if dt <= 0 {
			continue
		}
		dv := ps[i].V - ps[i-1].V
		if dv < 0 {
			dv = ps[i].V
		}
		out = append(out, Point{T: ps[i].T, V: dv / dt})
	}
	return out
}

// Sum adds series point by point. The sampler stamps every target of one
// scrape round with the same time, so points of one round line up; a
// series missing from a round contributes nothing to it. With rate, each
// series' rate is summed instead of its value.
func Sum(series []*Series, withRate bool) []Point {
	byT := map[time.Time]float64{}
	for _, s := range series {
		ps := s.Points
		if withRate {
			ps = s.Rate()
		}
		for _, p := range ps {
			byT[p.T] += p.V
		}
	}
	out := make([]Point, 0, len(byT))
	for t, v := range byT {
		out = append(out, Point{T: t, V: v})
	}
	slices.SortFunc(out, func(a, b Point) int { return a.T.Compare(b.T) })
	return out
}

func labelString(ls map[string]string) string {
	if len(ls) == 0 {
		return ""
	}
	keys := slices.Sorted(maps.Keys(ls))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, ls[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// SamplerConfig bounds a sampler.
type SamplerConfig struct {
	// Interval between scrape rounds. Default 500ms.
	Interval time.Duration
	// MaxPoints per series. When a series is full, every other point is
	// dropped, halving its resolution but keeping the whole run. Default
	// 2048.
	MaxPoints int
	// MaxSeries recorded in all; series past it are counted and ignored
	// (a selector matching a high-cardinality family). Default 1000.
	MaxSeries int
	// Client scrapes; default one with a 5s timeout.
	Client *http.Client
}

// Sampler scrapes /metrics endpoints on an interval and keeps the
// selected series, with bounded memory: at most MaxSeries series of at
// most MaxPoints points each.
type Sampler struct {
	cfg       SamplerConfig
	targets   []Target
	selectors []Selector

	mu       sync.Mutex
	series   map[string]*Series
	order    []string
	stats    SamplerStats
	lastErrs map[string]string
	// rounds are each target's successful scrape times, bounded like a
	// series, so a series first seen mid-run can be given its zeros.
	rounds map[string][]time.Time
}

// SamplerStats says how sampling went.
type SamplerStats struct {
	Rounds   int
	Scrapes  int
	Failures int
	// Series recorded; DroppedSeries matched a selector past MaxSeries.
	Series, DroppedSeries int
	// Halvings counts series resolution halvings (MaxPoints reached).
	Halvings int
	// LastErrors holds each failing target's latest error.
	LastErrors map[string]string
}

// NewSampler returns a sampler of the selected series on targets.
func NewSampler(cfg SamplerConfig, targets []Target, selectors []Selector) *Sampler {
	if cfg.Interval <= 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.MaxPoints < 4 {
		cfg.MaxPoints = 2048
	}
	if cfg.MaxSeries <= 0 {
		cfg.MaxSeries = 1000
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 5 * time.Second}
	}
	return &Sampler{cfg: cfg, targets: targets, selectors: selectors, series: map[string]*Series{}, lastErrs: map[string]string{}, rounds: map[string][]time.Time{}}
}

// Run scrapes every Interval until ctx ends, starting at once.
func (s *Sampler) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		_ = s.Scrape(ctx) // failures are counted in Stats
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Scrape runs one round: every target, concurrently, their samples stamped
// with the round's start time. It returns the targets' errors joined.
func (s *Sampler) Scrape(ctx context.Context) error {
	now := time.Now()
	type result struct {
		fams map[string]*dto.MetricFamily
		err  error
	}
	res := make([]result, len(s.targets))
	var wg sync.WaitGroup
	for i, t := range s.targets {
		wg.Go(func() {
			res[i].fams, res[i].err = s.fetch(ctx, t.URL)
		})
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Rounds++
	var errs []error
	for i, t := range s.targets {
		s.stats.Scrapes++
		if res[i].err != nil {
			s.stats.Failures++
			s.lastErrs[t.Name] = res[i].err.Error()
			errs = append(errs, fmt.Errorf("%s: %w", t.Name, res[i].err))
			continue
		}
		s.record(t.Name, now, res[i].fams)
		rs := s.rounds[t.Name]
		if len(rs) >= s.cfg.MaxPoints {
			rs = halve(rs)
		}
		s.rounds[t.Name] = append(rs, now)
	}
	return errors.Join(errs...)
}

func (s *Sampler) fetch(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return ParseMetrics(resp.Body)
}

// ParseMetrics parses the Prometheus text exposition format.
func ParseMetrics(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// sample is one value of a family's metric, named as in the text format.
type sample struct {
	name    string
	counter bool
	value   float64
}

func samplesOf(fam *dto.MetricFamily, m *dto.Metric) []sample {
	name := fam.GetName()
	switch fam.GetType() {
	case dto.MetricType_COUNTER:
		return []sample{{name, true, m.GetCounter().GetValue()}}
	case dto.MetricType_GAUGE:
		return []sample{{name, false, m.GetGauge().GetValue()}}
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		h := m.GetHistogram()
		return []sample{{name + "_sum", true, h.GetSampleSum()}, {name + "_count", true, float64(h.GetSampleCount())}}
	case dto.MetricType_SUMMARY:
		sm := m.GetSummary()
		return []sample{{name + "_sum", true, sm.GetSampleSum()}, {name + "_count", true, float64(sm.GetSampleCount())}}
	default:
		return []sample{{name, false, m.GetUntyped().GetValue()}}
	}
}

// wanted reports whether any selector could match a sample of fam, so
// that families nobody asked for are not walked.
func (s *Sampler) wanted(fam string) bool {
	for _, sel := range s.selectors {
		if sel.Name == fam || sel.Name == fam+"_sum" || sel.Name == fam+"_count" {
			return true
		}
	}
	return false
}

func (s *Sampler) record(target string, now time.Time, fams map[string]*dto.MetricFamily) {
	for fname, fam := range fams {
		if !s.wanted(fname) {
			continue
		}
		for _, m := range fam.GetMetric() {
			ls := make(map[string]string, len(m.GetLabel()))
			for _, lp := range m.GetLabel() {
				ls[lp.GetName()] = lp.GetValue()
			}
			for _, smp := range samplesOf(fam, m) {
				if !slices.ContainsFunc(s.selectors, func(sel Selector) bool { return sel.matches(target, smp.name, ls) }) {
					continue
				}
				key := target + ":" + smp.name + labelString(ls)
				ser := s.series[key]
				if ser == nil {
					if len(s.series) >= s.cfg.MaxSeries {
						s.stats.DroppedSeries++
						continue
					}
					ser = &Series{Target: target, Name: smp.name, Labels: ls, Counter: smp.counter}
					// A series first seen mid-run did not exist before:
					// a labelled counter or gauge is created on first
					// use. It was 0 at the target's earlier scrapes,
					// and recording that lets plots and rates show the
					// step rather than start at its top.
					for _, t := range s.rounds[target] {
						ser.Points = append(ser.Points, Point{T: t, V: 0})
					}
					s.series[key] = ser
					s.order = append(s.order, key)
				}
				if len(ser.Points) >= s.cfg.MaxPoints {
					ser.Points = halve(ser.Points)
					s.stats.Halvings++
				}
				ser.Points = append(ser.Points, Point{T: now, V: smp.value})
			}
		}
	}
}

// Record adds a point the scenario measured itself rather than scraped
// (a load's pushes by outcome, as its client saw them) to the series of
// target, name and labels, so plots, Select and samples.csv show it beside
// the system's own series. Points of one series must come in time order.
// The same bounds apply as to scraped series.
func (s *Sampler) Record(target, name string, labels map[string]string, counter bool, p Point) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := target + ":" + name + labelString(labels)
	ser := s.series[key]
	if ser == nil {
		if len(s.series) >= s.cfg.MaxSeries {
			s.stats.DroppedSeries++
			return
		}
		ser = &Series{Target: target, Name: name, Labels: maps.Clone(labels), Counter: counter}
		s.series[key] = ser
		s.order = append(s.order, key)
	}
	if len(ser.Points) >= s.cfg.MaxPoints {
		ser.Points = halve(ser.Points)
		s.stats.Halvings++
	}
	ser.Points = append(ser.Points, p)
}

// halve keeps every other point, and always the last.
func halve[T any](ps []T) []T {
	last := len(ps) - 1
	n := 0
	for i := 0; i < len(ps); i += 2 {
		ps[n] = ps[i]
		n++
	}
	if last%2 == 1 {
		ps[n] = ps[last]
		n++
	}
	clear(ps[n:])
	return ps[:n]
}

// Select returns copies of the recorded series sel matches, in the order
// they were first seen.
func (s *Sampler) Select(sel Selector) []*Series {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Series
	for _, key := range s.order {
		ser := s.series[key]
		if sel.matches(ser.Target, ser.Name, ser.Labels) {
			c := *ser
			c.Points = slices.Clone(ser.Points)
			c.Labels = maps.Clone(ser.Labels)
			out = append(out, &c)
		}
	}
	return out
}

// all returns copies of every recorded series.
func (s *Sampler) all() []*Series {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Series, 0, len(s.order))
	for _, key := range s.order {
		c := *s.series[key]
		c.Points = slices.Clone(c.Points)
		out = append(out, &c)
	}
	return out
}

// Stats reports how sampling went so far.
func (s *Sampler) Stats() SamplerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Series = len(s.series)
	st.LastErrors = maps.Clone(s.lastErrs)
	return st
}

// Interval is the time between scrape rounds.
func (s *Sampler) Interval() time.Duration { return s.cfg.Interval }

// ScrapeSum fetches the /metrics at url once and returns the sum of the
// samples named name (a histogram's name_sum or name_count too) whose
// labels include every pair of labels: a quick before-and-after reading
// without a sampler.
func ScrapeSum(ctx context.Context, client *http.Client, url, name string, labels map[string]string) (float64, error) {
	s := NewSampler(SamplerConfig{Client: client}, nil, nil)
	fams, err := s.fetch(ctx, url)
	if err != nil {
		return 0, err
	}
	sel := Selector{Name: name, Labels: labels}
	sum := 0.0
	for _, fam := range fams {
		for _, m := range fam.GetMetric() {
			ls := make(map[string]string, len(m.GetLabel()))
			for _, lp := range m.GetLabel() {
				ls[lp.GetName()] = lp.GetValue()
			}
			for _, smp := range samplesOf(fam, m) {
				if sel.matches("", smp.name, ls) {
					sum += smp.value
				}
			}
		}
	}
	return sum, nil
}
