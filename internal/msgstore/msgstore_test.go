package msgstore

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTemp(tb testing.TB, opts *Options) (*Store, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "messages.db")
	s, err := Open(path, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s, path
}

func add(t *testing.T, s *Store, user, peer, dedup string, m Message) (Message, bool) {
	t.Helper()
	var got Message
	var added bool
	err := s.Update(func(tx *Tx) error {
		var err error
		got, added, err = tx.AddMessage(user, peer, dedup, m)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, added
}

func query(t *testing.T, s *Store, user string, q Query, count int) []Message {
	t.Helper()
	var out []Message
	err := s.View(func(tx *Tx) error {
		var err error
		out, err = tx.Messages(user, q, count)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func ids(ms []Message) []int64 {
	var out []int64
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func TestMessagesQueryArithmetic(t *testing.T) {
	s, _ := openTemp(t, nil)
	for i := range 10 {
		m, added := add(t, s, "alice", "bob", fmt.Sprintf("bob/%d", i), Message{Time: int64(1000 + i), Text: fmt.Sprint("m", i), From: "bob", K: int64(i)})
		if !added || m.ID != int64(i) {
			t.Fatalf("add %d: id %d added %v", i, m.ID, added)
		}
	}
	if _, added := add(t, s, "alice", "bob", "bob/3", Message{Text: "dup"}); added {
		t.Fatal("duplicate dedup key stored")
	}
	// Cases follow twisterd's arithmetic (spec §8.4) on ids 0..9.
	cases := []struct {
		q     Query
		count int
		want  []int64
	}{
		{NewQuery("bob"), 3, []int64{7, 8, 9}},
		{NewQuery("bob"), 100, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{Query{Username: "bob", MaxID: 4, SinceID: -1}, 2, []int64{3, 4}},
		{Query{Username: "bob", MaxID: math.MaxInt32, SinceID: 7}, 100, []int64{8, 9}},
		{Query{Username: "bob", MaxID: math.MaxInt32, SinceID: 9}, 100, nil},
		{Query{Username: "bob", MaxID: -1, SinceID: -1}, 100, nil},
		{Query{Username: "bob", MaxID: 0, SinceID: -1}, 100, []int64{0}},
		{NewQuery("bob"), 0, nil},
		{NewQuery("carol"), 10, nil},
	}
	for _, c := range cases {
		got := ids(query(t, s, "alice", c.q, c.count))
		if !slices.Equal(got, c.want) {
			t.Errorf("%+v count %d: ids %v, want %v", c.q, c.count, got, c.want)
		}
	}
	ms := query(t, s, "alice", Query{Username: "bob", MaxID: 5, SinceID: 4}, 1)
	if len(ms) != 1 || ms[0].Text != "m5" || ms[0].Time != 1005 || ms[0].From != "bob" || ms[0].K != 5 || ms[0].FromMe {
		t.Fatalf("message 5 = %+v", ms)
	}
}

func TestDropKeepsIDsAndSurvivesReopen(t *testing.T) {
	s, path := openTemp(t, nil)
	for i := range 3 {
		add(t, s, "bob", "*grp", fmt.Sprint(i), Message{Time: int64(i), Text: "x", K: -1, FromMe: true, From: "bob"})
	}
	err := s.Update(func(tx *Tx) error {
		if err := tx.SetGroupDescription("*grp", "desc"); err != nil {
			return err
		}
		if _, err := tx.AddGroupMember("*grp", "bob"); err != nil {
			return err
		}
		if err := tx.Follow("bob", "bob", "alice"); err != nil {
			return err
		}
		if err := tx.SetIgnored("bob", "*grp", true); err != nil {
			return err
		}
		if _, err := tx.PutPost(PostRef{"alice", 7}, []byte("raw7")); err != nil {
			return err
		}
		if err := tx.SetPending(PostRef{"alice", 7}, true); err != nil {
			return err
		}
		return tx.DropConversation("bob", "*grp")
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := query(t, s, "bob", NewQuery("*grp"), 10); len(got) != 0 {
		t.Fatalf("history after drop: %v", got)
	}
	// The dedup key went with the history, the id counter did not.
	m, added := add(t, s, "bob", "*grp", "0", Message{Text: "again"})
	if !added || m.ID != 3 {
		t.Fatalf("after drop: id %d added %v", m.ID, added)
	}
	s.Close()

	s2, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	err = s2.View(func(tx *Tx) error {
		g, ok := tx.Group("*grp")
		if !ok || g.Description != "desc" || !slices.Equal(g.Members, []string{"bob"}) {
			t.Errorf("group = %+v %v", g, ok)
		}
		if f := tx.Following("bob"); !slices.Equal(f, []string{"alice", "bob"}) {
			t.Errorf("following = %v", f)
		}
		if !tx.IsIgnored("bob", "*grp") || !tx.HasUser("bob") || tx.HasUser("carol") {
			t.Error("ignore/user flags lost")
		}
		if raw, ok := tx.Post(PostRef{"alice", 7}); !ok || string(raw) != "raw7" {
			t.Errorf("post = %q %v", raw, ok)
		}
		if p := tx.Pending(); !slices.Equal(p, []PostRef{{"alice", 7}}) {
			t.Errorf("pending = %v", p)
		}
		if !tx.HasConversation("bob", "*grp") {
			t.Error("conversation lost")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := query(t, s2, "bob", NewQuery("*grp"), 10); len(got) != 1 || got[0].ID != 3 || got[0].Text != "again" {
		t.Fatalf("after reopen: %+v", got)
	}
}

func TestPostKeysOrderAndPrefix(t *testing.T) {
	s, _ := openTemp(t, nil)
	err := s.Update(func(tx *Tx) error {
		for _, r := range []PostRef{{"al", 3}, {"alice", 10}, {"alice", 2}, {"alice", -1}, {"alicex", 1}} {
			if _, err := tx.PutPost(r, []byte(fmt.Sprint(r.Author, r.K))); err != nil {
				return err
			}
		}
		isNew, err := tx.PutPost(PostRef{"alice", 2}, []byte("other"))
		if isNew || err != nil {
			t.Errorf("second PutPost: %v %v", isNew, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var ks []int64
	s.View(func(tx *Tx) error {
		return tx.PostsBy("alice", func(k int64, raw []byte) error {
			ks = append(ks, k)
			if string(raw) != fmt.Sprint("alice", k) {
				t.Errorf("raw %q for k %d", raw, k)
			}
			return nil
		})
	})
	if !slices.Equal(ks, []int64{-1, 2, 10}) {
		t.Fatalf("PostsBy(alice) ks = %v", ks)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	_, path := openTemp(t, nil)
	_, err := Open(path, &Options{OpenTimeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second open: %v", err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add(encodeMessage(Message{Time: 1795483537, Text: "*** New member", From: "alice", K: 5}))
	f.Add(encodeMessage(Message{Time: -1, K: -1, FromMe: true}))
	f.Add([]byte{1, 0, 0x80})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			return
		}
		again, err := decodeMessage(encodeMessage(m))
		if err != nil || again != m {
			t.Fatalf("round trip: %+v -> %+v, %v", m, again, err)
		}
	})
}

func FuzzParsePostKey(f *testing.F) {
	f.Add(postKey(PostRef{"alice", 5}))
	f.Add([]byte{0xff})
	// Length 2^64-8: wraps to "8 bytes left" if added carelessly.
	f.Add([]byte{0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		ref, ok := parsePostKey(b)
		if ok && string(postKey(ref)) != string(b) {
			t.Fatalf("%q parsed as %+v", b, ref)
		}
	})
}

// BenchmarkLast100Of100k: getdirectmsgs for the newest 100 messages of a
// 100,000-message conversation.
func BenchmarkLast100Of100k(b *testing.B) {
	s, _ := openTemp(b, &Options{NoSync: true})
	const n = 100_000
	err := s.Update(func(tx *Tx) error {
		for i := range n {
			_, _, err := tx.AddMessage("alice", "bob", fmt.Sprintf("bob/%d", i), Message{Time: int64(1795483537 + i), Text: "a typical direct message of some forty bytes", From: "bob", K: int64(i)})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		err := s.View(func(tx *Tx) error {
			ms, err := tx.Messages("alice", NewQuery("bob"), 100)
			if len(ms) != 100 || ms[99].ID != n-1 {
				b.Fatalf("got %d messages", len(ms))
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStoreMessage: one message appended per committed transaction
// (fsync off, to measure the store, not the disk), and the file bytes each
// stored message costs.
func BenchmarkStoreMessage(b *testing.B) {
	s, path := openTemp(b, &Options{NoSync: true})
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		err := s.Update(func(tx *Tx) error {
			_, _, err := tx.AddMessage("alice", "bob", fmt.Sprintf("bob/%d", i), Message{Time: int64(1795483537 + i), Text: "a typical direct message of some forty bytes", From: "bob", K: int64(i)})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	if st, err := os.Stat(path); err == nil && i > 1000 {
		b.ReportMetric(float64(st.Size())/float64(i), "file-B/msg")
	}
}

// TestPendingBounds: the pending set keeps at most Max entries and none
// that arrived before MinTime, dropping the oldest arrivals; unmarking or
// deleting a post removes it from both indexes; a retry scan resumes from
// a queue position.
func TestPendingBounds(t *testing.T) {
	s, path := openTemp(t, nil)
	lim := PendingLimits{Max: 3}
	err := s.Update(func(tx *Tx) error {
		for k := range int64(5) {
			lim.Now = 100 + k
			if _, err := tx.PutPost(PostRef{"bob", k}, []byte("x")); err != nil {
				return err
			}
			if err := tx.MarkPending(PostRef{"bob", k}, lim); err != nil {
				return err
			}
		}
		return tx.MarkPending(PostRef{"bob", 3}, lim) // already pending: stays
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []PostRef{{"bob", 2}, {"bob", 3}, {"bob", 4}}
	check := func(want []PostRef) {
		t.Helper()
		_ = s.View(func(tx *Tx) error {
			if p := tx.Pending(); !slices.Equal(p, want) || tx.PendingCount() != len(want) {
				t.Fatalf("pending %v (count %d), want %v", p, tx.PendingCount(), want)
			}
			return nil
		})
	}
	check(want)
	// Age: an entry from time 110 with MinTime 104 evicts those before 104.
	err = s.Update(func(tx *Tx) error {
		return tx.MarkPending(PostRef{"carol", 1}, PendingLimits{Now: 110, MinTime: 104, Max: 3})
	})
	if err != nil {
		t.Fatal(err)
	}
	check([]PostRef{{"bob", 4}, {"carol", 1}})
	err = s.Update(func(tx *Tx) error {
		if err := tx.SetPending(PostRef{"bob", 4}, false); err != nil {
			return err
		}
		return tx.DeletePost(PostRef{"carol", 1})
	})
	if err != nil {
		t.Fatal(err)
	}
	check(nil)

	// Resume a scan from a queue position, across a reopen.
	err = s.Update(func(tx *Tx) error {
		for k := range int64(4) {
			if err := tx.MarkPending(PostRef{"dave", k}, PendingLimits{Now: 200}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var pos uint64
	_ = s.View(func(tx *Tx) error {
		pos = tx.PendingAfter(0, 2, func(uint64, PostRef) bool { return true })
		return nil
	})
	s.Close()
	s, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var rest []PostRef
	_ = s.View(func(tx *Tx) error {
		tx.PendingAfter(pos, -1, func(_ uint64, r PostRef) bool { rest = append(rest, r); return true })
		return nil
	})
	if !slices.Equal(rest, []PostRef{{"dave", 2}, {"dave", 3}}) {
		t.Fatalf("after %d: %v", pos, rest)
	}
}

// TestLegacyPendingQueued: a pending mark written by an older twgroupd (no
// arrival queue) is queued at Open.
func TestLegacyPendingQueued(t *testing.T) {
	s, path := openTemp(t, nil)
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bktPending).Put(postKey(PostRef{"old", 9}), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.View(func(tx *Tx) error {
		if p := tx.Pending(); !slices.Equal(p, []PostRef{{"old", 9}}) || tx.PendingCount() != 1 {
			t.Fatalf("pending %v", p)
		}
		return nil
	})
}
