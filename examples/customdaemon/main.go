// Command customdaemon shows how a team ships its own sagaflow daemon: a
// main that registers its workflows, aggregates and message types and
// hands the command line to daemon.Main, the same entry point
// cmd/sagaflow calls. The binary then has every subcommand and setting of
// sagaflow (`serve --help`, `list`, `dead-letters replay`, ...), with these
// workflows compiled in:
//
//	go run ./examples/customdaemon serve --admin-addr 127.0.0.1:8081
//	go run ./examples/customdaemon start --addr 127.0.0.1:8081 onboarding.Welcome --input '{"user":"ada"}'
//	go run ./examples/customdaemon workflows show --addr 127.0.0.1:8081 onboarding.Welcome --mermaid
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sagaflow/sagaflow/daemon"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/workflows"
)

// WelcomeInput starts an onboarding saga.
type WelcomeInput struct {
	User string `json:"user"`
}

// WelcomeState is the onboarding saga's state.
type WelcomeState struct {
	User    string `json:"user"`
	Account string `json:"account,omitempty"`
	Mailed  bool   `json:"mailed,omitempty"`
}

// Welcome is a workflow of two local steps: open an account (undone by
// closing it), then send the welcome mail.
func Welcome() *workflows.Definition[WelcomeInput, WelcomeState] {
	return workflows.New("onboarding.Welcome", 1, func(in WelcomeInput) (WelcomeState, error) {
		if strings.TrimSpace(in.User) == "" {
			return WelcomeState{}, errors.New(`"user" is required`)
		}
		return WelcomeState{User: in.User}, nil
	}).
		Do("open-account", workflows.LocalStep[WelcomeState]{
			Run: func(_ context.Context, s *WelcomeState) error {
				s.Account = "acct-" + s.User
				return nil
			},
			Compensate: func(_ context.Context, s *WelcomeState) error {
				s.Account = ""
				return nil
			},
		}).
		Do("send-welcome-mail", workflows.LocalStep[WelcomeState]{
			Run: func(_ context.Context, s *WelcomeState) error {
				if s.User == "bounce" {
					return workflows.Permanent(fmt.Errorf("mailbox of %s does not exist", s.User))
				}
				s.Mailed = true
				return nil
			},
		})
}

// setup registers this daemon's workflows on the engine daemon.Main builds.
func setup(e *engine.Engine) {
	e.Register(Welcome())
	orders.Register(e, orders.DefaultShippingRetry)
}

func main() {
	os.Exit(daemon.Main(context.Background(), os.Args, setup))
}
