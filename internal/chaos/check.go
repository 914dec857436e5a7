package chaos

import (
	"fmt"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/lockstitch/lockstitch"
)

// Anomaly is one violation a checker found.
type Anomaly struct {
	Check  string `json:"check"` // the checker: appends, replicas, subscribers, kv
	Detail string `json:"detail"`
}

func (a Anomaly) String() string { return a.Check + ": " + a.Detail }

// Final returns the stream the appends are held to: the longest replica's
// (CheckReplicas holds the others to it).
func Final(replicas []Replica) []Entry {
	var best []Entry
	for _, r := range replicas {
		if len(r.Entries) > len(best) {
			best = r.Entries
		}
	}
	return best
}

// CheckAppends holds the appends' outcomes to the final stream: an
// acknowledged append is in it exactly once, at its LSN; a definite
// failure is absent; an indeterminate append is there at most once; and
// every record of the stream is an append of the history.
func CheckAppends(appends []Append, final []Entry) []Anomaly {
	var out []Anomaly
	bad := func(format string, args ...any) {
		out = append(out, Anomaly{Check: "appends", Detail: fmt.Sprintf(format, args...)})
	}
	at := map[string][]lockstitch.LSN{}
	for _, e := range final {
		at[e.Payload] = append(at[e.Payload], e.LSN)
	}
	known := map[string]bool{}
	for _, a := range appends {
		p := Payload(a.Producer, a.Seq)
		if known[p] {
			bad("%s is in the history twice", p)
		}
		known[p] = true
		lsns := at[p]
		switch a.Outcome {
		case OK:
			if len(lsns) != 1 || lsns[0] != a.LSN {
				bad("%s was acknowledged at LSN %d; the stream has it at %v", p, a.LSN, lsns)
			}
		case Fail:
			if len(lsns) != 0 {
				bad("%s failed definitely (%s); the stream has it at %v", p, a.Err, lsns)
			}
		case Info:
			if len(lsns) > 1 {
				bad("%s was indeterminate (%s); the stream has it %d times, at %v", p, a.Err, len(lsns), lsns)
			}
		default:
			bad("%s has no outcome (%q)", p, a.Outcome)
		}
	}
	for _, e := range final {
		if !known[e.Payload] {
			bad("the stream holds %.40q at LSN %d, which no producer appended", e.Payload, e.LSN)
		}
	}
	return out
}

// CheckReplicas holds every replica's stream to be dense (LSNs rising by
// one from its first) and the replicas to agree at every LSN they share.
func CheckReplicas(replicas []Replica) []Anomaly {
	var out []Anomaly
	bad := func(format string, args ...any) {
		out = append(out, Anomaly{Check: "replicas", Detail: fmt.Sprintf(format, args...)})
	}
	// The payload at each LSN, and the first replica that held it.
	type held struct {
		payload string
		node    int
	}
	seen := map[lockstitch.LSN]held{}
	for _, r := range replicas {
		for i, e := range r.Entries {
			if i > 0 && e.LSN != r.Entries[i-1].LSN+1 {
				bad("node %d: LSN %d follows LSN %d", r.Node, e.LSN, r.Entries[i-1].LSN)
			}
			if h, ok := seen[e.LSN]; !ok {
				seen[e.LSN] = held{e.Payload, r.Node}
			} else if h.payload != e.Payload {
				bad("LSN %d: node %d holds %.40q, node %d %.40q", e.LSN, h.node, h.payload, r.Node, e.Payload)
			}
		}
	}
	return out
}

// CheckSubscribers holds each subscriber to have received LSNs From+1,
// From+2, ... in order, none missing and none twice, each with the
// payload the final stream holds at that LSN.
func CheckSubscribers(subs []Subscriber, final []Entry) []Anomaly {
	var out []Anomaly
	bad := func(format string, args ...any) {
		out = append(out, Anomaly{Check: "subscribers", Detail: fmt.Sprintf(format, args...)})
	}
	byLSN := make(map[lockstitch.LSN]string, len(final))
	for _, e := range final {
		byLSN[e.LSN] = e.Payload
	}
	for _, s := range subs {
		want := s.From + 1
		for _, e := range s.Records {
			if e.LSN != want {
				bad("subscriber %d: received LSN %d where %d was due", s.ID, e.LSN, want)
				break // the rest would all be off by the same
			}
			if p, ok := byLSN[e.LSN]; !ok || p != e.Payload {
				bad("subscriber %d: received %.40q at LSN %d; the stream holds %.40q", s.ID, e.Payload, e.LSN, p)
			}
			want++
		}
	}
	return out
}

// CheckKV checks that the kv operations are linearizable, for at most
// timeout (0: no bound). It returns porcupine's verdict (Ok, Illegal, or
// Unknown when it ran out of time) and, when Illegal, an anomaly.
func CheckKV(ops []KVOp, timeout time.Duration) (porcupine.CheckResult, []Anomaly) {
	res := porcupine.CheckOperationsTimeout(KVModel, Operations(ops), timeout)
	if res == porcupine.Illegal {
		return res, []Anomaly{{Check: "kv", Detail: fmt.Sprintf("the %d kv operations are not linearizable", len(ops))}}
	}
	return res, nil
}

// Verdict is the judgement of a history.
type Verdict struct {
	OK        bool      `json:"ok"`
	Anomalies []Anomaly `json:"anomalies"`
	// KV is porcupine's result: "Ok", "Illegal" or "Unknown" (out of
	// time: not a failure, but no proof either).
	KV string `json:"kv"`
	// Counts of appends by outcome, and of stream records.
	Acked         int `json:"acked"`
	Failed        int `json:"failed"`
	Indeterminate int `json:"indeterminate"`
	Stream        int `json:"stream"`
	// Lost counts acknowledged appends missing from the final stream.
	Lost int `json:"lost"`
	// KVOps counts the kv operations checked (those that took effect or
	// may have).
	KVOps int `json:"kv_ops"`
}

// Check runs every checker on h, the kv check bounded by kvTimeout.
func Check(h *History, kvTimeout time.Duration) Verdict {
	final := Final(h.Replicas)
	v := Verdict{Stream: len(final)}
	v.Anomalies = append(v.Anomalies, CheckReplicas(h.Replicas)...)
	v.Anomalies = append(v.Anomalies, CheckAppends(h.Appends, final)...)
	v.Anomalies = append(v.Anomalies, CheckSubscribers(h.Subscribers, final)...)
	res, kv := CheckKV(h.KV, kvTimeout)
	v.KVOps = len(Operations(h.KV))
	v.KV = string(res)
	v.Anomalies = append(v.Anomalies, kv...)
	in := map[string]bool{}
	for _, e := range final {
		in[e.Payload] = true
	}
	for _, a := range h.Appends {
		switch a.Outcome {
		case OK:
			v.Acked++
			if !in[Payload(a.Producer, a.Seq)] {
				v.Lost++
			}
		case Fail:
			v.Failed++
		case Info:
			v.Indeterminate++
		}
	}
	v.OK = len(v.Anomalies) == 0
	slices.SortStableFunc(v.Anomalies, func(a, b Anomaly) int {
		if a.Check < b.Check {
			return -1
		}
		if a.Check > b.Check {
			return 1
		}
		return 0
	})
	return v
}
