package logql

import (
	"strings"
	"unsafe"
)

// substring is a `|=` or `!=` needle prepared for searching many lines or
// blocks. strings.Contains starts by looking for the needle's first byte,
// and in log text that is usually a lowercase letter found every few
// bytes, so most of the time goes to false starts. substring looks for
// the needle's rarest byte instead (by a rough ranking of bytes in log
// text: digits and punctuation are rarer than letters, uppercase rarer
// than lowercase, control bytes rarest) and checks the whole needle only
// where that byte is. On the chunk package's BenchmarkFilterVsSnappyDecode
// (needle "status=599 needle", whose 's' starts a false match every few
// bytes) the block prefilter went from 56-63% of snappy's decode speed to
// 52-83% (median 72%) on this noisy machine; docs/performance.md.
type substring struct {
	s    string
	rare byte // s[at], the byte searched for
	at   int
}

func newSubstring(s string) substring {
	n := substring{s: s}
	for i := range len(s) {
		if byteRank(s[i]) < byteRank(s[n.at]) {
			n.at = i
		}
	}
	if s != "" {
		n.rare = s[n.at]
	}
	return n
}

// byteRank is how common a byte is in log lines, higher is more common.
func byteRank(c byte) int {
	switch {
	case c == ' ':
		return 9
	case c >= 'a' && c <= 'z':
		if strings.IndexByte("etaoinsrhlcdu", c) >= 0 {
			return 8
		}
		return 7
	case c >= '0' && c <= '9':
		return 6
	case strings.IndexByte(`"=:,./-_`, c) >= 0:
		return 5
	case c >= 'A' && c <= 'Z':
		return 4
	case c >= 0x80 || c < 0x20:
		return 1
	}
	return 3
}

// in reports whether s.s occurs in h.
func (n *substring) in(h string) bool {
	ls := len(n.s)
	switch {
	case ls == 0:
		return true
	case ls > len(h):
		return false
	case ls == 1:
		return strings.IndexByte(h, n.rare) >= 0
	}
	// A match starting at p has the rare byte at p+at, with p <= last.
	last := len(h) - ls
	fails := 0
	for i := n.at; i <= last+n.at; {
		j := strings.IndexByte(h[i:last+n.at+1], n.rare)
		if j < 0 {
			return false
		}
		p := i + j - n.at
		if h[p:p+ls] == n.s {
			return true
		}
		i += j + 1
		// Like strings.Index: when the rare byte is not rare here after
		// all, let the vectorised search finish (every start before p+1
		// with the rare byte in place has been checked).
		if fails++; fails > 4+(i>>4) {
			return strings.Contains(h[p+1:], n.s)
		}
	}
	return false
}

// inBytes is in over a byte slice, without copying it.
func (n *substring) inBytes(b []byte) bool {
	return n.in(unsafe.String(unsafe.SliceData(b), len(b)))
}
