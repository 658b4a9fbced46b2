package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/projection"
	"github.com/sagaflow/sagaflow/readmodel"
)

// Projections returns every projection's status.
func (c *Client) Projections(ctx context.Context) ([]projection.Status, error) {
	var resp engine.ProjectionsResponse
	err := c.do(ctx, http.MethodGet, "/v1/projections", nil, &resp)
	return resp.Projections, err
}

// Projection returns one projection's status, with its latest rebuild.
func (c *Client) Projection(ctx context.Context, name string) (projection.Status, error) {
	var st projection.Status
	err := c.do(ctx, http.MethodGet, "/v1/projections/"+url.PathEscape(name), nil, &st)
	return st, err
}

// Rebuild starts a rebuild of the projection and returns its status;
// follow the progress with Projection.
func (c *Client) Rebuild(ctx context.Context, name string) (projection.Status, error) {
	var st projection.Status
	err := c.do(ctx, http.MethodPost, "/v1/projections/"+url.PathEscape(name)+"/rebuild", nil, &st)
	return st, err
}

// ReadModelQuery makes a document read wait until the model reflects
// event MinSeq of Stream, at most Wait (the engine's default when 0).
type ReadModelQuery struct {
	Stream string
	MinSeq uint64
	Wait   time.Duration
}

// ReadModel returns one read-model document.
func (c *Client) ReadModel(ctx context.Context, model, key string, q ReadModelQuery) (readmodel.Doc, error) {
	v := url.Values{}
	if q.MinSeq > 0 {
		v.Set("stream", q.Stream)
		v.Set("min_seq", strconv.FormatUint(q.MinSeq, 10))
		if q.Wait > 0 {
			v.Set("wait", q.Wait.String())
		}
	}
	path := "/v1/readmodels/" + url.PathEscape(model) + "/" + url.PathEscape(key)
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var d readmodel.Doc
	err := c.do(ctx, http.MethodGet, path, nil, &d)
	return d, err
}

// ListReadModel returns one page of a read model's documents.
func (c *Client) ListReadModel(ctx context.Context, model, after string, limit int) (engine.ReadModelListResponse, error) {
	v := url.Values{}
	if after != "" {
		v.Set("after", after)
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/readmodels/" + url.PathEscape(model)
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var resp engine.ReadModelListResponse
	err := c.do(ctx, http.MethodGet, path, nil, &resp)
	return resp, err
}
