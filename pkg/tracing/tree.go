package tracing

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Node is a span with its children, ordered by start time.
type Node struct {
	Span     Span
	Children []*Node
}

// Tree is a trace's spans arranged by parent. Roots are the spans whose
// parent is not among the spans: one root means the trace is connected;
// more mean a hop lost the context (or its spans are missing).
type Tree struct {
	Roots []*Node
	// Start is the earliest span start, the zero of the printed offsets.
	Start time.Time
}

// BuildTree arranges spans (of one trace) into a tree.
func BuildTree(spans []Span) Tree {
	nodes := make(map[string]*Node, len(spans))
	for _, s := range spans {
		nodes[s.SpanID] = &Node{Span: s}
	}
	var t Tree
	for _, s := range spans {
		n := nodes[s.SpanID]
		if t.Start.IsZero() || s.Start.Before(t.Start) {
			t.Start = s.Start
		}
		if p, ok := nodes[s.ParentID]; ok && s.ParentID != "" {
			p.Children = append(p.Children, n)
			continue
		}
		t.Roots = append(t.Roots, n)
	}
	byStart := func(ns []*Node) {
		sort.SliceStable(ns, func(i, j int) bool { return ns[i].Span.Start.Before(ns[j].Span.Start) })
	}
	byStart(t.Roots)
	for _, n := range nodes {
		byStart(n.Children)
	}
	return t
}

// Connected reports whether the tree has exactly one root.
func (t Tree) Connected() bool { return len(t.Roots) == 1 }

// Find returns the first span named name, depth first.
func (t Tree) Find(name string) (Span, bool) {
	var walk func(ns []*Node) (Span, bool)
	walk = func(ns []*Node) (Span, bool) {
		for _, n := range ns {
			if n.Span.Name == name {
				return n.Span, true
			}
			if s, ok := walk(n.Children); ok {
				return s, true
			}
		}
		return Span{}, false
	}
	return walk(t.Roots)
}

// Path returns the names from the root down to the first span named name,
// or nil if there is none.
func (t Tree) Path(name string) []string {
	var walk func(ns []*Node, path []string) []string
	walk = func(ns []*Node, path []string) []string {
		for _, n := range ns {
			p := append(append([]string(nil), path...), n.Span.Name)
			if n.Span.Name == name {
				return p
			}
			if r := walk(n.Children, p); r != nil {
				return r
			}
		}
		return nil
	}
	return walk(t.Roots, nil)
}

// FormatTree prints the tree, one span a line: start offset from the
// trace's first span, duration, indented name, then the attributes worth
// reading. Roots after the first are marked, since a second root is a hop
// that lost the trace.
func FormatTree(t Tree) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%10s %10s  %s\n", "start", "duration", "span")
	var walk func(n *Node, depth int)
	walk = func(n *Node, depth int) {
		s := n.Span
		fmt.Fprintf(&b, "%10s %10s  %s%s%s\n", fmtDur(s.Start.Sub(t.Start)), fmtDur(s.Duration()),
			strings.Repeat("  ", depth), s.Name, attrSuffix(s))
		for _, c := range n.Children {
			walk(c, depth+1)
		}
	}
	for i, r := range t.Roots {
		if i > 0 {
			b.WriteString("-- another root: the trace is broken here --\n")
		}
		walk(r, 0)
	}
	return b.String()
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

// attrSuffix lists a span's attributes (sorted) and links briefly.
func attrSuffix(s Span) string {
	if len(s.Attrs) == 0 && len(s.Links) == 0 && s.Status == "" {
		return ""
	}
	keys := make([]string, 0, len(s.Attrs))
	for k := range s.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys)+2)
	for _, k := range keys {
		parts = append(parts, k+"="+s.Attrs[k])
	}
	if len(s.Links) > 0 {
		parts = append(parts, fmt.Sprintf("links=%d", len(s.Links)))
	}
	if s.Status != "" {
		parts = append(parts, s.Status)
	}
	return "  [" + strings.Join(parts, " ") + "]"
}
