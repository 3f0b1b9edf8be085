package index

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/thanos-io/objstore"
	"golang.org/x/sync/errgroup"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/tenant"
)

const (
	nsPerDay = 24 * 60 * 60 * 1_000_000_000

	// keyPrefix is the root of all index segments in the bucket.
	keyPrefix = "index/"
	// keySuffix ends every segment key; other objects under a tenant's day
	// are ignored.
	keySuffix = ".idx"

	// maxChunkDays bounds how many days one chunk ref may span. Chunks are
	// cut after max_chunk_age (2h by default), so a ref spanning weeks is
	// a bug upstream; refusing it keeps one Write from fanning out into
	// thousands of segments.
	maxChunkDays = 31

	// fetchConcurrency is how many listings or downloads Segments runs at
	// once: a day of an uncompacted tenant can hold hundreds of small
	// segments, and one GET at a time would make the query wait for each
	// round trip.
	fetchConcurrency = 16

	// relistAttempts is how often Segments lists and reads again when a
	// listed segment vanished (the compactor replaced it) before it was read.
	relistAttempts = 3

	// listDaysOver is the number of days in a query range above which
	// Segments lists the index's days once instead of listing every day of
	// the range. A query of max_query_length (721h) touches at most 32
	// calendar days, so ordinary queries never pay for the extra listing.
	listDaysOver = 32
)

// DayOf returns the day of a Unix nanosecond timestamp: whole days since
// the epoch, UTC (negative before 1970).
func DayOf(ts int64) int { return int(floorDiv(ts, nsPerDay)) }

// DayBounds returns the first and the last nanosecond of day, the range of
// timestamps t with DayOf(t) == day.
func DayBounds(day int) (from, through int64) {
	from = int64(day) * nsPerDay
	return from, from + nsPerDay - 1
}

// SegmentKey returns the object key of a segment:
//
//	index/<day>/<tenant>/<name>.idx
//
// with day in decimal. The tenant and name are not validated here; Client
// validates both before building a key.
func SegmentKey(day int, tenantID, name string) string {
	return dayPrefix(day) + tenantID + "/" + name + keySuffix
}

func dayPrefix(day int) string { return keyPrefix + strconv.Itoa(day) + "/" }

// Client reads and writes the segments of a bucket. It holds no state
// besides the bucket and, optionally, a cache of decoded segments, and is
// safe for concurrent use.
type Client struct {
	bkt   objstore.Bucket
	cache *SegmentCache // nil: every read downloads and decodes
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithSegmentCache makes Segments keep decoded segments in cache and read
// from the bucket only those it has not seen. The cache may be shared by
// the clients of one bucket; nil leaves caching off. Writers and the
// compactor have no use for it: they read each segment about once.
func WithSegmentCache(cache *SegmentCache) ClientOption {
	return func(c *Client) { c.cache = cache }
}

// NewClient returns a client for the index in bkt. Instrumentation and
// fault injection belong to the bucket (pkg/storage wraps it).
func NewClient(bkt objstore.Bucket, opts ...ClientOption) *Client {
	c := &Client{bkt: bkt}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Write uploads the index of series for tenant: one segment per UTC day
// that any chunk's [From, Through] overlaps, each holding the chunk refs
// that overlap that day, under SegmentKey(day, tenant, name). It returns the
// keys written, in day order, also on error (those segments are complete).
//
// The caller picks a name no other writer uses, such as
// "<ingester>-<unix ms>-<seq>"; it follows the tenant ID character rules.
//
// A name must never be written twice with different content, not even
// after it was deleted: readers cache decoded segments by key (see
// SegmentCache) and never fetch a key they hold again, so a rewrite would
// go unseen — a query would keep answering from the old content, or miss
// chunks only the new one references. Retry a failed Write under a new
// name (the keys it did write hold complete segments, whose refs the new
// write repeats and readers deduplicate); writing the same series under
// the same name again is harmless but gains nothing. Series without chunks
// write nothing.
func (c *Client) Write(ctx context.Context, tenantID, name string, series []Series) ([]string, error) {
	if err := validateKeyParts(tenantID, name); err != nil {
		return nil, err
	}
	// Validate everything before the first upload, so that bad input
	// leaves no partial write behind.
	var days []int
	for _, s := range series {
		if err := validateSeries(s); err != nil {
			return nil, fmt.Errorf("index: write %s/%s: %w", tenantID, name, err)
		}
		for _, r := range s.Chunks {
			first, last := DayOf(r.From), DayOf(r.Through)
			if last-first >= maxChunkDays {
				return nil, fmt.Errorf("index: write %s/%s: series %s: chunk [%d, %d] spans %d days, more than %d", tenantID, name, s.Labels, r.From, r.Through, last-first+1, maxChunkDays)
			}
			for d := first; d <= last; d++ {
				days = append(days, d)
			}
		}
	}
	slices.Sort(days)
	days = slices.Compact(days)

	var keys []string
	for _, day := range days {
		daySeries := series
		if len(days) > 1 {
			daySeries = seriesOfDay(series, day)
		}
		key, err := c.WriteSegment(ctx, day, tenantID, name, daySeries)
		if err != nil {
			return keys, err
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// seriesOfDay returns the series with only their chunks that overlap day,
// dropping series left without chunks.
func seriesOfDay(series []Series, day int) []Series {
	from, through := DayBounds(day)
	out := make([]Series, 0, len(series))
	for _, s := range series {
		var keep []ChunkRef
		for _, r := range s.Chunks {
			if r.From <= through && r.Through >= from {
				keep = append(keep, r)
			}
		}
		if len(keep) > 0 {
			out = append(out, Series{Labels: s.Labels, Chunks: keep})
		}
	}
	return out
}

// WriteSegment encodes series and uploads them as one segment of day, as
// they are: unlike Write, it does not split by day. The compactor uses it to
// write a merged day. It returns the key written. Names follow Write's
// rule: never the same name twice with different content.
func (c *Client) WriteSegment(ctx context.Context, day int, tenantID, name string, series []Series) (string, error) {
	if err := validateKeyParts(tenantID, name); err != nil {
		return "", err
	}
	key := SegmentKey(day, tenantID, name)
	b, err := encode(series)
	if err != nil {
		return "", fmt.Errorf("index: write %s: %w", key, err)
	}
	if err := c.bkt.Upload(ctx, key, bytes.NewReader(b)); err != nil {
		return "", fmt.Errorf("index: write %s: %w", key, err)
	}
	return key, nil
}

// Segments downloads and decodes every segment of tenant for the days
// overlapping [from, through], and returns them with their keys: days
// ascending, keys sorted within a day. An empty range (from > through) has
// no segments.
//
// The compactor replaces a day's segments by writing the merged one before
// deleting the inputs. If a segment listed here is gone when it is read,
// the days are listed and read again, so the result holds either the inputs
// or the merged segment, never neither.
//
// With a SegmentCache (WithSegmentCache), the days are still listed on
// every call — the listing is what tells which segments exist now — but
// only the listed segments the cache does not hold are downloaded. The
// returned segments may be shared with other callers: they are read-only.
func (c *Client) Segments(ctx context.Context, tenantID string, from, through int64) ([]*Segment, []string, error) {
	if err := tenant.ValidateID(tenantID); err != nil {
		return nil, nil, fmt.Errorf("index: read: %w", err)
	}
	if from > through {
		return nil, nil, nil
	}
	days, err := c.daysIn(ctx, from, through)
	if err != nil {
		return nil, nil, err
	}
	// Segments already read are kept across attempts: a listing again
	// downloads only what is new in it (the merged segment), so a day that
	// holds hundreds of segments does not have to be read whole, again,
	// while the compactor keeps replacing it under a heavy write load.
	have := make(map[string]*Segment)
	for attempt := 1; ; attempt++ {
		segs, keys, err := c.read(ctx, tenantID, days, have)
		var gone *goneError
		if err == nil || !errors.As(err, &gone) || attempt == relistAttempts {
			return segs, keys, err
		}
	}
}

// daysIn returns the days of [from, through] to look at. A range of more
// than listDaysOver days is matched against the days the index has (one
// listing of index/) instead of listing each of its days: a query over all
// time must not list a hundred thousand empty prefixes.
func (c *Client) daysIn(ctx context.Context, from, through int64) ([]int, error) {
	first, last := DayOf(from), DayOf(through)
	if last-first < listDaysOver {
		days := make([]int, 0, last-first+1)
		for d := first; d <= last; d++ {
			days = append(days, d)
		}
		return days, nil
	}
	all, err := c.Days(ctx)
	if err != nil {
		return nil, err
	}
	lo, _ := slices.BinarySearch(all, first)
	hi, found := slices.BinarySearch(all, last)
	if found {
		hi++
	}
	return all[lo:hi], nil
}

// read lists the tenant's segments of days, then downloads and decodes those
// neither in have nor in the cache, fetchConcurrency requests at a time,
// adding them to have and the cache. It returns the segments of this listing
// only: one read before but no longer listed was replaced by a merged
// segment that is.
//
// The cache is asked only for keys of this listing. That is what keeps a
// deleted segment from being served; the listing also drops the cached
// segments of its directory that it no longer holds (SegmentCache.retain).
// (have needs no such care: it lives for one call.)
func (c *Client) read(ctx context.Context, tenantID string, days []int, have map[string]*Segment) ([]*Segment, []string, error) {
	perDay := make([][]string, len(days))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fetchConcurrency)
	for i, day := range days {
		g.Go(func() error {
			dir := dayPrefix(day) + tenantID + "/"
			err := c.bkt.Iter(gctx, dir, func(key string) error {
				if strings.HasSuffix(key, keySuffix) {
					perDay[i] = append(perDay[i], key)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("index: list %s: %w", dir, err)
			}
			slices.Sort(perDay[i])
			c.cache.retain(dir, perDay[i])
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}

	keys := slices.Concat(perDay...)
	segs := make([]*Segment, len(keys))
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(fetchConcurrency)
	for i, key := range keys {
		if seg, ok := have[key]; ok {
			segs[i] = seg
			continue
		}
		if seg, ok := c.cache.get(key); ok {
			segs[i] = seg
			continue
		}
		g.Go(func() error {
			seg, size, err := c.readSegment(gctx, key)
			if err != nil {
				return err
			}
			// Cached as soon as decoded, even if another read of this
			// listing fails: the segment is valid whatever happens to
			// the rest, and the retry will want it.
			c.cache.put(key, seg, size)
			segs[i] = seg
			return nil
		})
	}
	err := g.Wait()
	for i, key := range keys {
		if segs[i] != nil {
			have[key] = segs[i]
		}
	}
	if err != nil {
		return nil, nil, err
	}
	return segs, keys, nil
}

// goneError is a segment that was listed but deleted before it was read.
type goneError struct {
	key string
	err error
}

func (e *goneError) Error() string {
	return fmt.Sprintf("index: read %s: deleted after it was listed: %v", e.key, e.err)
}

func (e *goneError) Unwrap() error { return e.err }

// readSegment downloads and decodes the segment at key, and returns it with
// its encoded size (the SegmentCache's cost).
func (c *Client) readSegment(ctx context.Context, key string) (*Segment, int64, error) {
	rc, err := c.bkt.Get(ctx, key)
	if err != nil {
		// Providers recognise their own error values only unwrapped.
		if c.bkt.IsObjNotFoundErr(err) {
			return nil, 0, &goneError{key: key, err: err}
		}
		return nil, 0, fmt.Errorf("index: read %s: %w", key, err)
	}
	defer rc.Close()
	// One byte past the maximum tells "too large" from "exactly the maximum"
	// without reading an unbounded object into memory.
	b, err := io.ReadAll(io.LimitReader(rc, MaxSegmentSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("index: read %s: %w", key, err)
	}
	seg, err := Decode(b)
	if err != nil {
		return nil, 0, fmt.Errorf("index: read %s: %w", key, err)
	}
	return seg, int64(len(b)), nil
}

// Series returns tenant's series that match ms with their chunks that
// overlap [from, through], from every segment of the days the range
// overlaps, merged: sorted by labels, identical chunk refs (written by
// replays, re-flushes, or to both days of a chunk crossing midnight) once.
func (c *Client) Series(ctx context.Context, tenantID string, from, through int64, ms ...*labels.Matcher) ([]Series, error) {
	segs, _, err := c.Segments(ctx, tenantID, from, through)
	if err != nil {
		return nil, err
	}
	var all []Series
	for _, s := range segs {
		all = append(all, s.Series(from, through, ms...)...)
	}
	return normalize(all), nil
}

// Tenants returns the tenants with segments on day, sorted. Directories
// whose name is not a valid tenant ID were not written by Client and are
// skipped.
func (c *Client) Tenants(ctx context.Context, day int) ([]string, error) {
	dir := dayPrefix(day)
	var tenants []string
	err := c.bkt.Iter(ctx, dir, func(key string) error {
		id, ok := strings.CutSuffix(strings.TrimPrefix(key, dir), "/")
		if ok && tenant.ValidateID(id) == nil {
			tenants = append(tenants, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index: list %s: %w", dir, err)
	}
	slices.Sort(tenants)
	return tenants, nil
}

// Days returns the days that have segments, ascending; with Tenants, the
// compactor's and retention's way to walk the index.
func (c *Client) Days(ctx context.Context) ([]int, error) {
	var days []int
	err := c.bkt.Iter(ctx, keyPrefix, func(key string) error {
		s, ok := strings.CutSuffix(strings.TrimPrefix(key, keyPrefix), "/")
		if !ok {
			return nil
		}
		if d, err := strconv.Atoi(s); err == nil && strconv.Itoa(d) == s {
			days = append(days, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index: list %s: %w", keyPrefix, err)
	}
	slices.Sort(days)
	return days, nil
}

// validateKeyParts checks the tenant ID and the segment name before they
// become part of a key: a tenant "../b" or a name "x/../../y" must never
// address another tenant's objects. Names follow the tenant ID rules, which
// exclude every path and control character.
func validateKeyParts(tenantID, name string) error {
	if err := tenant.ValidateID(tenantID); err != nil {
		return fmt.Errorf("index: write: %w", err)
	}
	if tenant.ValidateID(name) != nil {
		return fmt.Errorf("index: write: segment name %q: want 1 to %d characters of [a-zA-Z0-9!-_.*'()], not '.' or '..'", name, tenant.MaxIDLength)
	}
	return nil
}
