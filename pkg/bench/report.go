package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteReport writes a table of the results: per target its accepted MiB/s
// and lines/s, push latency p50 and p99, the share of lines refused, and
// each throughput as a ratio to the first target's; then each store and
// lag report.
func WriteReport(w io.Writer, rs []Result) error {
	if len(rs) == 0 {
		_, err := fmt.Fprintln(w, "no results")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "target\taccepted MiB/s\tlines/s\tp50\tp99\trefused\tMiB/s vs %s\tlines/s vs %s\t\n", rs[0].Target, rs[0].Target)
	base := &rs[0]
	for i := range rs {
		r := &rs[i]
		refused := 0.0
		if r.Summary.Sent.Lines > 0 {
			refused = 100 * float64(r.Summary.RejectedLines()) / float64(r.Summary.Sent.Lines)
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.0f\t%s\t%s\t%.1f%%\t%s\t%s\t\n", r.Target, r.AcceptedMBps(), r.AcceptedLinesPerSecond(),
			ms(r.Summary.Latency.P50), ms(r.Summary.Latency.P99), refused,
			ratio(r.AcceptedMBps(), base.AcceptedMBps()), ratio(r.AcceptedLinesPerSecond(), base.AcceptedLinesPerSecond()))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for i := range rs {
		r := &rs[i]
		for _, o := range r.Summary.Rejected {
			fmt.Fprintf(w, "%s: %d pushes %s\n", r.Target, o.Pushes, o.Outcome)
		}
		if r.Flush != nil {
			fmt.Fprintln(w, flushLine(r))
		}
		if r.Lag == nil {
			continue
		}
		l := r.Lag
		var b strings.Builder
		fmt.Fprintf(&b, "%s ingest lag: peak %.0f records over %d samples, %.0f when the load stopped", r.Target, l.Max, l.Samples, l.AtEnd)
		if l.Growing {
			b.WriteString(", GROWING (the ingesters fell behind)")
		} else {
			b.WriteString(", not growing")
		}
		if l.Drained {
			fmt.Fprintf(&b, "; drained to 0 in %s", l.DrainTime.Round(10*time.Millisecond))
		} else {
			fmt.Fprintf(&b, "; NOT drained after %s", l.DrainTime.Round(time.Second))
		}
		if l.Err != nil {
			fmt.Fprintf(&b, " (a sample failed: %v)", l.Err)
		}
		fmt.Fprintln(w, b.String())
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// flushLine says what reached r's store: during the load, in the forced
// flush after it (and how fast that ran, against the rate the load was
// accepted at), and whether every accepted line is there.
func flushLine(r *Result) string {
	f := r.Flush
	var b strings.Builder
	fmt.Fprintf(&b, "%s store: %.0f of %d accepted lines flushed during the load (%.0f%%), the other %.0f by a forced flush in %s",
		r.Target, f.DuringLoad, f.Accepted, percent(f.DuringLoad, float64(f.Accepted)), f.Backlog, f.FinalFlush.Round(10*time.Millisecond))
	if rate := f.BacklogRate(); rate > 0 {
		fmt.Fprintf(&b, " (%.0f lines/s, %s the accepted rate)", rate, ratio(rate, r.AcceptedLinesPerSecond()))
	}
	switch m := f.Missing(); {
	case f.Err != nil:
		fmt.Fprintf(&b, "; FAILED: %v", f.Err)
	case m > 0:
		fmt.Fprintf(&b, "; %.0f accepted lines MISSING from the store", m)
	case f.Total > float64(f.Accepted):
		fmt.Fprintf(&b, "; all in the store, and %.0f lines stored twice", f.Total-float64(f.Accepted))
	default:
		b.WriteString("; all in the store")
	}
	if m := f.InMemory; m != nil {
		fmt.Fprintf(&b, "\n%s unflushed lines during the load: peak %.0f over %d samples, %.0f when the load stopped", r.Target, m.Max, m.Samples, m.AtEnd)
		if m.Growing {
			b.WriteString(", GROWING (flushing fell behind)")
		} else {
			b.WriteString(", not growing")
		}
		if m.Err != nil {
			fmt.Fprintf(&b, " (a sample failed: %v)", m.Err)
		}
	}
	return b.String()
}

func percent(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * a / b
}
