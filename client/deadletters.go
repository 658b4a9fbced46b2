package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/transport"
)

// DeadLetters lists dead letters.
func (c *Client) DeadLetters(ctx context.Context, f engine.DeadLetterFilter) ([]transport.DeadLetter, error) {
	q := url.Values{}
	if f.Queue != "" {
		q.Set("queue", f.Queue)
	}
	if f.Type != "" {
		q.Set("type", f.Type)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var resp engine.DeadLettersResponse
	err := c.do(ctx, http.MethodGet, "/v1/dead-letters?"+q.Encode(), nil, &resp)
	return resp.DeadLetters, err
}

// DeadLetter returns the dead letter of one message.
func (c *Client) DeadLetter(ctx context.Context, id string) (transport.DeadLetter, error) {
	var dl transport.DeadLetter
	err := c.do(ctx, http.MethodGet, "/v1/dead-letters/"+url.PathEscape(id), nil, &dl)
	return dl, err
}

// ReplayDeadLetters replays the dead letters of the messages in ids (at
// most engine.MaxDeadLetterBatch).
func (c *Client) ReplayDeadLetters(ctx context.Context, ids []string) (engine.DeadLetterResult, error) {
	var res engine.DeadLetterResult
	err := c.do(ctx, http.MethodPost, "/v1/dead-letters/replay", engine.DeadLetterIDs{IDs: ids}, &res)
	return res, err
}

// DiscardDeadLetters deletes the dead letters of the messages in ids.
func (c *Client) DiscardDeadLetters(ctx context.Context, ids []string) (engine.DeadLetterResult, error) {
	var res engine.DeadLetterResult
	err := c.do(ctx, http.MethodPost, "/v1/dead-letters/discard", engine.DeadLetterIDs{IDs: ids}, &res)
	return res, err
}
