package console

import (
	"context"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

func TestZZPreview(t *testing.T) {
	f := &fakeDeadLetters{fakeEngine: newFake(), letters: []transport.DeadLetter{
		{Message: message.Envelope{ID: "01a205e4-6068-705d-a574-69606f7a5f10", Type: "nobody.Nothing.v1", Key: "o-bad"}, Queue: "inventory", Reason: "unknown message type nobody.Nothing.v1: not registered", Attempts: 1, At: time.Now().Add(-3 * time.Minute)},
		{Message: message.Envelope{ID: "01a205e4-6069-7e3c-8477-0f862dc24a71", Type: "inventory.ReserveStock.v1", Key: "o-1", SagaID: "o-1"}, Queue: "inventory", Reason: "malformed message inventory.ReserveStock.v1: json: cannot unmarshal string into field qty of type int", Attempts: 1, At: time.Now().Add(-20 * time.Second)},
	}}
	srv := httptest.NewServer(newConsole(f))
	defer srv.Close()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath("/usr/bin/chromium"), chromedp.NoSandbox, chromedp.WindowSize(1400, 700))
	actx, c1 := chromedp.NewExecAllocator(context.Background(), opts...)
	defer c1()
	ctx, c2 := chromedp.NewContext(actx)
	defer c2()
	for name, path := range map[string]string{"dl": "/console/deadletters?replayed=01a205e4-aaaa", "running": "/console/sagas/o-2", "err": "/console/sagas/zzz"} {
		if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+path)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile("/tmp/shots/"+name+".png", shot, 0o644)
	}
}
