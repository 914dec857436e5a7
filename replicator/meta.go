package replicator

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// partitionMeta is what a node remembers on disk about a replica it hosts,
// so that the replica comes back by itself when the node restarts. It is
// written when the replica is created and never changes afterwards; Kind
// is what the replica was created or joined as (a promotion is recorded
// by Raft's membership, not here).
type partitionMeta struct {
	Version   int                    `json:"version"`
	Partition lockstitch.PartitionID `json:"partition"`
	Replica   lockstitch.ReplicaID   `json:"replica"`
	Plugin    string                 `json:"plugin"`
	Options   map[string]string      `json:"options,omitempty"`
	Kind      lockstitch.Kind        `json:"kind"`
	// Members is the initial replica set (replica id -> Raft address)
	// when the partition was created with this replica in it; empty for a
	// replica that joined later.
	Members map[lockstitch.ReplicaID]string `json:"members,omitempty"`
	Join    bool                            `json:"join"`
}

const (
	// metaVersion 2 numbers Kind as lockstitch.Kind does (voter 1,
	// non-voting 2, witness 3); version 1 numbered them from 0, and
	// readMeta still reads it.
	metaVersion    = 2
	metaName       = "partition.json"
	partitionsDir  = "partitions"
	removingSuffix = ".removing"
	// tombstoneName in a replica directory marks a deletion in progress.
	tombstoneName = "deleting"
)

// partitionDir returns the directory of a partition's replica under root.
func partitionDir(root string, id lockstitch.PartitionID) string {
	return filepath.Join(root, partitionsDir, strconv.FormatUint(uint64(id), 10))
}

func writeMeta(dir string, m partitionMeta) error {
	m.Version = metaVersion
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, metaName), b)
}

func readMeta(dir string) (partitionMeta, error) {
	var m partitionMeta
	b, err := os.ReadFile(filepath.Join(dir, metaName))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", filepath.Join(dir, metaName), err)
	}
	switch m.Version {
	case 1:
		m.Kind++ // voter 0, non-voting 1, witness 2
		m.Version = metaVersion
	case metaVersion:
	default:
		return m, fmt.Errorf("%s: unknown version %d", filepath.Join(dir, metaName), m.Version)
	}
	if !m.Kind.Valid() {
		return m, fmt.Errorf("%s: unknown replica kind %d", filepath.Join(dir, metaName), m.Kind)
	}
	return m, nil
}

// pendingDeletion is a replica directory whose deletion was interrupted.
type pendingDeletion struct {
	dir string
	// meta is set when the replica's Raft data may still exist (the
	// tombstone was written but the directory not yet renamed).
	meta *partitionMeta
}

// listMeta returns the replicas recorded under root, by partition id, and
// the deletions a crash interrupted: directories renamed for removal
// (".removing") and directories with a tombstone. A directory without a
// record (a create that did not finish) is skipped.
func listMeta(root string) ([]partitionMeta, []pendingDeletion, error) {
	dir := filepath.Join(root, partitionsDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var metas []partitionMeta
	var pending []pendingDeletion
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		if filepath.Ext(name) == removingSuffix {
			pending = append(pending, pendingDeletion{dir: path})
			continue
		}
		if _, err := strconv.ParseUint(name, 10, 64); err != nil || !e.IsDir() {
			continue
		}
		m, err := readMeta(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if _, err := os.Stat(filepath.Join(path, tombstoneName)); err == nil {
			pending = append(pending, pendingDeletion{dir: path, meta: &m})
			continue
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, nil, err
		}
		metas = append(metas, m)
	}
	sort.Slice(metas, func(i, j int) bool { return metas[i].Partition < metas[j].Partition })
	return metas, pending, nil
}

// removeReplicaDir deletes a replica directory: renamed first (and the
// rename made durable), so that a crash part way leaves a ".removing"
// directory the next start deletes, never a half-deleted replica.
func removeReplicaDir(dir string) error {
	gone := dir
	if filepath.Ext(dir) != removingSuffix {
		gone = dir + removingSuffix
		err := os.Rename(dir, gone)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		// ErrNotExist: an earlier attempt renamed it.
		if err == nil {
			if err := (wal.OSFS{}).SyncDir(filepath.Dir(dir)); err != nil {
				return err
			}
		}
	}
	return os.RemoveAll(gone)
}
