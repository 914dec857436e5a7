package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// StepError is a step's own failure (a card declined): deterministic, it
// is recorded as the step's result and replayed, never retried. Any other
// error from Call is the runner's (the cluster unreachable): the run stops
// and a later run resumes from the history.
type StepError struct {
	Step string
	Msg  string
}

func (e *StepError) Error() string { return e.Step + ": " + e.Msg }

// Step is a step function: deterministic, given its input. Its side effect
// is made through the Effects the runner passes, under the call's
// idempotency key.
type Step func(in json.RawMessage) (out any, err error)

// Process is an orchestration: a deterministic function of its input and
// of the results its Calls return.
type Process func(ctx context.Context, c *Context, in json.RawMessage) (out any, err error)

// Context is what a Process sees of its instance: Call runs a step, or
// replays its recorded result.
type Context struct {
	r        *Runner // nil: run the steps directly, recording nothing
	instance string
	step     int
}

// Call runs the step name with in and decodes its output into out (which
// may be nil). If the history holds the result of this call (the same
// step number, name and input), Call returns it without running the step.
// Otherwise it records a call event, runs the step, and records its
// result. A *StepError is the step's failure; any other error is the
// runner's.
func (c *Context) Call(ctx context.Context, name string, in, out any) error {
	c.step++
	input, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("orchestration: input of %s: %w", name, err)
	}
	var res Event
	if c.r == nil {
		res = runStep(nil, "", name, input)
	} else if res, err = c.r.call(ctx, c.instance, c.step, name, input); err != nil {
		return err
	}
	if res.Error != "" {
		return &StepError{Step: name, Msg: res.Error}
	}
	if out != nil {
		if err := json.Unmarshal(res.Output, out); err != nil {
			return fmt.Errorf("orchestration: output of %s: %w", name, err)
		}
	}
	return nil
}

// runStep executes step name on input, through effects under key unless
// effects is nil, and returns its result event.
func runStep(effects *Effects, key, name string, input json.RawMessage) Event {
	fn := steps[name]
	if fn == nil {
		return Event{Error: "unknown step " + name}
	}
	exec := func() (json.RawMessage, string) {
		out, err := fn(input)
		if err != nil {
			return nil, err.Error()
		}
		b, err := json.Marshal(out)
		if err != nil {
			return nil, err.Error()
		}
		return b, ""
	}
	var e Event
	if effects == nil {
		e.Output, e.Error = exec()
		return e
	}
	var err error
	if e.Output, e.Error, err = effects.Do(key, name, exec); err != nil {
		e.Error = err.Error() // the effect store failed: recorded as the step's failure
	}
	return e
}

// RunnerConfig configures a Runner.
type RunnerConfig struct {
	// Partition is the log partition holding the history.
	Partition lockstitch.PartitionID
	// Effects is where steps make their side effects.
	Effects *Effects
	// Progress, if set, receives a line per event: "replayed KEY",
	// "call KEY", "executed KEY", "result KEY", "done INSTANCE", where
	// KEY is instance/step.
	Progress io.Writer
}

// Runner runs process instances, recording every call and result.
type Runner struct {
	cl  *transport.Client
	cfg RunnerConfig
	run wal.LSN
	h   *History
}

// StartRunner starts a run: it appends a run event, whose LSN fences off
// every earlier runner, and replays the history up to it.
func StartRunner(ctx context.Context, cl *transport.Client, cfg RunnerConfig) (*Runner, error) {
	r := &Runner{cl: cl, cfg: cfg, h: NewHistory()}
	b, err := json.Marshal(Event{Kind: "run"})
	if err != nil {
		return nil, err
	}
	res, err := cl.Append(ctx, cfg.Partition, b)
	if err != nil {
		return nil, fmt.Errorf("orchestration: recording the run event: %w", err)
	}
	r.run = res.LSN
	if err := ReadHistory(ctx, cl, cfg.Partition, r.run, r.h); err != nil {
		return nil, err
	}
	return r, nil
}

// ReadHistory applies the events of partition p from h.Marker+1 to until
// to h. It follows the partition's leader (a Subscription), which has
// every op committed: a Read may be answered by a replica that lags.
func ReadHistory(ctx context.Context, cl *transport.Client, p lockstitch.PartitionID, until wal.LSN, h *History) error {
	if h.Marker >= until {
		return nil
	}
	sub, err := cl.Subscribe(ctx, p, h.Marker)
	if err != nil {
		return fmt.Errorf("orchestration: reading the history from LSN %d: %w", h.Marker+1, err)
	}
	defer sub.Close()
	var rec wal.Record
	for h.Marker < until {
		if err := sub.Next(ctx, &rec); err != nil {
			return fmt.Errorf("orchestration: reading the history at LSN %d: %w", h.Marker+1, err)
		}
		if err := h.Apply(rec.LSN, rec.Payload); err != nil {
			return err
		}
	}
	return nil
}

// Run runs instance with in to its end, resuming from the history: a
// step whose result is recorded is not run again. It returns the
// instance's output.
func (r *Runner) Run(ctx context.Context, instance string, p Process, in any) (json.RawMessage, error) {
	input, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	st := r.h.Instances[instance]
	if st == nil {
		if _, err := r.append(ctx, Event{Kind: "start", Instance: instance, Input: input}); err != nil {
			return nil, err
		}
		st = r.h.Instances[instance]
	}
	if st.Done {
		return st.Output, nil
	}
	out, err := p(ctx, &Context{r: r, instance: instance}, st.Input)
	if err != nil {
		return nil, fmt.Errorf("orchestration: instance %s: %w", instance, err)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	if _, err := r.append(ctx, Event{Kind: "done", Instance: instance, Output: b}); err != nil {
		return nil, err
	}
	r.progress("done %s", instance)
	return b, nil
}

// call is Context.Call's recorded path.
func (r *Runner) call(ctx context.Context, instance string, step int, name string, input json.RawMessage) (Event, error) {
	key := fmt.Sprintf("%s/%d", instance, step)
	st := r.h.Instances[instance]
	if calls := st.Calls[step]; len(calls) > 0 && (calls[0].Name != name || !bytes.Equal(calls[0].Input, input)) {
		return Event{}, fmt.Errorf("orchestration: %s is nondeterministic: step %d was %s(%s), now %s(%s)", instance, step, calls[0].Name, calls[0].Input, name, input)
	}
	if res, ok := st.Results[step]; ok {
		r.progress("replayed %s", key)
		return res, nil
	}
	if _, err := r.append(ctx, Event{Kind: "call", Instance: instance, Step: step, Name: name, Input: input}); err != nil {
		return Event{}, err
	}
	r.progress("call %s", key)
	res := runStep(r.cfg.Effects, key, name, input)
	r.progress("executed %s", key)
	res.Kind, res.Instance, res.Step, res.Name = "result", instance, step, name
	if _, err := r.append(ctx, res); err != nil {
		return Event{}, err
	}
	r.progress("result %s", key)
	return res, nil
}

// append records e, as part of this run, and applies it to the history.
func (r *Runner) append(ctx context.Context, e Event) (wal.LSN, error) {
	e.Run = r.run
	b, err := json.Marshal(e)
	if err != nil {
		return 0, err
	}
	res, err := r.cl.Append(ctx, r.cfg.Partition, b)
	if err != nil {
		return 0, fmt.Errorf("orchestration: recording %s event: %w", e.Kind, err)
	}
	// Events between the history read and this one can only be a dead
	// run's, which replay fences off: skip over them here too.
	if r.h.Marker < res.LSN-1 {
		r.h.Marker = res.LSN - 1
	}
	if err := r.h.Apply(res.LSN, b); err != nil {
		return 0, errors.Join(fmt.Errorf("orchestration: applying own %s event", e.Kind), err)
	}
	return res.LSN, nil
}

func (r *Runner) progress(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, format+"\n", args...)
	}
}
