package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sagaflow/sagaflow/actors"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/shred"
	"github.com/sagaflow/sagaflow/store/embedded"
	"github.com/sagaflow/sagaflow/workflows"
)

// storedBytes returns everything the store holds as raw bytes, by
// collection (MongoDB) or by file of the database directory (embedded:
// the write-ahead log, table files and manifest, none of them compressed).
func storedBytes(t *testing.T, s testStore) map[string][]byte {
	t.Helper()
	if s.kind == "embedded" {
		out := map[string][]byte{}
		root := filepath.Join(s.dir, embedded.DefaultDirName)
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a file Pebble removed after the listing
			}
			out[path] = data
			return err
		})
		if err != nil || len(out) == 0 {
			t.Fatalf("read the store's files under %s: %d files, %v", root, len(out), err)
		}
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(s.uri))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx)
	db := client.Database(s.mongoDB)
	names, err := db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, name := range names {
		cur, err := db.Collection(name).Find(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		for cur.Next(ctx) {
			buf.Write(cur.Current)
		}
		if err := cur.Err(); err != nil {
			t.Fatal(err)
		}
		_ = cur.Close(ctx)
		out[name] = buf.Bytes()
	}
	return out
}

// TestCryptoShredding writes personal data, proves the store holds none
// of it in the clear, forgets the customer and then the account, and
// checks after each that the stream loads (also at an earlier version and
// through the aggregate actor), with the subject's personal fields
// redacted and everything else unchanged. Snapshots are on (every 2
// events), so the sealed snapshot path is covered too.
func TestCryptoShredding(t *testing.T) {
	forEachStore(t, func(t *testing.T, s testStore) {
		const id = "acc-shred"
		e := newLedgerEngine(t, s.options(t), append(ledgerTypes(), ledgerAggregate(2))...)
		ctx := context.Background()
		secrets := []string{"Alice Liddell", "alice@wonderland.example", `"birth_year":1852`, "for the white rabbit"}
		send(t, e, id, &openAccount{Customer: "cust-alice", Name: "Alice Liddell", Email: "alice@wonderland.example", BirthYear: 1852, Plan: "gold"}, 1)
		v := send(t, e, id, &deposit{Amount: 10, Count: 2, Note: "for the white rabbit"}, 2)
		waitSnapshot(t, e.Store(), actors.AggregateStream(ledgerType, id), 2)
		want := account{ID: id, Customer: "cust-alice", Name: "Alice Liddell", Email: "alice@wonderland.example", BirthYear: 1852, Plan: "gold",
			Balance: 20, Deposits: 2, Notes: []string{"for the white rabbit", "for the white rabbit"}}
		if got := accountOf(t, v); !reflect.DeepEqual(got, want) {
			t.Fatalf("state before forgetting = %+v, want %+v", got, want)
		}

		noSecretsInSnapshot(t, e, id, secrets)
		raw := storedBytes(t, s)
		all := bytes.Join(mapValues(raw), nil)
		for _, secret := range secrets {
			for where, data := range raw {
				if bytes.Contains(data, []byte(secret)) {
					t.Errorf("the store holds %q in the clear (in %s)", secret, where)
				}
			}
		}
		for _, visible := range []string{"cust-alice", "gold", "ledger.AccountOpened.v1"} {
			if !bytes.Contains(all, []byte(visible)) {
				t.Errorf("the raw store bytes lack %q: the search does not see the stored events", visible)
			}
		}
		if s.kind == "mongo" {
			k, ok, err := e.Store().LoadKey(ctx, "cust-alice")
			if err != nil || !ok {
				t.Fatalf("LoadKey(cust-alice) = %t, %v", ok, err)
			}
			for where, data := range raw {
				if where != "subject_keys" && bytes.Contains(data, k.Secret) {
					t.Errorf("the key of cust-alice is stored in %s", where)
				}
			}
		}

		// Forget the customer through the admin API.
		var fr engine.ForgetResponse
		if st, body := call(t, e, "POST", "/v1/subjects/cust-alice/forget", nil, nil, &fr); st != 200 || !fr.Forgotten || fr.Subject != "cust-alice" {
			t.Fatalf("POST forget = %d %s %+v", st, body, fr)
		}
		if _, ok, err := e.Store().LoadKey(ctx, "cust-alice"); err != nil || ok {
			t.Fatalf("after Forget: LoadKey(cust-alice) = %t, %v; want no key", ok, err)
		}
		redacted := want
		redacted.Name, redacted.Email, redacted.BirthYear = shred.Redacted, shred.Redacted, 0
		v, err := e.AggregateStateAt(ctx, ledgerService, id, engine.AggregateAt{})
		if err != nil {
			t.Fatalf("load after Forget: %v", err)
		}
		if got := accountOf(t, v); !reflect.DeepEqual(got, redacted) || v.Version != 2 {
			t.Fatalf("after forgetting the customer: version %d, %+v; want %+v", v.Version, got, redacted)
		}
		v1, err := e.AggregateStateAt(ctx, ledgerService, id, engine.AggregateAt{Version: 1})
		if err != nil {
			t.Fatal(err)
		}
		if got := accountOf(t, v1); got.Name != shred.Redacted || got.Plan != "gold" || got.Balance != 0 {
			t.Errorf("version 1 after Forget = %+v, want the name redacted, the plan kept", got)
		}

		// The actor reloads: the next command works on the redacted state.
		v = send(t, e, id, &deposit{Amount: 5, Note: "after forget"}, 3)
		redacted.Balance, redacted.Deposits, redacted.Notes = 25, 3, append(redacted.Notes, "after forget")
		if got := accountOf(t, v); !reflect.DeepEqual(got, redacted) {
			t.Fatalf("after a deposit past the Forget: %+v, want %+v", got, redacted)
		}
		waitSnapshot(t, e.Store(), actors.AggregateStream(ledgerType, id), 3)
		noSecretsInSnapshot(t, e, id, secrets)
		for where, data := range storedBytes(t, s) {
			for _, secret := range secrets {
				if bytes.Contains(data, []byte(secret)) {
					t.Errorf("after Forget the store holds %q in the clear (in %s)", secret, where)
				}
			}
		}

		// Forget the account (the subject of the deposit notes) through
		// the engine API.
		if err := e.Forget(ctx, id); err != nil {
			t.Fatal(err)
		}
		v, err = e.AggregateStateAt(ctx, ledgerService, id, engine.AggregateAt{})
		if err != nil {
			t.Fatal(err)
		}
		redacted.Notes = []string{shred.Redacted, shred.Redacted, shred.Redacted}
		if got := accountOf(t, v); !reflect.DeepEqual(got, redacted) {
			t.Fatalf("after forgetting the account too: %+v, want %+v", got, redacted)
		}

		// Bad subjects are refused with 400; an unknown one is no error.
		if st, body := call(t, e, "POST", "/v1/subjects/"+strings.Repeat("x", 600)+"/forget", nil, nil, nil); st != 400 || !strings.Contains(body, "subject") {
			t.Errorf("POST forget of an overlong subject = %d %s, want 400", st, body)
		}
		if st, body := call(t, e, "POST", "/v1/subjects/nobody/forget", nil, nil, nil); st != 200 {
			t.Errorf("POST forget of an unknown subject = %d %s, want 200", st, body)
		}
	})
}

// noSecretsInSnapshot checks the account's snapshot state (which the
// store keeps base64-encoded, out of reach of a search of the raw bytes).
func noSecretsInSnapshot(t *testing.T, e *engine.Engine, id string, secrets []string) {
	t.Helper()
	snap, ok, err := e.Store().LoadSnapshot(context.Background(), actors.AggregateStream(ledgerType, id))
	if err != nil || !ok {
		t.Fatalf("LoadSnapshot = %t, %v", ok, err)
	}
	if !bytes.Contains(snap.State, []byte("sealed_state")) {
		t.Errorf("snapshot at v%d is not sealed: %.300s", snap.Version, snap.State)
	}
	for _, secret := range secrets {
		if bytes.Contains(snap.State, []byte(secret)) {
			t.Errorf("snapshot at v%d holds %q in the clear", snap.Version, secret)
		}
	}
}

func mapValues(m map[string][]byte) [][]byte {
	out := make([][]byte, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

type onboardInput struct {
	Account  string `json:"account"`
	Customer string `json:"customer"`
	Name     string `json:"name"`
}

type onboardState struct {
	onboardInput
	// NameCameBack records that the reply carried the name in the clear
	// (without keeping the name in the saga's state).
	NameCameBack bool `json:"name_came_back"`
}

// TestSealedReplyReachesSaga: the reply an aggregate sends a saga is the
// event, sealed in the commit's outbox like the event itself; the saga
// actor opens it, so the workflow sees the personal fields in the clear.
func TestSealedReplyReachesSaga(t *testing.T) {
	wf := workflows.New("ledger.Onboard", 1, func(in onboardInput) (onboardState, error) {
		return onboardState{onboardInput: in}, nil
	}).Send("open", workflows.CommandStep[onboardState]{
		Service: ledgerService,
		Command: func(s *onboardState) (workflows.Cmd, error) {
			return workflows.Cmd{Key: s.Account, Body: openAccount{Customer: s.Customer, Name: s.Name, Plan: "basic"}}, nil
		},
		OnReply: workflows.Reply(func(s *onboardState, r *accountOpened) error {
			s.NameCameBack = r.Name == s.Name
			return nil
		}),
		Timeout: 10 * time.Second,
	})
	dir := t.TempDir()
	e := newLedgerEngine(t, engine.Options{DataDir: dir}, append(ledgerTypes(), ledgerAggregate(0), wf)...)
	input, _ := json.Marshal(onboardInput{Account: "acc-saga", Customer: "cust-saga", Name: "Mary Ann Secret"})
	id, err := e.StartSaga(context.Background(), engine.StartRequest{Workflow: "ledger.Onboard", Input: input})
	if err != nil {
		t.Fatal(err)
	}
	s := waitSaga(t, e, id)
	var st onboardState
	if err := json.Unmarshal(s.State, &st); err != nil || s.Status != workflows.StatusCompleted || !st.NameCameBack {
		t.Fatalf("saga %s: %s, state %s (%v); want completed with the name seen in the reply", id, s.Status, s.State, err)
	}
	commits, err := e.Store().Load(context.Background(), actors.AggregateStream(ledgerType, "acc-saga"), 1)
	if err != nil || len(commits) != 1 || len(commits[0].Outbox) != 1 {
		t.Fatalf("ledger commits = %+v, %v; want one with one reply", commits, err)
	}
	reply := commits[0].Outbox[0]
	if reply.Kind != message.KindReply || !strings.Contains(reply.Header(shred.HeaderSealed), "name") || bytes.Contains(reply.Payload, []byte("Mary Ann")) {
		t.Errorf("stored reply %s %v: %s; want a reply with its name sealed", reply.Kind, reply.Headers, reply.Payload)
	}
}
