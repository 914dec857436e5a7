package replicator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/lni/dragonboat/v4"

	"github.com/lockstitch/lockstitch"
)

// Durable cursors. A cursor is a consumer's marker kept by the partition
// itself: replicated state, changed by cursor entries through Raft
// (entry.go), applied by every replica into its partition state, carried
// by checkpoints and snapshots. While a cursor lags, log retention keeps
// the ops after it, up to Config.CursorRetainOps ops behind the replica's
// applied LSN; beyond that the leader marks it lapsed, retention no
// longer waits for it, and acknowledging it fails with
// lockstitch.ErrCursorLapsed until it is reset.

// maxCursors bounds the cursors of a partition.
const maxCursors = 4096

// Cursor is a durable cursor as a replica sees it.
type Cursor struct {
	// Name names the cursor within its partition.
	Name string
	// LSN is the last LSN its consumer acknowledged.
	LSN lockstitch.LSN
	// Lapsed reports a cursor that fell more than
	// Config.CursorRetainOps behind: the ops after it may be gone.
	Lapsed bool
}

// cursorState is a cursor in the partition state.
type cursorState struct {
	lsn    lockstitch.LSN
	lapsed bool
}

// Cursor entry results (statemachine Result.Value). Part of the
// replicated log's results: never renumber.
const (
	cursorOK       = 1
	cursorIsLapsed = 2
	cursorNotFound = 3
	cursorTooMany  = 4
)

// applyCursor applies a cursor entry to the state and returns its status.
// Deterministic: it depends on the state and the entry alone.
func (s *partitionState) applyCursor(op byte, name string, lsn lockstitch.LSN) uint64 {
	c := s.cursors[name]
	switch op {
	case cursorAck, cursorReset:
		if c == nil {
			if len(s.cursors) >= maxCursors {
				return cursorTooMany
			}
			c = &cursorState{}
			s.cursors[name] = c
		}
		if op == cursorAck {
			if c.lapsed {
				return cursorIsLapsed
			}
			c.lsn = max(c.lsn, lsn) // an ack never moves a cursor back
			return cursorOK
		}
		c.lsn, c.lapsed = lsn, false
	case cursorDelete:
		if c == nil {
			return cursorNotFound
		}
		delete(s.cursors, name)
	case cursorLapse:
		if c != nil && c.lsn == lsn {
			c.lapsed = true
		}
	}
	return cursorOK
}

// appendCursors encodes the cursor section of a version 2 state.
func appendCursors(b []byte, cursors map[string]*cursorState) []byte {
	names := make([]string, 0, len(cursors))
	for name := range cursors {
		names = append(names, name)
	}
	sort.Strings(names)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(names)))
	for _, name := range names {
		c := cursors[name]
		b = append(b, byte(len(name)))
		b = append(b, name...)
		b = binary.LittleEndian.AppendUint64(b, uint64(c.lsn))
		flags := byte(0)
		if c.lapsed {
			flags = 1
		}
		b = append(b, flags)
	}
	return b
}

// decodeCursors decodes a cursor section and returns the bytes it used.
func decodeCursors(b []byte) (map[string]*cursorState, int, error) {
	if len(b) < 4 {
		return nil, 0, errors.New("cursor count cut short")
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n < 1 || n > maxCursors {
		// A state without cursors is version 1: one encoding per state.
		return nil, 0, fmt.Errorf("%d cursors", n)
	}
	off := 4
	cursors := make(map[string]*cursorState, n)
	prev := ""
	for range n {
		if len(b)-off < 1 {
			return nil, 0, errors.New("cursor cut short")
		}
		m := int(b[off])
		if m == 0 || len(b)-off < 1+m+9 {
			return nil, 0, fmt.Errorf("cursor name of %d bytes", m)
		}
		name := string(b[off+1 : off+1+m])
		off += 1 + m
		flags := b[off+8]
		if flags > 1 {
			return nil, 0, fmt.Errorf("cursor %q flags %#x", name, flags)
		}
		if name <= prev {
			return nil, 0, fmt.Errorf("cursor %q after %q: not in name order", name, prev)
		}
		prev = name
		cursors[name] = &cursorState{lsn: lockstitch.LSN(binary.LittleEndian.Uint64(b[off:])), lapsed: flags == 1}
		off += 9
	}
	return cursors, off, nil
}

// AckCursor records that the consumer behind cursor name holds every op
// up to lsn, creating the cursor if there is none; an ack never moves a
// cursor back (ResetCursor does). It is proposed through Raft and
// returns once committed and applied here. Only the leader accepts it (a
// *lockstitch.NotLeaderError otherwise). It fails with
// lockstitch.ErrCursorLapsed for a lapsed cursor, and with
// lockstitch.ErrInvalidArgument for an empty name or one over 255 bytes,
// or an lsn beyond the partition's last op.
func (p *Partition) AckCursor(ctx context.Context, name string, lsn lockstitch.LSN) error {
	return p.changeCursor(ctx, cursorAck, name, lsn)
}

// ResetCursor sets cursor name to lsn, creating it if there is none, and
// clears its lapsed mark: a consumer whose cursor lapsed comes back
// through a snapshot (Partition.Copy with CopyOptions.Snapshot) and
// resets its cursor to the snapshot's LSN. Otherwise as AckCursor.
func (p *Partition) ResetCursor(ctx context.Context, name string, lsn lockstitch.LSN) error {
	return p.changeCursor(ctx, cursorReset, name, lsn)
}

// DeleteCursor deletes cursor name, which then no longer holds
// retention. It fails with lockstitch.ErrInvalidArgument if there is no
// such cursor. Otherwise as AckCursor.
func (p *Partition) DeleteCursor(ctx context.Context, name string) error {
	return p.changeCursor(ctx, cursorDelete, name, 0)
}

// Cursors returns the partition's cursors as this replica has applied
// them, by name.
func (p *Partition) Cursors() ([]Cursor, error) {
	s, err := p.state()
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	out := make([]Cursor, 0, len(s.state.cursors))
	for name, c := range s.state.cursors {
		out = append(out, Cursor{Name: name, LSN: c.lsn, Lapsed: c.lapsed})
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (p *Partition) changeCursor(ctx context.Context, op byte, name string, lsn lockstitch.LSN) error {
	if len(name) == 0 || len(name) > maxCursorName {
		return fmt.Errorf("%w: partition %d: cursor name of %d bytes (1 to %d)", lockstitch.ErrInvalidArgument, p.id, len(name), maxCursorName)
	}
	s, err := p.state()
	if err != nil {
		return err
	}
	if err := p.leaderOnly(); err != nil {
		return err
	}
	if last := lockstitch.LSN(s.applied.Load()); lsn > last {
		return fmt.Errorf("%w: partition %d: cursor %q at LSN %d, beyond the last op %d", lockstitch.ErrInvalidArgument, p.id, name, lsn, last)
	}
	ctx, cancel := p.r.withDeadline(ctx)
	defer cancel()
	res, err := p.r.nh.SyncPropose(ctx, p.session, appendCursorEntry(nil, op, name, lsn))
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("partition %d: cursor %q: %w", p.id, name, ctxErr)
		}
		if errors.Is(err, dragonboat.ErrShardClosed) || errors.Is(err, dragonboat.ErrClosed) {
			return fmt.Errorf("%w: partition %d: cursor %q: %v", lockstitch.ErrUnavailable, p.id, name, err)
		}
		return fmt.Errorf("cursor %q: %w", name, proposeError(p.id, err))
	}
	switch res.Value {
	case cursorOK:
		return nil
	case cursorIsLapsed:
		return fmt.Errorf("partition %d: cursor %q: %w", p.id, name, lockstitch.ErrCursorLapsed)
	case cursorNotFound:
		return fmt.Errorf("%w: partition %d: no cursor %q", lockstitch.ErrInvalidArgument, p.id, name)
	case cursorTooMany:
		return fmt.Errorf("%w: partition %d: %d cursors already", lockstitch.ErrInvalidArgument, p.id, maxCursors)
	}
	return fmt.Errorf("partition %d: cursor %q: unknown result %d", p.id, name, res.Value)
}

// cursorHold returns the last LSN that retention may drop for the
// cursors: the lowest LSN of a cursor not lapsed and at most
// CursorRetainOps behind applied (the ops after it are kept), and the
// cursors beyond that bound, not lapsed yet, which the leader lapses.
func (s *stateMachine) cursorHold(applied lockstitch.LSN) (hold lockstitch.LSN, overdue []Cursor) {
	hold = ^lockstitch.LSN(0)
	bound := lockstitch.LSN(s.cfg.CursorRetainOps)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for name, c := range s.state.cursors {
		switch {
		case c.lapsed:
		case applied > c.lsn && applied-c.lsn > bound:
			overdue = append(overdue, Cursor{Name: name, LSN: c.lsn})
		default:
			hold = min(hold, c.lsn)
		}
	}
	return hold, overdue
}

// lapseCursors, on the leader, proposes that the cursors beyond the
// bound lapse (the entry is a no-op for a cursor that moved meanwhile;
// one that does not commit is proposed again at the next round).
func (p *partition) lapseCursors(overdue []Cursor) {
	if !p.isLeader() {
		return
	}
	for _, c := range overdue {
		p.log.Info("cursor lapsed: it fell too far behind for retention to hold the ops after it", "cursor", c.Name, "lsn", c.LSN)
		p.proposeInternal(appendCursorEntry(nil, cursorLapse, c.Name, c.LSN), nil)
	}
}
