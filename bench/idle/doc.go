// Command idle measures what idle partitions cost (issue 16): three
// `lockstitch serve` processes on 127.0.0.1, then -partitions partitions
// of three replicas (one on every node) created with the Go client,
// -create-conc at a time, and nothing written. Once the creates are done
// it waits -settle, then measures on every node, over -window: the CPU
// the process used (utime + stime from /proc/PID/stat), its RSS
// (/proc/PID/status), its goroutines (go_goroutines from /metrics) and
// the disk its data directory takes (allocated blocks, and the files'
// sizes). Each is also taken before the creates, so that the table shows
// the cost per replica: (after - before) / partitions. It also reports
// the time the creates took, and the time a status of every partition on
// one node takes.
//
//	go build -o /tmp/lockstitch ./cmd/lockstitch
//	go run ./bench/idle -bin /tmp/lockstitch -partitions 100 -dir /var/tmp
//
// bench/idle-bench does both. -serve-args passes flags to every node
// (for example "--quiesce=false").
package main
