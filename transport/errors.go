package transport

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/lockstitch/lockstitch/wal"
)

// Sentinel errors. A Handler returns them (wrapped or not) to choose the
// wire code of its answer; the Client returns errors that match them with
// errors.Is, carrying the server's message.
var (
	// ErrProtocol reports a malformed or unexpected frame. The connection
	// that carried it is closed.
	ErrProtocol = errors.New("transport: protocol violation")
	// ErrShortFrame reports that a buffer holds only the start of a frame
	// or message; a reader reads more and tries again.
	ErrShortFrame = errors.New("transport: short frame")
	// ErrVersion reports that client and server share no protocol version.
	ErrVersion = errors.New("transport: no common protocol version")
	// ErrUnauthenticated reports refused credentials.
	ErrUnauthenticated = errors.New("transport: unauthenticated")
	// ErrInternal reports a server failure it could not classify.
	ErrInternal = errors.New("transport: internal server error")
	// ErrInvalidArgument reports a request field out of range.
	ErrInvalidArgument = errors.New("transport: invalid argument")
	// ErrNotLeader reports that the replica is not the partition's leader.
	// A *NotLeaderError carries the leader's address when known.
	// Retryable at the leader.
	ErrNotLeader = errors.New("transport: not leader")
	// ErrBusy reports backpressure: an in-flight limit, a connection limit,
	// a full proposal queue. Retryable after a backoff.
	ErrBusy = errors.New("transport: busy")
	// ErrPartitionNotFound reports a partition this node does not host.
	ErrPartitionNotFound = errors.New("transport: partition not found")
	// ErrTruncated reports an LSN below the first one retained. A
	// *TruncatedError carries the first retained LSN.
	ErrTruncated = errors.New("transport: LSN truncated")
	// ErrChecksum reports a payload that does not match its CRC-32C.
	ErrChecksum = errors.New("transport: checksum mismatch")
	// ErrTooLarge reports a frame, op or answer beyond a size limit.
	ErrTooLarge = errors.New("transport: too large")
	// ErrUnavailable reports a partition that cannot serve the request now
	// (no quorum, too far behind, catching up) or a lost connection.
	// Retryable after a backoff.
	ErrUnavailable = errors.New("transport: unavailable")
	// ErrShuttingDown reports a server that is stopping. Retryable
	// elsewhere.
	ErrShuttingDown = errors.New("transport: shutting down")
	// ErrCanceled reports a request the server cancelled.
	ErrCanceled = errors.New("transport: canceled")
	// ErrTimeout reports a server that gave up waiting (for a quorum, an
	// apply). Retryable.
	ErrTimeout = errors.New("transport: timeout")
	// ErrStaleSequence reports an append whose producer sequence is not
	// above the producer's last one and is not among its recent ops: it
	// cannot be told whether it was applied, so it is refused. Not
	// retryable.
	ErrStaleSequence = errors.New("transport: stale producer sequence")
	// ErrClosed reports a call on a closed Client, Server or Subscription.
	ErrClosed = errors.New("transport: closed")
)

// NotLeaderError is the error for code NotLeader. It matches ErrNotLeader
// with errors.Is.
type NotLeaderError struct {
	// LeaderAddr is the client address of the partition's leader, or ""
	// when the replica does not know it.
	LeaderAddr string
}

// Error implements error.
func (e *NotLeaderError) Error() string {
	if e.LeaderAddr == "" {
		return "transport: not leader (leader unknown)"
	}
	return "transport: not leader (leader at " + e.LeaderAddr + ")"
}

// Is reports whether target is ErrNotLeader.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// TruncatedError is the error for code Truncated. It matches ErrTruncated
// with errors.Is.
type TruncatedError struct {
	// First is the first LSN the replica retains.
	First wal.LSN
}

// Error implements error.
func (e *TruncatedError) Error() string {
	return fmt.Sprintf("transport: LSN truncated (first retained LSN %d)", e.First)
}

// Is reports whether target is ErrTruncated.
func (e *TruncatedError) Is(target error) bool { return target == ErrTruncated }

// Code is the stable numeric error code of an Error frame. Never renumber.
type Code uint16

// Error codes.
const (
	CodeProtocol          Code = 1
	CodeVersion           Code = 2
	CodeUnauthenticated   Code = 3
	CodeInternal          Code = 4
	CodeInvalidArgument   Code = 5
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

	lastCode = CodeStaleSequence
)

// sentinel returns the sentinel error of c, or nil for an unknown code.
func (c Code) sentinel() error {
	switch c {
	case CodeProtocol:
		return ErrProtocol
	case CodeVersion:
		return ErrVersion
	case CodeUnauthenticated:
		return ErrUnauthenticated
	case CodeInternal:
		return ErrInternal
	case CodeInvalidArgument:
		return ErrInvalidArgument
	case CodeNotLeader:
		return ErrNotLeader
	case CodeBusy:
		return ErrBusy
	case CodePartitionNotFound:
		return ErrPartitionNotFound
	case CodeTruncated:
		return ErrTruncated
	case CodeChecksum:
		return ErrChecksum
	case CodeTooLarge:
		return ErrTooLarge
	case CodeUnavailable:
		return ErrUnavailable
	case CodeShuttingDown:
		return ErrShuttingDown
	case CodeCanceled:
		return ErrCanceled
	case CodeTimeout:
		return ErrTimeout
	case CodeStaleSequence:
		return ErrStaleSequence
	}
	return nil
}

// String returns the code's name.
func (c Code) String() string {
	switch c {
	case CodeProtocol:
		return "Protocol"
	case CodeVersion:
		return "Version"
	case CodeUnauthenticated:
		return "Unauthenticated"
	case CodeInternal:
		return "Internal"
	case CodeInvalidArgument:
		return "InvalidArgument"
	case CodeNotLeader:
		return "NotLeader"
	case CodeBusy:
		return "Busy"
	case CodePartitionNotFound:
		return "PartitionNotFound"
	case CodeTruncated:
		return "Truncated"
	case CodeChecksum:
		return "Checksum"
	case CodeTooLarge:
		return "TooLarge"
	case CodeUnavailable:
		return "Unavailable"
	case CodeShuttingDown:
		return "ShuttingDown"
	case CodeCanceled:
		return "Canceled"
	case CodeTimeout:
		return "Timeout"
	case CodeStaleSequence:
		return "StaleSequence"
	}
	return fmt.Sprintf("Code(%d)", uint16(c))
}

// errorFor maps a Handler's error to the Error frame that carries it: the
// code, the detail, the leader hint and the message.
func errorFor(err error) errorMsg {
	m := errorMsg{Code: CodeInternal, Message: truncateUTF8(err.Error(), maxErrorMessage)}
	var nl *NotLeaderError
	var tr *TruncatedError
	switch {
	case errors.As(err, &nl):
		m.Code, m.LeaderAddr = CodeNotLeader, truncateUTF8(nl.LeaderAddr, maxAddr)
	case errors.As(err, &tr):
		m.Code, m.Detail = CodeTruncated, uint64(tr.First)
	case errors.Is(err, ErrNotLeader):
		m.Code = CodeNotLeader
	case errors.Is(err, ErrTruncated), errors.Is(err, wal.ErrTruncated):
		m.Code = CodeTruncated
	case errors.Is(err, ErrTooLarge), errors.Is(err, wal.ErrTooLarge):
		m.Code = CodeTooLarge
	case errors.Is(err, context.Canceled), errors.Is(err, ErrCanceled):
		m.Code = CodeCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrTimeout):
		m.Code = CodeTimeout
	default:
		for c := CodeProtocol; c <= lastCode; c++ {
			if s := c.sentinel(); s != nil && errors.Is(err, s) {
				m.Code = c
				break
			}
		}
	}
	return m
}

// errorOf turns a received Error frame into the error a caller sees: a
// *NotLeaderError, a *TruncatedError, or the code's sentinel wrapped with
// the server's message.
func errorOf(m *errorMsg) error {
	switch m.Code {
	case CodeNotLeader:
		return &NotLeaderError{LeaderAddr: m.LeaderAddr}
	case CodeTruncated:
		return &TruncatedError{First: wal.LSN(m.Detail)}
	}
	s := m.Code.sentinel()
	if s == nil {
		return fmt.Errorf("%w: unknown error code %d: %s", ErrInternal, m.Code, m.Message)
	}
	if m.Message == "" {
		return s
	}
	return fmt.Errorf("%w (server said: %s)", s, m.Message)
}

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
