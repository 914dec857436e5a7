package queueclient_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/transport/queueclient"
)

// A worker that takes jobs from queue partition 9 and acknowledges each
// once done; a job it fails to finish comes back when its lease ends.
func Example() {
	ctx := context.Background()
	cl, err := transport.Dial(ctx, transport.DefaultClientConfig(), "127.0.0.1:7401", "127.0.0.1:7402", "127.0.0.1:7403")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	q := queueclient.New(cl, 9)
	if _, _, err := q.Enqueue(ctx, []byte("resize image 42")); err != nil {
		fmt.Println(err)
		return
	}
	for {
		d, err := q.Dequeue(ctx, 30*time.Second)
		if errors.Is(err, queueclient.ErrEmpty) {
			return
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("job %d (delivery %d): %s\n", d.ID, d.Delivery, d.Payload)
		// ... do the work, before d.Deadline (or Extend the lease) ...
		if err := q.Ack(ctx, d.ID, d.Delivery); errors.Is(err, queueclient.ErrLost) {
			fmt.Println("too late: the job was handed to another worker")
		}
	}
}
