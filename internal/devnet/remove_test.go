package devnet

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// groupInfo is getgroupinfo with twgroupd's move fields.
type groupInfo struct {
	Alias       string   `json:"alias"`
	Description string   `json:"description"`
	Members     []string `json:"members"`
	Moved       *struct {
		To         string   `json:"to"`
		By         string   `json:"by"`
		Removed    []string `json:"removed"`
		LeftBehind []string `json:"leftbehind"`
	} `json:"moved"`
	MovedFrom string `json:"movedfrom"`
}

func info(ctx context.Context, n *Node, alias string) (groupInfo, error) {
	var gi groupInfo
	err := decode(n.Call(ctx, "getgroupinfo", alias))(&gi)
	return gi, err
}

// nextK is NextK for any local user of n.
func nextK(ctx context.Context, t *testing.T, n *Node, user string) int64 {
	t.Helper()
	var have map[string]int64
	if err := decode(n.Call(ctx, "getlasthave", user, []string{user}))(&have); err != nil {
		t.Fatalf("%s getlasthave %s: %v", n.Name, user, err)
	}
	last, ok := have[user]
	if !ok {
		last = -1
	}
	return last + 1
}

func waitFor(ctx context.Context, t *testing.T, what string, f func() bool) {
	t.Helper()
	if err := poll(ctx, 60*time.Second, func() (bool, error) { return f(), nil }); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func threadHas(ctx context.Context, n *Node, user, alias, text string) bool {
	msgs, err := n.Thread(ctx, user, alias)
	return err == nil && slices.ContainsFunc(msgs, func(m Message) bool { return strings.Contains(m.Text, text) })
}

// TestDevnetRemoveMember: three `twgroupd serve` processes. alice removes
// carol through the CLI while bob invites dave (a second user of bob's
// node) to the old group; carol's node is down during the removal and bob's
// restarts right after it. bob's node moves to the new group; a message
// there reaches bob and dave, never carol's node; carol's later message to
// the old group still reaches alice and bob.
func TestDevnetRemoveMember(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var log strings.Builder
	nw, err := Start(ctx, Options{Binary: binary, Dir: t.TempDir(), Out: &log})
	if err != nil {
		t.Fatalf("start: %v\n%s", err, log.String())
	}
	defer nw.Stop()
	if _, err := nw.Script(ctx, 60*time.Second); err != nil {
		t.Fatalf("script: %v\n%s", err, log.String())
	}
	alice, bob, carol := nw.Nodes[0], nw.Nodes[1], nw.Nodes[2]
	oldA, oldB, oldC := alice.Alias(), bob.Alias(), carol.Alias()

	// dave: a second user on bob's node.
	for _, call := range [][]any{{"createwalletuser", "dave"}, {"sendnewusertransaction", "dave"}, {"follow", "dave", []string{"alice", "bob", "carol", "dave"}}} {
		if _, err := bob.Call(ctx, call[0].(string), call[1:]...); err != nil {
			t.Fatalf("%v: %v", call, err)
		}
	}

	carol.Stop()
	kB := nextK(ctx, t, bob, "bob")
	var cliOut []byte
	var cliErr, inviteErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		cmd := exec.Command(binary, "-datadir="+alice.Dir, // port and cookie from the datadir
			"removegroupmember", "alice", "auto", oldA, `["carol"]`)
		cliOut, cliErr = cmd.Output()
	})
	wg.Go(func() {
		_, inviteErr = bob.Call(ctx, "newgroupinvite", "bob", kB, oldB, []string{"dave"})
	})
	wg.Wait()
	if cliErr != nil {
		t.Fatalf("removegroupmember: %v", cliErr)
	}
	newA := strings.TrimSpace(string(cliOut))
	gi, err := info(ctx, alice, oldA)
	if err != nil || gi.Moved == nil || gi.Moved.To != newA || gi.Moved.By != "alice" || !slices.Equal(gi.Moved.Removed, []string{"carol"}) {
		t.Fatalf("alice's old group: %+v %v (cli printed %q)", gi, err, newA)
	}
	// Remove commits the new group's member list with its posts, so this is
	// who alice's removal kept: dave too when bob's invite reached alice's
	// node before the removal read the old group.
	giNewA, err := info(ctx, alice, newA)
	if err != nil {
		t.Fatal(err)
	}
	daveKept := slices.Contains(giNewA.Members, "dave")
	var groups []string
	if err := decode(alice.Call(ctx, "listgroups", "alice"))(&groups); err != nil || !slices.Equal(groups, []string{newA}) {
		t.Fatalf("alice's groups %v %v", groups, err)
	}
	if err := bob.Restart(ctx); err != nil {
		t.Fatal(err)
	}

	var newB string
	waitFor(ctx, t, "bob's node moves", func() bool {
		gi, err := info(ctx, bob, oldB)
		if err != nil || gi.Moved == nil {
			return false
		}
		newB = gi.Moved.To
		return true
	})
	if err := decode(bob.Call(ctx, "listgroups", "bob"))(&groups); err != nil || !slices.Equal(groups, []string{newB}) {
		t.Fatalf("bob's groups %v %v", groups, err)
	}
	if gi, _ := info(ctx, bob, newB); gi.MovedFrom != oldB || gi.Description != "devnet group, renamed" {
		t.Fatalf("bob's new group: %+v", gi)
	}
	// The race has three outcomes: bob's invite reached alice's node before
	// her removal read the group (dave was kept and invited with the
	// others: nothing left behind); it went to the old group before either
	// node heard of the other's post (dave is left behind there); or bob's
	// node heard of the move first and refused it.
	t.Logf("bob's invite to the old group: %v (dave kept by the removal: %v)", inviteErr, daveKept)
	if daveKept {
		if inviteErr != nil {
			t.Fatalf("alice's removal kept dave, but bob's invite was refused: %v", inviteErr)
		}
		for _, n := range []struct {
			n          *Node
			old, moved string
		}{{alice, oldA, newA}, {bob, oldB, newB}} {
			waitFor(ctx, t, n.n.Name+" has dave in the new group, none left behind", func() bool {
				gi, err := info(ctx, n.n, n.old)
				gn, err2 := info(ctx, n.n, n.moved)
				return err == nil && err2 == nil && gi.Moved != nil && len(gi.Moved.LeftBehind) == 0 && slices.Contains(gn.Members, "dave")
			})
		}
	} else if inviteErr == nil {
		for _, n := range []struct {
			n     *Node
			alias string
		}{{alice, oldA}, {bob, oldB}} {
			waitFor(ctx, t, n.n.Name+" shows dave left behind", func() bool {
				gi, err := info(ctx, n.n, n.alias)
				return err == nil && gi.Moved != nil && slices.Equal(gi.Moved.LeftBehind, []string{"dave"})
			})
		}
	} else if !strings.Contains(inviteErr.Error(), "has moved to") {
		t.Fatalf("bob's invite to the old group: %v", inviteErr)
	}
	if _, err := bob.Call(ctx, "newgroupinvite", "bob", nextK(ctx, t, bob, "bob"), newB, []string{"dave"}); err != nil {
		t.Fatalf("invite dave to the new group: %v", err)
	}
	waitFor(ctx, t, "alice's node sees dave in the new group", func() bool {
		gi, err := info(ctx, alice, newA)
		return err == nil && slices.Equal(gi.Members, []string{"alice", "bob", "dave"})
	})
	if gi, _ := info(ctx, alice, oldA); len(gi.Moved.LeftBehind) != 0 {
		t.Fatalf("alice's old group still leaves behind %v", gi.Moved.LeftBehind)
	}

	if err := carol.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	notice := "*** 'alice' removed 'carol' from the group."
	waitFor(ctx, t, "carol sees the notice", func() bool { return threadHas(ctx, carol, "carol", oldC, notice) })
	for _, n := range []struct {
		n     *Node
		alias string
	}{{alice, oldA}, {bob, oldB}} {
		// bob's node fetches alice's notice through the swarm on its own
		// time: carol having it says nothing about bob's node.
		waitFor(ctx, t, n.n.Name+" has the notice in the old group", func() bool {
			return threadHas(ctx, n.n, n.n.User, n.alias, notice)
		})
	}

	// A message to the new group reaches bob and dave, not carol.
	secret := "only for alice, bob and dave"
	if _, err := alice.Call(ctx, "newdirectmsg", "alice", nextK(ctx, t, alice, "alice"), newA, secret); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "bob gets the new group's message", func() bool { return threadHas(ctx, bob, "bob", newB, secret) })
	waitFor(ctx, t, "dave gets the new group's message", func() bool { return threadHas(ctx, bob, "dave", newB, secret) })

	// carol writes to the old group: alice and bob still read it there.
	later := "carol writes to the old group"
	if _, err := carol.Call(ctx, "newdirectmsg", "carol", nextK(ctx, t, carol, "carol"), oldC, later); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "alice gets carol's message", func() bool { return threadHas(ctx, alice, "alice", oldA, later) })
	waitFor(ctx, t, "bob gets carol's message", func() bool { return threadHas(ctx, bob, "bob", oldB, later) })

	// carol's node holds one group key, not moved, and no copy of secret.
	var all []string
	if err := decode(carol.Call(ctx, "listgroups", "", false, true))(&all); err != nil || !slices.Equal(all, []string{oldC}) {
		t.Fatalf("carol's node groups %v %v", all, err)
	}
	if gi, _ := info(ctx, carol, oldC); gi.Moved != nil {
		t.Fatalf("carol's old group moved: %+v", gi.Moved)
	}
	var res map[string][]Message
	q := []map[string]any{{"username": oldC}, {"username": "alice"}}
	if err := decode(carol.Call(ctx, "getdirectmsgs", "carol", 1000, q))(&res); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(res)
	if strings.Contains(string(raw), secret) {
		t.Fatalf("carol's node decrypted the new group: %s", raw)
	}
}
