package index

import (
	"slices"
	"sort"

	"github.com/lokilab/lokilab/pkg/labels"
)

// Series returns the series that match every matcher and have at least one
// chunk overlapping [from, through] (nanoseconds, both inclusive), each with
// only those chunks, sorted by labels. With no matchers every series
// matches; a label a series does not have matches as "".
//
// Matchers that accept a fixed set of values (= and =~"a|b") are answered
// from the postings: the lists of series IDs for each name=value are
// intersected, and only the series left are read. The other matchers (!=,
// !~, any other regexp, and anything that matches "" and so also matches a
// missing label) filter those series one by one.
func (s *Segment) Series(from, through int64, ms ...*labels.Matcher) []Series {
	var (
		out    []Series
		chunks []ChunkRef // one backing array for every result's chunks
		starts []int
	)
	s.forEach(from, through, ms, func(_ int, ser *segSeries) {
		start := len(chunks)
		for _, c := range ser.chunks {
			if c.From > through {
				break // sorted by From: no later chunk overlaps either
			}
			if c.Through >= from {
				chunks = append(chunks, c)
			}
		}
		if len(chunks) > start {
			out = append(out, Series{Labels: ser.labels})
			starts = append(starts, start)
		}
	})
	starts = append(starts, len(chunks))
	for i := range out {
		out[i].Chunks = chunks[starts[i]:starts[i+1]:starts[i+1]]
	}
	return out
}

// LabelNames returns the sorted label names of the series Series would
// return.
func (s *Segment) LabelNames(from, through int64, ms ...*labels.Matcher) []string {
	sel, n := s.selected(from, through, ms)
	if n == 0 {
		return nil
	}
	var names []string
	for i := range s.names {
		if sel.anyOf(s.names[i].lists...) {
			names = append(names, s.names[i].name)
		}
	}
	return names
}

// LabelValues returns the sorted values of label name among the series
// Series would return.
func (s *Segment) LabelValues(name string, from, through int64, ms ...*labels.Matcher) []string {
	e := s.name(name)
	if e == nil {
		return nil
	}
	sel, n := s.selected(from, through, ms)
	if n == 0 {
		return nil
	}
	var values []string
	for j, v := range e.values {
		if sel.anyOf(e.lists[j]) {
			values = append(values, v)
		}
	}
	return values
}

// Stats sums the chunks Series would return, without building the result.
func (s *Segment) Stats(from, through int64, ms ...*labels.Matcher) Stats {
	var st Stats
	s.forEach(from, through, ms, func(_ int, ser *segSeries) {
		before := st.Chunks
		for _, c := range ser.chunks {
			if c.From > through {
				break
			}
			if c.Through >= from {
				st.add(c)
			}
		}
		if st.Chunks > before {
			st.Streams++
		}
	})
	return st
}

// forEach calls fn, in ID order, for each series that matches ms and whose
// chunks span [from, through] as a whole; fn still checks single chunks, as
// a series may have chunks on both sides of the range and none within it.
func (s *Segment) forEach(from, through int64, ms []*labels.Matcher, fn func(id int, ser *segSeries)) {
	if from > through {
		return
	}
	ids, rest, all := s.candidates(ms)
	visit := func(id int) {
		ser := &s.series[id]
		if ser.maxT >= from && ser.minT <= through && ser.labels.Matches(rest...) {
			fn(id, ser)
		}
	}
	if all {
		for id := range s.series {
			visit(id)
		}
		return
	}
	for _, id := range ids {
		visit(int(id))
	}
}

// candidates answers the set matchers from the postings: ids are the sorted
// IDs of the series that satisfy them (all == true when no matcher could
// use postings), rest the matchers still to check on each series.
func (s *Segment) candidates(ms []*labels.Matcher) (ids []uint32, rest []*labels.Matcher, all bool) {
	var lists [][]uint32
	for _, m := range ms {
		set := m.SetMatches()
		// "" also matches series without the label, which no postings list
		// holds: such a matcher can only filter.
		if set == nil || slices.Contains(set, "") {
			rest = append(rest, m)
			continue
		}
		lists = append(lists, s.union(m.Name, set))
	}
	if len(lists) == 0 {
		return nil, rest, true
	}
	return intersect(lists), rest, false
}

// name returns the label-name table entry of name, or nil.
func (s *Segment) name(name string) *nameEntry {
	i := sort.Search(len(s.names), func(i int) bool { return s.names[i].name >= name })
	if i == len(s.names) || s.names[i].name != name {
		return nil
	}
	return &s.names[i]
}

// union returns the sorted IDs of the series with name equal to one of
// values. A single list is returned as is, shared with the segment.
func (s *Segment) union(name string, values []string) []uint32 {
	e := s.name(name)
	if e == nil {
		return nil
	}
	var lists [][]uint32
	for _, v := range values {
		j := sort.SearchStrings(e.values, v)
		if j < len(e.values) && e.values[j] == v {
			lists = append(lists, e.lists[j])
		}
	}
	switch len(lists) {
	case 0:
		return nil
	case 1:
		return lists[0]
	}
	// A series has one value per name, so the lists are disjoint: the union
	// is their concatenation, sorted.
	var u []uint32
	for _, l := range lists {
		u = append(u, l...)
	}
	slices.Sort(u)
	return u
}

// intersect returns the IDs in every list. It walks the shortest list
// against the others, so the cost is bounded by the most selective matcher.
// The lists are not modified; with one list, it is returned as is.
func intersect(lists [][]uint32) []uint32 {
	slices.SortFunc(lists, func(a, b []uint32) int { return len(a) - len(b) })
	out := lists[0]
	for _, l := range lists[1:] {
		if len(out) == 0 {
			return nil
		}
		var next []uint32
		i, j := 0, 0
		for i < len(out) && j < len(l) {
			switch {
			case out[i] < l[j]:
				i++
			case out[i] > l[j]:
				j++
			default:
				next = append(next, out[i])
				i++
				j++
			}
		}
		out = next
	}
	return out
}

// selected returns the set of series IDs Series would return, and its size.
func (s *Segment) selected(from, through int64, ms []*labels.Matcher) (bitset, int) {
	sel := make(bitset, (len(s.series)+63)/64)
	n := 0
	s.forEach(from, through, ms, func(id int, ser *segSeries) {
		for _, c := range ser.chunks {
			if c.From > through {
				return
			}
			if c.Through >= from {
				sel.set(id)
				n++
				return
			}
		}
	})
	return sel, n
}

// bitset is a set of series IDs.
type bitset []uint64

func (b bitset) set(i int) { b[i/64] |= 1 << (uint(i) % 64) }

func (b bitset) has(i uint32) bool { return b[i/64]&(1<<(i%64)) != 0 }

// anyOf reports whether any ID of the lists is in the set.
func (b bitset) anyOf(lists ...[]uint32) bool {
	for _, l := range lists {
		for _, id := range l {
			if b.has(id) {
				return true
			}
		}
	}
	return false
}
