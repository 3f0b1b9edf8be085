package compactor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/pkg/index"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// Retention is mark, then sweep:
//
//  1. Mark. While compacting a tenant-day, chunk refs past their retention
//     are left out of the merged segment, so queries stop seeing them at
//     once. Before that segment is written, a marker object listing the
//     expired chunks' keys is written: nothing expired is ever forgotten,
//     whatever is interrupted.
//  2. Sweep. Once a marker is older than retention_delete_delay, its chunks
//     are deleted — each only if no index segment references it any more
//     (an interrupted compaction may have left an input segment that still
//     does; that chunk waits for the next sweep). The delay lets queries
//     that read the old index before the mark finish reading the chunks.
//
// Markers live at retention/markers/<tenant>/<unix ms>-<day>.json.
const markerPrefix = "retention/markers/"

type marker struct {
	Tenant string   `json:"tenant"`
	Day    int      `json:"day"`
	Chunks []string `json:"chunks"`
}

// retentionRules is one tenant's retention, parsed.
type retentionRules struct {
	period time.Duration
	rules  []streamRule
}

type streamRule struct {
	matchers []*labels.Matcher
	priority int
	period   time.Duration
}

func rulesFor(l *tenant.Limits) (retentionRules, error) {
	rr := retentionRules{period: time.Duration(l.RetentionPeriod)}
	for _, r := range l.RetentionStream {
		ms, err := labels.ParseMatchers(r.Selector)
		if err != nil {
			return rr, fmt.Errorf("retention_stream selector %q: %w", r.Selector, err)
		}
		rr.rules = append(rr.rules, streamRule{matchers: ms, priority: r.Priority, period: time.Duration(r.Period)})
	}
	return rr, nil
}

// periodFor is the retention of a stream: the matching rule with the
// highest priority (the shorter period on a tie), else the tenant's period.
// 0 means keep forever.
func (rr retentionRules) periodFor(ls labels.Labels) time.Duration {
	best, found := streamRule{}, false
	for _, r := range rr.rules {
		if !ls.Matches(r.matchers...) {
			continue
		}
		if !found || r.priority > best.priority || r.priority == best.priority && r.period < best.period {
			best, found = r, true
		}
	}
	if found {
		return best.period
	}
	return rr.period
}

// expire splits series into what is kept and the keys of expired chunks.
func (rr retentionRules) expire(tenantID string, series []index.Series, now time.Time) (kept []index.Series, expired []string) {
	for _, s := range series {
		period := rr.periodFor(s.Labels)
		if period <= 0 {
			kept = append(kept, s)
			continue
		}
		cutoff := now.Add(-period).UnixNano()
		var refs []index.ChunkRef
		for _, r := range s.Chunks {
			if r.Through < cutoff {
				expired = append(expired, r.Key(tenantID))
				continue
			}
			refs = append(refs, r)
		}
		if len(refs) > 0 {
			kept = append(kept, index.Series{Labels: s.Labels, Chunks: refs})
		}
	}
	return kept, expired
}

func (c *Compactor) writeMarker(ctx context.Context, m marker) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	key := markerPrefix + m.Tenant + "/" + strconv.FormatInt(c.now().UnixMilli(), 10) + "-" + strconv.Itoa(m.Day) + ".json"
	if err := c.bkt.Upload(ctx, key, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("compactor: writing retention marker %s: %w", key, err)
	}
	c.chunksMarked.Add(float64(len(m.Chunks)))
	return nil
}

// Sweep deletes the chunks of markers older than the deletion delay that
// no index segment references any more.
func (c *Compactor) Sweep(ctx context.Context) error {
	var keys []string
	if err := c.bkt.Iter(ctx, markerPrefix, func(k string) error {
		keys = append(keys, k)
		return nil
	}, objstoreRecursive()...); err != nil {
		return fmt.Errorf("compactor: listing retention markers: %w", err)
	}
	var errs []error
	for _, k := range keys {
		ms, err := strconv.ParseInt(strings.SplitN(path.Base(k), "-", 2)[0], 10, 64)
		if err != nil {
			c.logger.Warn("ignoring a retention marker with an unexpected name", "key", k)
			continue
		}
		if c.now().Sub(time.UnixMilli(ms)) < c.cfg.RetentionDeleteDelay {
			continue
		}
		if err := c.sweepMarker(ctx, k); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *Compactor) sweepMarker(ctx context.Context, key string) error {
	rc, err := c.bkt.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("compactor: reading marker %s: %w", key, err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("compactor: reading marker %s: %w", key, err)
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("compactor: marker %s: %w", key, err)
	}
	var left []string
	for _, ck := range m.Chunks {
		ref, err := c.referenced(ctx, m.Tenant, ck)
		if err != nil {
			return err
		}
		if ref {
			left = append(left, ck) // an input segment still points at it
			continue
		}
		attrs, aerr := c.bkt.Attributes(ctx, ck)
		if err := c.bkt.Delete(ctx, ck); err != nil && !c.bkt.IsObjNotFoundErr(err) {
			return fmt.Errorf("compactor: deleting expired chunk %s: %w", ck, err)
		}
		c.chunksDeleted.Inc()
		if aerr == nil {
			c.bytesReclaimed.Add(float64(attrs.Size))
		}
	}
	if len(left) > 0 {
		m.Chunks = left
		b, _ := json.Marshal(m)
		return c.bkt.Upload(ctx, key, bytes.NewReader(b))
	}
	return c.bkt.Delete(ctx, key)
}

// referenced reports whether any index segment of the tenant still points
// at the chunk.
func (c *Compactor) referenced(ctx context.Context, tenantID, chunkKey string) (bool, error) {
	_, ref, err := index.ParseChunkKey(chunkKey)
	if err != nil {
		return false, fmt.Errorf("compactor: marker lists %q: %w", chunkKey, err)
	}
	// The key keeps milliseconds; widen to the whole milliseconds.
	from, through := ref.From, ref.Through+int64(time.Millisecond)-1
	series, err := c.index.Series(ctx, tenantID, from, through)
	if err != nil {
		return false, err
	}
	for _, s := range series {
		for _, r := range s.Chunks {
			if r.Key(tenantID) == chunkKey {
				return true, nil
			}
		}
	}
	return false, nil
}

func objstoreRecursive() []objstore.IterOption {
	return []objstore.IterOption{objstore.WithRecursiveIter()}
}
