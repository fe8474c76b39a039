package groupchat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/dm/dmtest"
	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

// removeSetup is alice, bob and carol in one group made by alice (ks 1..4),
// on three hub nodes, plus dave on a fourth node, outside the group.
func removeSetup(t *testing.T) (hub *dmtest.Hub, a, b, c, d *node, alias string) {
	t.Helper()
	keys := dmtest.NewKeys(100)
	hub = dmtest.NewHub(keys)
	now := ticker(1_800_000_000)
	a = newNode(t, hub, keys, "alice", now)
	b = newNode(t, hub, keys, "bob", now)
	c = newNode(t, hub, keys, "carol", now)
	d = newNode(t, hub, keys, "dave", now)
	for _, n := range []*node{a, b, c, d} {
		n.follow("alice", "bob", "carol", "dave")
	}
	alias, err := a.gc.Create(context.Background(), "trio", "")
	must(t, err)
	must(t, a.gc.Invite(context.Background(), "alice", 1, alias, []string{"bob", "carol", "alice"}))
	return hub, a, b, c, d, alias
}

// info is getgroupinfo once the background retry has settled.
func (n *node) info(alias string) (Info, error) {
	n.t.Helper()
	n.settle()
	return n.gc.Info(alias)
}

// groups is listgroups for the node's user.
func (n *node) groups() []string {
	n.t.Helper()
	n.settle()
	l, err := n.gc.List(n.user, false)
	if err != nil {
		n.t.Fatal(err)
	}
	return l
}

// newGroupOf is the one listed group of n's user, which must differ from old.
func (n *node) newGroupOf(old string) string {
	n.t.Helper()
	l := n.groups()
	if len(l) != 1 || l[0] == old {
		n.t.Fatalf("%s: listgroups %v, want one group other than %s", n.user, l, old)
	}
	return l[0]
}

func hasText(lines []string, sub string) bool {
	return slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, sub) })
}

func TestRemoveMember(t *testing.T) {
	ctx := context.Background()
	hub, a, b, c, _, alias := removeSetup(t)
	aB, aC := b.alias(), c.alias()

	// Refusals consume no k.
	for _, tc := range []struct {
		alias   string
		removed []string
		want    error
	}{
		{"*nosuchgr", []string{"carol"}, ErrUnknownGroup},
		{alias, []string{"dave"}, ErrNotMember},
		{alias, []string{"carol", "bob", "alice"}, ErrRemoveAll},
		{alias, []string{}, ErrNoneToRemove},
	} {
		if _, err := a.gc.Remove(ctx, "alice", 5, tc.alias, tc.removed); !errors.Is(err, tc.want) {
			t.Errorf("remove %v from %s: %v, want %v", tc.removed, tc.alias, err, tc.want)
		}
	}
	if _, err := a.gc.Remove(ctx, "alice", 5, alias, []string{"dave"}); err == nil || err.Error() != "'dave' is not a member of group "+alias {
		t.Errorf("non-member error text: %v", err)
	}
	if n := len(hub.Pieces("alice")); n != 4 {
		t.Fatalf("refused removals published: alice has %d pieces", n)
	}

	// alice removes carol: invites to alice and bob (k 5, 6), the new
	// member list (k 7), the notice to the old group (k 8).
	newA, err := a.gc.Remove(ctx, "alice", 5, alias, []string{"carol"})
	must(t, err)
	if n := len(hub.Pieces("alice")); n != 8 || RemoveKs([]string{"alice", "bob", "carol"}, []string{"carol"}) != 4 {
		t.Fatalf("alice has %d pieces after the removal, want 8", n)
	}
	if newA == alias || !strings.HasPrefix(newA, "*") {
		t.Fatalf("new alias %q", newA)
	}
	newB := b.newGroupOf(aB)
	if got := a.newGroupOf(alias); got != newA {
		t.Fatalf("alice lists %s, want %s", got, newA)
	}
	// carol's node knows only the old group, not moved there.
	if l := c.groups(); !slices.Equal(l, []string{aC}) {
		t.Fatalf("carol's groups %v", l)
	}
	if as, _ := c.w.GroupAliases(); len(as) != 1 {
		t.Fatalf("carol's wallet holds %d group keys", len(as))
	}
	for _, n := range []struct {
		n        *node
		old, new string
	}{{a, alias, newA}, {b, aB, newB}} {
		info, err := n.n.info(n.old)
		if err != nil || info.Moved == nil || info.Moved.To != n.new || info.Moved.By != "alice" ||
			!slices.Equal(info.Moved.Removed, []string{"carol"}) || len(info.Moved.LeftBehind) != 0 {
			t.Fatalf("%s: old group info %+v %+v %v", n.n.user, info, info.Moved, err)
		}
		ni, err := n.n.info(n.new)
		if err != nil || ni.Description != "trio" || ni.MovedFrom != n.old || ni.Moved != nil ||
			!slices.Equal(ni.Members, []string{"alice", "bob"}) {
			t.Fatalf("%s: new group info %+v %v", n.n.user, ni, err)
		}
		if all, _ := n.n.gc.ListWithMoved(n.n.user); !slices.Equal(all, sortedPair(n.old, n.new)) {
			t.Fatalf("%s: listgroups with moved %v", n.n.user, all)
		}
		if all, _ := n.n.gc.List("", false); !slices.Equal(all, []string{n.new}) {
			t.Fatalf("%s: listgroups %v", n.n.user, all)
		}
	}
	if info, _ := c.info(aC); info.Moved != nil {
		t.Fatalf("carol's old group marked moved: %+v", info.Moved)
	}
	notice := "*** 'alice' removed 'carol' from the group. The group moved to a new group key"
	for _, n := range []struct {
		n   *node
		old string
	}{{a, alias}, {b, aB}, {c, aC}} {
		if !hasText(n.n.texts(n.old), notice) {
			t.Errorf("%s: no notice in the old group: %q", n.n.user, n.n.texts(n.old))
		}
	}
	if got := b.texts(newB); !hasText(got, "alice/5: *** Invited by 'alice' to group: trio") && !hasText(got, "alice/6: *** Invited by 'alice' to group: trio") {
		t.Errorf("bob's new thread: %q", got)
	}

	// A message to the new group reaches bob, not carol.
	_, err = a.e.NewDirectMsg(ctx, "alice", 9, newA, "without carol", false)
	must(t, err)
	if !hasText(b.texts(newB), "alice/9: without carol") {
		t.Errorf("bob did not get the new group's message: %q", b.texts(newB))
	}
	for _, th := range [][]string{c.texts(aC), c.texts(newB), c.texts(newA)} {
		if hasText(th, "without carol") {
			t.Fatal("carol read the new group")
		}
	}
	// carol's later message to the old group still reaches alice and bob.
	_, err = c.e.NewDirectMsg(ctx, "carol", 1, aC, "still here", false)
	must(t, err)
	if !hasText(a.texts(alias), "carol/1: still here") || !hasText(b.texts(aB), "carol/1: still here") {
		t.Errorf("carol's message to the old group lost: %q / %q", a.texts(alias), b.texts(aB))
	}

	// A moved group refuses to move again or take invites.
	if _, err := a.gc.Remove(ctx, "alice", 10, alias, []string{"bob"}); !errors.Is(err, ErrGroupMoved) {
		t.Errorf("second removal from the moved group: %v", err)
	}
	if err := b.gc.Invite(ctx, "bob", 1, aB, []string{"dave"}); !errors.Is(err, ErrGroupMoved) || !strings.Contains(err.Error(), newB) {
		t.Errorf("invite to the moved group: %v", err)
	}

	// Restarts keep all of it.
	a.restart()
	b.restart()
	c.restart()
	if info, _ := b.info(aB); info.Moved == nil || info.Moved.To != newB {
		t.Fatalf("bob's move lost on restart: %+v", info)
	}
	if got := b.newGroupOf(aB); got != newB {
		t.Fatalf("bob lists %s after restart", got)
	}
	_, err = b.e.NewDirectMsg(ctx, "bob", 1, newB, "after restart", false)
	must(t, err)
	if !hasText(a.texts(newA), "bob/1: after restart") {
		t.Errorf("alice missed bob's message after restarts: %q", a.texts(newA))
	}
	if as, _ := c.w.GroupAliases(); len(as) != 1 {
		t.Fatalf("carol's wallet holds %d group keys after restarts", len(as))
	}
	a.noErrs()
	b.noErrs()
	c.noErrs()
}

func sortedPair(x, y string) []string {
	s := []string{x, y}
	slices.Sort(s)
	return s
}

// A removal racing an invite: bob invites dave to the old group before his
// node hears of alice's move. dave ends up in the old group only; both
// alice's and bob's nodes show him as left behind, and bob's invite to the
// new group brings him over.
func TestRemoveRacesInvite(t *testing.T) {
	ctx := context.Background()
	_, a, b, c, d, alias := removeSetup(t)
	aB, aC := b.alias(), c.alias()

	b.net.Hold(true)
	newA, err := a.gc.Remove(ctx, "alice", 5, alias, []string{"carol"})
	must(t, err)
	must(t, b.gc.Invite(ctx, "bob", 1, aB, []string{"dave"})) // k 1 invite, k 2 list
	b.net.Hold(false)
	b.net.Flush(ctx, nil)

	newB := b.newGroupOf(aB)
	aD := d.alias()
	for _, n := range []struct {
		n   *node
		old string
	}{{a, alias}, {b, aB}} {
		info, err := n.n.info(n.old)
		if err != nil || info.Moved == nil || !slices.Equal(info.Moved.LeftBehind, []string{"dave"}) {
			t.Fatalf("%s: old group %+v %+v %v", n.n.user, info, info.Moved, err)
		}
	}
	// dave holds the old key only, and reads there that the group moved.
	if !hasText(d.texts(aD), "*** 'alice' removed 'carol' from the group") {
		t.Errorf("dave's old thread: %q", d.texts(aD))
	}
	if info, _ := d.info(aD); info.Moved != nil {
		t.Errorf("dave's node moved without an invite: %+v", info.Moved)
	}
	// carol's node saw the member list naming dave, and nothing new.
	if info, _ := c.info(aC); !slices.Contains(info.Members, "dave") || info.Moved != nil {
		t.Errorf("carol's view: %+v", info)
	}

	// The invite to the new group carries the move: dave's node moves too.
	must(t, b.gc.Invite(ctx, "bob", 3, newB, []string{"dave"}))
	newD := d.newGroupOf(aD)
	if info, _ := d.info(aD); info.Moved == nil || info.Moved.To != newD || info.Moved.By != "bob" {
		t.Fatalf("dave's old group after the new invite: %+v", info.Moved)
	}
	for _, n := range []struct {
		n        *node
		old, new string
	}{{a, alias, newA}, {b, aB, newB}} {
		info, _ := n.n.info(n.old)
		if len(info.Moved.LeftBehind) != 0 {
			t.Errorf("%s: still left behind %v", n.n.user, info.Moved.LeftBehind)
		}
		if ni, _ := n.n.info(n.new); !slices.Equal(ni.Members, []string{"alice", "bob", "dave"}) {
			t.Errorf("%s: new members %v", n.n.user, ni.Members)
		}
	}
	if all, _ := d.gc.ListWithMoved("dave"); len(all) != 2 {
		t.Errorf("dave's groups with moved: %v", all)
	}
}

// Two members move the same group at once: each node keeps the first move
// it processes; the other arrives as an ordinary new group.
func TestRemoveTwiceFirstWins(t *testing.T) {
	ctx := context.Background()
	_, a, b, _, _, alias := removeSetup(t)
	aB := b.alias()
	b.net.Hold(true)
	newA, err := a.gc.Remove(ctx, "alice", 5, alias, []string{"carol"})
	must(t, err)
	// bob has not seen alice's move: he removes carol too.
	newB, err := b.gc.Remove(ctx, "bob", 1, aB, []string{"carol"})
	must(t, err)
	b.net.Hold(false)
	b.net.Flush(ctx, nil)
	for _, n := range []struct {
		n        *node
		old, new string
	}{{a, alias, newA}, {b, aB, newB}} {
		var st msgstore.Move
		must(t, n.n.s.View(func(tx *msgstore.Tx) error { st = tx.GroupMove(n.old); return nil }))
		if st.To != n.new || st.By != n.n.user {
			t.Errorf("%s's node: move %+v, want its own to %s", n.n.user, st, n.new)
		}
		// The other move's group is there, as an ordinary group.
		if all, _ := n.n.gc.List(n.n.user, false); len(all) != 2 || !slices.Contains(all, n.new) {
			t.Errorf("%s: groups %v", n.n.user, all)
		}
	}
}

// Only a member of the old group moves it: dave, outside the group, sends
// bob an invite naming the old group's key id; bob's node takes it as an
// ordinary new group and the old one stays.
func TestMoveByNonMemberIgnored(t *testing.T) {
	ctx := context.Background()
	_, a, b, _, d, alias := removeSetup(t)
	aB := b.alias()
	oldKey, err := a.w.Key(alias)
	must(t, err)
	key, err := twproto.NewPrivateKey()
	must(t, err)
	mv := twproto.GroupMove{From: twproto.Hash160(oldKey.PubKey()), Removed: []string{"alice"}}
	_, err = d.e.Send(ctx, "dave", 1, []dm.Outgoing{{To: "bob", Payload: twproto.EncodeGroupInviteMoved("fake", key.WIF(), mv)}})
	must(t, err)
	if l := b.groups(); len(l) != 2 {
		t.Fatalf("bob's groups %v: the invite did not register", l)
	}
	if info, _ := b.info(aB); info.Moved != nil {
		t.Fatalf("a non-member moved bob's group: %+v", info.Moved)
	}
}

// The new member list is cut as newgroupinvite cuts it: alice and 20
// members, two removed: 19 invites, 2 list posts, 1 notice.
func TestRemoveChunksMemberList(t *testing.T) {
	ctx := context.Background()
	keys := dmtest.NewKeys(100)
	hub := dmtest.NewHub(keys)
	a := newNode(t, hub, keys, "alice", ticker(1_800_000_000))
	var names []string
	for i := range 20 {
		names = append(names, fmt.Sprintf("member%04d", i))
		k, err := twproto.NewPrivateKey()
		must(t, err)
		keys.Add(names[i], k.PubKey(), 1)
	}
	alias, err := a.gc.Create(ctx, "big", "")
	must(t, err)
	must(t, a.gc.Invite(ctx, "alice", 1, alias, append(slices.Clone(names), "alice"))) // ks 1..23
	removed := []string{"member0003", "member0017"}
	info, _ := a.info(alias)
	if got := RemoveKs(info.Members, removed); got != 19+2+1 {
		t.Fatalf("RemoveKs %d", got)
	}
	newA, err := a.gc.Remove(ctx, "alice", 24, alias, removed)
	must(t, err)
	pieces := hub.Pieces("alice")
	if len(pieces) != 23+22 || pieces[len(pieces)-1].K != 45 {
		t.Fatalf("%d pieces, last k %d", len(pieces), pieces[len(pieces)-1].K)
	}
	ni, _ := a.info(newA)
	want := remainingMembers(info.Members, removed)
	if !slices.Equal(ni.Members, want) || len(want) != 19 {
		t.Fatalf("new members %v", ni.Members)
	}
}

// A second user of the remover's node is invited like any member: erin,
// local to alice's node, moves with the group; bob is removed.
func TestRemoveInvitesLocalUsers(t *testing.T) {
	ctx := context.Background()
	keys := dmtest.NewKeys(100)
	hub := dmtest.NewHub(keys)
	now := ticker(1_800_000_000)
	a := newNode(t, hub, keys, "alice", now)
	b := newNode(t, hub, keys, "bob", now)
	ek, err := a.w.CreateUser("erin")
	must(t, err)
	keys.Add("erin", ek.PubKey(), 1)
	a.follow("alice", "bob", "erin")
	must(t, a.e.Follow(ctx, "erin", []string{"alice", "bob", "erin"}))
	b.follow("alice", "bob", "erin")
	alias, err := a.gc.Create(ctx, "local", "")
	must(t, err)
	must(t, a.gc.Invite(ctx, "alice", 1, alias, []string{"alice", "bob", "erin"}))
	newA, err := a.gc.Remove(ctx, "alice", 5, alias, []string{"bob"})
	must(t, err)
	if l, _ := a.gc.List("erin", false); !slices.Equal(l, []string{newA}) {
		t.Fatalf("erin's groups %v", l)
	}
	th, err := a.e.GetDirectMsgs("erin", 10, []msgstore.Query{msgstore.NewQuery(newA)})
	must(t, err)
	if len(th) != 1 || !slices.ContainsFunc(th[0].Messages, func(m msgstore.Message) bool {
		return m.Text == "*** Invited by 'alice' to group: local"
	}) {
		t.Fatalf("erin's new thread %+v", th)
	}
	if ni, _ := a.info(newA); !slices.Equal(ni.Members, []string{"alice", "erin"}) {
		t.Fatalf("new members %v", ni.Members)
	}
	if l := b.groups(); len(l) != 1 || l[0] == "" {
		t.Fatalf("bob's groups %v", l)
	}
	if as, _ := b.w.GroupAliases(); len(as) != 1 {
		t.Fatalf("bob's node holds %d group keys", len(as))
	}
}

// k = dm.AutoK: the removal takes the next free ks (after the invite's
// 1..4), the same four as with an explicit k.
func TestRemoveAutoK(t *testing.T) {
	ctx := context.Background()
	hub, a, b, _, _, alias := removeSetup(t)
	aB := b.alias()
	newA, err := a.gc.Remove(ctx, "alice", dm.AutoK, alias, []string{"carol"})
	must(t, err)
	pieces := hub.Pieces("alice")
	if len(pieces) != 8 || pieces[len(pieces)-1].K != 8 {
		t.Fatalf("%d pieces, last k %d", len(pieces), pieces[len(pieces)-1].K)
	}
	if next, err := a.e.NextK("alice"); err != nil || next != 9 {
		t.Fatalf("next k %d %v", next, err)
	}
	if info, _ := a.info(alias); info.Moved == nil || info.Moved.To != newA {
		t.Fatalf("alice's old group %+v", info.Moved)
	}
	if info, _ := b.info(aB); info.Moved == nil {
		t.Fatal("bob's node did not move")
	}
	before, _ := a.w.GroupAliases()
	if _, err := a.gc.Remove(ctx, "alice", -2, newA, []string{"bob"}); !errors.Is(err, dm.ErrNegativeK) {
		t.Fatalf("negative k: %v", err)
	}
	if after, _ := a.w.GroupAliases(); len(after) != len(before) {
		t.Fatalf("a refused k made a group key: %v", after)
	}
}
