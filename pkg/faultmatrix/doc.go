// Package faultmatrix proves, one fault at a time, the promise the rest of
// lokilab is built on: a push answered 2xx is never lost.
//
// For each fault of the matrix it starts a fresh multi-process lab
// (`lokilab run -processes` on free loopback ports, a data directory of its
// own), pushes load with an ack log (pkg/loadgen), injects the fault in the
// middle of the load, ends it, lets the load finish, and reads every
// acknowledged line back through the query API (loadgen.Verify). A row of
// the matrix is what that run measured:
//
//   - acknowledged lines missing: the only figure with a required value, 0;
//   - duplicates: acknowledged lines the query API returned more than once
//     (verify), and the copies the querier removed at query time
//     (lokilab_querier_duplicates_removed_total) — replays after a crash
//     re-read records whose chunks were already flushed;
//   - pushes rejected during the fault, of those sent in its window;
//   - time to recover: writes (from the fault's end to the first accepted
//     push sent after the last rejected one) and reads (from the fault's
//     end until every process is ready again and a query's answer carries
//     no partial-result warning).
//
// Why a fresh lab per fault: a fault's after-effects (a replay, a consumer
// group's rebalance, a crash-looping process) would otherwise be measured
// as the next fault's, and a loss could not be pinned on the fault that
// caused it. Why processes and not the all-in-one system: a kill -9 of one
// component, a broker restarted on its data directory and a cgroup OOM
// kill are only real when each component is a process of its own.
//
// Faults that live inside a process (broker errors and stalls, an
// ingester cut off its peers) are reached through the lab's fault
// endpoints, which the children serve only when started with
// app.LabFaultsEnv set (pkg/app/processes_faults.go), as
// scenario.StartProcesses starts every lab. The OOM fault needs root and a writable cgroup v1 memory
// controller; where there is none it is reported as skipped, with the
// reason, never as passed.
package faultmatrix
