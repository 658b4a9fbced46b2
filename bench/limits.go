package main

import "fmt"

// formulas states how the limits in the results are derived.
func formulas() []string {
	return []string{
		"msgs, commits and mongo docs are counted per saga at the store interface: every outbox message is one published and consumed message;",
		"  a saga that completes costs 6 messages (3 commands, 3 replies) and 7 commits (its start, which sends the first command, and 3 replies",
		"  on the saga; 3 participant commits); a compensated one 10 messages and 11 commits (2 compensation commands and replies more).",
		"loads are stream reads: each participant's aggregate actor reads its stream when it starts (3 per saga; the saga's own",
		"  actor reads nothing when the engine that created the saga hands its first version over).",
		"embedded limit/s = embedded-store commits/s with many writers (group commit) / commits per saga (the in-process transport costs no I/O).",
		"rabbitmq+mongodb limit/s = 1 / (msgs per saga / (2 x round trips/s at 16 in flight) + mongo docs per saga / insertMany docs/s):",
		"  one round trip carries 2 persistent confirmed messages; broker, database and engine share the machine's cores, so their costs add.",
		"ratio = sagas/s / limit/s.",
	}
}

// applyLimits fills each saga result's limit and ratio from the raw
// results, where they were measured.
func applyLimits(rep *Report) {
	for i := range rep.Sagas {
		s := &rep.Sagas[i]
		if s.Status != StatusOK {
			continue
		}
		switch s.Backend {
		case BackendEmbedded:
			er := rep.Raw.Embedded
			if er == nil || er.Status != StatusOK || s.Cost.Commits <= 0 {
				s.LimitNote = "needs the raw embedded-store figure (-only raw,embedded)"
				continue
			}
			s.Limit = er.Batched / s.Cost.Commits
			s.LimitNote = fmt.Sprintf("%.0f commits/s / %.2f commits per saga", er.Batched, s.Cost.Commits)
		case BackendDistributed:
			rr, mr := rep.Raw.RabbitMQ, rep.Raw.MongoDB
			if rr == nil || mr == nil || rr.Status != StatusOK || mr.Status != StatusOK || rr.RoundTrips16 <= 0 || s.Cost.Messages <= 0 {
				s.LimitNote = "needs the raw RabbitMQ and MongoDB figures (-only raw,distributed)"
				continue
			}
			docs := max(mr.Batch1, mr.Batch4)
			msgRate := 2 * rr.RoundTrips16
			perSaga := s.Cost.Messages/msgRate + s.Cost.MongoDocs/docs
			s.Limit = 1 / perSaga
			s.LimitNote = fmt.Sprintf("1/(%.2f/%.0f + %.1f/%.0f); broker alone %.0f/s, database alone %.0f/s",
				s.Cost.Messages, msgRate, s.Cost.MongoDocs, docs, msgRate/s.Cost.Messages, docs/s.Cost.MongoDocs)
		}
		if s.Limit > 0 {
			s.Ratio = s.Rate / s.Limit
		}
	}
}
