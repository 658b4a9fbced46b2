package participant

// SetInboxQueueLimit sets how many accepted commands may wait for a worker,
// for a test, and returns the function that puts the limit back.
func SetInboxQueueLimit(n int) (restore func()) {
	old := inboxQueueLimit
	inboxQueueLimit = n
	return func() { inboxQueueLimit = old }
}
