package kafka

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
)

func stream(n, lineLen int) push.Stream {
	s := push.Stream{Labels: `{app="api", env="prod"}`}
	for i := range n {
		line := fmt.Sprintf("%06d %s", i, strings.Repeat("x", max(lineLen-7, 0)))
		s.Entries = append(s.Entries, push.Entry{Timestamp: int64(1_700_000_000_000_000_000 + i), Line: line})
	}
	return s
}

func TestEncodeStreamRoundTrip(t *testing.T) {
	s := stream(3, 20)
	s.Entries[1].StructuredMetadata = []labels.Label{{Name: "trace_id", Value: "abc"}}
	recs, err := EncodeStream(nil, RecordSpec{Tenant: "team-a", Partition: 7, Traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", MaxValueBytes: 1 << 20}, &s)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("%d records for a small stream, want 1", len(recs))
	}
	r := recs[0]
	if string(r.Key) != "team-a" || r.Partition != 7 || Traceparent(r) != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" {
		t.Fatalf("record key %q partition %d traceparent %q", r.Key, r.Partition, Traceparent(r))
	}
	tenant, got, err := DecodeRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	if tenant != "team-a" || got.Labels != s.Labels || len(got.Entries) != 3 || got.Entries[1].StructuredMetadata[0].Value != "abc" {
		t.Fatalf("decoded %q %+v", tenant, got)
	}
}

func TestEncodeStreamSplitsAtTheLimitInOrder(t *testing.T) {
	s := stream(1000, 200)
	const limit = 16 << 10
	recs, err := EncodeStream(nil, RecordSpec{Tenant: "t", Partition: 1, MaxValueBytes: limit}, &s)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < 10 {
		t.Fatalf("1000×200B lines in %d records under a 16KiB limit", len(recs))
	}
	var all []push.Entry
	for i, r := range recs {
		if len(r.Value) > limit {
			t.Errorf("record %d is %d bytes, over the %d limit", i, len(r.Value), limit)
		}
		if i < len(recs)-1 && len(r.Value) < limit/2 {
			t.Errorf("record %d is only %d bytes: the splitter wastes records", i, len(r.Value))
		}
		_, got, err := DecodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		if got.Labels != s.Labels {
			t.Fatalf("record %d lost the labels: %q", i, got.Labels)
		}
		all = append(all, got.Entries...)
	}
	if len(all) != len(s.Entries) {
		t.Fatalf("%d entries after split, want %d", len(all), len(s.Entries))
	}
	for i := range all {
		if all[i].Line != s.Entries[i].Line || all[i].Timestamp != s.Entries[i].Timestamp {
			t.Fatalf("entry %d out of order or changed after split", i)
		}
	}
}

func TestEncodeStreamRejectsAnEntryThatCannotFit(t *testing.T) {
	s := stream(2, 10)
	s.Entries[1].Line = strings.Repeat("y", 5000)
	_, err := EncodeStream(nil, RecordSpec{Tenant: "t", MaxValueBytes: 4096}, &s)
	if !errors.Is(err, ErrEntryTooLarge) {
		t.Fatalf("error = %v, want ErrEntryTooLarge", err)
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	good := push.AppendStream(nil, &push.Stream{Labels: `{a="b"}`, Entries: []push.Entry{{Timestamp: 1, Line: "x"}}})
	tests := []struct {
		name string
		rec  *kgo.Record
		want string
	}{
		{"path-like tenant key", &kgo.Record{Key: []byte("../other"), Value: good}, "unsupported character"},
		{"empty key", &kgo.Record{Value: good}, "no org id"},
		{"corrupt value", &kgo.Record{Key: []byte("t"), Value: good[:len(good)-2]}, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := DecodeRecord(tt.rec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzDecodeRecord(f *testing.F) {
	s := stream(3, 30)
	recs, _ := EncodeStream(nil, RecordSpec{Tenant: "team-a", MaxValueBytes: 1 << 20}, &s)
	f.Add([]byte("team-a"), recs[0].Value)
	f.Add([]byte("fake"), []byte{})
	f.Add([]byte("../x"), recs[0].Value)
	f.Fuzz(func(t *testing.T, key, value []byte) {
		tenant, got, err := DecodeRecord(&kgo.Record{Key: key, Value: value})
		if err != nil {
			return
		}
		if tenant != string(key) || strings.ContainsAny(tenant, "/\\\x00") {
			t.Fatalf("accepted tenant %q", tenant)
		}
		// What decodes re-encodes into records that decode to the same
		// entries.
		if len(got.Entries) == 0 {
			return
		}
		again, err := EncodeStream(nil, RecordSpec{Tenant: tenant, MaxValueBytes: 1 << 30}, &got)
		if err != nil {
			t.Fatal(err)
		}
		_, back, err := DecodeRecord(again[0])
		if err != nil || len(back.Entries) != len(got.Entries) {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	var base Config
	base.RegisterFlags(flagSet())
	if err := base.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"empty address":     func(c *Config) { c.Address = " , " },
		"empty topic":       func(c *Config) { c.Topic = "" },
		"no write timeout":  func(c *Config) { c.WriteTimeout = 0 },
		"tiny record limit": func(c *Config) { c.ProducerMaxRecordSizeBytes = 100 },
		"huge record limit": func(c *Config) { c.ProducerMaxRecordSizeBytes = 2 << 20 },
		"zero partitions":   func(c *Config) { c.AutoCreateTopicDefaultPartitions = 0 },
	} {
		c := base
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
	}
	c := base
	c.Address = "a:1, b:2 ,"
	if got := c.Brokers(); len(got) != 2 || got[0] != "a:1" || got[1] != "b:2" {
		t.Errorf("Brokers() = %q", got)
	}
}
