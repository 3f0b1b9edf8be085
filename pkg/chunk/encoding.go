package chunk

import (
	"fmt"
	"slices"
	"sync"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"
)

// Encoding is the codec that compresses a chunk's blocks. Its value is the
// codec byte of the chunk header (FORMAT.md), so the numbers never change.
type Encoding uint8

// The codecs. Snappy is the default; see the package doc for the trade-offs.
const (
	EncodingNone   Encoding = 0
	EncodingSnappy Encoding = 1
	EncodingZstd   Encoding = 2
)

// ParseEncoding parses a codec name as String prints it: "none", "snappy"
// or "zstd".
func ParseEncoding(s string) (Encoding, error) {
	switch s {
	case "none":
		return EncodingNone, nil
	case "snappy":
		return EncodingSnappy, nil
	case "zstd":
		return EncodingZstd, nil
	}
	return 0, fmt.Errorf("chunk: unknown encoding %q (want none, snappy or zstd)", s)
}

// String returns the codec's name, or "Encoding(N)" for an unknown value.
func (e Encoding) String() string {
	switch e {
	case EncodingNone:
		return "none"
	case EncodingSnappy:
		return "snappy"
	case EncodingZstd:
		return "zstd"
	}
	return fmt.Sprintf("Encoding(%d)", uint8(e))
}

// Set implements flag.Value, so an Encoding can be a flag.
func (e *Encoding) Set(s string) error {
	v, err := ParseEncoding(s)
	if err != nil {
		return err
	}
	*e = v
	return nil
}

// MarshalText implements encoding.TextMarshaler (YAML and JSON print the name).
func (e Encoding) MarshalText() ([]byte, error) {
	if !e.valid() {
		return nil, fmt.Errorf("chunk: unknown encoding %d", uint8(e))
	}
	return []byte(e.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (e *Encoding) UnmarshalText(b []byte) error { return e.Set(string(b)) }

func (e Encoding) valid() bool { return e <= EncodingZstd }

// Pool holds the compression state that chunks share: one zstd encoder and
// one zstd decoder, created on first use (each is safe for concurrent use
// and carries several MiB of tables, which is why there must not be one per
// block or per chunk), and scratch buffers for cutting and reading blocks.
// Create one per process with NewPool and pass it to New and Decode with
// WithPool. A Pool is safe for concurrent use.
type Pool struct {
	encOnce sync.Once
	enc     *zstd.Encoder
	encErr  error

	decOnce sync.Once
	dec     *zstd.Decoder
	decErr  error

	// bufs holds *[]byte scratch buffers: the serialised head block while
	// it is cut, and decompressed blocks while they are iterated. A
	// sync.Pool lets the garbage collector reclaim them when idle.
	bufs sync.Pool
	// arenas holds *[]byte head arenas of sealed chunks, for the next
	// chunk's head (Chunk.growArena). They are kept apart from bufs so that
	// a head gets an arena of about its block size, not a compression
	// scratch buffer a sixth larger, which it would hold for as long as the
	// chunk is open.
	arenas sync.Pool
}

// NewPool returns an empty Pool. It is cheap: the zstd encoder and decoder
// are built the first time a zstd block is written or read. A Pool starts
// no goroutines and needs no closing; the garbage collector reclaims it.
func NewPool() *Pool { return &Pool{} }

func (p *Pool) zstdEncoder() (*zstd.Encoder, error) {
	p.encOnce.Do(func() {
		// No zstd frame checksum: every block already has a CRC32-C.
		p.enc, p.encErr = zstd.NewWriter(nil, zstd.WithEncoderCRC(false))
	})
	return p.enc, p.encErr
}

func (p *Pool) zstdDecoder() (*zstd.Decoder, error) {
	p.decOnce.Do(func() {
		p.dec, p.decErr = zstd.NewReader(nil,
			zstd.WithDecoderMaxMemory(MaxBlockSize),
			// DecodeAll must not grow the output past the capacity we
			// give it, which is the block size the meta section claims:
			// a corrupt block cannot make us allocate more than that.
			zstd.WithDecodeAllCapLimit(true),
			zstd.IgnoreChecksum(true),
		)
	})
	return p.dec, p.decErr
}

// getBuf returns a scratch buffer (of length 0); give it back with putBuf.
// Buffers travel as *[]byte so that putting one back does not allocate.
func (p *Pool) getBuf() *[]byte {
	if b, ok := p.bufs.Get().(*[]byte); ok {
		*b = (*b)[:0]
		return b
	}
	return new([]byte)
}

func (p *Pool) putBuf(b *[]byte) {
	if cap(*b) == 0 || cap(*b) > 2*MaxBlockSize {
		return
	}
	p.bufs.Put(b)
}

// getArena returns a pooled head arena (of length 0) whose capacity is in
// [lo, hi], or nil. One that does not fit (a chunk of another block size
// sealed it) goes back to the pool.
func (p *Pool) getArena(lo, hi int) *[]byte {
	a, ok := p.arenas.Get().(*[]byte)
	if !ok {
		return nil
	}
	if c := cap(*a); c < lo || c > hi {
		p.arenas.Put(a)
		return nil
	}
	*a = (*a)[:0]
	return a
}

func (p *Pool) putArena(a *[]byte) {
	if cap(*a) == 0 || cap(*a) > MaxBlockSize {
		return
	}
	p.arenas.Put(a)
}

// compress appends the compressed form of src to dst.
func (p *Pool) compress(enc Encoding, dst, src []byte) ([]byte, error) {
	switch enc {
	case EncodingNone:
		return append(dst, src...), nil
	case EncodingSnappy:
		// snappy.Encode writes into dst's spare capacity when it is at
		// least MaxEncodedLen, so reserve that and avoid its allocation.
		n := len(dst)
		dst = slices.Grow(dst, snappy.MaxEncodedLen(len(src)))
		out := snappy.Encode(dst[n:cap(dst)], src)
		return dst[:n+len(out)], nil
	case EncodingZstd:
		e, err := p.zstdEncoder()
		if err != nil {
			return dst, fmt.Errorf("chunk: zstd encoder: %w", err)
		}
		return e.EncodeAll(src, dst), nil
	}
	return dst, fmt.Errorf("chunk: unknown encoding %d", uint8(enc))
}

// decompress returns the size bytes that src decompresses to, checking that
// the codec agrees on the size. It uses buf's capacity when it can and never
// allocates more than size bytes. EncodingNone needs no call.
func (p *Pool) decompress(enc Encoding, buf, src []byte, size int) ([]byte, error) {
	switch enc {
	case EncodingSnappy:
		n, err := snappy.DecodedLen(src)
		if err != nil {
			return nil, fmt.Errorf("snappy: %w", err)
		}
		if n != size {
			return nil, fmt.Errorf("snappy block decodes to %d bytes, meta says %d", n, size)
		}
		buf = grow(buf[:0], size)[:size]
		out, err := snappy.Decode(buf, src)
		if err != nil {
			return nil, fmt.Errorf("snappy: %w", err)
		}
		return out, nil
	case EncodingZstd:
		d, err := p.zstdDecoder()
		if err != nil {
			return nil, fmt.Errorf("zstd decoder: %w", err)
		}
		out, err := d.DecodeAll(src, grow(buf[:0], size))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		if len(out) != size {
			return nil, fmt.Errorf("zstd block decodes to %d bytes, meta says %d", len(out), size)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown encoding %d", uint8(enc))
}

// grow returns b with room for at least n more bytes.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n)
	copy(nb, b)
	return nb
}

// Option configures New and Decode.
type Option func(*options)

type options struct{ pool *Pool }

// WithPool makes the chunk use p's shared zstd encoder, decoder and buffers
// instead of a private Pool of its own.
func WithPool(p *Pool) Option { return func(o *options) { o.pool = p } }

func applyOptions(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.pool == nil {
		o.pool = NewPool()
	}
	return o
}
