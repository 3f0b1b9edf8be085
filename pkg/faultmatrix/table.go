package faultmatrix

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/lokilab/lokilab/internal/humanize"
)

// WriteTable writes the results as a markdown table, then a line per
// skipped or failed run and the notes.
func WriteTable(w io.Writer, results []Result) error {
	var b strings.Builder
	b.WriteString("| fault | lasted | acked lines | **missing** | duplicated (verify) | copies removed by dedupe | unacked but stored | pushes rejected in the fault | slowest push in the fault | writes back after | reads in the fault: whole / partial / failed | reads whole after |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		if r.Skipped != "" {
			fmt.Fprintf(&b, "| `%s` | skipped | | | | | | | | | | |\n", r.Fault)
			continue
		}
		lasted := "instant"
		if r.FaultFor > 0 {
			lasted = fmtDur(r.FaultFor)
		}
		missing := humanize.Int(r.Missing)
		if r.Err != "" {
			missing += " (run failed)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | **%s** | %s | %.0f | %s | %d of %d | %s | %s | %d / %d / %d | %s |\n",
			r.Fault, lasted, humanize.Int(r.AckedLines), missing, humanize.Int(r.Duplicated), r.DedupeRemoved,
			humanize.Int(r.Unacked), r.RejectedInFault, r.InFault, fmtDur(r.SlowestInFault), fmtDur(r.WriteRecovery),
			r.Reads.Whole, r.Reads.Partial, r.Reads.Failed, fmtDur(r.ReadRecovery))
	}
	b.WriteString("\n")
	for _, r := range results {
		switch {
		case r.Skipped != "":
			fmt.Fprintf(&b, "- `%s` SKIPPED: %s\n", r.Fault, r.Skipped)
		case r.Err != "":
			fmt.Fprintf(&b, "- `%s` FAILED TO RUN: %s\n", r.Fault, r.Err)
		}
	}
	for _, r := range results {
		fmt.Fprintf(&b, "- `%s`: %s (run took %s)\n", r.Fault, r.What, r.Elapsed.Round(time.Second))
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "  - %s\n", strings.ReplaceAll(strings.TrimSpace(n), "\n", "\n    "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
