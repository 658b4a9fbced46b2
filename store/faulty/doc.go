// Package faulty wraps a store.Store and injects write errors, so that
// tests can show what the engine does when its database fails in the
// middle of a run: nothing half-written (I1), nothing acknowledged that
// was not committed (I4), and recovery once the fault clears.
//
// The wrapper owns no data: every call goes to the wrapped store unless a
// fault is on, in which case the write fails before reaching it, with an
// error that wraps store.ErrUnavailable (what a real store returns after
// its retry budget). Faults are switched on and off at run time (SetDown)
// or armed to start after a number of successful appends (FailAfter). It
// also counts what the wrapped store answered, in particular the
// store.ErrConcurrency conflicts of I2, so a test can show that racing
// writers really collided.
package faulty
