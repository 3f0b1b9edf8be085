package push

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/valyala/fastjson"

	"github.com/lokilab/lokilab/pkg/labels"
)

// DecodeJSON decodes Loki's JSON push body:
//
//	{"streams": [{"stream": {"app": "api"},
//	              "values": [["1700000000000000000", "a line"],
//	                         ["1700000000000000001", "another", {"trace_id": "abc"}]]}]}
//
// Timestamps are strings of Unix nanoseconds; the optional third element of
// a value is the entry's structured metadata, an object of strings. Unknown
// keys are ignored, as Loki does. The stream's labels are rendered in
// canonical form into Stream.Labels.
//
// The decoder uses github.com/valyala/fastjson, which parses without
// reflection into values it reuses from one document to the next (several
// times the throughput of encoding/json on push bodies, FIELD-NOTES.md).
// Parsers are pooled, so their values cost nothing in steady state; the
// strings the request keeps are copied out of the parser into one arena per
// request, sized by the body (a string's unescaped form is never longer
// than its escaped form in the body, so the arena never grows). A 1000-line
// push thus costs a handful of allocations, not thousands.
func DecodeJSON(body []byte, dst *Request) error {
	p := parserPool.Get().(*fastjson.Parser)
	defer parserPool.Put(p)
	d := jsonDecoder{arena: make([]byte, 0, len(body))}
	return d.decode(p, body, dst)
}

var parserPool = sync.Pool{New: func() any { return new(fastjson.Parser) }}

// jsonDecoder carries one request's allocators.
type jsonDecoder struct {
	arena  []byte
	labels labelAlloc
}

// intern copies b into the arena and returns a string aliasing the copy.
func (d *jsonDecoder) intern(b []byte) string {
	if len(d.arena)+len(b) > cap(d.arena) {
		return string(b) // unreachable by the sizing argument above; safe anyway
	}
	start := len(d.arena)
	d.arena = append(d.arena, b...)
	return aliasString(d.arena[start:len(d.arena):len(d.arena)])
}

func (d *jsonDecoder) decode(p *fastjson.Parser, body []byte, dst *Request) error {
	root, err := p.ParseBytes(body)
	if err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if root.Type() != fastjson.TypeObject {
		return fmt.Errorf("push request must be a JSON object, got %s", root.Type())
	}
	sv := root.Get("streams")
	if sv == nil || sv.Type() == fastjson.TypeNull {
		dst.Streams = dst.Streams[:0]
		return nil
	}
	streams, err := sv.Array()
	if err != nil {
		return fmt.Errorf("streams: %w", err)
	}
	if cap(dst.Streams) < len(streams) {
		dst.Streams = make([]Stream, 0, len(streams))
	}
	dst.Streams = dst.Streams[:0]
	for i, s := range streams {
		dst.Streams = append(dst.Streams, Stream{})
		if err := d.stream(s, &dst.Streams[i]); err != nil {
			return fmt.Errorf("streams[%d]: %w", i, err)
		}
	}
	return nil
}

func (d *jsonDecoder) stream(v *fastjson.Value, dst *Stream) error {
	if v.Type() != fastjson.TypeObject {
		return fmt.Errorf("want an object, got %s", v.Type())
	}
	// The label strings only live until String() has copied them.
	ls, err := stringMap(v.Get("stream"), nil, aliasString)
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	// A name must be checked here, not left to the distributor's parse of
	// the rendered string: the key `app="x", evil` would render as two
	// labels. Like Loki, a bad label name fails the whole request.
	for _, l := range ls {
		if !labels.IsValidName(l.Name) {
			return fmt.Errorf("stream: invalid label name %q", l.Name)
		}
	}
	dst.Labels = labels.New(ls...).String()

	vv := v.Get("values")
	if vv == nil || vv.Type() == fastjson.TypeNull {
		return nil
	}
	values, err := vv.Array()
	if err != nil {
		return fmt.Errorf("values: %w", err)
	}
	dst.Entries = make([]Entry, len(values))
	for i, ev := range values {
		if err := d.entry(ev, &dst.Entries[i]); err != nil {
			return fmt.Errorf("values[%d]: %w", i, err)
		}
	}
	return nil
}

func (d *jsonDecoder) entry(v *fastjson.Value, e *Entry) error {
	if v.Type() != fastjson.TypeArray {
		return fmt.Errorf(`want ["<unix ns>", "<line>"], got %s`, v.Type())
	}
	parts, _ := v.Array()
	if len(parts) < 2 || len(parts) > 3 {
		return fmt.Errorf(`want 2 or 3 elements ["<unix ns>", "<line>", {metadata}], got %d`, len(parts))
	}
	tsb, err := parts[0].StringBytes()
	if err != nil {
		return fmt.Errorf("timestamp must be a string of Unix nanoseconds: %w", err)
	}
	ts, err := strconv.ParseInt(aliasString(tsb), 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q is not an integer number of Unix nanoseconds", tsb)
	}
	line, err := parts[1].StringBytes()
	if err != nil {
		return fmt.Errorf("line: %w", err)
	}
	e.Timestamp, e.Line = ts, d.intern(line)
	if len(parts) == 3 && parts[2].Type() != fastjson.TypeNull {
		md, err := stringMap(parts[2], &d.labels, d.intern)
		if err != nil {
			return fmt.Errorf("structured metadata: %w", err)
		}
		e.StructuredMetadata = md
	}
	return nil
}

// stringMap reads a JSON object whose values are all strings, making the
// strings with str and the slice from alloc (nil: a plain allocation).
func stringMap(v *fastjson.Value, alloc *labelAlloc, str func([]byte) string) ([]labels.Label, error) {
	if v == nil || v.Type() == fastjson.TypeNull {
		return nil, nil
	}
	o, err := v.Object()
	if err != nil {
		return nil, err
	}
	var out []labels.Label
	if alloc != nil {
		out = alloc.make(o.Len())
	} else {
		out = make([]labels.Label, 0, o.Len())
	}
	o.Visit(func(k []byte, val *fastjson.Value) {
		if err != nil {
			return
		}
		s, serr := val.StringBytes()
		if serr != nil {
			err = fmt.Errorf("value of %q: %w", k, serr)
			return
		}
		out = append(out, labels.Label{Name: str(k), Value: str(s)})
	})
	return out, err
}

// EncodeJSON writes req in Loki's JSON push format. It is the client side of
// DecodeJSON (the load generator and tests use it), written with
// encoding/json because only the decode side is hot.
func EncodeJSON(w io.Writer, req *Request) error {
	type jsonStream struct {
		Stream map[string]string `json:"stream"`
		Values [][]any           `json:"values"`
	}
	out := struct {
		Streams []jsonStream `json:"streams"`
	}{Streams: make([]jsonStream, 0, len(req.Streams))}
	for _, s := range req.Streams {
		ls, err := labels.Parse(s.Labels)
		if err != nil {
			return fmt.Errorf("stream %s: %w", s.Labels, err)
		}
		js := jsonStream{Stream: ls.Map(), Values: make([][]any, 0, len(s.Entries))}
		for _, e := range s.Entries {
			v := []any{strconv.FormatInt(e.Timestamp, 10), e.Line}
			if len(e.StructuredMetadata) > 0 {
				md := make(map[string]string, len(e.StructuredMetadata))
				for _, l := range e.StructuredMetadata {
					md[l.Name] = l.Value
				}
				v = append(v, md)
			}
			js.Values = append(js.Values, v)
		}
		out.Streams = append(out.Streams, js)
	}
	return json.NewEncoder(w).Encode(out)
}
