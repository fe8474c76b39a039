package dht

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// offsetClock is real time plus an adjustable offset.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// A local item put while no other node is reachable is republished once
// its refresh time comes, and confirmed when read back from the network.
func TestRepublishAndConfirm(t *testing.T) {
	reg := newTestRegistry(t, "alice")
	clock := &offsetClock{}
	cfg := testConfig(t, reg)
	cfg.Now = clock.now
	a := openNode(t, cfg)
	ctx := context.Background()
	if err := a.Put(ctx, "alice", "status", false, json.RawMessage(`"first"`), "alice", 7); err != nil {
		t.Fatal(err)
	}
	target := twproto.DHTTarget{N: "alice", R: "status", T: "s"}
	local := a.items.get(target.Hash())
	if len(local) != 1 || local[0].confirmed || local[0].localAdd == 0 {
		t.Fatalf("local item %+v", local)
	}
	others := []*Node{openNode(t, testConfig(t, reg, a.LocalAddr())), openNode(t, testConfig(t, reg, a.LocalAddr()))}
	waitFor(t, 5*time.Second, "peers confirmed", func() bool {
		_, c := a.table.size()
		return c == 2
	})
	clock.advance(2 * time.Minute) // past the 1 min ±10% unconfirmed refresh
	waitFor(t, 10*time.Second, "republished item on the other nodes", func() bool { return holders(others, target) == 2 })
	if got := getItems(t, others[0], "alice", "status", false); len(got) != 1 || got[0].P.Seq != 7 {
		t.Fatalf("got %+v", got)
	}
	getItems(t, a, "alice", "status", false)
	if it := a.items.get(target.Hash())[0]; !it.confirmed || time.Unix(0, it.nextRefresh).Sub(clock.now()) < 50*time.Minute {
		t.Fatalf("not confirmed after reading it back: confirmed=%v next in %v", it.confirmed, time.Unix(0, it.nextRefresh).Sub(clock.now()))
	}
}
