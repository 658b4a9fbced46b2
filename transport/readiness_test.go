package transport_test

import (
	"errors"
	"testing"

	"github.com/sagaflow/sagaflow/telemetry"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/faulty"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/transport/transporttrace"
)

// tellingTransport is a transport that can tell its readiness.
type tellingTransport struct {
	transport.Transport
	ready, publishReady error
}

func (t *tellingTransport) Ready() error        { return t.ready }
func (t *tellingTransport) PublishReady() error { return t.publishReady }

// loopingWrapper unwraps to itself.
type loopingWrapper struct{ transport.Transport }

func (w *loopingWrapper) Unwrap() transport.Transport { return w }

func TestReadinessIsAskedDownTheChainOfDecorators(t *testing.T) {
	inner := inmem.New()
	t.Cleanup(func() { _ = inner.Close() })
	down, blocked := errors.New("connection recovering"), errors.New("broker memory alarm")
	telling := &tellingTransport{Transport: inner, ready: down, publishReady: blocked}
	chain := faulty.Wrap(transporttrace.New(telling, telemetry.Noop()))

	if err := transport.Ready(chain); !errors.Is(err, down) {
		t.Errorf("Ready through faulty and transporttrace = %v, want %v", err, down)
	}
	if err := transport.PublishReady(chain); !errors.Is(err, blocked) {
		t.Errorf("PublishReady through faulty and transporttrace = %v, want %v", err, blocked)
	}
	telling.ready, telling.publishReady = nil, nil
	if err := transport.Ready(chain); err != nil {
		t.Errorf("Ready of a ready transport = %v", err)
	}
	if err := transport.PublishReady(chain); err != nil {
		t.Errorf("PublishReady of a ready transport = %v", err)
	}

	// Nothing in the chain can tell: ready as far as anyone knows.
	for name, tr := range map[string]transport.Transport{
		"in-process":           inner,
		"decorated in-process": faulty.Wrap(transporttrace.New(inner, telemetry.Noop())),
		"nil":                  nil,
		"decorator of itself":  &loopingWrapper{Transport: inner},
	} {
		if err := transport.Ready(tr); err != nil {
			t.Errorf("Ready of %s = %v, want nil", name, err)
		}
		if err := transport.PublishReady(tr); err != nil {
			t.Errorf("PublishReady of %s = %v, want nil", name, err)
		}
	}
}
