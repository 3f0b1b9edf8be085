package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/lokilab/lokilab/pkg/lokiclient"
)

const queryUsage = `Usage:
  lokilab query [flags] '<logql>'             a log or metric query over a range (default: the last hour)
  lokilab query -instant [flags] '<metric>'   a metric query at one instant (-to, default now)
  lokilab query labels [flags] [name]         label names, or the values of one label
  lokilab query series [flags] '<selector>'…  the streams matching selectors
  lokilab query stats [flags] '<selector>'    streams, chunks, entries and bytes in the index
  lokilab query tail [flags] '<logql>'        follow new lines until Ctrl-C

Examples:
  lokilab query '{app="api"} |= "error"'
  lokilab query -since 24h -limit 20 -forward '{app="api"} | json | status >= 500'
  lokilab query -all -o jsonl -from 2026-11-29T00:00:00Z -to 2026-11-29T01:00:00Z '{app="api"}' > api.jsonl
  lokilab query -step 1m 'sum by (level) (count_over_time({app="api"} | logfmt [1m]))'
  lokilab query -instant -stats 'topk(5, sum by (path) (rate({app="nginx"}[5m])))'
  lokilab query labels app
  lokilab query tail -tenant team-a '{app="api"}'

Flags may come before or after the query. Times (-from, -to) are RFC3339,
Unix seconds or nanoseconds, "now", or "now-15m".

Flags:
`

// queryFlags are the flags every query form shares; each form uses those
// that make sense for it.
type queryFlags struct {
	addr, tenant       string
	since              time.Duration
	from, to           string
	limit              int
	forward, all       bool
	step               time.Duration
	instant, stats     bool
	output             string
	delayFor           time.Duration
	timeout            time.Duration
	rangeSet, limitSet bool
}

func newQueryFlagSet(name string, f *queryFlags, stderr io.Writer, defaultSince time.Duration) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, queryUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.addr, "addr", "http://127.0.0.1:3100", "the Loki query API's address (lokilab run, cmd/querier, or a Loki)")
	fs.StringVar(&f.tenant, "tenant", "", "tenant, sent as X-Scope-OrgID (none: a server with auth off answers as tenant \"fake\")")
	fs.DurationVar(&f.since, "since", defaultSince, "how far back from -to to look, when -from is not given")
	fs.StringVar(&f.from, "from", "", "start of the range (inclusive); overrides -since")
	fs.StringVar(&f.to, "to", "", "end of the range (exclusive for log queries), or an instant query's time; default now")
	fs.IntVar(&f.limit, "limit", 100, "most log lines to print (with -all: the page size, default 1000)")
	fs.BoolVar(&f.forward, "forward", false, "oldest lines first (default: newest first, as Loki)")
	fs.BoolVar(&f.all, "all", false, "print every line of the range, oldest first, paging -limit lines at a time")
	fs.DurationVar(&f.step, "step", 0, "a metric query's resolution (default: the server's, about range/250)")
	fs.BoolVar(&f.instant, "instant", false, "run a metric query at one instant (-to) instead of over a range")
	fs.BoolVar(&f.stats, "stats", false, "print a one-line summary of the query's cost (lines and bytes processed, chunks, cache, ingesters) to stderr")
	fs.StringVar(&f.output, "o", "default", "output: default (readable), raw (log lines only), jsonl (one JSON object per line or sample)")
	fs.DurationVar(&f.delayFor, "delay-for", 0, "tail: hold lines back this long (whole seconds, up to 5s) so that late lines are not missed")
	fs.DurationVar(&f.timeout, "timeout", 0, "give up after this long (0: no limit; the server has its own query_timeout)")
	return fs
}

// runQuery is `lokilab query`: a small CLI over Loki's query API for
// people who do not run Grafana.
func runQuery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	form := "query"
	if len(args) > 0 {
		switch args[0] {
		case "labels", "series", "stats", "tail":
			form, args = args[0], args[1:]
		}
	}
	defaultSince := time.Hour
	if form == "labels" || form == "series" || form == "stats" {
		defaultSince = 6 * time.Hour // Loki's default for its metadata APIs
	}
	var f queryFlags
	name := "lokilab query"
	if form != "query" {
		name += " " + form
	}
	fs := newQueryFlagSet(name, &f, stderr, defaultSince)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	fs.Visit(func(fl *flag.Flag) {
		f.rangeSet = f.rangeSet || fl.Name == "since" || fl.Name == "from"
		f.limitSet = f.limitSet || fl.Name == "limit"
	})
	switch f.output {
	case "default", "raw", "jsonl":
	default:
		return fmt.Errorf("-o %q: want default, raw or jsonl", f.output)
	}
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	opts := []lokiclient.Option{lokiclient.WithWarningHandler(func(_ string, ws []string) {
		for _, w := range ws {
			fmt.Fprintln(stderr, "partial result:", w)
		}
	})}
	if f.tenant != "" {
		opts = append(opts, lokiclient.WithTenant(f.tenant))
	}
	c := lokiclient.New(f.addr, opts...)
	start, end, err := f.timeRange(time.Now())
	if err != nil {
		return err
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	p := &printer{w: out, note: stderr, format: f.output}

	switch form {
	case "labels":
		if len(pos) > 1 {
			return errors.New("labels takes at most one label name")
		}
		var vs []string
		if len(pos) == 1 {
			vs, err = c.LabelValues(ctx, pos[0], start, end)
		} else {
			vs, err = c.Labels(ctx, start, end)
		}
		if err != nil {
			return err
		}
		p.strings(vs)
		return nil
	case "series":
		if len(pos) == 0 {
			return errors.New(`series needs at least one selector, such as '{app="api"}'`)
		}
		series, err := c.Series(ctx, pos, start, end)
		if err != nil {
			return err
		}
		p.series(series)
		return nil
	case "stats":
		q, err := onlyQuery(pos, `a stream selector, such as '{app="api"}'`)
		if err != nil {
			return err
		}
		st, err := c.IndexStats(ctx, q, start, end)
		if err != nil {
			return err
		}
		p.indexStats(st)
		return nil
	case "tail":
		q, err := onlyQuery(pos, `a log query, such as '{app="api"} |= "error"'`)
		if err != nil {
			return err
		}
		var tailStart time.Time
		if f.rangeSet {
			tailStart = start
		}
		limit := 0
		if f.limitSet {
			limit = f.limit
		}
		err = c.Tail(ctx, q, tailStart, limit, f.delayFor, func(ss []lokiclient.Stream) error {
			p.tailLines(ss)
			return out.Flush()
		})
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return nil // Ctrl-C: the normal way to stop a tail
		}
		return err
	}

	q, err := onlyQuery(pos, `a LogQL query, such as '{app="api"} |= "error"'`)
	if err != nil {
		return err
	}
	if f.all {
		if f.instant {
			return errors.New("-all reads log lines over a range; it does not go with -instant")
		}
		pageSize := f.limit
		if !f.limitSet {
			pageSize = 1000 // fewer round trips than Loki's default 100
		}
		err := c.AllLogs(ctx, q, start, end, pageSize, func(ss []lokiclient.Stream) error {
			p.logLines(ss, false, false)
			return nil
		})
		var pe *lokiclient.PartialError
		if errors.As(err, &pe) {
			return nil // each warning was printed as it came
		}
		return err
	}
	var res *lokiclient.Result
	if f.instant {
		res, err = c.Query(ctx, q, end, 0)
	} else {
		direction := "backward"
		if f.forward {
			direction = "forward"
		}
		res, err = c.QueryRange(ctx, lokiclient.RangeQuery{Query: q, Start: start, End: end, Limit: f.limit, Direction: direction, Step: f.step})
	}
	if err != nil {
		return err
	}
	switch res.Type {
	case "streams":
		p.logLines(res.Streams, !f.forward, f.output == "default")
	default:
		p.samples(res.Series, res.Type)
	}
	if f.output == "default" && len(res.Streams) == 0 && len(res.Series) == 0 {
		if f.instant {
			fmt.Fprintf(stderr, "no result at %s\n", end.UTC().Format(time.RFC3339))
		} else {
			fmt.Fprintf(stderr, "no result from %s to %s\n", start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339))
		}
	}
	if f.stats {
		st, err := lokiclient.ParseStats(res.Stats)
		if err != nil {
			return fmt.Errorf("reading the answer's stats: %w", err)
		}
		fmt.Fprintln(stderr, statsLine(st))
	}
	return nil
}

// parseInterspersed parses flags that may come before or after the
// positional arguments, as in `lokilab query '{app="x"}' -limit 5`; "--"
// ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func onlyQuery(pos []string, what string) (string, error) {
	switch len(pos) {
	case 1:
		return pos[0], nil
	case 0:
		return "", fmt.Errorf("give %s (lokilab query -help shows the forms)", what)
	}
	return "", fmt.Errorf("give one query, in quotes: got %d arguments %q", len(pos), pos)
}

// timeRange reads -from, -to and -since.
func (f *queryFlags) timeRange(now time.Time) (start, end time.Time, err error) {
	end = now
	if f.to != "" {
		if end, err = parseCLITime(f.to, now); err != nil {
			return start, end, fmt.Errorf("-to: %w", err)
		}
	}
	start = end.Add(-f.since)
	if f.from != "" {
		if start, err = parseCLITime(f.from, now); err != nil {
			return start, end, fmt.Errorf("-from: %w", err)
		}
	}
	if end.Before(start) {
		return start, end, fmt.Errorf("-from %s is after -to %s", start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	return start, end, nil
}

// parseCLITime reads RFC3339, Unix seconds (up to ten digits, or with a
// fraction) or nanoseconds, "now" and "now-<duration>".
func parseCLITime(s string, now time.Time) (time.Time, error) {
	if s == "now" {
		return now, nil
	}
	if rest, ok := strings.CutPrefix(s, "now-"); ok {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: %w", s, err)
		}
		return now.Add(-d), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if len(strings.TrimPrefix(s, "-")) <= 10 {
			return time.Unix(n, 0), nil
		}
		return time.Unix(0, n), nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !strings.ContainsAny(s, "eEnN") {
		return time.Unix(0, int64(f*1e9)), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot read %q: want RFC3339 (2026-11-29T10:00:00Z), Unix seconds or nanoseconds, now or now-1h", s)
}
