package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// Errors of the protocol itself. The conditions a request can meet on
// the way (not the leader, busy, truncated, ...) are the sentinels of
// package lockstitch, shared with the library: a Handler fails a request
// with one of them, the server sends its code, and the Client returns the
// same sentinel, carrying the server's message.
var (
	// ErrProtocol reports a malformed or unexpected frame. The connection
	// that carried it is closed.
	ErrProtocol = errors.New("transport: protocol violation")
	// ErrShortFrame reports that a buffer holds only the start of a frame
	// or message; a reader reads more and tries again.
	ErrShortFrame = errors.New("transport: short frame")
	// ErrVersion reports that client and server share no protocol version.
	ErrVersion = errors.New("transport: no common protocol version")
	// ErrUnauthenticated reports refused credentials (none, unknown, or
	// too many failures from the client's address). It is not retried.
	ErrUnauthenticated = errors.New("transport: unauthenticated")
	// ErrPermissionDenied reports a request that the connection's
	// principal may not make (see Action). It is not retried.
	ErrPermissionDenied = errors.New("transport: permission denied")
	// ErrTLS reports a failed TLS handshake: the server's certificate is
	// not trusted, or the server refused the client's (none, untrusted,
	// expired), or one side does not speak TLS. It is not retried.
	ErrTLS = errors.New("transport: TLS handshake failed")
	// ErrInternal reports a server failure it could not classify.
	ErrInternal = errors.New("transport: internal server error")
	// ErrResultLost reports an op that was applied, by an earlier attempt
	// of the same call whose answer was lost, but whose plugin result is
	// not known: the partition recognised the retry by its producer
	// sequence and answered with the op's LSN, and it does not keep
	// plugins' results for retries. Typed clients of plugins that always
	// answer (kv, queue) return it for an empty result; the op's effect
	// happened once.
	ErrResultLost = errors.New("transport: the op was applied by an earlier attempt; its plugin result is lost")
)

// Code is the stable numeric error code of an Error frame. Never renumber.
type Code uint16

// Error codes. Codes 1 to 9 are the protocol's own; the others each carry
// one sentinel of package lockstitch (see codes).
const (
	CodeProtocol          Code = 1
	CodeVersion           Code = 2
	CodeUnauthenticated   Code = 3
	CodeInternal          Code = 4
	CodeInvalidArgument   Code = 5
	CodePermissionDenied  Code = 6
	CodeNotLeader         Code = 10
	CodeBusy              Code = 11
	CodePartitionNotFound Code = 12
	CodeTruncated         Code = 13
	CodeChecksum          Code = 14
	CodeTooLarge          Code = 15
	CodeUnavailable       Code = 16
	CodeShuttingDown      Code = 17
	CodeCanceled          Code = 18
	CodeTimeout           Code = 19
	CodeStaleSequence     Code = 20
	CodePartitionExists   Code = 21
	CodeReplicaDeleted    Code = 22
	CodePluginNotFound    Code = 23
	CodeAborted           Code = 24
	CodeDiverged          Code = 25
	CodeCursorLapsed      Code = 26

	lastCode = CodeCursorLapsed
)

// codes is the one mapping between errors and codes: each code's name and
// the sentinel a Client returns for it. A Handler's error gets the code
// of the first sentinel in this table that it matches (errors.Is), after
// the special cases of errorFor.
var codes = [...]struct {
	code Code
	name string
	err  error
}{
	{CodeProtocol, "Protocol", ErrProtocol},
	{CodeVersion, "Version", ErrVersion},
	{CodeUnauthenticated, "Unauthenticated", ErrUnauthenticated},
	{CodeInternal, "Internal", ErrInternal},
	{CodeInvalidArgument, "InvalidArgument", lockstitch.ErrInvalidArgument},
	{CodePermissionDenied, "PermissionDenied", ErrPermissionDenied},
	{CodeNotLeader, "NotLeader", lockstitch.ErrNotLeader},
	{CodeBusy, "Busy", lockstitch.ErrBusy},
	{CodePartitionNotFound, "PartitionNotFound", lockstitch.ErrPartitionNotFound},
	{CodeTruncated, "Truncated", lockstitch.ErrTruncated},
	{CodeChecksum, "Checksum", lockstitch.ErrChecksum},
	{CodeTooLarge, "TooLarge", lockstitch.ErrTooLarge},
	{CodeUnavailable, "Unavailable", lockstitch.ErrUnavailable},
	{CodeShuttingDown, "ShuttingDown", lockstitch.ErrShuttingDown},
	{CodeCanceled, "Canceled", lockstitch.ErrCanceled},
	{CodeTimeout, "Timeout", lockstitch.ErrTimeout},
	{CodeStaleSequence, "StaleSequence", lockstitch.ErrStaleSequence},
	{CodePartitionExists, "PartitionExists", lockstitch.ErrPartitionExists},
	{CodeReplicaDeleted, "ReplicaDeleted", lockstitch.ErrReplicaDeleted},
	{CodePluginNotFound, "PluginNotFound", lockstitch.ErrPluginNotFound},
	{CodeAborted, "Aborted", lockstitch.ErrAborted},
	{CodeDiverged, "Diverged", lockstitch.ErrDiverged},
	{CodeCursorLapsed, "CursorLapsed", lockstitch.ErrCursorLapsed},
}

// sentinel returns the sentinel error of c, or nil for an unknown code.
func (c Code) sentinel() error {
	for _, e := range codes {
		if e.code == c {
			return e.err
		}
	}
	return nil
}

// String returns the code's name.
func (c Code) String() string {
	for _, e := range codes {
		if e.code == c {
			return e.name
		}
	}
	return fmt.Sprintf("Code(%d)", uint16(c))
}

// errorFor maps a Handler's error to the Error frame that carries it: the
// code, the detail, the leader hint and the message. Besides the table:
// the wal's own ErrTruncated and ErrTooLarge, the context's errors, and
// lockstitch.ErrTooStale (sent as Unavailable) and lockstitch.ErrClosed
// (the node is closing: ShuttingDown) have codes; any other error is sent
// as Internal.
func errorFor(err error) errorMsg {
	m := errorMsg{Code: CodeInternal, Message: truncateUTF8(err.Error(), maxErrorMessage)}
	var nl *lockstitch.NotLeaderError
	var tr *lockstitch.TruncatedError
	var dv *lockstitch.DivergedError
	switch {
	case errors.As(err, &dv):
		m.Code, m.Detail, m.Epoch = CodeDiverged, uint64(dv.Committed), uint64(dv.Epoch)
	case errors.As(err, &nl):
		m.Code, m.LeaderAddr = CodeNotLeader, truncateUTF8(nl.LeaderAddr, maxAddr)
	case errors.As(err, &tr):
		m.Code, m.Detail = CodeTruncated, uint64(tr.First)
	case errors.Is(err, wal.ErrTruncated):
		m.Code = CodeTruncated
	case errors.Is(err, wal.ErrTooLarge):
		m.Code = CodeTooLarge
	case errors.Is(err, context.Canceled):
		m.Code = CodeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		m.Code = CodeTimeout
	case errors.Is(err, lockstitch.ErrTooStale):
		m.Code = CodeUnavailable
	case errors.Is(err, lockstitch.ErrClosed):
		m.Code = CodeShuttingDown
	default:
		for _, e := range codes {
			if errors.Is(err, e.err) {
				m.Code = e.code
				break
			}
		}
	}
	return m
}

// errorOf turns a received Error frame into the error a caller sees: a
// *lockstitch.NotLeaderError, a *lockstitch.TruncatedError, a
// *lockstitch.DivergedError (without its marker and partition, which the
// caller knows), or the code's sentinel wrapped with the server's message.
func errorOf(m *errorMsg) error {
	switch m.Code {
	case CodeNotLeader:
		return &lockstitch.NotLeaderError{LeaderAddr: m.LeaderAddr}
	case CodeTruncated:
		return &lockstitch.TruncatedError{First: wal.LSN(m.Detail)}
	case CodeDiverged:
		return &lockstitch.DivergedError{Committed: wal.LSN(m.Detail), Epoch: lockstitch.Epoch(m.Epoch)}
	}
	s := m.Code.sentinel()
	if s == nil {
		return fmt.Errorf("%w: unknown error code %d: %s", ErrInternal, m.Code, m.Message)
	}
	if m.Message == "" {
		return s
	}
	return &remoteError{sentinel: s, msg: m.Message}
}

// remoteError is a server's error: its code's sentinel (errors.Is matches
// it) and the server's message, which says the cause once. The message
// is the error's text when it names the sentinel (the server wrapped
// it, as handlers do); else the sentinel's text leads it.
type remoteError struct {
	sentinel error
	msg      string
}

func (e *remoteError) Error() string {
	if strings.Contains(e.msg, e.sentinel.Error()) {
		return e.msg
	}
	return e.sentinel.Error() + ": " + e.msg
}

func (e *remoteError) Unwrap() error { return e.sentinel }

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
