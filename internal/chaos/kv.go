package chaos

import (
	"fmt"
	"math"

	"github.com/anishathalye/porcupine"
)

// KVKind is a kv operation's kind.
type KVKind int

// KV operation kinds.
const (
	KVGet KVKind = iota
	KVPut
	KVCAS
)

// KVInput is a kv operation as porcupine's KVModel takes it. Every value
// written is unique, so a value names the write that wrote it, and a
// cas's Expect is the value the client last read of the key (its expected
// version is that value's).
type KVInput struct {
	Op     KVKind `json:"op"`
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`  // put, cas: the value written
	Expect string `json:"expect,omitempty"` // cas: the value the key must hold ("": absent)
}

// KVOutput is what a kv operation returned.
type KVOutput struct {
	Unknown bool   `json:"unknown,omitempty"` // a write whose outcome is indeterminate
	OK      bool   `json:"ok,omitempty"`      // cas: applied
	Value   string `json:"value,omitempty"`   // get: the value ("": absent)
	// get: the key's version; put, cas ok: the new one; cas mismatch:
	// the current one.
	Version uint64 `json:"version,omitempty"`
}

// kvState is a key's value and version; known is false after a write
// whose version the history does not say.
type kvState struct {
	value   string
	version uint64
	known   bool
}

// KVModel is the linearizability model of a kv key under put, get and
// cas, for porcupine: Input is a KVInput, Output a KVOutput. A write whose
// outcome is indeterminate has Output.Unknown set and returns at
// math.MaxInt64 (it may take effect at any time after its call); a get
// that failed did nothing and is left out of the history.
var KVModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(KVInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return kvState{known: true} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(kvState), input.(KVInput), output.(KVOutput)
		newer := !s.known || out.Version > s.version
		switch in.Op {
		case KVGet:
			if out.Value != s.value || (s.known && out.Version != s.version) {
				return false, s
			}
			return true, kvState{value: s.value, version: out.Version, known: true}
		case KVPut:
			if out.Unknown {
				return true, kvState{value: in.Value}
			}
			return newer, kvState{value: in.Value, version: out.Version, known: true}
		}
		match := s.value == in.Expect
		switch {
		case out.Unknown && match:
			return true, kvState{value: in.Value}
		case out.Unknown:
			return true, s
		case out.OK:
			return match && newer, kvState{value: in.Value, version: out.Version, known: true}
		}
		if match || (s.known && out.Version != s.version) {
			return false, s
		}
		return true, kvState{value: s.value, version: out.Version, known: true}
	},
	Equal: func(a, b any) bool { return a.(kvState) == b.(kvState) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(KVInput), output.(KVOutput)
		return fmt.Sprintf("%d %s %q %q -> %+v", in.Op, in.Key, in.Value, in.Expect, out)
	},
}

// KVOp is one kv operation of a run and what its client reported.
type KVOp struct {
	Client  int      `json:"client"`
	Input   KVInput  `json:"input"`
	Outcome Outcome  `json:"outcome"`
	Output  KVOutput `json:"output"` // when OK
	Err     string   `json:"err,omitempty"`
	// Call and Return are nanoseconds since the run started.
	Call   int64 `json:"call"`
	Return int64 `json:"return"`
}

// Operations turns kv ops into porcupine's history for KVModel: a definite
// failure took no effect and is left out, as is a get without an answer;
// an indeterminate write may take effect at any time after its call.
func Operations(ops []KVOp) []porcupine.Operation {
	var out []porcupine.Operation
	for _, op := range ops {
		o := porcupine.Operation{ClientId: op.Client, Input: op.Input, Call: op.Call, Output: op.Output, Return: op.Return}
		switch {
		case op.Outcome == OK:
		case op.Outcome == Info && op.Input.Op != KVGet:
			o.Output, o.Return = KVOutput{Unknown: true}, math.MaxInt64
		default:
			continue
		}
		out = append(out, o)
	}
	return out
}
