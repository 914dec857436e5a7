package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
)

// The example process: an order is reserved, charged, invoiced and
// notified; a declined charge releases the reservation and cancels the
// order. Each step is a deterministic function of its input.

// Order is an order process's input.
type Order struct {
	Order  string `json:"order"`
	Items  int    `json:"items"`
	Amount int64  `json:"amount"`
}

// OrderResult is an order process's output.
type OrderResult struct {
	Status  string `json:"status"` // "completed" or "cancelled"
	Invoice string `json:"invoice,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// NewOrder returns the input of order i. A charge whose amount is a
// multiple of 7 is declined: every fifth order's, and a few others.
func NewOrder(i int) Order {
	o := Order{Order: fmt.Sprint("order-", i), Items: 1 + i%4, Amount: int64(10*i + 3)}
	if i%5 == 0 {
		o.Amount = 70 * int64(i)
	}
	return o
}

type reservation struct {
	Reservation string `json:"reservation"`
}

type payment struct {
	Payment string `json:"payment"`
}

type invoice struct {
	Invoice string `json:"invoice"`
}

// OrderProcess is the orchestration of one order.
func OrderProcess(ctx context.Context, c *Context, in json.RawMessage) (any, error) {
	var o Order
	if err := json.Unmarshal(in, &o); err != nil {
		return nil, err
	}
	var r reservation
	if err := c.Call(ctx, "reserve", o, &r); err != nil {
		return nil, err
	}
	var p payment
	err := c.Call(ctx, "charge", o, &p)
	if se := (*StepError)(nil); errors.As(err, &se) {
		if err := c.Call(ctx, "release", r, nil); err != nil {
			return nil, err
		}
		return OrderResult{Status: "cancelled", Reason: se.Msg}, nil
	} else if err != nil {
		return nil, err
	}
	var inv invoice
	if err := c.Call(ctx, "invoice", struct {
		Order   Order  `json:"order"`
		Payment string `json:"payment"`
	}{o, p.Payment}, &inv); err != nil {
		return nil, err
	}
	if err := c.Call(ctx, "notify", inv, nil); err != nil {
		return nil, err
	}
	return OrderResult{Status: "completed", Invoice: inv.Invoice}, nil
}

// steps are the step functions by name.
var steps = map[string]Step{
	"reserve": func(in json.RawMessage) (any, error) {
		var o Order
		if err := json.Unmarshal(in, &o); err != nil {
			return nil, err
		}
		return reservation{fmt.Sprintf("R-%s-%d", o.Order, o.Items)}, nil
	},
	"charge": func(in json.RawMessage) (any, error) {
		var o Order
		if err := json.Unmarshal(in, &o); err != nil {
			return nil, err
		}
		if o.Amount%7 == 0 {
			return nil, fmt.Errorf("card declined for %d", o.Amount)
		}
		return payment{fmt.Sprintf("P-%08x", crc32.ChecksumIEEE(in))}, nil
	},
	"release": func(in json.RawMessage) (any, error) {
		return struct{}{}, nil
	},
	"invoice": func(in json.RawMessage) (any, error) {
		return invoice{fmt.Sprintf("INV-%08x", crc32.ChecksumIEEE(in))}, nil
	},
	"notify": func(in json.RawMessage) (any, error) {
		return struct {
			Sent bool `json:"sent"`
		}{true}, nil
	},
}
