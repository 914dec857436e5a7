package replicator

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/lockstitch/lockstitch"
)

// Limits of the dedupe table. Part of the replicated state machine: every
// replica must use the same values, so they are constants of the format.
const (
	// DedupeWindow is how many recent sequences a partition remembers per
	// producer. A producer should keep at most this many appends in flight
	// per partition; a retry of an older one gets ErrStaleSequence.
	DedupeWindow = 1024
	// MaxProducers is how many producers a partition remembers. The one
	// that appended least recently is forgotten first.
	//
	// Together they bound a partition's table: at worst 1024 producers
	// with 1024 remembered ops each, 24 bytes an op, or 24 MiB in memory
	// and in every checkpoint and snapshot. A table grows only with
	// producers that keep that many appends going; one op per producer
	// costs tens of bytes.
	MaxProducers = 1024
)

// seqLSN is one op a producer appended: its sequence, and the LSN and
// epoch it was committed with, which a retry is answered with.
type seqLSN struct {
	seq   uint64
	lsn   lockstitch.LSN
	epoch lockstitch.Epoch
}

// producer is what a partition remembers of one idempotent producer: its
// recent sequences and their LSNs, ascending.
type producer struct {
	id lockstitch.ProducerID
	// floor: every applied sequence at or above it is in ring; below it
	// nothing is known. 0 for a producer first seen before the partition
	// ever forgot one, else its first sequence; it rises as a full ring
	// drops its lowest entries.
	floor      uint64
	ring       []seqLSN // ascending; grows to DedupeWindow, then wraps
	head       int      // index of the lowest entry once full
	prev, next *producer
}

func (p *producer) len() int { return len(p.ring) }

func (p *producer) at(i int) seqLSN { return p.ring[(p.head+i)%len(p.ring)] }

func (p *producer) last() seqLSN { return p.at(p.len() - 1) }

func (p *producer) set(i int, e seqLSN) { p.ring[(p.head+i)%len(p.ring)] = e }

// insert adds e, keeping the sequences ascending; when the window is full
// the lowest sequence is forgotten and the floor rises past it. e.seq
// must not be present.
func (p *producer) insert(e seqLSN) {
	n := p.len()
	if n == DedupeWindow && e.seq < p.at(0).seq {
		// Lower than everything remembered in a full window: it cannot be
		// remembered without forgetting a higher one. Forget it instead.
		p.floor = max(p.floor, p.at(0).seq)
		return
	}
	if n < DedupeWindow {
		// Not full: head is 0 and the ring is a plain sorted slice.
		i := sort.Search(n, func(i int) bool { return p.ring[i].seq > e.seq })
		p.ring = append(p.ring, seqLSN{})
		copy(p.ring[i+1:], p.ring[i:n])
		p.ring[i] = e
		return
	}
	if e.seq > p.last().seq {
		// The common case: the next sequence replaces the lowest.
		p.ring[p.head] = e
		p.head = (p.head + 1) % n
		p.floor = max(p.floor, p.at(0).seq)
		return
	}
	// An out-of-order sequence: drop the lowest, shift the higher ones up.
	p.head = (p.head + 1) % n
	defer func() { p.floor = max(p.floor, p.at(0).seq) }()
	i := sort.Search(n-1, func(i int) bool { return p.at(i).seq > e.seq })
	for j := n - 1; j > i; j-- {
		p.set(j, p.at(j-1))
	}
	p.set(i, e)
}

// find returns the op of seq if it is among the recent sequences.
func (p *producer) find(seq uint64) (seqLSN, bool) {
	n := p.len()
	i := sort.Search(n, func(i int) bool { return p.at(i).seq >= seq })
	if i < n && p.at(i).seq == seq {
		return p.at(i), true
	}
	return seqLSN{}, false
}

// dedupe drops retried appends: for each producer it remembers the recent
// sequences it applied, all of them from the lowest it remembers up.
// Producers are kept in order of last use (a list from least to most
// recent), which depends only on the order ops are applied, so every
// replica evicts the same ones.
//
// Rule: an op whose sequence is remembered is a duplicate (the original
// LSN and epoch are returned). One above the lowest remembered sequence
// and not remembered was never applied, and is applied: a client that
// retries a failed op after sending later ones is served. One below the
// lowest remembered (or of a producer not remembered after others were)
// may have been applied before it was forgotten: it is stale, rejected.
type dedupe struct {
	byID       map[lockstitch.ProducerID]*producer
	head, tail *producer // least and most recently used
	// forgotten is set once a producer has been evicted: from then on a
	// producer first seen may have applied ops before it was forgotten.
	forgotten bool
}

func newDedupe() *dedupe { return &dedupe{byID: make(map[lockstitch.ProducerID]*producer)} }

// check classifies (id, seq): statusApplied means "apply it"; for a
// duplicate it returns the original op's LSN and epoch.
func (d *dedupe) check(id lockstitch.ProducerID, seq uint64) (byte, lockstitch.LSN, lockstitch.Epoch) {
	p := d.byID[id]
	if p == nil || seq > p.last().seq {
		return statusApplied, 0, 0
	}
	if op, ok := p.find(seq); ok {
		return statusDuplicate, op.lsn, op.epoch
	}
	if seq >= p.floor {
		return statusApplied, 0, 0 // in the known range, not applied
	}
	return statusStale, 0, 0
}

// record notes that (id, seq) was applied at lsn in epoch; check must
// have classified it statusApplied.
func (d *dedupe) record(id lockstitch.ProducerID, seq uint64, lsn lockstitch.LSN, epoch lockstitch.Epoch) {
	p := d.byID[id]
	if p == nil {
		if len(d.byID) >= MaxProducers {
			d.evict(d.head)
		}
		p = &producer{id: id}
		if d.forgotten {
			p.floor = seq
		}
		d.byID[id] = p
	} else {
		d.unlink(p)
	}
	p.insert(seqLSN{seq, lsn, epoch})
	d.linkTail(p)
}

func (d *dedupe) evict(p *producer) {
	d.unlink(p)
	delete(d.byID, p.id)
	d.forgotten = true
}

func (d *dedupe) unlink(p *producer) {
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		d.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	} else {
		d.tail = p.prev
	}
	p.prev, p.next = nil, nil
}

func (d *dedupe) linkTail(p *producer) {
	p.prev = d.tail
	if d.tail != nil {
		d.tail.next = p
	} else {
		d.head = p
	}
	d.tail = p
}

// appendTo encodes the table: a byte 1 if a producer was ever forgotten,
// the producer count, then each producer from least to most recently used:
// id, floor, entry count, and ascending (seq, LSN, epoch) triples.
func (d *dedupe) appendTo(b []byte) []byte {
	forgotten := byte(0)
	if d.forgotten {
		forgotten = 1
	}
	b = append(b, forgotten)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(d.byID)))
	for p := d.head; p != nil; p = p.next {
		b = binary.LittleEndian.AppendUint64(b, uint64(p.id))
		b = binary.LittleEndian.AppendUint64(b, p.floor)
		b = binary.LittleEndian.AppendUint32(b, uint32(p.len()))
		for i := 0; i < p.len(); i++ {
			e := p.at(i)
			b = binary.LittleEndian.AppendUint64(b, e.seq)
			b = binary.LittleEndian.AppendUint64(b, uint64(e.lsn))
			b = binary.LittleEndian.AppendUint64(b, uint64(e.epoch))
		}
	}
	return b
}

// decodeDedupe decodes what appendTo wrote and returns the bytes consumed.
func decodeDedupe(b []byte) (*dedupe, int, error) {
	d := newDedupe()
	if len(b) < 5 || b[0] > 1 {
		return nil, 0, fmt.Errorf("dedupe table header invalid")
	}
	d.forgotten = b[0] == 1
	n := int(binary.LittleEndian.Uint32(b[1:]))
	if n > MaxProducers {
		return nil, 0, fmt.Errorf("dedupe table holds %d producers, limit %d", n, MaxProducers)
	}
	off := 5
	for range n {
		if len(b)-off < 20 {
			return nil, 0, fmt.Errorf("dedupe producer cut short")
		}
		id := lockstitch.ProducerID(binary.LittleEndian.Uint64(b[off:]))
		floor := binary.LittleEndian.Uint64(b[off+8:])
		m := int(binary.LittleEndian.Uint32(b[off+16:]))
		off += 20
		if m == 0 || m > DedupeWindow || m > (len(b)-off)/24 {
			return nil, 0, fmt.Errorf("dedupe producer %d holds %d entries", id, m)
		}
		if _, dup := d.byID[id]; dup {
			return nil, 0, fmt.Errorf("dedupe producer %d listed twice", id)
		}
		p := &producer{id: id, floor: floor, ring: make([]seqLSN, m)}
		for i := range m {
			p.ring[i] = seqLSN{binary.LittleEndian.Uint64(b[off:]), lockstitch.LSN(binary.LittleEndian.Uint64(b[off+8:])), lockstitch.Epoch(binary.LittleEndian.Uint64(b[off+16:]))}
			off += 24
			if i > 0 && p.ring[i].seq <= p.ring[i-1].seq {
				return nil, 0, fmt.Errorf("dedupe producer %d: sequences not ascending", id)
			}
		}
		d.byID[id] = p
		d.linkTail(p)
	}
	return d, off, nil
}
