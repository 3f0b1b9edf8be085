package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lokilab/lokilab/internal/humanize"
	"github.com/lokilab/lokilab/pkg/lokiclient"
)

// printer writes `lokilab query` answers in one of three forms: default
// (for people), raw (log lines alone; tab-separated samples) and jsonl
// (one JSON object per line or sample, for jq and scripts).
type printer struct {
	w      io.Writer
	note   io.Writer // where remarks for people go (stderr), never data
	format string
}

// logTime is how log timestamps print: UTC, milliseconds, fixed width.
const logTime = "2006-01-02T15:04:05.000Z07:00"

type flatEntry struct {
	labels string
	ls     map[string]string
	lokiclient.Entry
}

// logLines prints entries of all streams merged by time (newest first when
// backward), each with its stream's labels. With common set, labels every
// stream shares are said once (to note) and left off the lines.
func (p *printer) logLines(streams []lokiclient.Stream, backward, common bool) {
	shared := map[string]string{}
	if common && len(streams) > 0 {
		shared = commonLabels(streams)
		if len(shared) > 0 && p.note != nil {
			fmt.Fprintln(p.note, "common labels:", lokiclient.LabelsString(shared))
		}
	}
	var all []flatEntry
	width := 0
	for _, s := range streams {
		ls := s.Labels
		if len(shared) > 0 {
			ls = map[string]string{}
			for n, v := range s.Labels {
				if _, ok := shared[n]; !ok {
					ls[n] = v
				}
			}
		}
		str := ""
		if len(ls) > 0 || len(shared) == 0 {
			str = lokiclient.LabelsString(ls)
		}
		width = max(width, len(str))
		for _, e := range s.Entries {
			all = append(all, flatEntry{str, s.Labels, e})
		}
	}
	slices.SortStableFunc(all, func(a, b flatEntry) int {
		c := cmp.Or(a.Timestamp.Compare(b.Timestamp), strings.Compare(a.labels, b.labels))
		if backward {
			return -c
		}
		return c
	})
	for _, e := range all {
		p.logLine(e, width)
	}
}

// tailLines prints a tail message's lines, oldest first, with full labels.
func (p *printer) tailLines(streams []lokiclient.Stream) { p.logLines(streams, false, false) }

func (p *printer) logLine(e flatEntry, width int) {
	switch p.format {
	case "raw":
		fmt.Fprintln(p.w, e.Line)
	case "jsonl":
		b, _ := json.Marshal(struct {
			Time   string            `json:"ts"`
			Labels map[string]string `json:"labels"`
			Line   string            `json:"line"`
		}{e.Timestamp.UTC().Format(time.RFC3339Nano), e.ls, e.Line})
		fmt.Fprintf(p.w, "%s\n", b)
	default:
		ts := e.Timestamp.UTC().Format(logTime)
		if width == 0 {
			fmt.Fprintf(p.w, "%s %s\n", ts, e.Line)
		} else {
			fmt.Fprintf(p.w, "%s %-*s %s\n", ts, width, e.labels, e.Line)
		}
	}
}

// commonLabels returns the labels every stream has with the same value.
func commonLabels(streams []lokiclient.Stream) map[string]string {
	out := map[string]string{}
	for n, v := range streams[0].Labels {
		out[n] = v
	}
	for _, s := range streams[1:] {
		for n, v := range out {
			if sv, ok := s.Labels[n]; !ok || sv != v {
				delete(out, n)
			}
		}
	}
	return out
}

// samples prints a metric answer: a vector as one line per series, a
// matrix as each series' labels followed by its points.
func (p *printer) samples(series []lokiclient.Series, typ string) {
	switch p.format {
	case "jsonl":
		for _, s := range series {
			for _, pt := range s.Samples {
				b, _ := json.Marshal(struct {
					Metric map[string]string `json:"metric"`
					Time   string            `json:"ts"`
					Value  string            `json:"value"`
				}{s.Metric, pt.Time.UTC().Format(time.RFC3339Nano), exactValue(pt.Value)})
				fmt.Fprintf(p.w, "%s\n", b)
			}
		}
		return
	case "raw":
		for _, s := range series {
			for _, pt := range s.Samples {
				fmt.Fprintf(p.w, "%s\t%s\t%s\n", lokiclient.LabelsString(s.Metric), strconv.FormatFloat(float64(pt.Time.UnixNano())/1e9, 'f', -1, 64), exactValue(pt.Value))
			}
		}
		return
	}
	if typ != "matrix" {
		// One line per series: labels left, values right-aligned.
		lw, vw := 0, 0
		for _, s := range series {
			lw = max(lw, len(lokiclient.LabelsString(s.Metric)))
			for _, pt := range s.Samples {
				vw = max(vw, len(readableValue(pt.Value)))
			}
		}
		for _, s := range series {
			for _, pt := range s.Samples {
				fmt.Fprintf(p.w, "%-*s  %*s\n", lw, lokiclient.LabelsString(s.Metric), vw, readableValue(pt.Value))
			}
		}
		return
	}
	for i, s := range series {
		if i > 0 {
			fmt.Fprintln(p.w)
		}
		fmt.Fprintln(p.w, lokiclient.LabelsString(s.Metric))
		vw := 0
		for _, pt := range s.Samples {
			vw = max(vw, len(readableValue(pt.Value)))
		}
		for _, pt := range s.Samples {
			fmt.Fprintf(p.w, "  %-24s  %*s\n", pt.Time.UTC().Format(sampleTime), vw, readableValue(pt.Value))
		}
	}
}

// sampleTime is how metric points' times print: UTC, milliseconds only
// when there are some.
const sampleTime = "2006-01-02T15:04:05.999Z07:00"

func exactValue(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// readableValue prints integers whole and other values to six significant
// digits: 0.0166667, not 0.016666666666666666.
func readableValue(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

// strings prints label names or values, one per line.
func (p *printer) strings(vs []string) {
	for _, v := range vs {
		if p.format == "jsonl" {
			b, _ := json.Marshal(v)
			fmt.Fprintf(p.w, "%s\n", b)
		} else {
			fmt.Fprintln(p.w, v)
		}
	}
}

// series prints label sets, one per line, sorted.
func (p *printer) series(series []map[string]string) {
	lines := make([]string, len(series))
	for i, s := range series {
		if p.format == "jsonl" {
			b, _ := json.Marshal(s)
			lines[i] = string(b)
		} else {
			lines[i] = lokiclient.LabelsString(s)
		}
	}
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Fprintln(p.w, l)
	}
}

func (p *printer) indexStats(st lokiclient.IndexStats) {
	if p.format == "jsonl" {
		b, _ := json.Marshal(st)
		fmt.Fprintf(p.w, "%s\n", b)
		return
	}
	fmt.Fprintf(p.w, "streams %s, chunks %s, entries %s, bytes %s\n",
		humanize.Int(int64(st.Streams)), humanize.Int(int64(st.Chunks)), humanize.Int(int64(st.Entries)), humanBytes(int64(st.Bytes)))
}

// statsLine is -stats' one-line summary of what a query cost.
func statsLine(st lokiclient.Stats) string {
	s := st.Summary
	var b strings.Builder
	fmt.Fprintf(&b, "stats: %s lines, %s processed in %s", humanize.Int(s.TotalLinesProcessed), humanBytes(s.TotalBytesProcessed),
		time.Duration(s.ExecTime*float64(time.Second)).Round(time.Microsecond))
	if s.ExecTime > 0 {
		fmt.Fprintf(&b, " (%s lines/s, %s/s)", humanize.Int(s.LinesProcessedPerSecond), humanBytes(s.BytesProcessedPerSecond))
	}
	fmt.Fprintf(&b, "; %d splits; %s entries returned", s.Splits, humanize.Int(int64(s.TotalEntriesReturned)))
	qs := st.Querier.Store
	fmt.Fprintf(&b, "; store: %d chunks (%d downloaded, %d from cache), %s compressed, %s decompressed, %s duplicates",
		qs.TotalChunksRef, qs.TotalChunksDownloaded, st.Cache.Chunk.EntriesFound,
		humanBytes(qs.Chunk.CompressedBytes), humanBytes(qs.Chunk.DecompressedBytes), humanize.Int(int64(qs.Chunk.TotalDuplicates)))
	fmt.Fprintf(&b, "; ingesters: %d reached, %s lines sent, %s duplicates",
		st.Ingester.TotalReached, humanize.Int(int64(st.Ingester.TotalLinesSent)), humanize.Int(int64(st.Ingester.Store.Chunk.TotalDuplicates)))
	return b.String()
}

// humanBytes writes n in B, KiB, MiB, GiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	v, i := float64(n), 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + []string{"B", "KiB", "MiB", "GiB", "TiB"}[i]
}
