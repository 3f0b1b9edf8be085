package chunk

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
)

// TestFormatExample builds the example chunk of FORMAT.md and checks its
// bytes against the dump there, so the document cannot drift from the code.
func TestFormatExample(t *testing.T) {
	want := formatExampleBytes(t)

	c := New(EncodingNone, 32, 0)
	appendAll(t, c, []push.Entry{
		{Timestamp: 1_700_000_000_000_000_000, Line: "GET /", StructuredMetadata: []labels.Label{{Name: "trace", Value: "a1"}}},
		{Timestamp: 1_700_000_000_001_000_000, Line: "hello world"},
		{Timestamp: 1_700_000_000_000_500_000, Line: "late"},
	})
	got := mustEncode(t, c)
	if !bytes.Equal(got, want) {
		t.Errorf("encoded example differs from FORMAT.md:\ngot:\n%s\nFORMAT.md:\n%s", hex.Dump(got), hex.Dump(want))
	}
	d := mustDecode(t, want)
	if d.Blocks() != 2 || d.Entries() != 3 {
		t.Errorf("FORMAT.md example decodes to %d entries in %d blocks, want 3 in 2", d.Entries(), d.Blocks())
	}
}

// formatExampleBytes parses the dump that follows the example marker in
// FORMAT.md: lines "OFFSET: HEX BYTES # comment", offsets checked.
func formatExampleBytes(t *testing.T) []byte {
	t.Helper()
	f, err := os.ReadFile("FORMAT.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(f), "<!-- example: TestFormatExample -->\n```text\n")
	if !ok {
		t.Fatal("FORMAT.md has no example marker")
	}
	dump, _, ok := strings.Cut(after, "```")
	if !ok {
		t.Fatal("FORMAT.md example is not closed")
	}
	var b []byte
	sc := bufio.NewScanner(strings.NewReader(dump))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		off, data, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue // a comment line
		}
		n, err := strconv.ParseUint(off, 16, 32)
		if err != nil || int(n) != len(b) {
			t.Fatalf("FORMAT.md example: line %q at offset %q, want %04x", sc.Text(), off, len(b))
		}
		for _, h := range strings.Fields(data) {
			v, err := strconv.ParseUint(h, 16, 8)
			if err != nil {
				t.Fatalf("FORMAT.md example: line %q: %v", sc.Text(), err)
			}
			b = append(b, byte(v))
		}
	}
	return b
}
