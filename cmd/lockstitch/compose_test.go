package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/internal/testutil"
)

// TestComposeCluster builds the container image, and, for the plain
// docker-compose cluster and for the one with TLS on every port
// (docker-compose.tls.yml, certificates made by scripts/make-test-ca),
// brings up the three nodes, appends through the client, stops one
// container, appends again, reads everything back, and tears it down.
//
// It runs only when asked, with LOCKSTITCH_DOCKER=1 (.ci/run asks), since
// building the image takes minutes; it then needs Docker and
// docker-compose, and fails without them. The image gets a tag of its
// own, removed at the end, so that concurrent runs do not swap each
// other's.
func TestComposeCluster(t *testing.T) {
	if os.Getenv("LOCKSTITCH_DOCKER") != "1" {
		t.Skip("builds and runs containers: set LOCKSTITCH_DOCKER=1 to run it")
	}
	if err := dockerAvailable(); err != nil {
		t.Fatalf("docker is required (LOCKSTITCH_DOCKER=1): %v", err)
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	_, adminPort, _ := strings.Cut(testutil.FreeAddr(t), ":")
	image := fmt.Sprintf("lockstitch:test-%d", os.Getpid())
	run := func(timeout time.Duration, env []string, name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "LOCKSTITCH_ADMIN_PORT="+adminPort, "LOCKSTITCH_IMAGE="+image)
		cmd.Env = append(cmd.Env, env...)
		done := make(chan struct{})
		var out []byte
		var err error
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(timeout):
			cmd.Process.Kill()
			<-done
			err = fmt.Errorf("timed out after %v", timeout)
		}
		return string(out), err
	}
	if out, err := run(5*time.Minute, nil, "scripts/docker-build", image); err != nil {
		t.Fatalf("building the image: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := run(time.Minute, nil, "docker", "rmi", image); err != nil {
			t.Logf("removing the image: %v\n%s", err, out)
		}
	})
	certs := t.TempDir()
	if out, err := run(time.Minute, nil, "scripts/make-test-ca", certs, "node1=node1", "node2=node2", "node3=node3"); err != nil {
		t.Fatalf("making certificates: %v\n%s", err, out)
	}
	// The containers' user (65534) reads them through the bind mount.
	files, _ := filepath.Glob(filepath.Join(certs, "*"))
	for _, f := range files {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		files []string
		env   []string
	}{
		{"plain", []string{"-f", "docker-compose.yml"}, nil},
		{"tls", []string{"-f", "docker-compose.yml", "-f", "docker-compose.tls.yml"}, []string{"LOCKSTITCH_CERTS=" + certs}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			project := fmt.Sprintf("lockstitch-test-%d-%s", os.Getpid(), tc.name)
			compose := func(timeout time.Duration, args ...string) (string, error) {
				return run(timeout, tc.env, "docker-compose", append(append([]string{"-p", project}, tc.files...), args...)...)
			}
			composeFlow(t, compose, tc.name == "tls")
		})
	}
}

// composeFlow brings up a compose cluster, appends, stops a node, appends,
// reads back and tears it down, running docker-compose with compose. With
// tls, it checks that a client without TLS is refused.
func composeFlow(t *testing.T, compose func(timeout time.Duration, args ...string) (string, error), tls bool) {
	t.Cleanup(func() {
		if out, err := compose(2*time.Minute, "down", "-v", "--remove-orphans"); err != nil {
			t.Logf("tearing down: %v\n%s", err, out)
		}
	})
	if out, err := compose(2*time.Minute, "up", "-d"); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	client := func(node string, args ...string) (string, error) {
		return compose(time.Minute, append([]string{"exec", "-T", node, "/lockstitch"}, args...)...)
	}
	// The nodes take a moment to start and to find each other.
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, err := client("node1", "partition", "create", "--id", "1", "--replicas", "3")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			logs, _ := compose(time.Minute, "logs", "--tail=30")
			t.Fatalf("partition create: %v\n%s\n%s", err, out, logs)
		}
		time.Sleep(time.Second)
	}
	appendOps := func(node string, from, to int) {
		t.Helper()
		var ops []string
		for i := from; i < to; i++ {
			ops = append(ops, fmt.Sprintf("op-%d", i))
		}
		if out, err := client(node, append([]string{"append", "--partition", "1", "--timeout", "30s"}, ops...)...); err != nil {
			t.Fatalf("append on %s: %v\n%s", node, err, out)
		}
	}
	appendOps("node1", 0, 10)
	if tls {
		out, err := client("node1", "partition", "list", "--addr", "node2:7400", "--tls-ca", "", "--tls-cert", "", "--tls-key", "")
		if err == nil || !strings.Contains(out, "this port requires TLS") {
			t.Fatalf("a client without TLS: %v\n%s", err, out)
		}
	}
	if out, err := compose(time.Minute, "stop", "node1"); err != nil {
		t.Fatalf("stopping node1: %v\n%s", err, out)
	}
	appendOps("node2", 10, 20)
	out, err := client("node3", "tail", "--partition", "1", "--from", "1", "--timeout", "30s")
	if err != nil {
		t.Fatalf("tail: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 20 {
		t.Fatalf("read back %d ops, want 20:\n%s", len(lines), out)
	}
	for i, l := range lines {
		fields := strings.Split(l, "\t")
		if len(fields) != 3 || fields[0] != fmt.Sprint(i+1) || fields[2] != fmt.Sprintf("op-%d", i) {
			t.Fatalf("op %d read back as %q", i, l)
		}
	}
}

func dockerAvailable() error {
	for _, tool := range []string{"docker", "docker-compose"} {
		if _, err := exec.LookPath(tool); err != nil {
			return err
		}
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		return fmt.Errorf("docker info: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
