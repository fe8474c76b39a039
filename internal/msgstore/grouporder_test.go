package msgstore

import (
	"math"
	"testing"
)

func FuzzDecodeNamedRank(f *testing.F) {
	f.Add(encodeNamedRank("alice/5/member/bob", Rank{Time: 1795483537, Author: "alice", K: 5}))
	f.Add(encodeNamedRank("", Rank{Time: math.MinInt64}))
	f.Add([]byte{0x05, 'a'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		name, r, ok := decodeNamedRank(b)
		if !ok {
			return
		}
		n2, r2, ok := decodeNamedRank(encodeNamedRank(name, r))
		if !ok || n2 != name || r2 != r {
			t.Fatalf("round trip: %q %+v -> %q %+v", name, r, n2, r2)
		}
	})
}

// The group-order records: a description takes only from a newer post, a
// local one never over a post's; the log comes back in rank order; a
// removed group message leaves the log and every conversation.
func TestGroupOrderRecords(t *testing.T) {
	s, _ := openTemp(t, nil)
	err := s.Update(func(tx *Tx) error {
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(tx.SetGroupDescription("*g", "local"))
		if set, err := tx.SetGroupDescriptionAt("*g", "new", Rank{10, "bob", 1}); !set || err != nil {
			t.Fatalf("newer: %v %v", set, err)
		}
		if set, _ := tx.SetGroupDescriptionAt("*g", "old", Rank{10, "alice", 9}); set {
			t.Error("an older post's description took")
		}
		must(tx.SetGroupDescription("*g", "local again"))
		if g, _ := tx.Group("*g"); g.Description != "new" {
			t.Errorf("description %q", g.Description)
		}
		must(tx.LogGroupMessage("*g", "b/2/msg", Message{Time: 20, From: "b", K: 2, Text: "second"}))
		must(tx.LogGroupMessage("*g", "a/7/msg", Message{Time: 10, From: "a", K: 7, Text: "first"}))
		must(tx.LogGroupMessage("*g", "a/7/msg", Message{Time: 10, From: "a", K: 7, Text: "again"}))
		log, err := tx.GroupLog("*g")
		must(err)
		if len(log) != 2 || log[0].Msg.Text != "first" || log[1].Msg.Text != "second" {
			t.Errorf("log %+v", log)
		}
		for _, u := range []string{"bob", "dave"} {
			if _, _, err := tx.AddMessage(u, "*g", "b/2/msg", Message{Time: 20, From: "b", K: 2, Text: "second"}); err != nil {
				return err
			}
		}
		must(tx.RemoveGroupMessage("*g", "b/2/msg"))
		log, _ = tx.GroupLog("*g")
		if len(log) != 1 || tx.HasConversation("bob", "*g") || tx.HasConversation("dave", "*g") {
			t.Errorf("after remove: log %+v", log)
		}
		must(tx.SetMemberAnnouncer("*g", "carol", Announcer{Rank: Rank{5, "a", 1}, Dedup: "a/1/member/carol"}))
		if a, ok := tx.MemberAnnouncer("*g", "carol"); !ok || a.Dedup != "a/1/member/carol" || a.Rank != (Rank{5, "a", 1}) {
			t.Errorf("announcer %+v %v", a, ok)
		}
		must(tx.SetGroupFirstInvite("*g", FirstInvite{Rank: Rank{3, "a", 0}, Member: "bob"}))
		if fi, ok := tx.GroupFirstInvite("*g"); !ok || fi.Member != "bob" || fi.Rank.K != 0 {
			t.Errorf("first invite %+v %v", fi, ok)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
