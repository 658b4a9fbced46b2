package readmodel

import (
	"context"
	"encoding/json"
	"time"
)

// Pending is the Tx both implementations give an Update's function: reads
// go to the store through read (once per key) and writes are collected,
// the last write of a key winning. Plan turns them into change-log entries
// and document states.
type Pending struct {
	read   func(ctx context.Context, key string) (Doc, bool, error)
	base   map[string]*baseDoc
	writes map[string]Write
	order  []string
}

type baseDoc struct {
	doc Doc
	ok  bool
}

// NewPending returns a Tx whose reads call read.
func NewPending(read func(ctx context.Context, key string) (Doc, bool, error)) *Pending {
	return &Pending{read: read, base: make(map[string]*baseDoc), writes: make(map[string]Write)}
}

func (p *Pending) baseOf(ctx context.Context, key string) (Doc, bool, error) {
	if b, ok := p.base[key]; ok {
		return b.doc, b.ok, nil
	}
	d, ok, err := p.read(ctx, key)
	if err != nil {
		return Doc{}, false, err
	}
	p.base[key] = &baseDoc{doc: d, ok: ok}
	return d, ok, nil
}

// Get implements Tx.
func (p *Pending) Get(ctx context.Context, key string) (Doc, bool, error) {
	if err := ValidName("key", key); err != nil {
		return Doc{}, false, err
	}
	d, ok, err := p.baseOf(ctx, key)
	if err != nil {
		return Doc{}, false, err
	}
	if w, written := p.writes[key]; written {
		if w.Deleted {
			return Doc{}, false, nil
		}
		d.Key, d.Body = key, append(json.RawMessage(nil), w.Body...)
		return d, true, nil
	}
	return d, ok, nil
}

// Put implements Tx.
func (p *Pending) Put(key string, body json.RawMessage) error {
	if err := ValidName("key", key); err != nil {
		return err
	}
	if err := ValidBody(key, body); err != nil {
		return err
	}
	p.note(key, Write{Key: key, Body: append(json.RawMessage(nil), body...)})
	return nil
}

// Delete implements Tx.
func (p *Pending) Delete(key string) error {
	if err := ValidName("key", key); err != nil {
		return err
	}
	p.note(key, Write{Key: key, Deleted: true})
	return nil
}

func (p *Pending) note(key string, w Write) {
	if _, seen := p.writes[key]; !seen {
		p.order = append(p.order, key)
	}
	p.writes[key] = w
}

// Plan returns the change-log entries of the collected writes, numbered
// from head+1 in the order the keys were first written, and the document
// states they lead to (Deleted changes have no document). A delete of a
// document that does not exist is no change.
func (p *Pending) Plan(ctx context.Context, model, stream string, seq, head uint64, at time.Time) ([]Change, []Doc, error) {
	var changes []Change
	var docs []Doc
	for _, key := range p.order {
		w := p.writes[key]
		prev, ok, err := p.baseOf(ctx, key)
		if err != nil {
			return nil, nil, err
		}
		if w.Deleted && !ok {
			continue
		}
		head++
		c := Change{Position: head, Model: model, Key: key, Deleted: w.Deleted, Stream: stream, Seq: seq, At: at}
		if !w.Deleted {
			c.Body, c.Version = w.Body, prev.Version+1
			if !ok {
				c.Version = 1
			}
			docs = append(docs, Doc{Model: model, Key: key, Body: w.Body, Version: c.Version, Position: head, Stream: stream, Seq: seq, UpdatedAt: at})
		}
		changes = append(changes, c)
	}
	return changes, docs, nil
}
