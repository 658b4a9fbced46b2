package client

import (
	"context"
	"net/http"

	"github.com/sagaflow/sagaflow/engine"
)

// Circuits returns the engine's circuit breakers, one per remote service
// it has sent commands to (GET /v1/circuits).
func (c *Client) Circuits(ctx context.Context) ([]engine.CircuitState, error) {
	var resp engine.CircuitsResponse
	err := c.do(ctx, http.MethodGet, "/v1/circuits", nil, &resp)
	return resp.Circuits, err
}
