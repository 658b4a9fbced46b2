// Package campaigns is the campaign service of the email-campaign example:
// the "B customers email campaign" saga and the read models it works from.
//
// What it learns from other services it keeps in its own event stream
// (the talk's advice): an inbox turns the customer service's public
// events (registration, email permission) and the classification
// service's CustomerClassificationUpdated into commands to its own
// Audience aggregate, one per customer, which records each change once
// (a sequence it has seen for that stream and attribute records nothing,
// so redelivered or reordered events cannot turn a newer value into an
// older one). The "campaigns.audience" read model is projected from the
// Audience's public events; the campaign log (budget, sent, bounced,
// skipped, opened, finished or cancelled) is the Campaign aggregate's
// stream, projected into "campaigns.reports".
//
// The saga (Workflow): reserve the budget (compensation: release what was
// not used and mark the campaign cancelled); select the audience (B
// customers who allow email at that moment, at most the budget); send in
// Lanes parallel batches through the mailer participant (bounded
// parallelism; each lane retried by its policy, the mailer's circuit
// breaker pausing it during an outage); record the outcomes in the
// campaign's stream; finish with the report (unused budget released).
//
// Invariants: every state change is an aggregate commit (I1, I2), every
// event a projection applies is applied once and in stream order (I3);
// the saga's steps are durable (I5).
package campaigns
