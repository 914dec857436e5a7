package replicator

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/lockstitch/lockstitch"
)

// retiredName is the file under Config.DataDir that records the replicas
// this node has deleted, so that their ids are never used again here
// (Raft never reuses a replica id; dragonboat refuses a removed one too,
// but says so only once a start is under way), and so that a cluster can
// refuse to reuse a deleted partition's id: dragonboat keeps addresses
// by (partition, replica) in memory, and a new partition under an old
// id would give the old replica ids other addresses, which dragonboat
// answers by stopping the process ("inconsistent target"). JSON:
//
//	{"version": 1, "partitions": {"7": [1, 3]}}
const retiredName = "retired.json"

// retired is the set of deleted replicas, by partition.
type retired struct {
	mu   sync.Mutex
	path string
	m    map[lockstitch.PartitionID][]lockstitch.ReplicaID
}

type retiredFile struct {
	Version    int                                               `json:"version"`
	Partitions map[lockstitch.PartitionID][]lockstitch.ReplicaID `json:"partitions"`
}

// loadRetired reads the record under dir; a missing file is empty.
func loadRetired(dir string) (*retired, error) {
	r := &retired{path: filepath.Join(dir, retiredName), m: map[lockstitch.PartitionID][]lockstitch.ReplicaID{}}
	b, err := os.ReadFile(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	var f retiredFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", r.path, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("%s: unknown version %d", r.path, f.Version)
	}
	for id, reps := range f.Partitions {
		r.m[id] = reps
	}
	return r, nil
}

// add records replica of partition id as deleted, durably, before the
// replica's data goes.
func (r *retired) add(id lockstitch.PartitionID, replica lockstitch.ReplicaID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.Contains(r.m[id], replica) {
		return nil
	}
	next := make(map[lockstitch.PartitionID][]lockstitch.ReplicaID, len(r.m)+1)
	for k, v := range r.m {
		next[k] = v
	}
	next[id] = append(slices.Clone(r.m[id]), replica)
	b, err := json.Marshal(retiredFile{Version: 1, Partitions: next})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(r.path, b); err != nil {
		return fmt.Errorf("record deleted replica %d of partition %d: %w", replica, id, err)
	}
	r.m = next
	return nil
}

// of returns the deleted replicas of partition id.
func (r *retired) of(id lockstitch.PartitionID) []lockstitch.ReplicaID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.m[id])
}

// Retired returns the replicas of partition id that this node has
// deleted (since it recorded deletions). CreatePartition and
// JoinPartition refuse to start them again (lockstitch.ErrReplicaDeleted);
// a cluster that must not reuse a deleted partition's id (package server
// refuses it) checks that every node returns none.
func (r *Replicator) Retired(id lockstitch.PartitionID) []lockstitch.ReplicaID {
	return r.retired.of(id)
}
