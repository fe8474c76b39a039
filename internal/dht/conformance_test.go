package dht

import (
	"encoding/hex"
	"sort"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/bencode"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

// rKeys lists the keys of a reply's r dict.
func rKeys(t *testing.T, pkt []byte) []string {
	t.Helper()
	var top map[string]bencode.Bytes
	if err := bencode.Unmarshal(pkt, &top); err != nil {
		t.Fatal(err)
	}
	r, err := rawDict(top["r"])
	if err != nil {
		return nil
	}
	var keys []string
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Every query twisterd sent in the captures, replayed to our node, gets a
// reply with the same r keys as twisterd's own reply to it, apart from
// the keys that depend on what the node stores or follows (data, and the
// followers/n of a tracker it knows).
func TestRepliesMatchTwisterdShapes(t *testing.T) {
	reg := capturedUsersRegistry(t)
	n := openNode(t, testConfig(t, reg))
	c := newRawClient(t)

	packets := loadPackets(t)
	type key struct{ from, to, tid string }
	replies := map[key][]byte{}
	for _, p := range packets {
		raw, _ := hex.DecodeString(p.Hex)
		if m, _ := DecodeMsg(raw); m != nil && m.Z == "r" {
			replies[key{p.Src, p.Dst, string(m.T)}] = raw
		}
	}
	compared := map[string]int{}
	for _, p := range packets {
		raw, _ := hex.DecodeString(p.Hex)
		q, _ := DecodeMsg(raw)
		if q == nil || q.Z != "q" {
			continue
		}
		theirs, ok := replies[key{p.Dst, p.Src, string(q.T)}]
		if !ok {
			continue
		}
		x := *q.X
		x.ID = nil
		switch q.Q {
		case methodPutData:
			pd, err := twproto.ParseDHTP(x.P)
			if err != nil {
				t.Fatal(err)
			}
			x.Token = c.token(n.LocalAddr(), pd.Target)
		case methodAnnouncePeer:
			user := "alice"
			if hex.EncodeToString(x.InfoHash) == "61d00bb3300acfc29ddd71dec1b060dd39b97459" {
				user = "bob"
			}
			x.Token = c.token(n.LocalAddr(), twproto.DHTTarget{N: user, R: "tracker", T: "m"})
		}
		ours := c.ask(n.LocalAddr(), q.Q, &x)
		if ours.Z != "r" {
			t.Fatalf("%s: we answered with an error: %s", q.Q, errMsg(ours))
		}
		ourRaw, _ := ours.Marshal()
		drop := func(keys []string) string {
			var out []string
			for _, k := range keys {
				if k != "data" && k != "followers" && k != "n" {
					out = append(out, k)
				}
			}
			return strings.Join(out, ",")
		}
		if got, want := drop(rKeys(t, ourRaw)), drop(rKeys(t, theirs)); got != want {
			t.Errorf("%s: our r keys %s, twisterd's %s", q.Q, got, want)
		}
		compared[q.Q]++
	}
	for _, m := range []string{methodPing, methodFindNode, methodGetData, methodPutData, methodAnnouncePeer} {
		if compared[m] == 0 {
			t.Errorf("no %s compared", m)
		}
	}
	t.Logf("compared %v", compared)
}
