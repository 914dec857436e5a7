package server

import (
	"context"
	"flag"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/transport/tlsconf"
)

// tlsRounds is how many times BenchmarkAppendTLS alternates its two
// clusters.
var tlsRounds = flag.Int("tls-rounds", 1, "BenchmarkAppendTLS: rounds of TLS off then on")

// BenchmarkAppendTLS compares appends of 1 KiB at 256 concurrent callers
// through the Go client against three in-process nodes on loopback, with
// TLS off and with TLS on every port (client port with client
// certificates required, Raft with mutual TLS, the nodes' calls to each
// other). Both clusters run side by side, and -tls-rounds alternates
// them, so that a change of the machine's load touches both (-count would
// run one several times, then the other); the second round of each is
// named tls-off#01, and so on:
//
//	go test ./server -run '^$' -bench AppendTLS -benchtime 20000x -args -tls-rounds 8
func BenchmarkAppendTLS(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := b.TempDir()
	ca := testutil.NewCA(b, "cluster CA")
	plain := newTestCluster(b, 3)
	secure := newClusterWith(b, 3, 3, secureNode(b, ca, dir, ""))

	files := ca.IssueFiles(b, dir, "client")
	cc := tlsconf.DefaultClientConfig()
	cc.CAFile, cc.CertFile, cc.KeyFile = files.CA, files.Cert, files.Key
	ctls, err := tlsconf.OpenClient(cc)
	if err != nil {
		b.Fatal(err)
	}
	clients := map[string]*transport.Client{}
	for name, c := range map[string]*testCluster{"off": plain, "on": secure} {
		cfg := transport.DefaultClientConfig()
		if name == "on" {
			cfg.TLS = ctls
		}
		cl, err := transport.Dial(ctx, cfg, c.addrs()...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cl.Close() })
		if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Replicas: 3}); err != nil {
			b.Fatal(err)
		}
		clients[name] = cl
	}
	payload := make([]byte, 1024)
	for range *tlsRounds {
		for _, name := range []string{"off", "on"} {
			benchAppends(ctx, b, "tls-"+name, clients[name], payload)
		}
	}
}

// benchAppends runs a sub-benchmark of appends of payload through cl at
// 256 concurrent callers.
func benchAppends(ctx context.Context, b *testing.B, name string, cl *transport.Client, payload []byte) {
	const conc = 256
	b.Run(name, func(b *testing.B) {
		b.SetBytes(int64(len(payload)))
		var next atomic.Int64
		var failed atomic.Value
		var wg sync.WaitGroup
		b.ResetTimer()
		for range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(b.N) {
					if _, err := cl.Append(ctx, 1, payload); err != nil {
						failed.CompareAndSwap(nil, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
}
