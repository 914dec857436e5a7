package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// Store keeps a Ledger in one file, state and marker together. Save
// writes the whole ledger to a temporary file, fsyncs it, renames it over
// the old one and fsyncs the directory: a crash at any point leaves
// either the old file or the new one, never a mix, so the marker on disk
// always describes the balances beside it.
//
// File format (version 1):
//
//	ledger v1 crc32c=XXXXXXXX\n   CRC-32C (Castagnoli) of the rest, 8 hex digits
//	{JSON of Ledger}
//
// The CRC catches a file damaged on disk; rename makes torn writes
// impossible, so a mismatch is corruption, reported, never repaired.
type Store struct {
	dir string
}

// ErrCorrupt is returned by Load for a state file that fails its check.
var ErrCorrupt = errors.New("ledger: state file corrupt")

const (
	stateFile = "ledger.state"
	tempFile  = "ledger.state.tmp"
	header    = "ledger v1 crc32c="
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// OpenStore returns the store in dir, creating dir.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("ledger: store: %w", err)
	}
	return &Store{dir: dir}, nil
}

// Load returns the ledger last saved, or an empty one if none was.
func (s *Store) Load() (*Ledger, error) {
	path := filepath.Join(s.dir, stateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return NewLedger(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: load: %w", err)
	}
	line, body, ok := bytes.Cut(b, []byte("\n"))
	var sum uint32
	if !ok || !bytes.HasPrefix(line, []byte(header)) {
		return nil, fmt.Errorf("%w: %s: no header", ErrCorrupt, path)
	}
	if _, err := fmt.Sscanf(string(line[len(header):]), "%08x", &sum); err != nil {
		return nil, fmt.Errorf("%w: %s: header %q", ErrCorrupt, path, line)
	}
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return nil, fmt.Errorf("%w: %s: CRC %08x, header says %08x", ErrCorrupt, path, got, sum)
	}
	l := NewLedger()
	if err := json.Unmarshal(body, l); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	}
	if l.Accounts == nil {
		l.Accounts = make(map[string]int64)
	}
	return l, nil
}

// Save makes l durable, atomically: once Save returns, Load returns l
// after any crash; if Save fails or the process dies inside it, Load
// returns the ledger saved before.
func (s *Store) Save(l *Ledger) error {
	body, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("ledger: save: %w", err)
	}
	b := fmt.Appendf(nil, "%s%08x\n", header, crc32.Checksum(body, castagnoli))
	b = append(b, body...)
	tmp := filepath.Join(s.dir, tempFile)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("ledger: save: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, stateFile))
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		return fmt.Errorf("ledger: save at LSN %d: %w", l.Marker, err)
	}
	return nil
}

// syncDir fsyncs directory dir, making a rename in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
