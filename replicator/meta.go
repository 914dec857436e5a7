package replicator

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// partitionMeta is what a node remembers on disk about a replica it hosts,
// so that the replica comes back by itself when the node restarts. It is
// written when the replica is created and never changes afterwards; Kind
// is what the replica was created or joined as (a promotion is recorded
// by Raft's membership, not here).
type partitionMeta struct {
	Version   int               `json:"version"`
	Partition PartitionID       `json:"partition"`
	Replica   ReplicaID         `json:"replica"`
	Plugin    string            `json:"plugin"`
	Options   map[string]string `json:"options,omitempty"`
	Kind      Kind              `json:"kind"`
	// Members is the initial replica set (replica id -> Raft address)
	// when the partition was created with this replica in it; empty for a
	// replica that joined later.
	Members map[ReplicaID]string `json:"members,omitempty"`
	Join    bool                 `json:"join"`
}

const (
	metaVersion    = 1
	metaName       = "partition.json"
	partitionsDir  = "partitions"
	removingSuffix = ".removing"
)

// partitionDir returns the directory of a partition's replica under root.
func partitionDir(root string, id PartitionID) string {
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
	if m.Version != metaVersion {
		return m, fmt.Errorf("%s: unknown version %d", filepath.Join(dir, metaName), m.Version)
	}
	return m, nil
}

// listMeta returns the replicas recorded under root, by partition id.
// Directories left by an interrupted delete (".removing") are removed; a
// directory without a record (a create that did not finish) is skipped.
func listMeta(root string) ([]partitionMeta, error) {
	dir := filepath.Join(root, partitionsDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var metas []partitionMeta
	for _, e := range entries {
		name := e.Name()
		if filepath.Ext(name) == removingSuffix {
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				return nil, err
			}
			continue
		}
		if _, err := strconv.ParseUint(name, 10, 64); err != nil || !e.IsDir() {
			continue
		}
		m, err := readMeta(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		metas = append(metas, m)
	}
	sort.Slice(metas, func(i, j int) bool { return metas[i].Partition < metas[j].Partition })
	return metas, nil
}
