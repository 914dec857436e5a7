package replicator

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/lockstitch/lockstitch"
)

// LogPluginName is the name of the built-in log plugin.
const LogPluginName = "log"

// NewLogPlugin is the factory of the built-in log plugin: the partition's
// stream is its whole state, so it keeps only its position (the last LSN
// and epoch it applied), durably on Sync. Readers use Read and Subscribe;
// its Query answers any request with its position as JSON:
// {"lsn":N,"epoch":E}.
func NewLogPlugin(pc PluginContext) (StateMachine, error) {
	return &logPlugin{dir: pc.Dir}, nil
}

var _ StateMachine = (*logPlugin)(nil)

type logPlugin struct {
	dir string

	mu    sync.Mutex // guards lsn and epoch against Query
	lsn   lockstitch.LSN
	epoch lockstitch.Epoch
}

const logPluginFile = "position"

func (p *logPlugin) Open(ctx context.Context) (lockstitch.LSN, error) {
	b, err := os.ReadFile(filepath.Join(p.dir, logPluginFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	lsn, epoch, err := decodePosition(b)
	if err != nil {
		return 0, fmt.Errorf("log plugin: %s: %w", logPluginFile, err)
	}
	p.lsn, p.epoch = lsn, epoch
	return lsn, nil
}

func (p *logPlugin) Apply(ops []Op, results [][]byte) error {
	last := ops[len(ops)-1]
	p.mu.Lock()
	p.lsn, p.epoch = last.LSN, last.Epoch
	p.mu.Unlock()
	return nil
}

func (p *logPlugin) Query(ctx context.Context, req []byte) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return json.Marshal(struct {
		LSN   lockstitch.LSN   `json:"lsn"`
		Epoch lockstitch.Epoch `json:"epoch"`
	}{p.lsn, p.epoch})
}

func (p *logPlugin) Sync() (lockstitch.LSN, error) {
	p.mu.Lock()
	b := encodePosition(p.lsn, p.epoch)
	lsn := p.lsn
	p.mu.Unlock()
	if err := writeFileAtomic(filepath.Join(p.dir, logPluginFile), b[:]); err != nil {
		return 0, fmt.Errorf("log plugin: %w", err)
	}
	return lsn, nil
}

func (p *logPlugin) PrepareSnapshot() (Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return positionSnapshot(encodePosition(p.lsn, p.epoch)), nil
}

func (p *logPlugin) Restore(r io.Reader, lsn lockstitch.LSN) error {
	var b [20]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return fmt.Errorf("log plugin: restore: %w", err)
	}
	l, epoch, err := decodePosition(b[:])
	if err != nil {
		return fmt.Errorf("log plugin: restore: %w", err)
	}
	if l != lsn {
		return fmt.Errorf("log plugin: restore: snapshot at LSN %d, expected %d", l, lsn)
	}
	p.mu.Lock()
	p.lsn, p.epoch = l, epoch
	p.mu.Unlock()
	return nil
}

func (p *logPlugin) Close() error { return nil }

type positionSnapshot [20]byte

func (s positionSnapshot) WriteTo(ctx context.Context, w io.Writer) error {
	_, err := w.Write(s[:])
	return err
}

func (positionSnapshot) Release() {}

// encodePosition encodes (lsn, epoch) with a CRC-32C.
func encodePosition(lsn lockstitch.LSN, epoch lockstitch.Epoch) [20]byte {
	var b [20]byte
	binary.LittleEndian.PutUint64(b[0:], uint64(lsn))
	binary.LittleEndian.PutUint64(b[8:], uint64(epoch))
	binary.LittleEndian.PutUint32(b[16:], crc32Checksum(b[:16]))
	return b
}

func decodePosition(b []byte) (lockstitch.LSN, lockstitch.Epoch, error) {
	if len(b) != 20 || binary.LittleEndian.Uint32(b[16:]) != crc32Checksum(b[:16]) {
		return 0, 0, errors.New("corrupt position")
	}
	return lockstitch.LSN(binary.LittleEndian.Uint64(b)), lockstitch.Epoch(binary.LittleEndian.Uint64(b[8:])), nil
}
