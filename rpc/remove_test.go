package rpc

import (
	"strings"
	"testing"
)

// removegroupmember through the JSON-RPC of two daemons with real engines:
// alice removes bob from their group; the answer, getgroupinfo's extra
// fields, listgroups with and without include_moved, and the refusals.
func TestRemoveGroupMemberRPC(t *testing.T) {
	reg := transcriptRegistry(t)
	h := &hub{keys: reg, pieces: map[string]bool{}}
	node1, _ := realNode(t, h, reg)
	node2, _ := realNode(t, h, reg)
	resultOf(t, node1.call(t, req("importprivkey", aliceWIF, "alice")), nil)
	resultOf(t, node2.call(t, req("importprivkey", bobWIF, "bob")), nil)
	resultOf(t, node1.call(t, req("follow", "alice", []any{"alice", "bob"})), nil)
	resultOf(t, node2.call(t, req("follow", "bob", []any{"bob", "alice"})), nil)
	var old string
	resultOf(t, node1.call(t, req("creategroup", "pair")), &old)
	resultOf(t, node1.call(t, req("newgroupinvite", "alice", 1, old, []any{"alice", "bob"})), nil) // ks 1..3

	wantReply(t, node1.call(t, req("removegroupmember", "alice", 4, old, []any{"carol"})), 500,
		errReply(CodeInvalidParameter, "'carol' is not a member of group "+old))
	wantReply(t, node1.call(t, req("removegroupmember", "alice", 4, old, []any{"alice", "bob"})), 500,
		errReply(CodeInvalidParameter, "cannot remove every member of the group"))
	wantReply(t, node1.call(t, req("removegroupmember", "alice", 4, "*nosuchgr", []any{"bob"})), 500,
		errReply(CodeInternal, "unknown group alias '*nosuchgr'"))
	wantReply(t, node1.call(t, req("removegroupmember", "alice", 4, old, []any{})), 500,
		errReply(CodeInvalidParameter, "no member to remove"))

	// One invite (alice), one member list, one notice: ks 4, 5, 6, with
	// k null (the next free k).
	var moved string
	resultOf(t, node1.call(t, req("removegroupmember", "alice", nil, old, []any{"bob"})), &moved)
	if !strings.HasPrefix(moved, "*") || moved == old {
		t.Fatalf("new alias %q", moved)
	}
	wantReply(t, node1.call(t, req("newdirectmsg", "alice", 6, old, "k 6 is the notice")), 500,
		errReply(CodeInvalidParams, "k 6 already used by user 'alice'"))
	r := node1.call(t, req("getgroupinfo", old))
	want := `{"result":{"alias":"` + old + `","description":"pair","members":["alice","bob"],` +
		`"moved":{"to":"` + moved + `","by":"alice","removed":["bob"],"leftbehind":[]}},"error":null,"id":"t"}`
	if strings.TrimSpace(r.body) != want {
		t.Errorf("getgroupinfo old:\n%s\nwant\n%s", r.body, want)
	}
	r = node1.call(t, req("getgroupinfo", moved))
	if !strings.Contains(r.body, `"members":["alice"],"movedfrom":"`+old+`"}`) {
		t.Errorf("getgroupinfo new: %s", r.body)
	}
	var groups []string
	resultOf(t, node1.call(t, req("listgroups", "alice")), &groups)
	if strings.Join(groups, ",") != moved {
		t.Errorf("listgroups alice: %v", groups)
	}
	resultOf(t, node1.call(t, req("listgroups", "alice", false, true)), &groups)
	if len(groups) != 2 {
		t.Errorf("listgroups alice include_moved: %v", groups)
	}
	// bob's node never got the new key; its old group is not moved, and the
	// notice is in it.
	resultOf(t, node2.call(t, req("listgroups", "bob")), &groups)
	if len(groups) != 1 {
		t.Fatalf("bob's groups: %v", groups)
	}
	r = node2.call(t, req("getgroupinfo", groups[0]))
	if strings.Contains(r.body, "moved") {
		t.Errorf("bob's old group: %s", r.body)
	}
	r = node2.call(t, req("getdirectmsgs", "bob", 10, []any{map[string]any{"username": groups[0]}}))
	if !strings.Contains(r.body, `"text":"*** 'alice' removed 'bob' from the group.`) {
		t.Errorf("bob's old thread: %s", r.body)
	}
	wantReply(t, node1.call(t, req("removegroupmember", "alice", 7, old, []any{"bob"})), 500,
		errReply(CodeInvalidParameter, "group "+old+" has moved to "+moved+": use the new group"))
	r = node1.call(t, req("help", "removegroupmember"))
	if !strings.Contains(r.body, "removegroupmember <username> <k> <groupalias> '[<member>,...]'") {
		t.Errorf("help: %s", r.body)
	}
}
