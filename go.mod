module github.com/sagaflow/sagaflow

go 1.26

require github.com/google/uuid v1.6.0

require (
	github.com/asynkron/protoactor-go v0.0.0-20240822202345-3c0e61ca19c9 // indirect
	github.com/cenkalti/backoff/v5 v5.0.3 // indirect
	github.com/urfave/cli/v3 v3.14.0 // indirect
	go.etcd.io/bbolt v1.5.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
)
