package dm

import (
	"context"
	"testing"

	"github.com/twgroupd/twgroupd/dm/dmtest"
	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

// FuzzReceivePayload seals arbitrary plaintexts to bob and to bob's group,
// publishes them as alice's DM posts and lets bob's engine process them:
// whatever the bytes, the engine must not panic or fail, and must store at
// most one message per post per conversation.
func FuzzReceivePayload(f *testing.F) {
	for _, seed := range [][]byte{
		twproto.EncodeMessage("hello", "bob"),
		twproto.EncodeGroupInvite("desc", "KzTAkjGZu9xbVgeFyuWkcR4A3X7U8cvigCsBYdKoZrx6p4Mxc8m8"),
		twproto.EncodeGroupInvite("desc", "not a wif"),
		twproto.EncodeGroupInviteMoved("desc", "KzTAkjGZu9xbVgeFyuWkcR4A3X7U8cvigCsBYdKoZrx6p4Mxc8m8", twproto.GroupMove{Removed: []string{"carol"}}),
		twproto.EncodeGroupMembers([]string{"alice", "", "bob", "carol"}),
		[]byte("old format text"),
		[]byte("d12:group_invitei5ee"),
		[]byte("d13:group_membersle3:msg1:x2:to0:e"),
		[]byte("d3:msgi1e2:to3:bobe"),
		{},
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	keys := dmtest.NewKeys(1 << 40) // room for any k the fuzzer reaches
	hub := dmtest.NewHub(keys)
	c := newClock(1_800_000_000)
	alice := newNodeSync(f, hub, keys, "alice", c, false)
	bob := newNodeSync(f, hub, keys, "bob", c, false)
	alice.user("alice")
	bob.user("bob")
	bob.follow("bob", "bob", "alice")
	ctx := context.Background()
	alias, err := bob.e.RegisterGroup(ctx, mustKey(f), "fuzz group")
	if err != nil {
		f.Fatal(err)
	}
	if err := bob.s.Update(func(tx *msgstore.Tx) error { _, err := tx.AddGroupMember(alias, "bob"); return err }); err != nil {
		f.Fatal(err)
	}
	ak, _ := alice.w.Key("alice")
	var k int64
	f.Fuzz(func(t *testing.T, plain []byte, toGroup bool) {
		if len(plain) > 1500 {
			return
		}
		to := "bob"
		if toGroup {
			to = alias
		}
		pk, err := bob.w.Key(to)
		if err != nil {
			t.Fatal(err)
		}
		env, err := twproto.Encrypt(pk.PubKey(), plain)
		if err != nil {
			t.Fatal(err)
		}
		k++
		raw, err := twproto.BuildDMPost(ak, "alice", k, 999, 1_800_000_000+k, env)
		if err != nil {
			return // too big for a post
		}
		if err := hub.Add(ctx, "alice", k, raw); err != nil {
			t.Fatal(err)
		}
		for _, err := range bob.net.Errs() {
			t.Fatalf("engine error: %v", err)
		}
		// Processing the same post again stores nothing new.
		before := countAll(t, bob)
		p, _ := twproto.DecodePost(raw)
		if err := bob.e.process(ctx, p, false); err != nil {
			t.Fatal(err)
		}
		if after := countAll(t, bob); after != before {
			t.Fatalf("reprocessing stored %d more messages", after-before)
		}
	})
}

func mustKey(tb testing.TB) *twproto.PrivateKey {
	k, err := twproto.NewPrivateKey()
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func countAll(t *testing.T, n *node) int {
	total := 0
	n.s.View(func(tx *msgstore.Tx) error {
		for _, u := range tx.Users() {
			for _, peer := range tx.Conversations(u) {
				ms, err := tx.Messages(u, msgstore.NewQuery(peer), 1<<30)
				if err != nil {
					t.Fatal(err)
				}
				total += len(ms)
			}
		}
		return nil
	})
	return total
}
