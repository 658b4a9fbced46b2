// Package console is sagaflow's web console: HTML pages the daemon serves
// next to its admin API, for operators who would rather look than read
// logs.
//
// It shows the sagas with filters (status, workflow) and cursor paging,
// refreshed every two seconds; a saga's page with its status, a timeline
// of every attempt of every step and compensation as bars over time
// (retries as separate bars with their back-off between them,
// compensations in their own colour), the workflow's Mermaid diagram with
// the saga's progress and current step drawn on it, and its full history;
// the dead letters, each with a Replay button; and the projections with
// their read models, each model's documents refreshed the same way.
//
// Everything is rendered on the server from html/template templates
// embedded in the binary; the pages use a few lines of vanilla JavaScript
// for the live refresh and mermaid.js (vendored in static/, no CDN, no
// build step) for the diagram. The console reads the engine through its Go
// API, never over HTTP, and owns no state: every page is a view of what the
// engine returns. Layout decisions that can be tested without a browser
// (BuildTimeline, Diagram) are plain functions.
//
// Mount it on the engine's admin server before Run:
//
//	e.HandleAdmin("/console/", console.New(e))
//
// State-changing requests (replay) are refused when they come from another
// site (net/http's CrossOriginProtection), so a page elsewhere cannot make
// an operator's browser replay messages.
package console
