package dm

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"testing"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// TestInviteOfLocalUserToKnownGroupIsAnnounced replays the live run of
// testdata/engine/live_invite_local_member.json: alice's group has alice
// and bob; bob, on a daemon that also holds carol's key, invites carol
// (invite, then the member list). twisterd showed its local members
// "*** New member 'carol' invited by 'bob'"; bob's twgroupd showed nothing,
// because the invite, processed with carol's key, had already added her
// when the member list came.
func TestInviteOfLocalUserToKnownGroupIsAnnounced(t *testing.T) {
	b, err := os.ReadFile("../testdata/engine/live_invite_local_member.json")
	if err != nil {
		t.Fatal(err)
	}
	var live struct {
		Twisterd string `json:"twisterd_alice_getdirectmsgs"`
	}
	if err := json.Unmarshal(b, &live); err != nil {
		t.Fatal(err)
	}
	var reply struct {
		Result map[string][]struct{ Text, From string }
	}
	if err := json.Unmarshal([]byte(live.Twisterd), &reply); err != nil {
		t.Fatal(err)
	}
	var want string
	for _, msgs := range reply.Result {
		for _, m := range msgs {
			want = m.Text
		}
	}
	if want != "*** New member 'carol' invited by 'bob'" {
		t.Fatalf("recorded twisterd line %q", want)
	}

	ctx := context.Background()
	a, nb, _ := twoNodes(t)
	nb.user("carol")
	gk, _ := twproto.NewPrivateKey()
	aliasA, err := a.e.RegisterGroup(ctx, gk, "g")
	if err != nil {
		t.Fatal(err)
	}
	invite := twproto.EncodeGroupInvite("g", gk.WIF())
	if _, err := a.e.Send(ctx, "alice", 1, []Outgoing{
		{To: "alice", Payload: invite},
		{To: "bob", Payload: invite},
		{To: aliasA, Payload: twproto.EncodeGroupMembers([]string{"alice", "bob"})},
	}); err != nil {
		t.Fatal(err)
	}
	aliasB := nb.aliasOf(gk)
	if _, err := nb.e.Send(ctx, "bob", 1, []Outgoing{
		{To: "carol", Payload: invite},
		{To: aliasB, Payload: twproto.EncodeGroupMembers([]string{"alice", "bob", "carol"})},
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		n           *node
		local, alis string
	}{{nb, "bob", aliasB}, {a, "alice", aliasA}} {
		var lines []string
		for _, m := range c.n.thread(c.local, c.alis) {
			lines = append(lines, m.Text)
		}
		if n := countOf(lines, want); n != 1 {
			t.Errorf("%s's thread has %q %d times: %q", c.local, want, n, lines)
		}
	}
	if g := nb.group(aliasB); !slices.Equal(g.Members, []string{"alice", "bob", "carol"}) {
		t.Errorf("members on bob's node: %v", g.Members)
	}
	a.checkNoErrs()
	nb.checkNoErrs()
}

func countOf(lines []string, s string) int {
	n := 0
	for _, l := range lines {
		if l == s {
			n++
		}
	}
	return n
}
