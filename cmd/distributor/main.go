// Command distributor runs a lokilab distributor: the Loki push API in
// front of a Kafka topic. See pkg/distributor for what it does with a push.
//
//	distributor -kafka.address=127.0.0.1:9092 -server.http-listen-port=3100
//	distributor -config.file=distributor.yaml
package main

import "github.com/lokilab/lokilab/pkg/app"

func main() { app.Exec("distributor", app.RunDistributor) }
