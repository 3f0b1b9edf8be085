package ring

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"log/slog"
	"slices"
	"testing"
	"time"
)

func newTestRing(t *testing.T, id string) *Ring {
	t.Helper()
	var cfg Config
	cfg.RegisterFlags(flag.NewFlagSet("test", flag.PanicOnError))
	cfg.BindPort = 0
	r, err := New(cfg, InstanceDesc{ID: id, Role: RoleIngester}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Kill)
	return r
}

func mustEncode(t *testing.T, d *Desc) []byte {
	t.Helper()
	b, err := encodeDesc(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An instance that learns of a newer entry under its own ID (forgotten by
// an operator while alive, or left behind by an earlier process with the
// same ID) rewrites its own with a larger timestamp.
func TestRefutesEntriesWrittenUnderItsID(t *testing.T) {
	r := newTestRing(t, "ingester-0")
	r.SetState(InstanceActive)
	r.SetOwner(1, OwnerActive)
	self := r.Self()
	future := time.Now().Add(time.Hour).UnixNano()

	tomb := self
	tomb.State, tomb.UpdatedAt = InstanceLeft, future
	r.receive(mustEncode(t, &Desc{
		Instances: map[string]InstanceDesc{self.ID: tomb},
		Partitions: map[int32]PartitionDesc{
			1: {ID: 1, State: PartitionActive, Owners: map[string]OwnerDesc{self.ID: {State: OwnerRemoved, UpdatedAt: future}}},
			2: {ID: 2, State: PartitionActive, Owners: map[string]OwnerDesc{self.ID: {State: OwnerActive, UpdatedAt: 5}}},
		},
	}), msgBroadcast, false)

	d := r.Desc()
	if got := d.Instances[self.ID]; got.State != InstanceActive || got.UpdatedAt <= future {
		t.Errorf("own entry after a newer tombstone: %+v, want ACTIVE refuted past %d", got, future)
	}
	if got := d.Partitions[1].Owners[self.ID]; got.State != OwnerActive || got.UpdatedAt <= future {
		t.Errorf("own ownership of 1 after a newer removal: %+v, want ACTIVE refuted", got)
	}
	if got := d.Partitions[2].Owners[self.ID]; got.State != OwnerRemoved || got.UpdatedAt <= 5 {
		t.Errorf("a predecessor's ownership of 2: %+v, want a REMOVED tombstone", got)
	}
	if got := r.Self(); got.State != InstanceActive {
		t.Errorf("Self = %+v", got)
	}
}

func TestReceiveDropsInvalidMessages(t *testing.T) {
	r := newTestRing(t, "ingester-0")
	before := r.Desc()
	for _, msg := range [][]byte{nil, {2, '{', '}'}, []byte("\x01not json"), []byte("\x01" + `{"instances":{"a":{"id":"b","state":"ACTIVE"}}}`)} {
		r.receive(msg, msgBroadcast, false)
	}
	if got := r.m.invalid.Load(); got != 4 {
		t.Errorf("%d invalid messages counted, want 4", got)
	}
	after := r.Desc()
	a, _ := json.Marshal(before)
	b, _ := json.Marshal(after)
	if string(a) != string(b) {
		t.Error("an invalid message changed the state")
	}
}

// FuzzDecodeDesc feeds the wire decoder arbitrary bytes: it must not
// panic, and whatever it accepts must re-encode to the same Desc and merge
// idempotently.
func FuzzDecodeDesc(f *testing.F) {
	valid := &Desc{
		Instances: map[string]InstanceDesc{"ingester-0": {ID: "ingester-0", Addr: "127.0.0.1:3100", Role: RoleIngester, State: InstanceActive, Heartbeat: 3, UpdatedAt: 2, RegisteredAt: 1}},
		Partitions: map[int32]PartitionDesc{
			0: {ID: 0, State: PartitionActive, Owners: map[string]OwnerDesc{"ingester-0": {State: OwnerJoining, UpdatedAt: 2}}},
			7: {ID: 7, State: PartitionInactive, StateChangedAt: 9},
		},
	}
	b, err := encodeDesc(valid)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{wireVersion})
	f.Add([]byte("\x01{}"))
	f.Add([]byte("\x01null"))
	f.Add([]byte("\x01" + `{"partitions":{"-1":{"id":-1,"state":"ACTIVE"}}}`))
	f.Add([]byte("\x01" + `{"instances":{"":{"id":"","state":"LEFT"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeDesc(b)
		if err != nil {
			return
		}
		again, err := decodeDesc(mustEncode(t, d))
		if err != nil {
			t.Fatalf("re-decoding an accepted Desc: %v", err)
		}
		x, y := mustEncode(t, d), mustEncode(t, again)
		if string(x) != string(y) {
			t.Fatalf("round trip changed the Desc:\n%s\n%s", x, y)
		}
		var m Desc
		m.Merge(d)
		if m.Merge(d) {
			t.Fatal("merging an accepted Desc twice changed the state twice")
		}
	})
}

func TestBroadcastQueue(t *testing.T) {
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	nodes := 5 // ⌈log10(6)⌉ = 1, so each message is sent retransmitMult = 4 times
	q := newBroadcastQueue(func() int { return nodes }, 4)

	// The sequence that loses a message in memberlist's queue (#263):
	// replace the only message, twice, then add another of the same length.
	q.push("instance/a", []byte("a-1"))
	q.push("instance/a", []byte("a-2"))
	doneA := q.push("instance/a", []byte("a-3"))
	doneB := q.push("instance/b", []byte("b-1"))
	if q.len() != 2 {
		t.Fatalf("%d messages queued, want 2", q.len())
	}
	got := q.get(0, 100)
	if len(got) != 2 || string(got[0]) != "b-1" || string(got[1]) != "a-3" {
		t.Fatalf("first packet %q, want the newest of each key, newest first", got)
	}

	// A new message goes before those already sent.
	q.push("instance/c", []byte("c-1"))
	if got := q.get(0, 3); len(got) != 1 || string(got[0]) != "c-1" {
		t.Errorf("with room for one: %q, want the unsent c-1", got)
	}
	// A message that does not fit is skipped, not a stopper.
	q.push("instance/big", make([]byte, 50))
	if got := q.get(0, 10); len(got) != 3 {
		t.Errorf("with room for the small ones: %d messages, want 3", len(got))
	}

	for range 4 {
		q.get(0, 1000)
	}
	if !closed(doneA) || !closed(doneB) || q.len() != 0 {
		t.Errorf("after 4 sends: a done %v, b done %v, %d queued", closed(doneA), closed(doneB), q.len())
	}

	first := q.push("instance/d", []byte("d-1"))
	q.push("instance/d", []byte("d-2"))
	if !closed(first) {
		t.Error("a replaced message's channel is not closed")
	}
	if got := q.get(10, 11); len(got) != 0 {
		t.Errorf("overhead counted: got %q", got)
	}
}

// The ring's clock decides health and tombstone collection; a fake one
// shows both without waiting.
func TestHealthAndTombstonesFollowTheClock(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	var cfg Config
	cfg.RegisterFlags(flag.NewFlagSet("test", flag.PanicOnError))
	cfg.BindPort = 0
	r, err := newRing(cfg, InstanceDesc{ID: "distributor-0", Role: RoleDistributor}, nil, nil, clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Kill)

	other := InstanceDesc{ID: "distributor-1", Role: RoleDistributor, State: InstanceActive, Heartbeat: now.UnixNano(), UpdatedAt: now.UnixNano()}
	gone := InstanceDesc{ID: "distributor-2", Role: RoleDistributor, State: InstanceLeft, UpdatedAt: now.UnixNano()}
	r.receive(mustEncode(t, &Desc{Instances: map[string]InstanceDesc{other.ID: other, gone.ID: gone}}), msgBroadcast, false)
	select {
	case <-r.Changes():
	default:
		t.Error("no Changes signal for a new instance")
	}
	if got := r.HealthyDistributors(); got != 2 {
		t.Fatalf("HealthyDistributors = %d, want 2 (a LEFT tombstone does not count)", got)
	}

	now = now.Add(cfg.HeartbeatTimeout) // exactly the timeout: still healthy
	r.heartbeat()
	if got := r.HealthyDistributors(); got != 2 {
		t.Errorf("at the timeout: %d healthy, want 2", got)
	}
	now = now.Add(time.Nanosecond)
	r.heartbeat() // this node's own heartbeat keeps it healthy; the other's does not
	if got := r.HealthyDistributors(); got != 1 {
		t.Errorf("past the timeout: %d healthy, want 1", got)
	}
	select {
	case <-r.Changes():
	default:
		t.Error("no Changes signal when an instance turned unhealthy")
	}
	if _, ok := r.Desc().Instances[gone.ID]; !ok {
		t.Fatal("tombstone collected before its TTL")
	}

	now = now.Add(cfg.LeftTombstoneTTL)
	r.heartbeat()
	if _, ok := r.Desc().Instances[gone.ID]; ok {
		t.Error("tombstone kept past its TTL")
	}
	if got := len(r.Instances("")); got != 2 {
		t.Errorf("%d instances, want 2: a silent instance is kept until forgotten", got)
	}
}

// captureHandler records the level and message of every log record.
type captureHandler struct{ records *[]string }

func (h captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h captureHandler) Handle(_ context.Context, r slog.Record) error {
	*h.records = append(*h.records, r.Level.String()+" "+r.Message)
	return nil
}
func (h captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h captureHandler) WithGroup(string) slog.Handler      { return h }

func TestMemberlistLogLevels(t *testing.T) {
	var got []string
	l := log.New(logWriter{slog.New(captureHandler{&got})}, "", 0)
	for _, line := range []string{
		"[ERR] memberlist: Failed to send gossip to 127.0.0.1:7946",
		"[WARN] memberlist: Was able to connect to x over TCP but UDP probes failed",
		"[INFO] memberlist: Suspect x has failed, no acks received",
		"[DEBUG] memberlist: Stream connection from=127.0.0.1:1234",
		"no level at all",
	} {
		l.Print(line)
	}
	want := []string{
		"ERROR memberlist: Failed to send gossip to 127.0.0.1:7946",
		"WARN memberlist: Was able to connect to x over TCP but UDP probes failed",
		"INFO memberlist: Suspect x has failed, no acks received",
		"DEBUG memberlist: Stream connection from=127.0.0.1:1234",
		"DEBUG no level at all",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
