package scenario

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lokilab/lokilab/pkg/app"
)

// Scenario is one experiment: a question of the lab, the claim it tests,
// the knobs a user may turn, and the script that drives the system and
// checks the claim.
//
// A Scenario is a plain value. The fields other than Run are read before
// anything starts (by `lokilab scenario --list`, by the report, by tests
// that check every "code to read" path exists), so they must not depend on
// a run.
type Scenario struct {
	// Name is the command-line name: `lokilab scenario <Name>`.
	Name string
	// Question is the lab question's number in LAB.md (1-15), Title its
	// wording. A scenario that answers no lab question (the soak) has 0.
	Question int
	Title    string
	// Command is how a user runs it; empty means `lokilab scenario <Name>`.
	Command string
	// Hypothesis is what the scenario claims the system does, in one or
	// two sentences; the checks test it.
	Hypothesis string
	// Knobs are the settings a user may change (each a flag of
	// `lokilab scenario <Name>`).
	Knobs []Knob
	// Configure, if set, adjusts the system under test before it starts:
	// cfg already holds the lab's defaults for scenarios (short flush
	// periods, free ports, a data directory under the report).
	Configure func(cfg *app.AllInOneConfig, k Values)
	// Series are the metric series the sampler records while the scenario
	// runs; Plots draw some of them.
	Series []Selector
	// Plots are the time-series figures of the report. Run may add others
	// (Env.Report.AddBars, Env.Report.AddPlot).
	Plots []PlotSpec
	// Look lists what to look at while it runs or afterwards: metric
	// names, endpoints, pprof.
	Look []string
	// Code lists the files to read to explain what the scenario shows,
	// repository-relative.
	Code []CodeRef
	// Budget bounds Run (the system's start and stop are extra); the short
	// budget applies with -short. Zero means two minutes, and one.
	Budget, ShortBudget time.Duration
	// Processes, if set and true for the run's knobs, runs the system
	// under test as separate OS processes (`lokilab run -processes`,
	// StartProcesses) instead of in this process: for scenarios that kill
	// a component, restart it or give it a real memory limit.
	Processes func(k Values) bool
	// Run drives the experiment. It records figures and checks through
	// env; it returns an error only when it could not run the experiment
	// at all (a failed expectation is a failed check, not an error).
	Run func(ctx context.Context, env *Env) error
}

// CodeRef is a file worth reading and why.
type CodeRef struct {
	// Path is relative to the repository root, e.g. pkg/ingester/flush.go.
	Path string
	Why  string
}

// All returns every scenario, ordered by question number. It builds the
// list on each call: there is no registry to mutate.
func All() []*Scenario {
	all := []*Scenario{
		Tour(),
		IngesterOOM(),
		KafkaOutage(),
		NoisyNeighbor(),
		Rebalance(),
		Leak(),
		Trace(),
		Tenants(),
		Retention(),
		ChunkCost(),
		SlowQuery(),
		FanOut(),
		ScaleIngesters(),
		Rollout(),
		Partition(),
	}
	slices.SortStableFunc(all, func(a, b *Scenario) int { return a.Question - b.Question })
	return all
}

// Heading is the scenario's question and title as reports and progress
// print them: "Q4: …", or the title alone for a scenario that answers no
// lab question.
func (s *Scenario) Heading() string {
	if s.Question == 0 {
		return s.Title
	}
	return fmt.Sprintf("Q%d: %s", s.Question, s.Title)
}

// RunCommand is the command that runs the scenario.
func (s *Scenario) RunCommand() string {
	if s.Command != "" {
		return s.Command
	}
	return "lokilab scenario " + s.Name
}

// Lookup returns the scenario named name.
func Lookup(name string) (*Scenario, error) {
	var names []string
	for _, s := range All() {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return nil, fmt.Errorf("unknown scenario %q (have: %s)", name, strings.Join(names, ", "))
}

// KnobKind is the type of a knob's value.
type KnobKind int

// Knob kinds.
const (
	KnobString KnobKind = iota
	KnobBool
	KnobInt
	KnobFloat
	KnobDuration
)

func (k KnobKind) String() string {
	return [...]string{"string", "bool", "int", "float", "duration"}[k]
}

func (k KnobKind) check(v string) error {
	var err error
	switch k {
	case KnobBool:
		_, err = strconv.ParseBool(v)
	case KnobInt:
		_, err = strconv.Atoi(v)
	case KnobFloat:
		_, err = strconv.ParseFloat(v, 64)
	case KnobDuration:
		_, err = time.ParseDuration(v)
	}
	return err
}

// Knob is one setting of a scenario: a flag of its command.
type Knob struct {
	// Name is the flag name, e.g. "lines" for -lines.
	Name string
	Kind KnobKind
	// Default is the value of a full run; Short, if not empty, the value
	// with -short (CI's mode: the same experiment, smaller).
	Default, Short string
	// Usage says what the knob changes and what to expect from turning it.
	Usage string
}

// Values are the knob values of one run, resolved: defaults (or short
// defaults) overridden by what the user set. The getters panic on a name
// the scenario does not declare or of another kind: that is a bug in the
// scenario, found by its first run.
type Values struct {
	knobs map[string]Knob
	vals  map[string]string
	set   map[string]bool
}

// Resolve returns the values of s's knobs for a run: short picks the short
// defaults; set overrides by name. An unknown name or a value that does
// not parse as the knob's kind is an error.
func Resolve(s *Scenario, short bool, set map[string]string) (Values, error) {
	v := Values{knobs: map[string]Knob{}, vals: map[string]string{}, set: map[string]bool{}}
	for _, k := range s.Knobs {
		v.knobs[k.Name] = k
		v.vals[k.Name] = k.Default
		if short && k.Short != "" {
			v.vals[k.Name] = k.Short
		}
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		k, ok := v.knobs[n]
		if !ok {
			return Values{}, fmt.Errorf("scenario %s has no knob %q", s.Name, n)
		}
		if err := k.Kind.check(set[n]); err != nil {
			return Values{}, fmt.Errorf("knob -%s: %q is not a valid %s", n, set[n], k.Kind)
		}
		v.vals[n] = set[n]
		v.set[n] = true
	}
	for n, val := range v.vals {
		if err := v.knobs[n].Kind.check(val); err != nil {
			return Values{}, fmt.Errorf("knob -%s: default %q is not a valid %s", n, val, v.knobs[n].Kind)
		}
	}
	return v, nil
}

func (v Values) get(name string, kind KnobKind) string {
	k, ok := v.knobs[name]
	if !ok || k.Kind != kind {
		panic(fmt.Sprintf("scenario: no %s knob %q", kind, name))
	}
	return v.vals[name]
}

// String returns a string knob.
func (v Values) String(name string) string { return v.get(name, KnobString) }

// Bool returns a bool knob.
func (v Values) Bool(name string) bool {
	b, _ := strconv.ParseBool(v.get(name, KnobBool))
	return b
}

// Int returns an int knob.
func (v Values) Int(name string) int {
	n, _ := strconv.Atoi(v.get(name, KnobInt))
	return n
}

// Float returns a float knob.
func (v Values) Float(name string) float64 {
	f, _ := strconv.ParseFloat(v.get(name, KnobFloat), 64)
	return f
}

// Duration returns a duration knob.
func (v Values) Duration(name string) time.Duration {
	d, _ := time.ParseDuration(v.get(name, KnobDuration))
	return d
}

// KnobValue is a knob as a run used it, for the report.
type KnobValue struct {
	Knob
	Value string
	// Set is true when the user chose the value.
	Set bool
}

// List returns the knobs in declaration order with their values.
func (v Values) List(s *Scenario) []KnobValue {
	out := make([]KnobValue, 0, len(s.Knobs))
	for _, k := range s.Knobs {
		out = append(out, KnobValue{Knob: k, Value: v.vals[k.Name], Set: v.set[k.Name]})
	}
	return out
}
