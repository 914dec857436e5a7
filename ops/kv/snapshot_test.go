package kv

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/lockstitch/lockstitch"
)

type record struct {
	key, value string
	version    uint64
}

func writeSnapshot(t testing.TB, lsn lockstitch.LSN, epoch lockstitch.Epoch, recs []record) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewSnapshotWriter(&buf, lsn, epoch)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Add([]byte(r.key), r.version, []byte(r.value)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readAll(b []byte) (lockstitch.LSN, lockstitch.Epoch, []record, error) {
	var recs []record
	lsn, epoch, err := ReadSnapshot(bytes.NewReader(b), func(it Item) error {
		recs = append(recs, record{string(it.Key), string(it.Value), it.Version})
		return nil
	})
	return lsn, epoch, recs, err
}

// TestSnapshotGolden pins the bytes of a small snapshot: the format is
// read by programs outside this repository.
func TestSnapshotGolden(t *testing.T) {
	b := writeSnapshot(t, 2, 1, []record{{"a", "1", 1}, {"b", "", 2}})
	const want = "4c4b565301000000" + "0200000000000000" + "0100000000000000" + "91b5a2da" + // header
		"17000000" + "7017b5ca" + "0161" + "09" + "0100000000000000" + "31" + "0162" + "08" + "0200000000000000" + // block
		"00000000" + "c448501e" + "0200000000000000" // end
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("snapshot\n%s\nwant\n%s", got, want)
	}
}

// TestSnapshotRoundTrip writes records that fill many blocks (and one
// larger than a block) and reads them back; then damages the image in
// each of its parts and sees every damage refused.
func TestSnapshotRoundTrip(t *testing.T) {
	var recs []record
	for i := range 3000 {
		recs = append(recs, record{fmt.Sprintf("key%05d", i), fmt.Sprintf("%0*d", i%300, i), uint64(i + 1)})
	}
	recs = append(recs, record{"zbig", string(bytes.Repeat([]byte("x"), 3*blockTarget)), 7})
	image := writeSnapshot(t, 9000, 4, recs)
	lsn, epoch, got, err := readAll(image)
	if err != nil || lsn != 9000 || epoch != 4 {
		t.Fatalf("ReadSnapshot: LSN %d, epoch %d, %v", lsn, epoch, err)
	}
	if fmt.Sprint(got) != fmt.Sprint(recs) {
		t.Fatalf("read back %d records, wrote %d (or they differ)", len(got), len(recs))
	}
	if _, _, got, err := readAll(writeSnapshot(t, 0, 0, nil)); err != nil || len(got) != 0 {
		t.Fatalf("an empty snapshot: %d records, %v", len(got), err)
	}

	bad := map[string][]byte{
		"empty":          nil,
		"header only":    image[:snapHeaderBytes],
		"truncated":      image[:len(image)-9],
		"no end":         image[:len(image)-16],
		"cut in a block": image[:len(image)/2],
		"magic":          flip(image, 0),
		"header lsn":     flip(image, 10),
		"block length":   flip(image, snapHeaderBytes+1),
		"block checksum": flip(image, snapHeaderBytes+5),
		"record":         flip(image, len(image)/2),
		"count":          flip(image, len(image)-3),
		"end checksum":   flip(image, len(image)-10),
	}
	for name, b := range bad {
		if _, _, _, err := readAll(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: ReadSnapshot = %v, want ErrCorrupt", name, err)
		}
	}
	// The writer refuses what the reader would.
	var buf bytes.Buffer
	w, err := NewSnapshotWriter(&buf, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add([]byte("b"), 1, nil); err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string][]byte{"empty key": {}, "a key out of order": []byte("a"), "the same key": []byte("b"), "a key too long": bytes.Repeat([]byte("k"), MaxKeyBytes+1)} {
		if err := w.Add(key, 1, nil); !errors.Is(err, ErrMalformed) {
			t.Errorf("Add of %s: %v, want ErrMalformed", name, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err == nil {
		t.Error("a second Close succeeded")
	}
	if err := w.Add([]byte("c"), 1, nil); err == nil {
		t.Error("Add after Close succeeded")
	}
	if _, _, got, err := readAll(buf.Bytes()); err != nil || len(got) != 1 {
		t.Fatalf("the writer's snapshot after refused adds: %v, %v", got, err)
	}
	// Out of order on the wire: two records whose keys go down.
	swapped := bytes.Replace(writeSnapshot(t, 1, 1, []record{{"a", "1", 1}, {"b", "2", 2}}), []byte{1, 'a'}, []byte{1, 'c'}, 1)
	if _, _, _, err := readAll(fixChecksums(t, swapped)); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "keys increase") {
		t.Errorf("keys out of order: %v, want ErrCorrupt", err)
	}

	// An error of the callback stops the read and comes back as it is.
	stop := errors.New("stop")
	if _, _, err := ReadSnapshot(bytes.NewReader(image), func(Item) error { return stop }); err != stop {
		t.Fatalf("ReadSnapshot with a failing callback = %v", err)
	}
}

// fixChecksums recomputes the checksum of the first block of a snapshot
// of one block, so that a test can change a record and reach the checks
// behind the checksum.
func fixChecksums(t *testing.T, image []byte) []byte {
	t.Helper()
	n := binary.LittleEndian.Uint32(image[snapHeaderBytes:])
	block := image[snapHeaderBytes+8 : snapHeaderBytes+8+int(n)]
	binary.LittleEndian.PutUint32(image[snapHeaderBytes+4:], Checksum(block))
	return image
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

// FuzzReadSnapshot feeds ReadSnapshot arbitrary bytes: it refuses them
// with ErrCorrupt or reads records that write back to a snapshot that
// reads the same, and never panics.
func FuzzReadSnapshot(f *testing.F) {
	f.Add(writeSnapshot(f, 2, 1, []record{{"a", "1", 1}, {"b", "", 2}}))
	f.Add(writeSnapshot(f, 0, 0, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		lsn, epoch, recs, err := readAll(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("ReadSnapshot = %v, want ErrCorrupt", err)
			}
			return
		}
		if _, _, again, err := readAll(writeSnapshot(t, lsn, epoch, recs)); err != nil || fmt.Sprint(again) != fmt.Sprint(recs) {
			t.Fatalf("%x reads as %v, which writes back to %v (%v)", b, recs, again, err)
		}
	})
}
