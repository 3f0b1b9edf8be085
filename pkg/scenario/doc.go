// Package scenario runs the lab's experiments: one per question, each a
// claim about the system tested against the system itself.
//
// A run (Run) resolves the scenario's knobs, starts the whole system in
// this process (StartInProcess: app.RunAllInOne on free ports, data under
// the report directory, timings shrunk by LabConfig), samples every
// component's /metrics (Sampler), calls the scenario's Run with an Env, then
// stops everything and writes the report directory: report.md (hypothesis,
// knobs, figures, checks, plots, what to look at, code to read, the fault
// hooks available), one PNG per plot, samples.csv and system.log. A
// scenario whose Processes says so gets the system as separate OS
// processes instead (StartProcesses, processes.go: `lokilab run
// -processes` as a child), for kills, restarts and real memory limits. A
// failed check fails the run; so does a plot with no data, and a run with no
// checks at all.
//
// # Writing a scenario
//
// A scenario is a *Scenario value built by a function (Tour is question 1)
// and listed in All. Its fields are read before it runs: knobs become
// flags of `lokilab scenario NAME`, Series tell the sampler what to
// record, Plots draw some of it, Look and Code fill the report's pointers
// (a test checks every Code path exists). Its Run drives the system
// through Env:
//
//	env.Sys          addresses: API, Kafka, each ingester; Ring, Ingester
//	env.Knobs        the knob values (Int, Bool, Duration, String, Float)
//	env.StartLoad    a Load (pkg/loadgen's, or the scenario's own)
//	env.Faults       StopComponent, StoreFault, ... (not built: *NotBuiltError)
//	env.Check        record an expectation; env.Figure a measured value
//	env.Report       tables, extra plots and bar charts, notes
//	env.Logf         a progress line
//
// Run returns an error only when it cannot go on; an expectation that does
// not hold is a failed Check, and the run continues so the report shows
// everything that was seen.
package scenario
