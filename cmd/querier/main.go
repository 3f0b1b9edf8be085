// Command querier runs a lokilab querier: Loki's query API over the
// ingesters' recent data (found through the memberlist ring) and the
// object store's index and chunks. See pkg/querier.
//
//	querier -memberlist.join=127.0.0.1:7946 -storage.filesystem.dir=lokilab-data/store
//	querier -querier.ingester-addresses=127.0.0.1:3101,127.0.0.1:3102 -storage.filesystem.dir=...
//	querier -config.file=querier.yaml
package main

import "github.com/lokilab/lokilab/pkg/app"

func main() { app.Exec("querier", app.RunQuerier) }
