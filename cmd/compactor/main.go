// Command compactor runs lokilab's compactor: it merges each tenant's index
// segments day by day and, when retention is enabled, deletes expired
// chunks (mark, then sweep after a delay). Run one per object store. See
// pkg/compactor.
//
//	compactor -storage.filesystem.dir=lokilab-data/store -compactor.retention-enabled
//	compactor -config.file=compactor.yaml
package main

import "github.com/lokilab/lokilab/pkg/app"

func main() { app.Exec("compactor", app.RunCompactor) }
