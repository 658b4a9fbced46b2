// Package emailcampaign is the flagship example, the "B customers email
// campaign" of the CQRS/ES talk the project grew out of. Its services are
// packages of their own, each runnable as its own process
// (cmd/customers, cmd/classification, cmd/campaigns, cmd/mailer) or all in
// one (cmd/emailcampaign):
//
//   - customers: the event-sourced Customer aggregate (registration,
//     email permission granted or revoked, orders placed), publishing
//     public events through explicit mappers;
//   - classification: derives A/B/C from the order history it keeps in
//     its own stream and publishes CustomerClassificationUpdated when a
//     class changes;
//   - campaigns: keeps what it learns in its own Audience streams and
//     read model (it never calls the other services), runs the campaign
//     saga and keeps each campaign's log and report;
//   - mailer: a participant that sends the mails over SMTP, once per
//     (campaign, customer), checking permission and cancellation right
//     before each send.
//
// system wires them into processes, loadgen seeds data and runs
// campaigns, smtpsink is the SMTP server the tests and the demo send to.
// This package holds the end-to-end tests of both modes.
package emailcampaign
