package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lokilab/lokilab/pkg/bench"
	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/loadgen"
)

// benchFlags are `lokilab bench`'s flags: the load's (pkg/loadgen, with
// defaults for a throughput run) and the targets'.
type benchFlags struct {
	Load           loadgen.Config `yaml:",inline"`
	Lokilab        string         `yaml:"lokilab"`
	LokilabMetrics string         `yaml:"lokilab_metrics"`
	Peer           string         `yaml:"peer"`
	PeerName       string         `yaml:"peer_name"`
	DataDir        string         `yaml:"data_dir"`
	Log            string         `yaml:"log"`
	DrainTimeout   time.Duration  `yaml:"drain_timeout"`
}

func (f *benchFlags) RegisterFlags(fs *flag.FlagSet) {
	f.Load.RegisterFlags(fs)
	// A throughput run: as fast as the target takes, many workers, for
	// 30s, one tenant named "1" (VictoriaLogs reads X-Scope-OrgID as a
	// numeric account ID, and lokilab accepts "1").
	for name, v := range map[string]string{"rate": "0", "concurrency": "16", "duration": "30s", "tenant-prefix": "", "seed": "1"} {
		fl := fs.Lookup(name)
		if fl == nil {
			panic("lokilab bench: no load flag " + name) // a renamed loadgen flag: a bug here
		}
		if err := fl.Value.Set(v); err != nil {
			panic(err)
		}
		fl.DefValue = v
	}
	fs.StringVar(&f.Lokilab, "lokilab", "", "Push URL of a lokilab already running; default: start one in this process (the defaults of lokilab run, limits raised).")
	fs.StringVar(&f.LokilabMetrics, "lokilab-metrics", "", "With -lokilab: comma-separated /metrics URLs of its ingesters (http://host:port/metrics), for the lag and store checks; the store check POSTs to each one's /flush.")
	fs.StringVar(&f.Peer, "peer", "", "Push URL of another Loki-push endpoint to compare with, e.g. http://127.0.0.1:9428/insert/loki/api/v1/push (VictoriaLogs).")
	fs.StringVar(&f.PeerName, "peer-name", "peer", "The peer's name in the report.")
	fs.StringVar(&f.DataDir, "data-dir", "", "Data directory of the in-process lokilab; default a temporary one, removed afterwards.")
	fs.StringVar(&f.Log, "log", "", "File for the in-process lokilab's log; default discarded.")
	fs.DurationVar(&f.DrainTimeout, "drain-timeout", time.Minute, "How long to wait after the load for lokilab's ingest lag to reach zero.")
}

// runBench is `lokilab bench`: the same load against lokilab and a peer,
// in one run (pkg/bench).
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f benchFlags
	fs := flag.NewFlagSet("lokilab bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: lokilab bench [flags]\n\nPush the same load (lokilab load's line mix and seed) to lokilab and to another Loki push\nendpoint, one after the other, and print accepted MiB/s, lines/s, p50/p99 latency and the\nratios; check that lokilab's ingesters keep up (Kafka lag not growing, drained after) and\nthat its store holds every accepted line (a forced flush after the load, timed).\n\n")
		fs.PrintDefaults()
	}
	if err := config.Parse(fs, args, &f); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("lokilab bench takes no arguments, got %q", fs.Args())
	}
	var targets []bench.Target
	if f.Lokilab != "" {
		t := bench.Target{Name: "lokilab", URL: f.Lokilab}
		if f.LokilabMetrics != "" {
			client := &http.Client{Timeout: 10 * time.Second}
			metrics := strings.Split(f.LokilabMetrics, ",")
			var ingesters []string
			for _, m := range metrics {
				ingesters = append(ingesters, strings.TrimSuffix(m, "/metrics"))
			}
			t.Lag = bench.GaugeSum(client, bench.LagMetric, metrics...)
			t.Store = bench.IngesterStore(client, ingesters...)
		}
		targets = append(targets, t)
	} else {
		dir := f.DataDir
		if dir == "" {
			tmp, err := os.MkdirTemp("", "lokilab-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			dir = tmp
		}
		logw := io.Discard
		if f.Log != "" {
			lf, err := os.Create(f.Log)
			if err != nil {
				return err
			}
			defer lf.Close()
			logw = lf
		}
		fmt.Fprintf(stdout, "lokilab bench: starting lokilab in this process (data in %s)\n", dir)
		lab, err := bench.StartLokilab(ctx, dir, logw)
		if err != nil {
			return fmt.Errorf("starting lokilab: %w", err)
		}
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = lab.Stop(stopCtx)
		}()
		targets = append(targets, lab.Target("lokilab"))
	}
	if f.Peer != "" {
		targets = append(targets, bench.Target{Name: f.PeerName, URL: f.Peer})
	}
	rs, err := bench.Run(ctx, bench.Config{Load: f.Load, DrainTimeout: f.DrainTimeout}, targets, stdout)
	if werr := bench.WriteReport(stdout, rs); err == nil {
		err = werr
	}
	if err != nil {
		return err
	}
	if l := rs[0].Lag; l != nil && (l.Growing || !l.Drained) {
		return errors.New("lokilab's ingesters did not keep up with the load (see the lag line)")
	}
	if fl := rs[0].Flush; fl != nil && (fl.Err != nil || fl.Missing() > 0) {
		return errors.New("lokilab's store does not hold every accepted line (see the store line)")
	}
	return nil
}
