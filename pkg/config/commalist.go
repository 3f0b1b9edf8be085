package config

import "strings"

// CommaList is a flag.Value over a []string written as a comma-separated
// list: "a:7946,b:7946". Empty items are dropped.
type CommaList []string

func (l *CommaList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

// Set implements flag.Value.
func (l *CommaList) Set(s string) error {
	*l = nil
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}
