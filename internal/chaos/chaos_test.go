package chaos

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"
)

// good is a history that every checker accepts: three producers' appends
// (one acknowledged, one failed, two indeterminate of which one made it),
// two replicas that agree (one behind), a subscriber from the start and
// one from a marker, and a linearizable kv history.
func good() *History {
	stream := []Entry{{1, "p1-0"}, {2, "p2-0"}, {3, "p1-1"}, {4, "p3-0"}}
	return &History{
		Appends: []Append{
			{Producer: 1, Seq: 0, Outcome: OK, LSN: 1},
			{Producer: 2, Seq: 0, Outcome: OK, LSN: 2},
			{Producer: 1, Seq: 1, Outcome: Info, Err: "lost connection"},
			{Producer: 3, Seq: 0, Outcome: OK, LSN: 4},
			{Producer: 2, Seq: 1, Outcome: Fail, Err: "not leader"},
			{Producer: 3, Seq: 1, Outcome: Info, Err: "timeout"},
		},
		KV: []KVOp{
			{Client: 0, Input: KVInput{Op: KVPut, Key: "x", Value: "a"}, Outcome: OK, Output: KVOutput{Version: 1}, Call: 0, Return: 10},
			{Client: 1, Input: KVInput{Op: KVGet, Key: "x"}, Outcome: OK, Output: KVOutput{Value: "a", Version: 1}, Call: 20, Return: 30},
			{Client: 1, Input: KVInput{Op: KVCAS, Key: "x", Value: "b", Expect: "a"}, Outcome: OK, Output: KVOutput{OK: true, Version: 2}, Call: 40, Return: 50},
			{Client: 0, Input: KVInput{Op: KVPut, Key: "x", Value: "c"}, Outcome: Fail, Err: "busy", Call: 60, Return: 70},
			{Client: 2, Input: KVInput{Op: KVGet, Key: "x"}, Outcome: Info, Err: "timeout", Call: 60, Return: 90},
			{Client: 2, Input: KVInput{Op: KVGet, Key: "x"}, Outcome: OK, Output: KVOutput{Value: "b", Version: 2}, Call: 100, Return: 110},
		},
		Subscribers: []Subscriber{
			{ID: 1, From: 0, Records: stream[:3]},
			{ID: 2, From: 2, Records: stream[2:]},
		},
		Replicas: []Replica{
			{Node: 1, Entries: stream},
			{Node: 2, Entries: stream[:3]},
		},
	}
}

// TestCheckersAcceptGoodHistory is the control: the good history passes
// every checker, so each case below fails for its one flaw.
func TestCheckersAcceptGoodHistory(t *testing.T) {
	v := Check(good(), 0)
	if !v.OK || v.KV != string(porcupine.Ok) {
		t.Fatalf("the good history was refused: %+v", v)
	}
	if v.Acked != 3 || v.Failed != 1 || v.Indeterminate != 2 || v.Stream != 4 || v.Lost != 0 {
		t.Fatalf("counts: %+v", v)
	}
}

// TestCheckersCatchAnomalies breaks the good history one way at a time
// and sees the checker in charge of that way refuse it.
func TestCheckersCatchAnomalies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		check  string // the checker that must complain
		lost   int
		mutate func(h *History)
	}{
		{"a lost write", "appends", 1, func(h *History) {
			// p3-0, acknowledged at LSN 4, is on no replica.
			h.Replicas[0].Entries = h.Replicas[0].Entries[:3]
			h.Subscribers[1].Records = h.Subscribers[1].Records[:1]
		}},
		{"an acknowledged write twice", "appends", 0, func(h *History) {
			h.Replicas[0].Entries = append(h.Replicas[0].Entries, Entry{5, "p2-0"})
		}},
		{"an indeterminate write twice", "appends", 0, func(h *History) {
			h.Replicas[0].Entries = append(h.Replicas[0].Entries, Entry{5, "p1-1"})
		}},
		{"a reordering", "appends", 0, func(h *History) {
			// LSNs 1 and 2 swapped on every replica and for every reader.
			for _, r := range h.Replicas {
				r.Entries[0].Payload, r.Entries[1].Payload = "p2-0", "p1-0"
			}
			h.Subscribers[0].Records = []Entry{{1, "p2-0"}, {2, "p1-0"}, {3, "p1-1"}}
		}},
		{"a failed write present", "appends", 0, func(h *History) {
			h.Replicas[0].Entries = append(h.Replicas[0].Entries, Entry{5, "p2-1"})
		}},
		{"a record nobody appended", "appends", 0, func(h *History) {
			h.Replicas[0].Entries = append(h.Replicas[0].Entries, Entry{5, "p9-9"})
		}},
		{"replicas that diverge", "replicas", 0, func(h *History) {
			h.Replicas[1].Entries = []Entry{{1, "p1-0"}, {2, "p2-0"}, {3, "p3-1"}}
		}},
		{"a gap in a replica", "replicas", 0, func(h *History) {
			h.Replicas[1].Entries = []Entry{{1, "p1-0"}, {3, "p1-1"}}
		}},
		{"a subscriber gap", "subscribers", 0, func(h *History) {
			h.Subscribers[0].Records = []Entry{{1, "p1-0"}, {3, "p1-1"}}
		}},
		{"a subscriber duplicate", "subscribers", 0, func(h *History) {
			h.Subscribers[0].Records = []Entry{{1, "p1-0"}, {2, "p2-0"}, {2, "p2-0"}}
		}},
		{"a subscriber that starts late", "subscribers", 0, func(h *History) {
			h.Subscribers[1].From = 1
		}},
		{"a subscriber given the wrong payload", "subscribers", 0, func(h *History) {
			h.Subscribers[0].Records = []Entry{{1, "p1-0"}, {2, "p1-1"}}
		}},
		{"a stale read", "kv", 0, func(h *History) {
			// The last get, after the cas returned, sees the value before it.
			h.KV[5].Output = KVOutput{Value: "a", Version: 1}
		}},
		{"a failed put seen", "kv", 0, func(h *History) {
			h.KV[5].Output = KVOutput{Value: "c", Version: 3}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := good()
			tc.mutate(h)
			v := Check(h, 0)
			if v.OK {
				t.Fatal("the checkers accepted it")
			}
			var checks []string
			for _, a := range v.Anomalies {
				checks = append(checks, a.Check)
				t.Log(a)
			}
			if !strings.Contains(strings.Join(checks, " "), tc.check) {
				t.Fatalf("the %s checker did not complain; the anomalies: %v", tc.check, v.Anomalies)
			}
			if v.Lost != tc.lost {
				t.Fatalf("lost %d, want %d", v.Lost, tc.lost)
			}
		})
	}
}

// TestKVModel feeds porcupine histories that are not linearizable and
// sees KVModel refuse them, and their linearizable variants and sees it
// accept them.
func TestKVModel(t *testing.T) {
	op := func(client int, in KVInput, call, ret int64, out KVOutput) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
	}
	for _, tc := range []struct {
		name string
		ok   bool
		h    []porcupine.Operation
	}{
		{"read after a completed put sees it", true, []porcupine.Operation{
			op(0, KVInput{Op: KVPut, Key: "x", Value: "a"}, 0, 10, KVOutput{Version: 1}),
			op(1, KVInput{Op: KVGet, Key: "x"}, 20, 30, KVOutput{Value: "a", Version: 1}),
		}},
		{"stale read after a completed put", false, []porcupine.Operation{
			op(0, KVInput{Op: KVPut, Key: "x", Value: "a"}, 0, 10, KVOutput{Version: 1}),
			op(1, KVInput{Op: KVGet, Key: "x"}, 20, 30, KVOutput{}),
		}},
		{"two cas on one version both succeed", false, []porcupine.Operation{
			op(0, KVInput{Op: KVPut, Key: "x", Value: "a"}, 0, 10, KVOutput{Version: 1}),
			op(1, KVInput{Op: KVCAS, Key: "x", Value: "b", Expect: "a"}, 20, 30, KVOutput{OK: true, Version: 2}),
			op(2, KVInput{Op: KVCAS, Key: "x", Value: "c", Expect: "a"}, 25, 40, KVOutput{OK: true, Version: 3}),
		}},
		{"a read goes back in time", false, []porcupine.Operation{
			op(0, KVInput{Op: KVPut, Key: "x", Value: "a"}, 0, 10, KVOutput{Version: 1}),
			op(0, KVInput{Op: KVPut, Key: "x", Value: "b"}, 20, 100, KVOutput{Version: 2}),
			op(1, KVInput{Op: KVGet, Key: "x"}, 30, 40, KVOutput{Value: "b", Version: 2}),
			op(2, KVInput{Op: KVGet, Key: "x"}, 50, 60, KVOutput{Value: "a", Version: 1}),
		}},
		{"an indeterminate put is seen later", true, []porcupine.Operation{
			op(0, KVInput{Op: KVPut, Key: "x", Value: "a"}, 0, math.MaxInt64, KVOutput{Unknown: true}),
			op(1, KVInput{Op: KVGet, Key: "x"}, 20, 30, KVOutput{}),
			op(1, KVInput{Op: KVGet, Key: "x"}, 40, 50, KVOutput{Value: "a", Version: 7}),
		}},
		{"an indeterminate put is seen, then unseen", false, []porcupine.Operation{
			op(0, KVInput{Op: KVPut, Key: "x", Value: "a"}, 0, math.MaxInt64, KVOutput{Unknown: true}),
			op(1, KVInput{Op: KVGet, Key: "x"}, 20, 30, KVOutput{Value: "a", Version: 7}),
			op(1, KVInput{Op: KVGet, Key: "x"}, 40, 50, KVOutput{}),
		}},
	} {
		if got := porcupine.CheckOperations(KVModel, tc.h); got != tc.ok {
			t.Errorf("%s: linearizable = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// TestHistoryJSONL writes the good history as JSON lines and reads it
// back unchanged.
func TestHistoryJSONL(t *testing.T) {
	h := good()
	var b bytes.Buffer
	if err := h.WriteJSONL(&b); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSONL(&b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, h) {
		t.Fatalf("read back:\n%+v\nwrote:\n%+v", got, h)
	}
	if _, err := ReadJSONL(strings.NewReader(`{"record":{"lsn":1,"payload":"x"}}` + "\n")); err == nil {
		t.Fatal("a record before any subscriber or replica was read without an error")
	}
}
