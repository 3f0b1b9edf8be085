package loadgen

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/lokilab/lokilab/internal/humanize"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/lokiclient"
)

// VerifyConfig is what `lokilab verify` checks, and against what.
type VerifyConfig struct {
	// URL is the query API's base. Default lokilab run's,
	// http://127.0.0.1:3100.
	URL string `yaml:"url"`
	// AckLog is the ack log written by `lokilab load -ack-log`.
	AckLog string `yaml:"ack_log"`
	// PageSize is the new entries asked per query. Default 4000: a page
	// also re-reads the entries it already delivered at its first
	// timestamp (see lokiclient.AllLogs), and the sum must stay within
	// the server's max_entries_limit_per_query (5000 by default, Loki's).
	// Smaller pages cost more queries.
	PageSize int `yaml:"page_size"`
	// Wait is how long to keep checking while lines are missing or answers
	// are partial, reading everything again every RetryInterval. Default
	// 30s: a line acknowledged a moment ago may still be on its way from
	// Kafka to an ingester (the query API is not read-after-write), and an
	// ingester restarting or replaying answers partially until it has
	// caught up. 0 checks once.
	Wait time.Duration `yaml:"wait"`
	// RetryInterval is the pause between checks. Default 2s.
	RetryInterval time.Duration `yaml:"retry_interval"`
	// QueryTimeout bounds one query (one page). Default 1m.
	QueryTimeout time.Duration `yaml:"query_timeout"`
	// AllowDuplicates accepts acknowledged lines that are found more than
	// once. Default false: query-time dedupe should have removed every
	// copy that replays and retries made.
	AllowDuplicates bool `yaml:"allow_duplicates"`
	// Examples is how many missing and duplicated lines to name. Default
	// 10.
	Examples int `yaml:"examples"`
}

// RegisterFlags registers the verify flags with their defaults.
func (c *VerifyConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:3100", "Base URL of the Loki query API.")
	fs.StringVar(&c.AckLog, "ack-log", "", "Ack log written by lokilab load -ack-log (required).")
	fs.IntVar(&c.PageSize, "page-size", 4000, "New entries per query; leave room under the server's max_entries_limit_per_query (5000).")
	fs.DurationVar(&c.Wait, "wait", 30*time.Second, "Keep checking this long while lines are missing or answers are partial; 0 checks once.")
	fs.DurationVar(&c.RetryInterval, "retry-interval", 2*time.Second, "Pause between checks.")
	fs.DurationVar(&c.QueryTimeout, "query-timeout", time.Minute, "Longest one query may take.")
	fs.BoolVar(&c.AllowDuplicates, "allow-duplicates", false, "Do not fail when acknowledged lines are found more than once.")
	fs.IntVar(&c.Examples, "examples", 10, "Missing and duplicated lines to name.")
}

// Validate reports a configuration that cannot run.
func (c *VerifyConfig) Validate() error {
	switch {
	case c.URL == "":
		return errors.New("url is required")
	case c.AckLog == "":
		return errors.New("ack-log is required")
	case c.PageSize < 1:
		return errors.New("page-size must be at least 1")
	case c.Wait < 0 || c.RetryInterval <= 0 || c.QueryTimeout <= 0:
		return errors.New("wait must not be negative; retry-interval and query-timeout must be positive")
	case c.Examples < 0:
		return errors.New("examples must not be negative")
	}
	return nil
}

// VerifyReport is what a check found.
type VerifyReport struct {
	AckLog  string
	Runs    []string
	Tenants int
	Streams int
	// Records is the ack log's records; Acked the distinct line IDs in
	// them: the lines the target promised to keep.
	Records int64
	Acked   int64
	// Found is the acknowledged lines the query API returned at least
	// once; Missing the rest.
	Found, Missing int64
	// Duplicated is the acknowledged lines returned more than once;
	// ExtraCopies the copies beyond the first.
	Duplicated, ExtraCopies int64
	// Unacked is lines of these runs, in the time ranges read, that were
	// returned but never acknowledged: pushes answered with an error (a timeout, a 429 for
	// some of their streams) whose lines were stored anyway. Allowed: a
	// client retries those.
	Unacked int64
	// OtherTenant is acknowledged lines returned to a tenant other than
	// the one that pushed them. A target with auth off files every
	// tenant's lines under one and returns them to every tenant's query,
	// so this is expected there; with auth on it is a broken promise of
	// isolation.
	OtherTenant int64
	// Queries is the pages asked in the last check, Entries the entries
	// they returned.
	Queries int
	Entries int64
	// Warnings are the last check's partial-answer warnings: when there
	// are any, missing lines may only be unreachable right now.
	Warnings []string
	// Examples name some missing lines and duplicated line IDs.
	MissingExamples   []MissingLine
	DuplicateExamples []string
	// MissingByStream counts the missing lines per tenant and stream,
	// "tenant {labels}".
	MissingByStream map[string]int64
	Checks          int
	Elapsed         time.Duration
}

// MissingLine is an acknowledged line the query API did not return.
type MissingLine struct {
	ID        LineID
	Tenant    string
	Labels    string
	Timestamp time.Time
}

// OK reports whether every acknowledged line was found (and, unless
// allowDuplicates, found once).
func (r *VerifyReport) OK(allowDuplicates bool) bool {
	return r.Missing == 0 && (allowDuplicates || r.Duplicated == 0)
}

// WriteTo writes the report for a person to read.
func (r *VerifyReport) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "ack log %s: %s records; runs: %s; tenants: %d; streams: %d\n",
		r.AckLog, humanize.Int(r.Records), strings.Join(r.Runs, ","), r.Tenants, r.Streams)
	fmt.Fprintf(&b, "  acknowledged %12s lines\n", humanize.Int(r.Acked))
	fmt.Fprintf(&b, "  found        %12s\n", humanize.Int(r.Found))
	fmt.Fprintf(&b, "  missing      %12s\n", humanize.Int(r.Missing))
	fmt.Fprintf(&b, "  duplicated   %12s (%s extra copies)\n", humanize.Int(r.Duplicated), humanize.Int(r.ExtraCopies))
	fmt.Fprintf(&b, "  unacknowledged but stored %s (pushes answered with an error whose lines were kept: allowed)\n", humanize.Int(r.Unacked))
	if r.OtherTenant > 0 {
		fmt.Fprintf(&b, "  returned to another tenant %s (expected when the target has auth off; with auth on, tenants are not isolated)\n", humanize.Int(r.OtherTenant))
	}
	fmt.Fprintf(&b, "  read %s entries in %d queries; %d checks in %s\n", humanize.Int(r.Entries), r.Queries, r.Checks, r.Elapsed.Round(time.Millisecond))
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "  warning: %s\n", w)
	}
	if r.Missing > 0 {
		streams := slices.Sorted(maps.Keys(r.MissingByStream))
		slices.SortStableFunc(streams, func(a, b string) int { return cmp.Compare(r.MissingByStream[b], r.MissingByStream[a]) })
		b.WriteString("  missing by stream:\n")
		for i, s := range streams {
			if i == 10 {
				fmt.Fprintf(&b, "    … and %d more streams\n", len(streams)-i)
				break
			}
			fmt.Fprintf(&b, "    %8s  %s\n", humanize.Int(r.MissingByStream[s]), s)
		}
		b.WriteString("  missing lines, for example:\n")
		for _, m := range r.MissingExamples {
			fmt.Fprintf(&b, "    lid=%s tenant=%q stream=%s ts=%s (%d)\n", m.ID, m.Tenant, m.Labels,
				m.Timestamp.UTC().Format(time.RFC3339Nano), m.Timestamp.UnixNano())
		}
	}
	if r.Duplicated > 0 {
		fmt.Fprintf(&b, "  duplicated lines, for example: lid=%s\n", strings.Join(r.DuplicateExamples, " lid="))
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// Verify reads cfg.AckLog back through the query API at cfg.URL and
// reports which acknowledged lines it finds, misses and finds twice. It
// checks again every RetryInterval while lines are missing or answers
// are partial, until Wait has passed; log, if not nil, hears about each
// check. The error is about the check itself (the ack log unreadable, a
// query refused); missing lines are in the report.
func Verify(ctx context.Context, cfg VerifyConfig, log io.Writer) (*VerifyReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	v := &verifier{cfg: cfg, ids: map[idKey]*idBits{}, tenants: map[string]*tenantRange{}, tenantIdx: map[string]int{}}
	if err := v.readAckLog(); err != nil {
		return nil, err
	}
	deadline := start.Add(cfg.Wait)
	for {
		v.report.Checks++
		if err := v.check(ctx); err != nil {
			return nil, err
		}
		r := &v.report
		if r.Missing == 0 && len(r.Warnings) == 0 || !time.Now().Add(cfg.RetryInterval).Before(deadline) {
			break
		}
		if log != nil {
			fmt.Fprintf(log, "check %d: %s of %s acknowledged lines missing, %d warnings; checking again in %s\n",
				r.Checks, humanize.Int(r.Missing), humanize.Int(r.Acked), len(r.Warnings), cfg.RetryInterval)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(cfg.RetryInterval):
		}
	}
	if v.report.Missing > 0 || v.report.Duplicated > 0 {
		if err := v.examples(); err != nil {
			return nil, err
		}
	}
	v.report.Elapsed = time.Since(start)
	return &v.report, nil
}

// idKey is one worker of one run: its lines' IDs differ by sequence
// number only.
type idKey struct {
	run    string
	worker int
}

// idBits are one worker's sequence numbers: acknowledged, seen once, seen
// again. A bit per sequence number (sequence numbers start at 0 and run
// consecutively) is what keeps a check of millions of lines in a few MB.
// Which tenant acknowledged them is kept per range: a push's lines are
// consecutive, so that is a few bytes per push.
type idBits struct {
	acked, seen, dup bitset
	owners           []owner // sorted by first once the ack log is read
}

// owner says that sequence numbers [first, end) belong to a tenant (an
// index into verifier.tenantIDs).
type owner struct {
	first, end uint64
	tenant     int
}

func (b *idBits) own(first, end uint64, tenant int) {
	if n := len(b.owners); n > 0 && b.owners[n-1].end == first && b.owners[n-1].tenant == tenant {
		b.owners[n-1].end = end
		return
	}
	b.owners = append(b.owners, owner{first, end, tenant})
}

// ownerOf is the tenant that acknowledged seq, or -1.
func (b *idBits) ownerOf(seq uint64) int {
	i, _ := slices.BinarySearchFunc(b.owners, seq, func(o owner, seq uint64) int { return cmp.Compare(o.first, seq+1) })
	// owners[i-1] is the last range starting at or before seq.
	if i > 0 && seq < b.owners[i-1].end {
		return b.owners[i-1].tenant
	}
	return -1
}

type bitset []uint64

func (b *bitset) set(i uint64) (was bool) {
	w := i / 64
	if w >= uint64(len(*b)) {
		*b = append(*b, make([]uint64, w+1-uint64(len(*b)))...)
	}
	m := uint64(1) << (i % 64)
	was = (*b)[w]&m != 0
	(*b)[w] |= m
	return was
}

func (b bitset) get(i uint64) bool {
	w := i / 64
	return w < uint64(len(b)) && b[w]&(1<<(i%64)) != 0
}

// tenantRange is what the ack log holds for a tenant: its time range,
// streams and runs.
type tenantRange struct {
	from, through int64 // Unix ns, inclusive
	streams       map[string]bool
	runs          map[string]bool
}

type verifier struct {
	cfg       VerifyConfig
	ids       map[idKey]*idBits
	tenants   map[string]*tenantRange
	tenantIdx map[string]int
	report    VerifyReport
}

func (v *verifier) readAckLog() error {
	f, err := os.Open(v.cfg.AckLog)
	if err != nil {
		return err
	}
	defer f.Close()
	runs := map[string]bool{}
	streams := map[string]bool{}
	rd := NewAckReader(f)
	for {
		rec, ok := rd.Next()
		if !ok {
			break
		}
		v.report.Records++
		t := v.tenants[rec.Tenant]
		if t == nil {
			v.tenantIdx[rec.Tenant] = len(v.tenantIdx)
			t = &tenantRange{from: rec.Timestamps[0], through: rec.Timestamps[0], streams: map[string]bool{}, runs: map[string]bool{}}
			v.tenants[rec.Tenant] = t
		}
		t.from = min(t.from, rec.Timestamps[0])
		t.through = max(t.through, rec.Timestamps[len(rec.Timestamps)-1])
		t.streams[rec.Labels] = true
		t.runs[rec.Run] = true
		runs[rec.Run] = true
		streams[rec.Tenant+" "+rec.Labels] = true
		bits := v.bits(idKey{rec.Run, rec.Worker}, true)
		for i := range rec.Timestamps {
			if !bits.acked.set(rec.FirstSeq + uint64(i)) {
				v.report.Acked++
			}
		}
		bits.own(rec.FirstSeq, rec.FirstSeq+uint64(len(rec.Timestamps)), v.tenantIdx[rec.Tenant])
	}
	for _, b := range v.ids {
		slices.SortStableFunc(b.owners, func(x, y owner) int { return cmp.Compare(x.first, y.first) })
	}
	if err := rd.Err(); err != nil {
		return fmt.Errorf("ack log %s: %w", v.cfg.AckLog, err)
	}
	if v.report.Records == 0 {
		return fmt.Errorf("ack log %s holds no records: nothing was acknowledged", v.cfg.AckLog)
	}
	v.report.AckLog = v.cfg.AckLog
	v.report.Runs = slices.Sorted(maps.Keys(runs))
	v.report.Tenants = len(v.tenants)
	v.report.Streams = len(streams)
	return nil
}

func (v *verifier) bits(k idKey, create bool) *idBits {
	b := v.ids[k]
	if b == nil && create {
		// Intern the run: one string per run, not per record.
		b = &idBits{}
		v.ids[idKey{strings.Clone(k.run), k.worker}] = b
	}
	return b
}

// maxWindow bounds one query's range, under Loki's max_query_length
// (721h by default).
const maxWindow = 24 * time.Hour

// check queries every tenant's range and counts what it finds.
func (v *verifier) check(ctx context.Context) error {
	r := &v.report
	r.Found, r.Missing, r.Duplicated, r.ExtraCopies, r.Unacked, r.OtherTenant = 0, 0, 0, 0, 0, 0
	r.Queries, r.Entries, r.Warnings = 0, 0, nil
	for _, b := range v.ids {
		clear(b.seen)
		clear(b.dup)
	}
	for _, tenantID := range slices.Sorted(maps.Keys(v.tenants)) {
		t := v.tenants[tenantID]
		opts := []lokiclient.Option{lokiclient.WithHTTPClient(&http.Client{Timeout: v.cfg.QueryTimeout})}
		if tenantID != "" {
			opts = append(opts, lokiclient.WithTenant(tenantID))
		}
		client := lokiclient.New(v.cfg.URL, opts...)
		for _, q := range queriesFor(t) {
			for from := t.from; from <= t.through; from += int64(maxWindow) {
				through := min(t.through, from+int64(maxWindow)-1)
				err := client.AllLogs(ctx, q, time.Unix(0, from), time.Unix(0, through+1), v.cfg.PageSize, func(ss []lokiclient.Stream) error {
					r.Queries++
					for _, s := range ss {
						for _, e := range s.Entries {
							v.found(e.Line, v.tenantIdx[tenantID])
						}
					}
					return nil
				})
				var pe *lokiclient.PartialError
				switch {
				case errors.As(err, &pe):
					r.Warnings = append(r.Warnings, pe.Warnings...)
				case err != nil:
					return fmt.Errorf("tenant %q: query %s: %w", tenantID, q, err)
				}
			}
		}
	}
	r.Missing = r.Acked - r.Found
	return nil
}

// queriesFor is the log queries that return every line of t's runs: one
// selector of the labels all its streams share (every stream if they share
// none), filtered to lines holding one of the run IDs.
func queriesFor(t *tenantRange) []string {
	runs := slices.Sorted(maps.Keys(t.runs))
	filter := ` |= "` + runs[0] + `-"`
	if len(runs) > 1 {
		filter = ` |~ "` + strings.Join(runs, "-|") + `-"`
	}
	var common labels.Labels
	first := true
	for s := range t.streams {
		ls, err := labels.Parse(s)
		if err != nil {
			continue // ParseAckRecord checked it
		}
		if first {
			common, first = ls, false
			continue
		}
		common = slices.DeleteFunc(common, func(l labels.Label) bool { return !slices.Contains(ls, l) })
	}
	if len(common) > 0 {
		return []string{common.String() + filter}
	}
	qs := make([]string, 0, len(t.streams))
	for _, s := range slices.Sorted(maps.Keys(t.streams)) {
		qs = append(qs, s+filter)
	}
	return qs
}

// found counts one line the query API returned to tenant.
func (v *verifier) found(line string, tenant int) {
	r := &v.report
	r.Entries++
	s, ok := FindLineID(line)
	if !ok {
		return
	}
	id, err := ParseLineID(s)
	if err != nil {
		return
	}
	b := v.bits(idKey{id.Run, id.Worker}, false)
	if b == nil || !b.acked.get(id.Seq) {
		if b != nil || slices.Contains(r.Runs, id.Run) {
			r.Unacked++
		}
		return
	}
	if b.ownerOf(id.Seq) != tenant {
		r.OtherTenant++
		return
	}
	if !b.seen.set(id.Seq) {
		r.Found++
		return
	}
	r.ExtraCopies++
	if !b.dup.set(id.Seq) {
		r.Duplicated++
		if len(r.DuplicateExamples) < v.cfg.Examples {
			r.DuplicateExamples = append(r.DuplicateExamples, id.String())
		}
	}
}

// examples reads the ack log again for the missing lines' streams and
// timestamps: the check kept a bit per line, not the lines.
func (v *verifier) examples() error {
	f, err := os.Open(v.cfg.AckLog)
	if err != nil {
		return err
	}
	defer f.Close()
	r := &v.report
	r.MissingByStream = map[string]int64{}
	reported := map[idKey]*bitset{}
	rd := NewAckReader(f)
	for {
		rec, ok := rd.Next()
		if !ok {
			break
		}
		b := v.bits(idKey{rec.Run, rec.Worker}, false)
		for i, ts := range rec.Timestamps {
			seq := rec.FirstSeq + uint64(i)
			if b.seen.get(seq) {
				continue
			}
			k := idKey{rec.Run, rec.Worker}
			rb := reported[k]
			if rb == nil {
				rb = &bitset{}
				reported[idKey{strings.Clone(rec.Run), rec.Worker}] = rb
			}
			if rb.set(seq) {
				continue // listed twice in the ack log
			}
			r.MissingByStream[rec.Tenant+" "+rec.Labels]++
			if len(r.MissingExamples) < v.cfg.Examples {
				r.MissingExamples = append(r.MissingExamples, MissingLine{
					ID: rec.ID(i), Tenant: rec.Tenant, Labels: rec.Labels, Timestamp: time.Unix(0, ts),
				})
			}
		}
	}
	return rd.Err()
}
