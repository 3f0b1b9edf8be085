package labels

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    string // canonical form; "" with wantErr
		wantErr string
	}{
		{in: `{}`, want: `{}`},
		{in: `{a="b"}`, want: `{a="b"}`},
		{in: `{ b = "2" , a="1" }`, want: `{a="1", b="2"}`},
		{in: "{a=`raw \\n`}", want: `{a="raw \\n"}`},
		{in: `{a="tab\there", b="quote\"d"}`, want: `{a="tab\there", b="quote\"d"}`},
		{in: `{a="ünïcödé"}`, want: `{a="ünïcödé"}`},
		{in: `{a="", b="x"}`, want: `{b="x"}`},         // empty value = absent label
		{in: `{a="1", a="2"}`, want: `{a="1", a="2"}`}, // duplicates kept for validation
		{in: `{_under="x", A9="y"}`, want: `{A9="y", _under="x"}`},
		{in: "\n{a=\"b\"}\n", want: `{a="b"}`},
		{in: ``, wantErr: "expected '{'"},
		{in: `a="b"`, wantErr: "expected '{'"},
		{in: `{a="b"`, wantErr: "expected ',' or '}'"},
		{in: `{a="b",}`, wantErr: "expected a label name"},
		{in: `{9a="b"}`, wantErr: `invalid label name "9a"`},
		{in: `{a-b="c"}`, wantErr: "expected '=' after label name"},
		{in: `{a=~"b"}`, wantErr: "only '=' is allowed"},
		{in: `{a!="b"}`, wantErr: "expected '=' after label name"},
		{in: `{a=b}`, wantErr: "expected a quoted value"},
		{in: `{a="b}`, wantErr: "unterminated quoted value"},
		{in: `{a="b\q"}`, wantErr: "invalid quoted value"},
		{in: `{a="b"} x`, wantErr: "after '}'"},
		{in: "{a=\"\xff\"}", wantErr: "invalid UTF-8"},
		{in: `{a="\xff"}`, wantErr: "invalid UTF-8"}, // escaped invalid byte
		{in: "{a=\"line\nbreak\"}", wantErr: "newline in quoted value"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ls, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got := ls.String(); got != tt.want {
				t.Fatalf("Parse(%q).String() = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestCanonicalFormRoundTrips(t *testing.T) {
	ls := FromMap(map[string]string{"z": "last", "a": `with "quotes" and \ backslash`, "m": "ünï\tcode"})
	back, err := Parse(ls.String())
	if err != nil {
		t.Fatal(err)
	}
	if back.String() != ls.String() || back.Hash() != ls.Hash() {
		t.Fatalf("round trip: %s != %s", back, ls)
	}
}

func TestHashSeparatesNamesFromValues(t *testing.T) {
	a := New(Label{"a", "bc"})
	b := New(Label{"ab", "c"})
	if a.Hash() == b.Hash() {
		t.Fatal(`{a="bc"} and {ab="c"} hash equal`)
	}
	if New(Label{"a", "1"}, Label{"b", "2"}).Hash() != New(Label{"b", "2"}, Label{"a", "1"}).Hash() {
		t.Fatal("hash depends on input order")
	}
}

func TestIsValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"a": true, "_": true, "__name__": true, "A_1": true,
		"": false, "1a": false, "a-b": false, "a.b": false, "ä": false,
	} {
		if got := IsValidName(name); got != want {
			t.Errorf("IsValidName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestGetAndMap(t *testing.T) {
	ls, _ := Parse(`{app="api", env="prod"}`)
	if ls.Get("env") != "prod" || ls.Get("missing") != "" {
		t.Fatal("Get")
	}
	if m := ls.Map(); len(m) != 2 || m["app"] != "api" {
		t.Fatalf("Map = %v", m)
	}
}

// FuzzParse checks that the parser never panics and that whatever it accepts
// has a canonical form that parses back to the same labels.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{}`, `{a="b"}`, `{a="1", b="2"}`, "{a=`x`}", `{a="\u00e9\n"}`, `{a="1",a="1"}`, `{`, `{a=`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ls, err := Parse(s)
		if err != nil {
			return
		}
		canon := ls.String()
		back, err := Parse(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, s, err)
		}
		if back.String() != canon {
			t.Fatalf("canonical form not stable: %q -> %q", canon, back.String())
		}
		for _, l := range ls {
			if !IsValidName(l.Name) || l.Value == "" {
				t.Fatalf("accepted label %+v from %q", l, s)
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	s := `{app="api", cluster="eu-west-1", env="prod", namespace="payments", pod="api-7d9f8c6b5-x2k4p"}`
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(s); err != nil {
			b.Fatal(err)
		}
	}
}
