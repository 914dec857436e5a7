package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/lockstitch/lockstitch"
	qops "github.com/lockstitch/lockstitch/ops/queue"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/transport/queueclient"
)

const queueUsage = `usage: lockstitch queue <command> --partition P [flags]

A partition created with --plugin queue (lockstitch dev creates one and
prints its id) is a replicated FIFO with leases:

  push [item ...]                  enqueue each argument, or each line of stdin
  pop [--lease 30s]                lease the first ready item; prints its id and
                                   delivery number (exit 3 if none is ready)
  ack --id I --delivery D          done with that delivery: remove the item
  extend --id I --delivery D [--lease 30s]
                                   move that delivery's deadline
  peek [--list ready|leased|dead] [--limit 10]
                                   show the first items of a list, leasing nothing
  len                              count the ready, leased and dead-lettered items

An item not acknowledged before its lease ends is handed out again, with
the next delivery number; after max_deliveries (a partition option,
default 5) it goes to the dead list. peek and len take --consistency and
--max-staleness as query does. Every command takes --json.

examples:
  lockstitch queue push --partition 3 job-1 job-2
  lockstitch queue pop --partition 3 --lease 1m
  lockstitch queue ack --partition 3 --id 1 --delivery 1

Run lockstitch queue <command> -h for its flags.
`

// exitEmpty is pop's exit code when no item is ready.
const exitEmpty = 3

// cmdQueue: queue push|pop|ack|extend|peek|len, the queue plugin's ops.
func cmdQueue(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return usageError(stderr, "%s needs a command: %s (lockstitch %s -h for help)", "queue", strings.Join(subcommands("queue"), ", "), "queue")
	}
	op := args[0]
	switch op {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, queueUsage)
		return 0
	case "push", "pop", "ack", "extend", "peek", "len":
	default:
		return usageError(stderr, "unknown queue command %q: push, pop, ack, extend, peek or len", op)
	}
	fs := flag.NewFlagSet("queue "+op, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	part := fs.Uint64("partition", 0, "queue partition (required)")
	var lease *time.Duration
	var id *uint64
	var delivery *uint
	var list *string
	var limit *int
	var consistency *string
	var staleness *time.Duration
	switch op {
	case "pop", "extend":
		lease = fs.Duration("lease", 30*time.Second, "lease duration")
	}
	switch op {
	case "ack", "extend":
		id = fs.Uint64("id", 0, "item id (required)")
		delivery = fs.Uint("delivery", 0, "delivery number, as pop printed it (required)")
	case "peek", "len":
		consistency = fs.String("consistency", "linearizable", "linearizable, leader (leader-local) or any (the replica reached, within --max-staleness)")
		staleness = fs.Duration("max-staleness", time.Second, "for --consistency any: how stale the answer may be")
	}
	if op == "peek" {
		list = fs.String("list", "ready", "ready, leased or dead")
		limit = fs.Int("limit", 10, fmt.Sprintf("at most this many items (1 to %d)", qops.MaxPeek))
	}
	if code, ok := parseFlags(fs, args[1:], stdout, stderr); !ok {
		return code
	}
	if *part == 0 {
		return usageError(stderr, "queue %s needs --partition", op)
	}
	if op != "push" && fs.NArg() > 0 {
		return usageError(stderr, "queue %s takes no arguments", op)
	}
	if id != nil && (*id == 0 || *delivery == 0 || *delivery > 1<<32-1) {
		return usageError(stderr, "queue %s needs --id and --delivery", op)
	}
	var peekList qops.List
	if list != nil {
		var err error
		if peekList, err = qops.ParseList(*list); err != nil {
			return usageError(stderr, "--list: %v", err)
		}
		if *limit < 1 || *limit > qops.MaxPeek {
			return usageError(stderr, "--limit %d is not 1 to %d", *limit, qops.MaxPeek)
		}
	}
	var level lockstitch.Consistency
	if consistency != nil {
		switch *consistency {
		case "linearizable":
			level = lockstitch.Linearizable
		case "leader":
			level = lockstitch.LeaderLocal
		case "any":
			level = lockstitch.Bounded
		default:
			return usageError(stderr, "--consistency %q is not linearizable, leader or any", *consistency)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *cf.timeout)
	defer cancel()
	cl, err := cf.dial(ctx)
	if err != nil {
		return fail(stderr, err)
	}
	defer cl.Close()
	q := queueclient.New(cl, lockstitch.PartitionID(*part))
	if consistency != nil {
		q.Consistency, q.MaxStaleness = level, *staleness
	}
	switch op {
	case "push":
		return queuePush(q, *cf.timeout, fs.Args(), *cf.json, stdout, stderr)
	case "pop":
		d, err := q.Dequeue(ctx, *lease)
		if errors.Is(err, queueclient.ErrEmpty) {
			if *cf.json {
				printJSON(stdout, map[string]any{"empty": true, "lsn": d.LSN})
			} else {
				fmt.Fprintln(stderr, "lockstitch: queue empty: no item ready")
			}
			return exitEmpty
		}
		if err != nil {
			return fail(stderr, err)
		}
		if *cf.json {
			printJSON(stdout, bytesJSON(map[string]any{"id": d.ID, "delivery": d.Delivery, "deadline": d.Deadline, "lsn": d.LSN}, "item", d.Payload))
		} else {
			fmt.Fprintf(stdout, "%d %d %s\n", d.ID, d.Delivery, payloadText(d.Payload))
		}
	case "ack":
		if err := q.Ack(ctx, *id, uint32(*delivery)); err != nil {
			return fail(stderr, err)
		}
		if *cf.json {
			printJSON(stdout, map[string]any{"id": *id, "delivery": *delivery, "acked": true})
		} else {
			fmt.Fprintf(stdout, "item %d acknowledged\n", *id)
		}
	case "extend":
		deadline, err := q.Extend(ctx, *id, uint32(*delivery), *lease)
		if err != nil {
			return fail(stderr, err)
		}
		if *cf.json {
			printJSON(stdout, map[string]any{"id": *id, "delivery": *delivery, "deadline": deadline})
		} else {
			fmt.Fprintf(stdout, "item %d leased until %s\n", *id, deadline.Format(time.RFC3339Nano))
		}
	case "peek":
		items, lsn, err := q.Peek(ctx, peekList, *limit)
		if err != nil {
			return fail(stderr, err)
		}
		if *cf.json {
			out := make([]map[string]any, len(items))
			for i, it := range items {
				out[i] = bytesJSON(map[string]any{"id": it.ID, "deliveries": it.Deliveries}, "item", it.Payload)
				if !it.Deadline.IsZero() {
					out[i]["deadline"] = it.Deadline
				}
			}
			printJSON(stdout, map[string]any{"list": peekList.String(), "lsn": lsn, "items": out})
			return 0
		}
		for _, it := range items {
			if it.Deadline.IsZero() {
				fmt.Fprintf(stdout, "%d %d %s\n", it.ID, it.Deliveries, payloadText(it.Payload))
			} else {
				fmt.Fprintf(stdout, "%d %d %s until %s\n", it.ID, it.Deliveries, payloadText(it.Payload), it.Deadline.Format(time.RFC3339Nano))
			}
		}
	case "len":
		l, err := q.Len(ctx)
		if err != nil {
			return fail(stderr, err)
		}
		if *cf.json {
			out := map[string]any{"ready": l.Ready, "leased": l.Leased, "dead": l.Dead, "lsn": l.LSN}
			if !l.Clock.IsZero() {
				out["clock"] = l.Clock
			}
			printJSON(stdout, out)
		} else {
			fmt.Fprintf(stdout, "%d ready, %d leased, %d dead (at LSN %d)\n", l.Ready, l.Leased, l.Dead, l.LSN)
		}
	}
	return 0
}

// queuePush enqueues args, or each line of stdin when there are none, one
// at a time, in order, each within timeout, and prints each item's id.
func queuePush(q *queueclient.Client, timeout time.Duration, args []string, asJSON bool, stdout, stderr io.Writer) int {
	push := func(item []byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		id, lsn, err := q.Enqueue(ctx, item)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, map[string]any{"id": id, "lsn": lsn})
		}
		_, err = fmt.Fprintln(stdout, id)
		return err
	}
	if len(args) > 0 {
		for _, a := range args {
			if err := push([]byte(a)); err != nil {
				return fail(stderr, err)
			}
		}
		return 0
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64<<10), transport.DefaultClientConfig().MaxFrameBytes)
	for sc.Scan() {
		if err := push(sc.Bytes()); err != nil {
			return fail(stderr, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fail(stderr, fmt.Errorf("reading stdin: %w", err))
	}
	return 0
}
