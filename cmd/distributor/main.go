// Command distributor runs a lokilab distributor: the Loki push API in
// front of a Kafka topic. See pkg/distributor for what it does with a push.
//
//	distributor -kafka.address=127.0.0.1:9092 -server.http-listen-port=3100
//	distributor -config.file=distributor.yaml
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lokilab/lokilab/pkg/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := app.Main(ctx, "distributor", os.Args[1:], os.Stderr, app.RunDistributor)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "distributor:", err)
		os.Exit(1)
	}
}
