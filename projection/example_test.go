package projection_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/projection"
	"github.com/sagaflow/sagaflow/readmodel"
	rmembedded "github.com/sagaflow/sagaflow/readmodel/embedded"
)

type ClassificationUpdated struct {
	Class string `json:"class"`
}

type Class struct {
	Class     string   `json:"class"`
	Customers []string `json:"customers"`
}

// The README's projection: the customers of each class. Apply is what
// the runner calls for each delivered event; a duplicate changes nothing.
func ExampleOn() {
	p := projection.New("customers.byClass")
	projection.On(p, func(ctx context.Context, tx readmodel.Tx, e *ClassificationUpdated, m projection.Meta) error {
		doc, _, err := projection.Get[Class](ctx, tx, e.Class)
		if err != nil {
			return err
		}
		doc.Class = e.Class
		doc.Customers = append(doc.Customers, m.Key)
		return projection.Put(tx, e.Class, doc)
	})

	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	rm, err := rmembedded.Open(filepath.Join(dir, "readmodels.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rm.Close()
	ctx := context.Background()
	for _, id := range []string{"c-1", "c-2", "c-2"} {
		env := message.Envelope{Type: "crm.public.CustomerClassificationUpdated.v1", Key: id, Sequence: 1}
		res, err := p.Apply(ctx, rm, "agg/crm.Customer/"+id, env, &ClassificationUpdated{Class: "B"})
		fmt.Println(id, "applied:", res.Applied, err)
	}
	doc, _ := rm.Get(ctx, "customers.byClass", "B")
	fmt.Printf("%s (version %d)\n", doc.Body, doc.Version)
	// Output:
	// c-1 applied: true <nil>
	// c-2 applied: true <nil>
	// c-2 applied: false <nil>
	// {"class":"B","customers":["c-1","c-2"]} (version 2)
}
