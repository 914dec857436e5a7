package server

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/transport"
)

// TestStaleUnixSocket starts a node on a Unix socket path that a crashed
// node left (a socket file nothing listens on): the node removes it and
// serves there. A socket another process serves, and a file that is not
// a socket, still fail the start.
func TestStaleUnixSocket(t *testing.T) {
	start := func(sock string) (*Node, error) {
		p := Peer{ID: 1, RaftAddr: testutil.FreeAddr(t)}
		cfg := testConfig(t, p, nil)
		cfg.ClientListener, cfg.UnixSocket = listen(t), sock
		cfg.ClientAddr = cfg.ClientListener.Addr().String()
		n, err := Start(cfg)
		if err == nil {
			t.Cleanup(func() { n.Close() })
		}
		return n, err
	}
	dir := t.TempDir()

	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // the file stays, as after a kill -9
	if _, err := os.Lstat(stale); err != nil {
		t.Fatalf("the stale socket is not there: %v", err)
	}
	if _, err := start(stale); err != nil {
		t.Fatalf("start on a stale socket: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := transport.Dial(ctx, transport.DefaultClientConfig(), "unix:"+stale)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if ns, err := cl.Status(ctx, "unix:"+stale); err != nil || ns.NodeID != uint64(lockstitch.NodeID(1)) {
		t.Fatalf("status over the socket: %+v, %v", ns, err)
	}

	live := filepath.Join(dir, "live.sock")
	ll, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ll.Close()
	if _, err := start(live); err == nil || !strings.Contains(err.Error(), "another process listens") {
		t.Errorf("start on a socket another process serves: %v, want an error saying so", err)
	}

	file := filepath.Join(dir, "file.sock")
	os.WriteFile(file, []byte("not a socket"), 0o644)
	if _, err := start(file); err == nil {
		t.Error("start on a regular file: no error")
	}
	if b, _ := os.ReadFile(file); string(b) != "not a socket" {
		t.Errorf("the regular file was changed: %q", b)
	}
}

// TestUnixSocketMode: the socket file has the configured mode and group
// (here 0640 and the process's own group) when it appears, the node
// serves there, nothing is left beside it, and a stop removes it.
func TestUnixSocketMode(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "node.sock")
	p := Peer{ID: 1, RaftAddr: testutil.FreeAddr(t)}
	cfg := testConfig(t, p, nil)
	cfg.ClientListener, cfg.UnixSocket = listen(t), sock
	cfg.ClientAddr = cfg.ClientListener.Addr().String()
	// A group other than the process's own, so that the check below sees
	// the change: a supplementary group, or any group for root.
	gid := -1
	groups, _ := os.Getgroups()
	for _, g := range groups {
		if g != os.Getgid() {
			gid = g
			break
		}
	}
	if gid == -1 && os.Geteuid() == 0 {
		gid = os.Getgid() + 4242
	}
	if gid == -1 {
		t.Skip("no group to give the socket other than the process's own")
	}
	cfg.UnixSocketMode, cfg.UnixSocketGroup = 0o640, strconv.Itoa(gid)
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o640 || int(fi.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Fatalf("socket file %v, gid %d; want a socket, 0640, gid %d", fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid, gid)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("the socket's directory holds %d entries, want the socket alone", len(entries))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := transport.Dial(ctx, transport.DefaultClientConfig(), "unix:"+sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Status(ctx, "unix:"+sock); err != nil {
		t.Fatalf("status over the socket: %v", err)
	}
	cl.Close()
	n.Close()
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after the stop the socket file: %v", err)
	}
	// A listener closed late leaves a socket another node put at its
	// path since.
	l, err := listenUnix(sock, 0o600, -1)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(sock)
	newer, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer newer.Close()
	l.Close()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("closing the old listener removed the newer socket: %v", err)
	}

	cfg.UnixSocketMode = 0o066 // the node itself could not use it
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "unix socket mode") {
		t.Fatalf("mode 0066: %v", err)
	}
}
