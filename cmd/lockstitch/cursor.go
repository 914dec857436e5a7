package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// cmdCursor: cursor ack|reset|delete|list, a partition's durable cursors.
func cmdCursor(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp("cursor", args, stdout, stderr); !ok {
		return code
	}
	fs := flag.NewFlagSet("cursor "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	part := fs.Uint64("partition", 0, "partition (required)")
	var name *string
	var lsn *uint64
	op := args[0]
	switch op {
	case "ack", "reset":
		name = fs.String("name", "", "cursor name (required)")
		lsn = fs.Uint64("lsn", 0, "the last LSN the cursor's consumer holds")
	case "delete":
		name = fs.String("name", "", "cursor name (required)")
	case "list":
	default:
		return unknownSub(stderr, "cursor", op)
	}
	if code, ok := parseFlags(fs, args[1:], stdout, stderr); !ok {
		return code
	}
	if *part == 0 || (name != nil && *name == "") {
		return usageError(stderr, "cursor %s needs --partition%s", op, map[bool]string{true: " and --name", false: ""}[name != nil])
	}
	p := lockstitch.PartitionID(*part)
	return runAdmin(cf, stderr, "cursor "+op, func(ctx context.Context, cl *transport.Client) error {
		var err error
		switch op {
		case "ack":
			err = cl.AckCursor(ctx, p, *name, wal.LSN(*lsn))
		case "reset":
			err = cl.ResetCursor(ctx, p, *name, wal.LSN(*lsn))
		case "delete":
			err = cl.DeleteCursor(ctx, p, *name)
		case "list":
			return printCursors(ctx, cl, p, *cf.json, stdout)
		}
		if err != nil {
			return err
		}
		if *cf.json {
			out := map[string]any{"partition": p, "cursor": *name, "op": op}
			if lsn != nil {
				out["lsn"] = *lsn
			}
			return printJSON(stdout, out)
		}
		if lsn != nil {
			fmt.Fprintf(stdout, "cursor %q of partition %d at LSN %d\n", *name, p, *lsn)
		} else {
			fmt.Fprintf(stdout, "cursor %q of partition %d deleted\n", *name, p)
		}
		return nil
	})
}

func printCursors(ctx context.Context, cl *transport.Client, p lockstitch.PartitionID, asJSON bool, stdout io.Writer) error {
	cursors, err := cl.Cursors(ctx, p)
	if err != nil {
		return err
	}
	if asJSON {
		out := make([]map[string]any, 0, len(cursors))
		for _, c := range cursors {
			out = append(out, map[string]any{"name": c.Name, "lsn": c.LSN, "lapsed": c.Lapsed})
		}
		return printJSON(stdout, out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CURSOR\tLSN\tSTATE")
	for _, c := range cursors {
		state := "holds retention"
		if c.Lapsed {
			state = "lapsed"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", c.Name, c.LSN, state)
	}
	return tw.Flush()
}
