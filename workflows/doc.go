// Package workflows is the Go DSL for sagas and the pure state machine that
// runs them. It does no I/O: the saga actor (package actors) feeds it
// replies, timer firings and cancellations, and persists what it decides.
//
// A workflow is defined with typed input I and state S:
//
//	wf := workflows.New[OrderInput, OrderState]("orders.PlaceOrder", 1, initOrder).
//		Send("reserve-stock", workflows.CommandStep[OrderState]{
//			Service:    "inventory",
//			Command:    func(s *OrderState) (workflows.Cmd, error) { ... },
//			Compensate: func(s *OrderState) (workflows.Cmd, error) { ... },
//			Retry:      workflows.RetryPolicy{MaxAttempts: 3, InitialInterval: 100 * time.Millisecond},
//			Timeout:    5 * time.Second,
//		}).
//		Do("compute-total", workflows.LocalStep[OrderState]{Run: ...})
//
// Beyond command and local steps there are waits for a signal (Await) or
// an event (AwaitEvent), durable delays (Delay), parallel branches
// (Parallel, All or FirstWins), child sagas (Child), conditionals (If,
// When, over Steps sequences) and a saga-level Deadline; see
// docs/ARCHITECTURE.md for how they are laid out and compensated.
//
// Validate (called by the engine at registration) reports every structural
// problem with the step it concerns. The Machine turns an Instance and an
// input (start, reply, timer, cancel, resume) into a Decision: the next
// Instance, what happened, the commands to send and the timers to set. Steps
// run forward; when one fails for good, or the saga is cancelled, the steps
// already done are compensated in reverse order, each compensation retried
// by its own policy until it succeeds or the saga is parked as needing
// attention.
package workflows
