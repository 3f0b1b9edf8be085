// Command ingester runs a lokilab ingester: it owns Kafka partitions (through
// the memberlist partition ring by default), builds chunks from their
// records, flushes them with their index to object storage, and commits
// offsets only for what is durable. See pkg/ingester.
//
//	ingester -ingester.instance-id=ingester-1 -kafka.address=127.0.0.1:9092 \
//	    -memberlist.join=127.0.0.1:7946 -storage.filesystem.dir=lokilab-data/store
//	ingester -config.file=ingester.yaml
package main

import "github.com/lokilab/lokilab/pkg/app"

func main() { app.Exec("ingester", app.RunIngester) }
