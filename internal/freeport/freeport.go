// Package freeport finds loopback ports for processes that will bind them
// later: a multi-process lab is told its ports on the command line, so a
// test has to pick them before any process exists.
//
// Why not the usual net.Listen(":0") and close: that port comes from the
// kernel's ephemeral range (ip_local_port_range, 32768–60999 on Linux),
// the same range the kernel draws from for every outgoing connection's
// local port and for every other ":0" listener. Between the pick and the
// child's bind, a busy test run (dozens of Kafka clients opening
// connections) can take it: CI saw a memberlist node fail with "address
// already in use" on a port picked a moment before. Ports below the
// ephemeral range are never handed out by the kernel; only another
// explicit pick can take one, and Block picks at random among about ten
// thousand of them, checking each port free for TCP and UDP (memberlist
// binds both).
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the first port Block considers: above the registered ports
// most services use, below any usual ephemeral range.
const lowest = 20000

// Block returns the first of n consecutive loopback ports that are free
// for TCP and UDP now, below the kernel's ephemeral range.
func Block(n int) (int, error) {
	if n < 1 {
		return 0, fmt.Errorf("freeport: %d ports", n)
	}
	top := ephemeralStart() // exclusive
	if top-n <= lowest {
		return 0, fmt.Errorf("freeport: no room for %d ports between %d and the ephemeral range at %d", n, lowest, top)
	}
	for range 100 {
		base := lowest + rand.IntN(top-n-lowest)
		if free(base, n) {
			return base, nil
		}
	}
	return 0, errors.New("freeport: no block of free loopback ports found in 100 tries")
}

// free reports whether ports [base, base+n) can be bound on loopback, TCP
// and UDP.
func free(base, n int) bool {
	for p := base; p < base+n; p++ {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		ln.Close()
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		pc.Close()
	}
	return true
}

// ephemeralStart returns the first port of the kernel's ephemeral range:
// Linux's ip_local_port_range, or 32768 (Linux's default, and under
// IANA's 49152) where it cannot be read.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	p, err := strconv.Atoi(f[0])
	if err != nil || p <= lowest {
		return 32768
	}
	return p
}
