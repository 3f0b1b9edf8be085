// Package chunk is lokilab's chunk format: the compressed unit in which one
// stream's log lines are written to object storage. The byte layout is
// specified in FORMAT.md beside this file; this package is its reference
// encoder and decoder. It is written by hand rather than taken from a
// library because the format is one of the lessons of the lab: what a chunk
// costs, and why, is decided here.
//
// # Why chunks
//
// An ingester could write every push to object storage as it arrives, but
// object stores charge per request and per object, and small objects
// compress badly. Instead each stream's lines are gathered in memory and
// written as one chunk of about 1.5 MiB once it is full, idle or old.
// Lines of one stream are very alike (the same program printed them, with
// the same format string), so a general-purpose compressor over many of them
// removes most of their bytes. BenchmarkCompressionRatio measures it on
// generated nginx, logfmt, JSON and Java stack-trace lines: 2.8–4.9× with
// snappy and 4.1–7.9× with zstd, although the generator's random IDs,
// addresses and latencies make those lines less repetitive than most real
// logs. Fewer, larger objects mean fewer PUTs on the write path, fewer index
// entries and fewer GETs on the read path.
//
// # Why blocks
//
// A chunk is not compressed as one piece: its entries are cut into blocks of
// about 256 KiB uncompressed (the block size), each compressed on its own and
// described in a meta section at the end of the object with its time range.
// A query for ten minutes of a two-hour chunk decompresses only the blocks
// whose range overlaps those ten minutes, and an iterator holds one block's
// worth of decompressed bytes at a time rather than the whole chunk. Smaller
// blocks make reads more selective but compress worse (each block starts
// with an empty compression window, and carries its own framing and
// checksum); larger blocks compress a little better but cost more memory and
// CPU per read. 256 KiB is Loki's default and sits on the flat part of that
// curve: a compressor's window fills with representative lines long before
// 256 KiB, so doubling it gains little ratio.
//
// While a chunk is being built, the newest entries live uncompressed in a
// head block; before an entry would take it past the block size it is
// sorted by time, serialised and compressed into a cut block, which is
// immutable from then on. A head whose entries arrived in time order (the
// usual case) is kept serialised as it fills, with no per-entry index, so
// that its memory is the block it will become; the first entry out of order
// makes it build an index (see headBlock in chunk.go).
//
// # Checksums
//
// Object stores return what they were given, but disks, memory and networks
// between here and there flip bits. Every block carries a CRC32-Castagnoli of
// its stored (compressed) bytes, and the meta section carries one over the
// header and itself, so Decode rejects a damaged chunk with an error naming
// the damaged part, instead of the decompressor producing garbage lines or
// the query returning wrong ones. Castagnoli rather than IEEE because it
// detects more error patterns at these lengths and modern CPUs compute it in
// hardware (SSE4.2, ARMv8), so checking a whole 1.5 MiB chunk costs about a
// hundred microseconds.
//
// # Codecs
//
// Each chunk names its codec in its header; all blocks of one chunk use it.
//
//   - snappy (the default, as in Loki): fast to compress and very fast to
//     decompress (hundreds of MB/s to GB/s per core), at a moderate ratio. The
//     ingester compresses every line once and queries decompress many lines
//     many times, so cheap CPU on both sides is usually the right trade.
//   - zstd: a markedly better ratio (objects 1.5–1.6× smaller than snappy's
//     on the generated lines), so less storage and fewer bytes fetched per
//     query, for several times the CPU to compress (BenchmarkAppend) and
//     about twice the CPU to decompress (BenchmarkDecodeIterate). Worth it
//     where storage or egress dominates the bill. Its encoder and decoder
//     carry megabytes of state, so they are shared through a Pool (below).
//   - none: no compression. For measuring what the others save, and for
//     debugging with a hex dump.
//
// # Sharing encoders: Pool
//
// A zstd encoder is expensive to create (it allocates its match tables), so
// one must not be created per block, nor per chunk when an ingester holds
// thousands of chunks. A Pool owns one zstd encoder, one zstd decoder (both
// safe for concurrent use) and the scratch buffers used to cut blocks and to
// decompress them while iterating. A process should create one Pool and pass
// it to every chunk with WithPool. A chunk built or decoded without one gets
// a private Pool, which is free for snappy and none but costs a zstd encoder
// or decoder (megabytes, allocated on first use) per zstd chunk.
//
// # Memory and concurrency
//
// Append copies each line and its metadata into the head block's arena, a
// byte slice that grows to the block size and is reused after every
// cut (unless an iterator still reads it), so appending does not allocate
// per entry in steady state (BenchmarkAppend: 0 allocs/op). Seal hands the
// arena to the Pool for the next chunk's head. Each cut block is kept in a
// slice of its own, of its compressed size; Encode assembles the object. Iterators
// decompress a block when the merge reaches it, into a buffer reused by the
// next block (blocks that overlap in time are open at once), and return
// entries whose strings alias it: they are valid until the next call to
// Next.
//
// A Chunk is not safe for concurrent use by itself. It is built for the
// ingester's pattern: one writer, and readers that query the chunk while it
// is still being appended to. That is safe if the caller holds a
// sync.RWMutex, write-locked around Append and Encode and read-locked around
// Iterator: the iterator snapshots the head block when it is created (the
// length of an in-order head's arena, or an indexed head's index entries),
// the arena's bytes below that length are never written again, cut blocks
// are never modified, and the head's arena is not reused after a cut if an
// iterator may still be reading it. The iterator itself
// may then be used without the lock. A decoded chunk is read-only and any
// number of goroutines may iterate it at once.
package chunk
