package replicator

import (
	"testing"

	"github.com/lockstitch/lockstitch"
)

// TestNoteQuiesce: dragonboat's quiesce log lines, by format, set and
// clear a replica's quiet flag; other lines do not touch it. The ids are
// matched as dragonboat prints them, modulo 100000.
func TestNoteQuiesce(t *testing.T) {
	p := &partition{id: lockstitch.PartitionID(123456), replica: 7}
	other := &partition{id: 23457, replica: 7}
	if p.isQuiesced() {
		t.Fatal("quiet before any log line")
	}
	noteQuiesce(fmtEnteredQuiesce, []any{"[23456:00007]"})
	if !p.isQuiesced() || other.isQuiesced() {
		t.Fatalf("after entered: %v, other %v", p.isQuiesced(), other.isQuiesced())
	}
	noteQuiesce("%s became leader", []any{"[23456:00007]"})
	noteQuiesce(fmtExitedQuiesce, []any{"not a replica name", "Replicate", uint64(9)})
	if !p.isQuiesced() {
		t.Fatal("another line cleared the flag")
	}
	noteQuiesce(fmtExitedQuiesce, []any{"[23456:00007]", "Replicate", uint64(9)})
	if p.isQuiesced() {
		t.Fatal("still quiet after exited")
	}
	noteQuiesce(fmtEnteredQuiesce, []any{"[23456:00007]"})
	p.forgetQuiesced()
	if p.isQuiesced() {
		t.Fatal("still quiet after forget")
	}
}
