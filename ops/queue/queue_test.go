package queue

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
)

func TestOpRoundTrip(t *testing.T) {
	t.Parallel()
	cases := []struct {
		b    []byte
		want Op
	}{
		{AppendEnqueue(nil, []byte("job")), Op{Kind: KindEnqueue, Payload: []byte("job")}},
		{AppendEnqueue(nil, nil), Op{Kind: KindEnqueue, Payload: []byte{}}},
		{AppendDequeue(nil, time.Second), Op{Kind: KindDequeue, Lease: time.Second}},
		{AppendAck(nil, 1<<40, 3), Op{Kind: KindAck, ID: 1 << 40, Delivery: 3}},
		{AppendExtend(nil, 9, 1, MaxLease), Op{Kind: KindExtend, ID: 9, Delivery: 1, Lease: MaxLease}},
	}
	for _, c := range cases {
		var op Op
		if err := DecodeOp(c.b, &op); err != nil {
			t.Fatalf("% x: %v", c.b, err)
		}
		if op.Kind != c.want.Kind || op.ID != c.want.ID || op.Delivery != c.want.Delivery || op.Lease != c.want.Lease || !bytes.Equal(op.Payload, c.want.Payload) {
			t.Fatalf("% x decoded as %+v, want %+v", c.b, op, c.want)
		}
		// Every cut of a fixed-size op is rejected.
		if op.Kind != KindEnqueue {
			for cut := 0; cut < len(c.b); cut++ {
				if err := DecodeOp(c.b[:cut], &op); !errors.Is(err, ErrMalformed) {
					t.Fatalf("%s cut at %d: %v", c.want.Kind, cut, err)
				}
			}
		}
	}
	// Out of range and unknown ops are malformed, and the error wraps
	// lockstitch.ErrInvalidArgument.
	for _, b := range [][]byte{
		AppendDequeue(nil, 0), AppendDequeue(nil, -time.Second), AppendDequeue(nil, MaxLease+1),
		AppendExtend(nil, 1, 1, 0), {Version, 9}, {2, byte(KindEnqueue)}, append(AppendAck(nil, 1, 1), 0),
	} {
		var op Op
		if err := DecodeOp(b, &op); !errors.Is(err, lockstitch.ErrInvalidArgument) {
			t.Fatalf("% x: %v", b, err)
		}
	}
}

// TestOpGolden pins the bytes of each op.
func TestOpGolden(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ got, want []byte }{
		{AppendEnqueue(nil, []byte("ab")), []byte{1, 1, 'a', 'b'}},
		{AppendDequeue(nil, 0x0102), []byte{1, 2, 2, 1, 0, 0, 0, 0, 0, 0}},
		{AppendAck(nil, 5, 2), []byte{1, 3, 5, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0}},
		{AppendExtend(nil, 5, 2, 7), []byte{1, 4, 5, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0}},
		{AppendResult(nil, &Result{Kind: KindEnqueue, ID: 3}), []byte{1, 1, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0}},
		{AppendResult(nil, &Result{Kind: KindAck, Status: StatusLost}), []byte{1, 3, 2, 0}},
		{AppendLenQuery(nil), []byte{1, 1, 0, 0, 0, 0, 0, 0}},
		{AppendPeekQuery(nil, ListDead, 4), []byte{1, 2, 2, 0, 4, 0, 0, 0}},
	} {
		if !bytes.Equal(c.got, c.want) {
			t.Fatalf("% x, want % x", c.got, c.want)
		}
	}
}

func TestResultRoundTrip(t *testing.T) {
	t.Parallel()
	deadline := time.Date(2026, 12, 7, 22, 0, 0, 5, time.UTC)
	for _, want := range []Result{
		{Kind: KindEnqueue, ID: 7},
		{Kind: KindDequeue, ID: 7, Delivery: 2, Deadline: deadline, Payload: []byte("job")},
		{Kind: KindDequeue, ID: 8, Delivery: 1, Deadline: deadline, Payload: []byte{}},
		{Kind: KindDequeue, Status: StatusEmpty},
		{Kind: KindAck},
		{Kind: KindAck, Status: StatusLost},
		{Kind: KindExtend, Deadline: deadline},
		{Kind: KindExtend, Status: StatusLost},
		{Status: StatusInvalid},
		{Kind: KindDequeue, Status: StatusInvalid},
	} {
		b := AppendResult(nil, &want)
		var got Result
		if err := DecodeResult(b, &got); err != nil {
			t.Fatalf("%+v: %v", want, err)
		}
		if got.Kind != want.Kind || got.Status != want.Status || got.ID != want.ID || got.Delivery != want.Delivery ||
			!got.Deadline.Equal(want.Deadline) || !bytes.Equal(got.Payload, want.Payload) {
			t.Fatalf("%+v decoded as %+v", want, got)
		}
		for cut := 0; cut < len(b); cut++ {
			if want.Kind == KindDequeue && want.Status == StatusOK && cut >= 4+20 {
				break // a shorter payload is still a dequeue result
			}
			if err := DecodeResult(b[:cut], &got); err == nil {
				t.Fatalf("%+v cut at %d decoded", want, cut)
			}
		}
	}
}

func TestQueryRoundTrip(t *testing.T) {
	t.Parallel()
	var q Query
	if err := DecodeQuery(AppendLenQuery(nil), &q); err != nil || q.Kind != QueryLen {
		t.Fatalf("length query: %+v %v", q, err)
	}
	if err := DecodeQuery(AppendPeekQuery(nil, ListLeased, MaxPeek), &q); err != nil || q != (Query{QueryPeek, ListLeased, MaxPeek}) {
		t.Fatalf("peek query: %+v %v", q, err)
	}
	for _, b := range [][]byte{AppendPeekQuery(nil, ListReady, 0), AppendPeekQuery(nil, ListReady, MaxPeek+1), AppendPeekQuery(nil, 3, 1), {1, 3, 0, 0, 0, 0, 0, 0}, {1, 1, 0, 0, 1, 0, 0, 0}, {1, 1}} {
		if err := DecodeQuery(b, &q); !errors.Is(err, ErrMalformed) {
			t.Fatalf("% x: %v", b, err)
		}
	}
	l := Lengths{Ready: 3, Leased: 2, Dead: 1, Clock: time.Unix(100, 1).UTC()}
	var got Lengths
	if err := DecodeLengths(AppendLengths(nil, &l), &got); err != nil || got != l {
		t.Fatalf("lengths %+v decoded as %+v, %v", l, got, err)
	}
	items := []Item{{ID: 1, Deliveries: 0, Payload: []byte("a")}, {ID: 2, Deliveries: 3, Deadline: time.Unix(5, 0).UTC(), Payload: []byte{}}}
	b := AppendPeekHeader(nil)
	for i := range items {
		b = AppendItem(b, &items[i])
	}
	back, err := DecodePeek(b)
	if err != nil || len(back) != 2 {
		t.Fatalf("peek: %v %v", back, err)
	}
	for i := range items {
		if back[i].ID != items[i].ID || back[i].Deliveries != items[i].Deliveries || !back[i].Deadline.Equal(items[i].Deadline) || !bytes.Equal(back[i].Payload, items[i].Payload) {
			t.Fatalf("item %d: %+v, want %+v", i, back[i], items[i])
		}
	}
	for cut := 0; cut < len(b); cut++ {
		if _, err := DecodePeek(b[:cut]); err == nil {
			t.Fatalf("peek answer cut at %d decoded", cut)
		}
	}
}

// The decoders never panic, and what they accept encodes back to the
// same bytes.

func FuzzDecodeOp(f *testing.F) {
	f.Add(AppendEnqueue(nil, []byte("x")))
	f.Add(AppendDequeue(nil, time.Second))
	f.Add(AppendAck(nil, 1, 1))
	f.Add(AppendExtend(nil, 1, 1, time.Second))
	f.Fuzz(func(t *testing.T, b []byte) {
		var op Op
		if DecodeOp(b, &op) != nil {
			return
		}
		var again []byte
		switch op.Kind {
		case KindEnqueue:
			again = AppendEnqueue(nil, op.Payload)
		case KindDequeue:
			again = AppendDequeue(nil, op.Lease)
		case KindAck:
			again = AppendAck(nil, op.ID, op.Delivery)
		case KindExtend:
			again = AppendExtend(nil, op.ID, op.Delivery, op.Lease)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("% x re-encodes as % x", b, again)
		}
	})
}

func FuzzDecodeResult(f *testing.F) {
	f.Add(AppendResult(nil, &Result{Kind: KindDequeue, ID: 1, Delivery: 1, Deadline: time.Unix(1, 0), Payload: []byte("x")}))
	f.Add(AppendResult(nil, &Result{Kind: KindEnqueue, ID: 1}))
	f.Add(AppendResult(nil, &Result{Status: StatusInvalid}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Result
		if DecodeResult(b, &r) != nil {
			return
		}
		if again := AppendResult(nil, &r); !bytes.Equal(again, b) {
			t.Fatalf("% x re-encodes as % x", b, again)
		}
	})
}

func FuzzDecodeQuery(f *testing.F) {
	f.Add(AppendLenQuery(nil))
	f.Add(AppendPeekQuery(nil, ListDead, 10))
	f.Fuzz(func(t *testing.T, b []byte) {
		var q Query
		if DecodeQuery(b, &q) != nil {
			return
		}
		again := AppendLenQuery(nil)
		if q.Kind == QueryPeek {
			again = AppendPeekQuery(nil, q.List, q.Limit)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("% x re-encodes as % x", b, again)
		}
	})
}

func FuzzDecodeAnswers(f *testing.F) {
	f.Add(AppendLengths(nil, &Lengths{Ready: 1, Clock: time.Unix(1, 0)}))
	f.Add(AppendItem(AppendPeekHeader(nil), &Item{ID: 1, Payload: []byte("x")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var l Lengths
		if DecodeLengths(b, &l) == nil {
			if again := AppendLengths(nil, &l); !bytes.Equal(again, b) {
				t.Fatalf("lengths % x re-encode as % x", b, again)
			}
		}
		if items, err := DecodePeek(b); err == nil {
			again := AppendPeekHeader(nil)
			for i := range items {
				again = AppendItem(again, &items[i])
			}
			if !bytes.Equal(again, b) {
				t.Fatalf("peek % x re-encodes as % x", b, again)
			}
		}
	})
}
