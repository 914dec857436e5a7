package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/examples/testcluster"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// childEnv makes the test binary run the orchestration command instead of
// the tests: the crash test runs the program as a separate process by
// re-executing itself.
const childEnv = "LOCKSTITCH_ORCHESTRATION_CHILD"

var seedFlag = flag.Uint64("orchestration.seed", 0, "seed of TestOrchestrationSurvivesKill9's kill points (0: from the clock)")

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// event returns e as a payload.
func event(t *testing.T, e Event) []byte {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHistoryFences replays a history where a dead run's result commits
// after its successor's run event: it is ignored, and the successor's
// own result is the step's.
func TestHistoryFences(t *testing.T) {
	h := NewHistory()
	in := json.RawMessage(`{"order":"o"}`)
	for i, e := range []Event{
		{Kind: "run"},
		{Kind: "start", Run: 1, Instance: "o", Input: in},
		{Kind: "call", Run: 1, Instance: "o", Step: 1, Name: "reserve", Input: in},
		{Kind: "run"},
		{Kind: "result", Run: 1, Instance: "o", Step: 1, Output: json.RawMessage(`"old"`)}, // the dead run's, late
		{Kind: "call", Run: 4, Instance: "o", Step: 1, Name: "reserve", Input: in},
		{Kind: "result", Run: 4, Instance: "o", Step: 1, Output: json.RawMessage(`"new"`)},
		{Kind: "result", Run: 4, Instance: "o", Step: 1, Output: json.RawMessage(`"again"`)},
		{Kind: "done", Run: 4, Instance: "o", Output: json.RawMessage(`1`)},
	} {
		if err := h.Apply(wal.LSN(i+1), event(t, e)); err != nil {
			t.Fatal(err)
		}
	}
	o := h.Instances["o"]
	if h.Run != 4 || h.Fenced != 1 || len(o.Calls[1]) != 2 || string(o.Results[1].Output) != `"new"` || !o.Done || o.CallsAfterResult != 0 {
		t.Fatalf("run %d, fenced %d, calls %d, result %s, done %v, calls after result %d; want 4, 1, 2, \"new\", true, 0",
			h.Run, h.Fenced, len(o.Calls[1]), o.Results[1].Output, o.Done, o.CallsAfterResult)
	}
	if err := h.Apply(11, event(t, Event{Kind: "run"})); err == nil {
		t.Fatal("an event out of order was applied")
	}
	if err := h.Apply(10, event(t, Event{Kind: "call", Run: 4, Instance: "x", Step: 1})); err == nil {
		t.Fatal("a call for an instance that never started was applied")
	}
}

// TestOrchestrationSurvivesKill9 runs the orchestration as a separate
// process against a three-node cluster in this process, killing it
// (SIGKILL) at random points (a seeded RNG), half the time right after a
// step's execution, before its result is recorded, and restarting it
// until it completes. Then: every instance's output equals the output of
// the same process run once in memory; every recorded result is the
// effect kept under its idempotency key; no step ran again after its
// result was recorded; a step ran at most once per recorded call (more
// than once only where a run was killed between the call and the
// result); and restarts replayed completed steps without running them.
func TestOrchestrationSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and processes")
	}
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -orchestration.seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	dir := t.TempDir()
	c, cl := testcluster.StartTest(ctx, t)
	const partition = 2
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: partition, Plugin: "log", Replicas: 3}); err != nil {
		t.Fatal(err)
	}

	const orders = 12
	effectsDir := filepath.Join(dir, "effects")
	args := []string{"run", "--addrs", strings.Join(c.Addrs(), ","), "--partition", fmt.Sprint(partition), "--dir", effectsDir, "--orders", fmt.Sprint(orders), "--progress"}
	replayed, edges, kills := 0, 0, 0
	for run := 1; ; run++ {
		p, err := testcluster.StartProc(ctx, os.Args[0], args, []string{childEnv + "=1"}, "")
		if err != nil {
			t.Fatal(err)
		}
		kill := run <= 8
		k, afterExec := 1+rng.IntN(30), rng.IntN(2) == 0
		n, last := 0, ""
		for line := range p.Lines() {
			n++
			last = line
			if strings.HasPrefix(line, "replayed ") {
				replayed++
			}
			if kill && n >= k && (!afterExec || strings.HasPrefix(line, "executed ")) {
				p.Kill()
				break
			}
		}
		err = p.Wait()
		if err == nil {
			t.Logf("run %d completed after %d lines", run, n)
			break
		}
		if !kill || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("run %d: %v\n%s", run, err, p.Stderr())
		}
		kills++
		if strings.HasPrefix(last, "executed ") {
			edges++
		}
		t.Logf("run %d killed after %d lines, the last %q", run, n, last)
	}

	// The history as the runners left it, every event counted.
	// A run event of the test's own: everything before it is the history
	// (a Read's committed LSN, from whichever replica answers, may lag).
	res, err := cl.Append(ctx, partition, event(t, Event{Kind: "run"}))
	if err != nil {
		t.Fatal(err)
	}
	end := res.LSN
	h := NewHistory()
	if err := ReadHistory(ctx, cl, partition, end, h); err != nil {
		t.Fatal(err)
	}
	calls := make(map[string]int) // every call event, fenced ones too
	sub, err := cl.Subscribe(ctx, partition, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var rec wal.Record
	for rec.LSN < end {
		if err := sub.Next(ctx, &rec); err != nil {
			t.Fatal(err)
		}
		var e Event
		if err := json.Unmarshal(rec.Payload, &e); err != nil {
			t.Fatal(err)
		}
		if e.Kind == "call" {
			calls[fmt.Sprintf("%s/%d", e.Instance, e.Step)]++
		}
	}
	effects, err := OpenEffects(effectsDir)
	if err != nil {
		t.Fatal(err)
	}
	execs, made, err := effects.Executions()
	if err != nil {
		t.Fatal(err)
	}

	once, again := 0, 0
	for i := 1; i <= orders; i++ {
		o := NewOrder(i)
		in, _ := json.Marshal(o)
		wantOut, err := OrderProcess(ctx, &Context{}, in)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(wantOut)
		st := h.Instances[o.Order]
		if st == nil || !st.Done || !bytes.Equal(st.Output, want) {
			t.Fatalf("%s: %+v; want done with %s", o.Order, st, want)
		}
		if st.CallsAfterResult != 0 {
			t.Fatalf("%s: %d steps called again after their result was recorded", o.Order, st.CallsAfterResult)
		}
		for step, res := range st.Results {
			key := fmt.Sprintf("%s/%d", o.Order, step)
			out, stepErr, ok, err := effects.Effect(key)
			if err != nil || !ok || !bytes.Equal(out, res.Output) || stepErr != res.Error {
				t.Fatalf("%s: effect %s %q (kept: %v, %v), recorded result %s %q", key, out, stepErr, ok, err, res.Output, res.Error)
			}
			switch n := execs[key]; {
			case n < 1 || n > calls[key]:
				t.Fatalf("%s ran %d times for %d recorded calls", key, n, calls[key])
			case n == 1:
				once++
			default:
				again++
				t.Logf("%s ran %d times (%d calls): a run was killed between its call and its result", key, n, calls[key])
			}
		}
	}
	for key := range execs {
		if calls[key] == 0 {
			t.Fatalf("%s ran without a recorded call", key)
		}
		if made[key] > 1 {
			t.Fatalf("%s made its effect %d times: its idempotency key did not hold", key, made[key])
		}
	}
	if kills == 0 || replayed == 0 {
		t.Fatalf("%d kills, %d steps replayed: the test did not exercise recovery", kills, replayed)
	}
	t.Logf("%d kills (%d right after an execution); %d steps ran once, %d more than once; %d replays; %d events fenced", kills, edges, once, again, replayed, h.Fenced)
}
