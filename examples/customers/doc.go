// Package customers is the read-model half of the seed's "B customers
// email campaign": a crm.Customer aggregate whose internal events are
// published as public integration events through explicit mappers, and
// two projections built from those public events, "customers" (one
// document per customer) and "customers.byClass" (the customers of each
// classification, the list the campaign mails).
package customers
