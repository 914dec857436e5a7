// Command catchup measures how a replica added to a busy partition catches
// up (issue 13): three `lockstitch serve` processes on 127.0.0.1, a
// partition on nodes 1 and 2 holding -ops ops of -payload bytes, then a
// replica added on node 3 with the Go client (AddReplica, as a voter: it
// joins as non-voting and promotes itself once caught up) while a bounded
// load keeps appending.
//
// Each run reports the append p99 of the bounded load over a window before
// the add and from the add until the new replica is a voter and has applied
// every op committed before the add; the time until it is a voter and until
// it caught up; the catch-up throughput (the bytes of the operation log,
// the same on every replica, over the time to a caught-up voter); the
// copy's bytes (the sender's "copy send ended" log line) and how many
// copies were sent; and, in the same run, the disk's sequential read
// bandwidth (the leader's log segments read with O_DIRECT in 1 MiB
// blocks, after the nodes stopped) and loopback TCP
// bandwidth (1 MiB writes over 127.0.0.1 in this process). It ends with the
// medians of the runs.
//
//	go build -o /tmp/lockstitch ./cmd/lockstitch
//	go run ./bench/catchup -bin /tmp/lockstitch -runs 5 -dir /var/tmp
//
// bench/catchup-bench does both. -new-node-dir puts node 3's data
// elsewhere (tmpfs, say); -serve-args passes flags to every node (for
// example "--copy-bytes-per-second 52428800"); -timeline prints the load's
// latency and the new replica's progress at that interval during the add;
// -profile DIR saves a CPU profile of every node taken from the add on.
package main
