package main

import (
	"encoding/json"
	"fmt"

	"github.com/lockstitch/lockstitch/wal"
)

// Event is one record of the orchestration's history: one op of the
// partition, as JSON. Kind is one of:
//
//	run     a runner started; its LSN names the run (the incarnation)
//	start   an instance of the process started with Input
//	call    a step is about to execute: Step (1, 2, ... within the
//	        instance), Name, Input; one per attempt
//	result  the step ended with Output, or Error if it failed (a failure
//	        is a result too: it is replayed, not retried)
//	done    the instance ended with Output
//
// Every event but run carries Run, the LSN of its runner's run event.
type Event struct {
	Kind     string          `json:"kind"`
	Run      wal.LSN         `json:"run,omitempty"`
	Instance string          `json:"instance,omitempty"`
	Step     int             `json:"step,omitempty"`
	Name     string          `json:"name,omitempty"`
	Input    json.RawMessage `json:"input,omitempty"`
	Output   json.RawMessage `json:"output,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// History is the orchestration state rebuilt from the events, applied in
// LSN order. It is a deterministic function of the stream: every runner
// that replays the same events reaches the same History.
//
// Fencing: a run event makes its run the current one, and an event from
// an older run that commits after it is ignored (Fenced counts them). A
// runner killed with appends in flight may have them commit after its
// successor started; the successor decided without them, and so does
// every later replay.
type History struct {
	// Run is the current run: the LSN of the last run event.
	Run wal.LSN
	// Instances maps an instance name to its state.
	Instances map[string]*Instance
	// Fenced counts the events ignored as coming from a superseded run.
	Fenced int
	// Marker is the LSN of the last event applied.
	Marker wal.LSN
}

// Instance is one instance of the process.
type Instance struct {
	Input json.RawMessage
	// Calls maps a step to its attempts' call events, in order; Results
	// maps it to its result, once there is one.
	Calls   map[int][]Event
	Results map[int]Event
	// Done is set, with Output, when the instance ended.
	Done   bool
	Output json.RawMessage
	// CallsAfterResult counts call events for a step that already had
	// its result: a runner that executed a completed step again. It
	// stays 0.
	CallsAfterResult int
}

// NewHistory returns the history before the first event.
func NewHistory() *History {
	return &History{Instances: make(map[string]*Instance)}
}

// Apply applies the event at lsn, which must be Marker+1.
func (h *History) Apply(lsn wal.LSN, payload []byte) error {
	if lsn != h.Marker+1 {
		return fmt.Errorf("orchestration: event at LSN %d applied after LSN %d", lsn, h.Marker)
	}
	h.Marker = lsn
	var e Event
	if err := json.Unmarshal(payload, &e); err != nil {
		return fmt.Errorf("orchestration: event at LSN %d: %w", lsn, err)
	}
	if e.Kind == "run" {
		h.Run = lsn
		return nil
	}
	if e.Run != h.Run {
		h.Fenced++
		return nil
	}
	in := h.Instances[e.Instance]
	if in == nil && e.Kind != "start" {
		return fmt.Errorf("orchestration: %s event at LSN %d for instance %q, which never started", e.Kind, lsn, e.Instance)
	}
	switch e.Kind {
	case "start":
		if in == nil {
			h.Instances[e.Instance] = &Instance{Input: e.Input, Calls: make(map[int][]Event), Results: make(map[int]Event)}
		}
	case "call":
		if _, ok := in.Results[e.Step]; ok {
			in.CallsAfterResult++
		}
		in.Calls[e.Step] = append(in.Calls[e.Step], e)
	case "result":
		if _, ok := in.Results[e.Step]; !ok {
			in.Results[e.Step] = e
		}
	case "done":
		if !in.Done {
			in.Done, in.Output = true, e.Output
		}
	default:
		return fmt.Errorf("orchestration: unknown event kind %q at LSN %d", e.Kind, lsn)
	}
	return nil
}
