package node

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/upstream"
)

// BenchmarkDMLatency measures one DM from newdirectmsg on alice's node to
// the message in getdirectmsgs on bob's node: two daemons on 127.0.0.1, RPC
// on both ends, the swarm's HAVE/REQUEST/PIECE in between.
func BenchmarkDMLatency(b *testing.B) {
	dir := b.TempDir()
	reg := filepath.Join(dir, "registry.txt")
	c1cfg := testConfig(b, filepath.Join(dir, "n1"), reg)
	n1, alice, stop1 := startNode(b, c1cfg)
	defer stop1()
	c2cfg := testConfig(b, filepath.Join(dir, "n2"), reg)
	c2cfg.Bootstrap = []string{n1.dht.LocalAddr().String()}
	_, bob, stop2 := startNode(b, c2cfg)
	defer stop2()

	call := func(c *upstream.Client, method string, params ...any) json.RawMessage {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		r, err := c.Call(ctx, method, params...)
		if err != nil {
			b.Fatalf("%s: %v", method, err)
		}
		return r
	}
	call(alice, "createwalletuser", "alice")
	call(alice, "sendnewusertransaction", "alice")
	call(bob, "createwalletuser", "bob")
	call(bob, "sendnewusertransaction", "bob")
	call(alice, "follow", "alice", []string{"alice", "bob"})
	call(bob, "follow", "bob", []string{"bob", "alice"})

	k := int64(1)
	send := func(text string) {
		call(alice, "newdirectmsg", "alice", k, "bob", text)
		k++
		deadline := time.Now().Add(30 * time.Second)
		for {
			var res map[string][]struct{ Text string }
			json.Unmarshal(call(bob, "getdirectmsgs", "bob", 1, []map[string]string{{"username": "alice"}}), &res)
			if msgs := res["alice"]; len(msgs) > 0 && msgs[len(msgs)-1].Text == text {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("%q never reached bob", text)
			}
			time.Sleep(time.Millisecond)
		}
	}
	send("warm-up: connects the swarms")
	for i := 0; b.Loop(); i++ {
		send(fmt.Sprintf("message %d", i))
	}
}
