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

// ReadRequest reads and decodes a push body the way Loki does:
// Content-Encoding gzip or deflate is undone first, then Content-Type
// application/json selects JSON and anything else snappy-compressed
// protobuf.
//
// maxBytes bounds every stage: the body as sent, the body after
// Content-Encoding, and the protobuf after snappy (whose header states its
// decoded length, checked before decoding). A small body that would expand
// past the limit (a decompression bomb) therefore costs at most maxBytes of
// memory and yields ErrTooLarge.
//
// It returns the decoded request and the number of bytes read off the wire.
func ReadRequest(r *http.Request, maxBytes int) (*Request, int, error) {
	if r.ContentLength > int64(maxBytes) {
		return nil, 0, fmt.Errorf("%w: %d bytes exceeds the limit of %d bytes", ErrTooLarge, r.ContentLength, maxBytes)
	}
	raw, err := readLimited(r.Body, maxBytes, r.ContentLength)
	if err != nil {
		return nil, len(raw), err
	}
	wire := len(raw)

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

	req := &Request{}
	switch formatOf(r.Header.Get("Content-Type")) {
	case FormatJSON:
		if err := DecodeJSON(body, req); err != nil {
			return nil, wire, err
		}
	default:
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
// sizeHint (the Content-Length, or -1) sizes the buffer once.
func readLimited(r io.Reader, maxBytes int, sizeHint int64) ([]byte, error) {
	var buf bytes.Buffer
	if sizeHint > 0 {
		buf.Grow(int(sizeHint) + bytes.MinRead)
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
