// Package orders is the demo saga that `sagaflow serve` runs: placing an
// order reserves stock, charges the payment and books the shipment. Each
// participant is an event-sourced aggregate served in-process by the engine.
//
// Inputs steer the outcome, so every path can be watched:
//
//   - Amount over 1000: the payment is declined (a business failure); the
//     stock reservation is released.
//   - Address "nowhere": the carrier is unavailable (a retryable failure);
//     shipping is tried 3 times, then payment is refunded and stock released,
//     in that order.
package orders
