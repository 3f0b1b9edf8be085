package logql

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestBlockFilter: a block may be skipped only when it lacks a substring
// that every kept line must contain; filters that cannot say so give no
// block filter at all.
func TestBlockFilter(t *testing.T) {
	for _, tc := range []struct {
		query    string
		keep     []string // blocks that must be read
		skip     []string // blocks that may be skipped
		noFilter bool
	}{
		{query: `{a="b"}`, noFilter: true},
		{query: `{a="b"} != "debug"`, noFilter: true},
		{query: `{a="b"} |~ "err.*"`, noFilter: true},
		{query: `{a="b"} |= ""`, noFilter: true},
		{query: `{a="b"} | line_format "{{.a}}" |= "x"`, noFilter: true},
		{query: `{a="b"} |= "err"`, keep: []string{"\x01xx err yy\x00", "error"}, skip: []string{"e r r", ""}},
		{query: `{a="b"} |= "err" != "debug" |= "code=5"`, keep: []string{"err\x05code=5"}, skip: []string{"err only", "code=5 only"}},
		{query: `{a="b"} |= "x" | line_format "{{.a}}" |= "y"`, keep: []string{"x"}, skip: []string{"y"}},
	} {
		lq, err := ParseLogQuery(tc.query)
		if err != nil {
			t.Fatal(err)
		}
		f := lq.BlockFilter()
		if f == nil {
			if !tc.noFilter {
				t.Errorf("%s: no block filter", tc.query)
			}
			continue
		}
		if tc.noFilter {
			t.Errorf("%s: a block filter where none can be sound", tc.query)
			continue
		}
		for _, b := range tc.keep {
			if !f([]byte(b)) {
				t.Errorf("%s: skips block %q", tc.query, b)
			}
		}
		for _, b := range tc.skip {
			if f([]byte(b)) {
				t.Errorf("%s: reads block %q", tc.query, b)
			}
		}
	}
}

// TestSubstringAgreesWithStringsContains: the rare-byte search finds
// exactly what strings.Contains finds, including the cases where it gives
// up on the rare byte and where the needle sits at either end.
func TestSubstringAgreesWithStringsContains(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	alphabet := "aab=Z9 \x00"
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	for range 20000 {
		h, s := word(r.IntN(200)), word(r.IntN(6))
		if r.IntN(3) == 0 && len(h) > 0 {
			i := r.IntN(len(h))
			s = h[i:min(len(h), i+1+r.IntN(8))]
		}
		n := newSubstring(s)
		if got, want := n.in(h), strings.Contains(h, s); got != want {
			t.Fatalf("substring %q in %q = %v, strings.Contains says %v", s, h, got, want)
		}
		if got := n.inBytes([]byte(h)); got != n.in(h) {
			t.Fatalf("inBytes and in disagree for %q in %q", s, h)
		}
	}
	long := strings.Repeat("a=", 5000) + "Zq"
	if n := newSubstring("a=Zq"); !n.in(long) || n.in(long[:len(long)-1]) {
		t.Error("wrong answer past the give-up point")
	}
}
