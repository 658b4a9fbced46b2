// Package client is a Go client of the engine's admin HTTP API, used by the
// sagaflow CLI and by programs that start and watch sagas from outside the
// engine process.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/workflows"
)

// Error is an error response of the admin API.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Message is the API's explanation.
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("admin API: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Client talks to one engine's admin API.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithToken sends token as the bearer token of every request (the
// engine's AdminToken).
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithTimeout bounds each request (default 30s; dead-letter replays of
// many letters may need more).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.http.Timeout = d } }

// New returns a client of the admin API at baseURL (for example
// "http://127.0.0.1:8080"). Requests time out after 30s.
func New(baseURL string, opts ...Option) *Client {
	if !strings.Contains(baseURL, "://") {
		baseURL = "http://" + baseURL
	}
	c := &Client{base: strings.TrimRight(baseURL, "/"), http: &http.Client{Timeout: 30 * time.Second}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Start starts a saga and returns its ID.
func (c *Client) Start(ctx context.Context, req engine.StartRequest) (string, error) {
	var resp engine.StartResponse
	if err := c.do(ctx, http.MethodPost, "/v1/sagas", req, &resp); err != nil {
		return "", err
	}
	return resp.ID, nil
}

// Get returns one saga with its history.
func (c *Client) Get(ctx context.Context, id string) (engine.Saga, error) {
	var s engine.Saga
	err := c.do(ctx, http.MethodGet, "/v1/sagas/"+url.PathEscape(id), nil, &s)
	return s, err
}

// List returns one page of sagas.
func (c *Client) List(ctx context.Context, req engine.ListRequest) (engine.ListResponse, error) {
	q := url.Values{}
	for _, s := range req.Status {
		q.Add("status", string(s))
	}
	if req.Workflow != "" {
		q.Set("workflow", req.Workflow)
	}
	if req.CorrelationID != "" {
		q.Set("correlation_id", req.CorrelationID)
	}
	if !req.CreatedFrom.IsZero() {
		q.Set("created_from", req.CreatedFrom.Format(time.RFC3339Nano))
	}
	if !req.CreatedTo.IsZero() {
		q.Set("created_to", req.CreatedTo.Format(time.RFC3339Nano))
	}
	if req.After != "" {
		q.Set("after", req.After)
	}
	if req.Limit > 0 {
		q.Set("limit", strconv.Itoa(req.Limit))
	}
	var resp engine.ListResponse
	err := c.do(ctx, http.MethodGet, "/v1/sagas?"+q.Encode(), nil, &resp)
	return resp, err
}

// Cancel asks a saga to stop and compensate.
func (c *Client) Cancel(ctx context.Context, id, reason string) error {
	return c.do(ctx, http.MethodPost, "/v1/sagas/"+url.PathEscape(id)+"/cancel", map[string]string{"reason": reason}, nil)
}

// History returns a saga's history.
func (c *Client) History(ctx context.Context, id string) ([]workflows.Record, error) {
	var resp engine.HistoryResponse
	err := c.do(ctx, http.MethodGet, "/v1/sagas/"+url.PathEscape(id)+"/history", nil, &resp)
	return resp.History, err
}

// Signal sends a signal to a saga.
func (c *Client) Signal(ctx context.Context, id string, req engine.SignalRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/sagas/"+url.PathEscape(id)+"/signal", req, nil)
}

// Retry makes a saga that needs attention retry its failed compensation.
func (c *Client) Retry(ctx context.Context, id, reason string) error {
	return c.do(ctx, http.MethodPost, "/v1/sagas/"+url.PathEscape(id)+"/retry", engine.ReasonRequest{Reason: reason}, nil)
}

// Workflows lists the registered workflows.
func (c *Client) Workflows(ctx context.Context) ([]engine.WorkflowInfo, error) {
	var resp engine.WorkflowsResponse
	err := c.do(ctx, http.MethodGet, "/v1/workflows", nil, &resp)
	return resp.Workflows, err
}

// Workflow describes one workflow at version (0: the latest).
func (c *Client) Workflow(ctx context.Context, name string, version int) (engine.WorkflowInfo, error) {
	path := "/v1/workflows/" + url.PathEscape(name)
	if version > 0 {
		path += "?version=" + strconv.Itoa(version)
	}
	var info engine.WorkflowInfo
	err := c.do(ctx, http.MethodGet, path, nil, &info)
	return info, err
}

// Wait polls a saga until it is terminal or needs attention, or ctx ends.
func (c *Client) Wait(ctx context.Context, id string) (engine.Saga, error) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		s, err := c.Get(ctx, id)
		if err != nil {
			return s, err
		}
		if s.Status.Terminal() || s.Status == workflows.StatusNeedsAttention {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return s, fmt.Errorf("wait for saga %s (last status %s): %w", id, s.Status, ctx.Err())
		case <-t.C:
		}
	}
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var apiErr engine.APIError
		if json.Unmarshal(data, &apiErr) != nil || apiErr.Error == "" {
			apiErr.Error = strings.TrimSpace(string(data))
		}
		return &Error{Status: resp.StatusCode, Message: apiErr.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

// IsNotFound reports whether err is a 404 from the admin API.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}
