// Package loadgen pushes realistic log load to a Loki push endpoint
// (lokilab's or Loki's own) and proves afterwards that nothing it was told
// was stored has been lost.
//
// # Load
//
// A Loadgen runs Config.Concurrency workers, each with its own HTTP client
// and its own random source (seeded from Config.Seed, so a run is
// reproducible). A worker builds a push of Config.BatchLines lines spread
// over Config.StreamsPerPush streams of one tenant, waits for the pacer, and
// sends it as snappy-compressed protobuf or JSON with pkg/push's encoders.
// Lines come in four shapes (nginx access log, logfmt, JSON, a multi-line Go
// panic; see shape_*.go), mixed by Config.Shapes and padded to
// Config.LineSize on average.
//
// Every line carries its identity, a LineID written "lid=<run>-<worker>-<seq>"
// (in JSON lines the field "lid":"<run>-<worker>-<seq>"; in a stack trace on
// its first line): the run is a short random ID, the worker its index, and
// seq counts the worker's lines from 0. Lines of one stream in one push get
// consecutive sequence numbers and strictly increasing timestamps, which is
// what keeps the ack log small.
//
// The pacer (pacer.go) spends golang.org/x/time/rate tokens per line or per
// byte, and a Pattern reshapes the rate over time: steady, a square wave
// (on/off) or a spike every period.
//
// # Ack log
//
// With Config.AckLog set, every push answered 204 — and only those — is
// appended to a text file, one record per stream of the push, after the 204
// arrived. A record is one line of six tab-separated fields:
//
//	<tenant> TAB <labels> TAB <run>-<worker> TAB <first seq> TAB <first ts> TAB <deltas>
//
//	tenant      the X-Scope-OrgID sent; empty when none was sent
//	labels      the stream's label set in canonical form, {a="1", b="2"}
//	            (labels.Labels.String: values Go-quoted, so no raw tab or
//	            newline can occur in it)
//	run         [0-9a-z]{1,32}; worker a decimal integer
//	first seq   decimal: the sequence number of the record's first line; the
//	            i-th line (from 0) has sequence number first seq + i
//	first ts    decimal Unix nanoseconds of the first line
//	deltas      comma-separated decimal nanoseconds: line i's timestamp is
//	            line i-1's plus the i-th delta; empty for a one-line record.
//	            The number of lines is one plus the number of deltas.
//
// Lines starting with '#' are comments: a file starts with
// "# lokilab ack log v1" (a reader refuses another version), and each run
// appends "# run <id> ..." when it starts. Blank lines are ignored.
//
// A record costs about 120 bytes plus the lines' deltas (a few digits
// each): at the defaults, 12 bytes per acknowledged line, about 5% of the
// lines' own size. Records are buffered and flushed every progress interval and when
// Run returns: a load generator killed with SIGKILL loses at most the last
// interval's records, which only makes the proof cover fewer lines, never
// claim a line that was not acknowledged.
//
// # Verify
//
// Verify reads an ack log back through Loki's query API
// (/loki/api/v1/query_range, forward, paged). It holds one bit per
// acknowledged line ID, not the lines, so a log of 30 million lines needs
// a few megabytes. Each tenant is queried once over its time range, with
// the labels all its streams share as the selector and the run IDs as a line
// filter; lines are matched to the log by their LineID. It reports the
// acknowledged lines found, those missing (with examples: tenant, stream,
// timestamp) and those found more than once, which query-time dedupe should
// have removed.
package loadgen
