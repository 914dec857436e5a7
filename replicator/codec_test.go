package replicator

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

func TestOpsEntryRoundTrip(t *testing.T) {
	t.Parallel()
	type op struct {
		payload  []byte
		producer lockstitch.ProducerID
		seq      uint64
	}
	ops := []op{{[]byte("a"), 0, 0}, {nil, 7, 1}, {bytes.Repeat([]byte("x"), 1000), 7, 2}, {[]byte("big ids"), 1 << 62, 1<<64 - 1}}
	proposed := time.Date(2026, 12, 7, 21, 30, 0, 123456789, time.UTC)
	for _, version := range []int{opsVersionV1, opsVersionV2, opsVersion} {
		var b []byte
		if version == opsVersion {
			b = appendBatchHeader(nil, 42)
			setBatchTime(b, proposed)
		} else {
			b = appendBatchHeaderV2(nil, 42)
		}
		for _, o := range ops {
			if version == opsVersionV1 {
				b = appendBatchOpV1(b, o.payload, wal.Checksum(o.payload), o.producer, o.seq)
			} else {
				b = appendBatchOp(b, o.payload, wal.Checksum(o.payload), o.producer, o.seq)
			}
		}
		r, err := readOps(b)
		if err != nil {
			t.Fatal(err)
		}
		if r.term != 42 || r.count != len(ops) || int(r.version) != version {
			t.Fatalf("version %d header: term %d count %d version %d", version, r.term, r.count, r.version)
		}
		// Only version 3 carries the proposer's time; older ops have none.
		if want := (time.Time{}); version == opsVersion && !r.time.Equal(proposed) || version != opsVersion && r.time != want {
			t.Fatalf("version %d time %v", version, r.time)
		}
		var e entryOp
		for i, o := range ops {
			ok, err := r.next(&e)
			if !ok || err != nil {
				t.Fatalf("version %d op %d: %v %v", version, i, ok, err)
			}
			if !bytes.Equal(e.Payload, o.payload) || e.CRC != wal.Checksum(o.payload) || e.Producer != o.producer || e.Seq != o.seq {
				t.Fatalf("version %d op %d decoded as %+v", version, i, e)
			}
		}
		if ok, err := r.next(&e); ok || err != nil {
			t.Fatalf("version %d after the last op: %v %v", version, ok, err)
		}
		// Every cut is rejected, never misread.
		for cut := 0; cut < len(b); cut++ {
			if err := walkOps(b[:cut]); err == nil {
				t.Fatalf("version %d entry cut at %d decoded", version, cut)
			}
		}
	}
	// A small op without a producer costs 6 bytes of header in version 2
	// and later.
	b := appendBatchHeader(nil, 1)
	if n := len(appendBatchOp(b, make([]byte, 16), 0, 0, 0)) - len(b); n != 16+6 {
		t.Fatalf("a 16-byte op takes %d bytes", n)
	}
}

// TestOpsEntryGolden pins the bytes of a version 3 ops entry: the header
// with the proposer's time, then one op.
func TestOpsEntryGolden(t *testing.T) {
	t.Parallel()
	b := appendBatchHeader(nil, 5)
	setBatchTime(b, time.Unix(0, 0x0102030405060708))
	b = appendBatchOp(b, []byte("hi"), 0xaabbccdd, 9, 300)
	want := []byte{
		1, 3, 0, 0, // kind, version, zero
		1, 0, 0, 0, // op count
		5, 0, 0, 0, 0, 0, 0, 0, // term
		8, 7, 6, 5, 4, 3, 2, 1, // proposer's time, Unix ns
		2,                      // payload length
		0xdd, 0xcc, 0xbb, 0xaa, // CRC
		9,          // producer
		0xac, 0x02, // sequence 300
		'h', 'i',
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("entry\n% x\nwant\n% x", b, want)
	}
	// A header stamped with the zero time (or one before 1970) reads as the
	// zero time.
	for _, tm := range []time.Time{{}, time.Unix(-5, 0)} {
		h := appendBatchHeader(nil, 1)
		setBatchTime(h, tm)
		if r, err := readOps(h); err != nil || !r.time.IsZero() {
			t.Fatalf("time %v read as %v, %v", tm, r.time, err)
		}
	}
}

// TestRecordAux checks the op time kept in a log record's aux: a time
// comes back as it was, and an op without one keeps its Raft index there
// as before, which reads as no time.
func TestRecordAux(t *testing.T) {
	t.Parallel()
	for _, tm := range []time.Time{
		time.Date(2026, 12, 7, 21, 30, 0, 1, time.UTC),
		time.Unix(0, 1).UTC(),
		time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		aux := recordAux(tm, 77)
		if aux&recordTimeBit == 0 || !recordTime(aux).Equal(tm) {
			t.Fatalf("time %v: aux %x reads as %v", tm, aux, recordTime(aux))
		}
	}
	if aux := recordAux(time.Time{}, 77); aux != 77 || !recordTime(aux).IsZero() {
		t.Fatalf("no time: aux %d reads as %v", aux, recordTime(aux))
	}
}

// appendBatchHeaderV2 starts an ops entry of version 2 (16-byte header,
// no time), as nodes wrote before version 3; they still read it.
func appendBatchHeaderV2(b []byte, term uint64) []byte {
	var h [entryHeaderSize]byte
	h[0], h[1] = entryOps, opsVersionV2
	binary.LittleEndian.PutUint64(h[8:], term)
	return append(b, h[:]...)
}

// appendBatchOpV1 encodes an op of a version 1 ops entry (after a 16-byte
// header whose version byte it sets), as nodes wrote before version 2;
// they still read it.
func appendBatchOpV1(b []byte, payload []byte, crc uint32, producer lockstitch.ProducerID, seq uint64) []byte {
	b[1] = 1
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc)
	b = binary.LittleEndian.AppendUint64(b, uint64(producer))
	b = binary.LittleEndian.AppendUint64(b, seq)
	b = append(b, payload...)
	binary.LittleEndian.PutUint32(b[4:], binary.LittleEndian.Uint32(b[4:])+1)
	return b
}

func walkOps(b []byte) error {
	r, err := readOps(b)
	if err != nil {
		return err
	}
	var e entryOp
	for {
		ok, err := r.next(&e)
		if err != nil || !ok {
			return err
		}
	}
}

func TestAddrEntryRoundTrip(t *testing.T) {
	t.Parallel()
	b := appendAddrEntry(nil, 3, "10.0.0.3:7400")
	id, addr, err := readAddrEntry(b)
	if err != nil || id != 3 || addr != "10.0.0.3:7400" {
		t.Fatalf("got %d %q %v", id, addr, err)
	}
	if _, _, err := readAddrEntry(b[:len(b)-1]); !errors.Is(err, errBadEntry) {
		t.Fatalf("cut address entry: %v", err)
	}
}

func TestResultRoundTrip(t *testing.T) {
	t.Parallel()
	b := appendResultHeader(nil, 3)
	b = appendOpResult(b, statusApplied, 10, 9, []byte("r1"))
	b = appendOpResult(b, statusDuplicate, 4, 7, nil)
	b = appendOpResult(b, statusStale, 0, 0, nil)
	r, err := readResults(b)
	if err != nil || r.count != 3 {
		t.Fatalf("header: %+v %v", r, err)
	}
	want := []opResult{{statusApplied, 10, 9, []byte("r1")}, {statusDuplicate, 4, 7, []byte{}}, {statusStale, 0, 0, []byte{}}}
	for i, w := range want {
		var got opResult
		if err := r.next(&got); err != nil {
			t.Fatal(err)
		}
		if got.status != w.status || got.lsn != w.lsn || got.epoch != w.epoch || !bytes.Equal(got.result, w.result) {
			t.Fatalf("result %d: %+v", i, got)
		}
	}
}

func TestDedupe(t *testing.T) {
	t.Parallel()
	d := newDedupe()
	if s, _, _ := d.check(1, 1); s != statusApplied {
		t.Fatal("first op of a new producer not applied")
	}
	for seq := uint64(1); seq <= DedupeWindow+10; seq++ {
		d.record(1, seq, lockstitch.LSN(seq*2), 1)
	}
	cases := []struct {
		seq    uint64
		status byte
		lsn    lockstitch.LSN
	}{
		{DedupeWindow + 11, statusApplied, 0},
		{DedupeWindow + 10, statusDuplicate, 2 * (DedupeWindow + 10)},
		{11, statusDuplicate, 22},
		{10, statusStale, 0},
		{1, statusStale, 0},
	}
	for _, c := range cases {
		if s, lsn, _ := d.check(1, c.seq); s != c.status || lsn != c.lsn {
			t.Errorf("check(1, %d) = %d, %d; want %d, %d", c.seq, s, lsn, c.status, c.lsn)
		}
	}
	// A sequence inside the window that was never applied (a retry that
	// comes after later ones) is applied; one below the window is stale.
	d.record(2, 5, 100, 1)
	d.record(2, 9, 101, 1)
	if s, _, _ := d.check(2, 7); s != statusApplied {
		t.Errorf("skipped sequence inside the window: status %d, want applied", s)
	}
	d.record(2, 7, 102, 1)
	if s, lsn, _ := d.check(2, 7); s != statusDuplicate || lsn != 102 {
		t.Errorf("after applying 7: status %d LSN %d", s, lsn)
	}
	// Nothing was forgotten yet: 4 was never applied.
	if s, _, _ := d.check(2, 4); s != statusApplied {
		t.Errorf("sequence below the first seen, nothing forgotten: status %d, want applied", s)
	}
}

// TestDedupeOutOfOrderFullWindow fills a window, then applies sequences
// out of order: the window stays sorted, keeps the highest ones, and
// matches a model.
func TestDedupeOutOfOrderFullWindow(t *testing.T) {
	t.Parallel()
	d := newDedupe()
	rng := rand.New(rand.NewPCG(3, 4))
	applied := map[uint64]lockstitch.LSN{}
	var lsn lockstitch.LSN
	// Sequences 1..3000 in a shuffled order within sliding chunks of 50.
	var seqs []uint64
	for base := uint64(1); base <= 3000; base += 50 {
		chunk := make([]uint64, 50)
		for i := range chunk {
			chunk[i] = base + uint64(i)
		}
		rng.Shuffle(len(chunk), func(i, j int) { chunk[i], chunk[j] = chunk[j], chunk[i] })
		seqs = append(seqs, chunk...)
	}
	for _, seq := range seqs {
		s, _, _ := d.check(9, seq)
		if s != statusApplied {
			// Nothing was ever forgotten here: only sequences below the
			// floor of a full window may be refused.
			p := d.byID[9]
			if s != statusStale || p.len() < DedupeWindow || seq >= p.floor {
				t.Fatalf("sequence %d: status %d (floor %d)", seq, s, p.floor)
			}
			continue
		}
		lsn++
		d.record(9, seq, lsn, 1)
		applied[seq] = lsn
		p := d.byID[9]
		for i := 1; i < p.len(); i++ {
			if p.at(i).seq <= p.at(i-1).seq {
				t.Fatalf("window out of order after %d", seq)
			}
		}
	}
	p := d.byID[9]
	if p.len() != DedupeWindow || p.last().seq != 3000 {
		t.Fatalf("window of %d, last %d", p.len(), p.last().seq)
	}
	for i := 0; i < p.len(); i++ {
		e := p.at(i)
		if applied[e.seq] != e.lsn {
			t.Fatalf("window holds %d at LSN %d, applied at %d", e.seq, e.lsn, applied[e.seq])
		}
	}
	// Everything at or above the floor is either remembered or was never
	// applied.
	for seq := p.floor; seq <= 3000; seq++ {
		s, l, _ := d.check(9, seq)
		if _, ok := applied[seq]; ok && (s != statusDuplicate || l != applied[seq]) {
			t.Fatalf("applied sequence %d: status %d LSN %d", seq, s, l)
		}
	}
}

func TestDedupeEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	d := newDedupe()
	for id := lockstitch.ProducerID(1); id <= MaxProducers; id++ {
		d.record(id, 1, lockstitch.LSN(id), 1)
	}
	d.record(1, 2, 5000, 1) // producer 1 becomes the most recent
	d.record(MaxProducers+1, 1, 5001, 1)
	if len(d.byID) != MaxProducers {
		t.Fatalf("%d producers, want %d", len(d.byID), MaxProducers)
	}
	if _, ok := d.byID[2]; ok {
		t.Fatal("producer 2, the least recently used, was not evicted")
	}
	if _, ok := d.byID[1]; !ok {
		t.Fatal("producer 1, used recently, was evicted")
	}
	// Producer 2 comes back: its old sequences are unknowable now.
	if s, _, _ := d.check(2, 1); s != statusApplied {
		t.Fatal("a forgotten producer's next op refused")
	}
	d.record(2, 5, 6000, 1)
	if s, _, _ := d.check(2, 3); s != statusStale {
		t.Fatalf("a sequence below a returning producer's first: status %d, want stale", s)
	}
}

// TestStateRoundTrip encodes random states and decodes them; the encoding
// of the decoded state must be identical (eviction order included).
func TestStateRoundTrip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 20; round++ {
		s := newPartitionState()
		s.lsn, s.epoch, s.index = lockstitch.LSN(rng.Uint64()), lockstitch.Epoch(rng.Uint64()), rng.Uint64()
		for i := 0; i < rng.IntN(5); i++ {
			s.addrs[lockstitch.ReplicaID(rng.Uint64())] = fmt.Sprintf("host-%d:%d", i, rng.IntN(65536))
		}
		for i := 0; i < rng.IntN(3000); i++ {
			id := lockstitch.ProducerID(rng.IntN(50) + 1)
			seq := uint64(i + 1)
			s.dedupe.record(id, seq, lockstitch.LSN(i), lockstitch.Epoch(i/100))
		}
		// Half the rounds hold cursors (version 2), half none (version 1).
		for i := 0; round%2 == 1 && i < 1+rng.IntN(20); i++ {
			s.cursors[fmt.Sprintf("consumer-%d", rng.IntN(1000))] = &cursorState{lsn: lockstitch.LSN(rng.Uint64()), lapsed: rng.IntN(2) == 0}
		}
		b := s.appendTo(nil)
		if v, want := binary.LittleEndian.Uint32(b[8:]), uint32(1+round%2); v != want {
			t.Fatalf("round %d: a state with %d cursors has version %d, want %d", round, len(s.cursors), v, want)
		}
		got, err := decodePartitionState(b)
		if err != nil {
			t.Fatal(err)
		}
		if again := got.appendTo(nil); !bytes.Equal(again, b) {
			t.Fatalf("round %d: decoded state encodes differently", round)
		}
		if len(got.cursors) != len(s.cursors) {
			t.Fatalf("round %d: %d cursors decoded, %d encoded", round, len(got.cursors), len(s.cursors))
		}
		for name, c := range s.cursors {
			if g := got.cursors[name]; g == nil || *g != *c {
				t.Fatalf("round %d: cursor %q decoded as %+v, want %+v", round, name, g, c)
			}
		}
		if got.lsn != s.lsn || got.epoch != s.epoch || got.index != s.index || len(got.addrs) != len(s.addrs) {
			t.Fatalf("round %d: header fields differ", round)
		}
		for i := range b {
			c := append([]byte(nil), b...)
			c[i] ^= 0x10
			if _, err := decodePartitionState(c); err == nil {
				t.Fatalf("round %d: a flipped bit at %d went unnoticed", round, i)
			}
			if round > 0 {
				break // the exhaustive pass runs once
			}
		}
	}
}

func FuzzOpsEntry(f *testing.F) {
	b := appendBatchHeader(nil, 3)
	b = appendBatchOp(b, []byte("hello"), wal.Checksum([]byte("hello")), 1, 2)
	f.Add(b)
	f.Add(appendBatchOpV1(appendBatchHeaderV2(nil, 3), []byte("hello"), wal.Checksum([]byte("hello")), 1, 2))
	f.Add(appendBatchOp(appendBatchHeaderV2(nil, 3), []byte("hello"), wal.Checksum([]byte("hello")), 1, 2))
	f.Add(appendAddrEntry(nil, 1, "x:1"))
	f.Add(appendCursorEntry(nil, cursorAck, "consumer", 9))
	f.Fuzz(func(t *testing.T, b []byte) {
		walkOps(b)
		readAddrEntry(b)
		if op, name, lsn, err := readCursorEntry(b); err == nil {
			if again := appendCursorEntry(nil, op, name, lsn); !bytes.Equal(again, b) {
				t.Fatal("accepted cursor entry re-encodes differently")
			}
		}
		if r, err := readResults(b); err == nil {
			var res opResult
			for i := 0; i < r.count && r.next(&res) == nil; i++ {
			}
		}
	})
}

func FuzzPartitionState(f *testing.F) {
	s := newPartitionState()
	s.addrs[1] = "a:1"
	s.dedupe.record(1, 1, 1, 1)
	f.Add(s.appendTo(nil))
	s.cursors["c"] = &cursorState{lsn: 1, lapsed: true}
	s.cursors["d"] = &cursorState{lsn: 2}
	f.Add(s.appendTo(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodePartitionState(b)
		if err != nil {
			return
		}
		if again := got.appendTo(nil); !bytes.Equal(again, b) {
			t.Fatal("accepted state re-encodes differently")
		}
	})
}
