package scenario

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/index"
	"github.com/lokilab/lokilab/pkg/lokiclient"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/storage"
)

// storeKit is what the storage scenarios (tenants, retention, chunk-cost)
// share: pushing as a tenant, forcing flushes, reading the object store
// directly and querying as a tenant. It talks to the system only through
// its public surfaces — the push and query API, the ingesters' /flush and
// the object store — so what it sees is what a user would.
type storeKit struct {
	sys    *System
	client *http.Client
	bkt    objstore.Bucket
}

// newStoreKit opens the system's object store read-side, with no metrics:
// the scenario's own listing must not count in the components' GET/LIST
// figures.
func newStoreKit(sys *System) (*storeKit, error) {
	bkt, err := storage.NewBucket(sys.Config.Storage, "scenario", nil, nil)
	if err != nil {
		return nil, fmt.Errorf("opening the object store: %w", err)
	}
	return &storeKit{sys: sys, client: &http.Client{Timeout: 30 * time.Second}, bkt: bkt}, nil
}

func (k *storeKit) Close() error { return k.bkt.Close() }

// pushAs pushes req as orgID (protobuf+snappy, as Loki's clients do) and
// returns the HTTP status and the answer's text.
func (k *storeKit) pushAs(ctx context.Context, orgID string, req *push.Request) (int, string, error) {
	body := push.EncodeSnappyProto(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, k.sys.API+"/loki/api/v1/push", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	if orgID != "" {
		hreq.Header.Set("X-Scope-OrgID", orgID)
	}
	resp, err := k.client.Do(hreq)
	if err != nil {
		return 0, "", fmt.Errorf("push as %q: %w", orgID, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return resp.StatusCode, strings.TrimSpace(string(msg)), nil
}

// pushAll pushes req as orgID and wants 204.
func (k *storeKit) pushAll(ctx context.Context, orgID string, req *push.Request) error {
	code, msg, err := k.pushAs(ctx, orgID, req)
	if err != nil {
		return err
	}
	if code != http.StatusNoContent {
		return fmt.Errorf("push as %q: HTTP %d: %s", orgID, code, msg)
	}
	return nil
}

// flushIngesters forces every ingester to cut, upload and index all its
// chunks (POST /flush answers once they are durable and committed).
func (k *storeKit) flushIngesters(ctx context.Context) error {
	var errs []error
	for _, in := range k.sys.Ingesters {
		errs = append(errs, k.sys.post(ctx, in.URL+"/flush", "", nil, http.StatusNoContent))
	}
	return errors.Join(errs...)
}

// waitConsumed polls the ingesters until together they have appended want
// entries more than base (lokilab_ingester_entries_appended_total): a push
// answered 204 is in Kafka, not yet necessarily in an ingester, and a flush
// before the ingester read it would leave it behind.
func (k *storeKit) waitConsumed(ctx context.Context, base, want float64, timeout time.Duration) (float64, error) {
	deadline := time.Now().Add(timeout)
	for {
		n, err := k.appended(ctx)
		if err != nil {
			return n, err
		}
		if n-base >= want {
			return n, nil
		}
		if time.Now().After(deadline) {
			return n, fmt.Errorf("ingesters appended %g of %g entries within %s", n-base, want, timeout)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return n, err
		}
	}
}

// appended is the entries every ingester has appended so far.
func (k *storeKit) appended(ctx context.Context) (float64, error) {
	sum := 0.0
	for _, in := range k.sys.Ingesters {
		v, err := ScrapeSum(ctx, k.client, in.URL+"/metrics", "lokilab_ingester_entries_appended_total", nil)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// scrapeIngesters sums a metric over every ingester's /metrics.
func (k *storeKit) scrapeIngesters(ctx context.Context, name string, lbls map[string]string) (float64, error) {
	sum := 0.0
	for _, in := range k.sys.Ingesters {
		v, err := ScrapeSum(ctx, k.client, in.URL+"/metrics", name, lbls)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// scrapeAPI reads a metric from the API port (distributor, querier,
// compactor).
func (k *storeKit) scrapeAPI(ctx context.Context, name string, lbls map[string]string) (float64, error) {
	return ScrapeSum(ctx, k.client, k.sys.API+"/metrics", name, lbls)
}

// storeObject is one object in the store.
type storeObject struct {
	Key  string
	Size int64
}

// list returns every object in the store, sorted by key. It lists through
// the same objstore API the components use, so it works for S3 too.
func (k *storeKit) list(ctx context.Context) ([]storeObject, error) {
	var keys []string
	if err := k.bkt.Iter(ctx, "", func(key string) error {
		keys = append(keys, key)
		return nil
	}, objstore.WithRecursiveIter()); err != nil {
		return nil, fmt.Errorf("listing the store: %w", err)
	}
	sort.Strings(keys)
	out := make([]storeObject, 0, len(keys))
	for _, key := range keys {
		a, err := k.bkt.Attributes(ctx, key)
		if k.bkt.IsObjNotFoundErr(err) {
			continue // deleted between the listing and now (compaction)
		}
		if err != nil {
			return nil, fmt.Errorf("attributes of %s: %w", key, err)
		}
		out = append(out, storeObject{Key: key, Size: a.Size})
	}
	return out, nil
}

// chunkLines decodes the chunk object at key and returns its lines.
func (k *storeKit) chunkLines(ctx context.Context, key string) ([]string, *chunk.Chunk, int, error) {
	rc, err := k.bkt.Get(ctx, key)
	if err != nil {
		return nil, nil, 0, err
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, nil, 0, err
	}
	c, err := chunk.Decode(raw)
	if err != nil {
		return nil, nil, len(raw), fmt.Errorf("decoding %s: %w", key, err)
	}
	it := c.Iterator(math.MinInt64, math.MaxInt64, chunk.Forward)
	defer it.Close()
	var lines []string
	for it.Next() {
		lines = append(lines, strings.Clone(it.At().Line))
	}
	return lines, c, len(raw), it.Err()
}

// isChunkKey says whether key is a chunk object of tenantID
// (<tenant>/chunks/<fingerprint>/<from>-<through>-<checksum>).
func isChunkKey(key, tenantID string) bool {
	t, _, err := index.ParseChunkKey(key)
	return err == nil && t == tenantID
}

// tenantLines is what a query as orgID returned: lines with their copies,
// and for multi-tenant answers the tenant each line was labelled with.
type tenantLines struct {
	copies   map[string]int
	byTenant map[string]string // line → __tenant_id__ label ("" without)
	total    int
}

// queryAs reads every line of query in [from, to) as orgID, paging through
// the query API as lokilab verify does.
func (k *storeKit) queryAs(ctx context.Context, orgID, query string, from, to time.Time) (tenantLines, error) {
	out := tenantLines{copies: map[string]int{}, byTenant: map[string]string{}}
	c := lokiclient.New(k.sys.API, lokiclient.WithTenant(orgID), lokiclient.WithHTTPClient(k.client))
	err := c.AllLogs(ctx, query, from, to, 1000, func(ss []lokiclient.Stream) error {
		for _, s := range ss {
			for _, e := range s.Entries {
				out.copies[e.Line]++
				out.byTenant[e.Line] = s.Labels["__tenant_id__"]
				out.total++
			}
		}
		return nil
	})
	return out, err
}

// apiStatus is the HTTP status of a failed query, 200 for none.
func apiStatus(err error) int {
	var ae *lokiclient.APIError
	if errors.As(err, &ae) {
		return ae.StatusCode
	}
	if err == nil {
		return http.StatusOK
	}
	return 0
}

// writeOverrides writes a runtime overrides file into the data directory
// and points cfg at it. A failure shows as the system refusing to start.
func writeOverrides(dataDir, yaml string) string {
	path := filepath.Join(dataDir, "overrides.yaml")
	_ = os.MkdirAll(dataDir, 0o755)
	_ = os.WriteFile(path, []byte(yaml), 0o644)
	return path
}

// byPrefix groups objects by their first key segment, or for index
// segments by index/<day>/<tenant>.
func byPrefix(objs []storeObject) (keys []string, count map[string]int, size map[string]int64) {
	count, size = map[string]int{}, map[string]int64{}
	for _, o := range objs {
		parts := strings.SplitN(o.Key, "/", 4)
		p := parts[0] + "/"
		switch {
		case parts[0] == "index" && len(parts) >= 3:
			p = "index/<day>/" + parts[2] + "/"
		case len(parts) >= 2 && parts[1] == "chunks":
			p = parts[0] + "/chunks/"
		case parts[0] == "retention" && len(parts) >= 3:
			p = "retention/" + parts[1] + "/"
		}
		if _, ok := count[p]; !ok {
			keys = append(keys, p)
		}
		count[p]++
		size[p] += o.Size
	}
	slices.Sort(keys)
	return keys, count, size
}
