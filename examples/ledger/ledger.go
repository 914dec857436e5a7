package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/lockstitch/lockstitch/wal"
)

// Op is one ledger operation, carried as a JSON object in one op of the
// partition's stream.
//
//	{"type":"open","id":"o1","account":"alice"}
//	{"type":"deposit","id":"d1","account":"alice","amount":100}
//	{"type":"transfer","id":"t1","from":"alice","to":"bob","amount":30}
//
// ID names the op for the people reading the stream; the ledger does not
// interpret it (the producer's id and sequence, not ID, make a retried
// append count once).
type Op struct {
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`
	Account string `json:"account,omitempty"`
	From    string `json:"from,omitempty"`
	To      string `json:"to,omitempty"`
	Amount  int64  `json:"amount,omitempty"`
}

// Ledger is the state machine: account balances, and the marker (the LSN
// of the last op applied). It is made durable as one value (see Store),
// so the balances and the marker never disagree.
//
// Invariant: the state is exactly the result of applying the ops at LSN
// 1..Marker, in order, each once.
type Ledger struct {
	// Marker is the LSN of the last op applied; 0 before the first.
	Marker wal.LSN `json:"marker"`
	// Accounts maps an account to its balance, never negative.
	Accounts map[string]int64 `json:"accounts"`
	// Applied and Rejected count the ops that changed the state and those
	// refused (an overdraft, an unknown account, a malformed op).
	Applied  uint64 `json:"applied"`
	Rejected uint64 `json:"rejected"`
	// Digest is a SHA-256 chain over every op applied, rejected ones
	// included: H(previous digest, LSN, payload). Two ledgers with the
	// same digest applied the same ops at the same LSNs; a skipped or
	// repeated op changes it even where the balances would not show it.
	Digest string `json:"digest"`
}

// NewLedger returns the empty ledger, before the first op.
func NewLedger() *Ledger {
	return &Ledger{Accounts: make(map[string]int64)}
}

// Apply applies the op at lsn, which must be Marker+1, and returns why it
// was rejected ("" if it was applied). A rejection is deterministic: it
// depends on the state and the op alone, so every replay of the stream
// rejects the same ops. It returns an error only for an LSN out of order,
// which is the caller's bug: the state is left unchanged.
func (l *Ledger) Apply(lsn wal.LSN, payload []byte) (reject string, err error) {
	if lsn != l.Marker+1 {
		return "", fmt.Errorf("ledger: op at LSN %d applied after LSN %d", lsn, l.Marker)
	}
	reject = l.apply(payload)
	if reject == "" {
		l.Applied++
	} else {
		l.Rejected++
	}
	l.Marker = lsn
	l.Digest = chain(l.Digest, lsn, payload)
	return reject, nil
}

func (l *Ledger) apply(payload []byte) string {
	var op Op
	if err := json.Unmarshal(payload, &op); err != nil {
		return "malformed op"
	}
	switch op.Type {
	case "open":
		if op.Account == "" {
			return "no account named"
		}
		if _, ok := l.Accounts[op.Account]; ok {
			return "account exists"
		}
		l.Accounts[op.Account] = 0
	case "deposit":
		if op.Amount <= 0 {
			return "amount not positive"
		}
		bal, ok := l.Accounts[op.Account]
		if !ok {
			return "unknown account"
		}
		if bal > maxBalance-op.Amount {
			return "balance overflow"
		}
		l.Accounts[op.Account] = bal + op.Amount
	case "transfer":
		if op.Amount <= 0 {
			return "amount not positive"
		}
		from, ok := l.Accounts[op.From]
		if !ok {
			return "unknown source account"
		}
		to, ok := l.Accounts[op.To]
		if !ok {
			return "unknown destination account"
		}
		if op.From == op.To {
			return "transfer to the same account"
		}
		if from < op.Amount {
			return "overdraft"
		}
		if to > maxBalance-op.Amount {
			return "balance overflow"
		}
		l.Accounts[op.From], l.Accounts[op.To] = from-op.Amount, to+op.Amount
	default:
		return "unknown op type"
	}
	return ""
}

// maxBalance bounds a balance, so that no sum overflows.
const maxBalance = 1 << 60

// chain returns the digest after prev of the op at lsn.
func chain(prev string, lsn wal.LSN, payload []byte) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(binary.LittleEndian.AppendUint64(nil, uint64(lsn)))
	h.Write(payload)
	return hex.EncodeToString(h.Sum(nil))
}
