package replicator

// Locks and their order
//
// Every lock of package replicator, outermost first: a goroutine holding
// one may take only locks listed below it. (R) is a read lock.
//
//  1. partition.forgetMu: serializes forgetCtx; guards forgotten. Held
//     across retired.mu, p.close (batcher.mu, readyMu, completions, an
//     unused plugin's Close), dragonboat's StopReplica and SyncRemoveData
//     (which wait for the replica's stateMachine.Close: ckptMu, mu), and
//     Replicator.mu.
//  2. partition.roleMu: serializes notifyRole; guards lastRole. Held
//     across stateMachine.mu and the plugin's RoleChanged.
//  3. batcher.mu: guards the queue (open, ready, flying, pendingOps,
//     pendingBytes, inflight, watches, closed) and the gathering policy's
//     state (gather: away, gatherUntil, lastArrival, armed). Nested:
//     proposeMu in dispatchLocked, which then drops mu;
//     appendWaiter.cancel in watch (never blocks). enqueueOps builds a
//     NotLeaderError (stateMachine.mu (R)) only after releasing mu.
//  4. batcher.proposeMu: keeps batches in queue order into Raft; guards
//     no data. Taken with batcher.mu held, which is dropped at once;
//     held through propose: nh.GetLeaderID, nh.Propose, and
//     stateMachine.mu (R) in leaderTerm -> notLeader. Never take
//     batcher.mu under it: finish runs after it is released.
//  5. stateMachine.ckptMu: serializes checkpoints; guards ckptIndex,
//     ckptLSN, ckptAt (open sets them under mu alone, before ready).
//     Nested: mu in checkpointLocked (R), RecoverFromSnapshot and Close;
//     wal.Log.Sync.
//  6. stateMachine.mu (RWMutex): guards state, plugin, skipTo, closed,
//     scratch, entryBytes, pending, and setting wal. Write: Open, Update,
//     syncPlugin, PrepareSnapshot, RecoverFromSnapshot, Close, notifyRole.
//     Read: Lookup, checkpointLocked, notLeader, registerAddress, Status
//     (which waits for it 50 ms at most, then goes without addresses).
//     Held across the factory in open, every call on an opened plugin but
//     Snapshot.WriteTo and Release, and the wal.Log writes. Nested:
//     progressMu (update), readyMu (open -> opened = partition.changed),
//     plugin locks.
//  7. Plugin locks, e.g. logPlugin.mu (guards lsn, epoch). Leaf.
//  8. stateMachine.progressMu: guards progress. Leaf, but Collect sends
//     on Prometheus's channel holding it.
//  9. partition.readyMu: guards readyC. Leaf.
// 10. Replicator.mu (RWMutex): guards parts, closed. Leaf. background
//     holds it (R) across wg.Add; Close sets closed before wg.Wait.
// 11. retired.mu: guards retired.m and its file. Leaf.
// 12. lazyCommitLogDB.mu (workers, owners) and stateWorker.mu (held,
//     synced, since, buf): never nested with each other or any above;
//     stateWorker.mu is held across the inner LogDB's SaveRaftState.
//     wal.Log's own locks are below all of ours.
//
// Without a mutex: partition.plugin (whoever Swaps it to nil owns the
// plugin), snapshotting and promoting (Swap(true): one snapshot request,
// one promote goroutine), appendWaiter.state (CAS: Complete or cancel
// signals, once), dbLoggerOnce. lastReportAt, addrAt, lastRetention and
// logCompacted belong to the maintain goroutine; snapshotKick and kick
// are non-blocking wake-ups.
//
// Dragonboat calls in on its own goroutines:
//   - stateMachine Open, Update, Sync, RecoverFromSnapshot with its
//     per-replica rsm lock held (PrepareSnapshot with it read): that lock
//     is above ckptMu and mu. Lookup runs on the ReadLocalNode/StaleRead
//     caller, Close on a close worker. These take ckptMu, mu and below.
//   - listener (one event goroutine): Replicator.mu (R) and readyMu only.
//     What may wait (failQueued(notLeader()), notifyRole, forget,
//     pruneProgress) runs on a goroutine of its own.
//   - the LogDB (logdb.go): its own two locks only.
//
// Rules:
//   - Never call dragonboat holding ckptMu, mu, progressMu, readyMu or
//     Replicator.mu; never take proposeMu, batcher.mu or forgetMu in a
//     callback (their holders call dragonboat or wait for it).
//   - Plugins run under stateMachine.mu (Query under a read lock, which is
//     not reentrant once a writer waits): a plugin must not call back into
//     its Partition or the Replicator. Update only signals (wantSnapshot).
//   - Completions run under no lock, or forgetMu (p.close from forgetCtx):
//     they must not block, nor delete their partition.
//
// Stalls, not deadlocks: when this replica has just lost its leadership,
// propose holds proposeMu while notLeader waits for mu (R), which Update,
// Open (plugin replay) or RecoverFromSnapshot hold as long as they run;
// later proposals wait behind it (and would fail with NotLeader anyway).
