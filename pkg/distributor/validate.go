package distributor

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// reason is why lines were discarded: the reason label of
// loki_discarded_samples_total and loki_discarded_bytes_total. The names are
// Loki's, so dashboards and alerts written for Loki read them unchanged.
type reason int

const (
	reasonInvalidLabels reason = iota
	reasonMissingLabels
	reasonMaxLabelNames
	reasonLabelNameTooLong
	reasonLabelValueTooLong
	reasonDuplicateLabelNames
	reasonTooOld
	reasonTooNew
	reasonLineTooLong
	reasonDisallowedStructuredMetadata
	reasonStructuredMetadataTooLarge
	reasonStructuredMetadataTooMany
	reasonRecordTooLarge
	reasonRateLimited
	reasonStreamLimit
	numReasons
)

var reasonNames = [numReasons]string{
	reasonInvalidLabels:                "invalid_labels",
	reasonMissingLabels:                "missing_labels",
	reasonMaxLabelNames:                "max_label_names_per_series",
	reasonLabelNameTooLong:             "label_name_too_long",
	reasonLabelValueTooLong:            "label_value_too_long",
	reasonDuplicateLabelNames:          "duplicate_label_names",
	reasonTooOld:                       "greater_than_max_sample_age",
	reasonTooNew:                       "too_far_in_future",
	reasonLineTooLong:                  "line_too_long",
	reasonDisallowedStructuredMetadata: "disallowed_structured_metadata",
	reasonStructuredMetadataTooLarge:   "structured_metadata_too_large",
	reasonStructuredMetadataTooMany:    "structured_metadata_too_many",
	reasonRecordTooLarge:               "record_too_large",
	reasonRateLimited:                  "rate_limited",
	reasonStreamLimit:                  "stream_limit",
}

func (r reason) String() string { return reasonNames[r] }

// discards counts what one push discarded, per reason, so metrics are
// updated once per reason and push rather than once per line.
type discards [numReasons]struct{ lines, bytes int }

func (d *discards) add(r reason, lines, bytes int) {
	d[r].lines += lines
	d[r].bytes += bytes
}

// validated is the part of a push that passed validation.
type validated struct {
	streams []push.Stream // canonical labels, valid entries only
	lines   int
	bytes   int // line + structured metadata bytes: what the rate limit counts
	// errs are the validation failures, answered with 400 after the valid
	// part has been written (Loki's behaviour: the client must not retry a
	// push that cannot succeed, and the valid lines are not held hostage by
	// one bad one).
	errs     errorGroups
	discards discards
}

func (v *validated) fail(r reason, lines, bytes int, msg string) {
	v.discards.add(r, lines, bytes)
	v.errs.add(msg)
}

// errorGroups collects validation messages, counting repeats, in the order
// first seen.
type errorGroups struct {
	msgs   []string
	counts map[string]int
	total  int
}

// maxErrorGroups bounds the 400 body: a push of 100k bad lines gets a
// summary, not a 20 MB answer.
const maxErrorGroups = 10

func (g *errorGroups) add(msg string) {
	if g.counts == nil {
		g.counts = map[string]int{}
	}
	if _, seen := g.counts[msg]; !seen {
		g.msgs = append(g.msgs, msg)
	}
	g.counts[msg]++
	g.total++
}

func (g *errorGroups) empty() bool { return g.total == 0 }

// String renders the groups as Loki does: a lone error bare, otherwise each
// distinct message as "N errors like: msg", joined by "; ". Unlike Loki the
// order is deterministic (first seen) and at most maxErrorGroups are listed.
func (g *errorGroups) String() string {
	if g.total == 1 {
		return g.msgs[0]
	}
	var b strings.Builder
	for i, msg := range g.msgs {
		if i == maxErrorGroups {
			fmt.Fprintf(&b, "; and %d more distinct errors", len(g.msgs)-maxErrorGroups)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%d errors like: %s", g.counts[msg], msg)
	}
	return b.String()
}

// validate checks each stream's labels, then each entry, in Loki's order,
// and keeps what passes. Entries keep their order; structured metadata is
// sorted by name so that the same push sent as JSON or protobuf becomes the
// same Kafka record.
func validate(req *push.Request, lim *tenant.Limits, now time.Time, maxRecordValue int) *validated {
	v := &validated{streams: make([]push.Stream, 0, len(req.Streams))}
	var (
		oldest = now.Add(-time.Duration(lim.RejectOldSamplesMaxAge)).UnixNano()
		newest = now.Add(time.Duration(lim.CreationGracePeriod)).UnixNano()
	)
	for i := range req.Streams {
		s := &req.Streams[i]
		if len(s.Entries) == 0 {
			continue
		}
		ls, r, msg := validateLabels(s.Labels, lim)
		if msg != "" {
			v.fail(r, len(s.Entries), entriesSize(s.Entries), msg)
			continue
		}
		// Filter in place: the write index never passes the read index.
		out := push.Stream{Labels: ls.String(), Entries: s.Entries[:0]}
		maxEntryField := maxRecordValue - push.LabelsFieldSize(out.Labels)
		for j := range s.Entries {
			e := s.Entries[j]
			if r, msg := validateEntry(&e, s.Labels, lim, oldest, newest, maxEntryField); msg != "" {
				v.fail(r, 1, e.Size(), msg)
				continue
			}
			if len(e.StructuredMetadata) > 1 {
				slices.SortStableFunc(e.StructuredMetadata, func(a, b labels.Label) int { return strings.Compare(a.Name, b.Name) })
			}
			out.Entries = append(out.Entries, e)
			v.lines++
			v.bytes += e.Size()
		}
		if len(out.Entries) > 0 {
			v.streams = append(v.streams, out)
		}
	}
	return v
}

func validateLabels(raw string, lim *tenant.Limits) (labels.Labels, reason, string) {
	ls, err := labels.Parse(raw)
	if err != nil {
		// raw may hold bytes that are not UTF-8 (the reason it failed):
		// echoed as they are, they would corrupt the client's JSON or
		// terminal.
		return nil, reasonInvalidLabels, fmt.Sprintf("Error parsing labels '%s' with error: %v", strings.ToValidUTF8(raw, "\uFFFD"), err)
	}
	if len(ls) == 0 {
		return nil, reasonMissingLabels, "error at least one label pair is required per stream"
	}
	if n := len(ls); lim.MaxLabelNamesPerSeries > 0 && n > lim.MaxLabelNamesPerSeries {
		return nil, reasonMaxLabelNames, fmt.Sprintf("entry for stream '%s' has %d label names; limit %d", raw, n, lim.MaxLabelNamesPerSeries)
	}
	for i, l := range ls {
		switch {
		case len(l.Name) > lim.MaxLabelNameLength:
			return nil, reasonLabelNameTooLong, fmt.Sprintf("stream '%s' has label name too long: '%s'", raw, l.Name)
		case len(l.Value) > lim.MaxLabelValueLength:
			return nil, reasonLabelValueTooLong, fmt.Sprintf("stream '%s' has label value too long: '%s'", raw, l.Value)
		case i > 0 && ls[i-1].Name == l.Name:
			return nil, reasonDuplicateLabelNames, fmt.Sprintf("stream '%s' has duplicate label name: '%s'", raw, l.Name)
		}
	}
	return ls, 0, ""
}

func validateEntry(e *push.Entry, stream string, lim *tenant.Limits, oldest, newest int64, maxEntryField int) (reason, string) {
	if lim.RejectOldSamples && e.Timestamp < oldest {
		return reasonTooOld, fmt.Sprintf("entry for stream '%s' has timestamp too old: %s, oldest acceptable timestamp is: %s",
			stream, formatTime(e.Timestamp), formatTime(oldest))
	}
	if e.Timestamp > newest {
		return reasonTooNew, fmt.Sprintf("entry for stream '%s' has timestamp too new: %s", stream, formatTime(e.Timestamp))
	}
	if max := int(lim.MaxLineSize); max > 0 && len(e.Line) > max {
		return reasonLineTooLong, fmt.Sprintf("Max entry size '%d' bytes exceeded for stream '%s' while adding an entry with length '%d' bytes",
			max, stream, len(e.Line))
	}
	if n := len(e.StructuredMetadata); n > 0 {
		if !lim.AllowStructuredMetadata {
			return reasonDisallowedStructuredMetadata, fmt.Sprintf("stream '%s' includes structured metadata, but this feature is disallowed. Please see `limits_config.allow_structured_metadata` or contact your Loki administrator to enable it.", stream)
		}
		size := e.Size() - len(e.Line)
		if max := int(lim.MaxStructuredMetadataSize); max > 0 && size > max {
			return reasonStructuredMetadataTooLarge, fmt.Sprintf("stream '%s' has structured metadata too large: '%d' bytes, limit: '%d' bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it.", stream, size, max)
		}
		if max := lim.MaxStructuredMetadataEntriesCount; max > 0 && n > max {
			return reasonStructuredMetadataTooMany, fmt.Sprintf("stream '%s' has too many structured metadata labels: '%d', limit: '%d'. Please see `limits_config.max_structured_metadata_entries_count` or contact your Loki administrator to increase it.", stream, n, max)
		}
	}
	if n := push.EntryFieldSize(e); n > maxEntryField {
		// Only reachable when a tenant's max_line_size is raised past what
		// one Kafka record can carry; checked here so that encoding the
		// records afterwards cannot fail.
		return reasonRecordTooLarge, fmt.Sprintf("entry for stream '%s' needs %d bytes, more than fits in a Kafka record (%d bytes); lower max_line_size or raise producer_max_record_size_bytes",
			stream, n, maxEntryField)
	}
	return 0, ""
}

func entriesSize(es []push.Entry) int {
	n := 0
	for i := range es {
		n += es[i].Size()
	}
	return n
}

// formatTime prints a timestamp as Loki's messages do: RFC3339, whole
// seconds.
func formatTime(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }
