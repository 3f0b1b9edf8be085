package push

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/golang/snappy"
)

// ErrTooLarge is returned when a body exceeds the size limit, as sent or once
// decompressed. The distributor answers it with 413.
var ErrTooLarge = errors.New("request body too large")

// Format is a push body's encoding.
type Format int

const (
	// FormatProtobuf is a snappy-compressed PushRequest: Loki's default
	// for any Content-Type other than application/json.
	FormatProtobuf Format = iota
	// FormatJSON is Loki's JSON push body.
	FormatJSON
)

func (f Format) String() string {
	if f == FormatJSON {
		return "json"
	}
	return "protobuf"
}

// ReadOptions bound the decoding of a push body.
type ReadOptions struct {
	// MaxBytes bounds every stage: the body as sent, after Content-Encoding,
	// and after snappy.
	MaxBytes int
	// Reserve, if set, is charged with the memory each stage will hold, as
	// early as its size is known: the body as declared by Content-Length
	// before it is read (or as read, without one), the body after gzip or
	// deflate, the snappy-decoded protobuf before it is allocated (its
	// header states its length), and the JSON parse before it runs. An
	// error from Reserve stops the read and is returned unwrapped.
	Reserve func(bytes int) error
}

// Memory a decoded body holds, per byte of uncompressed body: the protobuf
// buffer (lines alias it) plus the entry slices; for JSON, the parser's copy,
// its values, and the arena the lines are copied to. Measured on the
// realistic line mix of the benchmarks, rounded up.
const (
	protobufDecodeFactor = 2
	jsonDecodeFactor     = 3
)

// ReadRequest reads and decodes a push body the way Loki does:
// Content-Encoding gzip or deflate is undone first, then Content-Type
// application/json selects JSON and anything else snappy-compressed
// protobuf.
//
// MaxBytes bounds every stage, so a small body that would expand past it (a
// decompression bomb) yields ErrTooLarge having allocated at most MaxBytes
// for that stage; Reserve lets the caller refuse a request before the memory
// it needs is allocated.
//
// It returns the decoded request and the number of bytes read off the wire.
func ReadRequest(r *http.Request, o ReadOptions) (*Request, int, error) {
	reserve := o.Reserve
	if reserve == nil {
		reserve = func(int) error { return nil }
	}
	maxBytes := o.MaxBytes
	if r.ContentLength > int64(maxBytes) {
		return nil, 0, fmt.Errorf("%w: %d bytes exceeds the limit of %d bytes", ErrTooLarge, r.ContentLength, maxBytes)
	}
	if r.ContentLength > 0 {
		if err := reserve(int(r.ContentLength)); err != nil {
			return nil, 0, err
		}
	}
	raw, err := readLimited(r.Body, maxBytes, r.ContentLength)
	if err != nil {
		return nil, len(raw), err
	}
	wire := len(raw)
	if r.ContentLength <= 0 {
		if err := reserve(wire); err != nil {
			return nil, wire, err
		}
	}

	body := raw
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, wire, fmt.Errorf("invalid gzip body: %w", err)
		}
		if body, err = readLimited(zr, maxBytes, -1); err != nil {
			return nil, wire, decompressError("gzip", err)
		}
	case "deflate":
		// Raw DEFLATE (RFC 1951), as Loki reads it.
		if body, err = readLimited(flate.NewReader(bytes.NewReader(raw)), maxBytes, -1); err != nil {
			return nil, wire, decompressError("deflate", err)
		}
	default:
		return nil, wire, fmt.Errorf("unsupported Content-Encoding %q: want gzip, deflate or none", enc)
	}
	if len(body) != len(raw) {
		if err := reserve(len(body)); err != nil {
			return nil, wire, err
		}
	}

	req := &Request{}
	switch formatOf(r.Header.Get("Content-Type")) {
	case FormatJSON:
		if err := reserve(jsonDecodeFactor * len(body)); err != nil {
			return nil, wire, err
		}
		if err := DecodeJSON(body, req); err != nil {
			return nil, wire, err
		}
	default:
		n, err := snappy.DecodedLen(body)
		if err != nil {
			return nil, wire, fmt.Errorf("invalid snappy-compressed protobuf body: %w", err)
		}
		if n > maxBytes {
			return nil, wire, fmt.Errorf("%w: decompresses to %d bytes, over the limit of %d bytes", ErrTooLarge, n, maxBytes)
		}
		if err := reserve(protobufDecodeFactor * n); err != nil {
			return nil, wire, err
		}
		pb, err := DecodeSnappy(body, maxBytes)
		if err != nil {
			return nil, wire, err
		}
		if err := DecodeProto(pb, req); err != nil {
			return nil, wire, err
		}
	}
	return req, wire, nil
}

// DecodeSnappy undoes snappy block compression, refusing (before allocating)
// output larger than maxBytes.
func DecodeSnappy(b []byte, maxBytes int) ([]byte, error) {
	n, err := snappy.DecodedLen(b)
	if err != nil {
		return nil, fmt.Errorf("invalid snappy-compressed protobuf body: %w", err)
	}
	if n > maxBytes {
		return nil, fmt.Errorf("%w: decompresses to %d bytes, over the limit of %d bytes", ErrTooLarge, n, maxBytes)
	}
	out, err := snappy.Decode(make([]byte, n), b)
	if err != nil {
		return nil, fmt.Errorf("invalid snappy-compressed protobuf body: %w", err)
	}
	return out, nil
}

// EncodeSnappyProto is the client side of a protobuf push: the body to POST
// with Content-Type application/x-protobuf.
func EncodeSnappyProto(req *Request) []byte {
	return snappy.Encode(nil, AppendProto(nil, req))
}

func formatOf(contentType string) Format {
	mt, _, err := mime.ParseMediaType(contentType)
	if err == nil && mt == "application/json" {
		return FormatJSON
	}
	return FormatProtobuf
}

// readLimited reads r to the end, failing with ErrTooLarge past maxBytes.
// sizeHint (the Content-Length, or -1) sizes the buffer, up to 1 MiB: a
// client that declares 100 MB and sends nothing must not make us allocate
// 100 MB; larger bodies grow the buffer as they arrive.
func readLimited(r io.Reader, maxBytes int, sizeHint int64) ([]byte, error) {
	var buf bytes.Buffer
	if sizeHint > 0 {
		buf.Grow(int(min(sizeHint, 1<<20)) + bytes.MinRead)
	}
	n, err := buf.ReadFrom(io.LimitReader(r, int64(maxBytes)+1))
	if err != nil {
		return buf.Bytes(), fmt.Errorf("reading body: %w", err)
	}
	if n > int64(maxBytes) {
		return buf.Bytes(), fmt.Errorf("%w: more than %d bytes", ErrTooLarge, maxBytes)
	}
	return buf.Bytes(), nil
}

func decompressError(enc string, err error) error {
	if errors.Is(err, ErrTooLarge) {
		return fmt.Errorf("%w (after %s decompression)", err, enc)
	}
	return fmt.Errorf("invalid %s body: %w", enc, err)
}
