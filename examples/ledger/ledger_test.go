package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/examples/testcluster"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// childEnv makes the test binary run the ledger command instead of the
// tests: the crash test runs the program as a separate process by
// re-executing itself.
const childEnv = "LOCKSTITCH_LEDGER_CHILD"

var seedFlag = flag.Uint64("ledger.seed", 0, "seed of TestLedgerSurvivesKill9's kill points and ops (0: from the clock)")

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
	}
	os.Exit(m.Run())
}

func TestApplyRules(t *testing.T) {
	l := NewLedger()
	for i, c := range []struct {
		op, reject string
	}{
		{`{"type":"open","account":"a"}`, ""},
		{`{"type":"open","account":"b"}`, ""},
		{`{"type":"open","account":"a"}`, "account exists"},
		{`{"type":"deposit","account":"a","amount":100}`, ""},
		{`{"type":"deposit","account":"c","amount":1}`, "unknown account"},
		{`{"type":"deposit","account":"a","amount":0}`, "amount not positive"},
		{`{"type":"transfer","from":"a","to":"b","amount":60}`, ""},
		{`{"type":"transfer","from":"a","to":"b","amount":41}`, "overdraft"},
		{`{"type":"transfer","from":"a","to":"a","amount":1}`, "transfer to the same account"},
		{`{"type":"transfer","from":"a","to":"z","amount":1}`, "unknown destination account"},
		{`{"type":"burn","account":"a"}`, "unknown op type"},
		{`not json`, "malformed op"},
		{`{"type":"transfer","from":"b","to":"a","amount":60}`, ""},
	} {
		got, err := l.Apply(wal.LSN(i+1), []byte(c.op))
		if err != nil || got != c.reject {
			t.Fatalf("op %d %s: rejected %q, %v; want %q", i+1, c.op, got, err, c.reject)
		}
	}
	if want := map[string]int64{"a": 100, "b": 0}; !reflect.DeepEqual(l.Accounts, want) {
		t.Fatalf("balances %v, want %v", l.Accounts, want)
	}
	if l.Applied != 5 || l.Rejected != 8 || l.Marker != 13 {
		t.Fatalf("applied %d rejected %d marker %d, want 5, 8, 13", l.Applied, l.Rejected, l.Marker)
	}
	if _, err := l.Apply(15, []byte(`{}`)); err == nil || l.Marker != 13 {
		t.Fatalf("an op out of order: %v, marker %d", err, l.Marker)
	}
}

func TestStore(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := st.Load()
	if err != nil || l.Marker != 0 || len(l.Accounts) != 0 {
		t.Fatalf("empty store: %+v, %v", l, err)
	}
	l.Apply(1, []byte(`{"type":"open","account":"a"}`))
	l.Apply(2, []byte(`{"type":"deposit","account":"a","amount":7}`))
	if err := st.Save(l); err != nil {
		t.Fatal(err)
	}
	// A temporary file left by a save that died before its rename is
	// ignored.
	if err := os.WriteFile(filepath.Join(dir, tempFile), []byte("half a sta"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := st.Load()
	if err != nil || !reflect.DeepEqual(got, l) {
		t.Fatalf("loaded %+v, %v; want %+v", got, err, l)
	}
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-3] ^= 1
	if err := os.WriteFile(filepath.Join(dir, stateFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Load(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a damaged file loads with %v, want ErrCorrupt", err)
	}
}

// TestLedgerSurvivesKill9 runs the ledger as separate processes against a
// three-node cluster in this process: an appender whose runs are killed
// (SIGKILL) at random points and rerun with the same producer id, and,
// meanwhile, an applier killed at random points several times and
// restarted from its store. At the end the applier's saved state equals
// the state computed by applying the whole stream once, in memory, and
// the stream holds every input op exactly once.
func TestLedgerSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and processes")
	}
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -ledger.seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	dir := t.TempDir()
	c, cl := testcluster.StartTest(ctx, t)
	addrs := strings.Join(c.Addrs(), ",")
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Plugin: "log", Replicas: 3}); err != nil {
		t.Fatal(err)
	}

	const nOps = 800
	ops := genOps(rng, nOps)
	input := filepath.Join(dir, "ops.jsonl")
	if err := os.WriteFile(input, []byte(strings.Join(ops, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// The appender: killed after a random number of acknowledged appends,
	// twice at most, then run to its end.
	appendKills := []int{1 + rng.IntN(nOps/2), 1 + rng.IntN(nOps/2)}
	appended := make(chan error, 1)
	appenderDone := make(chan struct{})
	defer func() {
		cancel() // kills the appender if the test failed before it ended
		<-appenderDone
	}()
	go func() {
		defer close(appenderDone)
		for run := 0; ; run++ {
			p, err := startChild(ctx, []string{"append", "--addrs", addrs, "--producer", "77"}, input)
			if err != nil {
				appended <- err
				return
			}
			n := 0
			for range p.Lines() {
				n++
				if run < len(appendKills) && n == appendKills[run] {
					p.Kill()
					break
				}
			}
			err = p.Wait()
			if run >= len(appendKills) || n < appendKills[run] {
				if err != nil {
					err = fmt.Errorf("appender: %w\n%s", err, p.Stderr())
				}
				appended <- err
				return
			}
			t.Logf("appender run %d killed after %d acknowledged appends", run+1, n)
		}
	}()

	// The applier: killed after a random number of ops applied, eight
	// times; the last kills may come after the appender is done.
	state := filepath.Join(dir, "ledger")
	applyArgs := []string{"apply", "--addrs", addrs, "--dir", state, "--progress", "--save-every", "16"}
	var appendDone bool
	var appendErr error
	var lastApplied, reapplied int
	for run := 0; run < 8; run++ {
		k := 1 + rng.IntN(150)
		p, err := startChild(ctx, applyArgs, "")
		if err != nil {
			t.Fatal(err)
		}
		n, first := 0, -1
	follow:
		for {
			select {
			case line, ok := <-p.Lines():
				if !ok {
					break follow
				}
				var lsn int
				if _, err := fmt.Sscanf(line, "applied %d", &lsn); err != nil {
					t.Fatalf("applier printed %q", line)
				}
				if first < 0 {
					first = lsn
					reapplied += max(lastApplied-first+1, 0)
				}
				lastApplied = lsn
				n++
				if n >= k || (appendDone && lsn >= nOps) {
					p.Kill()
					break follow
				}
			case appendErr = <-appended:
				appendDone = true
				if appendErr != nil {
					p.Kill()
					p.Wait()
					t.Fatal(appendErr)
				}
				if lastApplied >= nOps {
					p.Kill()
					break follow
				}
			}
		}
		if err := p.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("applier run %d ended with %v, not killed:\n%s", run+1, err, p.Stderr())
		}
		t.Logf("applier run %d: applied LSN %d to %d, killed", run+1, first, lastApplied)
	}
	if !appendDone {
		if appendErr = <-appended; appendErr != nil {
			t.Fatal(appendErr)
		}
	}
	// A last run to the end of the stream.
	p, err := startChild(ctx, append(applyArgs, "--until", fmt.Sprint(nOps)), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("last applier run: %v\n%s", err, p.Stderr())
	}
	if reapplied == 0 {
		t.Fatal("no restart applied again an op its killed run had applied: the test did not exercise recovery")
	}
	t.Logf("%d ops applied again after kills", reapplied)

	// The reference: the whole stream applied once, in memory. It is read
	// through a subscription, which follows the leader: a Read may be
	// answered by a replica that lags.
	want := NewLedger()
	seen := make(map[string]int)
	sub, err := cl.Subscribe(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var rec wal.Record
	for want.Marker < nOps {
		if err := sub.Next(ctx, &rec); err != nil {
			t.Fatal(err)
		}
		if _, err := want.Apply(rec.LSN, rec.Payload); err != nil {
			t.Fatal(err)
		}
		seen[string(rec.Payload)]++
	}
	st, err := cl.PartitionStatus(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if st.Committed > nOps {
		t.Fatalf("the partition committed up to LSN %d: more ops than the %d appended", st.Committed, nOps)
	}
	if want.Marker != nOps {
		t.Fatalf("the stream has %d ops, want %d", want.Marker, nOps)
	}
	for _, op := range ops {
		if seen[op] != 1 {
			t.Fatalf("op %s is in the stream %d times", op, seen[op])
		}
	}
	store, err := OpenStore(state)
	if err != nil {
		t.Fatal(err)
	}
	got, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the ledger after kills:\n%s\nwant, applying the stream once:\n%s", dump(got), dump(want))
	}
	if want.Rejected == 0 || want.Applied == 0 {
		t.Fatalf("applied %d, rejected %d: the ops exercise too little", want.Applied, want.Rejected)
	}
	t.Logf("%d ops: %d applied, %d rejected; digest %s", nOps, want.Applied, want.Rejected, want.Digest[:16])
}

// startChild runs the ledger command with args in a new process.
func startChild(ctx context.Context, args []string, stdin string) (*testcluster.Proc, error) {
	return testcluster.StartProc(ctx, os.Args[0], args, []string{childEnv + "=1"}, stdin)
}

// genOps returns n ops: accounts opened and funded, then transfers among
// them, some of which overdraw (and some name an unknown account).
func genOps(rng *rand.Rand, n int) []string {
	const accounts = 6
	var ops []string
	add := func(op Op) {
		op.ID = fmt.Sprint(len(ops) + 1)
		b, err := json.Marshal(op)
		if err != nil {
			panic(err)
		}
		ops = append(ops, string(b))
	}
	name := func(i int) string { return fmt.Sprint("acct", i) }
	for i := range accounts {
		add(Op{Type: "open", Account: name(i)})
		add(Op{Type: "deposit", Account: name(i), Amount: 100 + rng.Int64N(100)})
	}
	for len(ops) < n {
		switch r := rng.IntN(20); {
		case r == 0:
			add(Op{Type: "deposit", Account: name(rng.IntN(accounts)), Amount: 1 + rng.Int64N(50)})
		case r == 1:
			add(Op{Type: "transfer", From: name(rng.IntN(accounts)), To: name(accounts), Amount: 1})
		default:
			add(Op{Type: "transfer", From: name(rng.IntN(accounts)), To: name(rng.IntN(accounts)), Amount: 1 + rng.Int64N(80)})
		}
	}
	return ops
}

func dump(l *Ledger) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.Encode(l)
	return b.String()
}
