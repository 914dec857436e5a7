package replicator

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/lni/vfs"
)

// TestRecvFSWritesBack checks that the chunks of a snapshot being
// received start their writeback as they are written, waiting for what
// lies more than recvWritebackBytes behind, through files reopened for
// each chunk as dragonboat does, and that other files are left alone.
func TestRecvFSWritesBack(t *testing.T) {
	type call struct{ off, n, wait int64 }
	var calls []call
	fs := newRecvFS(vfs.NewMem())
	fs.writeback = func(f vfs.File, off, n, wait int64) { calls = append(calls, call{off, n, wait}) }
	dir := "/raft/snapshot-0000000000000001-0000000000000002.receiving"
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := fs.PathJoin(dir, "snapshot-0000000000000001.gbsnap")
	chunk := bytes.Repeat([]byte{7}, 3<<20)
	for i := range 4 {
		var f vfs.File
		var err error
		if i == 0 {
			f, err = fs.Create(name)
		} else {
			f, err = fs.OpenForAppend(name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	const c = 3 << 20
	want := []call{{0, c, -recvWritebackBytes}, {c, c, c - recvWritebackBytes}, {2 * c, c, 2*c - recvWritebackBytes}, {3 * c, c, 3*c - recvWritebackBytes}}
	if len(calls) != len(want) {
		t.Fatalf("writeback calls %v, want %v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Fatalf("writeback calls %v, want %v", calls, want)
		}
	}
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if len(b) != 4*c {
		t.Fatalf("the received file holds %d bytes, want %d", len(b), 4*c)
	}
	// Files elsewhere are not wrapped.
	calls = nil
	if err := fs.MkdirAll("/raft/logdb-0", 0o755); err != nil {
		t.Fatal(err)
	}
	other, err := fs.Create("/raft/logdb-0/000001.log")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := other.(*recvFile); ok {
		t.Fatal("a LogDB file was wrapped")
	}
	other.Write(chunk)
	other.Close()
	if len(calls) != 0 {
		t.Fatalf("writeback called for a file outside a receiving snapshot: %v", calls)
	}
}

// TestWritebackOSFile runs the real writeback on an OS file (and does
// nothing on other files).
func TestWritebackOSFile(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1<<20)
	for i := range 3 {
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
		writeback(f, int64(i)<<20, 1<<20, int64(i-1)<<20)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	mf, err := vfs.NewMem().Create("/x")
	if err != nil {
		t.Fatal(err)
	}
	writeback(mf, 0, 1, 0)
}
