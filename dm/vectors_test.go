package dm

import (
	"context"
	"encoding/hex"
	"reflect"
	"slices"
	"testing"

	"github.com/twgroupd/twgroupd/dm/dmtest"
	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

const groupDesc = "Test group chat (alice+bob)"

// vectorNet is the transcript's private network: alice and bob registered,
// best height 12 (spec transcript, getblockcount).
func vectorNet(t *testing.T) (*dmtest.Keys, *dmtest.Hub, vectorKeys) {
	vk := loadVectorKeys(t)
	keys := dmtest.NewKeys(12)
	for _, u := range []string{"alice", "bob"} {
		pub, err := hex.DecodeString(vk.Users[u].Pub)
		if err != nil {
			t.Fatal(err)
		}
		keys.Add(u, pub, 1)
	}
	return keys, dmtest.NewHub(keys), vk
}

func addVectors(t *testing.T, hub *dmtest.Hub, names ...string) {
	t.Helper()
	for _, name := range names {
		v := loadVector(t, name)
		if err := hub.Add(context.Background(), v.Author, v.K, v.raw(t)); err != nil {
			t.Fatal(err)
		}
	}
}

func compareWithTranscript(t *testing.T, n *node, local string, tr transcript, alias string) {
	t.Helper()
	for peer, want := range tr.Threads {
		ourPeer := peer
		if peer == tr.Info.Alias {
			ourPeer = alias
		}
		got := n.thread(local, ourPeer)
		checkIDs(t, got)
		if g, w := byTime(strip(got)), byTime(want); !reflect.DeepEqual(g, w) {
			t.Errorf("%s thread %s:\n got %+v\nwant %+v", local, peer, g, w)
		}
	}
	g := n.group(alias)
	if g.Description != tr.Info.Description || !slices.Equal(g.Members, tr.Info.Members) {
		t.Errorf("group %s = %q %v, want %q %v", alias, g.Description, g.Members, tr.Info.Description, tr.Info.Members)
	}
}

// TestVectorsReplayBob replays, into bob's node, the pieces twisterd
// produced in the transcript: alice's DM, bob's copy_self pair, alice's
// invites (k=3 to herself, k=4 to bob), member list (k=5) and group message
// (k=6); then bob sends his group message. The end state must be what
// twisterd's node2 showed. In "invite-last" the member list and message
// arrive before the invite, as they did on node2 (which needed a manual
// rescandirectmsgs); twgroupd gets there on its own.
func TestVectorsReplayBob(t *testing.T) {
	orders := map[string][]string{
		"in-order":    {"dm_alice_k2", "dm_bob_k2", "dm_bob_k3", "group_invite_alice_k3", "group_invite_alice_k4", "group_members_alice_k5", "group_msg_alice_k6"},
		"invite-last": {"group_members_alice_k5", "group_msg_alice_k6", "dm_bob_k3", "dm_alice_k2", "dm_bob_k2", "group_invite_alice_k3", "group_invite_alice_k4"},
	}
	for name, order := range orders {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			keys, hub, vk := vectorNet(t)
			bob := newNode(t, hub, keys, "node2", newClock(1795483000))
			bob.importUser("bob", vk.Users["bob"].WIF)
			bob.follow("bob", "bob", "alice")
			addVectors(t, hub, order...)

			groupKey, err := twproto.ParseWIF(vk.Users["group"].WIF)
			if err != nil {
				t.Fatal(err)
			}
			alias := bob.aliasOf(groupKey)
			bob.clock.set(1795483581) // 01:26:21, bob's newdirectmsg to the group
			if _, err := bob.e.NewDirectMsg(ctx, "bob", 4, alias, "Hi group, bob here", false); err != nil {
				t.Fatal(err)
			}
			bob.checkNoErrs()
			compareWithTranscript(t, bob, "bob", loadTranscript(t, "transcript_node2.json"), alias)
			// The live feed saw every stored message bob did not send.
			bob.mu.Lock()
			defer bob.mu.Unlock()
			if len(bob.events) != 4 {
				t.Errorf("events: %+v", bob.events)
			}
			// Only the pieces for alice's key stay pending: her self-invite
			// and bob's copy to her.
			var pending []msgstore.PostRef
			bob.s.View(func(tx *msgstore.Tx) error { pending = tx.Pending(); return nil })
			if want := []msgstore.PostRef{{Author: "bob", K: 3}, {Author: "alice", K: 3}}; !slices.Equal(pending, want) {
				t.Errorf("pending %v, want %v", pending, want)
			}
		})
	}
}

// TestVectorsReplayAlice replays the transcript on alice's node: her DM to
// bob, bob's copy_self pair, creategroup with the vectors' key, her own
// invite and member-list pieces, her group message and bob's.
func TestVectorsReplayAlice(t *testing.T) {
	ctx := context.Background()
	keys, hub, vk := vectorNet(t)
	alice := newNode(t, hub, keys, "node1", newClock(1795483000))
	alice.importUser("alice", vk.Users["alice"].WIF)
	alice.follow("alice", "alice", "bob")

	alice.clock.set(1795483300)
	if _, err := alice.e.NewDirectMsg(ctx, "alice", 2, "bob", "Hi Bob, this is a secret DM from Alice", false); err != nil {
		t.Fatal(err)
	}
	addVectors(t, hub, "dm_bob_k2", "dm_bob_k3")
	groupKey, err := twproto.ParseWIF(vk.Users["group"].WIF)
	if err != nil {
		t.Fatal(err)
	}
	alias, err := alice.e.RegisterGroup(ctx, groupKey, groupDesc)
	if err != nil || alias == "" {
		t.Fatalf("RegisterGroup: %q %v", alias, err)
	}
	addVectors(t, hub, "group_invite_alice_k3", "group_invite_alice_k4", "group_members_alice_k5")
	alice.clock.set(1795483558)
	if _, err := alice.e.NewDirectMsg(ctx, "alice", 6, alias, "Hello group! (alice)", false); err != nil {
		t.Fatal(err)
	}
	addVectors(t, hub, "group_msg_bob_k4")
	alice.checkNoErrs()
	compareWithTranscript(t, alice, "alice", loadTranscript(t, "transcript_node1.json"), alias)
}
