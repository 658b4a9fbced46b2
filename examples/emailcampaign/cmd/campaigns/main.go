// Command campaigns runs the email-campaign example's campaigns service as its own
// process, over RabbitMQ and MongoDB (see ../../run-distributed.sh):
//
//	go run ./examples/emailcampaign/cmd/campaigns --amqp-url ... --mongo-uri ... --topology ec-RUN
package main

import (
	"os"

	"github.com/sagaflow/sagaflow/examples/emailcampaign/system"
)

func main() { os.Exit(system.Main(system.RoleCampaigns, os.Args[1:])) }
