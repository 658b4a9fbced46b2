package main

import (
	"context"
	"log/slog"
	"os"
	"sync"
)

// warnCounter counts the warnings and errors an engine logs and keeps the
// first, so that a run that met trouble says so even when the engine's
// logs are not shown.
type warnCounter struct {
	mu    sync.Mutex
	n     int
	first string
}

func (w *warnCounter) add(msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n == 0 {
		w.first = msg
	}
	w.n++
}

// get returns the count and the first message.
func (w *warnCounter) get() (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, w.first
}

// countingHandler passes records to next and counts those at Warn and
// above.
type countingHandler struct {
	next  slog.Handler
	warns *warnCounter
}

// Enabled implements slog.Handler: Warn and above are always handled (to
// be counted).
func (h countingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		msg := r.Message
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" || a.Key == "reason" {
				msg += ": " + a.Value.String()
				return false
			}
			return true
		})
		h.warns.add(msg)
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h countingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return countingHandler{next: h.next.WithAttrs(attrs), warns: h.warns}
}

// WithGroup implements slog.Handler.
func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{next: h.next.WithGroup(name), warns: h.warns}
}

// engineLogger returns the logger for engines and stores: it discards
// their logs, or with verbose shows their warnings on standard error.
// Wrap its handler in a countingHandler to count the warnings.
func engineLogger(verbose bool) *slog.Logger {
	if verbose {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

// countedLogger returns engineLogger's logger with its warnings counted.
func countedLogger(verbose bool) (*slog.Logger, *warnCounter) {
	w := &warnCounter{}
	return slog.New(countingHandler{next: engineLogger(verbose).Handler(), warns: w}), w
}
