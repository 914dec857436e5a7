package replicator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/client"
	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/plugin/tan"
	sm "github.com/lni/dragonboat/v4/statemachine"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstitch/lockstitch"
)

// BenchmarkAppend compares appends through Partition.Append with raw
// dragonboat SyncPropose (one Raft entry per op, a trivial state machine),
// on the same cluster shape: three NodeHosts in this process on loopback,
// the same Raft settings and LogDB store. The raw side's pebble LogDB is
// dragonboat's own; Lockstitch's does not sync a move of the commit index
// on its own (lazyCommitLogDB; BenchmarkCoalescingCeiling runs raw
// dragonboat with it too). Each cell runs `conc` goroutines, each
// appending `payload`-byte ops one after another. Besides ops/s, each cell
// reports the process's CPU time per op and cores busy, and the bytes it
// wrote to storage per op (all three nodes).
//
//	go test ./replicator -run '^$' -bench Append -benchtime 2s
//
// bench/replicator-vs-dragonboat runs it in interleaved rounds and
// summarizes them with the two systems side by side.
//
// Knobs for experiments (Lockstitch side): LOCKSTITCH_BENCH_INFLIGHT,
// LOCKSTITCH_BENCH_LINGER, LOCKSTITCH_BENCH_GAP and
// LOCKSTITCH_BENCH_SNAPSHOT_BYTES set MaxInflightBatches, BatchLinger,
// BatchGap and SnapshotBytes;
// LOCKSTITCH_BENCH_METRICS=1 records metrics (as a server does) into a
// registry per node; LOCKSTITCH_BENCH_CONC adds concurrencies
// (comma-separated).
func BenchmarkAppend(b *testing.B) {
	installDragonboatLogger(slog.New(slog.DiscardHandler))
	for _, db := range []LogDB{LogDBPebble, LogDBTan} {
		for _, system := range []string{"lockstitch", "dragonboat"} {
			b.Run(fmt.Sprintf("logdb=%s/system=%s", db, system), func(b *testing.B) {
				var propose func(ctx context.Context, payload []byte) error
				if system == "lockstitch" {
					nodes := benchLockstitch(b, db)
					var leader atomic.Pointer[Partition]
					leader.Store(benchLeader(b, nodes))
					propose = func(ctx context.Context, payload []byte) error {
						for {
							_, err := leader.Load().Append(ctx, AppendOp{Payload: payload})
							if !errors.Is(err, lockstitch.ErrNotLeader) && !errors.Is(err, lockstitch.ErrUnavailable) && !errors.Is(err, lockstitch.ErrAborted) {
								return err
							}
							// A leader change under load: follow it, as a
							// client does (raw dragonboat forwards proposals).
							leader.Store(benchLeader(b, nodes))
						}
					}
				} else {
					nh, session := benchDragonboat(b, db, false)
					propose = func(ctx context.Context, payload []byte) error {
						_, err := nh.SyncPropose(ctx, session, payload)
						return err
					}
				}
				for _, size := range []int{16, 1024} {
					for _, conc := range benchConcs() {
						b.Run(fmt.Sprintf("payload=%d/conc=%d", size, conc), func(b *testing.B) {
							runAppends(b, conc, size, propose)
						})
					}
				}
			})
		}
	}
}

// BenchmarkCoalescingCeiling bounds what coalescing over dragonboat can
// give on this machine: raw dragonboat SyncPropose with the ops already
// packed by the caller, perEntry 16-byte ops to a Raft entry, 256 ops in
// flight in all (256/perEntry goroutines), to BenchmarkAppend's trivial
// state machine on the same cluster shape, with the LogDB Lockstitch
// uses (pebble without a sync per commit index move, lazyCommitLogDB).
// There is no batcher, no result per op, no operation log and no plugin:
// no coalescing layer does less work per op. perEntry=1 is
// BenchmarkAppend's raw cell at concurrency 256 but for the LogDB: what
// raw dragonboat would gain from lazyCommitLogDB alone.
//
//	go test ./replicator -run '^$' -bench CoalescingCeiling -benchtime 2s -count 6
func BenchmarkCoalescingCeiling(b *testing.B) {
	installDragonboatLogger(slog.New(slog.DiscardHandler))
	nh, session := benchDragonboat(b, LogDBPebble, true)
	propose := func(ctx context.Context, payload []byte) error {
		_, err := nh.SyncPropose(ctx, session, payload)
		return err
	}
	for _, perEntry := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("payload=16/inflight=256/per-entry=%d", perEntry), func(b *testing.B) {
			runProposals(b, 256/perEntry, 16, perEntry, propose)
		})
	}
}

// runAppends spreads b.N appends over conc goroutines.
func runAppends(b *testing.B, conc, size int, propose func(context.Context, []byte) error) {
	runProposals(b, conc, size, 1, propose)
}

// runProposals spreads b.N ops over conc goroutines, which propose them
// perProposal at a time (size bytes each, packed into one payload).
func runProposals(b *testing.B, conc, size, perProposal int, propose func(context.Context, []byte) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	cpu0, disk0 := cpuTime(), diskWritten()
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	proposals := (b.N + perProposal - 1) / perProposal
	for g := 0; g < conc; g++ {
		n := proposals / conc
		if g < proposals%conc {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, size*perProposal)
			for i := 0; i < n; i++ {
				payload[0] = byte(i)
				if err := propose(ctx, payload); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
	// CPU time of the whole process (all three nodes) per op, and the
	// cores busy on average: whether a cell is bound by CPU or by latency.
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cores")
	// Bytes the process sent to storage per op: the Raft logs, their
	// LogDB's flushes and compactions, and Lockstitch's operation logs.
	if d := diskWritten() - disk0; disk0 >= 0 && d >= 0 {
		b.ReportMetric(float64(d)/float64(b.N), "disk-B/op")
	}
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// cpuTime returns the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// diskWritten returns the bytes this process has caused to be written to
// storage (write_bytes of /proc/self/io), or -1 where that is not known.
func diskWritten() int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

func benchAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// benchLockstitch starts three Replicators with one log partition.
func benchLockstitch(b *testing.B, db LogDB) []*Replicator {
	var nodes []*Replicator
	spec := PartitionSpec{ID: 1, Plugin: LogPluginName, Replicas: map[lockstitch.ReplicaID]string{}}
	var cfgs []Config
	for i := 0; i < 3; i++ {
		cfg := DefaultConfig()
		cfg.DataDir = filepath.Join(b.TempDir(), fmt.Sprintf("node%d", i))
		cfg.RaftAddress = benchAddr(b)
		cfg.LogDB = db
		if v := os.Getenv("LOCKSTITCH_BENCH_INFLIGHT"); v != "" {
			cfg.MaxInflightBatches, _ = strconv.Atoi(v)
		}
		if v := os.Getenv("LOCKSTITCH_BENCH_SNAPSHOT_BYTES"); v != "" {
			cfg.SnapshotBytes, _ = strconv.ParseInt(v, 10, 64)
		}
		if os.Getenv("LOCKSTITCH_BENCH_METRICS") == "1" {
			cfg.Registerer = prometheus.NewRegistry()
		}
		if v := os.Getenv("LOCKSTITCH_BENCH_LINGER"); v != "" {
			cfg.BatchLinger, _ = time.ParseDuration(v)
		}
		if v := os.Getenv("LOCKSTITCH_BENCH_GAP"); v != "" {
			cfg.BatchGap, _ = time.ParseDuration(v)
		}
		cfgs = append(cfgs, cfg)
		spec.Replicas[lockstitch.ReplicaID(i+1)] = cfg.RaftAddress
	}
	for _, cfg := range cfgs {
		r, err := Open(cfg)
		if err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, r)
		if _, err := r.CreatePartition(spec); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		for _, r := range nodes {
			r.Close()
		}
	})
	return nodes
}

// benchLeader waits for partition 1 to have a leader among nodes.
func benchLeader(b *testing.B, nodes []*Replicator) *Partition {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range nodes {
			p, _ := r.Partition(1)
			if p.isLeader() {
				return p
			}
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatal("no leader")
	return nil
}

// benchDragonboat starts three NodeHosts configured as Replicator.Open
// configures them, with one shard of a trivial state machine, and returns
// the leader's NodeHost. Its pebble LogDB is dragonboat's own, or, with
// lazyCommit, the one Replicator.Open sets up.
func benchDragonboat(b *testing.B, db LogDB, lazyCommit bool) (*dragonboat.NodeHost, *client.Session) {
	def := DefaultConfig()
	members := map[uint64]dragonboat.Target{}
	var nhcs []config.NodeHostConfig
	for i := 0; i < 3; i++ {
		nhc := config.NodeHostConfig{
			NodeHostDir:    filepath.Join(b.TempDir(), fmt.Sprintf("raw%d", i)),
			RTTMillisecond: uint64(def.RTT / time.Millisecond),
			RaftAddress:    benchAddr(b),
			DeploymentID:   def.DeploymentID,
		}
		nhc.Expert.LogDB = config.GetSmallMemLogDBConfig()
		if lazyCommit {
			nhc.Expert.LogDBFactory = pebbleLogDB{}
		}
		if db == LogDBTan {
			nhc.Expert.LogDBFactory = tan.Factory
			nhc.Expert.LogDB = config.GetTinyMemLogDBConfig()
		}
		nhcs = append(nhcs, nhc)
		members[uint64(i+1)] = nhc.RaftAddress
	}
	var hosts []*dragonboat.NodeHost
	for i, nhc := range nhcs {
		nh, err := dragonboat.NewNodeHost(nhc)
		if err != nil {
			b.Fatal(err)
		}
		hosts = append(hosts, nh)
		rc := config.Config{
			ShardID: 1, ReplicaID: uint64(i + 1),
			ElectionRTT: def.ElectionRTT, HeartbeatRTT: def.HeartbeatRTT, CheckQuorum: true, PreVote: true,
			SnapshotEntries: def.SnapshotEntries, CompactionOverhead: def.CompactionOverhead, OrderedConfigChange: true,
			// As partition.raftConfig sets it; with one op per entry,
			// snapshots by entry count already follow the log's size.
			DisableAutoCompactions: true,
		}
		if err := nh.StartOnDiskReplica(members, false, newTrivialSM, rc); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		for _, nh := range hosts {
			nh.Close()
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for i, nh := range hosts {
			if leader, _, ok, err := nh.GetLeaderID(1); err == nil && ok && leader == uint64(i+1) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := nh.SyncPropose(ctx, nh.GetNoOPSession(1), nil)
				cancel()
				if err == nil {
					return nh, nh.GetNoOPSession(1)
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatal("no leader")
	return nil, nil
}

// trivialSM is the raw side's state machine: it counts entries.
type trivialSM struct {
	mu    sync.Mutex
	index uint64
}

func newTrivialSM(uint64, uint64) sm.IOnDiskStateMachine { return &trivialSM{} }

func (s *trivialSM) Open(<-chan struct{}) (uint64, error) { return 0, nil }
func (s *trivialSM) Update(es []sm.Entry) ([]sm.Entry, error) {
	s.mu.Lock()
	s.index = es[len(es)-1].Index
	s.mu.Unlock()
	for i := range es {
		es[i].Result = sm.Result{Value: es[i].Index}
	}
	return es, nil
}
func (s *trivialSM) Lookup(interface{}) (interface{}, error) { return nil, nil }
func (s *trivialSM) Sync() error                             { return nil }
func (s *trivialSM) PrepareSnapshot() (interface{}, error)   { return nil, nil }

// SaveSnapshot writes the index: dragonboat takes a streamed snapshot
// with no state machine data for a shrunk one, and a follower that
// receives it panics ("not initial recovery but snapshot shrunk").
func (s *trivialSM) SaveSnapshot(_ interface{}, w io.Writer, _ <-chan struct{}) error {
	s.mu.Lock()
	index := s.index
	s.mu.Unlock()
	_, err := w.Write(binary.LittleEndian.AppendUint64(nil, index))
	return err
}
func (s *trivialSM) RecoverFromSnapshot(r io.Reader, _ <-chan struct{}) error {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return err
	}
	s.mu.Lock()
	s.index = binary.LittleEndian.Uint64(b[:])
	s.mu.Unlock()
	return nil
}
func (s *trivialSM) Close() error { return nil }

// benchConcs returns the concurrencies of BenchmarkAppend: 1, 16 and 256,
// plus those in LOCKSTITCH_BENCH_CONC (comma-separated).
func benchConcs() []int {
	concs := []int{1, 16, 256}
	for _, s := range strings.Split(os.Getenv("LOCKSTITCH_BENCH_CONC"), ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n > 0 {
			concs = append(concs, n)
		}
	}
	return concs
}
