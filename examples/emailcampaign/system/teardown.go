package system

import (
	"context"
	"errors"
	"fmt"

	"github.com/sagaflow/sagaflow/examples/emailcampaign/campaigns"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/classification"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/customers"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/mailer"
	"github.com/sagaflow/sagaflow/projection"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
)

// Queues returns every queue the distributed processes declare (the
// engines' saga queues, the aggregates', the inboxes', the projections'
// and the mailer's).
func Queues() []string {
	return []string{
		"ec-" + RoleCustomers, "ec-" + RoleClassification, "ec-" + RoleCampaigns,
		customers.Service, classification.Service, classification.InboxQueue,
		campaigns.Service, campaigns.AudienceService, campaigns.InboxQueue,
		projection.QueuePrefix + campaigns.AudienceModel, projection.QueuePrefix + campaigns.ReportsModel,
		mailer.Service,
	}
}

// Teardown deletes a distributed run's RabbitMQ topology (its queues with
// their messages, and its exchanges).
func Teardown(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	if cfg.AMQPURL == "" || cfg.Topology == "" {
		return errors.New("teardown needs the AMQP URL and the topology name")
	}
	tr, err := rabbitmq.Dial(ctx, cfg.AMQPURL, rabbitmq.WithName(cfg.Topology), rabbitmq.WithPartitions(cfg.Partitions), rabbitmq.WithLogger(cfg.Logger))
	if err != nil {
		return fmt.Errorf("rabbitmq %s: %w", cfg.Topology, err)
	}
	defer tr.Close()
	return tr.DeleteTopology(ctx, Queues()...)
}
