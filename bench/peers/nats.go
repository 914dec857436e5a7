package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/lockstitch/lockstitch/bench/harness"
)

// natsCluster is three nats-server processes with JetStream in one
// cluster and a stream of file storage with three replicas, driven by
// nats.go's JetStream publish (with its ack), connected to the server
// that leads the stream.
type natsCluster struct {
	procs   []*harness.Proc
	conns   []*nats.Conn
	js      []nats.JetStreamContext
	version string
}

const (
	natsStream  = "BENCH"
	natsSubject = "bench"
)

func (c *natsCluster) info() systemInfo {
	return systemInfo{
		Name: "jetstream", Version: c.version,
		Durability: "ack after a majority stored the message in its file store; no fsync before the ack (the file store writes to the page cache and syncs on its own schedule)",
		Short:      "no fsync",
		Setup:      "3 nats-server processes, JetStream; a stream with file storage and 3 replicas; nats.go's JetStream Publish / PublishAsync on a connection to the stream's leader",
	}
}

func (c *natsCluster) do(ctx context.Context, client int, payload []byte) error {
	_, err := c.js[client].Publish(natsSubject, payload, nats.Context(ctx))
	return err
}

func (c *natsCluster) start(_ context.Context, client int, payload []byte) waiter {
	f, err := c.js[client].PublishAsync(natsSubject, payload)
	return func(ctx context.Context) error {
		if err != nil {
			return err
		}
		select {
		case <-f.Ok():
			return nil
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *natsCluster) pipelined() bool { return true }
func (c *natsCluster) pids() []int     { return harness.PIDs(c.procs) }
func (c *natsCluster) inProcess() bool { return false }

func (c *natsCluster) stop() {
	for _, nc := range c.conns {
		nc.Close()
	}
	for _, p := range c.procs {
		p.Stop()
	}
}

func startNATS(ctx context.Context, o *options, work string) (*natsCluster, error) {
	c := &natsCluster{version: "?"}
	if out, err := exec.CommandContext(ctx, o.natsBin, "--version").Output(); err == nil {
		c.version = strings.TrimPrefix(strings.TrimSpace(string(out)), "nats-server: ")
	}
	ports, err := harness.FreePorts(6)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	urls := map[string]string{}
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3+i]))
	}
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		urls[name] = fmt.Sprintf("nats://127.0.0.1:%d", ports[i])
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 64GB
}
cluster {
  name: bench
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, name, ports[i], filepath.Join(work, name), ports[3+i], strings.Join(routes, ", "))
		path := filepath.Join(work, name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return c, err
		}
		p, err := harness.StartProc("nats-server "+name, o.natsBin, []string{"-c", path}, filepath.Join(work, name+".log"))
		if err != nil {
			return c, err
		}
		c.procs = append(c.procs, p)
	}
	fail := func(err error) (*natsCluster, error) { return c, fmt.Errorf("%w\n%s", err, harness.Tails(c.procs)) }
	all := []string{urls["n1"], urls["n2"], urls["n3"]}
	var admin *nats.Conn
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		if admin, err = nats.Connect(strings.Join(all, ","), nats.Name("bench-peers admin")); err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			return fail(err)
		}
	}
	defer admin.Close()
	js, err := admin.JetStream()
	if err != nil {
		return fail(err)
	}
	// The JetStream meta group elects its leader after the routes are up;
	// until then adding a stream fails.
	var si *nats.StreamInfo
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		si, err = js.AddStream(&nats.StreamConfig{
			Name: natsStream, Subjects: []string{natsSubject}, Storage: nats.FileStorage, Replicas: 3,
			// Bounded so that a full run cannot fill the disk.
			MaxBytes: 8 << 30, Discard: nats.DiscardOld,
		}, nats.Context(ctx))
		if err == nil && si.Cluster != nil && si.Cluster.Leader != "" {
			break
		}
		if err == nil || errors.Is(err, nats.ErrStreamNameAlreadyInUse) {
			si, err = js.StreamInfo(natsStream)
			if err == nil && si.Cluster != nil && si.Cluster.Leader != "" {
				break
			}
		}
		if time.Since(start) > 60*time.Second {
			return fail(fmt.Errorf("the stream has no leader: %v", err))
		}
	}
	leader, ok := urls[si.Cluster.Leader]
	if !ok {
		return fail(fmt.Errorf("the stream's leader %q is not one of ours", si.Cluster.Leader))
	}
	for range o.clients {
		nc, err := nats.Connect(leader, nats.Name("bench-peers"))
		if err != nil {
			return fail(err)
		}
		c.conns = append(c.conns, nc)
		js, err := nc.JetStream(nats.PublishAsyncMaxPending(4096))
		if err != nil {
			return fail(err)
		}
		c.js = append(c.js, js)
	}
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.js[0].Publish(natsSubject, []byte("ready"), nats.Context(pctx))
		cancel()
		if err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			return fail(fmt.Errorf("publish: %w", err))
		}
	}
	return c, nil
}
