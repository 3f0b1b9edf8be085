// Package tracing is lokilab's OpenTelemetry setup: one tracer provider per
// process, handed to every component through its Deps (never installed as
// the global otel provider), W3C trace context carried in HTTP headers and
// in Kafka record headers, trace IDs in log lines and as exemplars, an OTLP
// exporter switched on by configuration, and an in-process recorder that
// keeps finished spans so the lab can print one push as a span tree.
//
// # Why a provider in Deps and not otel.SetTracerProvider
//
// The project keeps no global state: tests start several systems in one
// process (three ingesters and a distributor in `lokilab run`, a scenario's
// system beside a test's), and a global provider would mix their spans and
// make one test's exporter another's. Each component gets a
// trace.TracerProvider in its Deps; nil means a no-op provider.
//
// # What costs what
//
// Spans are started per request, per Kafka batch and per flush cycle — never
// per line. With tracing off (the default) the provider is otel's no-op one:
// starting a span returns a non-recording span that still carries the
// caller's span context, so a client's traceparent is still copied into the
// Kafka records (the BRIEF's contract) at the price of parsing one header.
// Ingesters skip their trace bookkeeping entirely when the provider is a
// no-op (Enabled).
//
// # The shape of a push's trace
//
//	HTTP POST loki_api_v1_push            server span (pkg/server)
//	└─ distributor.push                   (pkg/distributor)
//	   ├─ distributor.decode
//	   ├─ distributor.validate
//	   └─ kafka.produce                   its context goes into every record's traceparent header
//	      └─ ingester.consume             one per (poll batch, partition, trace), CHILD of kafka.produce
//	         └─ ingester.flush            the flush cycle that made the push durable
//	            ├─ store.put_chunk        one per chunk
//	            ├─ index.write            one per tenant
//	            └─ kafka.commit_offset
//
// The consume span is a child of the produce span, not a span linked to it.
// OpenTelemetry's messaging conventions suggest links for batch consumers,
// because a batch has many producers and a span has one parent. lokilab
// groups a poll's records by the trace they carry and opens one child span
// per group: each group has exactly one parent, so parenthood is honest, the
// number of spans is bounded by the number of pushes in the batch (not
// lines), and a reader gets one connected tree from the HTTP request to the
// object store — which is the question the lab asks ("where did my line
// go, and how long did each hop take?"). The flush cycle is the one place
// with truly many parents: it writes chunks holding many pushes' lines. It
// is a child of the oldest traced push whose data it flushes and carries a
// link to every other one (up to MaxFlushLinks), so every push's trace
// reaches the flush either as a child or through a link.
package tracing
