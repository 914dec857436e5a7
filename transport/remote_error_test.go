package transport

import (
	"errors"
	"testing"

	"github.com/lockstitch/lockstitch"
)

// TestRemoteErrorSaysItOnce checks that a server's error reads as the
// server wrote it, without repeating its sentinel, and still matches the
// sentinel with errors.Is.
func TestRemoteErrorSaysItOnce(t *testing.T) {
	for _, tc := range []struct {
		m    errorMsg
		want string
		is   error
	}{
		{errorMsg{Code: CodePartitionNotFound, Message: "lockstitch: partition not found: 99"}, "lockstitch: partition not found: 99", lockstitch.ErrPartitionNotFound},
		{errorMsg{Code: CodeTooLarge, Message: "replicator: lockstitch: too large: op of 9 bytes"}, "replicator: lockstitch: too large: op of 9 bytes", lockstitch.ErrTooLarge},
		{errorMsg{Code: CodeBusy, Message: "queue full"}, "lockstitch: busy: queue full", lockstitch.ErrBusy},
		{errorMsg{Code: CodeBusy}, lockstitch.ErrBusy.Error(), lockstitch.ErrBusy},
	} {
		err := errorOf(&tc.m)
		if err.Error() != tc.want || !errors.Is(err, tc.is) {
			t.Errorf("code %v message %q: error %q (Is %v: %v), want %q", tc.m.Code, tc.m.Message, err, tc.is, errors.Is(err, tc.is), tc.want)
		}
	}
}
