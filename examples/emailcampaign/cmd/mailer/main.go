// Command mailer runs the email-campaign example's mailer service as its own
// process, over RabbitMQ and MongoDB (see ../../run-distributed.sh):
//
//	go run ./examples/emailcampaign/cmd/mailer --amqp-url ... --mongo-uri ... --topology ec-RUN
package main

import (
	"os"

	"github.com/sagaflow/sagaflow/examples/emailcampaign/system"
)

func main() { os.Exit(system.Main(system.RoleMailer, os.Args[1:])) }
