package pushtest

import (
	"bytes"
	"compress/flate"
)

// Deflate compresses b as raw DEFLATE (RFC 1951), what Loki reads for
// Content-Encoding: deflate.
func Deflate(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := flate.NewWriter(&buf, flate.DefaultCompression)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}
