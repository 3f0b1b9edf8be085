// Package storage is lokilab's access to the object store, where flushed
// chunks and index segments live for good.
//
// # Why an object store
//
// Loki keeps its data in S3 (or GCS, Azure, a filesystem) rather than on
// the ingesters' disks, and so does lokilab. An object store is cheap per
// byte, replicated and durable without anyone managing disks, and shared:
// any querier or compactor reads what any ingester wrote, so those
// components keep no state and can be scaled, killed and replaced freely.
// The price shapes the rest of the design. Every request costs money and
// tens of milliseconds, so data is written as few, large, immutable objects
// (chunks of about 1.5MB, one index segment per tenant and day) and read
// with as few requests as possible. Objects are written whole and never
// modified; listing is the slowest, costliest operation and, on some
// stores, lags behind writes, so readers find objects through the index,
// not by listing.
//
// The mechanism is thanos-io/objstore, the bucket abstraction Thanos,
// Mimir and Loki share; this package chooses the backend from Config,
// wraps it with Loki's metrics and adds fault injection. Three backends:
//
//   - filesystem (default): a directory tree mirroring the keys, hardened
//     to keep S3's promises: uploads are all or nothing (temporary file
//     and rename), Delete removes one object, keys cannot leave the root.
//   - s3: AWS S3 or MinIO (docker compose), through objstore's minio-go
//     client. Building the bucket makes no request; a wrong endpoint or
//     key shows up as a failed operation, counted in
//     loki_objstore_bucket_operation_failures_total. The client retries
//     failed requests (up to 10 times, with backoff), so an unreachable
//     endpoint surfaces as the caller's context deadline rather than
//     "connection refused": every operation needs a deadline.
//   - memory: objstore's map; gone when the process exits. For tests.
//
// # Metrics
//
// New registers objstore's instrumentation with a loki_ prefix, giving
// the series Loki exposes, with bucket="<component>":
//
//	loki_objstore_bucket_operations_total{operation}            attempts
//	loki_objstore_bucket_operation_failures_total{operation}    unexpected failures
//	loki_objstore_bucket_operation_duration_seconds{operation}  latency histogram
//	loki_objstore_bucket_operation_transferred_bytes{operation} bytes per get, get_range and upload (histogram; _sum is the total)
//	loki_objstore_bucket_operation_fetched_bytes_total{operation} bytes read by get and get_range
//	loki_objstore_bucket_last_successful_upload_time
//
// objstore's choices apply: the duration of a failed exists, attributes or
// delete is not observed, and a cancelled context is not a failure (an
// expired deadline is).
//
// # Fault injection
//
// The lab's questions include "what happens when the store is slow or
// down?": do ingesters keep the data in memory and hold back their Kafka
// offsets, does memory stay bounded, do queries degrade cleanly, does
// everything catch up once the store is back? FaultBucket answers them
// without a real outage. It sits beneath the metrics, so what it injects
// looks to dashboards exactly like a failing store, and it can be switched
// at runtime, from tests (Store.Faults.Set) or from outside a running
// process through its HTTP handler (PUT {"ops":["upload"],"rate":0.5}).
// lokilab_objstore_faults_injected_total counts what it did, so a report
// can tell injected failures from real ones.
//
// # Keys
//
// The key layout belongs to the packages writing the objects (chunk and
// index keys to pkg/index). A tenant ID becomes part of a key only after
// tenant.ValidateID, which the distributor applies to every push and the
// ingester again to every Kafka record (kafka.DecodeRecord); its alphabet
// has no path separator, control character or "..". The filesystem
// backend refuses, besides, any key that is not a local path under its
// root (checkKey): the last line of defence for a key built wrongly.
package storage
