// Command lokilab is the lab's front door.
//
// Its subcommands (the commands table below; 'lokilab help' lists them)
// each live in a file of their own and take -help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// command is one subcommand: its name, a line for the usage text, and
// what it runs. Each lives in its own file of this package.
type command struct {
	name, args, summary string
	run                 func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists the subcommands in the order the usage text shows them.
var commands = []command{
	{"run", "[flags]", "run everything in one process: embedded Kafka, distributor, three\ningesters, querier, compactor; the Loki API on 127.0.0.1:3100;\n-processes runs each as a separate OS process (to kill -9 one)", runAllInOne},
	{"kafka", "[flags]", "run the embedded Kafka broker alone (for other processes,\ncontainers, kcat)", runKafka},
	{"distributor", "[flags]", "run a distributor alone (as cmd/distributor)", distributorCommand},
	{"ingester", "[flags]", "run an ingester alone (as cmd/ingester)", ingesterCommand},
	{"querier", "[flags]", "run a querier alone (as cmd/querier)", querierCommand},
	{"compactor", "[flags]", "run a compactor alone (as cmd/compactor)", compactorCommand},
	{"load", "[flags]", "push realistic log load (nginx, logfmt, JSON, stack traces) to a push\nendpoint; -ack-log records what was acknowledged", runLoad},
	{"verify", "[flags]", "read an ack log back through the query API: report acknowledged\nlines missing or duplicated; fails if any is missing", runVerify},
	{"query", "'<logql>'", "query the Loki API from the terminal: log and metric queries, labels,\nseries, stats, tail ('lokilab query -help' shows the forms)", runQuery},
	{"faults", "[-short] [-only F,…]", "the fault matrix: one multi-process lab per fault (kill -9, broker\nerrors and stalls, store faults, a cut-off, an OOM kill), load with an\nack log, verify; a markdown table; fails on any acknowledged line lost", runFaults},
	{"scenario", "NAME|--list", "run a lab experiment against the system in this process and write\na report (figures, checks, PNG plots); --list shows them all", runScenario},
	{"bench", "[-peer URL] [flags]", "the same load against lokilab (in this process) and another Loki push\nendpoint (-peer, e.g. VictoriaLogs) in one run: MiB/s, lines/s, p50/p99, ratios", runBench},
	{"soak", "[-short] [flags]", "sustained load at half the measured maximum with live queries and a\ntail; checks goroutines and memory stay flat and errors never burst", runSoak},
	{"healthcheck", "[URL]", "probe a component once for a container health check (no shell needed):\nhttp://…/ready, kafka://host:port or tcp://host:port", runHealthcheck},
}

func usage(w io.Writer) {
	fmt.Fprint(w, "lokilab: a miniature Loki-like log ingestion system, built as a lab.\n\nUsage:\n")
	width := 0
	for _, c := range commands {
		width = max(width, len("lokilab "+c.name+" "+c.args))
	}
	for _, c := range commands {
		lines := strings.Split(c.summary, "\n")
		fmt.Fprintf(w, "  %-*s  %s\n", width, "lokilab "+c.name+" "+c.args, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(w, "  %-*s  %s\n", width, "", l)
		}
	}
	fmt.Fprint(w, "\nRun 'lokilab <command> -help' for a command's flags.\n")
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "lokilab:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errors.New("no command given")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return nil
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(ctx, rest, stdout, stderr)
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", name)
}
