package loadgen

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lokilab/lokilab/internal/humanize"
)

// Counts are pushes and the lines and line bytes in them.
type Counts struct {
	Pushes, Lines, Bytes int64
}

func (c *Counts) add(lines, bytes int) {
	c.Pushes++
	c.Lines += int64(lines)
	c.Bytes += int64(bytes)
}

// OutcomeCounts are the pushes that had one outcome.
type OutcomeCounts struct {
	Outcome
	Counts
}

// Latency summarises push latencies: from sending a push to its answer,
// for every push that got one.
type Latency struct {
	Count              uint64
	P50, P90, P99, Max time.Duration
}

// Summary is what a run did.
type Summary struct {
	Run      string
	Seed     uint64
	URL      string
	Encoding string
	Workers  int
	Elapsed  time.Duration
	// Sent counts every push sent, whatever became of it.
	Sent Counts
	// Accepted counts the pushes answered 2xx.
	Accepted Counts
	// Rejected counts the others by outcome, most pushes first.
	Rejected []OutcomeCounts
	Latency  Latency
	// AckLog is the ack log's path ("" without one); AckRecords the
	// records this run appended to it.
	AckLog     string
	AckRecords int64
}

// RejectedLines is the lines of every push not accepted.
func (s *Summary) RejectedLines() int64 { return s.Sent.Lines - s.Accepted.Lines }

// LinesPerSecond is the rate of lines sent over the run.
func (s *Summary) LinesPerSecond() float64 { return perSecond(s.Sent.Lines, s.Elapsed) }

// MBPerSecond is the rate of line bytes sent over the run, in MiB/s (the
// unit of Loki's ingestion_rate_mb).
func (s *Summary) MBPerSecond() float64 { return perSecond(s.Sent.Bytes, s.Elapsed) / (1 << 20) }

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// WriteTo writes the summary for a person to read.
func (s *Summary) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "run %s (seed %d): %d workers pushed %s for %s to %s\n",
		s.Run, s.Seed, s.Workers, s.Encoding, s.Elapsed.Round(time.Millisecond), s.URL)
	fmt.Fprintf(&b, "  sent      %12s lines %10s MB in %s pushes: %s lines/s, %.2f MB/s\n",
		humanize.Int(s.Sent.Lines), mb(s.Sent.Bytes), humanize.Int(s.Sent.Pushes), humanize.Int(int64(s.LinesPerSecond())), s.MBPerSecond())
	fmt.Fprintf(&b, "  accepted  %12s lines %10s MB in %s pushes: %.2f MB/s\n",
		humanize.Int(s.Accepted.Lines), mb(s.Accepted.Bytes), humanize.Int(s.Accepted.Pushes), perSecond(s.Accepted.Bytes, s.Elapsed)/(1<<20))
	fmt.Fprintf(&b, "  rejected  %12s lines", humanize.Int(s.RejectedLines()))
	if len(s.Rejected) == 0 {
		b.WriteString("\n")
	} else {
		b.WriteString(", by answer:\n")
		for _, r := range s.Rejected {
			fmt.Fprintf(&b, "    %-32s %10s lines in %s pushes\n", r.Outcome.String(), humanize.Int(r.Lines), humanize.Int(r.Pushes))
		}
	}
	l := s.Latency
	fmt.Fprintf(&b, "  latency   p50 %s  p90 %s  p99 %s  max %s  (%s answered pushes)\n",
		dur(l.P50), dur(l.P90), dur(l.P99), dur(l.Max), humanize.Int(int64(l.Count)))
	if s.AckLog != "" {
		fmt.Fprintf(&b, "  ack log   %s: %s records of %s accepted lines (check them: lokilab verify -ack-log %s)\n",
			s.AckLog, humanize.Int(s.AckRecords), humanize.Int(s.Accepted.Lines), s.AckLog)
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// stats counts outcomes for all workers. Counting takes a lock once per
// push, which is nothing next to the push; latencies go to a lock-free
// histogram.
type stats struct {
	lat histogram

	mu       sync.Mutex
	sent     Counts
	accepted Counts
	outcomes map[Outcome]*Counts
}

func newStats() *stats { return &stats{outcomes: map[Outcome]*Counts{}} }

func (s *stats) add(o Outcome, lines, bytes int, latency time.Duration, answered bool) {
	if answered {
		s.lat.record(latency)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent.add(lines, bytes)
	if o.Accepted() {
		s.accepted.add(lines, bytes)
		return
	}
	c := s.outcomes[o]
	if c == nil {
		c = &Counts{}
		s.outcomes[o] = c
	}
	c.add(lines, bytes)
}

// point is the counts at one moment, for the progress line.
type point struct {
	at       time.Time
	sent     Counts
	accepted Counts
	rejected []OutcomeCounts
	lat      *snapshot
}

func (s *stats) point(now time.Time) point {
	p := point{at: now, lat: s.lat.snapshot()}
	s.mu.Lock()
	p.sent, p.accepted = s.sent, s.accepted
	for o, c := range s.outcomes {
		p.rejected = append(p.rejected, OutcomeCounts{o, *c})
	}
	s.mu.Unlock()
	slices.SortFunc(p.rejected, func(a, b OutcomeCounts) int {
		return cmp.Or(cmp.Compare(b.Pushes, a.Pushes), cmp.Compare(a.Code, b.Code), strings.Compare(a.Reason, b.Reason))
	})
	return p
}

// progressLine is one interval's line: rates and latency over the
// interval, counts since the start.
//
//	12s  2,000 lines/s  0.49 MB/s | accepted 23,800 lines | rejected 200 (429 rate_limited: 2 pushes) | p50 3.2ms p99 18ms
func progressLine(elapsed time.Duration, prev, cur point) string {
	d := cur.at.Sub(prev.at)
	lat := cur.lat.sub(prev.lat)
	var b strings.Builder
	fmt.Fprintf(&b, "%5s  %s lines/s  %.2f MB/s | accepted %s lines | rejected %s",
		elapsed.Round(time.Second), humanize.Int(int64(perSecond(cur.sent.Lines-prev.sent.Lines, d))),
		perSecond(cur.sent.Bytes-prev.sent.Bytes, d)/(1<<20),
		humanize.Int(cur.accepted.Lines), humanize.Int(cur.sent.Lines-cur.accepted.Lines))
	if len(cur.rejected) > 0 {
		b.WriteString(" (")
		for i, r := range cur.rejected {
			if i == 3 {
				fmt.Fprintf(&b, ", %d more", len(cur.rejected)-i)
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s: %s pushes", r.Outcome, humanize.Int(r.Pushes))
		}
		b.WriteString(")")
	}
	if lat.total() > 0 {
		fmt.Fprintf(&b, " | p50 %s p99 %s", dur(lat.quantile(0.5)), dur(lat.quantile(0.99)))
	} else {
		b.WriteString(" | no answers")
	}
	return b.String()
}

func (s *stats) summary(l *Loadgen, elapsed time.Duration) Summary {
	p := s.point(time.Now())
	return Summary{
		Run:      l.run,
		Seed:     l.seed,
		URL:      l.cfg.URL,
		Encoding: l.cfg.Encoding,
		Workers:  l.cfg.Concurrency,
		Elapsed:  elapsed,
		Sent:     p.sent,
		Accepted: p.accepted,
		Rejected: p.rejected,
		Latency: Latency{
			Count: p.lat.total(),
			P50:   p.lat.quantile(0.5),
			P90:   p.lat.quantile(0.9),
			P99:   p.lat.quantile(0.99),
			Max:   p.lat.max,
		},
		AckLog: l.cfg.AckLog,
	}
}

func mb(n int64) string { return strconv.FormatFloat(float64(n)/(1<<20), 'f', 2, 64) }

// dur rounds a latency to 2-3 significant digits.
func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < 10*time.Microsecond:
		return d.String()
	case d < 10*time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

func itoa(n int) string { return strconv.Itoa(n) }
