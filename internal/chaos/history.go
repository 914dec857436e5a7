package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"github.com/lockstitch/lockstitch"
)

// Outcome is what a client learnt of an operation.
type Outcome string

// Outcomes.
const (
	// OK: acknowledged (an append with its LSN).
	OK Outcome = "ok"
	// Fail: a definite failure; the operation did not take effect and
	// never will.
	Fail Outcome = "fail"
	// Info: indeterminate; the operation may have taken effect, once, at
	// any time after its call.
	Info Outcome = "info"
)

// Append is one append of a producer and what its client reported.
// Producer and Seq name it; its payload is Payload(Producer, Seq).
type Append struct {
	Producer int            `json:"producer"`
	Seq      int            `json:"seq"`
	Outcome  Outcome        `json:"outcome"`
	LSN      lockstitch.LSN `json:"lsn,omitempty"` // when OK
	Err      string         `json:"err,omitempty"`
	// Call and Return are nanoseconds since the run started.
	Call   int64 `json:"call"`
	Return int64 `json:"return"`
}

// Payload returns the payload of a producer's append number seq: it
// names the append in the stream.
func Payload(producer, seq int) string { return fmt.Sprintf("p%d-%d", producer, seq) }

// Entry is one record of a stream: an LSN and its payload.
type Entry struct {
	LSN     lockstitch.LSN `json:"lsn"`
	Payload string         `json:"payload"`
}

// Subscriber is what one subscription received, in order, after
// subscribing from marker From.
type Subscriber struct {
	ID      int            `json:"id"`
	From    lockstitch.LSN `json:"from"`
	Records []Entry        `json:"-"` // written one line each
}

// Replica is one replica's stream as read at the end of a run.
type Replica struct {
	Node    int     `json:"node"`
	Entries []Entry `json:"-"` // written one line each
}

// History is everything a run recorded.
type History struct {
	Appends     []Append
	KV          []KVOp
	Subscribers []Subscriber
	Replicas    []Replica
}

// line is one line of a history in JSON lines: exactly one field set.
type line struct {
	Append  *Append     `json:"append,omitempty"`
	KV      *KVOp       `json:"kv,omitempty"`
	Sub     *Subscriber `json:"sub,omitempty"`
	Replica *Replica    `json:"replica,omitempty"`
	// A record received by the subscriber or held by the replica of the
	// last sub or replica line.
	Record *Entry `json:"record,omitempty"`
}

// WriteJSONL writes h as JSON lines: one line per append and kv op, and
// for each subscriber and replica a line naming it followed by a line per
// record. ReadJSONL reads it back.
func (h *History) WriteJSONL(w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	put := func(l line) error {
		if err := enc.Encode(l); err != nil {
			return fmt.Errorf("chaos: write history: %w", err)
		}
		return nil
	}
	for i := range h.Appends {
		if err := put(line{Append: &h.Appends[i]}); err != nil {
			return err
		}
	}
	for i := range h.KV {
		if err := put(line{KV: &h.KV[i]}); err != nil {
			return err
		}
	}
	for i := range h.Subscribers {
		s := &h.Subscribers[i]
		if err := put(line{Sub: s}); err != nil {
			return err
		}
		for j := range s.Records {
			if err := put(line{Record: &s.Records[j]}); err != nil {
				return err
			}
		}
	}
	for i := range h.Replicas {
		r := &h.Replicas[i]
		if err := put(line{Replica: r}); err != nil {
			return err
		}
		for j := range r.Entries {
			if err := put(line{Record: &r.Entries[j]}); err != nil {
				return err
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("chaos: write history: %w", err)
	}
	return nil
}

// ReadJSONL reads a history that WriteJSONL wrote.
func ReadJSONL(r io.Reader) (*History, error) {
	h := &History{}
	dec := json.NewDecoder(r)
	var records *[]Entry
	for n := 1; ; n++ {
		var l line
		if err := dec.Decode(&l); err == io.EOF {
			return h, nil
		} else if err != nil {
			return nil, fmt.Errorf("chaos: read history: line %d: %w", n, err)
		}
		switch {
		case l.Append != nil:
			h.Appends = append(h.Appends, *l.Append)
		case l.KV != nil:
			h.KV = append(h.KV, *l.KV)
		case l.Sub != nil:
			h.Subscribers = append(h.Subscribers, *l.Sub)
			records = &h.Subscribers[len(h.Subscribers)-1].Records
		case l.Replica != nil:
			h.Replicas = append(h.Replicas, *l.Replica)
			records = &h.Replicas[len(h.Replicas)-1].Entries
		case l.Record != nil && records != nil:
			*records = append(*records, *l.Record)
		default:
			return nil, fmt.Errorf("chaos: read history: line %d: no known field, or a record before any subscriber or replica", n)
		}
	}
}
