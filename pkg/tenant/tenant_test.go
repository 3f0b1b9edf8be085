package tenant

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lokilab/lokilab/internal/metricstest"
)

func TestValidateID(t *testing.T) {
	tests := []struct {
		id      string
		wantErr string
	}{
		{"fake", ""},
		{"team-a_prod.eu", ""},
		{"!-_.*'()", ""},
		{"A1", ""},
		{strings.Repeat("x", 150), ""},
		{"", "no org id"},
		{strings.Repeat("x", 151), "tenant ID is too long: max 150 characters"},
		{".", "tenant ID is '.' or '..'"},
		{"..", "tenant ID is '.' or '..'"},
		{"../x", "unsupported character '/'"},
		{"a/b", "unsupported character '/'"},
		{`a\b`, `unsupported character '\\'`},
		{"a\x00b", `unsupported character '\x00'`},
		{"a b", "unsupported character ' '"},
		{"a|b", "unsupported character '|'"},
		{"tenant:sub", "unsupported character ':'"},
		{"ünï", "unsupported character"},
		{"a\nb", `unsupported character '\n'`},
	}
	for _, tt := range tests {
		err := ValidateID(tt.id)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateID(%q) = %v, want nil", tt.id, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ValidateID(%q) = %v, want %q", tt.id, err, tt.wantErr)
		}
	}
}

func TestFromRequest(t *testing.T) {
	tests := []struct {
		name    string
		auth    bool
		header  string
		want    string
		wantErr error
	}{
		{"auth off ignores the header", false, "team-a", DefaultTenant, nil},
		{"auth off without header", false, "", DefaultTenant, nil},
		{"auth on with header", true, "team-a", "team-a", nil},
		{"auth on without header", true, "", "", ErrNoOrgID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", nil)
			if tt.header != "" {
				r.Header.Set(Header, tt.header)
			}
			got, err := FromRequest(r, tt.auth)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("got %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	r := httptest.NewRequest("POST", "/", nil)
	r.Header.Set(Header, "../etc")
	if _, err := FromRequest(r, true); err == nil || errors.Is(err, ErrNoOrgID) {
		t.Fatalf("a path-like tenant ID got through: %v", err)
	}
}

func TestDefaultLimitsAreLokis(t *testing.T) {
	l := DefaultLimits()
	checks := []struct {
		name      string
		got, want any
	}{
		{"ingestion_rate_strategy", l.IngestionRateStrategy, "global"},
		{"ingestion_rate_mb", l.IngestionRateMB, 4.0},
		{"ingestion_burst_size_mb", l.IngestionBurstSizeMB, 6.0},
		{"max_line_size", uint64(l.MaxLineSize), uint64(262144)},
		{"max_label_names_per_series", l.MaxLabelNamesPerSeries, 15},
		{"max_label_name_length", l.MaxLabelNameLength, 1024},
		{"max_label_value_length", l.MaxLabelValueLength, 2048},
		{"reject_old_samples", l.RejectOldSamples, true},
		{"reject_old_samples_max_age", time.Duration(l.RejectOldSamplesMaxAge), 7 * 24 * time.Hour},
		{"creation_grace_period", time.Duration(l.CreationGracePeriod), 10 * time.Minute},
		{"max_structured_metadata_size", uint64(l.MaxStructuredMetadataSize), uint64(65536)},
		{"max_structured_metadata_entries_count", l.MaxStructuredMetadataEntriesCount, 128},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want Loki's %v", c.name, c.got, c.want)
		}
	}
	if l.IngestionRateBytes() != 4<<20 || l.IngestionBurstBytes() != 6<<20 {
		t.Errorf("rate %v burst %d: MB must mean MiB, as in Loki", l.IngestionRateBytes(), l.IngestionBurstBytes())
	}
}

func writeOverrides(t *testing.T, path, content string) {
	t.Helper()
	// Write then rename, as config management does, so a reload never
	// reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestOverridesInheritDefaultsAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "overrides.yaml")
	writeOverrides(t, path, "overrides:\n  team-a:\n    ingestion_rate_mb: 1\n    max_line_size: 1KB\n")
	reg := prometheus.NewRegistry()
	o, err := NewOverrides(DefaultLimits(), RuntimeConfig{File: path, Period: time.Hour}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := o.For("team-a")
	if a.IngestionRateMB != 1 || a.MaxLineSize != 1024 {
		t.Fatalf("override not applied: %+v", a)
	}
	if a.IngestionBurstSizeMB != 6 || a.MaxLabelNamesPerSeries != 15 {
		t.Fatalf("fields the override omits must keep the defaults: %+v", a)
	}
	if b := o.For("team-b"); b.IngestionRateMB != 4 {
		t.Fatalf("tenant without override got %v", b.IngestionRateMB)
	}
	if metricstest.Value(t, reg, "loki_runtime_config_last_reload_successful") != 1 {
		t.Fatal("reload not reported successful")
	}

	// A broken file is reported and the previous overrides stay.
	writeOverrides(t, path, "overrides:\n  team-a:\n    ingestion_rate_mbb: 2\n")
	if err := o.Reload(); err == nil || !strings.Contains(err.Error(), "invalid override for tenant team-a") {
		t.Fatalf("Reload of a misspelt key = %v", err)
	}
	if o.For("team-a").IngestionRateMB != 1 {
		t.Fatal("a failed reload dropped the overrides in force")
	}
	if metricstest.Value(t, reg, "loki_runtime_config_last_reload_successful") != 0 {
		t.Fatal("failed reload not reported")
	}
	// The same broken file again: reported again, but parsed (and counted)
	// only once.
	if err := o.Reload(); err == nil {
		t.Fatal("an unchanged broken file reloaded successfully")
	}
	if n := metricstest.Value(t, reg, "lokilab_runtime_config_reloads_total", "result", "failure"); n != 1 {
		t.Fatalf("%v failed reloads counted for one broken file", n)
	}

	for _, bad := range []string{
		"overrides:\n  ../evil:\n    ingestion_rate_mb: 2\n",
		"overrides:\n  team-a:\n    ingestion_rate_strategy: sometimes\n",
		"overrides:\n  team-a:\n    ingestion_rate_mb: -1\n",
		"overides:\n  team-a: {}\n",
	} {
		writeOverrides(t, path, bad)
		if err := o.Reload(); err == nil {
			t.Errorf("Reload accepted %q", bad)
		}
	}

	writeOverrides(t, path, "overrides:\n  team-a:\n    ingestion_rate_mb: 2\n")
	if err := o.Reload(); err != nil {
		t.Fatal(err)
	}
	if o.For("team-a").IngestionRateMB != 2 || metricstest.Value(t, reg, "loki_runtime_config_last_reload_successful") != 1 {
		t.Fatal("good file after a bad one not applied")
	}
}

func TestOverridesRunPicksUpChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "overrides.yaml")
	writeOverrides(t, path, "overrides: {}\n")
	o, err := NewOverrides(DefaultLimits(), RuntimeConfig{File: path, Period: 10 * time.Millisecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- o.Run(ctx) }()
	defer func() { cancel(); <-done }()

	writeOverrides(t, path, "overrides:\n  team-a:\n    ingestion_rate_mb: 0.5\n")
	deadline := time.Now().Add(10 * time.Second)
	for o.For("team-a").IngestionRateMB != 0.5 {
		if time.Now().After(deadline) {
			t.Fatal("Run never applied the changed file")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewOverridesFailsOnMissingFile(t *testing.T) {
	_, err := NewOverrides(DefaultLimits(), RuntimeConfig{File: filepath.Join(t.TempDir(), "nope.yaml")}, nil, nil)
	if err == nil {
		t.Fatal("a missing overrides file at start must be an error")
	}
}

// staticLimits serves fixed limits per tenant.
type staticLimits map[string]*Limits

func (s staticLimits) For(tenant string) *Limits {
	if l, ok := s[tenant]; ok {
		return l
	}
	l := DefaultLimits()
	return &l
}

func limits(rateMB, burstMB float64, strategy string) *Limits {
	l := DefaultLimits()
	l.IngestionRateMB, l.IngestionBurstSizeMB, l.IngestionRateStrategy = rateMB, burstMB, strategy
	return &l
}

func TestRateLimiterLocal(t *testing.T) {
	const mb = BytesInMB
	rl := NewRateLimiter(staticLimits{"a": limits(1, 2, LocalStrategy)}, StaticDistributors(3), nil)
	t0 := time.Unix(1000, 0)
	if !rl.AllowN(t0, "a", 2*mb) {
		t.Fatal("a push of exactly the burst must pass on a full bucket")
	}
	if rl.AllowN(t0, "a", 1) {
		t.Fatal("empty bucket admitted a byte")
	}
	if !rl.AllowN(t0.Add(time.Second), "a", mb) {
		t.Fatal("one second refills the rate")
	}
	if rl.AllowN(t0.Add(10*time.Second), "a", 2*mb+1) {
		t.Fatal("a push larger than the burst must never pass")
	}
	if r, b := rl.Limit("a"); r != mb || b != 2*mb {
		t.Fatalf("local limit = %v/%d; the distributor count must not matter", r, b)
	}
}

func TestRateLimiterGlobalDividesRateNotBurst(t *testing.T) {
	const mb = BytesInMB
	dist := &countingDistributors{n: 4}
	rl := NewRateLimiter(staticLimits{"a": limits(4, 6, GlobalStrategy)}, dist, nil)
	if r, b := rl.Limit("a"); r != mb || b != 6*mb {
		t.Fatalf("global with 4 distributors: rate %v burst %d, want %d and %d", r, b, mb, 6*mb)
	}
	t0 := time.Unix(1000, 0)
	if !rl.AllowN(t0, "a", 6*mb) {
		t.Fatal("the burst is not divided")
	}
	if rl.AllowN(t0.Add(time.Second), "a", 2*mb) {
		t.Fatal("after 1s at 1MiB/s only 1MiB is available")
	}
	// Two distributors leave: each remaining one takes a larger share at
	// once.
	dist.set(2)
	if r, _ := rl.Limit("a"); r != 2*mb {
		t.Fatalf("rate with 2 distributors = %v", r)
	}
	if !rl.AllowN(t0.Add(2*time.Second), "a", 2*mb) {
		t.Fatal("the new share did not apply")
	}
}

type countingDistributors struct {
	mu sync.Mutex
	n  int
}

func (c *countingDistributors) HealthyDistributors() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *countingDistributors) set(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n = n
}

func TestRateLimiterFollowsLimitChanges(t *testing.T) {
	const mb = BytesInMB
	lims := staticLimits{"a": limits(1, 4, LocalStrategy)}
	rl := NewRateLimiter(lims, StaticDistributors(1), nil)
	t0 := time.Unix(1000, 0)
	if !rl.AllowN(t0, "a", 4*mb) {
		t.Fatal("full bucket refused its burst")
	}
	// The overrides raise the rate to 4 MiB/s; the next push, at t0+1s,
	// sees it. Tokens earned until then accrue at the old rate (1 MiB, which
	// that push takes), after it at the new one: at t0+1.5s there are 2 MiB.
	// At the old rate there would be 0.5 MiB.
	lims["a"] = limits(4, 4, LocalStrategy)
	if !rl.AllowN(t0.Add(time.Second), "a", mb) {
		t.Fatal("1 MiB refused after 1s at 1 MiB/s")
	}
	if !rl.AllowN(t0.Add(1500*time.Millisecond), "a", 2*mb) {
		t.Fatal("the raised rate did not apply without a restart")
	}
	if rl.AllowN(t0.Add(1500*time.Millisecond), "a", 1) {
		t.Fatal("more than the new rate was admitted")
	}
}

func TestRateLimiterSweepDropsOnlyFullBuckets(t *testing.T) {
	rl := NewRateLimiter(staticLimits{}, StaticDistributors(1), nil) // 4 MiB/s, 6 MiB burst
	t0 := time.Unix(1000, 0)
	rl.AllowN(t0, "idle", 1)
	rl.AllowN(t0, "busy", 6*BytesInMB)
	if n := rl.sweep(t0); n != 0 {
		t.Fatalf("swept %d buckets that had not refilled", n)
	}
	// 1ms later the idle bucket has its byte back; the busy one needs 1.5s.
	if n := rl.sweep(t0.Add(time.Millisecond)); n != 1 || rl.Tenants() != 1 {
		t.Fatalf("sweep removed %d, %d left; want only the refilled bucket removed", n, rl.Tenants())
	}
	if rl.AllowN(t0.Add(time.Second), "busy", 6*BytesInMB) {
		t.Fatal("the busy bucket was reset by the sweep")
	}
	// A swept tenant starts again with a full bucket: the same decision as
	// if its bucket had been kept.
	if !rl.AllowN(t0.Add(time.Second), "idle", 6*BytesInMB) {
		t.Fatal("a swept tenant did not get a full bucket")
	}
}

// TestRateLimiterStaleBucket: a caller that looked a bucket up just before
// the sweep removed it must not take tokens from it (the tenant's new bucket
// would hand out a second burst); AllowN looks the bucket up again.
func TestRateLimiterStaleBucket(t *testing.T) {
	rl := NewRateLimiter(staticLimits{"a": limits(0, 1, LocalStrategy)}, StaticDistributors(1), nil)
	t0 := time.Unix(1000, 0)
	b := rl.bucket("a") // a push looks up the full bucket...
	if rl.sweep(t0) != 1 {
		t.Fatal("the full bucket was not swept")
	}
	// ...and only then takes tokens from it.
	if ok, stale := b.take(t0, 0, BytesInMB, 1024); !stale || ok {
		t.Fatalf("take on a swept bucket = ok %v stale %v, want it reported stale", ok, stale)
	}
	// AllowN goes to the live bucket; across both, one burst in total.
	admitted := 0
	for rl.AllowN(t0, "a", 1024) {
		admitted++
	}
	if admitted != 1024 {
		t.Fatalf("admitted %d KiB with a 1 MiB burst and no rate, want 1024", admitted)
	}
}

func TestRateLimiterConcurrentAdmitsNoMoreThanBurst(t *testing.T) {
	rl := NewRateLimiter(staticLimits{"a": limits(0, 1, LocalStrategy)}, StaticDistributors(1), nil)
	t0 := time.Unix(1000, 0)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		admitted int
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				if rl.AllowN(t0, "a", 1024) {
					mu.Lock()
					admitted++
					mu.Unlock()
				}
				rl.sweep(t0)
			}
		}()
	}
	wg.Wait()
	// Rate 0: only the burst (1 MiB = 1024 pushes of 1 KiB) can ever pass,
	// sweeps or not.
	if admitted != 1024 {
		t.Fatalf("admitted %d pushes of 1KiB with a 1MiB burst and no rate, want exactly 1024", admitted)
	}
}
