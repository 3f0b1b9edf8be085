package lokiclient

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AllLogs reads every entry of a log query in [start, end), oldest first,
// in pages of pageSize entries, and calls fn with each page's streams (the
// entries not delivered by an earlier page: at most pageSize of them
// when the server orders entries of one timestamp the same way in every
// answer, as Loki and lokilab do). No entry is lost or repeated at a
// page edge, however many share its timestamp (see the package doc for
// how). pageSize ≤ 0 means 1000; it must not exceed the server's
// max_entries_limit_per_query (5000 by default).
//
// An error from fn or from the server stops the reading and is returned.
// If every page was read but some answer carried warnings, AllLogs
// returns a *PartialError listing them (each once, first seen first):
// what was delivered may lack lines; errors.As tells the two apart.
// Warnings are also passed to the WithWarningHandler function as they
// arrive.
func (c *Client) AllLogs(ctx context.Context, query string, start, end time.Time, pageSize int, fn func([]Stream) error) error {
	if pageSize <= 0 {
		pageSize = 1000
	}
	if !end.After(start) {
		return nil
	}
	var (
		cursor = start
		// delivered counts, per identity, the entries at the cursor's
		// timestamp already passed to fn.
		delivered = map[entryKey]int{}
		skip      int // sum of delivered: the next page's first entries to skip
		warnings  []string
		seenWarn  = map[string]bool{}
	)
	for {
		limit := pageSize + skip
		res, err := c.QueryRange(ctx, RangeQuery{Query: query, Start: cursor, End: end, Limit: limit, Direction: "forward"})
		if err != nil {
			if skip > 0 {
				return fmt.Errorf("reading the %d+ entries at %s (a page of %d): %w", skip, cursor.Format(time.RFC3339Nano), limit, err)
			}
			return err
		}
		if res.Type != "streams" {
			return errors.New("AllLogs needs a log query, not a metric query")
		}
		for _, w := range res.Warnings {
			if !seenWarn[w] {
				seenWarn[w] = true
				warnings = append(warnings, w)
			}
		}

		// What is new in this page; and its newest timestamp.
		var (
			n       int // entries the server returned
			fresh   []Stream
			newest  = cursor
			seenNow = map[entryKey]int{} // occurrences in this page at the cursor
			added   int
		)
		for _, s := range res.Streams {
			key := labelsKey(s.Labels)
			var es []Entry
			for _, e := range s.Entries {
				n++
				if e.Timestamp.Before(cursor) || !e.Timestamp.Before(end) {
					continue // outside what was asked: not ours to deliver
				}
				if e.Timestamp.Equal(cursor) {
					k := entryKey{key, e.Line}
					seenNow[k]++
					if seenNow[k] <= delivered[k] {
						continue // the n-th occurrence, already delivered
					}
				}
				es = append(es, e)
				added++
				if e.Timestamp.After(newest) {
					newest = e.Timestamp
				}
			}
			if len(es) > 0 {
				fresh = append(fresh, Stream{Labels: s.Labels, Entries: es})
			}
		}
		if added > 0 {
			if err := fn(fresh); err != nil {
				return err
			}
		}
		if n < limit {
			break // a short page: nothing more in the range
		}
		if added == 0 {
			// A full page of nothing new: the server does not order
			// entries as asked. Stop rather than loop.
			return fmt.Errorf("a full page of %d entries from %s held no new entry", n, cursor.Format(time.RFC3339Nano))
		}

		// The next page starts at the newest timestamp, skipping what
		// was delivered there.
		if !newest.Equal(cursor) {
			cursor, delivered = newest, map[entryKey]int{}
		}
		skip = 0
		for _, s := range fresh {
			key := labelsKey(s.Labels)
			for _, e := range s.Entries {
				if e.Timestamp.Equal(cursor) {
					delivered[entryKey{key, e.Line}]++
				}
			}
		}
		for _, d := range delivered {
			skip += d
		}
	}
	if len(warnings) > 0 {
		return &PartialError{Warnings: warnings}
	}
	return nil
}

// entryKey is an entry's identity at a known timestamp: its stream and
// its line.
type entryKey struct{ stream, line string }

// LabelsString writes a label set as a stream selector, sorted by name:
// {app="api", level="error"} (the form Loki and lokilab print). It is
// also the stream's identity in AllLogs.
func LabelsString(ls map[string]string) string {
	names := make([]string, 0, len(ls))
	for n := range ls {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(n)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(ls[n]))
	}
	b.WriteByte('}')
	return b.String()
}

func labelsKey(ls map[string]string) string { return LabelsString(ls) }
