package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// rawMongo measures inserts through the MongoDB Go driver directly, with
// write concern majority (store/mongo's default) and documents shaped like
// store/mongo's commit documents: a natural string _id and about 1 KiB of
// data.
type rawMongo struct {
	uri string
	db  string
	dur time.Duration
}

func (r rawMongo) run(ctx context.Context) *MongoResult {
	res := &MongoResult{Status: StatusOK}
	client, err := mongo.Connect(options.Client().ApplyURI(r.uri).
		SetServerSelectionTimeout(10 * time.Second).SetWriteConcern(writeconcern.Majority()))
	if err != nil {
		res.Status = unavailable(fmt.Errorf("connect to MongoDB: %w", err))
		return res
	}
	defer func() { _ = client.Disconnect(context.WithoutCancel(ctx)) }()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = client.Ping(pctx, nil)
	cancel()
	if err != nil {
		res.Status = unavailable(fmt.Errorf("ping MongoDB: %w", err))
		return res
	}
	res.Server = serverName(ctx, client)
	db := client.Database(r.db)
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = db.Drop(dctx)
	}()

	type run struct {
		coll     string
		batch    int
		inFlight int
		out      *float64
	}
	for _, m := range []run{
		{"single1", 1, 1, &res.Single1},
		{"single16", 1, 16, &res.Single16},
		{"batch1", 100, 1, &res.Batch1},
		{"batch4", 100, 4, &res.Batch4},
	} {
		rate, err := insertRate(ctx, db.Collection(m.coll), m.batch, m.inFlight, r.dur)
		if err != nil {
			res.Status = failed(fmt.Errorf("%s: %w", m.coll, err))
			return res
		}
		*m.out = rate
	}
	return res
}

// serverName is the server's version, and "FerretDB" with its version
// when it is FerretDB.
func serverName(ctx context.Context, c *mongo.Client) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var info bson.M
	if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		return ""
	}
	if v, ok := info["ferretdbVersion"]; ok {
		if v == "unknown" || v == "" {
			return fmt.Sprintf("FerretDB, MongoDB %v wire", info["version"])
		}
		return fmt.Sprintf("FerretDB %v, MongoDB %v wire", v, info["version"])
	}
	return fmt.Sprintf("MongoDB %v", info["version"])
}

// insertRate inserts documents in batches of batch (1: InsertOne) from
// inFlight goroutines for a short warm-up and then for d, and returns
// documents/s.
func insertRate(ctx context.Context, coll *mongo.Collection, batch, inFlight int, d time.Duration) (float64, error) {
	data := []byte(strings.Repeat("z", 1000))
	warm := min(d/5, time.Second)
	start := time.Now()
	from, to := start.Add(warm), start.Add(warm+d)
	var (
		seq, docs atomic.Int64
		mu        sync.Mutex
		fail      error
		wg        sync.WaitGroup
	)
	doc := func() bson.D {
		n := seq.Add(1)
		return bson.D{{Key: "_id", Value: fmt.Sprintf("agg/bench/%012d|%020d", n, 1)}, {Key: "s", Value: "agg/bench"}, {Key: "v", Value: n}, {Key: "d", Value: data}}
	}
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				t0 := time.Now()
				if !t0.Before(to) {
					return
				}
				ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
				var err error
				if batch == 1 {
					_, err = coll.InsertOne(ictx, doc())
				} else {
					ds := make([]any, batch)
					for i := range ds {
						ds[i] = doc()
					}
					_, err = coll.InsertMany(ictx, ds, options.InsertMany().SetOrdered(false))
				}
				cancel()
				if err != nil {
					mu.Lock()
					fail = fmt.Errorf("insert into %s: %w", coll.Name(), err)
					mu.Unlock()
					return
				}
				if t1 := time.Now(); !t0.Before(from) && t1.Before(to) {
					docs.Add(int64(batch))
				}
			}
		}()
	}
	wg.Wait()
	if fail != nil {
		return 0, fail
	}
	return float64(docs.Load()) / d.Seconds(), nil
}
