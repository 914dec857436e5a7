package transport

import (
	"errors"
	"sync"
	"testing"

	"github.com/lockstitch/lockstitch"
)

// scriptedHandler answers the n-th append attempt (from 0) with
// script(n): an error, or nil to serve it. commitFirst makes the first
// attempt commit the op before it answers its error, as a leader that
// loses touch with its client after the commit does.
type scriptedHandler struct {
	*fakeHandler
	mu          sync.Mutex
	n           int
	commitFirst bool
	script      func(n int) error
}

func (h *scriptedHandler) Append(req *AppendRequest, done AppendCompletion) {
	h.mu.Lock()
	n := h.n
	h.n++
	h.mu.Unlock()
	err := h.script(n)
	if err == nil {
		h.fakeHandler.Append(req, done)
		return
	}
	if n == 0 && h.commitFirst {
		h.fakeHandler.mu.Lock()
		_, cerr := h.fakeHandler.appendLocked(req.Partition, req.Producer, req.Sequence, req.CRC, req.Payload)
		h.fakeHandler.mu.Unlock()
		if cerr != nil {
			panic(cerr)
		}
	}
	done.Fail(err)
}

// TestAppendOutcomes holds the client to the table of outcomes in
// docs/guarantees.md: an append ends in success, a definite failure or an
// indeterminate one, and is indeterminate when any attempt was, even if
// its last attempt's error alone is definite.
func TestAppendOutcomes(t *testing.T) {
	notLeader := &lockstitch.NotLeaderError{}
	for _, tc := range []struct {
		name          string
		commitFirst   bool
		script        func(n int) error
		indeterminate bool
		is            error // the cause the error must also match; nil: success
		committed     int   // ops in the stream afterwards
	}{
		{"aborted then served: the retry finds the committed op", true,
			func(n int) error {
				if n == 0 {
					return lockstitch.ErrAborted
				}
				return nil
			}, false, nil, 1},
		{"aborted then not leader until the budget ends", true,
			func(n int) error {
				if n == 0 {
					return lockstitch.ErrAborted
				}
				return notLeader
			}, true, lockstitch.ErrNotLeader, 1},
		{"timeout then busy", false,
			func(n int) error {
				if n == 0 {
					return lockstitch.ErrTimeout
				}
				return lockstitch.ErrBusy
			}, true, lockstitch.ErrBusy, 0},
		{"not leader every time: definite", false,
			func(int) error { return notLeader }, false, lockstitch.ErrNotLeader, 0},
		{"unavailable every time: definite", false,
			func(int) error { return lockstitch.ErrUnavailable }, false, lockstitch.ErrUnavailable, 0},
		{"too large: definite, not retried", false,
			func(int) error { return lockstitch.ErrTooLarge }, false, lockstitch.ErrTooLarge, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &scriptedHandler{fakeHandler: newFakeHandler(), commitFirst: tc.commitFirst, script: tc.script}
			_, addr := startServer(t, h, testServerConfig())
			cfg := testClientConfig()
			cfg.MaxAttempts = 4
			cl := dialTest(t, cfg, addr)
			ctx := testContext(t)
			check := func(res AppendResult, err error) {
				t.Helper()
				if tc.is == nil {
					if err != nil || res.LSN != 1 {
						t.Fatalf("append: %+v, %v; want LSN 1", res, err)
					}
				} else if !errors.Is(err, tc.is) || errors.Is(err, lockstitch.ErrIndeterminate) != tc.indeterminate {
					t.Fatalf("append: %v; want %v, indeterminate %v", err, tc.is, tc.indeterminate)
				}
				if got := len(h.records(1)); got != tc.committed {
					t.Fatalf("%d ops in the stream, want %d", got, tc.committed)
				}
			}
			check(cl.Append(ctx, 1, []byte("x")))
			// The same through AppendAsync and Wait.
			h.mu.Lock()
			h.n = 0
			h.mu.Unlock()
			h.fakeHandler = newFakeHandler()
			check(cl.AppendAsync(ctx, 1, []byte("x")).Wait(ctx))
		})
	}
}
