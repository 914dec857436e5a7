// Command walfio measures the durable append throughput of wal against fio
// writing the same bytes to the same disk, in alternating rounds, and prints
// the medians and their ratio.
//
// The wal side appends 1 KiB records in 1 MiB batches (one write call per
// batch) and fsyncs (fdatasync) after each batch. The fio side writes the same
// number of bytes sequentially in 1 MiB blocks with an fdatasync after each
// block (psync engine, fallocate=native, the fio defaults for preallocation).
//
//	go run ./bench/walfio -dir /var/tmp -size 1GiB -rounds 5
package main
