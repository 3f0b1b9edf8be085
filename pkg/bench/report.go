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
// each throughput as a ratio to the first target's; then each lag report.
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
