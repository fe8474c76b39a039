package dm

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/twgroupd/twgroupd/dm/dmtest"
	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/wallet"
)

// BenchmarkReceiveDM measures the receive path for one DM post with 1, 10,
// 100 and 1000 wallet keys: "miss" is a post for someone else (every key
// tried, the post marked pending), "hit" one that only the last key in
// wallet order opens (every key tried, the message stored; repeats are
// deduplicated). Files are real bbolt files with fsync off, to measure the
// engine rather than the disk.
func BenchmarkReceiveDM(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		for _, hit := range []bool{false, true} {
			name := fmt.Sprintf("keys=%d/miss", n)
			if hit {
				name = fmt.Sprintf("keys=%d/hit", n)
			}
			b.Run(name, func(b *testing.B) { benchReceive(b, n, hit) })
		}
	}
}

func benchReceive(b *testing.B, nKeys int, hit bool) {
	ctx := context.Background()
	dir := b.TempDir()
	w, err := wallet.Open(filepath.Join(dir, "wallet.db"), &wallet.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	s, err := msgstore.Open(filepath.Join(dir, "messages.db"), &msgstore.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	keys := dmtest.NewKeys(100)
	// "zed" sorts after every "*alias": the last key tried.
	bob, err := w.CreateUser("zed")
	if err != nil {
		b.Fatal(err)
	}
	keys.Add("zed", bob.PubKey(), 1)
	for range nKeys - 1 {
		k, err := twproto.NewPrivateKey()
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := w.AddGroupKey(k); err != nil {
			b.Fatal(err)
		}
	}
	alice, _ := twproto.NewPrivateKey()
	keys.Add("alice", alice.PubKey(), 1)
	to := bob.PubKey()
	if !hit {
		stranger, _ := twproto.NewPrivateKey()
		to = stranger.PubKey()
	}
	env, err := twproto.Encrypt(to, twproto.EncodeMessage("a direct message of typical length, about sixty bytes", "zed"))
	if err != nil {
		b.Fatal(err)
	}
	raw, err := twproto.BuildDMPost(alice, "alice", 1, 99, 1_800_000_000, env)
	if err != nil {
		b.Fatal(err)
	}
	p, err := twproto.ValidatePost(ctx, raw, "alice", 1, keys)
	if err != nil {
		b.Fatal(err)
	}
	e, err := New(Config{Wallet: w, Store: s, Keys: keys, Net: dmtest.NewHub(keys).Node("bench")})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.process(ctx, p, true); err != nil { // warm the key cache
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := e.process(ctx, p, false); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	th, _ := e.GetDirectMsgs("zed", 10, []msgstore.Query{msgstore.NewQuery("alice")})
	if hit != (len(th) == 1 && len(th[0].Messages) == 1) {
		b.Fatalf("hit=%v but threads %+v", hit, th)
	}
}
