// Package sockstat decodes socket snapshots: the output of `ss -tan[oipem]`,
// `netstat -ant[po]`, `netstat -s` and `nstat -az`, one file holding one
// snapshot or many, as a watch loop writes them
// (`while :; do date; ss -tanoi; sleep 1; done`).
//
// A Snapshot is everything between two timestamp lines: the sockets, with
// their queues, state, addresses, owning processes, timers and `-i`
// details, and the kernel's counters (listen-queue overflows, SYNs dropped,
// resets, retransmits, timeouts). CounterDeltas compares two snapshots.
//
// Lines that fit nothing are returned as logline.Unparsed and counted;
// nothing is dropped silently.
package sockstat
