package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sagaflow/sagaflow/engine"
)

// AggregateState returns the state of aggregate id served by service at
// at (the zero value: the latest), as GET /v1/aggregates/{service}/{id}
// gives it; the view's State is a json.RawMessage.
func (c *Client) AggregateState(ctx context.Context, service, id string, at engine.AggregateAt) (engine.AggregateView, error) {
	if at.Version != 0 && !at.Time.IsZero() {
		return engine.AggregateView{}, errors.New("aggregate state: give a version or a time, not both")
	}
	q := url.Values{}
	if at.Version != 0 {
		q.Set("version", strconv.FormatUint(at.Version, 10))
	}
	if !at.Time.IsZero() {
		q.Set("at", at.Time.Format(time.RFC3339Nano))
	}
	path := "/v1/aggregates/" + url.PathEscape(service) + "/" + url.PathEscape(id)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var resp struct {
		engine.AggregateView
		State json.RawMessage `json:"state"`
	}
	if err := c.do(ctx, http.MethodGet, path, nil, &resp); err != nil {
		return engine.AggregateView{}, err
	}
	v := resp.AggregateView
	v.State = resp.State
	return v, nil
}

// Forget forgets a data subject (crypto-shredding; see engine.Forget).
func (c *Client) Forget(ctx context.Context, subject string) (engine.ForgetResponse, error) {
	var resp engine.ForgetResponse
	err := c.do(ctx, http.MethodPost, "/v1/subjects/"+url.PathEscape(subject)+"/forget", nil, &resp)
	return resp, err
}
