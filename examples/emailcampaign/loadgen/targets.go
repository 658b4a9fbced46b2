package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sagaflow/sagaflow/client"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/campaigns"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// EngineTarget reaches the services through an engine in this process
// (the all-in-one mode).
type EngineTarget struct {
	Engine *engine.Engine
	Reader *campaigns.Reader
}

// Send implements Target.
func (t EngineTarget) Send(ctx context.Context, service, key string, cmd any) error {
	_, err := t.Engine.Send(ctx, service, key, cmd, nil)
	return err
}

// StartCampaign implements Target.
func (t EngineTarget) StartCampaign(ctx context.Context, in campaigns.Input) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	_, err = t.Engine.Start(ctx, engine.StartRequest{Workflow: campaigns.WorkflowName, ID: in.ID, Input: b})
	return err
}

// WaitCampaign implements Target.
func (t EngineTarget) WaitCampaign(ctx context.Context, id string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	s, err := t.Engine.WaitSaga(ctx, id)
	return string(s.Status), err
}

// Member implements Target.
func (t EngineTarget) Member(ctx context.Context, id string) (campaigns.Member, bool, error) {
	return t.Reader.Member(ctx, id)
}

// Report implements Target.
func (t EngineTarget) Report(ctx context.Context, id string) (campaigns.Report, bool, error) {
	return t.Reader.Report(ctx, id)
}

// RemoteTarget reaches separate service processes: commands over the
// transport, campaigns and read models through the campaign service's
// admin API.
type RemoteTarget struct {
	Transport transport.Transport
	Registry  *message.Registry
	Campaigns *client.Client
}

// Send implements Target.
func (t RemoteTarget) Send(ctx context.Context, service, key string, cmd any) error {
	env, err := t.Registry.New(message.KindCommand, key, cmd)
	if err != nil {
		return err
	}
	env.Destination, env.Source = service, "emailcampaign-seed"
	if err := t.Transport.Publish(ctx, env); err != nil {
		return fmt.Errorf("send %s to %s/%s: %w", env.Type, service, key, err)
	}
	return nil
}

// StartCampaign implements Target.
func (t RemoteTarget) StartCampaign(ctx context.Context, in campaigns.Input) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	_, err = t.Campaigns.Start(ctx, engine.StartRequest{Workflow: campaigns.WorkflowName, ID: in.ID, Input: b})
	return err
}

// WaitCampaign implements Target.
func (t RemoteTarget) WaitCampaign(ctx context.Context, id string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	s, err := t.Campaigns.Wait(ctx, id)
	return string(s.Status), err
}

// Member implements Target.
func (t RemoteTarget) Member(ctx context.Context, id string) (m campaigns.Member, ok bool, err error) {
	ok, err = t.get(ctx, campaigns.AudienceModel, id, &m)
	return m, ok, err
}

// Report implements Target.
func (t RemoteTarget) Report(ctx context.Context, id string) (r campaigns.Report, ok bool, err error) {
	ok, err = t.get(ctx, campaigns.ReportsModel, id, &r)
	return r, ok, err
}

func (t RemoteTarget) get(ctx context.Context, model, key string, v any) (bool, error) {
	d, err := t.Campaigns.ReadModel(ctx, model, key, client.ReadModelQuery{})
	if client.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(d.Body, v); err != nil {
		return false, fmt.Errorf("%s/%s: %w", model, key, err)
	}
	return true, nil
}
