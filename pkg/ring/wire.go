package ring

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Every message, broadcast or push/pull, is one version byte followed by a
// Desc as JSON: a broadcast holds the changed entries only, a push/pull the
// whole Desc. Both merge the same way, so there is one decoder.
//
// JSON is a choice for readability, and it costs: an instance entry is
// ~200 bytes where a binary encoding would take ~60, and encoding and
// decoding allocate for every field. At the lab's scale (tens of instances,
// a heartbeat per instance per second) that is a few KB/s per node and
// microseconds per message; a ring of thousands would want protobuf. In
// exchange, /memberlist shows exactly what travels, and a reader can decode
// a captured packet by eye.
const wireVersion byte = 1

// maxBroadcastSize bounds one broadcast. Gossip packets are at most
// memberlist's UDPBufferSize (1400 bytes) with a few headers, and a message
// that does not fit would sit in the queue forever; a change that large
// (only an absurd ID could make one) travels by push/pull alone.
const maxBroadcastSize = 1200

func encodeDesc(d *Desc) ([]byte, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("ring: encode desc: %w", err)
	}
	out := make([]byte, 0, len(b)+1)
	return append(append(out, wireVersion), b...), nil
}

func decodeDesc(b []byte) (*Desc, error) {
	if len(b) == 0 {
		return nil, errors.New("ring: decode desc: empty message")
	}
	if b[0] != wireVersion {
		return nil, fmt.Errorf("ring: decode desc: unknown version %d", b[0])
	}
	var d Desc
	if err := json.Unmarshal(b[1:], &d); err != nil {
		return nil, fmt.Errorf("ring: decode desc: %w", err)
	}
	if err := d.validate(); err != nil {
		return nil, fmt.Errorf("ring: decode desc: %w", err)
	}
	return &d, nil
}
