package loadgen

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestAckRecordRoundTrip(t *testing.T) {
	recs := []AckRecord{
		{Tenant: "tenant-1", Labels: `{app="api", env="prod"}`, Run: "k3f9x2", Worker: 3, FirstSeq: 1200, Timestamps: []int64{1795919384789750520, 1795919384789750521, 1795919384829750521}},
		{Tenant: "", Labels: `{a="tab\there \"quoted\""}`, Run: "0", Worker: 0, FirstSeq: 0, Timestamps: []int64{0}},
		{Tenant: "t", Labels: `{a="b"}`, Run: "r", Worker: maxWorker, FirstSeq: maxSeq - 2, Timestamps: []int64{-5, 0, math.MaxInt64}},
		{Tenant: "t", Labels: `{a="b"}`, Run: "r", Worker: 1, FirstSeq: 5, Timestamps: []int64{7, 7, 7}},
	}
	var b []byte
	b = append(b, ackHeader+"\n# run k3f9x2 seed 1\n\n"...)
	for i := range recs {
		b = AppendAckRecord(b, &recs[i])
	}
	rd := NewAckReader(strings.NewReader(string(b)))
	for i := range recs {
		got, ok := rd.Next()
		if !ok {
			t.Fatalf("record %d: %v", i, rd.Err())
		}
		if !equalRecords(got, &recs[i]) {
			t.Errorf("record %d: read %+v, wrote %+v", i, *got, recs[i])
		}
	}
	if _, ok := rd.Next(); ok || rd.Err() != nil {
		t.Fatalf("after the last record: %v, %v", ok, rd.Err())
	}
}

func equalRecords(a, b *AckRecord) bool {
	return a.Tenant == b.Tenant && a.Labels == b.Labels && a.Run == b.Run && a.Worker == b.Worker &&
		a.FirstSeq == b.FirstSeq && slices.Equal(a.Timestamps, b.Timestamps)
}

func TestParseAckRecordRefuses(t *testing.T) {
	tests := []struct {
		line, wantErr string
	}{
		{"t\t{a=\"b\"}\tr-0\t0\t5", "5 fields"},
		{"t\t{a=\"b\"}\tr-0\t0\t5\t\textra", "more than 6"},
		{"a/b\t{a=\"b\"}\tr-0\t0\t5\t", "tenant"},
		{"t\t{}\tr-0\t0\t5\t", "labels"},
		{"t\tnot labels\tr-0\t0\t5\t", "labels"},
		{"t\t{a=\"b\"}\tR-0\t0\t5\t", "<run>-<worker>"},
		{"t\t{a=\"b\"}\tr\t0\t5\t", "<run>-<worker>"},
		{"t\t{a=\"b\"}\tr-99999999\t0\t5\t", "worker"},
		{"t\t{a=\"b\"}\tr-0\t-1\t5\t", "sequence"},
		{"t\t{a=\"b\"}\tr-0\t0\tx\t", "timestamp"},
		{"t\t{a=\"b\"}\tr-0\t0\t5\t1,-2", "delta"},
		{"t\t{a=\"b\"}\tr-0\t0\t9223372036854775800\t1,10", "delta"},
		{"t\t{a=\"b\"}\tr-0\t1099511627776\t5\t1", "run past"},
	}
	for _, tt := range tests {
		var r AckRecord
		err := ParseAckRecord([]byte(tt.line), &r)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseAckRecord(%q) = %v, want an error about %q", tt.line, err, tt.wantErr)
		}
	}
	rd := NewAckReader(strings.NewReader("# lokilab ack log v2\nt\t{a=\"b\"}\tr-0\t0\t5\t\n"))
	if _, ok := rd.Next(); ok || rd.Err() == nil || !strings.Contains(rd.Err().Error(), "v2") {
		t.Errorf("a v2 ack log was read: %v", rd.Err())
	}
	rd = NewAckReader(strings.NewReader("t\t{a=\"b\"}\tr-0\t0\t5\t\nbroken\n"))
	if _, ok := rd.Next(); !ok {
		t.Fatal(rd.Err())
	}
	if _, ok := rd.Next(); ok || rd.Err() == nil || !strings.Contains(rd.Err().Error(), "line 2") {
		t.Errorf("a broken record: %v, want an error naming line 2", rd.Err())
	}
}

// FuzzParseAckRecord: the ack log decoder never panics, and what it
// accepts it writes back to a line it reads the same.
func FuzzParseAckRecord(f *testing.F) {
	for _, s := range []string{
		"tenant-1\t{app=\"api\", env=\"prod\"}\tk3f9x2-3\t1200\t1795919384789750520\t1,40000000,1",
		"\t{a=\"b\"}\t0-0\t0\t0\t",
		"t\t{a=\"\\t\"}\tr-1\t5\t-7\t0,0,0",
		"t\t{a=\"b\"}\tr-0\t0\t9223372036854775800\t1,10",
		"t\t{a=`raw`}\tr-01\t00\t+5\t",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var r AckRecord
		if err := ParseAckRecord(line, &r); err != nil {
			return
		}
		if len(r.Timestamps) == 0 {
			t.Fatal("a record without lines was accepted")
		}
		out := AppendAckRecord(nil, &r)
		if out[len(out)-1] != '\n' || strings.Count(string(out), "\n") != 1 {
			t.Fatalf("record %+v written as %q: want one line", r, out)
		}
		var again AckRecord
		if err := ParseAckRecord(out[:len(out)-1], &again); err != nil {
			t.Fatalf("%q, written back from %q, does not parse: %v", out, line, err)
		}
		if !equalRecords(&r, &again) {
			t.Fatalf("%q read %+v, written back and read %+v", line, r, again)
		}
	})
}
