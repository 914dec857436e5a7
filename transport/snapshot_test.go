package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// snapshotHandler serves a fakeHandler's partitions, and to a subscriber
// that allows a snapshot and whose marker is below the first retained
// LSN, first the snapshot state at LSN first-1, in chunks of chunkBytes
// (the chunk numbered damage, if not negative, with its data altered
// after its CRC was computed).
type snapshotHandler struct {
	*fakeHandler
	state      []byte
	chunkBytes int
	damage     int
	// failOnce, if set, makes the first snapshot stop after 3 chunks
	// with ErrUnavailable, as a replica that stops would.
	failOnce atomic.Bool
}

func (h *snapshotHandler) Subscribe(ctx context.Context, req *SubscribeRequest, s *Stream) error {
	h.mu.Lock()
	first := h.partLocked(req.Partition).first
	h.mu.Unlock()
	if req.Snapshot && s.Next() < first {
		lsn := first - 1
		send := func(data []byte, damaged bool) error {
			chunk := binary.LittleEndian.AppendUint32(nil, uint32(len(data)))
			crc := uint32(0)
			if len(data) > 0 {
				crc = wal.Checksum(data)
			}
			chunk = binary.LittleEndian.AppendUint32(chunk, crc)
			chunk = append(chunk, data...)
			if damaged {
				chunk[len(chunk)-1] ^= 0x40
			}
			return s.SendSnapshot(lsn, 1, chunk)
		}
		for i, off := 0, 0; off < len(h.state); i, off = i+1, off+h.chunkBytes {
			if i == 3 && h.failOnce.Swap(false) {
				return fmt.Errorf("%w: replica stopping", lockstitch.ErrUnavailable)
			}
			if err := send(h.state[off:min(off+h.chunkBytes, len(h.state))], i == h.damage); err != nil {
				return err
			}
		}
		if err := send(nil, false); err != nil {
			return err
		}
		if s.Next() != first {
			panic("the stream does not continue after the snapshot")
		}
	}
	return h.fakeHandler.Subscribe(ctx, req, s)
}

// TestSubscribeSnapshot subscribes from a marker below the first retained
// LSN: with a Restore option the client restores the snapshot, verified
// chunk by chunk over more frames than the credit window, then follows
// the records after it; without one it gets Truncated; a damaged chunk is
// refused before Restore reads any of its bytes.
func TestSubscribeSnapshot(t *testing.T) {
	state := bytes.Repeat([]byte("0123456789abcdef"), 4000) // 64000 bytes, 64 chunks
	for _, damage := range []int{-1, 0, 9} {
		h := &snapshotHandler{fakeHandler: newFakeHandler(), state: state, chunkBytes: 1000, damage: damage}
		h.mu.Lock()
		h.partLocked(3).first = 101
		h.mu.Unlock()
		_, addr := startServer(t, h, testServerConfig())
		cfg := testClientConfig()
		cfg.SubscribeWindowOps = 8 // the snapshot's 65 frames need credit renewed
		cl := dialTest(t, cfg, addr)
		ctx := testContext(t)
		for i := range 5 {
			if _, err := cl.Append(ctx, 3, []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if damage < 0 {
			plain, err := cl.Subscribe(ctx, 3, 40)
			if err != nil {
				t.Fatal(err)
			}
			var tr *lockstitch.TruncatedError
			if err := plain.Next(ctx, new(wal.Record)); !errors.As(err, &tr) || tr.First != 101 {
				t.Fatalf("subscription without Restore below the first retained LSN: %v", err)
			}
			plain.Close()
		}
		var restored []byte
		var restoredAt wal.LSN
		restores := 0
		sub, err := cl.SubscribeWith(ctx, 3, 40, SubscribeOptions{Restore: func(lsn wal.LSN, r io.Reader) error {
			restores++
			restoredAt = lsn
			var err error
			restored, err = io.ReadAll(r)
			return err
		}})
		if err != nil {
			t.Fatal(err)
		}
		var rec wal.Record
		err = sub.Next(ctx, &rec)
		if damage >= 0 {
			if !errors.Is(err, lockstitch.ErrChecksum) || restores != 1 {
				t.Fatalf("damaged chunk %d: Next returned %v after %d restores", damage, err, restores)
			}
			if !bytes.Equal(restored, state[:damage*1000]) {
				t.Fatalf("damaged chunk %d: Restore read %d bytes, want the %d before the damaged chunk", damage, len(restored), damage*1000)
			}
			if sub.Marker() != 40 {
				t.Fatalf("the marker moved to %d after a refused snapshot", sub.Marker())
			}
			sub.Close()
			continue
		}
		if err != nil || rec.LSN != 101 || rec.Payload[0] != 0 {
			t.Fatalf("first record after the snapshot: LSN %d, %v", rec.LSN, err)
		}
		if restores != 1 || restoredAt != 100 || !bytes.Equal(restored, state) {
			t.Fatalf("restored %d times, at LSN %d, %d bytes (want once, at 100, %d bytes)", restores, restoredAt, len(restored), len(state))
		}
		for lsn := wal.LSN(102); lsn <= 105; lsn++ {
			if err := sub.Next(ctx, &rec); err != nil || rec.LSN != lsn {
				t.Fatalf("record %d: LSN %d, %v", lsn, rec.LSN, err)
			}
		}
		sub.Close()
	}
}

// TestCursorCalls drives a partition's durable cursors through the
// client: acks (never moving a cursor back), a list, a lapsed cursor, a
// delete, and a follower's NotLeader answer followed to the leader.
func TestCursorCalls(t *testing.T) {
	leader := newFakeHandler()
	_, leaderAddr := startServer(t, leader, testServerConfig())
	follower := newFakeHandler()
	follower.notLeader[6] = leaderAddr
	_, followerAddr := startServer(t, follower, testServerConfig())
	cl := dialTest(t, testClientConfig(), followerAddr)
	ctx := testContext(t)
	for _, a := range []struct {
		name string
		lsn  wal.LSN
	}{{"billing", 40}, {"search", 7}, {"billing", 30}} {
		if err := cl.AckCursor(ctx, 6, a.name, a.lsn); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.AckCursor(ctx, 6, "lapsed", 1); !errors.Is(err, lockstitch.ErrCursorLapsed) {
		t.Fatalf("ack of a lapsed cursor: %v", err)
	}
	if err := cl.ResetCursor(ctx, 6, "search", 3); err != nil {
		t.Fatal(err)
	}
	if err := cl.DeleteCursor(ctx, 6, "none"); !errors.Is(err, lockstitch.ErrInvalidArgument) {
		t.Fatalf("delete of a missing cursor: %v", err)
	}
	got, err := cl.Cursors(ctx, 6)
	want := []Cursor{{Name: "billing", LSN: 40}, {Name: "search", LSN: 3}}
	if err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("cursors %+v, %v; want %+v", got, err, want)
	}
	if err := cl.DeleteCursor(ctx, 6, "billing"); err != nil {
		t.Fatal(err)
	}
	if got, err := cl.Cursors(ctx, 6); err != nil || len(got) != 1 {
		t.Fatalf("cursors after a delete: %+v, %v", got, err)
	}
	follower.mu.Lock()
	defer follower.mu.Unlock()
	if fp := follower.parts[6]; fp != nil && len(fp.cursors) != 0 {
		t.Fatalf("the follower holds cursors %+v", fp.cursors)
	}
}

// TestSubscribeSnapshotInterrupted ends the first snapshot part way with
// a retryable error: the client subscribes again from its old marker and
// Restore runs again, from the start, on the whole snapshot.
func TestSubscribeSnapshotInterrupted(t *testing.T) {
	state := bytes.Repeat([]byte("snapshot state "), 1000)
	h := &snapshotHandler{fakeHandler: newFakeHandler(), state: state, chunkBytes: 1000, damage: -1}
	h.failOnce.Store(true)
	h.mu.Lock()
	h.partLocked(3).first = 101
	h.mu.Unlock()
	_, addr := startServer(t, h, testServerConfig())
	cl := dialTest(t, testClientConfig(), addr)
	ctx := testContext(t)
	if _, err := cl.Append(ctx, 3, []byte("after")); err != nil {
		t.Fatal(err)
	}
	var reads [][]byte
	sub, err := cl.SubscribeWith(ctx, 3, 0, SubscribeOptions{Restore: func(lsn wal.LSN, r io.Reader) error {
		b, err := io.ReadAll(r)
		reads = append(reads, b)
		return err
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var rec wal.Record
	if err := sub.Next(ctx, &rec); err != nil || rec.LSN != 101 || string(rec.Payload) != "after" {
		t.Fatalf("first record: LSN %d %q, %v", rec.LSN, rec.Payload, err)
	}
	if len(reads) != 2 || !bytes.Equal(reads[0], state[:3000]) || !bytes.Equal(reads[1], state) {
		t.Fatalf("Restore read %d times: want the first 3 chunks, then the whole snapshot", len(reads))
	}
}
