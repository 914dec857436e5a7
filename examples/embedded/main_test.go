package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestEmbedded runs the example: three nodes in this process, a partition
// created through the Go client, appends right after the create, and the
// ops read back.
func TestEmbedded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, t.TempDir(), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"appended op 1 at LSN 1", "read LSN 5: op 5", "lockstitch.ErrPartitionNotFound"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
}
