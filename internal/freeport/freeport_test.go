package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestBlockIsFreeAndBelowTheEphemeralRange: the block can be bound, TCP
// and UDP, and lies wholly under the range the kernel hands out.
func TestBlockIsFreeAndBelowTheEphemeralRange(t *testing.T) {
	base, err := Block(12)
	if err != nil {
		t.Fatal(err)
	}
	if top := ephemeralStart(); base < lowest || base+12 > top {
		t.Fatalf("block %d..%d, want within [%d, %d)", base, base+11, lowest, top)
	}
	for p := base; p < base+12; p++ {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		defer ln.Close()
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatalf("port %d udp: %v", p, err)
		}
		defer pc.Close()
	}
}

// TestBlockSkipsATakenPort: a port held by someone makes its blocks not
// free.
func TestBlockSkipsATakenPort(t *testing.T) {
	base, err := Block(3)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(base+1)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if free(base, 3) {
		t.Fatalf("block at %d reported free while %d is held", base, base+1)
	}
	if _, err := Block(0); err == nil {
		t.Error("a block of 0 ports: want an error")
	}
}
