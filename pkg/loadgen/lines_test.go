package loadgen

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	nginxRE = regexp.MustCompile(`^10\.\d+\.\d+\.\d+ - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] "[A-Z]+ /\S* HTTP/1\.1" \d{3} \d+ "[^"]*" "[^"]*" rt=\d+\.\d{3} lid=[0-9a-z]+-\d+-\d+$`)
	// logfmtRE is a sequence of key=value pairs, values bare or quoted.
	logfmtRE = regexp.MustCompile(`^(?:[a-z_]+=(?:"[^"]*"|[^ "]+)(?: |$))+$`)
	panicRE  = regexp.MustCompile(`^\S+ ERROR recovered from panic in handler lid=\S+\npanic: .+\n\ngoroutine \d+ \[running\]:(?:\n.+\n\t\S+:\d+ \+0x[0-9a-f]+)+`)
)

// checkShape fails t unless line is a well-formed line of shape s.
func checkShape(t *testing.T, s Shape, line string) {
	t.Helper()
	switch s {
	case Nginx:
		if !nginxRE.MatchString(line) {
			t.Fatalf("not an nginx access log line: %q", line)
		}
	case Logfmt:
		if !logfmtRE.MatchString(line) || !strings.HasPrefix(line, "ts=") {
			t.Fatalf("not a logfmt line: %q", line)
		}
	case JSON:
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("not a JSON object (%v): %q", err, line)
		}
		if id, _ := v["lid"].(string); id == "" {
			t.Fatalf("JSON line without a lid field: %q", line)
		}
	case StackTrace:
		if !panicRE.MatchString(line) || strings.Count(line, "\n") < 6 {
			t.Fatalf("not a multi-line stack trace: %q", line)
		}
		first, _, _ := strings.Cut(line, "\n")
		if _, ok := FindLineID(first); !ok {
			t.Fatalf("the identity is not on the first line: %q", line)
		}
	}
}

func TestEveryShapeCarriesItsIdentity(t *testing.T) {
	ts := time.Date(2026, 11, 28, 11, 47, 48, 123456789, time.UTC)
	for s := range numShapes {
		for _, lineSize := range []int{0, 100, 1000, 8192} {
			t.Run(fmt.Sprintf("%s/line-size=%d", s, lineSize), func(t *testing.T) {
				var mix Mix
				mix[s] = 1
				g := newGenerator(mix, lineSize, "k3f9x2", 7, 1)
				var b []byte
				total := 0
				const n = 500
				for seq := range uint64(n) {
					b = b[:0]
					var shape Shape
					b, shape = g.appendLine(b, ts, 1000+seq)
					line := string(b)
					if shape != s {
						t.Fatalf("shape %s written for a mix of only %s", shape, s)
					}
					checkShape(t, s, line)
					id, ok := FindLineID(line)
					if want := fmt.Sprintf("k3f9x2-7-%d", 1000+seq); !ok || id != want {
						t.Fatalf("FindLineID = %q, %v; want %q in %q", id, ok, want, line)
					}
					if strings.Count(line, " lid=")+strings.Count(line, `"lid":"`) != 1 {
						t.Fatalf("the identity appears more than once: %q", line)
					}
					total += len(line)
				}
				if lineSize > 0 {
					// Padding never shortens a line, so small targets
					// only bound the average from below.
					avg := total / n
					if avg < lineSize*9/10 || lineSize >= 1000 && avg > lineSize*11/10 {
						t.Errorf("average line size %d, want about %d", avg, lineSize)
					}
				}
			})
		}
	}
}

func TestMixOfShapes(t *testing.T) {
	g := newGenerator(DefaultMix, 0, "r1", 0, 3)
	var counts [numShapes]int
	var b []byte
	for seq := range uint64(10000) {
		var s Shape
		b, s = g.appendLine(b[:0], time.Now(), seq)
		checkShape(t, s, string(b))
		counts[s]++
	}
	for s, w := range DefaultMix {
		want := 10000 * w / 10
		if counts[s] < want*8/10 || counts[s] > want*12/10 {
			t.Errorf("%s: %d of 10000 lines, want about %d (weight %d of 10)", Shape(s), counts[s], want, w)
		}
	}
}

func TestGeneratorIsDeterministic(t *testing.T) {
	ts := time.Unix(1700000000, 0)
	gen := func(seed uint64) string {
		g := newGenerator(DefaultMix, 300, "r1", 2, seed)
		var b []byte
		for seq := range uint64(100) {
			b, _ = g.appendLine(b, ts, seq)
			b = append(b, '\n')
		}
		return string(b)
	}
	if first, again := gen(5), gen(5); first != again {
		t.Fatal("the same seed wrote different lines")
	}
	if gen(5) == gen(6) {
		t.Fatal("different seeds wrote the same lines")
	}
}

func TestParseMix(t *testing.T) {
	tests := []struct {
		in      string
		want    Mix
		wantErr string
	}{
		{in: "nginx=4,logfmt=3,json=2,stacktrace=1", want: DefaultMix},
		{in: "json", want: Mix{JSON: 1}},
		{in: " nginx = 2 , stacktrace ", want: Mix{Nginx: 2, StackTrace: 1}},
		{in: "xml=1", wantErr: "unknown line shape"},
		{in: "json=-1", wantErr: "weight"},
		{in: "json=0", wantErr: "positive weight"},
		{in: "", wantErr: "positive weight"},
	}
	for _, tt := range tests {
		got, err := ParseMix(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseMix(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseMix(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if again, err := ParseMix(got.String()); err != nil || again != got {
			t.Errorf("ParseMix(%q.String()) = %v, %v", tt.in, again, err)
		}
	}
}

func TestFindLineID(t *testing.T) {
	tests := []struct {
		line, want string
	}{
		{`GET /x HTTP/1.1" 200 5 rt=0.1 lid=abc1-0-17`, "abc1-0-17"},
		{`ts=x msg="y" lid=abc1-12-0 trailing=1`, "abc1-12-0"},
		{`{"msg":"y","lid":"abc1-3-99"}`, "abc1-3-99"},
		{"ERROR panic lid=abc1-1-5\npanic: boom", "abc1-1-5"},
		{`invalid=abc1-0-1`, ""},
		{`no identity here`, ""},
		{`ends with lid=`, ""},
	}
	for _, tt := range tests {
		got, ok := FindLineID(tt.line)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("FindLineID(%q) = %q, %v; want %q", tt.line, got, ok, tt.want)
		}
	}
}

func TestLineIDRoundTrip(t *testing.T) {
	for _, id := range []LineID{{"a", 0, 0}, {"k3f9x2", 31, 1 << 33}} {
		got, err := ParseLineID(id.String())
		if err != nil || got != id {
			t.Errorf("ParseLineID(%q) = %v, %v", id, got, err)
		}
	}
	for _, bad := range []string{"", "a", "a-1", "A-1-2", "a-01-2", "a-1-", "a-1-2-3", "a-x-2", "a-1-99999999999999999999"} {
		if _, err := ParseLineID(bad); err == nil {
			t.Errorf("ParseLineID(%q) succeeded", bad)
		}
	}
}
