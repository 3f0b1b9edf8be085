package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ByteSize is a size in bytes that reads and prints the way Loki's
// configuration does: "256KB", "1.5MB" or a plain number. As in Loki, the
// units are powers of 1024 whether spelled KB or KiB: max_line_size "256KB"
// is 262144 bytes in both systems, so a limit copied from a Loki config means
// the same here.
type ByteSize uint64

var byteUnits = []struct {
	suffixes []string
	mult     uint64
}{
	{[]string{"TIB", "TB", "T"}, 1 << 40},
	{[]string{"GIB", "GB", "G"}, 1 << 30},
	{[]string{"MIB", "MB", "M"}, 1 << 20},
	{[]string{"KIB", "KB", "K"}, 1 << 10},
	{[]string{"B"}, 1},
}

// ParseByteSize parses a size such as "256KB", "1.5 MB", "64KiB" or "1024".
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := uint64(1)
outer:
	for _, u := range byteUnits {
		for _, suf := range u.suffixes {
			if len(t) > len(suf) && strings.HasSuffix(t, suf) {
				mult = u.mult
				t = strings.TrimSpace(t[:len(t)-len(suf)])
				break outer
			}
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("invalid byte size %q: want a non-negative number with an optional unit (B, KB, MB, GB, TB)", s)
	}
	v := f * float64(mult)
	if v >= math.MaxUint64 {
		return 0, fmt.Errorf("byte size %q is too large", s)
	}
	return ByteSize(v), nil
}

// String prints the size with the largest unit that divides it exactly, so
// defaults print as they were written ("256KB", "100MB").
func (b ByteSize) String() string {
	if b == 0 {
		return "0B"
	}
	for _, u := range byteUnits {
		if uint64(b)%u.mult == 0 {
			return strconv.FormatUint(uint64(b)/u.mult, 10) + u.suffixes[1%len(u.suffixes)]
		}
	}
	return strconv.FormatUint(uint64(b), 10) + "B"
}

// Set implements flag.Value.
func (b *ByteSize) Set(s string) error {
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalYAML prints the size in its unit form.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// UnmarshalYAML accepts both "256KB" and a plain integer.
func (b *ByteSize) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err != nil {
		return err
	}
	return b.Set(s)
}
